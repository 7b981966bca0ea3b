"""search.try_all with a pure-Python direction and a real AlgoCache.

The fake direction records every choice it runs; candidates need no
workspace, so nothing touches a GPU.  ``check_not_capturing`` (which asks
CuPy about the current stream) is replaced by a recorder.
"""
import pytest

import cudnnconv
from cudnnconv import options, params, search
from cudnnconv.cache import AlgoCache

BAD_PARAM, NOT_SUPPORTED, EXEC_FAILED = 2000, 3000, 5000


class Choice:
    def __init__(self, name, fails=None, benchmarked=False):
        self.name, self.fails, self.benchmarked, self.workspace = name, fails, benchmarked, 0

    def describe(self):
        return "algo " + self.name

    def __repr__(self):
        return "Choice(%s)" % self.name


def oom():
    return MemoryError("out of memory allocating workspace")


def cudnn_oom():
    return cudnnconv.CuDNNOutOfMemoryError(4004, "device allocation failed")


def refused(status=NOT_SUPPORTED):
    return cudnnconv.CuDNNError(status, "not for this problem")


class FakeDirection:
    op = "forward"

    def __init__(self, candidates, default=None):
        self._candidates = list(candidates)
        self._default = default
        self.ran = []                # names of the choices run, in order
        self.searches = 0
        self.default_calls = 0

    def candidates(self, args, opts):
        self.searches += 1
        if opts.benchmark:
            return [Choice(c.name, c.fails, benchmarked=True) for c in self._candidates]
        return list(self._candidates)

    def default(self, args, opts):
        self.default_calls += 1
        return self._default

    def execute(self, args, choice, workspace_ptr):
        assert workspace_ptr == 0
        self.ran.append(choice.name)
        if choice.fails is not None:
            raise choice.fails()

    def context(self, args, choice):
        return "context of %s (choice %s)" % (args, None if choice is None else choice.describe())


def opts(benchmark=False, deterministic=False):
    return options.Options(benchmark, deterministic, True, None, "legacy")


@pytest.fixture
def capture_checks(monkeypatch):
    calls = []
    monkeypatch.setattr(search, "check_not_capturing", lambda op: calls.append(op))
    return calls


_GEOM, _ = params.conv_geometry((2, 3, 8, 8), (4, 3, 3, 3), 1, 1, 1, 1)
KEY = params.make_key("forward", "fake", 0, 0, (2, 3, 8, 8), (4, 3, 3, 3), params.NCHW, _GEOM, opts())


def test_first_success_is_cached_and_used_next(capture_checks):
    d = FakeDirection([Choice("A", oom), Choice("B", refused), Choice("C"), Choice("D")])
    cache = AlgoCache("t")
    got = search.try_all(d, "args", cache, KEY, opts())
    assert got.name == "C"
    assert d.ran == ["A", "B", "C"]             # OOM and cuDNN refusal skipped; D never tried
    assert cache.peek(KEY) is got
    assert capture_checks == ["forward"]
    d.ran.clear()
    again = search.try_all(d, "args", cache, KEY, opts())
    assert again is got and d.ran == ["C"]      # the cached choice, no search
    assert d.searches == 1 and capture_checks == ["forward"]
    assert cache.info().hits == 1 and cache.info().misses == 1


def test_cached_choice_is_tried_first(capture_checks):
    d = FakeDirection([Choice("A"), Choice("B")])
    cache = AlgoCache("t")
    cache.put(KEY, Choice("Z"))
    assert search.try_all(d, "args", cache, KEY, opts()).name == "Z"
    assert d.ran == ["Z"] and d.searches == 0 and capture_checks == []


def test_cached_choice_out_of_memory_searches_again(capture_checks):
    d = FakeDirection([Choice("A", oom), Choice("B")])
    cache = AlgoCache("t")
    cache.put(KEY, Choice("Z", cudnn_oom))
    got = search.try_all(d, "args", cache, KEY, opts())
    assert got.name == "B" and d.ran == ["Z", "A", "B"]
    assert cache.peek(KEY) is got


def test_cached_choice_cudnn_error_is_raised_with_context(capture_checks):
    d = FakeDirection([Choice("A")])
    cache = AlgoCache("t")
    cache.put(KEY, Choice("Z", lambda: refused(EXEC_FAILED)))
    with pytest.raises(cudnnconv.CuDNNError) as info:
        search.try_all(d, "args", cache, KEY, opts())
    assert info.value.status == EXEC_FAILED
    assert "context of args (choice algo Z)" in str(info.value)
    assert d.ran == ["Z"]


def test_deterministic_without_benchmark_uses_only_the_default(capture_checks):
    d = FakeDirection([Choice("A"), Choice("B")], default=Choice("DEF"))
    cache = AlgoCache("t")
    cache.put(KEY, Choice("Z"))                 # ignored: only the default may run
    got = search.try_all(d, "args", cache, KEY, opts(deterministic=True))
    assert got.name == "DEF"
    assert d.ran == ["DEF"] and d.searches == 0 and d.default_calls == 1
    assert cache.info().hits == 0


def test_deterministic_default_failing_raises(capture_checks):
    d = FakeDirection([Choice("A")], default=Choice("DEF", refused))
    with pytest.raises(cudnnconv.CuDNNError, match="algo DEF"):
        search.try_all(d, "args", AlgoCache("t"), KEY, opts(deterministic=True))
    assert d.ran == ["DEF"]


def test_deterministic_with_benchmark_searches(capture_checks):
    d = FakeDirection([Choice("A", refused), Choice("B")], default=Choice("DEF"))
    got = search.try_all(d, "args", AlgoCache("t"), KEY, opts(benchmark=True, deterministic=True))
    assert got.name == "B" and got.benchmarked and d.default_calls == 0


def test_heuristic_entry_is_researched_when_benchmark_asks(capture_checks):
    d = FakeDirection([Choice("A"), Choice("B")])
    cache = AlgoCache("t")
    heuristic = search.try_all(d, "args", cache, KEY, opts())
    assert not heuristic.benchmarked and d.searches == 1
    bench = search.try_all(d, "args", cache, KEY, opts(benchmark=True))
    assert bench.benchmarked and d.searches == 2
    assert cache.peek(KEY) is bench
    # A benchmarked entry answers both kinds of call without another search.
    d.ran.clear()
    assert search.try_all(d, "args", cache, KEY, opts(benchmark=True)) is bench
    assert search.try_all(d, "args", cache, KEY, opts()) is bench
    assert d.searches == 2 and d.ran == ["A", "A"]


def test_none_ran_lists_candidates_and_is_cached(capture_checks):
    d = FakeDirection([Choice("A", refused), Choice("B", lambda: refused(BAD_PARAM)), Choice("C", refused)])
    cache = AlgoCache("t")
    with pytest.raises(cudnnconv.CuDNNError) as info:
        search.try_all(d, "ARGS", cache, KEY, opts())
    e = info.value
    assert not isinstance(e, MemoryError)
    assert e.status == NOT_SUPPORTED                  # the last cuDNN status seen
    for name in "ABC":
        assert "algo %s -> CUDNN_STATUS_" % name in e.message
    assert "algo B -> CUDNN_STATUS_BAD_PARAM" in e.message
    assert "context of ARGS" in str(e)
    entry = cache.peek(KEY)
    assert isinstance(entry, search.NoneRan)
    assert entry.status == e.status
    # the next call fails at once, without searching
    d.ran.clear()
    with pytest.raises(cudnnconv.CuDNNError, match="cached result of an earlier search") as again:
        search.try_all(d, "ARGS", cache, KEY, opts())
    assert d.ran == [] and d.searches == 1
    assert again.value.status == e.status and "context of ARGS" in str(again.value)
    assert capture_checks == ["forward"]


def test_mixed_oom_and_refusals_raise_cudnn_error_not_cached(capture_checks):
    d = FakeDirection([Choice("A", oom), Choice("B", refused)])
    cache = AlgoCache("t")
    with pytest.raises(cudnnconv.CuDNNError) as info:
        search.try_all(d, "args", cache, KEY, opts())
    assert not isinstance(info.value, MemoryError)
    assert "algo A -> MemoryError" in info.value.message
    assert cache.peek(KEY) is None     # memory may be free next time


def test_all_oom_raises_oom_error_and_is_not_cached(capture_checks):
    d = FakeDirection([Choice("A", oom), Choice("B", cudnn_oom)])
    cache = AlgoCache("t")
    with pytest.raises(cudnnconv.CuDNNOutOfMemoryError) as info:
        search.try_all(d, "args", cache, KEY, opts())
    assert isinstance(info.value, MemoryError)
    assert "algo A" in info.value.message and "algo B" in info.value.message
    assert cache.peek(KEY) is None and len(cache) == 0
    # next time memory is free: the search runs again and succeeds
    d._candidates = [Choice("A"), Choice("B")]
    assert search.try_all(d, "args", cache, KEY, opts()).name == "A"
    assert d.searches == 2


def test_no_candidates(capture_checks):
    d = FakeDirection([])
    with pytest.raises(cudnnconv.CuDNNError, match="no candidates") as info:
        search.try_all(d, "args", AlgoCache("t"), KEY, opts())
    assert info.value.status == NOT_SUPPORTED


def test_other_exceptions_propagate_and_are_not_cached(capture_checks):
    d = FakeDirection([Choice("A", lambda: KeyError("bug")), Choice("B")])
    cache = AlgoCache("t")
    with pytest.raises(KeyError):
        search.try_all(d, "args", cache, KEY, opts())
    assert d.ran == ["A"] and len(cache) == 0


def test_capture_check_blocks_a_search_but_not_a_cached_choice(monkeypatch):
    def capturing(op):
        raise search.CaptureError("capturing " + op)
    monkeypatch.setattr(search, "check_not_capturing", capturing)
    d = FakeDirection([Choice("A")])
    cache = AlgoCache("t")
    with pytest.raises(search.CaptureError):
        search.try_all(d, "args", cache, KEY, opts())
    assert d.ran == []
    cache.put(KEY, Choice("Z"))
    assert search.try_all(d, "args", cache, KEY, opts()).name == "Z"
    assert issubclass(cudnnconv.CaptureError, RuntimeError)


def test_none_ran_describes_itself():
    n = search.NoneRan(3000, "m")
    assert n.benchmarked and n.workspace == 0 and "cached failure" in n.describe()


def test_default_only_failure_does_not_block_a_benchmark_search(capture_checks):
    """deterministic=True without benchmark tries only the default; that it
    could not run says nothing about the other deterministic candidates that
    deterministic=True with benchmark=True (the same key) would search."""
    d = FakeDirection([Choice("A"), Choice("B")], default=Choice("DEF", refused))
    cache = AlgoCache("t")
    with pytest.raises(cudnnconv.CuDNNError):
        search.try_all(d, "args", cache, KEY, opts(deterministic=True))
    got = search.try_all(d, "args", cache, KEY, opts(benchmark=True, deterministic=True))
    assert got.name == "A" and got.benchmarked and d.searches == 1


class RefusingDirection(FakeDirection):
    """A direction whose ranking itself fails (the graph engine's finalize, a legacy find)."""

    def __init__(self, error):
        FakeDirection.__init__(self, [])
        self.error = error

    def candidates(self, args, opts):
        self.searches += 1
        raise self.error()


def test_a_refusal_while_ranking_is_cached(capture_checks):
    """cuDNN's NOT_SUPPORTED while ranking is the problem's: the next call fails at once, with
    the same status and context, without building the graph again."""
    d = RefusingDirection(lambda: refused(3007))
    cache = AlgoCache("t")
    with pytest.raises(cudnnconv.CuDNNError) as first:
        search.try_all(d, "ARGS", cache, KEY, opts())
    assert first.value.status == 3007 and "context of ARGS" in str(first.value)
    assert isinstance(cache.peek(KEY), search.NoneRan) and cache.peek(KEY).status == 3007
    with pytest.raises(cudnnconv.CuDNNError, match="cached result of an earlier search") as again:
        search.try_all(d, "ARGS", cache, KEY, opts(benchmark=True))
    assert again.value.status == 3007 and "context of ARGS" in str(again.value)
    assert d.searches == 1


@pytest.mark.parametrize("error", [lambda: refused(BAD_PARAM), lambda: refused(EXEC_FAILED), cudnn_oom],
                         ids=["bad_param", "execution_failed", "out_of_memory"])
def test_other_failures_while_ranking_are_not_cached(capture_checks, error):
    """Only a refusal is cached: a bad parameter, a failed execution or a lack of memory may be
    the moment's, and the next call ranks again."""
    d = RefusingDirection(error)
    cache = AlgoCache("t")
    for _ in range(2):
        with pytest.raises(cudnnconv.CuDNNError):
            search.try_all(d, "ARGS", cache, KEY, opts())
    assert cache.peek(KEY) is None and d.searches == 2


def test_a_refusal_of_the_default_is_not_cached(capture_checks):
    """deterministic without benchmark asks only the default, and caches nothing (as before)."""
    class D(FakeDirection):
        def default(self, args, opts):
            self.default_calls += 1
            raise refused()
    d = D([])
    cache = AlgoCache("t")
    for _ in range(2):
        with pytest.raises(cudnnconv.CuDNNError):
            search.try_all(d, "ARGS", cache, KEY, opts(deterministic=True))
    assert d.default_calls == 2 and cache.peek(KEY) is None
