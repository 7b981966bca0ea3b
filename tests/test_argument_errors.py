"""The bad-argument catalogue, through the public API, on metadata only.

Every argument here is a fake CUDA array (``__cuda_array_interface__`` and no
memory), so each call must raise ValueError/TypeError before any GPU work:
reaching the GPU on this machine would raise something else and fail the test.
"""
import os
import sys

import numpy
import pytest

import cudnnconv
import test_argument_defects as _defects
from cudnnconv import params

Interface, DLPackOnly = _defects.Interface, _defects.DLPackOnly
DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "bad_inputs.md")


class A:
    """Spec of a fake CUDA array argument: shape and typestr."""

    def __init__(self, *shape, t="<f4"):
        self.shape, self.t = shape, t

    def __repr__(self):
        return "A%s%s" % (self.shape, "" if self.t == "<f4" else "[%s]" % self.t)


def _build(value, make):
    if isinstance(value, A):
        return make(value.shape, value.t)
    return value


def _call(fn, args, kwargs, make):
    args = [_build(v, make) for v in args]
    kwargs = {k: _build(v, make) for k, v in kwargs.items()}
    return getattr(cudnnconv, fn)(*args, **kwargs)


X2 = A(2, 4, 8, 8)
W2 = A(6, 4, 3, 3)

# (function, args, kwargs, exception, message fragment)
CASES = {
    # ---- conv -------------------------------------------------------------
    "conv/input-ndim-2": ("conv", [A(4, 8), A(6, 4)], {}, ValueError, "1 to 3 spatial dims"),
    "conv/input-ndim-6": ("conv", [A(1, 1, 2, 2, 2, 2), A(1, 1, 1, 1, 1, 1)], {}, ValueError, "spatial dims"),
    "conv/weight-ndim": ("conv", [X2, A(6, 4, 3)], {}, ValueError, "must have ndim 4"),
    "conv/channel-mismatch": ("conv", [X2, A(6, 3, 3, 3)], {}, ValueError, "C/groups"),
    "conv/channels-vs-groups": ("conv", [A(2, 5, 8, 8), A(6, 1, 3, 3)], {"groups": 2}, ValueError,
                                "not divisible by groups=2"),
    "conv/groups-weight-mismatch": ("conv", [X2, A(6, 4, 3, 3)], {"groups": 2}, ValueError, "C/groups"),
    "conv/K-not-divisible": ("conv", [X2, A(5, 2, 3, 3)], {"groups": 2}, ValueError,
                             "K=5 are not divisible by groups=2"),
    "conv/groups-zero": ("conv", [X2, W2], {"groups": 0}, ValueError, "groups must be positive"),
    "conv/kernel-too-large": ("conv", [A(1, 4, 4, 4), A(6, 4, 7, 3)], {"padding": 1}, ValueError,
                              "larger than the padded input"),
    "conv/dilated-kernel-too-large": ("conv", [A(1, 4, 6, 6), W2], {"dilation": 3}, ValueError,
                                      "larger than the padded input"),
    "conv/stride-zero": ("conv", [X2, W2], {"stride": 0}, ValueError, "stride must be positive"),
    "conv/weight-over-index-limit": ("conv", [A(1, 65536, 1, 1), A(65536, 65536, 1, 1)], {}, ValueError,
                                     "the weight \\(65536, 65536, 1, 1\\) has 4294967296 elements"),
    "conv/stride-negative": ("conv", [X2, W2], {"stride": (1, -2)}, ValueError, "stride must be positive"),
    "conv/dilation-zero": ("conv", [X2, W2], {"dilation": 0}, ValueError, "dilation must be positive"),
    "conv/padding-negative": ("conv", [X2, W2], {"padding": -1}, ValueError, "padding must be non-negative"),
    "conv/padding-wrong-length": ("conv", [X2, W2], {"padding": (1, 1, 1)}, ValueError, "2 entries"),
    "conv/padding-bad-string": ("conv", [X2, W2], {"padding": "full"}, ValueError, "'valid' or 'same'"),
    "conv/stride-float": ("conv", [X2, W2], {"stride": 1.5}, TypeError, "stride must be an int"),
    "conv/same-with-stride": ("conv", [X2, W2], {"padding": "same", "stride": 2}, ValueError,
                              "'same' needs stride 1"),
    "conv/dtype-mismatch": ("conv", [X2, A(6, 4, 3, 3, t="<f2")], {}, TypeError, "share one dtype"),
    "conv/bias-dtype-mismatch": ("conv", [X2, W2, A(6, t="<f8")], {}, TypeError, "share one dtype"),
    "conv/int32": ("conv", [A(2, 4, 8, 8, t="<i4"), A(6, 4, 3, 3, t="<i4")], {}, TypeError,
                   "unsupported dtype int32"),
    "conv/complex": ("conv", [A(2, 4, 8, 8, t="<c8"), A(6, 4, 3, 3, t="<c8")], {}, TypeError,
                     "unsupported dtype"),
    "conv/bias-length": ("conv", [X2, W2, A(5)], {}, ValueError, r"bias must have shape \(6,\)"),
    "conv/bias-2d": ("conv", [X2, W2, A(1, 6)], {}, ValueError, r"bias must have shape \(6,\)"),
    "conv/out-shape": ("conv", [X2, W2], {"out": A(2, 6, 8, 8)}, ValueError,
                       r"out has shape \(2, 6, 8, 8\) but the result has shape \(2, 6, 6, 6\)"),
    "conv/out-dtype": ("conv", [X2, W2], {"out": A(2, 6, 6, 6, t="<f8")}, TypeError, "dtype"),
    "conv/numpy-input": ("conv", [numpy.zeros((2, 4, 8, 8), numpy.float32), W2], {}, TypeError,
                         "input must be a CUDA array.*host memory"),
    "conv/numpy-weight": ("conv", [X2, numpy.zeros((6, 4, 3, 3), numpy.float32)], {}, TypeError,
                          "weight must be a CUDA array"),
    "conv/numpy-bias": ("conv", [X2, W2, numpy.zeros(6, numpy.float32)], {}, TypeError,
                        "bias must be a CUDA array"),
    "conv/numpy-out": ("conv", [X2, W2], {"out": numpy.zeros((2, 6, 6, 6), numpy.float32)}, TypeError,
                       "out must be a CUDA array"),
    "conv/list-input": ("conv", [[[[1.0]]], W2], {}, TypeError, "CUDA array"),
    "conv/scalar-input": ("conv", [1.0, W2], {}, TypeError, "CUDA array"),
    "conv/object-input": ("conv", [object(), W2], {}, TypeError, "CUDA array"),
    "conv/bad-engine": ("conv", [X2, W2], {"engine": "cudnn8"}, ValueError, "engine must be one of"),
    "conv/workspace-negative": ("conv", [X2, W2], {"workspace_limit": -1}, ValueError, "workspace_limit"),
    "conv/workspace-float": ("conv", [X2, W2], {"workspace_limit": 1.5}, ValueError, "workspace_limit"),
    "conv/workspace-str": ("conv", [X2, W2], {"workspace_limit": "1GB"}, ValueError, "workspace_limit"),
    "conv/zero-channels": ("conv", [A(2, 0, 8, 8), A(6, 0, 3, 3)], {}, ValueError, "zero-sized"),
    # ---- conv_backward_input -----------------------------------------------
    "bwd_input/inconsistent": ("conv_backward_input", [(2, 4, 8, 8), W2, A(2, 6, 7, 7)], {}, ValueError,
                               "grad_output has shape"),
    "bwd_input/stride-inconsistent": ("conv_backward_input", [(2, 4, 8, 8), W2, A(2, 6, 6, 6)],
                                      {"stride": 2}, ValueError, "grad_output has shape"),
    "bwd_input/channel-mismatch": ("conv_backward_input", [(2, 5, 8, 8), W2, A(2, 6, 6, 6)], {}, ValueError,
                                   "C/groups"),
    "bwd_input/input-shape-ndim": ("conv_backward_input", [(2, 4, 8), W2, A(2, 6, 6, 6)], {}, ValueError,
                                   "ndim"),
    "bwd_input/input-shape-not-ints": ("conv_backward_input", [(2, 4, 8.5, 8), W2, A(2, 6, 6, 6)], {},
                                       TypeError, "input_shape"),
    "bwd_input/input-shape-none": ("conv_backward_input", [None, W2, A(2, 6, 6, 6)], {}, TypeError,
                                   "input_shape"),
    "bwd_input/dtype-mismatch": ("conv_backward_input", [(2, 4, 8, 8), W2, A(2, 6, 6, 6, t="<f8")], {},
                                 TypeError, "share one dtype"),
    "bwd_input/same-even-kernel": ("conv_backward_input", [(2, 4, 8, 8), A(6, 4, 2, 2), A(2, 6, 8, 8)],
                                   {"padding": "same"}, ValueError, "asymmetric"),
    "bwd_input/out-shape": ("conv_backward_input", [(2, 4, 8, 8), W2, A(2, 6, 6, 6)], {"out": A(2, 4, 8, 7)},
                            ValueError, "out has shape"),
    "bwd_input/out-dtype": ("conv_backward_input", [(2, 4, 8, 8), W2, A(2, 6, 6, 6)],
                            {"out": A(2, 4, 8, 8, t="<f2")}, TypeError, "dtype"),
    "bwd_input/numpy": ("conv_backward_input", [(2, 4, 8, 8), numpy.zeros((6, 4, 3, 3), "f4"), A(2, 6, 6, 6)],
                        {}, TypeError, "weight must be a CUDA array"),
    "bwd_input/negative-padding": ("conv_backward_input", [(2, 4, 8, 8), W2, A(2, 6, 6, 6)], {"padding": -1},
                                   ValueError, "non-negative"),
    "bwd_input/bad-engine": ("conv_backward_input", [(2, 4, 8, 8), W2, A(2, 6, 6, 6)], {"engine": "v7"},
                             ValueError, "engine must be one of"),
    # ---- conv_backward_weight ----------------------------------------------
    "bwd_weight/weight-over-index-limit": ("conv_backward_weight", [A(1, 65536, 1, 1), (65536, 65536, 1, 1),
                                                                    A(1, 65536, 1, 1)], {}, ValueError,
                                           "the weight \\(65536, 65536, 1, 1\\) has 4294967296 elements"),
    "bwd_weight/inconsistent": ("conv_backward_weight", [X2, (6, 4, 3, 3), A(2, 6, 5, 5)], {}, ValueError,
                                "grad_output has shape"),
    "bwd_weight/weight-shape-K": ("conv_backward_weight", [X2, (7, 4, 3, 3), A(2, 6, 6, 6)], {}, ValueError,
                                  "grad_output has shape"),
    "bwd_weight/weight-shape-C": ("conv_backward_weight", [X2, (6, 3, 3, 3), A(2, 6, 6, 6)], {}, ValueError,
                                  "C/groups"),
    "bwd_weight/weight-shape-ndim": ("conv_backward_weight", [X2, (6, 4, 3), A(2, 6, 6, 6)], {}, ValueError,
                                     "ndim"),
    "bwd_weight/weight-shape-not-ints": ("conv_backward_weight", [X2, "6433", A(2, 6, 6, 6)], {}, TypeError,
                                         "weight_shape"),
    "bwd_weight/groups": ("conv_backward_weight", [X2, (6, 2, 3, 3), A(2, 6, 6, 6)], {"groups": 3},
                          ValueError, "not divisible by groups=3"),
    "bwd_weight/dtype-mismatch": ("conv_backward_weight", [A(2, 4, 8, 8, t="<f2"), (6, 4, 3, 3), A(2, 6, 6, 6)],
                                  {}, TypeError, "share one dtype"),
    "bwd_weight/out-shape": ("conv_backward_weight", [X2, (6, 4, 3, 3), A(2, 6, 6, 6)], {"out": A(6, 4, 3, 2)},
                             ValueError, "out has shape"),
    "bwd_weight/numpy": ("conv_backward_weight", [X2, (6, 4, 3, 3), numpy.zeros((2, 6, 6, 6), "f4")], {},
                         TypeError, "grad_output must be a CUDA array"),
    "bwd_weight/dilation-zero": ("conv_backward_weight", [X2, (6, 4, 3, 3), A(2, 6, 6, 6)], {"dilation": 0},
                                 ValueError, "dilation must be positive"),
    "bwd_weight/workspace": ("conv_backward_weight", [X2, (6, 4, 3, 3), A(2, 6, 6, 6)],
                             {"workspace_limit": -5}, ValueError, "workspace_limit"),
    # ---- conv_transpose -----------------------------------------------------
    "transpose/output-padding-ge-stride": ("conv_transpose", [A(1, 4, 5, 5), A(4, 3, 3, 3)],
                                           {"stride": 2, "output_padding": 2}, ValueError,
                                           "output_padding must be smaller"),
    "transpose/output-padding-stride1": ("conv_transpose", [A(1, 4, 5, 5), A(4, 3, 3, 3)],
                                         {"output_padding": 1}, ValueError, "output_padding must be smaller"),
    "transpose/output-padding-negative": ("conv_transpose", [A(1, 4, 5, 5), A(4, 3, 3, 3)],
                                          {"output_padding": -1}, ValueError, "non-negative"),
    "transpose/weight-cin": ("conv_transpose", [A(1, 4, 5, 5), A(3, 4, 3, 3)], {}, ValueError, "C_in=4"),
    "transpose/groups": ("conv_transpose", [A(1, 4, 5, 5), A(4, 3, 3, 3)], {"groups": 3}, ValueError,
                         "divisible by groups"),
    "transpose/ndim": ("conv_transpose", [A(1, 4, 5, 5), A(4, 3, 3)], {}, ValueError, "ndim"),
    "transpose/string-padding": ("conv_transpose", [A(1, 4, 5, 5), A(4, 3, 3, 3)], {"padding": "same"},
                                 ValueError, "integer padding"),
    "transpose/bias-length": ("conv_transpose", [A(1, 4, 5, 5), A(4, 3, 3, 3), A(4)], {"groups": 2},
                              ValueError, r"bias must have shape \(6,\)"),
    "transpose/dtype": ("conv_transpose", [A(1, 4, 5, 5), A(4, 3, 3, 3, t="<f8")], {}, TypeError,
                        "share one dtype"),
    "transpose/out-shape": ("conv_transpose", [A(1, 4, 5, 5), A(4, 3, 3, 3)], {"out": A(1, 3, 5, 5)},
                            ValueError, r"result has shape \(1, 3, 7, 7\)"),
    "transpose/numpy": ("conv_transpose", [numpy.zeros((1, 4, 5, 5), "f4"), A(4, 3, 3, 3)], {}, TypeError,
                        "input must be a CUDA array"),
    "transpose/stride-zero": ("conv_transpose", [A(1, 4, 5, 5), A(4, 3, 3, 3)], {"stride": 0}, ValueError,
                              "stride must be positive"),
    # ---- conv_bias_add_relu ------------------------------------------------------
    "fused/z-shape": ("conv_bias_add_relu", [X2, W2, A(2, 6, 8, 8), 1.0, A(6)], {}, ValueError,
                      r"z must have the output's shape \(2, 6, 6, 6\)"),
    "fused/z-none": ("conv_bias_add_relu", [X2, W2, None, 1.0, A(6)], {}, TypeError, "z must be an array"),
    "fused/z-numpy": ("conv_bias_add_relu", [X2, W2, numpy.zeros((2, 6, 6, 6), "f4"), 1.0, A(6)], {},
                      TypeError, "z must be a CUDA array"),
    "fused/z-dtype": ("conv_bias_add_relu", [X2, W2, A(2, 6, 6, 6, t="<f2"), 1.0, A(6)], {}, TypeError,
                      "share one dtype"),
    "fused/bias-shape": ("conv_bias_add_relu", [X2, W2, A(2, 6, 6, 6), 1.0, A(4)], {}, ValueError,
                         r"bias must have shape \(6,\)"),
    "fused/bias-2d": ("conv_bias_add_relu", [X2, W2, A(2, 6, 6, 6), 1.0, A(6, 1)], {}, ValueError,
                      r"bias must have shape \(6,\)"),
    "fused/bad-fusion": ("conv_bias_add_relu", [X2, W2, A(2, 6, 6, 6), 1.0, A(6)], {"fusion": "yes"},
                         ValueError, "fusion must be one of"),
    "fused/alpha": ("conv_bias_add_relu", [X2, W2, A(2, 6, 6, 6), "one", A(6)], {}, TypeError,
                    "alpha must be a finite real number"),
    "fused/channel-mismatch": ("conv_bias_add_relu", [X2, A(6, 3, 3, 3), A(2, 6, 6, 6), 1.0, A(6)], {},
                               ValueError, "C/groups"),
    "fused/out-shape": ("conv_bias_add_relu", [X2, W2, A(2, 6, 6, 6), 1.0, A(6)], {"out": A(2, 6, 6, 5)},
                        ValueError, "out has shape"),
    "fused/same-stride": ("conv_bias_add_relu", [X2, W2, A(2, 6, 8, 8), 1.0, A(6)],
                          {"padding": "same", "stride": 2}, ValueError, "'same' needs stride 1"),
    "fused/bad-engine": ("conv_bias_add_relu", [X2, W2, A(2, 6, 6, 6), 1.0, A(6)], {"engine": "fast"},
                         ValueError, "engine must be one of"),
    "fused/alpha-huge": ("conv_bias_add_relu", [X2, W2, A(2, 6, 6, 6), 10 ** 400, None], {}, TypeError,
                         "alpha must be a finite real number"),
    "fused/alpha-nan": ("conv_bias_add_relu", [X2, W2, A(2, 6, 6, 6), float("nan"), None], {}, ValueError,
                        "alpha must be a finite real number"),
    # ---- conv_epilogue ------------------------------------------------------------
    "epilogue/unknown-act": ("conv_epilogue", [X2, W2, A(6)], {"act": "softmax"}, ValueError,
                             "unknown activation 'softmax'; known: identity, relu"),
    "epilogue/act-type": ("conv_epilogue", [X2, W2], {"act": ["relu"]}, TypeError,
                          r"an activation is None, a name or a \(name, \*parameters\) tuple"),
    "epilogue/clamp-no-bounds": ("conv_epilogue", [X2, W2], {"act": "clamp"}, ValueError, "needs its parameters"),
    "epilogue/clamp-order": ("conv_epilogue", [X2, W2], {"act": ("clamp", 6, 0)}, ValueError,
                             "clamp's min 6.0 is above its max 0.0"),
    "epilogue/act-param-type": ("conv_epilogue", [X2, W2], {"act": ("leaky_relu", "0.1")}, TypeError,
                                "negative_slope must be a real number"),
    "epilogue/z-shape": ("conv_epilogue", [X2, W2], {"z": A(2, 6, 8, 8), "act": "silu"}, ValueError,
                         r"z must have the output's shape \(2, 6, 6, 6\)"),
    "epilogue/z-numpy": ("conv_epilogue", [X2, W2], {"z": numpy.zeros((2, 6, 6, 6), "f4")}, TypeError,
                         "z must be a CUDA array"),
    "epilogue/z-dtype": ("conv_epilogue", [X2, W2], {"z": A(2, 6, 6, 6, t="<f2")}, TypeError, "share one dtype"),
    "epilogue/bias-shape": ("conv_epilogue", [X2, W2, A(4)], {"act": "gelu"}, ValueError,
                            r"bias must have shape \(6,\)"),
    "epilogue/alpha1-str": ("conv_epilogue", [X2, W2, A(6)], {"alpha1": "2"}, TypeError,
                            "alpha1 must be a finite real number"),
    "epilogue/alpha2-bool": ("conv_epilogue", [X2, W2], {"z": A(2, 6, 6, 6), "alpha2": True}, TypeError,
                             "alpha2 must be a finite real number"),
    "epilogue/alpha1-inf": ("conv_epilogue", [X2, W2], {"alpha1": float("inf")}, ValueError,
                            "alpha1 must be a finite real number"),
    "epilogue/bad-fusion": ("conv_epilogue", [X2, W2], {"fusion": "always"}, ValueError, "fusion must be one of"),
    "epilogue/out-shape": ("conv_epilogue", [X2, W2, A(6)], {"act": "relu", "out": A(2, 6, 6, 5)}, ValueError,
                           "out has shape"),
    # ---- conv_backward_input_act ---------------------------------------------------
    "dgrad_act/identity": ("conv_backward_input_act", [(2, 4, 8, 8), W2, A(2, 6, 6, 6), X2], {"act": None},
                           ValueError, "act must be an activation, not the identity"),
    "dgrad_act/unknown-act": ("conv_backward_input_act", [(2, 4, 8, 8), W2, A(2, 6, 6, 6), X2], {"act": "swiglu"},
                              ValueError, "unknown activation 'swiglu'"),
    "dgrad_act/output-for-gelu": ("conv_backward_input_act", [(2, 4, 8, 8), W2, A(2, 6, 6, 6), X2],
                                  {"act": "gelu", "act_input_is": "output"}, ValueError,
                                  "the derivative of gelu needs the pre-activation, not the output"),
    "dgrad_act/bad-kind": ("conv_backward_input_act", [(2, 4, 8, 8), W2, A(2, 6, 6, 6), X2],
                           {"act": "relu", "act_input_is": "post"}, ValueError, "act_input_is must be one of"),
    "dgrad_act/act-input-shape": ("conv_backward_input_act", [(2, 4, 8, 8), W2, A(2, 6, 6, 6), A(2, 4, 8, 7)],
                                  {"act": "silu"}, ValueError,
                                  r"act_input must have the input's shape \(2, 4, 8, 8\), got \(2, 4, 8, 7\)"),
    "dgrad_act/act-input-dtype": ("conv_backward_input_act", [(2, 4, 8, 8), W2, A(2, 6, 6, 6), A(2, 4, 8, 8, t="<f2")],
                                  {"act": "silu"}, TypeError, "share one dtype"),
    "dgrad_act/act-input-none": ("conv_backward_input_act", [(2, 4, 8, 8), W2, A(2, 6, 6, 6), None],
                                 {"act": "silu"}, TypeError, "act_input must be a CUDA array"),
    "dgrad_act/bad-fusion": ("conv_backward_input_act", [(2, 4, 8, 8), W2, A(2, 6, 6, 6), X2],
                             {"act": "relu", "fusion": 1}, ValueError, "fusion must be one of"),
    "dgrad_act/grad-shape": ("conv_backward_input_act", [(2, 4, 8, 8), W2, A(2, 6, 7, 6), X2], {"act": "relu"},
                             ValueError, "grad_output"),
    # ---- conv_backward_weight_bias ---------------------------------------------------
    "wgrad_bias/bias-out-shape": ("conv_backward_weight_bias", [X2, (6, 4, 3, 3), A(2, 6, 6, 6)],
                                  {"bias_out": A(4)}, ValueError, r"bias_out must have shape \(K,\) = \(6,\)"),
    "wgrad_bias/bias-out-dtype": ("conv_backward_weight_bias", [X2, (6, 4, 3, 3), A(2, 6, 6, 6)],
                                  {"bias_out": A(6, t="<f2")}, TypeError, "share one dtype"),
    "wgrad_bias/grad-numpy": ("conv_backward_weight_bias", [X2, (6, 4, 3, 3), numpy.zeros((2, 6, 6, 6), "f4")], {},
                              TypeError, "grad_output must be a CUDA array"),
    "wgrad_bias/grad-shape": ("conv_backward_weight_bias", [X2, (6, 4, 3, 3), A(2, 6, 5, 6)], {}, ValueError,
                              "grad_output"),
    # ---- array kinds and array-interface fields -----------------------------
    "array/bool": ("conv", [A(2, 4, 8, 8, t="|b1"), A(6, 4, 3, 3, t="|b1")], {}, TypeError,
                   "unsupported dtype bool"),
    "array/uint8": ("conv", [A(2, 4, 8, 8, t="|u1"), A(6, 4, 3, 3, t="|u1")], {}, TypeError,
                    "unsupported dtype uint8"),
    "array/int64": ("conv", [A(2, 4, 8, 8, t="<i8"), A(6, 4, 3, 3, t="<i8")], {}, TypeError,
                    "unsupported dtype int64"),
    "array/complex128": ("conv", [A(2, 4, 8, 8, t="<c16"), A(6, 4, 3, 3, t="<c16")], {}, TypeError,
                         "unsupported dtype complex128"),
    "array/void16": ("conv", [A(2, 4, 8, 8, t="<V2"), A(6, 4, 3, 3, t="<V2")], {}, TypeError,
                     "void16.*cupy.from_dlpack"),
    "array/none-input": ("conv", [None, W2], {}, TypeError, "input must be a CUDA array.*got None"),
    "array/none-grad": ("conv_backward_weight", [X2, (6, 4, 3, 3), None], {}, TypeError,
                        "grad_output must be a CUDA array.*got None"),
    "array/null-pointer": ("conv", [Interface(data=(0, False)), W2], {}, ValueError, "NULL data pointer"),
    "array/pointer-2**63": ("conv", [Interface(data=(2 ** 63, False)), W2], {}, ValueError,
                            "no device address"),
    "array/pointer-misaligned": ("conv", [Interface(data=(0x7F0000000002, False)), W2], {}, ValueError,
                                 "not aligned to its item size"),
    "array/no-data": ("conv", [Interface(data=Ellipsis), W2], {}, TypeError, "no 'data' entry"),
    "array/typestr-none": ("conv", [Interface(typestr=None), W2], {}, TypeError, "typestr must be a string"),
    "array/shape-float": ("conv", [Interface(shape=(2.0, 4, 8, 8)), W2], {}, TypeError,
                          "shape must be a tuple of ints"),
    "array/shape-negative": ("conv", [Interface(shape=(-2, 4, 8, 8)), W2], {}, ValueError, "negative dim"),
    "array/shape-past-2**63": ("conv", [Interface(shape=(2 ** 63, 4, 8, 8)), W2], {}, ValueError,
                               "elements|index|limit|over"),
    "array/stride-zero-nonempty-ok-but-odd": ("conv", [Interface(strides=(1024, 256, 32, 3)), W2], {}, ValueError,
                                              "multiple of the item size"),
    "array/stride-past-2**63": ("conv", [Interface(strides=(2 ** 63, 256, 32, 4)), W2], {}, ValueError,
                                "below 2\\*\\*63"),
    "array/dlpack-device-empty": ("conv", [DLPackOnly(()), W2], {}, TypeError, "invalid __dlpack_device__"),
    "array/dlpack-host": ("conv", [DLPackOnly((1, 0)), W2], {}, TypeError, "host memory"),
    # ---- parameters of other types -------------------------------------------
    "param/stride-bool": ("conv", [X2, W2], {"stride": True}, TypeError, "stride must be an int"),
    "param/groups-bool": ("conv", [X2, W2], {"groups": True}, TypeError, "groups must be an int"),
    "param/groups-float": ("conv", [X2, W2], {"groups": 1.0}, TypeError, "groups must be an int"),
    "param/padding-nested": ("conv", [X2, W2], {"padding": ((1, 1), (1, 1))}, TypeError,
                             "padding must be an int"),
    "param/dilation-string": ("conv", [X2, W2], {"dilation": "2"}, TypeError, "dilation must be an int"),
    "param/padding-2**62": ("conv", [X2, W2], {"padding": (1, 2 ** 62)}, ValueError, "over the index limit"),
    "param/dilation-2**62": ("conv", [X2, W2], {"dilation": 2 ** 62}, ValueError, "larger than the padded input"),
    "param/benchmark-string": ("conv", [X2, W2], {"benchmark": "no"}, TypeError,
                               "benchmark must be True, False or None"),
    "param/allow-tf32-int": ("conv", [X2, W2], {"allow_tf32": 0}, TypeError,
                             "allow_tf32 must be True, False or None"),
    "param/input-shape-iterator": ("conv_backward_input", [iter((2, 4, 8, 8)), W2, A(2, 6, 6, 6)], {}, TypeError,
                                   "input_shape must be a sequence of ints"),
    "param/input-shape-bytearray": ("conv_backward_input", [bytearray(b"\\x02\\x04\\x08\\x08"), W2, A(2, 6, 6, 6)], {},
                                    TypeError, "input_shape must be a sequence of ints"),
    "param/alpha-string": ("conv_bias_add_relu", [X2, W2, A(2, 6, 6, 6), "1.5", None], {}, TypeError,
                           "alpha must be a finite real number"),
    "param/alpha-bool": ("conv_bias_add_relu", [X2, W2, A(2, 6, 6, 6), True, None], {}, TypeError,
                         "alpha must be a finite real number"),
    "param/engine-array": ("conv", [X2, W2], {"engine": numpy.array(["auto", "graph"])}, ValueError,
                           "engine must be one of"),
    "param/fusion-array": ("conv_bias_add_relu", [X2, W2, A(2, 6, 6, 6), 1.0, None],
                           {"fusion": numpy.array(["auto"])}, ValueError, "fusion must be one of"),
    "array/big-endian": ("conv", [A(2, 4, 8, 8, t=">f4"), A(6, 4, 3, 3, t=">f4")], {}, TypeError, "big-endian"),
    "array/masked": ("conv", [Interface(mask=(0x7F0000100000, False)), W2], {}, TypeError, "masked array"),
    "out/read-only": ("conv", [X2, W2], {"out": Interface(shape=(2, 6, 6, 6), data=(0x7F0000200000, True))},
                      ValueError, "out is read-only"),
    "param/input-shape-negative-batch": ("conv_backward_input", [(-5, 4, 8, 8), W2, A(-5, 6, 6, 6)], {},
                                         ValueError, "negative"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_argument(case, fake_cuda_array):
    fn, args, kwargs, exc, fragment = CASES[case]
    with pytest.raises(exc, match=fragment) as info:
        _call(fn, args, kwargs, fake_cuda_array)
    # ValueError and TypeError only: never a CuDNNError or a CUDA error from reaching the GPU.
    assert type(info.value) in (ValueError, TypeError), type(info.value)


def _arg_text(v):
    """An argument as the catalogue writes it."""
    if isinstance(v, A):
        return repr(v)
    if isinstance(v, numpy.ndarray):
        if v.dtype.kind in "US":
            return "numpy.array(%r)" % (v.tolist(),)
        return "numpy.zeros(%s, %s)" % (v.shape, v.dtype.name)
    if isinstance(v, (Interface, DLPackOnly)):
        return repr(v)
    if type(v) is int and abs(v) > 1 << 40:
        return "2**%d" % (v.bit_length() - 1) if v == 1 << (v.bit_length() - 1) else "10**400"
    if isinstance(v, tuple) and any(type(e) is int and e > 1 << 40 for e in v):
        return "(%s)" % ", ".join(_arg_text(e) for e in v)
    if type(v).__name__ == "tuple_iterator":
        return "iter(...)"
    if type(v) is object:
        return "object()"
    return repr(v)


def render_catalogue(make):
    """The catalogue as a markdown table: every row is a CASES entry, with
    the message the call raises now (so the doc can be checked against it)."""
    rows = ["# Bad inputs: what each raises", "",
            "Generated from `tests/test_argument_errors.py` (`python3 tests/test_argument_errors.py` rewrites",
            "it; a test fails when it is stale).  Every row is a test: the call raises the exception shown,",
            "before any GPU work, with this message.  Arrays are written `A(shape)` (a CUDA array of float32",
            "unless a typestr follows) or `Interface(field=value)` (a `__cuda_array_interface__` with that",
            "field changed from a valid (2, 4, 8, 8) float32 array's).", "",
            "| case | call | raises | message (start) |", "|---|---|---|---|"]
    for name in sorted(CASES):
        fn, args, kwargs, exc, _ = CASES[name]
        call = "%s(%s)" % (fn, ", ".join([_arg_text(a) for a in args] +
                                         ["%s=%s" % (k, _arg_text(v)) for k, v in kwargs.items()]))
        try:
            _call(fn, args, kwargs, make)
            raised, msg = "nothing", ""
        except Exception as e:                # noqa: BLE001 - the table records what was raised
            raised, msg = type(e).__name__, str(e).splitlines()[0]
        if len(msg) > 110:
            msg = msg[:107] + "..."
        rows.append("| %s | `%s` | %s | %s |" % (name, call.replace("|", "\\|"), raised,
                                                 msg.replace("|", "\\|")))
    rows.append("")
    rows.append("%d cases." % len(CASES))
    return "\n".join(rows) + "\n"


def test_the_catalogue_doc_is_current(fake_cuda_array):
    with open(DOC) as f:
        assert f.read() == render_catalogue(fake_cuda_array), \
            "docs/bad_inputs.md is stale: run python3 tests/test_argument_errors.py"
    assert len(CASES) >= 60


def test_every_public_function_is_in_the_catalogue():
    covered = {CASES[c][0] for c in CASES}
    assert covered == {"conv", "conv_backward_input", "conv_backward_weight", "conv_transpose",
                       "conv_bias_add_relu", "conv_epilogue", "conv_backward_input_act",
                       "conv_backward_weight_bias"}


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_one_dim_and_three_dim_errors(nd, fake_cuda_array):
    x = fake_cuda_array((2, 4) + (5,) * nd)
    with pytest.raises(ValueError, match="larger than the padded input"):
        cudnnconv.conv(x, fake_cuda_array((6, 4) + (6,) * nd))
    with pytest.raises(ValueError, match="%d entries" % nd):
        cudnnconv.conv(x, fake_cuda_array((6, 4) + (3,) * nd), stride=(1,) * (nd + 1))


def test_missing_engine_is_reported(fake_cuda_array):
    info = cudnnconv.build_info()
    x, w = fake_cuda_array((2, 4, 8, 8)), fake_cuda_array((6, 4, 3, 3))
    for name in ("graph", "legacy"):
        if name in info["engines"]:
            continue
        with pytest.raises(cudnnconv.EngineUnavailable, match="not in this build"):
            cudnnconv.conv(x, w, engine=name)


def test_flags_rejects_bad_values():
    with pytest.raises(ValueError, match="workspace_limit"):
        with cudnnconv.flags(workspace_limit=-1):
            pass
    with pytest.raises(ValueError, match="engine must be one of"):
        with cudnnconv.flags(engine="nope"):
            pass


def test_invalid_cuda_array_interface(fake_cuda_array):
    bad = fake_cuda_array((2, 4, 8, 8), typestr="<zz")
    with pytest.raises(TypeError, match="invalid __cuda_array_interface__"):
        cudnnconv.conv(bad, fake_cuda_array((6, 4, 3, 3)))


# ---------------------------------------------------------------------------
# Devices: only knowable with a GPU, so the check itself is tested directly
# ---------------------------------------------------------------------------

def test_check_same_device_different():
    with pytest.raises(ValueError, match="weight is on device 1 but input is on device 0"):
        params.check_same_device([("input", 0), ("weight", 1)])
    with pytest.raises(ValueError, match="out is on device 2 but input is on device 0"):
        params.check_same_device([("input", 0), ("weight", 0), ("out", 2)])


def test_check_same_device_same():
    assert params.check_same_device([("input", 3), ("weight", 3), ("bias", 3)]) == 3
    assert params.check_same_device([("input", 0)]) == 0


if __name__ == "__main__":          # rewrite docs/bad_inputs.md from the catalogue
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from conftest import FakeCudaArray
    with open(DOC, "w") as f:
        f.write(render_catalogue(lambda shape, typestr: FakeCudaArray(shape, typestr)))
    print("wrote", DOC, len(CASES), "cases")
