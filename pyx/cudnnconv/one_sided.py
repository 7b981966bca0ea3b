"""A tile's one-sided padding, checked before it is trusted (policy tier, beside tiled_calls).

cuDNN's graph takes pre- and post-padding apiece, and most of its engines honour them, but not
every one does.  On an H200 with cuDNN 9.19, the plan the heuristics chose for a float32 weight
gradient (2-d, channels-last, allow_tf32=False) of an edge tile with one-sided padding, graph
engine 20, was off by 4-7% (relative error against float64 and against the padded copy, four
geometries), while the forward and input gradient, and the 16- and 64-bit weight gradients,
matched.  No note or flag tells such a plan apart, so a tiled
call checks each one-sided problem the first time a plan runs it: the same tile is computed from a
padded copy of its window with no padding (what every engine runs right, and what the call did
before), and the two results are compared by relative L2 error against a bound for the dtype
(``BOUND``: several times what two correct plans differ by), over the whole result and over the
planes within the kernel's reach of each one-sided edge apart, where a padding error would sit
(measured over the whole of a long tile alone, it would be diluted below any useful bound).  A plan that agrees is trusted for the process; one that does not has its problem refused
(the padded copy from then on) and its result replaced by the copy's, with a warning.  Under
CUDA-graph capture nothing can be compared: a problem with no trusted plan takes the padded copy.
"""
import warnings

# Relative L2 error between two results of one tile that still counts as agreement.  Two correct
# plans differ by their roundings: about the dtype's unit roundoff on each output (float16 5e-4,
# bfloat16 4e-3, TF32 inputs 1e-3), more for a weight gradient summed over 1e7-1e9 terms (float16:
# 1.4e-3 against float64 on an H200, 2.68e9-element tiles).  A padding error, measured over the
# planes it touches, is of the order of the values themselves; the wrong weight gradients seen
# were 4-7% off.
BOUND = {"float64": 1e-8, "float32": 1e-3, "float16": 1e-2, "bfloat16": 3e-2}
BOUND_TF32 = 2e-2

# A problem is the engine's key of the tile (params.make_key, less the pointers' alignments).
_trusted = {}      # problem -> the plan tags that agreed
_refused = {}      # problem -> why


def edge_slabs(shape, pads, reach):
    """Index tuples of the planes of a result of ``shape`` within ``reach[d]`` of each end of every
    spatial dim whose padding ``pads[d]`` is one-sided: where a plan that mishandled it would err."""
    out = []
    for d, ((lo, hi), r) in enumerate(zip(pads, reach)):
        if lo == hi:
            continue
        n = shape[2 + d]
        for span in (slice(0, min(n, r)), slice(max(0, n - r), n)):
            out.append((slice(None), slice(None)) + tuple(span if k == d else slice(None)
                                                         for k in range(len(pads))))
    return out


def refused(prob):
    return prob in _refused


def trusted(prob, tag=None):
    """Whether plan ``tag`` agreed on ``prob`` (with no tag: whether any plan did)."""
    tags = _trusted.get(prob)
    return bool(tags) if tag is None else tags is not None and tag in tags


def trust(prob, tag):
    _trusted.setdefault(prob, set()).add(tag)


def refuse(prob, why):
    _refused[prob] = why
    _trusted.pop(prob, None)


def verdicts():
    """``(trusted, refused)``: copies of the verdicts so far, {problem: frozenset of the plan tags
    that agreed} and {problem: why it was refused}."""
    return {p: frozenset(t) for p, t in _trusted.items()}, dict(_refused)


def forget():
    """Forget every verdict (``cudnnconv.clear_cache`` forgets the plans they were about)."""
    _trusted.clear()
    _refused.clear()


def bound(dtype_name, allow_tf32):
    return BOUND_TF32 if dtype_name == "float32" and allow_tf32 else BOUND.get(dtype_name, 1e-4)


def relative_error(got, want):
    """||got - want|| / ||want|| (L2, in float64), in one pass over each with no full-size
    temporary on the GPU; 0 where both are zero."""
    from cudnnconv import tiled
    from cudnnconv.params.layouts import memory_order
    order = memory_order(want)
    got, want = got.transpose(order), want.transpose(order)
    xp = tiled.array_module(want)
    if xp.__name__ == "numpy":
        d = got.astype(xp.float64) - want.astype(xp.float64)
        num, den = float((d * d).sum()), float((want.astype(xp.float64) ** 2).sum())
    else:
        num, den = (float(v) for v in _kernels()(got, want))
    if den == 0.0:
        return 0.0 if num == 0.0 else float("inf")
    return (num / den) ** 0.5


_KERNELS = None


def _kernels():
    global _KERNELS
    if _KERNELS is None:
        import cupy
        # (parameter names that no word of the expressions contains: CuPy renames them in the text)
        diff = cupy.ReductionKernel(
            "T got, T want", "float64 total", "((double)got - (double)want) * ((double)got - (double)want)",
            "a + b", "total = a", "0", "cudnnconv_sq_diff")
        norm = cupy.ReductionKernel("T want", "float64 total", "(double)want * (double)want", "a + b",
                                    "total = a", "0", "cudnnconv_sq_norm")
        _KERNELS = lambda got, want: (diff(got, want), norm(want))      # noqa: E731
    return _KERNELS


def judge(prob, tag, got, want, slabs=()):
    """Compare a one-sided result ``got`` of problem ``prob`` (a params.ProblemKey) with the padded
    copy's ``want``, whole and over each of ``slabs`` (``edge_slabs``): trust the plan, or refuse
    the problem with a warning.  Returns whether they agreed."""
    err = max([relative_error(got, want)] + [relative_error(got[s], want[s]) for s in slabs])
    limit = bound(str(want.dtype), prob.allow_tf32)
    if err <= limit:
        trust(prob, tag)
        return True
    why = ("plan %s gave relative error %.3g against the padded copy (bound %.3g)" % (tag, err, limit))
    refuse(prob, why)
    warnings.warn("cudnnconv: a tile with one-sided padding (%s %s, padding %s) disagreed with its padded copy: "
                  "%s; this problem now runs from the copy" % (prob.op, prob.input_shape, prob.padding, why),
                  RuntimeWarning,
                  stacklevel=3)
    return False
