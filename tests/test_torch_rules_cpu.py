"""cudnnconv.torch's rules without torch: argument mapping, 'same' padding, output shapes and the
conversion plan; and that ``import cudnnconv`` never imports torch."""
import subprocess
import sys

import pytest

from cudnnconv import torch_rules as rules


def test_int_tuple_and_valid_padding_map_to_tuples():
    r = rules.conv_args(2, (3, 3), 2, 1, 1, 1)
    assert (r.stride, r.padding, r.dilation, r.groups, r.pre_pad) == ((2, 2), (1, 1), (1, 1), 1, None)
    r = rules.conv_args(3, (1, 3, 5), (1, 2, 3), (0, 1, 2), 2, 4)
    assert (r.stride, r.padding, r.dilation, r.groups) == ((1, 2, 3), (0, 1, 2), (2, 2, 2), 4)
    assert rules.conv_args(1, (7,), 1, "valid", 1, 1).padding == (0,)


@pytest.mark.parametrize("kernel,dilation,padding,pre_pad", [
    ((3, 3), (1, 1), (1, 1), None),             # totals 2, 2: symmetric
    ((5, 3), (2, 1), (4, 1), None),             # totals 8, 2
    ((4, 4), (1, 1), (0, 0), (1, 2, 1, 2)),     # totals 3, 3: PyTorch puts the extra element at the end
    ((2, 3), (1, 1), (0, 0), (1, 1, 0, 1)),     # W total 2 -> (1, 1); H total 1 -> (0, 1); last dim first
])
def test_same_padding_is_symmetric_or_an_explicit_pre_pad(kernel, dilation, padding, pre_pad):
    r = rules.conv_args(2, kernel, 1, "same", dilation, 1)
    assert r.padding == padding and r.pre_pad == pre_pad
    # whichever form, the output keeps the input's spatial size, as PyTorch's 'same' does
    x = (2, 3, 11, 10)
    w = (4, 3) + kernel
    assert rules.conv_output_shape(rules.padded_shape(x, r.pre_pad), w, r) == (2, 4, 11, 10)


@pytest.mark.parametrize("args,exc,match", [
    ((2, (3, 3), 2, "same", 1, 1), ValueError, "strided"),
    ((2, (3, 3), 1, "full", 1, 1), ValueError, "padding"),
    ((2, (3, 3), 0, 0, 1, 1), ValueError, "stride"),
    ((2, (3, 3), 1, -1, 1, 1), ValueError, "padding"),
    ((2, (3, 3), 1, 0, (1, 1, 1), 1), ValueError, "dilation"),
    ((2, (3, 3), 1, 0, 1, 0), ValueError, "groups"),
    ((2, (3, 3), 1, 0, 1, 1.5), TypeError, "groups"),
    ((2, (3, 3), 1, 0, 1, True), TypeError, "groups"),
    ((2, (3,), 1, 0, 1, 1), ValueError, "kernel"),
])
def test_bad_arguments_raise_naming_the_argument(args, exc, match):
    with pytest.raises(exc, match=match):
        rules.conv_args(*args)


def test_transpose_args_and_output_shape():
    stride, pad, opad, groups, dil = rules.transpose_args(2, 2, 1, 1, 1, 1)
    assert (stride, pad, opad, groups, dil) == ((2, 2), (1, 1), (1, 1), 1, (1, 1))
    # (in - 1) * s - 2p + d(k - 1) + op + 1, PyTorch's formula restated
    assert rules.transpose_output_shape((2, 4, 5, 6), (4, 3, 3, 3), stride, pad, opad, groups, dil) == \
        (2, 3, (5 - 1) * 2 - 2 + 2 + 1 + 1, (6 - 1) * 2 - 2 + 2 + 1 + 1)
    with pytest.raises(ValueError, match="integer padding"):
        rules.transpose_args(2, 1, "same", 0, 1, 1)


def test_conv_output_shape_is_pytorchs_formula():
    r = rules.conv_args(2, (3, 5), (2, 1), (1, 2), (1, 2), 1)
    h = (17 + 2 * 1 - 1 * (3 - 1) - 1) // 2 + 1
    w = (9 + 2 * 2 - 2 * (5 - 1) - 1) // 1 + 1
    assert rules.conv_output_shape((3, 4, 17, 9), (8, 4, 3, 5), r) == (3, 8, h, w)


def test_check_ndim_names_the_expected_layout():
    rules.check_ndim(3, (1, 2, 3, 4, 5), "input")
    with pytest.raises(ValueError, match=r"input must be 4-d \(N, C, H, W\)"):
        rules.check_ndim(2, (2, 3, 4), "input")


def _cls(module, name):
    return type(name, (), {"__module__": module})


def test_conversion_plan_takes_exact_torch_classes_only_and_reverts_ours():
    torch_conv = _cls(rules.TORCH_MODULE, "Conv2d")
    torch_tconv = _cls(rules.TORCH_MODULE, "ConvTranspose3d")
    user_conv = _cls("mymodels.layers", "Conv2d")                # a user's subclass or look-alike
    relu = _cls("torch.nn.modules.activation", "ReLU")
    ours = _cls(rules.OUR_MODULE, "Conv1d")
    mods = [("", _cls("mymodels", "Net")), ("c1", torch_conv), ("up", torch_tconv), ("mine", user_conv),
            ("act", relu), ("done", ours)]
    assert rules.conversion_plan(mods) == [("c1", "Conv2d"), ("up", "ConvTranspose3d")]
    assert rules.conversion_plan(mods, reverse=True) == [("done", "Conv1d")]
    assert set(rules.CONVERSIONS) == {"Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
                                      "ConvTranspose3d"}


def test_importing_cudnnconv_never_imports_torch():
    code = "import sys, cudnnconv, cudnnconv.torch_rules; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_cudnnconv_torch_without_torch_says_what_is_missing():
    code = ("import sys; sys.modules['torch'] = None\n"
            "try:\n    import cudnnconv.torch\nexcept ImportError as e:\n    print('ERR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ERR cudnnconv.torch needs PyTorch"), out.stdout


# --- the memoized plans agree with the full validation, call for call ---------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

import numpy  # noqa: E402

_scalar = st.one_of(st.integers(-2, 4), st.booleans(), st.integers(0, 3).map(numpy.int64),
                    st.sampled_from(["same", "valid", "full"]))
_arg = st.one_of(_scalar, st.lists(st.one_of(st.integers(-1, 4), st.booleans()), min_size=1, max_size=3)
                 .flatmap(lambda v: st.sampled_from([tuple(v), list(v)])))


def _outcome(f, *a):
    try:
        return ("ok", f(*a))
    except Exception as e:                              # noqa: BLE001 - the outcome compared is the error
        return (type(e), str(e))


def _direct_forward(nsp, xs, ws, stride, padding, dilation, groups):
    rules.check_ndim(nsp, xs, "input")
    r = rules.conv_args(nsp, tuple(ws[2:]), stride, padding, dilation, groups)
    return r, rules.conv_output_shape(rules.padded_shape(xs, r.pre_pad), ws, r)


def _direct_transpose(nsp, xs, ws, stride, padding, opad, groups, dilation):
    rules.check_ndim(nsp, xs, "input")
    args = rules.transpose_args(nsp, stride, padding, opad, groups, dilation)
    return args, rules.transpose_output_shape(xs, ws, *args)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(nsp=st.integers(1, 2), n=st.integers(1, 3), c=st.sampled_from([2, 4]), k=st.sampled_from([2, 4]),
       hw=st.integers(1, 7), ks=st.integers(1, 4), stride=_arg, padding=_arg, dilation=_arg,
       groups=st.one_of(st.integers(0, 2), st.booleans()), opad=_arg)
def test_memoized_plans_equal_the_full_validation(nsp, n, c, k, hw, ks, stride, padding, dilation, groups, opad):
    xs = (n, c) + (hw,) * nsp
    ws = (k, c // max(1, groups if type(groups) is int and groups > 0 else 1)) + (ks,) * nsp
    tws = (c, k) + (ks,) * nsp
    rules._MEMO.clear()
    # seed the memo with the plain twin of each argument (True -> 1, numpy -> int, list -> tuple), which
    # hashes alike: the call with the original arguments must still get the full validation's outcome
    twin = lambda v: tuple(int(e) for e in v) if isinstance(v, (list, tuple)) else (  # noqa: E731
        v if isinstance(v, str) else int(v))
    _outcome(rules.forward_plan, nsp, xs, ws, twin(stride), twin(padding), twin(dilation), twin(groups))
    _outcome(rules.transpose_plan, nsp, xs, tws, twin(stride), twin(padding), twin(opad), twin(groups),
             twin(dilation))
    for _ in range(2):                                  # the second call finds the first one's entry
        assert _outcome(rules.forward_plan, nsp, xs, ws, stride, padding, dilation, groups) == \
            _outcome(_direct_forward, nsp, xs, ws, stride, padding, dilation, groups)
        assert _outcome(rules.transpose_plan, nsp, xs, tws, stride, padding, opad, groups, dilation) == \
            _outcome(_direct_transpose, nsp, xs, tws, stride, padding, opad, groups, dilation)


def test_a_bool_after_its_int_twin_is_still_checked():
    rules._MEMO.clear()
    assert rules.forward_plan(2, (1, 2, 5, 5), (2, 2, 3, 3), 1, 1, 1, 1)[1] == (1, 2, 5, 5)
    with pytest.raises(TypeError):
        rules.forward_plan(2, (1, 2, 5, 5), (2, 2, 3, 3), True, 1, 1, 1)
    with pytest.raises(TypeError):
        rules.forward_plan(2, (1, 2, 5, 5), (2, 2, 3, 3), 1, (True, 1), 1, 1)


def test_the_memo_is_bounded():
    rules._MEMO.clear()
    for h in range(rules.MEMO_MAX + 10):
        rules.forward_plan(1, (1, 1, h + 3), (1, 1, 3), 1, 0, 1, 1)
    assert 0 < len(rules._MEMO) <= rules.MEMO_MAX
