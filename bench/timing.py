"""GPU timing, done the way the device's METHOD.md asks.

* Everything runs on one non-default stream per framework, timed with CUDA
  events on that stream.
* Warm-up first: the first calls search (benchmark=True) and cache; no
  search happens inside a timed region or a graph capture.
* Input sets are rotated: ``calls`` is a list with one callable per input
  set, and together the sets are larger than the L2 cache, so a small layer
  is not timed out of L2 with its inputs already resident.
* Kernel time: the calls (one per set) are captured once into a CUDA graph
  and the graph is replayed; each replay is timed with events and the median
  replay divided by the number of calls.  Host cost does not show in it.
* Eager time per call: the same calls issued from Python, events around a
  batch of them, median over batches, divided by the batch size.
* Host time per call: the host clock around the same batches, before the
  synchronise; for a tiny conv, whose kernels finish before the next call is
  issued, this is what a call costs.
* Median of many repeats, never the mean or the minimum.

Two backends share this: CuPy (ours, and the peak matmul) and PyTorch.
"""
import statistics
import time


def sets_needed(bytes_per_set, l2_bytes, most=16):
    """How many input sets to rotate so that they together exceed 3x the L2."""
    if bytes_per_set <= 0:
        return 1
    need = -(-3 * l2_bytes // bytes_per_set)
    return int(max(1, min(most, need)))


def repeats_for(estimate_s, budget_s, least, most):
    """Repeats that fit ``budget_s`` given one repeat takes ``estimate_s``."""
    if estimate_s <= 0:
        return most
    return int(max(least, min(most, budget_s / estimate_s)))


class Measurement(dict):
    """kernel_ms, eager_ms, host_us (each None where not measured), notes."""


class _Backend:
    name = "?"

    def stream_ctx(self):
        raise NotImplementedError

    def event(self):
        raise NotImplementedError

    def elapsed_ms(self, a, b):
        raise NotImplementedError

    def synchronize(self):
        raise NotImplementedError

    def capture(self, calls):
        """A zero-argument function that replays ``calls`` as one graph."""
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------
    def measure(self, calls, repeat=50, warmup=3, budget_s=1.0, graph=True):
        """Kernel, eager and host time per call of rotating ``calls``."""
        m = Measurement(kernel_ms=None, eager_ms=None, host_us=None, notes=[])
        with self.stream_ctx():
            for _ in range(warmup):
                for c in calls:
                    c()
            self.synchronize()
            # eager: batches of calls, events around each batch
            per_batch = max(len(calls), 8)
            t0 = time.perf_counter()
            self._eager_batch(calls, per_batch)
            est = time.perf_counter() - t0
            reps = repeats_for(est, budget_s / 2, 5, repeat)
            eager, host = [], []
            for _ in range(reps):
                ms, hs = self._eager_batch(calls, per_batch)
                eager.append(ms / per_batch)
                host.append(hs * 1e6 / per_batch)
            m["eager_ms"] = statistics.median(eager)
            m["host_us"] = statistics.median(host)
            if graph:
                try:
                    replay = self.capture(calls)
                except Exception as e:            # noqa: BLE001 - report, do not die
                    m["notes"].append("graph capture failed (%s: %s); kernel time not measured"
                                      % (type(e).__name__, str(e).splitlines()[0][:160]))
                    self.synchronize()
                    return m
                for _ in range(2):
                    replay()
                self.synchronize()
                reps = repeats_for(m["eager_ms"] * len(calls) / 1e3, budget_s / 2, 10, repeat)
                times = []
                for _ in range(reps):
                    a, b = self.event(), self.event()
                    a.record()
                    replay()
                    b.record()
                    b.synchronize()
                    times.append(self.elapsed_ms(a, b) / len(calls))
                m["kernel_ms"] = statistics.median(times)
                m["kernel_spread"] = (min(times), max(times))
                del replay
        return m

    def _eager_batch(self, calls, n):
        a, b = self.event(), self.event()
        a.record()
        h0 = time.perf_counter()
        for i in range(n):
            calls[i % len(calls)]()
        h1 = time.perf_counter()
        b.record()
        b.synchronize()
        return self.elapsed_ms(a, b), h1 - h0


class CupyBackend(_Backend):
    name = "cupy"

    def __init__(self):
        import cupy
        self.cupy = cupy
        self.stream = cupy.cuda.Stream(non_blocking=True)

    def stream_ctx(self):
        return self.stream

    def event(self):
        # records on the current stream, which measure() makes self.stream
        return self.cupy.cuda.Event()

    def elapsed_ms(self, a, b):
        return self.cupy.cuda.get_elapsed_time(a, b)

    def synchronize(self):
        self.stream.synchronize()

    def capture(self, calls):
        s = self.stream
        s.begin_capture()
        try:
            for c in calls:
                c()
        finally:
            graph = s.end_capture()
        return lambda: graph.launch(s)


class TorchBackend(_Backend):
    name = "torch"

    def __init__(self):
        import torch
        self.torch = torch
        self.stream = torch.cuda.Stream()

    def stream_ctx(self):
        return self.torch.cuda.stream(self.stream)

    def event(self):
        return self.torch.cuda.Event(enable_timing=True)

    def elapsed_ms(self, a, b):
        return a.elapsed_time(b)

    def synchronize(self):
        self.stream.synchronize()

    def capture(self, calls):
        torch = self.torch
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, stream=self.stream):
            for c in calls:
                c()
        return g.replay


def measure_peak_fp16(n=8192, repeat=30):
    """(burst, sustained) TFLOP/s of an n x n x n fp16 matmul through CuPy
    (cuBLAS) on random data, each the median of ``repeat`` event-timed runs.

    burst: after a few warm-up runs, as the convolutions are timed (short
    bursts between host-side work), so % of peak compares like with like.
    sustained: after 1 s of back-to-back matmuls, when an H100 has lowered
    its clocks to its power limit (seen here: ~720 vs ~545 TFLOP/s)."""
    import cupy
    rs = cupy.random.RandomState(1)
    a = rs.uniform(-1, 1, (n, n), dtype=cupy.float32).astype(cupy.float16)
    b = rs.uniform(-1, 1, (n, n), dtype=cupy.float32).astype(cupy.float16)
    c = cupy.empty((n, n), dtype=cupy.float16)
    s = cupy.cuda.Stream(non_blocking=True)

    def timed():
        times = []
        for _ in range(repeat):
            e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
            e0.record(s)
            cupy.matmul(a, b, out=c)
            e1.record(s)
            e1.synchronize()
            times.append(cupy.cuda.get_elapsed_time(e0, e1))
        return 2.0 * n ** 3 / (statistics.median(times) * 1e-3) / 1e12

    with s:
        for _ in range(3):
            cupy.matmul(a, b, out=c)
        s.synchronize()
        burst = timed()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 1.0:
            for _ in range(20):
                cupy.matmul(a, b, out=c)
            s.synchronize()
        sustained = timed()
    return burst, sustained


# ---------------------------------------------------------------------------
# the roofline's other peaks (bench/roofline.py), measured
# ---------------------------------------------------------------------------

def _median_ms(record, repeat):
    """The median of ``repeat`` calls of ``record()``, each returning a time in ms."""
    return statistics.median(record() for _ in range(repeat))


def _copy_tb_s(nbytes=1 << 30, repeat=20):
    """TB/s of a device-to-device copy of ``nbytes`` through cudaMemcpyAsync, bytes read + written."""
    import cupy
    a = cupy.empty(nbytes, dtype=cupy.uint8)
    b = cupy.empty(nbytes, dtype=cupy.uint8)
    a.fill(1)
    s = cupy.cuda.Stream(non_blocking=True)
    rt = cupy.cuda.runtime

    def record():
        e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
        e0.record(s)
        rt.memcpyAsync(b.data.ptr, a.data.ptr, nbytes, rt.memcpyDeviceToDevice, s.ptr)
        e1.record(s)
        e1.synchronize()
        return cupy.cuda.get_elapsed_time(e0, e1)

    for _ in range(3):
        record()
    return 2 * nbytes / (_median_ms(record, repeat) * 1e-3) / 1e12


def _torch_matmul_tflops(dtype_name, tf32, n, repeat):
    """TF/s of an n x n x n torch.matmul in ``dtype_name`` ('bfloat16', 'float32'), TF32 as asked."""
    import torch
    dt = getattr(torch, dtype_name)
    g = torch.Generator(device="cuda").manual_seed(1)
    a = torch.rand((n, n), device="cuda", dtype=torch.float32, generator=g).to(dt) - 0.5
    b = torch.rand((n, n), device="cuda", dtype=torch.float32, generator=g).to(dt) - 0.5
    c = torch.empty((n, n), device="cuda", dtype=dt)
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        def record():
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            torch.matmul(a, b, out=c)
            e1.record()
            e1.synchronize()
            return e0.elapsed_time(e1)
        for _ in range(3):
            record()
        return 2.0 * n ** 3 / (_median_ms(record, repeat) * 1e-3) / 1e12
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def measure_peaks(fp16_tflops, notes):
    """The run's peaks: ``fp16`` (measured by the caller, CuPy's matmul), ``bf16``, ``tf32`` and
    ``fp32`` (torch.matmul, where PyTorch is installed), ``copy_tb_s``.  A figure that cannot be
    measured is None, with a line in ``notes``."""
    peaks = {"fp16": fp16_tflops, "bf16": None, "tf32": None, "fp32": None, "fp64": None, "copy_tb_s": None}
    try:
        peaks["copy_tb_s"] = _copy_tb_s()
    except Exception as e:                         # noqa: BLE001 - a missing peak leaves the roofline blank
        notes.append("roofline: the copy bandwidth was not measured (%s: %s)" % (type(e).__name__, e))
    import importlib.util
    if importlib.util.find_spec("torch") is None:
        notes.append("roofline: no PyTorch, so no bf16, TF32 or fp32 matmul peak")
        return peaks
    for key, name, tf32, n, repeat in (("bf16", "bfloat16", False, 8192, 30), ("tf32", "float32", True, 8192, 20),
                                       ("fp32", "float32", False, 4096, 10)):
        try:
            peaks[key] = _torch_matmul_tflops(name, tf32, n, repeat)
        except Exception as e:                     # noqa: BLE001
            notes.append("roofline: the %s matmul peak was not measured (%s: %s)" % (key, type(e).__name__, e))
    return peaks
