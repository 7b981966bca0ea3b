"""options: per-thread defaults through flags(), resolution of one call's flags."""
import threading

import pytest

import cudnnconv
from cudnnconv import options

BUILTIN = options.Options(benchmark=False, deterministic=False, allow_tf32=True, workspace_limit=None,
                          engine="auto")


def test_builtin_defaults():
    assert options.current() == BUILTIN
    assert options.resolve() == BUILTIN
    assert options.resolve(None, None, None, None, None) == BUILTIN


def test_flags_sets_and_restores():
    with cudnnconv.flags(benchmark=True, deterministic=True, allow_tf32=False, workspace_limit=1024,
                         engine="legacy") as o:
        assert o == options.Options(True, True, False, 1024, "legacy")
        assert options.current() == o
        assert options.resolve() == o
    assert options.current() == BUILTIN


def test_flags_left_out_take_builtin_defaults_not_the_enclosing_block():
    with cudnnconv.flags(benchmark=True, allow_tf32=False):
        with cudnnconv.flags(deterministic=True) as inner:
            assert inner == options.Options(False, True, True, None, "auto")
        assert options.current() == options.Options(True, False, False, None, "auto")
    assert options.current() == BUILTIN


def test_flags_restores_on_exception():
    with pytest.raises(KeyError):
        with cudnnconv.flags(benchmark=True, workspace_limit=7):
            with cudnnconv.flags(deterministic=True):
                raise KeyError("boom")
    assert options.current() == BUILTIN


def test_resolve_per_call_wins_and_none_takes_defaults():
    with cudnnconv.flags(benchmark=True, deterministic=False, allow_tf32=False, workspace_limit=100):
        o = options.resolve(deterministic=True)
        assert o == options.Options(True, True, False, 100, "auto")
        o = options.resolve(benchmark=False, allow_tf32=True, workspace_limit=0, engine="legacy")
        assert o == options.Options(False, False, True, 0, "legacy")
        assert options.resolve() == options.current()


def test_resolve_takes_only_bools_and_checks():
    import numpy
    o = options.resolve(benchmark=numpy.bool_(True), deterministic=False)
    assert o.benchmark is True and o.deterministic is False
    # bool() would read these as True (or False): a flag is True, False or None
    for name in ("benchmark", "deterministic", "allow_tf32"):
        for bad in (1, 0, "no", "", 2.0, [True]):
            with pytest.raises(TypeError, match="%s must be True, False or None" % name):
                options.resolve(**{name: bad})
            with pytest.raises(TypeError, match="%s must be True, False or None" % name):
                with cudnnconv.flags(**{name: bad}):
                    pass
    assert options.resolve(workspace_limit=numpy.int64(1024)).workspace_limit == 1024
    assert type(options.resolve(workspace_limit=numpy.int64(1024)).workspace_limit) is int
    with pytest.raises(ValueError, match="workspace_limit"):
        options.resolve(workspace_limit=-1)
    with pytest.raises(ValueError, match="workspace_limit"):
        options.resolve(workspace_limit=True)
    with pytest.raises(ValueError, match="engine must be one of"):
        options.resolve(engine="v8")
    assert options.resolve(workspace_limit=0).workspace_limit == 0


def test_flags_do_not_leak_to_other_threads():
    inside = threading.Event()
    release = threading.Event()
    seen = {}

    def other():
        inside.wait(10)
        seen["other_during"] = options.current()
        with cudnnconv.flags(deterministic=True, engine="legacy"):
            seen["other_own"] = options.resolve()
            release.set()
        seen["other_after"] = options.current()

    t = threading.Thread(target=other)
    t.start()
    with cudnnconv.flags(benchmark=True, workspace_limit=5) as mine:
        inside.set()
        assert release.wait(10)
        # the other thread's flags() did not reach this thread either
        assert options.current() == mine
    t.join(10)
    assert seen["other_during"] == BUILTIN
    assert seen["other_own"] == options.Options(False, True, True, None, "legacy")
    assert seen["other_after"] == BUILTIN
    assert options.current() == BUILTIN


def test_many_threads_each_keep_their_own():
    results = {}
    barrier = threading.Barrier(8)

    def work(i):
        with cudnnconv.flags(workspace_limit=i):
            barrier.wait(10)
            results[i] = options.resolve().workspace_limit

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {i: i for i in range(8)}
