"""The fused epilogue's activation table (cudnnconv.activations), without a GPU: canonical forms,
argument errors, cuDNN's pointwise modes checked against cuDNN's own header, and the float64
references checked against each other (derivative against finite differences of the forward)."""
import math
import os
import re

import numpy as np
import pytest

from cudnnconv import activations as A
from cudnnconv.activations import Activation


@pytest.mark.parametrize("spec, expect", [
    (None, Activation("identity", ())),
    ("identity", Activation("identity", ())),
    ("none", Activation("identity", ())),
    ("ReLU", Activation("relu", ())),
    ("swish", Activation("silu", ())),
    ("gelu_erf", Activation("gelu", ())),
    ("leaky_relu", Activation("leaky_relu", (0.01,))),
    (("leaky_relu",), Activation("leaky_relu", (0.01,))),
    (("leaky_relu", 1), Activation("leaky_relu", (1.0,))),
    (("elu", 0.5), Activation("elu", (0.5,))),
    (("clamp", -1, 6), Activation("clamp", (-1.0, 6.0))),
    (Activation("clamp", (0, 6)), Activation("clamp", (0.0, 6.0))),
    (("leaky_relu", np.float32(0.25)), Activation("leaky_relu", (0.25,))),
    (("elu", np.int64(2)), Activation("elu", (2.0,))),
])
def test_every_spelling_has_one_canonical_form(spec, expect):
    got = A.activation(spec)
    assert got == expect and all(type(p) is float for p in got.params)
    assert A.activation(got) == got                       # canonical forms are fixed points


@pytest.mark.parametrize("spec, exc, words", [
    ("softmax", ValueError, "unknown activation 'softmax'; known: identity, relu"),
    ("clamp", ValueError, "needs its parameters"),
    (("clamp", 1.0), ValueError, "takes 2 parameter(s) (min, max), got 1"),
    (("relu", 0.1), ValueError, "takes 0 parameter(s) (none), got 1"),
    (("leaky_relu", True), TypeError, "leaky_relu's negative_slope must be a real number, got bool"),
    (("leaky_relu", "0.1"), TypeError, "got str"),
    (("leaky_relu", np.bool_(True)), TypeError, "must be a real number"),
    (("elu", float("nan")), ValueError, "elu's alpha must be finite"),
    (("clamp", 2, 1), ValueError, "clamp's min 2.0 is above its max 1.0"),
    (["relu"], TypeError, "an activation is None, a name or a (name, *parameters) tuple"),
    (3, TypeError, "an activation is None"),
])
def test_bad_activations_say_what_is_wrong(spec, exc, words):
    with pytest.raises(exc) as e:
        A.activation(spec)
    assert words in str(e.value)


def _header_enum():
    """cudnnPointwiseMode_t's values from the cuDNN header this machine builds against, or None."""
    try:
        import nvidia.cudnn
    except ImportError:
        return None
    for d in list(getattr(nvidia.cudnn, "__path__", [])):
        path = os.path.join(d, "include", "cudnn_graph.h")
        if os.path.exists(path):
            text = open(path).read()
            return {m.group(1): int(m.group(2))
                    for m in re.finditer(r"\bCUDNN_POINTWISE_([A-Z_]+)\s*=\s*(\d+)", text)}
    return None


def test_pointwise_modes_match_cudnns_header():
    enum = _header_enum()
    if enum is None:
        pytest.skip("no cuDNN header (nvidia-cudnn wheel) on this machine")
    expect_fwd = {"relu": "RELU_FWD", "leaky_relu": "RELU_FWD", "clamp": "RELU_FWD", "elu": "ELU_FWD",
                  "gelu": "GELU_FWD", "gelu_tanh": "GELU_APPROX_TANH_FWD", "silu": "SWISH_FWD",
                  "sigmoid": "SIGMOID_FWD", "tanh": "TANH_FWD"}
    for name, mode in expect_fwd.items():
        spec = (name, 0.0, 1.0) if name == "clamp" else name
        assert A.cudnn_forward(spec)[0] == enum[mode], name
        assert A.cudnn_backward(spec)[0] == enum[mode.replace("_FWD", "_BWD")], name
    assert A.cudnn_forward("identity") is None and A.cudnn_backward(None) is None


def test_cudnn_attributes_of_the_relu_family_and_the_parametrised_ones():
    assert A.cudnn_forward("relu")[1] == {"relu_lower_clip": 0.0, "relu_lower_clip_slope": 0.0}
    assert A.cudnn_forward(("leaky_relu", 0.2))[1] == {"relu_lower_clip": 0.0, "relu_lower_clip_slope": 0.2}
    assert A.cudnn_backward(("clamp", -1, 6))[1] == {"relu_lower_clip": -1.0, "relu_upper_clip": 6.0,
                                                     "relu_lower_clip_slope": 0.0}
    assert A.cudnn_forward(("elu", 0.5))[1] == {"elu_alpha": 0.5}
    assert A.cudnn_forward("silu")[1] == {"swish_beta": 1.0}
    assert A.cudnn_forward("gelu")[1] == {}


def _relu_family_by_cudnns_formula(v, attrs):
    """RELU_FWD as cuDNN's header states it: lower_clip + slope * (v - lower_clip) below the lower
    clip, v between, at most upper_clip."""
    lo, hi = attrs.get("relu_lower_clip", 0.0), attrs.get("relu_upper_clip", math.inf)
    slope = attrs.get("relu_lower_clip_slope", 0.0)
    return np.minimum(np.where(v < lo, lo + slope * (v - lo), v), hi)


@pytest.mark.parametrize("spec", ["relu", ("leaky_relu", 0.2), ("clamp", -0.5, 0.75)])
def test_the_relu_family_attributes_compute_the_activation(spec):
    v = np.linspace(-3, 3, 601)
    mode, attrs = A.cudnn_forward(spec)
    np.testing.assert_allclose(_relu_family_by_cudnns_formula(v, attrs), A.reference_forward(spec, v),
                               rtol=0, atol=1e-15)


@pytest.mark.parametrize("spec, x, y", [
    ("relu", [-1.0, 2.0], [0.0, 2.0]),
    (("leaky_relu", 0.1), [-1.0, 2.0], [-0.1, 2.0]),
    (("clamp", -1, 6), [-3.0, 0.5, 9.0], [-1.0, 0.5, 6.0]),
    ("elu", [-1.0, 1.0], [math.exp(-1) - 1, 1.0]),
    ("gelu", [1.0, -1.0], [0.8413447460685429, -0.15865525393145707]),
    ("gelu_tanh", [1.0], [0.8411919906082768]),
    ("silu", [1.0, -40.0], [0.7310585786300049, -40.0 / (1 + math.exp(40.0))]),
    ("sigmoid", [0.0, 800.0, -800.0], [0.5, 1.0, 0.0]),
    ("tanh", [0.5], [math.tanh(0.5)]),
    (None, [1.5], [1.5]),
])
def test_reference_forward_at_known_points(spec, x, y):
    np.testing.assert_allclose(A.reference_forward(spec, np.array(x)), y, rtol=1e-12, atol=1e-300)


SPECS = [None, "relu", ("leaky_relu", 0.1), ("leaky_relu", -0.5), ("elu", 0.7), ("elu", -0.3), "gelu",
         "gelu_tanh", "silu", "sigmoid", "tanh", ("clamp", -0.8, 1.3)]


@pytest.mark.parametrize("spec", SPECS)
def test_reference_derivative_is_the_forwards_slope(spec):
    rng = np.random.default_rng(7)
    v = rng.uniform(-4, 4, 4000)
    act = A.activation(spec)
    kinks = {"relu": [0.0], "leaky_relu": [0.0], "clamp": list(act.params), "elu": [0.0]}.get(act.name, [])
    for k in kinks:                                   # finite differences across a kink say nothing
        v = v[np.abs(v - k) > 1e-3]
    h = 1e-6
    numeric = (A.reference_forward(spec, v + h) - A.reference_forward(spec, v - h)) / (2 * h)
    np.testing.assert_allclose(A.reference_derivative(spec, v), numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("spec", SPECS)
def test_derivative_from_the_output_where_the_output_gives_it(spec):
    rng = np.random.default_rng(8)
    v = rng.uniform(-4, 4, 4000)
    if A.needs(spec) != "output":
        with pytest.raises(ValueError, match="needs the pre-activation"):
            A.reference_derivative_from_output(spec, A.reference_forward(spec, v))
        return
    np.testing.assert_allclose(A.reference_derivative_from_output(spec, A.reference_forward(spec, v)),
                               A.reference_derivative(spec, v), rtol=1e-9, atol=1e-12)


def test_what_each_backward_needs():
    assert A.needs(None) is None
    assert {n: A.needs((n, 0.0, 1.0) if n == "clamp" else n) for n in A.NAMES if n != "identity"} == {
        "relu": "output", "leaky_relu": "output", "elu": "output", "gelu": "pre", "gelu_tanh": "pre",
        "silu": "pre", "sigmoid": "output", "tanh": "output", "clamp": "output"}
    assert A.needs(("leaky_relu", -0.5)) == "pre" and A.needs(("elu", -1.0)) == "pre"


@pytest.mark.parametrize("epi", [
    A.epilogue(),
    A.epilogue(0.5, 2.0, "silu", True, True),
    A.epilogue(1, 1, ("clamp", -1, 6), False, True),
    A.epilogue(act=("leaky_relu", 0.2), has_z=True),
    A.epilogue(act="gelu_tanh"),
])
def test_an_epilogue_round_trips_through_its_key_fields(epi):
    fields = A.key_fields(epi)
    assert len(fields) == A.KEY_FIELDS and all(type(v) in (int, float) for v in fields)
    assert A.from_key_fields(fields) == epi
    assert A.from_key_fields(list(fields)) == epi


@pytest.mark.parametrize("fields, words", [
    ((1.0, 1.0, 1, 0.0, 0.0), "has 6 fields, got 5"),
    ((1.0, 1.0, 99, 0.0, 0.0, 0), "bad activation index 99"),
    ((1.0, 1.0, True, 0.0, 0.0, 0), "bad activation index True"),
    ((1.0, 1.0, 1, 0.0, 0.0, 4), "bad parts 4"),
    ((1.0, 1.0, A.NAMES.index("relu"), 0.5, 0.0, 0), "gives relu parameters it does not take"),
    ((1.0, 1.0, A.NAMES.index("clamp"), 2.0, 1.0, 0), "clamp's min 2.0 is above its max 1.0"),
    ((float("inf"), 1.0, 0, 0.0, 0.0, 0), "alpha1 must be finite"),
])
def test_key_fields_no_epilogue_makes_are_refused(fields, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        A.from_key_fields(fields)


def test_from_key_reads_an_epilogue_keys_fields_and_nothing_else():
    """from_key: the Epilogue that ends an 'epilogue' or 'dgrad_act' key's extra; None for other ops
    (whose extra is alignments and, for 'fused', alpha); the ops are the graph engine's."""
    import types
    epi = A.epilogue(0.5, 2.0, ("clamp", -1.0, 1.0), True, False)
    for op in ("epilogue", "dgrad_act"):
        key = types.SimpleNamespace(op=op, extra=(16, 16, 8, 4, 0) + A.key_fields(epi))
        assert A.from_key(key) == epi
    for op in ("forward", "fused", "backward_data", "backward_filter"):
        assert A.from_key(types.SimpleNamespace(op=op, extra=(16, 16, 16, 16, 16, 1.0))) is None
    graph = pytest.importorskip("cudnnconv.engines.graph", reason="the graph engine is not built")
    assert A.EPILOGUE_OPS == graph.EPILOGUE_OPS
