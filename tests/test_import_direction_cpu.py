"""Imports inside the package point one way: down the layers below.

Every import of a cudnnconv module, at module level or inside a function,
in the .py sources (read with ast) and the .pyx sources (their ``import``
and ``cimport`` lines), is an edge.  A module may import modules of its own
layer or lower ones, never higher; the engines import neither the tuning
cache nor explain, warm-up or the public functions (they expose hooks);
and there is no cycle.  A new module must be given a layer here.

``KNOWN`` lists the edges that still break a rule, each with its reason.  It
can only shrink: an edge that breaks a rule and is not listed fails, and so
does a listed edge that no longer exists.
"""
import ast
import glob
import os
import re

import pytest

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyx", "cudnnconv")
pytestmark = pytest.mark.skipif(not os.path.isdir(PKG), reason="no package sources beside the tests (an "
                                "installed wheel under test): nothing to read")

LAYERS = {
    0: ("_loader", "_log", "core", "core.status", "core.handle", "core.build", "core.state", "core.executor",
        "core.arrays", "decl", "decl.cudnn", "decl.cudnn_backend", "decl.cudnn_legacy", "decl.config"),
    1: ("params.dtypes", "params.layouts", "params.ingest", "params.geometry", "params.keys", "params.repro",
        "params", "records", "options", "cache", "search", "workspace", "split", "tiling", "tiled", "one_sided", "ranking",
        "exhaustive_budget", "knob_space", "knob_sandbox", "activations",
        "gpu_timing", "errata",
        "tuning", "torch_rules"),
    2: ("engines", "engines.legacy_descriptors", "engines.legacy", "engines.legacy_record", "engines.graph_descriptors",
        "engines.graph", "engines.graph_record"),
    3: ("engine_registry", "callplan", "tiled_calls", "knob_sweep_worker", "epilogue_composed", "fusion_choice"),
    4: ("api",),
    5: ("explain", "warmup"),
    6: ("cudnnconv", "demo", "__main__"),
    7: ("torch", "torch.bridge", "torch.typed", "torch.conv_node", "torch.functional", "torch.modules",
        "torch.conversion"),
}
LAYER = {m: n for n, mods in LAYERS.items() for m in mods}
NOT_FROM_ENGINES = ("tuning", "explain", "warmup", "api")
KNOWN = {}


def _name(path):
    rel = os.path.relpath(path, os.path.dirname(PKG))
    rel = re.sub(r"\.(py|pyx|pxd)$", "", rel).replace(os.sep, ".")
    rel = rel[:-len(".__init__")] if rel.endswith(".__init__") else rel
    return "cudnnconv" if rel == "cudnnconv" else rel[len("cudnnconv."):]


def _target(mod, name=None):
    """The package module an import names ('cudnnconv.x.y' -> 'x.y'; 'from cudnnconv import x' -> 'x')."""
    if mod == "cudnnconv":
        return name if name else "cudnnconv"
    return mod[len("cudnnconv."):]


def _edges():
    edges = set()
    files = (glob.glob(os.path.join(PKG, "**", "*.py"), recursive=True)
             + glob.glob(os.path.join(PKG, "**", "*.pyx"), recursive=True)
             + glob.glob(os.path.join(PKG, "**", "*.pxd"), recursive=True))
    for f in files:
        me, src = _name(f), open(f, encoding="utf-8").read()
        if f.endswith(".py"):
            for n in ast.walk(ast.parse(src)):
                if isinstance(n, ast.ImportFrom) and n.module and n.module.split(".")[0] == "cudnnconv":
                    for a in n.names:
                        t = _target(n.module, a.name if n.module == "cudnnconv" else None)
                        edges.add((me, t))
                elif isinstance(n, ast.Import):
                    edges.update((me, _target(a.name)) for a in n.names if a.name.split(".")[0] == "cudnnconv")
        else:
            for m in re.finditer(r"^[ \t]*from[ \t]+(cudnnconv[\w.]*)[ \t]+c?import[ \t]+(\([^)]*\)|[^\n#]+)",
                                 src, re.M):
                names = [w for w in re.split(r"[\s,()]+", m.group(2)) if w]
                if m.group(1) == "cudnnconv":
                    for i, w in enumerate(names):
                        if w != "as" and (i == 0 or names[i - 1] != "as"):
                            edges.add((me, w))
                else:
                    edges.add((me, _target(m.group(1))))
            for m in re.finditer(r"^[ \t]*c?import[ \t]+(cudnnconv[\w.]*)", src, re.M):
                edges.add((me, _target(m.group(1))))
    return {(a, b) for a, b in edges if a != b}


EDGES = _edges()


def test_the_scan_sees_the_imports_it_must():
    assert ("api", "callplan") in EDGES and ("engines.graph", "core.status") in EDGES
    assert ("warmup", "api") in EDGES                       # a function-local import counts
    assert ("engines.legacy", "engines.legacy_descriptors") in EDGES   # a cimport counts


def test_every_module_has_a_layer():
    unknown = sorted({m for e in EDGES for m in e if m not in LAYER})
    assert not unknown, "give these modules a layer in LAYERS: %s" % unknown


def _breaks(a, b):
    if LAYER.get(b, -1) > LAYER.get(a, 99):
        return "upward (layer %d imports layer %d)" % (LAYER[a], LAYER[b])
    if a.startswith("engines.") and b in NOT_FROM_ENGINES:
        return "an engine imports %s" % b
    return None


def test_no_import_points_upward():
    found = {(a, b): _breaks(a, b) for a, b in EDGES if _breaks(a, b)}
    new = {e: why for e, why in found.items() if e not in KNOWN}
    stale = sorted(e for e in KNOWN if e not in found)
    assert not new, "imports against the direction: %s" % new
    assert not stale, "these KNOWN edges are gone: remove them from KNOWN: %s" % stale


def test_no_cycle():
    graph = {}
    for a, b in EDGES:
        if a != "cudnnconv" and b != "cudnnconv":
            graph.setdefault(a, set()).add(b)
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                pytest.fail("import cycle: %s" % " -> ".join(stack[stack.index(m):] + [m]))
            if m not in state:
                visit(m)
        stack.pop()
        state[n] = 2
    for n in sorted(graph):
        if n not in state:
            visit(n)


def test_the_registry_connects_the_graph_engine_to_the_tuning_cache(monkeypatch):
    """The graph engine imports no tuning cache; the registry hands it the tuning cache's calls, looked
    up at each call (so a monkeypatched tuning function is the one that runs)."""
    from cudnnconv import engine_registry, tuning
    graph = engine_registry.graph
    if graph is None:
        pytest.skip("a build without the graph engine")
    seen = []
    monkeypatch.setattr(tuning, "stored_record", lambda key: seen.append(("stored", key)) or "rec")
    monkeypatch.setattr(tuning, "record_choice", lambda key, choice: seen.append(("record", key, choice)))
    monkeypatch.setattr(tuning, "forget_records", lambda engine=None: seen.append(("forget", engine)))
    assert graph._stored_record("k") == "rec"
    graph._record_choice("k", "c")
    graph._forget_records("graph")
    assert seen == [("stored", "k"), ("record", "k", "c"), ("forget", "graph")]
