"""The roofline of a convolution: the least time its arithmetic or its memory traffic allows.

A layer's bound is max(flops / matmul peak, bytes / copy bandwidth), with both peaks measured in the
same run (``bench.timing.measure_peaks``) on the same GPU:

* flops: 2 x multiply-adds of the convolution, the same in every direction (the record's ``flops``);
* bytes: the three tensors a direction touches, each once: input, weight and output (forward reads
  x and w and writes y; backward-data reads dy and w and writes dx; backward-weight reads x and dy
  and writes dw), at the run's dtype size.  Real kernels move more (halos, re-reads, split-K
  partials), so the bound is optimistic and a fraction near 1 is near the best the hardware allows;
* the matmul peak of the run's math: fp16 and bf16 tensor cores, TF32 for float32 with TF32 on,
  plain float32 with it off (a large square matmul in short bursts, as the convolutions are timed);
* the bandwidth of a device-to-device copy, counting the bytes read and written.

The fraction of the roofline a time reaches is bound / time (1 is the roofline itself).  Everything
here is pure and is tested without a GPU; ``bench.timing.measure_peaks`` measures the peaks.
"""
import math

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
