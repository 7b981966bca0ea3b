"""Every attribute the Cython sources read from a cudnnconv Python module
exists.  The engines and callplan call ``params.conv_geometry``,
``records.key_to_json`` and the like by name at run time, mostly on GPU
paths: a module split or a rename that loses one would pass every CPU test
and fail only on a GPU.  This reads each .pyx for ``from cudnnconv import
a, b`` and ``from cudnnconv.x import y as z``, then checks every ``a.name``
it uses against the imported module."""
import glob
import importlib
import os
import re

import pytest

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyx", "cudnnconv")
SOURCES = sorted(glob.glob(os.path.join(PKG, "**", "*.pyx"), recursive=True))


def _aliases(src):
    mods = {}
    for m in re.finditer(r"^from cudnnconv import (\([^)]*\)|[^\n#]+)", src, re.M):
        names = [w for w in re.split(r"[\s,()]+", m.group(1)) if w]
        for i, w in enumerate(names):
            if w == "as" or (i and names[i - 1] == "as"):
                continue
            alias = names[i + 2] if i + 2 < len(names) and names[i + 1] == "as" else w
            mods[alias] = "cudnnconv." + w
    for m in re.finditer(r"^from (cudnnconv[\w.]*) import (\w+) as (\w+)", src, re.M):
        mods[m.group(3)] = "%s.%s" % (m.group(1), m.group(2))
    return mods


@pytest.mark.skipif(not SOURCES, reason="no package sources beside the tests (an installed wheel under test)")
@pytest.mark.parametrize("path", SOURCES, ids=lambda p: os.path.relpath(p, PKG))
def test_module_attributes_the_cython_sources_use_exist(path):
    src = open(path, encoding="utf-8").read()
    checked, missing = 0, []
    for alias, name in _aliases(src).items():
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue                          # a class or function imported under an alias, not a module
        for attr in set(re.findall(r"(?<![\w.])%s\.([A-Za-z_]\w*)" % re.escape(alias), src)):
            checked += 1
            if not hasattr(mod, attr):
                missing.append("%s.%s" % (alias, attr))
    assert not missing, missing


@pytest.mark.skipif(not SOURCES, reason="no package sources beside the tests (an installed wheel under test)")
def test_the_scan_finds_what_it_must():
    src = open(os.path.join(PKG, "engines", "graph.pyx"), encoding="utf-8").read()
    aliases = _aliases(src)
    assert aliases.get("records") == "cudnnconv.records" and aliases.get("params") == "cudnnconv.params"
    assert "records.key_to_json" in src
