"""explain() and last_choice(): what the search sees, and what it chose (policy tier).

``explain(input, weight, ...)`` makes the call its arguments describe (with
benchmark forced on), but where the engine would search it:

* asks the engine's direction for its candidates (``candidates(args, opts,
  excluded=[...])``: the legacy engine reports each cudnnFind result that
  its filters drop, and why);
* times every candidate itself as the engines do (cudnnconv.gpu_timing:
  ``warmup`` runs, then ``k`` spin-guarded CUDA-event samples); reports the
  median and spread (max - min), and the host issue time where the
  benchmark's host-aware rule measures it (short runs only:
  ``cudnnconv.gpu_timing.rank_host_aware``);
* names the candidate the library would choose (the first in the engine's
  order that runs: what ``search.try_all`` caches) and the noise-robust
  choice over the measured costs (``cudnnconv.ranking``);
* samples CuPy's memory pool (used/total bytes) before, during and after.

The cache is not touched (no get, no put, so neither hits nor misses move)
unless ``update_cache=True``, which puts the library's choice.

How it gets there: for the duration of an explain() call, this thread's
state (cudnnconv.core.state) holds explain's search handler, and
``cudnnconv.search.try_all`` hands this thread's searches to it; other
threads search as usual.
"""
import math

from cudnnconv import _log, ranking, search
from cudnnconv.core.state import state as _thread_state

DIRECTIONS = ("forward", "backward_data", "backward_filter", "fused", "epilogue")

_MATH_NAMES = {0: "DEFAULT", 1: "TENSOR_OP", 2: "TENSOR_OP_ALLOW_CONVERSION", 3: "FMA"}


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------

class Candidate:
    """One row of a Report."""
    __slots__ = ("tag", "name", "math_type", "samples", "median_ms", "spread_ms", "issue_ms", "workspace",
                 "deterministic", "notes", "excluded", "reason", "chosen", "robust_choice", "choice")

    def __init__(self, tag, name=None, math_type=None, samples=(), workspace=0, deterministic=None,
                 notes="", excluded=False, reason="", choice=None):
        self.tag = tag
        self.name = name if name is not None else str(tag)
        self.math_type = math_type
        self.samples = list(samples)
        self.median_ms, self.spread_ms = ranking.median_and_spread(self.samples)
        self.issue_ms = None            # host issue time, where the host-aware rule measured it
        self.workspace = int(workspace or 0)
        self.deterministic = deterministic
        self.notes = notes
        self.excluded = bool(excluded)
        self.reason = reason
        self.chosen = False
        self.robust_choice = False
        self.choice = choice

    def as_dict(self):
        return {"tag": self.tag, "name": self.name, "math_type": self.math_type,
                "median_ms": None if math.isnan(self.median_ms) else self.median_ms,
                "spread_ms": None if math.isnan(self.spread_ms) else self.spread_ms,
                "issue_ms": self.issue_ms, "samples_ms": list(self.samples), "workspace": self.workspace,
                "deterministic": self.deterministic, "notes": self.notes, "excluded": self.excluded,
                "reason": self.reason, "chosen": self.chosen, "robust_choice": self.robust_choice}


class Report:
    """What explain() found: ``candidates`` (Candidate rows), ``chosen`` (the
    row the library would choose, or None), ``memory`` (pool samples) and a
    title.  ``str(report)`` is a table; ``to_dicts()`` a list of dicts."""

    def __init__(self, title, candidates, chosen_index=None, memory=None, margin=ranking.DEFAULT_MARGIN,
                 cached=None):
        self.title = title
        self.candidates = list(candidates)
        self.memory = dict(memory or {})
        self.margin = margin
        self.cached = cached            # what the cache held for this key before explain (describe() text)
        if chosen_index is not None:
            self.candidates[chosen_index].chosen = True
        timed = [c for c in self.candidates if not c.excluded and not math.isnan(c.median_ms)]
        best = ranking.choose(timed, margin) if timed else None
        if best is not None:
            best.robust_choice = True

    @property
    def chosen(self):
        for c in self.candidates:
            if c.chosen:
                return c
        return None

    @property
    def robust_choice(self):
        for c in self.candidates:
            if c.robust_choice:
                return c
        return None

    @property
    def peak_search_bytes(self):
        """Most pool bytes in use during the search, less those in use before it."""
        m = self.memory
        if "used_before" in m and "used_peak" in m:
            return max(0, m["used_peak"] - m["used_before"])
        return None

    def to_dicts(self):
        return [c.as_dict() for c in self.candidates]

    def __repr__(self):
        ch = self.chosen
        return "<Report %s: %d candidates, chosen %s>" % (self.title, len(self.candidates),
                                                          ch.name if ch else None)

    def __str__(self):
        head = ("", "candidate", "math", "median ms", "spread ms", "issue ms", "workspace", "det", "status")
        rows = []
        for c in self.candidates:
            mark = ("*" if c.chosen else " ") + ("r" if c.robust_choice else " ")
            status = ("excluded: " + c.reason) if c.excluded else "ok"
            if c.notes:
                status += " (" + c.notes + ")"
            rows.append((mark, c.name, _math_text(c.math_type), _ms(c.median_ms), _ms(c.spread_ms),
                         _ms(c.issue_ms), _bytes(c.workspace), {True: "yes", False: "no", None: "?"}[c.deterministic], status))
        widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
        lines = [self.title]
        lines.append("  ".join(str(h).ljust(w) for h, w in zip(head, widths)).rstrip())
        lines.append("  ".join("-" * w for w in widths))
        for r in rows:
            lines.append("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
        ch = self.chosen
        lines.append("* the library's choice: %s" % (ch.name if ch else "none ran"))
        rc = self.robust_choice
        lines.append("r noise-robust choice (median, or the issue time where that is longer; ties within "
                     "%g%% to the smaller workspace): %s" % (self.margin * 100, rc.name if rc else "none"))
        if self.cached is not None:
            lines.append("cached before explain: %s" % self.cached)
        m = self.memory
        if m:
            lines.append("memory pool: used %s -> %s (peak %s during the search), total %s -> %s"
                         % (_bytes(m.get("used_before")), _bytes(m.get("used_after")), _bytes(m.get("used_peak")),
                            _bytes(m.get("total_before")), _bytes(m.get("total_after"))))
        return "\n".join(lines)


def _math_text(m):
    if m is None:
        return "-"
    if isinstance(m, int):
        return _MATH_NAMES.get(m, str(m))
    return str(m)


def _ms(v):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else "%.4f" % v


def _bytes(n):
    if n is None:
        return "-"
    n = int(n)
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return "%.1f %s" % (n / size, unit)
    return "%d B" % n


# ---------------------------------------------------------------------------
# Reading choices of either engine
# ---------------------------------------------------------------------------

def _tag(choice):
    for attr in ("tag", "algo"):
        v = getattr(choice, attr, None)
        if v is not None:
            return v
    return repr(choice)


def _name(choice):
    name = getattr(choice, "name", None)
    algo = getattr(choice, "algo", None)
    if name is not None and algo is not None:
        return "%s(%d)" % (name, algo)
    if name is not None:
        return str(name)
    return str(_tag(choice))


def _notes(choice):
    """The numerical notes, then the behavior notes (graph engine), as one string."""
    parts = []
    for attr in ("notes", "behavior"):
        notes = getattr(choice, attr, None)
        if notes is None:
            continue
        if isinstance(notes, (list, tuple, set, frozenset)):
            parts.extend(str(n) for n in notes)
        elif notes:
            parts.append(str(notes))
    return ",".join(parts)


def _row(choice, samples=(), excluded=False, reason=""):
    return Candidate(_tag(choice), _name(choice), getattr(choice, "math_type", None), samples,
                     getattr(choice, "workspace", 0), getattr(choice, "deterministic", None), _notes(choice),
                     excluded, reason, choice)


# ---------------------------------------------------------------------------
# The interception of search.try_all
# ---------------------------------------------------------------------------

# The hook lives in this thread's state (cudnnconv.core.state): while it is
# set, search.try_all hands this thread's searches to it, and the typed path
# of bound call plans and the graph engine's cached-call fast path stand
# aside.  Other threads are not affected, and nothing is patched.


def active():
    """Whether this thread is inside explain(), last_choice() or a warm-up
    (a search handler is set).  Engines and bound call plans skip their
    cached-call fast paths while this is true, so that explain() sees the
    search and last_choice() runs nothing."""
    return _thread_state().explain is not None


def intercept_search(handler):
    """A context manager: while it is open, this thread's searches go to
    ``handler(direction, args, cache, key, opts)`` instead of the search
    (``search.try_all`` hands them over), and engines skip their cached-call
    fast paths (see ``active``).  explain(), last_choice() and
    cudnnconv.warmup use it.  ``last_call()`` is left as it was."""
    return _Intercept(handler)


class _Intercept:
    def __init__(self, handler):
        self.handler = handler

    def __enter__(self):
        st = _thread_state()
        self.prev = st.explain
        self.last = st.last
        st.explain = self.handler
        return self

    def __exit__(self, *exc):
        st = _thread_state()
        st.explain = self.prev
        rec = st.last
        if type(rec) is tuple and rec is not self.last:
            self.ran = rec[3]
        elif rec is not self.last and rec is not None:
            self.ran = [rec.executor.choice]     # a bound call plan ran (not while a handler is set)
        else:
            self.ran = []
        st.last = self.last            # explain is not a call: last_call() is left as it was
        return False


# ---------------------------------------------------------------------------
# Running the call
# ---------------------------------------------------------------------------

def _call(input, weight, grad_output, direction, bias, z, alpha, stride, padding, dilation, groups, flags,
          act=None):
    """Make the public call that ``direction`` names (its result is thrown away)."""
    import cupy
    from cudnnconv import api, params
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, **flags)
    if direction == "forward":
        return api.conv(input, weight, bias, **kw)
    if direction == "fused":
        if z is None:
            geom, y_shape = params.conv_geometry(input.shape, weight.shape, stride, padding, dilation, groups)
            z = cupy.zeros(y_shape, dtype=input.dtype)
        return api.conv_bias_add_relu(input, weight, z, alpha, bias, fusion="fused", **kw)
    if direction == "epilogue":
        return api.conv_epilogue(input, weight, bias, z=z, act=act, alpha2=alpha, fusion="fused", **kw)
    x_shape = tuple(input) if isinstance(input, (tuple, list)) else tuple(input.shape)
    w_shape = tuple(weight) if isinstance(weight, (tuple, list)) else tuple(weight.shape)
    if grad_output is None:
        geom, y_shape = params.conv_geometry(x_shape, w_shape, stride, padding, dilation, groups)
        ref = weight if direction == "backward_data" else input
        grad_output = cupy.random.standard_normal(y_shape).astype(ref.dtype)
    if direction == "backward_data":
        return api.conv_backward_input(x_shape, weight, grad_output, **kw)
    if direction == "backward_filter":
        return api.conv_backward_weight(input, w_shape, grad_output, **kw)
    raise ValueError("direction must be one of %s, got %r" % (", ".join(DIRECTIONS), direction))


def _pool_sample():
    import cupy
    pool = cupy.get_default_memory_pool()
    return pool.used_bytes(), pool.total_bytes()


def _runner(direction, args, choice):
    """One run of ``choice`` on a workspace of its own, which the returned callable holds."""
    from cudnnconv import workspace
    mem = workspace.allocate(choice.workspace)
    ptr = workspace.pointer(mem)

    def run():
        direction.execute(args, choice, ptr)
        return mem                          # held as long as the runner is
    return run


def _time(direction, args, choice, k, warmup):
    """k GPU-time samples (ms) of ``choice`` after ``warmup`` untimed runs,
    taken as the engines' benchmark takes them (cudnnconv.gpu_timing)."""
    from cudnnconv import gpu_timing
    return gpu_timing.time_samples(_runner(direction, args, choice), k, warmup)


def _issue_times(direction, args, rows, margin):
    """Measure the rows' issue times as the engines' benchmark does
    (cudnnconv.gpu_timing.rank_host_aware: only where the fastest run is short,
    and only rows that could cost less than the cheapest so far)."""
    from cudnnconv import gpu_timing
    timed = [r for r in rows if not math.isnan(r.median_ms)]
    if not timed:
        return
    try:
        gpu_timing.rank_host_aware(timed, lambda row: _runner(direction, args, row.choice), None, margin)
    except Exception as e:      # a report, not a search: the rows not measured yet show no issue time
        _log.debug("explain: issue times stopped at %s: %s", type(e).__name__, e)


def _candidates(direction, args, opts):
    excluded = []
    try:
        cands = direction.candidates(args, opts, excluded=excluded)
    except TypeError:               # an engine whose candidates() takes no excluded=
        excluded = []
        cands = direction.candidates(args, opts)
    return list(cands), excluded


class _Explainer:
    def __init__(self, k, warmup, update_cache, margin):
        self.k, self.warmup, self.update_cache, self.margin = k, warmup, update_cache, margin
        self.report = None
        self.memory = {}
        self.peak = 0

    def _sample(self):
        used, total = _pool_sample()
        self.peak = max(self.peak, used)
        return used, total

    def __call__(self, direction, args, cache, key, opts):
        if self.report is not None:
            # A later chunk of a split batch: run the choice made for the first
            # (or, for a different key, its cached or first candidate) without timing.
            choice = self.report_choice if key == self.key else None
            if choice is None:
                choice = cache.peek(key) or _candidates(direction, args, opts)[0][0]
            search.run_choice(direction, args, choice)
            return choice
        self.key = key
        before = cache.peek(key)
        used0, total0 = self._sample()
        self.memory.update(used_before=used0, total_before=total0)
        rows = []
        try:
            cands, excluded = _candidates(direction, args, opts)
        except Exception as e:
            cands, excluded = [], []
            rows.append(Candidate("search", "search", excluded=True,
                                  reason="candidates failed: %s: %s" % (type(e).__name__, e)))
        self._sample()
        chosen_index = None
        chosen = None
        for choice in cands:
            try:
                samples = _time(direction, args, choice, self.k, self.warmup)
            except Exception as e:
                rows.append(_row(choice, excluded=True,
                                 reason="failed to run: %s" % (getattr(e, "name", None) or type(e).__name__)))
                continue
            finally:
                self._sample()
            rows.append(_row(choice, samples))
            if chosen is None:
                chosen, chosen_index = choice, len(rows) - 1
        _issue_times(direction, args, [r for r in rows if not r.excluded], self.margin)
        self._sample()
        for choice, reason in excluded:
            rows.append(_row(choice, excluded=True, reason=reason))
        used1, total1 = _pool_sample()
        self.memory.update(used_after=used1, total_after=total1, used_peak=max(self.peak, used1))
        title = "cudnnconv.explain: %s, engine %s, %s x%s w%s, dtype code %s, k=%d" % (
            key.op, key.engine, key.layout, key.input_shape, key.weight_shape, key.dtype, self.k)
        self.report = Report(title, rows, chosen_index, self.memory, self.margin,
                             None if before is None else _describe(before))
        self.report_choice = chosen
        if chosen is None:
            raise search.CuDNNError(3000, "explain: no candidate could run this %s convolution (see "
                                    "the report's reasons: %s)" % (key.op, "; ".join(
                                        "%s: %s" % (r.name, r.reason) for r in rows)),
                                    direction.context(args, None))
        if self.update_cache:
            cache.put(key, chosen)
        return chosen


def _describe(choice):
    try:
        return choice.describe()
    except Exception:
        return repr(choice)


def explain(input, weight, grad_output=None, *, direction="forward", engine=None, bias=None, z=None,
            alpha=1.0, stride=1, padding=0, dilation=1, groups=1, k=None, warmup=None, update_cache=False,
            margin=None, deterministic=None, allow_tf32=None, workspace_limit=None,
            benchmark=True, act=None):
    """Search the way a call with these arguments would, benchmark forced on, and report.

    ``direction``: 'forward' (``conv(input, weight, bias, ...)``), 'fused'
    (``conv_bias_add_relu(input, weight, z, alpha, bias, fusion='fused')``;
    ``z`` defaults to zeros), 'epilogue' (``conv_epilogue(input, weight, bias, z=z, act=act,
    alpha2=alpha, fusion='fused')``), 'backward_data' (``input`` may be a shape;
    ``grad_output`` defaults to random data) or 'backward_filter'
    (``weight`` may be a shape).  The flags are the calls' own.  Every
    candidate is timed as the engines' benchmark times it (cudnnconv.gpu_timing):
    ``warmup`` runs then ``k`` spin-guarded CUDA-event samples; ``k``,
    ``warmup`` and ``margin`` default to ``benchmark_settings()``.  The cache
    is left alone unless ``update_cache``.  Returns a Report.

    Raises:
        ValueError: an unknown ``direction``, or ``k`` below 1.
        Whatever the call these arguments describe raises before its
        search (TypeError and ValueError for bad arguments,
        CudaUnavailableError without a GPU); a candidate that fails is
        reported in the Report, not raised.
    """
    if direction not in DIRECTIONS:
        raise ValueError("direction must be one of %s, got %r" % (", ".join(DIRECTIONS), direction))
    from cudnnconv import gpu_timing
    k = gpu_timing.REPEATS if k is None else int(k)
    if k < 1:
        raise ValueError("k must be at least 1, got %d" % k)
    warmup = gpu_timing.WARMUP if warmup is None else warmup
    margin = gpu_timing.MARGIN if margin is None else margin
    flags = dict(engine=engine, deterministic=deterministic, allow_tf32=allow_tf32,
                 workspace_limit=workspace_limit, benchmark=True)
    ex = _Explainer(k, int(warmup), bool(update_cache), margin)
    icp = _Intercept(ex)
    with icp:
        _call(input, weight, grad_output, direction, bias, z, alpha, stride, padding, dilation, groups, flags,
              act)
    if ex.report is None:
        if icp.ran:
            # The engine answered from its cache before reaching the search.
            rows = [_row(c) for c in icp.ran[:1]]
            return Report("cudnnconv.explain: %s (no search ran: the engine served its cached choice; "
                          "clear_cache() to see the candidates)" % direction, rows, 0, cached=_describe(icp.ran[0]))
        return Report("cudnnconv.explain: %s (no search: empty problem)" % direction, [])
    return ex.report


class _Peek:
    def __init__(self):
        self.choices = []

    def __call__(self, direction, args, cache, key, opts):
        # deterministic without benchmark runs only the default algorithm and
        # never reads the cache: no cached choice applies.
        hit = None if (opts.deterministic and not opts.benchmark) else cache.peek(key)
        self.choices.append(hit)
        if hit is None or isinstance(hit, search.NoneRan):
            # Nothing runs: the caller's output is discarded.
            raise _Stop()
        return hit


class _Stop(Exception):
    pass


def last_choice(input, weight, grad_output=None, *, direction="forward", engine=None, bias=None, z=None,
                alpha=1.0, stride=1, padding=0, dilation=1, groups=1, deterministic=None, allow_tf32=None,
                workspace_limit=None, benchmark=None, act=None):
    """The cached choice for the call these arguments describe, or None; no search, no hit counted.

    Nothing runs on the GPU but the argument packing (the result is not
    computed).  For a split batch, the first chunk's choice.

    Raises:
        ValueError: an unknown ``direction``.
        Whatever the call these arguments describe raises before its
        search (TypeError and ValueError for bad arguments).
    """
    if direction not in DIRECTIONS:
        raise ValueError("direction must be one of %s, got %r" % (", ".join(DIRECTIONS), direction))
    flags = dict(engine=engine, deterministic=deterministic, allow_tf32=allow_tf32,
                 workspace_limit=workspace_limit, benchmark=benchmark)
    peek = _Peek()
    icp = _Intercept(peek)
    try:
        with icp:
            _call(input, weight, grad_output, direction, bias, z, alpha, stride, padding, dilation, groups, flags,
                  act)
    except _Stop:
        pass
    if peek.choices:
        return peek.choices[0]
    # An engine that served a cached choice before the search (see active()).
    return icp.ran[0] if icp.ran else None
