"""A bounded, locked, observable LRU cache for algorithm choices (policy tier)."""
import collections
import threading

from cudnnconv.core.state import invalidate as _invalidate

CacheInfo = collections.namedtuple("CacheInfo", "size maxsize hits misses")


def check_maxsize(maxsize):
    """A cache bound is None (unbounded) or a non-negative int."""
    if maxsize is not None and (isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 0):
        raise ValueError("maxsize must be None or a non-negative int, got %r" % (maxsize,))


class AlgoCache:
    """Maps a ProblemKey to the choice the search made for it.

    Bounded (least recently used entries go first), safe to share between
    threads (one lock), clearable and observable (size, hits, misses).
    Dropping or replacing an entry by a different choice bumps
    cudnnconv.core.state's generation, so that no call plan bound to a
    dropped choice runs it again (an equal choice put again changes nothing).
    ``maxsize=None`` means unbounded.

    Observers (for the persistent tuning cache, cudnnconv.tuning):
    ``on_put`` callables are called as ``fn(cache, key, value)`` after each
    put; ``on_miss`` callables as ``fn(cache, key)`` when a get finds
    nothing, after which the get looks once more (a read-through fill).
    Both run outside the lock; both lists are empty by default, and an
    observer that raises is dropped from neither list but never breaks the
    cache operation.
    """

    def __init__(self, name, maxsize=4096):
        self.name = name
        self._maxsize = maxsize
        self._data = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.on_put = []
        self.on_miss = []

    def get(self, key):
        if self.on_miss:
            with self._lock:
                found = key in self._data
            if not found:
                _notify(self.on_miss, self, key)
        with self._lock:
            try:
                value = self._data[key]
            except KeyError:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def peek(self, key):
        """The entry for ``key`` without counting a hit or a miss."""
        with self._lock:
            return self._data.get(key)

    def put(self, key, value):
        with self._lock:
            old = self._data.get(key)
            same = old is not None and _same_choice(old, value)
            if same:
                # Keep the object already cached: bound call plans run it, and the workspace it keeps
                # may be the one a captured CUDA graph replays on (cudnnconv.workspace).
                value = old
            self._data[key] = value
            self._data.move_to_end(key)
            self._evict()
        if old is not None and not same:
            _invalidate()           # a call plan bound to the old choice must not run it again
        if self.on_put:
            _notify(self.on_put, self, key, value)

    def _evict(self):
        if self._maxsize is not None and len(self._data) > self._maxsize:
            while len(self._data) > self._maxsize:
                self._data.popitem(last=False)
            _invalidate()           # bound call plans re-check the cache (see cudnnconv.core.state)

    def set_maxsize(self, maxsize):
        check_maxsize(maxsize)
        with self._lock:
            self._maxsize = maxsize
            self._evict()

    def clear(self):
        with self._lock:
            self._data.clear()
            self.hits = 0
            self.misses = 0
        _invalidate()

    def items(self):
        with self._lock:
            return list(self._data.items())

    def info(self):
        with self._lock:
            return CacheInfo(len(self._data), self._maxsize, self.hits, self.misses)

    def __len__(self):
        return len(self._data)


def _same_choice(a, b):
    """Whether ``b`` is the same choice as ``a`` (the same object, or one that reports the same
    algorithm or engine config, math, workspace, timing and flags), so that putting it changes
    nothing a bound call plan runs.  A deterministic search without benchmark puts its default
    choice anew on every call; without this, each such put made every thread's bound plans stale."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    try:
        return a.as_dict() == b.as_dict()
    except Exception:               # no as_dict (a refusal record): treat as different
        return False


def _notify(observers, *args):
    for fn in list(observers):
        try:
            fn(*args)
        except Exception as e:          # an observer never breaks the cache
            from cudnnconv import _log
            _log.debug("cache observer %r failed: %s: %s", fn, type(e).__name__, e)
