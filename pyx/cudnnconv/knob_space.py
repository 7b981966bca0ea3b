"""The candidates of an exhaustive search: every engine, every knob setting (policy tier, no cuDNN).

A benchmarking search times what cuDNN's heuristics propose, with the knobs they chose.  An
exhaustive search (``benchmark_settings(exhaustive=True)``) also builds every engine of the
operation graph (``CUDNN_ATTR_OPERATIONGRAPH_ENGINE_GLOBAL_COUNT``) with each setting of its knobs
that ``CUDNN_ATTR_ENGINE_KNOB_INFO`` describes (a type, a minimum, a maximum and a stride per knob),
and times them under a wall-clock budget per problem.  This module holds the parts that need no
cuDNN, so the CPU tests can prove them:

- ``values`` and ``settings``: the knob settings of one engine, as the sorted ``((type, value), ...)``
  tuples the graph engine's tags and tuning records use.  A knob whose range holds more than
  ``MAX_VALUES`` values keeps that many, evenly spread and both ends kept; an engine whose knobs
  combine into more than ``MAX_SETTINGS`` settings keeps that many of the combinations, evenly
  spread over them in their order, the first and the last kept.  Both are deterministic, so two
  processes try the same candidates.
- ``Budget``: the per-problem wall clock, spent on building plans and on timing them alike (a
  config that compiles at runtime can cost hundreds of milliseconds to finalize).
- ``Progress``: a count of candidates and the best time so far, logged at INFO on
  ``cudnnconv``'s logger at most once a second and once at the end: quiet unless the application
  asks for INFO.
"""
import collections
import itertools
import math
import time

from cudnnconv._log import logger as _logger

KnobInfo = collections.namedtuple("KnobInfo", "type minimum maximum stride")
KnobInfo.__doc__ = "One knob of an engine, as CUDNN_ATTR_ENGINE_KNOB_INFO describes it."

MAX_VALUES = 16            # values of one knob, at most
MAX_SETTINGS = 64          # knob settings of one engine, at most
DEFAULT_BUDGET_S = 5.0     # seconds of search per problem (69 ResNet-50 problems: under 6 minutes)


def _spread(n, k):
    """``k`` indices of ``range(n)`` evenly spread, 0 and n - 1 among them (all of them if k >= n)."""
    if k >= n:
        return list(range(n))
    if k == 1:
        return [0]
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def values(info, cap=MAX_VALUES):
    """The values a knob takes: ``minimum``, ``minimum + stride``, ... up to ``maximum``, at most
    ``cap`` of them (evenly spread, both ends kept).  A knob that describes no value (maximum below
    minimum) has none; a stride below 1 counts as 1."""
    lo, hi, step = int(info.minimum), int(info.maximum), max(int(info.stride), 1)
    if hi < lo:
        return []
    n = (hi - lo) // step + 1
    return [lo + i * step for i in _spread(n, cap)]


def settings(infos, cap=MAX_SETTINGS, value_cap=MAX_VALUES):
    """The knob settings of an engine with knobs ``infos``: tuples ``((type, value), ...)`` sorted
    by type, at most ``cap`` of them (see the module doc).  An engine without knobs has one
    setting, the empty one; a knob with no value drops out (cuDNN then uses its default).  A knob
    type listed twice counts once (its first description)."""
    seen, knobs = set(), []
    for info in infos:
        t = int(info.type)
        if t in seen:
            continue
        seen.add(t)
        vals = values(info, value_cap)
        if vals:
            knobs.append((t, vals))
    knobs.sort()
    sizes = [len(v) for _, v in knobs]
    total = math.prod(sizes)
    if total <= cap:
        combos = itertools.product(*[v for _, v in knobs])
        return [tuple(zip([t for t, _ in knobs], c)) for c in combos]
    out = []
    for flat in _spread(total, cap):
        setting, rest = [], flat
        for (t, vals), n in zip(reversed(knobs), reversed(sizes)):     # the last knob varies fastest
            rest, i = divmod(rest, n)
            setting.append((t, vals[i]))
        out.append(tuple(sorted(setting)))
    return out


def round_robin(per_engine):
    """``(engine, setting)`` pairs from ``[(engine, [setting, ...]), ...]``: every engine's first
    setting, then every engine's second, and so on, so that a budget that runs out has covered the
    engines evenly rather than the first ones wholly."""
    queues = [(e, list(s)) for e, s in per_engine]
    depth = max((len(s) for _, s in queues), default=0)
    for i in range(depth):
        for e, s in queues:
            if i < len(s):
                yield e, s[i]


class Budget:
    """A wall-clock budget of ``seconds``, started now (``clock``: seconds, monotonic)."""

    def __init__(self, seconds, clock=time.perf_counter):
        self.seconds = float(seconds)
        self.clock = clock
        self.start = clock()

    def spent(self):
        return self.clock() - self.start

    def exhausted(self):
        return self.spent() >= self.seconds


class Progress:
    """Counts the candidates of one search and reports the count and the best time so far, at most
    once every ``every_s`` seconds (``report``: a function of one string; default: INFO on
    cudnnconv's logger)."""

    def __init__(self, what, report=None, every_s=1.0, clock=time.perf_counter):
        self.what = what
        self.report = report if report is not None else _logger.info
        self.every_s = every_s
        self.clock = clock
        self.count = 0
        self.best = None
        self.best_ms = math.inf
        self._last = clock()

    def add(self, tag, ms):
        """One candidate timed (``ms`` its time; NaN where it did not run)."""
        self.count += 1
        if ms == ms and ms < self.best_ms:
            self.best, self.best_ms = tag, ms
        now = self.clock()
        if now - self._last >= self.every_s:
            self._last = now
            self.report(self.line())

    def done(self):
        """The search is over: report its count and best once more, marked ``(done)``."""
        self.report(self.line() + " (done)")

    def line(self):
        best = "none yet" if self.best is None else "%s %.4f ms" % (self.best, self.best_ms)
        return "cudnnconv: exhaustive search of %s: %d candidates timed, best %s" % (self.what, self.count, best)
