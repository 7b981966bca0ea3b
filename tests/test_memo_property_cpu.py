"""The call-plan memo answers a call with a plan only when the call has that
plan's signature (no GPU).

The memo is keyed by a 64-bit digest of the signature read in C, and a hit
is confirmed field by field (callplan.pyx).  Here hypothesis draws a
signature, remembers a plan under it, and looks up signatures that differ in
one field (a shape, a stride, the dtype, the device, out, a parameter, the
flags, the function), or in nothing but the pointers.  The memo must find the
plan exactly when the two are the same call: the same function, arrays of the
same layouts, dtypes and devices, the same flags, and parameters that are
equal or the same once int parameters are written as tuples (``_canonical``,
what the memo also stores).
"""
import numpy
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

from cudnnconv import callplan, options  # noqa: E402
from conftest import MetaArray  # noqa: E402

FUNCTIONS = ("conv", "conv_transpose", "conv_backward_input", "conv_backward_weight", "conv_bias_add_relu")
DTYPES = ("float16", "float32", "float64")
OPTIONS = (options.Options(False, False, True, None, "auto"), options.Options(True, False, True, None, "auto"),
           options.Options(False, True, True, 1 << 20, "graph"))


class FakeArray(MetaArray):
    """An array's metadata; nothing behind it."""


@pytest.fixture(autouse=True)
def fake_arrays():
    callplan._use_array_type(FakeArray)
    yield
    callplan._use_array_type(None)


def _meta(shape, strides, dtype, device):
    return (tuple(shape), tuple(strides), numpy.dtype(dtype), device)


@st.composite
def metas(draw, ndim):
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))
    strides = tuple(draw(st.lists(st.integers(0, 4096), min_size=ndim, max_size=ndim)))
    return _meta(shape, strides, draw(st.sampled_from(DTYPES)), draw(st.integers(0, 2)))


scalar_values = st.one_of(st.integers(0, 4), st.tuples(st.integers(0, 4), st.integers(0, 4)),
                          st.sampled_from(["same", "valid", None]))


@st.composite
def signatures(draw):
    ndim = 4
    fn = draw(st.sampled_from(FUNCTIONS))
    n = draw(st.integers(2, 4))
    arrays = [draw(metas(ndim))] + [draw(st.one_of(st.none(), metas(ndim))) for _ in range(n - 1)]
    out = draw(st.one_of(st.none(), metas(ndim)))
    scalars = tuple(draw(st.lists(scalar_values, min_size=4, max_size=6)))
    return fn, arrays, out, scalars, draw(st.sampled_from(OPTIONS))


def _mutated(draw, sig):
    fn, arrays, out, scalars, opts = sig
    arrays = list(arrays)
    what = draw(st.sampled_from(["nothing", "shape", "stride", "dtype", "device", "out", "drop", "scalar", "opts",
                                 "fn", "int_form"]))
    i = draw(st.integers(0, len(arrays) - 1))
    m = arrays[i]
    if what in ("shape", "stride", "dtype", "device") and m is not None:
        shape, strides, dt, dev = m
        d = draw(st.integers(0, len(shape) - 1))
        if what == "shape":
            shape = shape[:d] + (shape[d] + draw(st.integers(1, 3)),) + shape[d + 1:]
        elif what == "stride":
            strides = strides[:d] + (strides[d] + draw(st.sampled_from([1, 2, 4096, -1])),) + strides[d + 1:]
        elif what == "dtype":
            dt = numpy.dtype(draw(st.sampled_from([t for t in DTYPES if t != dt.name])))
        else:
            dev = dev + 1
        arrays[i] = (shape, strides, dt, dev)
    elif what == "out":
        out = None if out is not None else arrays[0]
    elif what == "drop" and i > 0:
        arrays[i] = None if m is not None else arrays[0]
    elif what == "scalar":
        k = draw(st.integers(0, len(scalars) - 1))
        scalars = scalars[:k] + (draw(scalar_values),) + scalars[k + 1:]
    elif what == "opts":
        opts = draw(st.sampled_from(OPTIONS))
    elif what == "fn":
        fn = draw(st.sampled_from(FUNCTIONS))
    elif what == "int_form":                     # an int parameter written as its tuple, or back
        k = draw(st.integers(0, len(scalars) - 1))
        v = scalars[k]
        if type(v) is int:
            v = (v, v)
        elif type(v) is tuple and v[0] == v[1]:
            v = v[0]
        scalars = scalars[:k] + (v,) + scalars[k + 1:]
    return fn, arrays, out, scalars, opts


def _array(m, ptr):
    if m is None:
        return None
    shape, strides, dt, dev = m
    a = FakeArray(shape, [0] * len(shape), dt, ptr, dev)
    a.strides = strides                        # byte strides as drawn (any value: only metadata here)
    return a


def _forms(fn, scalars):
    """The parameter forms the memo holds or tries for a call: as written, and canonical."""
    canon = callplan._canonical(fn, scalars, 2)
    return {scalars} | ({canon} if canon is not None else set())


def _same_call(a, b):
    fa, arrays_a, out_a, sc_a, opts_a = a
    fb, arrays_b, out_b, sc_b, opts_b = b
    return (fa == fb and arrays_a == arrays_b and out_a == out_b and opts_a == opts_b
            and bool(_forms(fa, sc_a) & _forms(fb, sc_b)))


@settings(max_examples=600, deadline=None)
@given(signatures(), st.data())
def test_the_memo_finds_a_plan_only_for_its_own_signature(sig, data):
    fn, arrays, out, scalars, opts = sig
    memo = {}
    xs = tuple(_array(m, (1 << 32) + 256 * i) for i, m in enumerate(arrays))
    first, found = callplan.lookup(memo, fn, xs, _array(out, 1 << 36), scalars, opts)
    assert found is None and first is not None
    plan = callplan.CallPlan()
    callplan.remember(memo, first, plan)
    other = _mutated(data.draw, sig)
    fn2, arrays2, out2, scalars2, opts2 = other
    ys = tuple(_array(m, (3 << 32) + 512 * i) for i, m in enumerate(arrays2))     # other pointers
    _, got = callplan.lookup(memo, fn2, ys, _array(out2, 5 << 36), scalars2, opts2)
    if _same_call(sig, other):
        assert got is plan, other
    else:
        assert got is None, (sig, other)
