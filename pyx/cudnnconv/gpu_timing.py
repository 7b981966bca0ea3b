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

The spin kernel is PTX text loaded with the driver's JIT (no NVRTC, no
nvcc); where it cannot be loaded, samples are taken without it and
``spin_available()`` says so.
"""
import math
import threading
import time

from cudnnconv import _log, ranking

# The settings (benchmark_settings() sets them; read at each search).
REPEATS = 5
WARMUP = 1
MARGIN = ranking.DEFAULT_MARGIN

MIN_SPIN_NS = 20_000          # never shorter than 20 us
MAX_SPIN_NS = 2_000_000       # never longer than 2 ms
SPIN_FACTOR = 3.0             # spin for 3x the host issue time (+ MIN_SPIN_NS)
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


def benchmark_settings(repeats=None, warmup=None, margin=None):
    """Read, and optionally set, how a benchmarking search times candidates.

    ``repeats`` (k >= 1): timed samples per candidate, whose median is its
    time; ``warmup`` (>= 0): untimed runs first; ``margin`` (>= 0): near-ties
    within this fraction of the fastest go to the smaller workspace, then a
    fixed order (``cudnnconv.ranking``).  Applies to both engines and is the
    default of ``explain()``'s ``k``.  Returns the settings now in force.

    Raises:
        ValueError: a setting out of its range (nothing is changed then).
    """
    global REPEATS, WARMUP, MARGIN
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
    if repeats is not None:
        REPEATS = repeats
    if warmup is not None:
        WARMUP = warmup
    if margin is not None:
        MARGIN = float(margin)
    return {"repeats": REPEATS, "warmup": WARMUP, "margin": MARGIN}


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
