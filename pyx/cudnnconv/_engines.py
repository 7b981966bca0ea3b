"""Which engines this build has, and which one a call uses."""
from cudnnconv.core import build

legacy = None
graph = None
if build.LEGACY_API:
    from cudnnconv.engines import legacy
if build.GRAPH_API:
    try:
        from cudnnconv.engines import graph
    except ImportError:          # the graph engine's module is not built yet
        graph = None


class EngineUnavailable(RuntimeError):
    """The engine a call asked for is not in this build."""


def available():
    return [name for name, mod in (("graph", graph), ("legacy", legacy)) if mod is not None]


def select(opts):
    name = opts.engine
    if name == "auto":
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


def caches():
    return [m.CACHE for m in (graph, legacy) if m is not None]
