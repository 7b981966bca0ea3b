"""callplan: the typed helpers agree with params' definitions (no GPU).

The typed first pass itself needs CuPy arrays, so its agreement with the full
path is checked on the GPU (tests/gpu/test_gpu_forward.py); here: the layout
test, the byte spans, and that anything that is not a CuPy array is left to
the full path.
"""
import itertools

import numpy
import pytest

from cudnnconv import callplan, options, params


class Strided:
    """What params.has_layout and params._span read of an array."""

    def __init__(self, shape, strides, itemsize, ptr=1 << 20):
        self.shape, self.strides, self.itemsize = tuple(shape), tuple(strides), itemsize
        self.ndim = len(shape)
        self.size = int(numpy.prod(shape)) if shape else 1

        class _Data:
            pass
        self.data = _Data()
        self.data.ptr = ptr


def _arrays():
    """Packed, permuted, sliced, broadcast and reversed stridings, 3-D to 5-D."""
    out = []
    for shape in ((2, 3, 5), (2, 3, 4, 5), (1, 3, 4, 5), (2, 1, 4, 5), (2, 3, 1, 1), (2, 3, 2, 3, 4), (3, 4, 1, 6)):
        for itemsize in (2, 4):
            for perm in set(itertools.permutations(range(len(shape)))):
                base = numpy.empty([shape[p] for p in perm], dtype="V%d" % itemsize)
                inv = numpy.argsort(perm)
                v = base.transpose(inv)
                out.append(Strided(v.shape, v.strides, itemsize))
            big = numpy.empty([2 * s for s in shape], dtype="V%d" % itemsize)
            v = big[tuple(slice(None, None, 2) for _ in shape)]
            out.append(Strided(v.shape, v.strides, itemsize))
            out.append(Strided(shape, (0,) * len(shape), itemsize))
            r = numpy.empty(shape, dtype="V%d" % itemsize)[..., ::-1]
            out.append(Strided(r.shape, r.strides, itemsize))
    return out


@pytest.mark.parametrize("layout", [params.NCHW, params.CHANNELS_LAST])
def test_has_layout_agrees_with_params(layout):
    seen = {True: 0, False: 0}
    for a in _arrays():
        want = params.has_layout(a, layout)
        got = callplan.has_layout(a.shape, a.strides, a.itemsize, layout == params.CHANNELS_LAST)
        assert got == want, (a.shape, a.strides, a.itemsize, layout)
        seen[want] += 1
    assert seen[True] > 10 and seen[False] > 10       # both answers were exercised


def test_rel_span_agrees_with_params_span():
    for a in _arrays():
        lo, hi = params._span(a)
        assert callplan.rel_span(a) == (lo - a.data.ptr, hi - a.data.ptr), (a.shape, a.strides)
    assert callplan.rel_span(None) is None
    assert callplan.rel_span(Strided((2, 0, 3), (0, 12, 4), 4)) is None        # empty: touches nothing


def test_non_cupy_arguments_take_the_full_path():
    opts = options.resolve()
    x = Strided((2, 3, 8, 8), (384, 128, 16, 2), 2)
    w = Strided((4, 3, 3, 3), (54, 18, 6, 2), 2)
    assert callplan.conv_plan(x, w, None, 1, 0, 1, 1, None, opts) is None
    assert callplan.conv_plan(numpy.zeros((2, 3, 8, 8)), numpy.zeros((4, 3, 3, 3)), None, 1, 0, 1, 1, None,
                              opts) is None
    memo = {}
    assert callplan.lookup(memo, "conv", (x, w, None), None, (1, 0, 1, 1), opts) == (None, None)
    assert memo == {}


def test_check_overlap_uses_the_plan_spans():
    plan = callplan.new_plan("conv", 0, params.NCHW, None, (1,), (False, False), [(0, 1)], None,
                             names=("input", "weight"), out_direct=True, out_span=(0, 50),
                             spans=((0, 100), None), pad=False)
    x = Strided((1,), (1,), 1, ptr=1000)
    w = Strided((1,), (1,), 1, ptr=1020)
    callplan.check_overlap(plan, (x, w), Strided((1,), (1,), 1, ptr=1100))      # just past the input
    callplan.check_overlap(plan, (x, w), Strided((1,), (1,), 1, ptr=950))       # ends at the input's start
    with pytest.raises(ValueError, match="out overlaps input"):
        callplan.check_overlap(plan, (x, w), Strided((1,), (1,), 1, ptr=1099))
    with pytest.raises(ValueError, match="out overlaps input"):
        callplan.check_overlap(plan, (x, w), Strided((1,), (1,), 1, ptr=951))
    callplan.check_overlap(plan, (x, w), None)


def test_canonical_writes_int_parameters_as_the_tuples_they_stand_for():
    canon = callplan._canonical
    assert canon("conv", (2, 1, 1, 1), 2) == ((2, 2), (1, 1), (1, 1), 1)            # groups stays an int
    assert canon("conv", ((2, 2), 1, (1, 1), 3), 2) == ((2, 2), (1, 1), (1, 1), 3)
    assert canon("conv", (3, 0, 2, 1), 3) == ((3, 3, 3), (0, 0, 0), (2, 2, 2), 1)
    assert canon("conv", ((2, 2), (1, 1), (1, 1), 1), 2) is None                     # nothing to change
    assert canon("conv", ((1,), (1,), (1,), 1), 2) is None                           # a 1-tuple is left alone
    assert canon("conv", (1, "same", 1, 1), 2) == ((1, 1), "same", (1, 1), 1)
    # exact ints only: a bool or a NumPy integer keeps its own signature
    assert canon("conv", (True, (0, 0), (1, 1), 1), 2) is None
    assert canon("conv", (numpy.int64(1), (0, 0), (1, 1), 1), 2) is None
    # the shape argument of the backward functions, groups, alpha and fusion are not spatial
    assert canon("conv_backward_input", ((2, 3, 8, 8), 2, 1, 1, 1), 2) == ((2, 3, 8, 8), (2, 2), (1, 1), (1, 1), 1)
    assert canon("conv_backward_weight", ((4, 3, 3, 3), (1, 1), 0, 1, 2), 2) == (
        (4, 3, 3, 3), (1, 1), (0, 0), (1, 1), 2)
    assert canon("conv_transpose", (2, 1, 1, 4, 1), 2) == ((2, 2), (1, 1), (1, 1), 4, (1, 1))
    assert canon("conv_bias_add_relu", (1, 1, 1, 1, 1.0, "relu"), 2) == ((1, 1), (1, 1), (1, 1), 1, 1.0, "relu")
    assert canon("something_else", (1, 1), 2) is None
    assert canon("conv", None, 2) is None


def test_canonical_agrees_with_spatial_tuple():
    """The memo may serve an int parameter with the plan of its tuple only
    because the full path reads them the same way."""
    for nsp in (1, 2, 3):
        for v in (0, 1, 2, 5):
            (s, p, d, g) = callplan._canonical("conv", (v, v, v, 1), nsp)
            assert s == p == d == params.spatial_tuple(v, nsp, "stride", 0)


def test_remember_stores_the_canonical_signature_too():
    opts = options.resolve()
    meta = ((2, 3, 8, 8), (384, 128, 16, 2), numpy.dtype("float16"), 0)
    wmeta = ((4, 3, 3, 3), (54, 18, 6, 2), numpy.dtype("float16"), 0)
    plan = callplan.CallPlan()
    memo = {}
    sig = ("conv", (meta, wmeta, None), None, (2, (1, 1), 1, 1), opts)
    callplan.remember(memo, sig, plan)
    canon = ("conv", (meta, wmeta, None), None, ((2, 2), (1, 1), (1, 1), 1), opts)
    assert memo == {sig: plan, canon: plan}
    # a signature already canonical is stored once; None is not stored
    memo2 = {}
    callplan.remember(memo2, canon, plan)
    callplan.remember(memo2, None, plan)
    assert memo2 == {canon: plan}
    # a full memo starts over
    full = {("x", i): plan for i in range(callplan.MEMO_MAX)}
    callplan.remember(full, sig, plan)
    assert full == {sig: plan, canon: plan}
