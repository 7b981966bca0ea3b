"""The exhaustive search's wall-clock budget and progress report (policy tier, no cuDNN).

A benchmarking search times what cuDNN's heuristics propose, with the knobs they chose.  An
exhaustive search (``benchmark_settings(exhaustive=True)``) also tries every engine of the
operation graph (``CUDNN_ATTR_OPERATIONGRAPH_ENGINE_GLOBAL_COUNT``) and its knob settings, in a
worker process (``cudnnconv.knob_sandbox`` says why), or, where the knob sweep is off or its worker
cannot run, every engine with cuDNN's default knobs in the searching process.  It works under a
wall-clock budget per problem.  This module holds the parts that need no cuDNN, so the CPU tests
can prove them:

- ``Budget``: the per-problem wall clock, spent on building plans and on timing them alike (a
  config that compiles at runtime can cost hundreds of milliseconds to finalize).
- ``Progress``: a count of candidates and the best time so far, logged at INFO on
  ``cudnnconv``'s logger at most once a second and once at the end: quiet unless the application
  asks for INFO.
"""
import math
import time

from cudnnconv._log import logger as _logger

DEFAULT_BUDGET_S = 5.0     # seconds of search per problem (69 ResNet-50 problems: about 6 minutes in all)


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
