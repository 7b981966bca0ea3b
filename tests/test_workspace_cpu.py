"""cudnnconv.workspace.kept_pointer, without a GPU (the pool is replaced by a recorder)."""
import threading
import time
import types

import pytest

from cudnnconv import search, workspace


class Block:
    def __init__(self, ptr):
        self.ptr = ptr


class Choice:
    def __init__(self, nbytes):
        self.workspace = nbytes
        self.ws_mem = None
        self.ws_stream = 0
        self.ws_more = None


@pytest.fixture
def pool(monkeypatch):
    taken = []

    def allocate(nbytes):
        taken.append(nbytes)
        time.sleep(0.001)        # a real allocation takes long enough for another thread to get in
        return Block(0x1000 * len(taken))
    monkeypatch.setattr(workspace, "allocate", allocate)
    return taken


def test_no_workspace_takes_nothing(pool):
    assert workspace.kept_pointer(Choice(0), 7) == 0
    assert pool == []


def test_one_block_per_stream_kept_across_calls(pool):
    c = Choice(4096)
    first = workspace.kept_pointer(c, 7)
    assert workspace.kept_pointer(c, 7) == first and pool == [4096]      # kept: not taken again
    other = workspace.kept_pointer(c, 9)
    assert other != first and pool == [4096, 4096]                       # another stream: its own block
    assert workspace.kept_pointer(c, 9) == other and workspace.kept_pointer(c, 7) == first
    assert c.ws_stream == 7 and c.ws_mem.ptr == first and c.ws_more[9].ptr == other


def test_out_of_memory_keeps_nothing(monkeypatch):
    def allocate(nbytes):
        raise MemoryError("out of memory")
    monkeypatch.setattr(workspace, "allocate", allocate)
    c = Choice(4096)
    with pytest.raises(MemoryError):
        workspace.kept_pointer(c, 7)
    assert c.ws_mem is None and c.ws_more is None


def test_threads_sharing_a_choice_take_one_block_per_stream(pool):
    c = Choice(1 << 20)
    got = {s: [] for s in (1, 2)}
    start = threading.Barrier(16)

    def worker(s):
        start.wait(timeout=30)
        for _ in range(200):
            got[s].append(workspace.kept_pointer(c, s))
    threads = [threading.Thread(target=worker, args=(1 + i % 2,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive()
    assert len(pool) == 2
    assert len(set(got[1])) == 1 and len(set(got[2])) == 1 and got[1][0] != got[2][0]


def test_past_the_kept_streams_a_block_is_taken_per_call(pool, monkeypatch):
    monkeypatch.setattr(workspace, "capturing", lambda stream: False)
    c = Choice(64)
    kept = [workspace.kept_pointer(c, s) for s in range(1, workspace.KEPT_STREAMS + 1)]
    assert len(set(kept)) == workspace.KEPT_STREAMS and len(c.ws_more) == workspace.KEPT_STREAMS - 1
    extra = [workspace.kept_pointer(c, 1000 + i) for i in range(5)]
    assert len(c.ws_more) == workspace.KEPT_STREAMS - 1                  # nothing more kept
    assert len(set(extra)) == 5 and not set(extra) & set(kept)           # a new block each call
    assert workspace._per_call.mem.ptr == extra[-1]                      # alive past the launch
    assert [workspace.kept_pointer(c, s) for s in range(1, workspace.KEPT_STREAMS + 1)] == kept


def test_a_capturing_stream_keeps_its_block_past_the_bound(pool, monkeypatch):
    c = Choice(64)
    monkeypatch.setattr(workspace, "capturing", lambda stream: False)
    for s in range(1, workspace.KEPT_STREAMS + 1):
        workspace.kept_pointer(c, s)
    monkeypatch.setattr(workspace, "capturing", lambda stream: stream == 77)
    first = workspace.kept_pointer(c, 77)
    assert workspace.kept_pointer(c, 77) == first and c.ws_more[77].ptr == first   # kept: a replay uses it
    assert len(c.ws_more) == workspace.KEPT_STREAMS


class LegacyLike(Choice):
    keeps_workspace = False


class Direction:
    def __init__(self):
        self.ran = []

    def execute(self, args, choice, ptr):
        self.ran.append(ptr)


class Args:
    def __init__(self, stream):
        self.stream = stream


def test_a_choice_that_keeps_none_takes_a_block_per_call_outside_capture(pool, monkeypatch):
    monkeypatch.setattr(workspace, "capturing", lambda stream: False)
    d, c = Direction(), LegacyLike(256)
    search.run_choice(d, Args(7), c)
    search.run_choice(d, Args(7), c)
    assert pool == [256, 256] and c.ws_mem is None and c.ws_more is None   # taken per call, none kept
    assert d.ran[0] and d.ran[1] and d.ran[0] != d.ran[1]


def test_a_choice_that_keeps_none_keeps_its_block_under_capture(pool, monkeypatch):
    monkeypatch.setattr(workspace, "capturing", lambda stream: True)
    d, c = Direction(), LegacyLike(256)
    search.run_choice(d, Args(7), c)
    search.run_choice(d, Args(7), c)
    assert pool == [256] and c.ws_mem is not None and d.ran == [c.ws_mem.ptr] * 2


def test_the_per_thread_default_stream_is_a_stream_per_thread(pool, monkeypatch):
    """cudaStreamPerThread is one handle value but another stream in every thread: threads sharing
    a choice (the legacy engine's cache) must not share its block on it."""
    monkeypatch.setattr(workspace, "capturing", lambda stream: True)
    d, c = Direction(), LegacyLike(256)
    search.run_choice(d, Args(workspace.PER_THREAD_DEFAULT_STREAM), c)
    t = threading.Thread(target=search.run_choice, args=(d, Args(workspace.PER_THREAD_DEFAULT_STREAM), c))
    t.start()
    t.join(timeout=30)
    assert not t.is_alive()
    assert len(d.ran) == 2 and d.ran[0] != d.ran[1] and pool == [256, 256]
    search.run_choice(d, Args(workspace.PER_THREAD_DEFAULT_STREAM), c)
    assert d.ran[2] == d.ran[0]                                          # this thread's block again


def test_a_choice_that_keeps_its_workspace_keeps_it_outside_capture(pool, monkeypatch):
    monkeypatch.setattr(workspace, "capturing", lambda stream: False)
    d, c = Direction(), Choice(256)                                      # the graph engine's kind
    search.run_choice(d, Args(7), c)
    search.run_choice(d, Args(7), c)
    assert pool == [256] and d.ran == [c.ws_mem.ptr] * 2


def test_current_stream_capturing_asks_about_the_current_stream(monkeypatch):
    """The current stream's pointer is what is asked about; a query that fails (another stream
    capturing in global mode) counts as capturing, so nothing that must not run in a capture runs."""
    cupy = pytest.importorskip("cupy")
    monkeypatch.setattr(cupy.cuda, "get_current_stream", lambda: types.SimpleNamespace(ptr=1234))
    asked = []
    monkeypatch.setattr(workspace, "capturing", lambda s: asked.append(s) or s == 99)
    assert workspace.current_stream_capturing() is False and asked == [1234]

    def fails(stream):
        raise cupy.cuda.runtime.CUDARuntimeError(900)      # cudaErrorStreamCaptureUnsupported
    monkeypatch.setattr(workspace, "capturing", fails)
    assert workspace.current_stream_capturing() is True
