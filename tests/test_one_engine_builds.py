"""Builds with one engine left out (CUDNNCONV_GRAPH_API=0, CUDNNCONV_LEGACY_API=0)
keep the whole front working: the package imports, the typed call path and
the plan objects are there, engine='auto' picks the engine the build has,
asking for the missing one is a clear error, and the argument checks run.

Each build is a copy of the sources compiled in a temporary folder (about
half a minute on two cores); the checks run in a fresh interpreter against
it.  Skipped where the sources cannot be built here (no compiler or no
cuDNN headers).
"""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHECK = textwrap.dedent("""
    import sys
    sys.path.insert(0, "tests")
    import cudnnconv
    from cudnnconv import engine_registry, callplan
    from conftest import FakeCudaArray
    want = sys.argv[1]
    assert cudnnconv.build_info()["engines"] == [want], cudnnconv.build_info()["engines"]
    assert cudnnconv.__file__.startswith(sys.argv[2]), cudnnconv.__file__
    assert callable(cudnnconv.plan) and cudnnconv.CallPlan is callplan.CallPlan
    assert engine_registry.select(cudnnconv.options.resolve()).ENGINE == want
    assert engine_registry.executor(object(), 0) is None       # only a graph choice binds
    missing = "legacy" if want == "graph" else "graph"
    try:
        cudnnconv.conv(FakeCudaArray((1, 3, 8, 8)), FakeCudaArray((4, 3, 3, 3)), engine=missing)
    except cudnnconv.EngineUnavailable as e:
        assert "CUDNNCONV_%s_API=0" % missing.upper() in str(e), e
    else:
        raise AssertionError("engine=%r ran in a build without it" % missing)
    try:
        cudnnconv.conv(FakeCudaArray((1, 3, 8, 8)), FakeCudaArray((4, 2, 3, 3)))
    except ValueError as e:
        assert "C/groups" in str(e), e
    else:
        raise AssertionError("a bad weight shape was not refused")
    # a tuning file's records are checked for both engines in either build (the file is shared)
    from cudnnconv import params, tuning
    key = params.ProblemKey("forward", "legacy", 0, 0, (8, 64, 56, 56), (64, 64, 3, 3), "NCHW", (1, 1), (1, 1),
                            (1, 1), 1, False, True, None, ())
    for engine, record in (("legacy", {"algo": 99, "bogus": [1]}), ("graph", {"knobs": "x"})):
        try:
            tuning._check_record(engine, record, key._replace(engine=engine), None)
        except tuning.BadEntry:
            pass
        else:
            raise AssertionError("a bad %s record passed the check in a %s-only build" % (engine, want))
    print("ok", want)
""")


@pytest.mark.parametrize("left_out,kept", [("GRAPH", "legacy"), ("LEGACY", "graph")])
def test_build_without_one_engine(tmp_path, left_out, kept):
    if shutil.which(os.environ.get("CC", "cc")) is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler")
    if not os.path.isdir(os.path.join(ROOT, "pyx")):
        pytest.skip("no package sources beside the tests (an installed wheel under test): nothing to build")
    for name in ("setup.py", "include", "pyx", "tests"):
        src = os.path.join(ROOT, name)
        if os.path.isdir(src):
            shutil.copytree(src, str(tmp_path / name),
                            ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__", "build"))
        else:
            shutil.copy(src, str(tmp_path / name))
    env = dict(os.environ, **{"CUDNNCONV_%s_API" % left_out: "0"})
    env.pop("PYTHONPATH", None)
    build = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "-j", "2"], cwd=str(tmp_path),
                           env=env, capture_output=True, text=True, timeout=900)
    if build.returncode != 0 and "build error" in build.stderr and "not found" in build.stderr:
        pytest.skip("cannot build here: " + build.stderr.strip().splitlines()[-1])
    assert build.returncode == 0, build.stderr[-3000:]
    env["PYTHONPATH"] = str(tmp_path / "pyx")
    run = subprocess.run([sys.executable, "-c", CHECK, kept, str(tmp_path / "pyx")], cwd=str(tmp_path), env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert run.stdout.strip().endswith("ok " + kept)
