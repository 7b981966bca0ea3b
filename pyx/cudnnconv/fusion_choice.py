"""fusion='auto' under benchmark=True: the fused plan or the composed path, whichever runs faster.

cuDNN takes an epilogue graph on most layers, but its fused plan is not always the faster: on an
H200 (cuDNN 9.19) the fused depthwise convolutions and most fused input gradients ran slower than
cuDNN's best unfused kernel followed by one memory pass (docs/performance.md, *Fused epilogues*).
So where a call asks to benchmark, the first call of a signature that fuses also composes, and
compares the two paths' GPU times:

- the fused plan's: its search measured it (the choices' ``time_ms``, summed over batch chunks);
- the composed path's: the convolution's, which its own search measured, plus the composed
  kernel's, timed here in place on the convolution's output (``gpu_timing.time_samples``, the
  median), which the call overwrites afterwards with the path it keeps.

The composed path is taken only when it is faster by more than the ranking's margin
(``gpu_timing.MARGIN``): on a near tie the fused plan stays, as it moves less memory; and only
where the fused plan takes at least ``gpu_timing.HOST_AWARE_BELOW_MS``: below that a call is
bound by its host time, and composing launches one kernel more.  The ``Decision`` is kept with
the call's plan (one call signature), so later calls run one path; it is made again when the plan
is (after ``clear_cache()``), or when a re-search makes it stale (core.state's generation).
Nothing is timed, and the call fuses wherever cuDNN takes the graph, as without benchmark, where
the fused plan's time is unknown (a choice made by cuDNN's heuristics), while explain() or a
warm-up watches the search, or while the stream is being captured.
"""
from cudnnconv import gpu_timing, ranking, workspace
from cudnnconv.core import state as _state


class Decision:
    """Which path a signature takes under fusion='auto' ('fused' or 'composed'), the times (ms) it
    was decided on (None where not known), and the plan generation it holds for."""
    __slots__ = ("path", "fused_ms", "conv_ms", "kernel_ms", "generation")

    def __init__(self, path, fused_ms, conv_ms, kernel_ms):
        self.path, self.fused_ms, self.conv_ms, self.kernel_ms = path, fused_ms, conv_ms, kernel_ms
        self.generation = _state.current_generation()

    def as_dict(self):
        return {"path": self.path, "fused_ms": self.fused_ms, "conv_ms": self.conv_ms, "kernel_ms": self.kernel_ms}

    def __repr__(self):
        return "Decision(%s)" % ", ".join("%s=%r" % kv for kv in self.as_dict().items())


class Slot:
    """What a fused function's plan carries: its activations.Epilogue (or None) and, once made, the
    Decision of fusion='auto' under benchmark."""
    __slots__ = ("epilogue", "decision")

    def __init__(self, epilogue=None):
        self.epilogue, self.decision = epilogue, None

    def current(self):
        """The Decision, unless a re-search made it stale since (``benchmark_settings`` or a
        tuning file loaded over the cache bump core.state's generation): then None."""
        d = self.decision
        if d is not None and d.generation != _state.current_generation():
            self.decision = d = None
        return d


def measured_time(choices):
    """The summed ``time_ms`` of ``choices`` (one per batch chunk) where each was measured by a
    benchmark search, else None."""
    if not choices:
        return None
    total = 0.0
    for c in choices:
        t = getattr(c, "time_ms", None)
        if not getattr(c, "benchmarked", False) or t is None or not t > 0:
            return None
        total += t
    return total


def decide(fused_choices, conv_choices, kernel_ms, margin=None):
    """The Decision from the fused plan's choices, the plain convolution's and the composed
    kernel's time (ms, or None): 'composed' only where all three are known, the fused plan takes
    at least ``gpu_timing.HOST_AWARE_BELOW_MS`` (below it a call is bound by its host time, and
    the composed path launches one kernel more), and the composed path is faster by more than
    ``margin`` (default gpu_timing.MARGIN)."""
    m = gpu_timing.MARGIN if margin is None else margin
    fused, conv = measured_time(fused_choices), measured_time(conv_choices)
    if fused is None or conv is None or kernel_ms is None or not kernel_ms >= 0 or \
            fused < gpu_timing.HOST_AWARE_BELOW_MS:
        return Decision("fused", fused, conv, kernel_ms)
    return Decision("composed" if (conv + kernel_ms) * (1.0 + m) < fused else "fused", fused, conv, kernel_ms)


def should_time(opts):
    """Whether this call may run both paths and time them: it benchmarks, no explain() or warm-up
    intercepts the search, and the current stream is not being captured (where that cannot be
    told, nothing is timed)."""
    if not opts.benchmark or _state.state().explain is not None:
        return False
    return not workspace.current_stream_capturing()


def kernel_ms(run_in_place, a):
    """The median GPU time (ms) of ``run_in_place(a)``, the composed kernel on ``a`` in place (the
    caller overwrites ``a`` afterwards, whichever path it keeps): one untimed run first, so that
    CuPy compiles the kernel outside the samples."""
    run_in_place(a)
    return ranking.median_and_spread(gpu_timing.time_samples(lambda: run_in_place(a)))[0]
