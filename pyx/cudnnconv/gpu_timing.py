"""How a benchmarking search times one candidate (shared by both engines and explain()).

A candidate's time is the median of ``repeats`` CUDA-event samples taken
after ``warmup`` untimed runs; ``cudnnconv.ranking`` turns the medians into
the choice.  ``benchmark_settings()`` reads and sets the three numbers.

Why a spin kernel.  An event pair around one launch times the GPU from the
start event to the end event.  When the host takes longer to *issue* the
work (cuDNN's execute costs 10-40 us of host time) than the GPU takes to
finish what was queued before it, the GPU reaches the start event early and
idles until the kernel arrives: the sample then contains host time.  For the
short kernels of a batch-32 ResNet-50 (20-60 us) that idle time is a large,
jittery share of the sample, and it made the fastest config differ from
process to process.  So each sample first queues a one-thread kernel that
spins on the GPU's nanosecond clock for a few times the measured host issue
time; the host enqueues the start event, the work and the end event while
it spins, and the GPU runs them back to back.  The sample is GPU time only.

Why several runs per sample.  A single run of a 50 us kernel jitters by a
few percent (clocks, the memory it lands on), enough to reorder configs
that are 3-5% apart.  So a sample of a short kernel is the mean of ``r``
back-to-back runs, with ``r`` chosen from a first probe so that a sample
lasts at least MIN_SAMPLE_MS (at most MAX_RUNS_PER_SAMPLE runs); a kernel
that long already is sampled one run at a time.

Why the host time too.  cudnnBackendExecute's own host time depends on the
engine config: on an H200 (cuDNN 9.19), among one small problem's fast
configs, 5.5 against 13.0 us, and the GPU-fastest are often the dearest to
issue.  A call whose kernel is shorter than its issue is bound by the host,
and then the config that is cheaper to issue is the faster call.  So where
the GPU-fastest candidate runs under HOST_AWARE_BELOW_MS, ``rank_host_aware``
also measures each candidate's *issue time*: the host time of one run issued
on an idle GPU (a synchronize before each), median of ISSUE_SAMPLES, plus
CALL_OVERHEAD_US for the rest of a cached call's host path (a plan call sits
2-5 us above its execute).  The ranking then costs a candidate the larger of
its GPU time and its issue time (``cudnnconv.ranking.cost_ms``).  The issue
time is not taken from the timed samples: back-to-back runs, or the first run
behind the spin kernel, came to 1.5-4.6 times a call's execute on the same
machine, and a ranking on them chose slower kernels for GPU-bound problems.
Candidates are measured fastest GPU time first, and only while their GPU
time is within the margin of the cheapest cost found so far (an issue time can
only add to a cost), so a GPU-bound problem, whose fastest kernel outlasts any
issue time, keeps its GPU-fastest choice and pays one measurement, and the
winner is the one measuring every candidate would give (the order behind it,
which a failed run falls back along, may differ).  The issue time is wall-clock
host time: searches running at once on other threads can lengthen it, and with
it a choice may differ from run to run there.
``benchmark_settings(host_aware=False)`` ranks by GPU time alone.

The spin kernel is PTX text loaded with the driver's JIT (no NVRTC, no
nvcc); where it cannot be loaded, samples are taken without it and
``spin_available()`` says so.
"""
import math
import threading
import time

from cudnnconv import _log, exhaustive_budget, knob_sandbox, ranking
from cudnnconv.core import state as _state
from cudnnconv.core.status import CuDNNError

# The settings (benchmark_settings() sets them; read at each search).
REPEATS = 5
WARMUP = 1
MARGIN = ranking.DEFAULT_MARGIN

MIN_SPIN_NS = 20_000          # never shorter than 20 us
MAX_SPIN_NS = 2_000_000       # never longer than 2 ms
SPIN_FACTOR = 3.0             # spin for 3x the host issue time (+ MIN_SPIN_NS)
HOST_AWARE = True
EXHAUSTIVE = False                              # benchmark_settings(exhaustive=): every engine too
EXHAUSTIVE_BUDGET_S = exhaustive_budget.DEFAULT_BUDGET_S
KNOB_SWEEP = True                               # benchmark_settings(knob_sweep=): the exhaustive search's worker
HOST_AWARE_BELOW_MS = 0.1     # a GPU-fastest run this long or longer is GPU-bound: no issue times
CALL_OVERHEAD_US = 3.0        # a cached call's host time beyond its execute (H200: 2-5 us)
ISSUE_SAMPLES = 15
ISSUE_WARMUP = 2

MIN_SAMPLE_MS = 0.25          # a sample of a short kernel averages runs up to this long
MAX_RUNS_PER_SAMPLE = 32

_SPIN_NAME = "cudnnconv_spin"
_SPIN_PTX = """
.version {version}
.target {target}
.address_size 64

.visible .entry cudnnconv_spin(.param .u64 cudnnconv_spin_ns)
{{
    .reg .pred %p<2>;
    .reg .b64 %rd<6>;
    ld.param.u64 %rd1, [cudnnconv_spin_ns];
    mov.u64 %rd2, %globaltimer;
$L_spin:
    mov.u64 %rd3, %globaltimer;
    sub.s64 %rd4, %rd3, %rd2;
    setp.lt.u64 %p1, %rd4, %rd1;
    @%p1 bra $L_spin;
    ret;
}}
"""
# Oldest target first that the driver JITs for the GPU at hand.
_PTX_TARGETS = (("7.0", "sm_75"), ("6.0", "sm_60"), ("8.0", "sm_90"))

_spin_lock = threading.Lock()
_spin_fns = {}                 # device id -> (Module, Function) or None when it cannot load


def benchmark_settings(repeats=None, warmup=None, margin=None, host_aware=None, exhaustive=None,
                       exhaustive_budget_s=None, knob_sweep=None):
    """Read, and optionally set, how a benchmarking search times candidates.

    ``repeats`` (k >= 1): timed samples per candidate, whose median is its
    time; ``warmup`` (>= 0): untimed runs first; ``margin`` (>= 0): near-ties
    within this fraction of the fastest go to the smaller workspace, then a
    fixed order (``cudnnconv.ranking``); ``host_aware`` (bool): where the
    fastest candidate runs under 0.1 ms, cost each candidate the larger of
    its GPU time and its measured host issue time (see this module's doc),
    or rank by GPU time alone.  Applies to both engines and is the default of
    ``explain()``'s ``k``.  ``exhaustive`` (bool, default False): a
    benchmarking search on the graph engine also tries every engine of the
    operation graph and its knob settings, within ``exhaustive_budget_s``
    seconds (> 0, default 5) per problem; the heuristics' own configs are
    always timed.  ``knob_sweep`` (bool, default True): the knob settings are
    tried in a worker process, whose fastest few are then timed here
    (``cudnnconv.knob_sandbox`` says why); with False, or where the worker
    cannot start, the search adds each engine with cuDNN's default knobs only.  Its choices are cached and
    stored with ``how: exhaustive``; while it is on, a choice that a plain
    benchmark made is searched again (``answers``), and changing it makes the
    plans bound to call signatures stale.  Returns the settings now in
    force.

    Raises:
        ValueError: a setting out of its range (nothing is changed then).
    """
    global REPEATS, WARMUP, MARGIN, HOST_AWARE, EXHAUSTIVE, EXHAUSTIVE_BUDGET_S, KNOB_SWEEP
    if repeats is not None:
        if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= 1000:
            raise ValueError("repeats must be an int in [1, 1000], got %r" % (repeats,))
    if warmup is not None:
        if isinstance(warmup, bool) or not isinstance(warmup, int) or not 0 <= warmup <= 100:
            raise ValueError("warmup must be an int in [0, 100], got %r" % (warmup,))
    if margin is not None:
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) \
                or not 0 <= margin < 1:
            raise ValueError("margin must be a number in [0, 1), got %r" % (margin,))
    if host_aware is not None and not isinstance(host_aware, bool):
        raise ValueError("host_aware must be True or False, got %r" % (host_aware,))
    if exhaustive is not None and not isinstance(exhaustive, bool):
        raise ValueError("exhaustive must be True or False, got %r" % (exhaustive,))
    if knob_sweep is not None and not isinstance(knob_sweep, bool):
        raise ValueError("knob_sweep must be True or False, got %r" % (knob_sweep,))
    if exhaustive_budget_s is not None:
        if isinstance(exhaustive_budget_s, bool) or not isinstance(exhaustive_budget_s, (int, float)) \
                or not math.isfinite(exhaustive_budget_s) or not 0 < exhaustive_budget_s <= 3600:
            raise ValueError("exhaustive_budget_s must be a number of seconds in (0, 3600], got %r"
                             % (exhaustive_budget_s,))
    if repeats is not None:
        REPEATS = repeats
    if warmup is not None:
        WARMUP = warmup
    if margin is not None:
        MARGIN = float(margin)
    if host_aware is not None:
        HOST_AWARE = host_aware
    if exhaustive is not None:
        if exhaustive != EXHAUSTIVE:
            _state.invalidate()         # call plans bound under the other level take the full path again
        EXHAUSTIVE = exhaustive
    if exhaustive_budget_s is not None:
        EXHAUSTIVE_BUDGET_S = float(exhaustive_budget_s)
    if knob_sweep is not None:
        KNOB_SWEEP = knob_sweep
    if not (EXHAUSTIVE and KNOB_SWEEP):
        knob_sandbox.shutdown()         # its worker holds a CUDA context that nothing will use now
    return {"repeats": REPEATS, "warmup": WARMUP, "margin": MARGIN, "host_aware": HOST_AWARE,
            "exhaustive": EXHAUSTIVE, "exhaustive_budget_s": EXHAUSTIVE_BUDGET_S, "knob_sweep": KNOB_SWEEP}


def answers(choice, benchmark):
    """Whether a cached or stored choice answers a call: any choice one without ``benchmark``; a
    benchmarked one a benchmarking call; with the exhaustive search on, only a choice it made
    (``how == 'exhaustive'``).  A choice without ``how`` (the legacy engine's, whose benchmark
    already times every algorithm) counts as exhaustive once benchmarked."""
    if not benchmark:
        return True
    if not choice.benchmarked:
        return False
    return not EXHAUSTIVE or getattr(choice, "how", "exhaustive") == "exhaustive"


def spin_ns_for(host_s):
    """The spin (ns) that covers ``host_s`` seconds of host issue time, clamped."""
    if not (host_s >= 0) or math.isinf(host_s):
        return MAX_SPIN_NS
    return int(min(MAX_SPIN_NS, max(MIN_SPIN_NS, SPIN_FACTOR * host_s * 1e9 + MIN_SPIN_NS)))


def _load_spin(device):
    from cupy.cuda import function
    last = None
    for version, target in _PTX_TARGETS:
        try:
            mod = function.Module()
            mod.load(_SPIN_PTX.format(version=version, target=target).encode("ascii"))
            return mod, mod.get_function(_SPIN_NAME)
        except Exception as e:      # the driver refuses this PTX: try the next
            last = e
    _log.debug("gpu_timing: the spin kernel did not load on device %d (%s); timing without it", device, last)
    return None


def _spin_fn():
    import cupy
    dev = cupy.cuda.runtime.getDevice()
    try:
        got = _spin_fns[dev]
    except KeyError:
        with _spin_lock:
            got = _spin_fns.get(dev, False)
            if got is False:
                got = _spin_fns[dev] = _load_spin(dev)
    return None if got is None else got[1]


def spin_available():
    """Whether the spin kernel loads on the current device."""
    return _spin_fn() is not None


def spin(stream, ns):
    """Queue a kernel on ``stream`` that keeps the GPU busy for ``ns``
    nanoseconds.  Returns False (and queues nothing) where it cannot load."""
    import numpy
    fn = _spin_fn()
    if fn is None:
        return False
    fn((1,), (1,), (numpy.uint64(max(0, int(ns))),), stream=stream)
    return True


def runs_per_sample(probe_ms, host_s=0.0):
    """How many back-to-back runs one sample averages, for a run of
    ``probe_ms`` on the GPU that takes ``host_s`` seconds to issue: enough to
    last MIN_SAMPLE_MS, no more than MAX_RUNS_PER_SAMPLE, and no more than
    the longest spin can cover the issuing of."""
    if not (probe_ms > 0) or math.isinf(probe_ms):
        return 1
    r = min(MAX_RUNS_PER_SAMPLE, max(1, math.ceil(MIN_SAMPLE_MS / probe_ms)))
    if host_s > 0:
        r = min(r, max(1, int((MAX_SPIN_NS - MIN_SPIN_NS) / (SPIN_FACTOR * host_s * 1e9))))
    return int(r)


def time_samples(issue, repeats=None, warmup=None, stream=None):
    """``repeats`` samples (ms of GPU time per run) of the work ``issue()``
    enqueues on ``stream`` (default: the current stream), after ``warmup``
    untimed runs.

    Each sample waits behind a spin kernel ``spin_ns_for`` the host issue
    time, so that it holds GPU time only; a short run is sampled as the mean
    of ``runs_per_sample`` back-to-back runs (one probe sample decides).
    Exceptions from ``issue`` propagate (the caller decides what a failed
    candidate means).
    """
    import cupy
    k = REPEATS if repeats is None else max(1, int(repeats))
    w = WARMUP if warmup is None else max(0, int(warmup))
    if stream is None:
        stream = cupy.cuda.get_current_stream()
    host = 50e-6                      # a guess until a run is seen
    for _ in range(w):
        t0 = time.perf_counter()
        issue()
        # The first run may pay one-off costs (kernel loading): the last
        # warm-up run's host time is the estimate.
        host = time.perf_counter() - t0
    start, end = cupy.cuda.Event(), cupy.cuda.Event()

    def sample(runs):
        nonlocal host
        spin(stream, spin_ns_for(host * runs))
        start.record(stream)
        t0 = time.perf_counter()
        for _ in range(runs):
            issue()
        h = (time.perf_counter() - t0) / runs
        end.record(stream)
        end.synchronize()
        host = max(host, h)
        return cupy.cuda.get_elapsed_time(start, end) / runs

    first = sample(1)
    r = runs_per_sample(first, host)
    out = [first] if r == 1 else []
    while len(out) < k:
        out.append(sample(r))
    return out


def issue_ms(issue, stream=None, samples=None):
    """The host time (ms) of one ``issue()`` on an idle GPU, as a cached call
    pays it: ISSUE_WARMUP untimed runs, then the median of ``samples``
    (default ISSUE_SAMPLES) runs, each after a synchronize of ``stream``
    (None: the current stream), plus CALL_OVERHEAD_US.  Exceptions from
    ``issue`` propagate."""
    if stream is None:
        import cupy
        stream = cupy.cuda.get_current_stream()
    n = ISSUE_SAMPLES if samples is None else max(1, int(samples))
    for _ in range(ISSUE_WARMUP):
        issue()
    times = []
    for _ in range(n):
        stream.synchronize()
        t0 = time.perf_counter()
        issue()
        times.append(time.perf_counter() - t0)
    stream.synchronize()
    return ranking.median_and_spread(times)[0] * 1e3 + CALL_OVERHEAD_US * 1e-3


def rank_host_aware(timed, issue_of, stream, margin=None, measure=None):
    """``timed`` (benchmarked candidates with ``samples``) in cudnnconv.ranking's
    order, host-aware where it can matter (see this module's doc).

    ``issue_of(c)`` gives the callable that issues one run of ``c`` on
    ``stream`` (None: the current stream); ``measure(issue, stream)``
    (default ``issue_ms``) its issue time in ms, stored on the candidate as
    ``c.issue_ms``.  Candidates are measured fastest GPU time first, and only
    while their GPU time is within the margin of the cheapest cost found so
    far (an issue time can only add to a cost), so the winner is the one that
    measuring every candidate would give.  A candidate without a usable GPU
    time is never run here (it may be one whose workspace did not fit), and
    one whose run cuDNN or memory refuse keeps its GPU time as its cost."""
    margin = MARGIN if margin is None else margin
    gpu = [(ranking.median_and_spread(c.samples)[0], i) for i, c in enumerate(timed)] if HOST_AWARE else []
    gpu = sorted((g, i) for g, i in gpu if g == g)  # usable GPU times only (NaN != NaN)
    if not gpu or not gpu[0][0] < HOST_AWARE_BELOW_MS:     # off, GPU-bound or untimed: nothing to weigh
        return ranking.rank(timed, margin)
    measure = issue_ms if measure is None else measure
    bound = math.inf                                # the cheapest cost so far
    for g, i in gpu:
        if not g <= bound * (1.0 + margin):         # cannot cost less, nor tie: neither can the rest
            break
        c = timed[i]
        try:
            c.issue_ms = float(measure(issue_of(c), stream))
        except (CuDNNError, MemoryError) as e:      # a run that fails here ranks by its GPU time
            _log.debug("gpu_timing: issue time of %s not measured (%s)", getattr(c, "tag", c), e)
            continue
        bound = min(bound, ranking.cost_ms(c))
    return ranking.rank(timed, margin)
