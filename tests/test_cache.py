"""AlgoCache: bounded LRU, observable, clearable, thread-safe."""
import threading

import pytest

from cudnnconv.cache import AlgoCache, CacheInfo


def test_get_put_hits_misses():
    c = AlgoCache("t", maxsize=4)
    assert c.get("a") is None
    c.put("a", 1)
    assert c.get("a") == 1
    assert c.get("a") == 1
    assert c.get("b") is None
    assert c.info() == CacheInfo(size=1, maxsize=4, hits=2, misses=2)
    assert len(c) == 1
    assert c.name == "t"


def test_put_overwrites():
    c = AlgoCache("t", maxsize=4)
    c.put("a", 1)
    c.put("a", 2)
    assert c.get("a") == 2 and len(c) == 1


def test_lru_order_and_eviction():
    c = AlgoCache("t", maxsize=3)
    for k in "abc":
        c.put(k, k.upper())
    assert [k for k, _ in c.items()] == ["a", "b", "c"]
    assert c.get("a") == "A"                       # a becomes most recent
    assert [k for k, _ in c.items()] == ["b", "c", "a"]
    c.put("d", "D")                                # evicts b, the least recent
    assert [k for k, _ in c.items()] == ["c", "a", "d"]
    assert c.peek("b") is None
    c.put("c", "C2")                               # a put refreshes too
    c.put("e", "E")                                # evicts a
    assert [k for k, _ in c.items()] == ["d", "c", "e"]
    assert c.info().size == 3


def test_peek_does_not_count_or_reorder():
    c = AlgoCache("t", maxsize=2)
    c.put("a", 1)
    c.put("b", 2)
    assert c.peek("a") == 1 and c.peek("zz") is None
    assert c.info().hits == 0 and c.info().misses == 0
    c.put("c", 3)                                  # a was only peeked: still the oldest
    assert c.peek("a") is None and c.peek("b") == 2


def test_set_maxsize_evicts_oldest():
    c = AlgoCache("t", maxsize=10)
    for i in range(10):
        c.put(i, i)
    c.set_maxsize(4)
    assert [k for k, _ in c.items()] == [6, 7, 8, 9]
    assert c.info().maxsize == 4
    c.set_maxsize(0)
    assert len(c) == 0
    c.put("x", 1)
    assert len(c) == 0 and c.get("x") is None
    c.set_maxsize(None)
    for i in range(10000):
        c.put(i, i)
    assert len(c) == 10000 and c.info().maxsize is None


@pytest.mark.parametrize("bad", [-1, 1.5, "10"])
def test_set_maxsize_rejects(bad):
    c = AlgoCache("t", maxsize=3)
    with pytest.raises(ValueError, match="maxsize"):
        c.set_maxsize(bad)
    assert c.info().maxsize == 3


def test_clear_resets_everything():
    c = AlgoCache("t", maxsize=3)
    c.put("a", 1)
    c.get("a")
    c.get("b")
    c.clear()
    assert c.info() == CacheInfo(0, 3, 0, 0)
    assert c.items() == []


def test_default_is_bounded():
    c = AlgoCache("t")
    assert c.info().maxsize is not None and c.info().maxsize > 0
    for i in range(c.info().maxsize + 50):
        c.put(i, i)
    assert len(c) == c.info().maxsize


def test_thread_safety():
    c = AlgoCache("t", maxsize=64)
    n_threads, n_ops = 16, 3000
    errors = []
    gets = [0] * n_threads
    barrier = threading.Barrier(n_threads)

    def work(tid):
        try:
            barrier.wait()
            for i in range(n_ops):
                key = (tid * 7 + i) % 200
                if i % 3 == 0:
                    c.put(key, ("v", key))
                else:
                    v = c.get(key)
                    gets[tid] += 1
                    if v is not None and v != ("v", key):
                        errors.append((key, v))
                if i % 500 == 0:
                    c.info()
                    c.items()
        except Exception as e:      # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    info = c.info()
    assert info.hits + info.misses == sum(gets)
    assert info.size == len(c.items()) <= 64
    assert info.size == 64          # far more distinct keys than room: the cache is full
    for k, v in c.items():
        assert v == ("v", k)
    assert len({k for k, _ in c.items()}) == info.size
