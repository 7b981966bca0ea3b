"""The typed first pass of conv() and the full Python path agree (no GPU).

``callplan.conv_plan`` (typed) and ``api._conv_first_pass`` (the full path,
which holds every check and message) must give the same plan, field by
field, for every call the typed pass accepts; the typed pass must never
raise, must decline (None) every call the full path refuses, and may decline
only the uncommon forms it leaves to the full path on purpose ('same' or
'valid' padding, parameters that are not exact ints or tuples of them,
values over 2**31 - 1, a batch split that cannot be planned).

Both paths read only array metadata here: a fake array type stands in for
cupy.ndarray (``callplan._use_array_type``) and the full path's
materialization is the identity, so hypothesis can draw arbitrary shapes,
strides, dtypes, devices, pointers and parameters, valid and invalid.
"""

import numpy
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from cudnnconv import api, callplan, options, params  # noqa: E402
from conftest import MetaArray  # noqa: E402

PARAM_MAX = 2 ** 31 - 1


class FakeArray(MetaArray):
    """What both first passes read of a CUDA array, and nothing more."""


@pytest.fixture(autouse=True)
def fake_arrays(monkeypatch):
    monkeypatch.setattr(params.ArrayArg, "materialize", lambda self: self.obj)
    callplan._use_array_type(FakeArray)
    yield
    callplan._use_array_type(None)          # the next use imports cupy.ndarray again


def _strides(shape, how, draw):
    nd = len(shape)
    if how == "nchw":
        order = list(range(nd))
    elif how == "nhwc":
        order = [0] + list(range(2, nd)) + [1]
    else:                                   # any permutation, maybe sliced
        order = draw(st.permutations(range(nd)))
    strides = [0] * nd
    acc = 1
    for d in reversed(order):
        strides[d] = acc
        acc *= max(shape[d], 1) * (2 if how == "sliced" else 1)
    return strides


@st.composite
def arrays(draw, shape, dtype, device=0):
    how = draw(st.sampled_from(["nchw", "nhwc", "nhwc", "any", "sliced"]))
    # Pointers aligned to the item size, as a CuPy array's always are (the
    # array-interface check refuses others; the typed pass sees no interface).
    ptr = draw(st.sampled_from([1 << 32, 1 << 40])) + numpy.dtype(dtype).itemsize * draw(st.sampled_from([0, 1, 8]))
    return FakeArray(shape, _strides(shape, how, draw), dtype, ptr, device)


def _param(nsp, minimum):
    good = st.integers(minimum, 4)
    return st.one_of(
        good, good, st.tuples(*[good] * nsp), st.lists(good, min_size=nsp, max_size=nsp),
        st.tuples(good),                                   # one entry for every dim
        st.tuples(*[good] * (nsp + 1)),                    # wrong length
        st.integers(-3, -1), st.sampled_from([2 ** 31, 2 ** 62, 2 ** 63, 2 ** 70, PARAM_MAX]),
        st.just(True), st.just(numpy.int64(1)), st.just(1.0), st.just(None))


@st.composite
def conv_calls(draw):
    nsp = draw(st.integers(1, 3))
    groups_ok = draw(st.sampled_from([1, 1, 2, 4]))
    n = draw(st.sampled_from([0, 1, 2, 3, 1 << 22]))
    c = groups_ok * draw(st.integers(1, 3))
    k = groups_ok * draw(st.integers(1, 3))
    sp = tuple(draw(st.integers(1, 9)) for _ in range(nsp))
    ks = tuple(draw(st.integers(1, 4)) for _ in range(nsp))
    dtype = draw(st.sampled_from(["float16", "float32", "float64", "float32", "int8"]))
    x_shape = (n, c) + sp
    w_shape = (k, draw(st.sampled_from([c // groups_ok, c // groups_ok, c, c + 1]))) + ks
    if draw(st.integers(0, 9)) == 0:
        w_shape = w_shape[:-1]                             # wrong ndim
    x = draw(arrays(x_shape, dtype))
    w = draw(arrays(w_shape, draw(st.sampled_from([dtype] * 5 + ["float64"])), draw(st.sampled_from([0] * 9 + [1]))))
    b = draw(st.one_of(st.none(), st.builds(lambda kk: FakeArray((kk,), (1,), dtype, 1 << 36),
                                            st.sampled_from([k, k, k + 1]))))
    stride, dilation = draw(_param(nsp, 1)), draw(_param(nsp, 1))
    padding = draw(st.one_of(_param(nsp, 0), st.sampled_from(["same", "valid", "bogus"])))
    groups = draw(st.one_of(st.just(groups_ok), st.just(groups_ok), st.integers(-1, 5),
                            st.sampled_from([2 ** 63, True, numpy.int32(1)])))
    out = None
    if draw(st.booleans()):
        out_shape = draw(st.sampled_from(["right", "right", "wrong"]))
        try:
            _, y_shape = params.conv_geometry(x_shape, w_shape, stride, padding, dilation, groups)
        except Exception:
            y_shape = x_shape
        if out_shape == "wrong":
            y_shape = tuple(y_shape[:-1]) + (y_shape[-1] + 1,)
        where = draw(st.sampled_from(["apart", "apart", "on_input"]))
        ptr = x.data.ptr if where == "on_input" else 1 << 44
        out = draw(arrays(y_shape, draw(st.sampled_from([dtype] * 5 + ["float16"]))))
        out.data.ptr = ptr
    return x, w, b, stride, padding, dilation, groups, out


def _common(stride, padding, dilation, groups):
    """The forms the typed pass must accept whenever the full path does."""
    def ok(v):
        if type(v) is int:
            return v <= PARAM_MAX
        return type(v) in (tuple, list) and all(type(e) is int and e <= PARAM_MAX for e in v)
    return not isinstance(padding, str) and ok(stride) and ok(padding) and ok(dilation) and \
        type(groups) is int and groups <= PARAM_MAX


FIELDS = ("fn", "device", "layout", "geom", "shape", "pack", "chunks", "repro", "names", "out_direct",
          "out_span", "spans", "pad", "extra")


@settings(max_examples=1500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(conv_calls(), st.sampled_from([options.resolve(), options.resolve(benchmark=True, engine="graph")]))
def test_typed_first_pass_agrees_with_the_full_path(call, opts):
    x, w, b, stride, padding, dilation, groups, out = call
    try:
        typed = callplan.conv_plan(x, w, b, stride, padding, dilation, groups, out, opts)
    except Exception as e:              # the typed pass never raises: it declines
        pytest.fail("conv_plan raised %s: %s" % (type(e).__name__, e))
    try:
        full, _, _ = api._conv_first_pass(x, w, b, stride, padding, dilation, groups, out, opts)
    except (ValueError, TypeError) as e:
        assert typed is None, "the full path refuses (%s) but the typed pass planned %r" % (e, typed)
        return
    if typed is None:
        # Declining a valid call is allowed only for the uncommon forms (and
        # a batch split beyond what conv_plan plans itself).
        assert not _common(stride, padding, dilation, groups) or len(full.chunks) > 1, \
            "the typed pass declined a common valid call: %r" % (call,)
        return
    for f in FIELDS:
        assert getattr(typed, f) == getattr(full, f), (f, getattr(typed, f), getattr(full, f))


def test_huge_parameters_are_left_to_the_full_path():
    """Parameters over 2**31 - 1 never reach the typed arithmetic: no
    OverflowError, and no wrapped-around plan with a negative output dim."""
    opts = options.resolve()
    x = FakeArray((2, 4, 8, 8), (256, 64, 8, 1), "float32", 1 << 32)
    w = FakeArray((4, 4, 3, 3), (36, 9, 3, 1), "float32", 1 << 33)
    for kw in ({"dilation": 2 ** 62}, {"dilation": 2 ** 63}, {"stride": 2 ** 63}, {"padding": 2 ** 63},
               {"groups": 2 ** 63}, {"dilation": (1, 2 ** 62)}, {"padding": (2 ** 64, 0)}):
        args = dict(stride=1, padding=0, dilation=1, groups=1)
        args.update(kw)
        assert callplan.conv_plan(x, w, None, args["stride"], args["padding"], args["dilation"], args["groups"],
                                  None, opts) is None, kw
        try:
            full, _, _ = api._conv_first_pass(x, w, None, args["stride"], args["padding"], args["dilation"],
                                              args["groups"], None, opts)
        except (ValueError, TypeError):
            continue
        assert min(full.shape[2:]) >= 1, (kw, full.shape)        # Python ints: no wrap-around


def test_a_weight_over_the_index_limit_is_left_to_the_full_path_which_names_it():
    """The input and output are small, the weight is over 2**31 - 1 elements: the typed pass declines
    (it plans no batch split for the weight), and the full path refuses with the weight's size."""
    opts = options.resolve()
    x = FakeArray((1, 65536, 1, 1), (65536, 1, 1, 1), "float16", 1 << 32)
    w = FakeArray((65536, 65536, 1, 1), (65536, 1, 1, 1), "float16", 1 << 40)
    assert callplan.conv_plan(x, w, None, 1, 0, 1, 1, None, opts) is None
    with pytest.raises(ValueError, match="the weight \\(65536, 65536, 1, 1\\) has 4294967296 elements"):
        api._conv_first_pass(x, w, None, 1, 0, 1, 1, None, opts)


def test_the_common_case_is_planned_by_the_typed_pass():
    """A guard on the property test: the typed pass does plan ordinary calls."""
    opts = options.resolve()
    x = FakeArray((2, 4, 8, 8), (256, 1, 32, 4), "float16", 1 << 32)      # channels-last
    w = FakeArray((6, 2, 3, 3), (18, 1, 6, 2), "float16", 1 << 33)
    typed = callplan.conv_plan(x, w, None, 1, (1, 1), 1, 2, None, opts)
    full, _, _ = api._conv_first_pass(x, w, None, 1, (1, 1), 1, 2, None, opts)
    assert typed is not None and typed.layout == params.CHANNELS_LAST and typed.shape == (2, 6, 8, 8)
    for f in FIELDS:
        assert getattr(typed, f) == getattr(full, f), f
