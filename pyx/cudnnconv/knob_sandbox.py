"""The exhaustive search's knob sweep, run in a worker process (policy tier: no cuDNN here).

Why a worker process.  Each engine of cuDNN's graph API describes its knobs
(``CUDNN_ATTR_ENGINE_KNOB_INFO``: a type and a range of values), and a setting of them is a
config cuDNN builds.  A range says which values one knob takes, not which combinations the engine
supports: on an H200 with cuDNN 9.19 (2026-12-02), one combination for an fp16 channels-last 3x3
input gradient finalized, then ran a kernel that had not returned 500 s later.  Such a kernel
cannot be stopped without losing the CUDA context of the process that launched it.  So the
settings are tried in a process of their own (``python -m cudnnconv.knob_sweep_worker``), on its
own arrays of the same problem: a setting that does not finish within its time is the worker's
loss, not the caller's.  The worker is stopped, the setting is remembered as one never to try
again in this process (``HUNG``), and a fresh worker goes on past it while the budget lasts.

What the worker does, per problem (``cudnnconv.knob_sweep_worker``): it runs the heuristics' first
config as the reference, then tries, in this order until its share of the budget runs out, the
heuristics' configs with their knobs, every engine with its default knobs, the settings one knob
away from the fastest so far (a coordinate search), and the rest of every engine's settings
(``cudnnconv.knob_space``).  Each setting is built, run once on a poisoned output and checked
against the reference (a config whose result is wrong is dropped), then timed as a benchmarking
search times candidates (``cudnnconv.gpu_timing``, with the caller's repeats and warm-up).  The
searching process then builds the ``RETIME`` fastest and times them itself beside the heuristics'
configs: the choice is always made from times taken in the process that will run it.

The protocol is one JSON object per line each way.  The searching process sends ``{"key": ...,
"seconds": s, "skip": [tags], "known": [[engine, knobs, ms], ...], "repeats": k, "warmup": w}``
(``known``: what a lost worker timed for this problem); the worker answers ``{"ready": pid}``
once, then per problem ``{"reference": tag, "ms": t}``, and for each setting ``{"build": tag}``
before building it, ``{"start": tag, "tag": read-back tag}`` before its first run, ``{"ran": tag,
"ms": t}`` after it and a ``{"result": {...}}``; ``{"done": true}`` ends the problem.  ``{"error":
text}`` says why a problem could not be swept; where the failure may have left the worker's CUDA
context unsound, the worker exits after it.  Each phase of a setting has its own wait: the build
``BUILD_TIMEOUT_S``, the first run ``run_timeout_s`` of the reference's run, the timing
``run_timeout_s`` of the setting's own first run and the number of runs it makes.  A setting that outlasts its wait (hung) or
whose worker exits under it (crashed) is skipped from then on, under both its requested and its
read-back tag; a fresh worker goes on past it, at most ``MAX_RESTARTS`` times per problem and
while ``RESTART_MIN_S`` of the budget are left.  A worker that cannot start turns the sweep off in
this process (``shutdown()``, which turning the sweep or the exhaustive search off calls, resets
that).  A worker exits with the process that started it.
"""
import collections
import json
import math
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time

from cudnnconv import knob_space, records
from cudnnconv._log import logger as _logger

SHARE = 0.7                 # of the exhaustive budget, for the sweep; the rest times what it found
MIN_SWEEP_S = 0.5           # a sweep with less time than this is not started
RETIME = 4                  # the sweep's fastest settings built and timed again in the searching process
START_TIMEOUT_S = 60.0      # a worker's start: Python, CuPy and cuDNN's libraries loaded, a handle made
BUILD_TIMEOUT_S = 60.0      # one config's build (a config compiled at runtime can take seconds)
RUN_TIMEOUT_FLOOR_S = 10.0  # a setting's first run, and then its timing, each at least this long before it counts as hung
RUN_TIMEOUT_FACTOR = 500    # ... or this many times the reference's run (first run) or its own (timing), if longer
SLACK_S = 60.0              # past the budget, for a worker between settings (a reference, the end of a problem)
MAX_RESTARTS = 3            # fresh workers per problem after a hang or a crash
RESTART_MIN_S = 2.0         # a restart needs at least this much budget left to be worth its start

WORKER_ARGV = [sys.executable, "-m", "cudnnconv.knob_sweep_worker"]

HUNG = set()                # (key text, tag): settings that did not finish; never tried again here
_lock = threading.Lock()
_worker = None
_start_failed = None        # why a worker could not start: the sweep is off in this process until shutdown()


def _after_fork_in_child():
    """A forked child has its own sweep: a fresh lock (the parent's may have been held at the fork)
    and no worker (the parent's pipes and process are the parent's)."""
    global _lock, _worker
    _lock = threading.Lock()
    _worker = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Result(collections.namedtuple("Result", "tag engine_index knobs status ms error workspace notes behavior detail")):
    """One setting the worker tried.  ``status``: ``timed`` (``ms`` its median time, ``error`` its
    relative difference from the reference), ``wrong`` (``error`` over the tolerance), ``failed``
    (did not finalize or run: ``detail``), ``excluded`` (by the call's flags or the workspace budget:
    ``detail``), ``hung`` (did not finish: its worker was stopped) or ``crashed`` (its worker died)."""

    def reason(self):
        """Why explain() lists it as not timed in the searching process."""
        if self.status == "timed":
            return "knob sweep: %.4f ms in its worker process (rel. difference %.1e), not among its %d fastest" % (
                self.ms, self.error, RETIME)
        if self.status == "wrong":
            return "knob sweep: wrong results in its worker process (rel. difference %.3g)" % self.error
        if self.status == "hung":
            return "knob sweep: did not finish within %s; its worker was stopped" % self.detail
        if self.status == "crashed":
            return "knob sweep: its worker process died running it (%s)" % self.detail
        return "knob sweep: %s" % self.detail


def _result(d):
    knobs = knob_space.as_setting(d.get("knobs", ()))
    ms = d.get("ms")
    err = d.get("error")
    return Result(str(d["tag"]), int(d["engine_index"]), knobs, str(d["status"]),
                  float(ms) if ms is not None else math.nan, float(err) if err is not None else math.nan,
                  int(d.get("workspace", 0)), tuple(d.get("notes", ())), tuple(d.get("behavior", ())),
                  str(d.get("detail", "")))


class Sweep:
    """What one problem's sweep found: ``results`` (Result, in the order tried), ``ran`` (whether
    any setting was timed), ``problems`` (why a worker could not start or stopped, if it did),
    ``workers`` (how many were started) and ``seconds`` (its wall time)."""

    def __init__(self):
        self.results = []
        self.problems = []
        self.workers = 0
        self.seconds = 0.0
        self.reference = None

    @property
    def ran(self):
        return any(r.status == "timed" for r in self.results)

    def fastest(self, k, exclude=()):
        """The ``k`` fastest timed results whose tags are not in ``exclude``, fastest first."""
        timed = sorted((r for r in self.results if r.status == "timed" and r.tag not in exclude),
                       key=lambda r: (r.ms, r.tag))
        out, seen = [], set()
        for r in timed:
            if r.tag not in seen:
                seen.add(r.tag)
                out.append(r)
        return out[:k]

    def __repr__(self):
        return "Sweep(%d tried, %d timed, %d workers, %.2f s%s)" % (
            len(self.results), sum(r.status == "timed" for r in self.results), self.workers, self.seconds,
            (", problems: " + "; ".join(self.problems)) if self.problems else "")


def run_timeout_s(ms, runs=1):
    """How long a setting's first run (``ms``: the reference's run) or its timing (``ms``: its own
    first run; ``runs``: how many runs the timing makes at most, warm-up and spin kernels
    counted as runs of 2 ms) may take before it counts as hung."""
    if ms is None or not ms == ms:
        return RUN_TIMEOUT_FLOOR_S
    return max(RUN_TIMEOUT_FLOOR_S, RUN_TIMEOUT_FACTOR * ms / 1e3, 3 * runs * (ms + 2.0) / 1e3)


def timing_runs(timing):
    """The most runs a setting's timing makes with these benchmark settings (gpu_timing.time_samples:
    the warm-up, a probe sample, then the samples; a short kernel's sample batches runs, but those
    stay under a sample's own floor of time)."""
    return int(timing.get("warmup", 1)) + 1 + int(timing.get("repeats", 5))


def _package_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def worker_env():
    """The worker's environment: this one, with this package first on its path and no tuning file
    (the worker's choices are not choices)."""
    env = dict(os.environ)
    env.pop("CUDNNCONV_TUNING_CACHE", None)
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = _package_root() + (os.pathsep + path if path else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Worker:
    """One worker process and its pipes.  ``read(deadline)`` returns its next message, or None on
    the deadline (``time.monotonic()``), or raises EOFError when it has exited."""

    def __init__(self, argv=None):
        self.owner = os.getpid()         # a forked child of that process must not use or stop it
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(list(argv or WORKER_ARGV), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, env=worker_env(), start_new_session=True)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.buf = b""
        self.fd = self.proc.stdout.fileno()

    def send(self, obj):
        self.proc.stdin.write((json.dumps(obj) + "\n").encode("utf-8"))
        self.proc.stdin.flush()

    def read(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if not self.sel.select(left):
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise EOFError(self.stderr_tail())
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            obj = json.loads(line.decode("utf-8"), parse_constant=records.no_json_constant)
        except ValueError:
            raise EOFError("a line that is not JSON: %r" % line[:200])
        if not isinstance(obj, dict):
            raise EOFError("a line that is not a JSON object: %r" % line[:200])
        return obj

    def stderr_tail(self, n=400):
        try:
            self.log.seek(0, os.SEEK_END)
            size = self.log.tell()
            self.log.seek(max(0, size - n))
            text = self.log.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""
        return text.replace("\n", " | ")

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        """Stop it at once (a hung kernel does not answer anything gentler), and reap it."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _logger.warning("cudnnconv: knob sweep worker %d did not exit after SIGKILL", self.proc.pid)
        self.close()

    def close(self):
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except (OSError, ValueError):
                pass
        try:
            self.sel.close()
        except (OSError, ValueError):
            pass
        try:
            self.log.close()
        except (OSError, ValueError):
            pass

    def stop(self):
        """Ask it to finish (stdin closed), then make sure it has."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        if self.alive():
            self.kill()
        else:
            self.close()


def _start(argv, deadline):
    """A started worker that has said it is ready, or a string saying why there is none."""
    try:
        w = Worker(argv)
    except OSError as e:
        return "the knob sweep's worker could not start (%s)" % e
    try:
        msg = w.read(deadline)
    except EOFError as e:
        w.kill()
        return "the knob sweep's worker exited at its start (%s)" % e
    if msg is not None and "error" in msg:
        w.kill()
        return "the knob sweep's worker cannot run here (%s)" % msg["error"]
    if msg is None or "ready" not in msg:
        tail = w.stderr_tail()
        w.kill()
        return "the knob sweep's worker did not start in time%s" % ((" (%s)" % tail) if tail else "")
    return w


def shutdown():
    """Stop this process's worker, if one runs: at exit, when the exhaustive search or its knob
    sweep is turned off (``benchmark_settings``), and for tests.  A worker holds a CUDA context and
    cuDNN's libraries (some hundreds of MiB of device memory) while it waits for the next problem."""
    global _worker, _start_failed
    with _lock:
        _start_failed = None
        if _worker is not None:
            if _worker.owner == os.getpid():
                _worker.stop()
            _worker = None


import atexit  # noqa: E402
atexit.register(shutdown)


def sweep(key, seconds, progress=None, argv=None, timing=None):
    """Sweep the knob settings of the problem ``key`` names (a params.ProblemKey of the graph engine)
    in this process's worker, within about ``seconds``, counted once this process's worker is
    free and ready: a worker's start, a config being built or run when they run out, and a hung
    setting's wait come on top.  ``progress``: an exhaustive_budget.Progress told of every setting
    timed.  ``timing``: the benchmark settings the worker times with (``repeats``, ``warmup``).
    ``argv``: the worker's command (tests).  Returns a Sweep; never raises for what happens in
    the worker."""
    global _worker
    out = Sweep()
    key_json = records.key_to_json(key)
    key_text = records.canonical_json(key_json)
    with _lock:
        t0 = time.monotonic()
        skip = {t for k, t in HUNG if k == key_text}
        if _worker is not None and _worker.owner != os.getpid():
            _worker = None               # inherited through fork: its pipes are the parent's
        try:
            _sweep(out, key, key_text, key_json, float(seconds), skip, progress, argv, dict(timing or {}))
        except BaseException:
            # interrupted mid-problem (KeyboardInterrupt, say): the worker's next lines would
            # answer this problem, not the next one
            if _worker is not None:
                _worker.kill()
                _worker = None
            raise
        out.seconds = time.monotonic() - t0
    _logger.debug("cudnnconv: knob sweep of %s: %r", key.op, out)
    return out


def _lost(out, key, key_text, skip, setting, status, detail):
    """The setting ``setting`` ((requested tag, read-back tag or None, engine, knobs)) did not finish
    (``hung``) or took its worker with it (``crashed``): listed, and never tried again for this
    problem in this process, under either tag."""
    want, tag, idx, knobs = setting
    for t in (want, tag):
        if t:
            HUNG.add((key_text, t))
            skip.add(t)
    out.results.append(Result(tag or want, idx, knobs, status, math.nan, math.nan, 0, (), (), detail))
    if status == "hung":
        _logger.warning("cudnnconv: knob sweep of %s: setting %s did not finish within %s; its worker was "
                        "stopped and the setting is not tried again", key.op, tag or want, detail)


def _setting(msg, tag_field):
    return (str(msg[tag_field]), str(msg["tag"]) if msg.get("tag") is not None else None,
            int(msg.get("engine_index", -1)), knob_space.as_setting(msg.get("knobs", ())))


def _serve(w, out, key, key_text, end, skip, progress, runs):
    """Read one problem's answers from the worker ``w``.  Returns True when the problem is over
    (done, or nothing more to gain from a fresh worker), False when ``w`` was killed while a
    setting was under way and a fresh worker may go on past it."""
    setting = None                       # the setting under way: (requested tag, read-back tag, engine, knobs)
    phase = wait = None                  # 'build', 'run' or 'timing', and how long it may take
    try:
        while True:
            if setting is None:
                wait = max(end - time.monotonic(), 0.0) + SLACK_S
            msg = w.read(time.monotonic() + wait)
            if msg is None:
                w.kill()
                if setting is None:
                    out.problems.append("the knob sweep's worker did not answer within %.0f s past its budget"
                                        % SLACK_S)
                    return True
                _lost(out, key, key_text, skip, setting, "hung", "%.1f s (its %s)" % (wait, phase))
                return False
            if "build" in msg:
                setting, phase, wait = _setting(msg, "build"), "build", BUILD_TIMEOUT_S
            elif "start" in msg:
                setting, phase, wait = _setting(msg, "start"), "first run", run_timeout_s(out.reference)
            elif "ran" in msg:
                phase, wait = "timing", run_timeout_s(msg.get("ms"), runs)
            elif "result" in msg:
                r = _result(msg["result"])
                skip.add(r.tag)
                if setting is not None:
                    skip.update(t for t in setting[:2] if t)
                setting = None
                out.results.append(r)
                if r.status == "timed" and progress is not None:
                    progress.add(r.tag, r.ms)
            elif "reference" in msg:
                ms = msg.get("ms")
                out.reference = float(ms) if isinstance(ms, (int, float)) else None
            elif "error" in msg:
                out.problems.append("the knob sweep's worker: %s" % msg["error"])
            elif "done" in msg:
                return True
    except (EOFError, KeyError, TypeError, ValueError) as e:
        w.kill()
        detail = (str(e) or type(e).__name__)[:300]
        if setting is None:              # not while a setting was under way: no fresh worker would do better
            out.problems.append("the knob sweep's worker stopped (%s)" % detail)
            return True
        _lost(out, key, key_text, skip, setting, "crashed", detail)
        return False


def _sweep(out, key, key_text, key_json, seconds, skip, progress, argv, timing):
    """sweep()'s loop, under its lock: a worker (started or reused) per attempt, a fresh one after
    a setting that hung or crashed, at most MAX_RESTARTS times and while RESTART_MIN_S are left."""
    global _worker, _start_failed
    end = time.monotonic() + max(seconds, 0.0)
    lost = 0
    while True:
        if _worker is not None and not _worker.alive():
            _worker.close()
            _worker = None
        if _worker is None:
            if lost and (lost > MAX_RESTARTS or end - time.monotonic() < RESTART_MIN_S):
                return
            if _start_failed is not None:
                out.problems.append(_start_failed)
                return
            t = time.monotonic()
            w = _start(argv, t + START_TIMEOUT_S)
            if isinstance(w, str):
                _start_failed = w + "; the knob sweep is off in this process until it is turned off and on"
                out.problems.append(_start_failed)
                _logger.info("cudnnconv: %s; the exhaustive search goes on without it", w)
                return
            end += time.monotonic() - t          # a worker's start is not the problem's time
            _worker, out.workers = w, out.workers + 1
        w = _worker
        # after a lost worker the fresh one starts from what the lost one timed: its coordinate
        # search and its order of engines need those times
        known = [[r.engine_index, [list(k) for k in r.knobs], r.ms] for r in out.results if r.status == "timed"]
        try:
            w.send(dict(timing, key=key_json, seconds=max(end - time.monotonic(), 0.0), skip=sorted(skip),
                        known=known))
        except (OSError, ValueError) as e:
            out.problems.append("the knob sweep's worker took no request (%s)" % e)
            w.kill()
            _worker = None
            return
        if _serve(w, out, key, key_text, end, skip, progress, timing_runs(timing)):
            if not w.alive():
                _worker = None
            return
        _worker = None
        lost += 1
