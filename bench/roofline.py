"""The roofline of a convolution: the least time its arithmetic or its memory traffic allows.

A layer's bound is max(flops / matmul peak, bytes / copy bandwidth), with both peaks measured in the
same run (``measure_peaks``) on the same GPU:

* flops: 2 x multiply-adds of the convolution, the same in every direction (the record's ``flops``);
* bytes: the three tensors a direction touches, each once: input, weight and output (forward reads
  x and w and writes y; backward-data reads dy and w and writes dx; backward-weight reads x and dy
  and writes dw), at the run's dtype size.  Real kernels move more (halos, re-reads, split-K
  partials), so the bound is optimistic and a fraction near 1 is near the best the hardware allows;
* the matmul peak of the run's math: fp16 and bf16 tensor cores, TF32 for float32 with TF32 on,
  plain float32 with it off (a large square matmul in short bursts, as the convolutions are timed);
* the bandwidth of a device-to-device copy, counting the bytes read and written.

The fraction of the roofline a time reaches is bound / time (1 is the roofline itself).  Everything
but ``measure_peaks`` is pure and is tested without a GPU.
"""
import math
import statistics

ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}


def peak_key(dtype, allow_tf32):
    """Which measured peak bounds the arithmetic of ``dtype``: 'fp16', 'bf16', 'tf32', 'fp32' or
    'fp64'."""
    if dtype == "float32":
        return "tf32" if allow_tf32 else "fp32"
    return {"float16": "fp16", "bfloat16": "bf16", "float64": "fp64"}.get(dtype)


def bytes_moved(rec, itemsize):
    """Bytes of the input, weight and output of ``rec`` (its shapes), each once; None without shapes."""
    shapes = [rec.get(k) for k in ("input_shape", "weight_shape", "output_shape")]
    if not all(shapes):
        return None
    return itemsize * sum(math.prod(s) for s in shapes)


def bound_ms(flops, nbytes, peak_tflops, copy_tb_s):
    """max(flops / peak, bytes / bandwidth) in ms; None where a figure is missing."""
    if not peak_tflops or not copy_tb_s or nbytes is None or flops is None:
        return None
    return max(flops / (peak_tflops * 1e12), nbytes / (copy_tb_s * 1e12)) * 1e3


def record_bound_ms(rec, peaks, dtype, allow_tf32):
    """The roofline bound of a result record (ms), from the run's ``peaks`` dict; None where the run
    has no peak for its math or no bandwidth."""
    peaks = peaks or {}
    return bound_ms(rec.get("flops"), bytes_moved(rec, ITEMSIZE.get(dtype, 0)),
                    peaks.get(peak_key(dtype, allow_tf32)), peaks.get("copy_tb_s"))


def fraction(bound, time_ms):
    """The share of the roofline a time reaches (bound / time), or None."""
    if bound is None or not time_ms or time_ms <= 0:
        return None
    return bound / time_ms


# ---------------------------------------------------------------------------
# the peaks, measured (GPU)
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
