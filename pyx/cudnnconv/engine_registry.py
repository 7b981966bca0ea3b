"""Which engines this build has, and which one a call uses.

engine='graph' and engine='legacy' name a module.  engine='auto' (the
default) is ``AUTO``: the graph engine where it can run, else the legacy one.
It tries the graph engine first; when that fails for a problem with a
CuDNNError other than out-of-memory (no engine config can run it), it runs
the legacy engine instead and remembers the decision for that problem, so
the graph engine is not tried again on every call.
"""
import threading
import types

from cudnnconv import params, tuning
from cudnnconv.core import build
from cudnnconv.engines import graph_record, legacy_record
from cudnnconv.core.status import CuDNNError

legacy = legacy_descriptors = None
graph = graph_descriptors = None
if build.LEGACY_API:
    from cudnnconv.engines import legacy, legacy_descriptors
if build.GRAPH_API:
    try:
        from cudnnconv.engines import graph, graph_descriptors
    except ImportError:          # the graph engine's module is not built
        graph = graph_descriptors = None


# What the tuning cache needs of the legacy engine: its cache and its record codec, which lives beside
# it (the graph engine's module carries its own choice_to_record / choice_from_record).
_LEGACY_RECORDS = None if legacy is None else types.SimpleNamespace(
    CACHE=legacy.CACHE, choice_to_record=legacy_record.to_record, choice_from_record=legacy_record.from_record)


def _provide(name):
    """What the tuning cache needs of engine ``name`` as this module holds it now (None where not built)."""
    if name == "legacy":
        return None if legacy is None else _LEGACY_RECORDS
    return graph if name == "graph" else None


tuning.set_engine_provider(_provide)
tuning.register_record_check("graph", graph_record.check_record)     # pure Python: in every build
tuning.register_record_check("legacy", legacy_record.check_record)
if graph is not None:
    # looked up at each call, so that the tuning cache's functions stay the ones its module holds
    graph.set_persistence(lambda key: tuning.stored_record(key), lambda key, choice: tuning.record_choice(key, choice),
                          lambda engine=None: tuning.forget_records(engine))


class EngineUnavailable(RuntimeError):
    """The engine a call asked for is not in this build."""


def available():
    return [name for name, mod in (("graph", graph), ("legacy", legacy)) if mod is not None]


def _fallback_key(op, x, w, geom, opts, layout, device):
    # The graph engine's problem key (params.make_key, the one key builder)
    # without its pointer alignments: a refused problem is refused at any
    # alignment often enough, and this key only chooses an engine, never a plan.
    return params.make_key(op, "graph", device, params.cudnn_dtype(x.dtype), x.shape, w.shape, layout, geom, opts)


class AutoEngine:
    """engine='auto': graph where it can run, else legacy (per problem)."""

    def __init__(self, first, second, maxsize=4096):
        self.first = first
        self.second = second
        self._fallback = {}          # fallback key -> the graph engine's error text
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self._local = threading.local()

    @property
    def ENGINE(self):
        """The engine the last call on this thread ran (for last_call())."""
        return getattr(self._local, "engine", self.first.ENGINE)

    @property
    def CACHE(self):
        return self.first.CACHE

    def fallbacks(self):
        """The problems that run on the legacy engine, with the reason."""
        with self._lock:
            return dict(self._fallback)

    def clear(self):
        with self._lock:
            self._fallback.clear()

    def ran_on(self, engine):
        """Record that this thread's last call ran on ``engine`` (a caller that ran an engine's own
        op directly, such as a fused epilogue on the graph engine), as ``ENGINE`` then reports."""
        self._local.engine = engine

    def run(self, op, x, w, y, geom, opts, layout, device, repro=None, z=None, bias=None, alpha=1.0):
        key = None
        if self._fallback:
            key = _fallback_key(op, x, w, geom, opts, layout, device)
            if key in self._fallback:
                self._local.engine = self.second.ENGINE
                return self.second.run(op, x, w, y, geom, opts, layout, device, repro, z=z, bias=bias,
                                       alpha=alpha)
        try:
            choice = self.first.run(op, x, w, y, geom, opts, layout, device, repro, z=z, bias=bias, alpha=alpha)
            self._local.engine = self.first.ENGINE
            return choice
        except MemoryError:
            raise
        except CuDNNError as e:
            if key is None:
                key = _fallback_key(op, x, w, geom, opts, layout, device)
            with self._lock:
                if len(self._fallback) >= self._maxsize:
                    self._fallback.pop(next(iter(self._fallback)))
                self._fallback[key] = "%s: %s" % (e.name, e.message)
            from cudnnconv import _log
            _log.debug("auto: the %s engine cannot run this %s problem (%s); using %s",
                       self.first.ENGINE, op, e.name, self.second.ENGINE)
        self._local.engine = self.second.ENGINE
        return self.second.run(op, x, w, y, geom, opts, layout, device, repro, z=z, bias=bias, alpha=alpha)


AUTO = AutoEngine(graph, legacy) if (graph is not None and legacy is not None) else None


def select(opts):
    name = opts.engine
    if name == "auto":
        if AUTO is not None:
            return AUTO
        mod = graph if graph is not None else legacy
        if mod is None:
            raise EngineUnavailable("this build of cudnnconv contains no engine")
        return mod
    mod = graph if name == "graph" else legacy
    if mod is None:
        raise EngineUnavailable(
            "engine=%r is not in this build (built with CUDNNCONV_%s_API=0); available: %s"
            % (name, name.upper(), ", ".join(available()) or "none"))
    return mod


def executor(choice, device):
    """The typed executor of ``choice`` on this thread's handle of ``device``
    (cudnnconv.core.executor), or None where its engine has none: the graph
    engine has one; the legacy engine's calls keep the full path (its v7
    entry points cost ~100 us of host time themselves, so a typed front
    would not change what they cost)."""
    if graph is not None:
        return graph.bind(choice, device)
    return None


def caches():
    return [m.CACHE for m in (graph, legacy) if m is not None]


def live_descriptors():
    """cuDNN descriptors alive now, per engine built: ``{"graph": n, "legacy": m}``.

    Every descriptor is owned by one Python object and destroyed in its ``__dealloc__``; these counts
    rise when one is created and fall when one is destroyed, so that a test can see them return to a
    baseline after ``clear_cache()`` (the graph engine's count includes finalized plans, operation
    graphs and the variant packs a cached plan keeps)."""
    return {name: mod.live_descriptors()
            for name, mod in (("graph", graph_descriptors), ("legacy", legacy_descriptors)) if mod is not None}
