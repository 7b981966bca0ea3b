"""The activations of a fused convolution epilogue (policy tier: no cuDNN, no GPU).

A fused epilogue computes ``act(alpha1 * conv(x, w) + alpha2 * z + bias)``; this module holds
``act``: which activations there are, their parameters, the cuDNN pointwise mode that computes
each forward and backward, what each backward needs, and a float64 reference of each, so that
the engines, the composed fallback and the tests read one table.

An activation is given as:

- ``None`` or ``"identity"``: no activation;
- a name: ``"relu"``, ``"leaky_relu"`` (negative slope 0.01), ``"elu"`` (alpha 1.0), ``"gelu"``
  (the exact form, with erf), ``"gelu_tanh"`` (the tanh approximation), ``"silu"`` (also
  ``"swish"``), ``"sigmoid"``, ``"tanh"``;
- a tuple of a name and its parameters: ``("leaky_relu", 0.1)``, ``("elu", 0.5)``,
  ``("clamp", lo, hi)`` (clamp has no defaults);
- an ``Activation``, as ``activation()`` returns it.

``activation()`` turns any of these into one canonical ``Activation(name, params)``, with the
parameters as floats, so that two spellings of one activation make one cache key.

cuDNN's pointwise modes and their attributes (from cuDNN's cudnn_graph.h):

- RELU_FWD computes ``x`` above ``lower_clip``, ``lower_clip + slope * (x - lower_clip)`` below
  it, and at most ``upper_clip``: relu (0, slope 0), leaky_relu (0, its slope) and clamp (lo,
  slope 0, hi) are all RELU_FWD;
- ELU_FWD takes ``alpha``; SWISH_FWD takes ``beta`` (1 for silu);
- each *_BWD mode takes the gradient and the activation's input (the pre-activation).

The backward from the output: relu, leaky_relu with a slope of 0 or more, elu with a positive alpha,
clamp, sigmoid and tanh have derivatives that the output alone gives, so a caller may keep the
output instead of the pre-activation; gelu, gelu_tanh and silu need the pre-activation
(``needs()``).
"""
import collections
import math
import numbers

Activation = collections.namedtuple("Activation", "name params")
Activation.__doc__ = "One activation: its canonical name and its parameters as a tuple of floats."

# name -> (parameter names, default parameters or None where they must be given)
_SPECS = {
    "identity": ((), ()),
    "relu": ((), ()),
    "leaky_relu": (("negative_slope",), (0.01,)),
    "elu": (("alpha",), (1.0,)),
    "gelu": ((), ()),
    "gelu_tanh": ((), ()),
    "silu": ((), ()),
    "sigmoid": ((), ()),
    "tanh": ((), ()),
    "clamp": (("min", "max"), None),
}
ALIASES = {"swish": "silu", "none": "identity", "gelu_erf": "gelu"}
NAMES = tuple(_SPECS)

# cuDNN's cudnnPointwiseMode_t values (cudnn_graph.h, cuDNN 9)
POINTWISE_RELU_FWD = 100
POINTWISE_TANH_FWD = 101
POINTWISE_SIGMOID_FWD = 102
POINTWISE_ELU_FWD = 103
POINTWISE_GELU_FWD = 104
POINTWISE_SWISH_FWD = 106
POINTWISE_GELU_APPROX_TANH_FWD = 107
BACKWARD_OFFSET = 100              # each *_BWD mode is its *_FWD mode + 100 (RELU_BWD = 200)

_FORWARD_MODE = {
    "relu": POINTWISE_RELU_FWD, "leaky_relu": POINTWISE_RELU_FWD, "clamp": POINTWISE_RELU_FWD,
    "elu": POINTWISE_ELU_FWD, "gelu": POINTWISE_GELU_FWD, "gelu_tanh": POINTWISE_GELU_APPROX_TANH_FWD,
    "silu": POINTWISE_SWISH_FWD, "sigmoid": POINTWISE_SIGMOID_FWD, "tanh": POINTWISE_TANH_FWD,
}


def _number(value, what):
    """``value`` as a finite float: a real number (NumPy's among them), never a bool."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):     # numpy.bool_ is not a Real
        raise TypeError("%s must be a real number, got %s" % (what, type(value).__name__))
    value = float(value)
    if not math.isfinite(value):
        raise ValueError("%s must be finite, got %r" % (what, value))
    return value


def activation(spec):
    """The canonical ``Activation`` of ``spec`` (see the module doc).

    Raises:
        ValueError: an unknown name (the message lists the known ones), the wrong number of
            parameters, a parameter that is not finite, or a clamp whose min is above its max.
        TypeError: a spec that is neither None, a name, a tuple nor an Activation, or a
            parameter that is not a real number.
    """
    if spec is None:
        return Activation("identity", ())
    if isinstance(spec, str):
        name, params = spec, None
    elif isinstance(spec, tuple) and spec and isinstance(spec[0], str):
        name, params = spec[0], tuple(spec[1:])          # an Activation is such a tuple too
        if isinstance(spec, Activation):
            params = tuple(spec.params)
    else:
        raise TypeError("an activation is None, a name or a (name, *parameters) tuple, got %r" % (spec,))
    key = ALIASES.get(name.lower(), name.lower())
    if key not in _SPECS:
        raise ValueError("unknown activation %r; known: %s (and %s)"
                         % (name, ", ".join(NAMES), ", ".join(sorted(ALIASES))))
    names, defaults = _SPECS[key]
    if params is None or (params == () and defaults is not None):
        if defaults is None:
            raise ValueError("activation %r needs its parameters: (%r, %s)"
                             % (key, key, ", ".join(names)))
        params = defaults
    if len(params) != len(names):
        raise ValueError("activation %r takes %d parameter(s) (%s), got %d"
                         % (key, len(names), ", ".join(names) or "none", len(params)))
    params = tuple(_number(v, "%s's %s" % (key, n)) for v, n in zip(params, names))
    if key == "clamp" and params[0] > params[1]:
        raise ValueError("clamp's min %r is above its max %r" % params)
    return Activation(key, params)


def cudnn_forward(act):
    """``(mode, attributes)`` of the cuDNN pointwise node that computes ``act``, where
    ``attributes`` maps "relu_lower_clip", "relu_upper_clip", "relu_lower_clip_slope",
    "elu_alpha" or "swish_beta" to its value; None for the identity (no node)."""
    act = activation(act)
    if act.name == "identity":
        return None
    return _FORWARD_MODE[act.name], _attributes(act)


def cudnn_backward(act):
    """``(mode, attributes)`` of the cuDNN pointwise node that computes ``act``'s backward
    (``dy * act'(pre)``, from the gradient and the pre-activation); None for the identity."""
    act = activation(act)
    if act.name == "identity":
        return None
    return _FORWARD_MODE[act.name] + BACKWARD_OFFSET, _attributes(act)


def _attributes(act):
    if act.name == "relu":
        return {"relu_lower_clip": 0.0, "relu_lower_clip_slope": 0.0}
    if act.name == "leaky_relu":
        return {"relu_lower_clip": 0.0, "relu_lower_clip_slope": act.params[0]}
    if act.name == "clamp":
        return {"relu_lower_clip": act.params[0], "relu_upper_clip": act.params[1],
                "relu_lower_clip_slope": 0.0}
    if act.name == "elu":
        return {"elu_alpha": act.params[0]}
    if act.name == "silu":
        return {"swish_beta": 1.0}
    return {}


def needs(act):
    """What ``act``'s backward reads besides the gradient: None (the identity), "output" (its
    derivative follows from the forward's output) or "pre" (it needs the pre-activation)."""
    act = activation(act)
    if act.name == "identity":
        return None
    if act.name in ("relu", "clamp", "sigmoid", "tanh"):
        return "output"
    if act.name == "leaky_relu":          # a negative slope makes a positive output of a negative input
        return "output" if act.params[0] >= 0 else "pre"
    if act.name == "elu":
        return "output" if act.params[0] > 0 else "pre"
    return "pre"


# ---------------------------------------------------------------------------
# float64 references (NumPy), for the tests and the benchmark's checks
# ---------------------------------------------------------------------------

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def reference_forward(act, pre):
    """``act(pre)`` in float64 (``pre``: a NumPy array)."""
    import numpy as np
    act = activation(act)
    v = np.asarray(pre, dtype=np.float64)
    name, p = act.name, act.params
    if name == "identity":
        return v.copy()
    if name == "relu":
        return np.maximum(v, 0.0)
    if name == "leaky_relu":
        return np.where(v > 0, v, p[0] * v)
    if name == "clamp":
        return np.clip(v, p[0], p[1])
    if name == "elu":
        return np.where(v > 0, v, p[0] * np.expm1(np.minimum(v, 0.0)))
    if name == "gelu":
        return 0.5 * v * (1.0 + _erf(v / math.sqrt(2.0)))
    if name == "gelu_tanh":
        return 0.5 * v * (1.0 + np.tanh(_SQRT_2_OVER_PI * (v + 0.044715 * v ** 3)))
    if name == "silu":
        return v * _sigmoid(v)
    if name == "sigmoid":
        return _sigmoid(v)
    return np.tanh(v)


def reference_derivative(act, pre):
    """``act'(pre)`` in float64 (at a kink, the derivative from the left for relu and leaky_relu
    at 0, and 0 for clamp at its bounds, as PyTorch's own backward takes them)."""
    import numpy as np
    act = activation(act)
    v = np.asarray(pre, dtype=np.float64)
    name, p = act.name, act.params
    if name == "identity":
        return np.ones_like(v)
    if name == "relu":
        return (v > 0).astype(np.float64)
    if name == "leaky_relu":
        return np.where(v > 0, 1.0, p[0])
    if name == "clamp":
        return ((v > p[0]) & (v < p[1])).astype(np.float64)
    if name == "elu":
        return np.where(v > 0, 1.0, p[0] * np.exp(np.minimum(v, 0.0)))
    if name == "gelu":
        return 0.5 * (1.0 + _erf(v / math.sqrt(2.0))) + v * np.exp(-0.5 * v * v) / math.sqrt(2.0 * math.pi)
    if name == "gelu_tanh":
        u = _SQRT_2_OVER_PI * (v + 0.044715 * v ** 3)
        t = np.tanh(u)
        return 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * v * v)
    if name == "silu":
        s = _sigmoid(v)
        return s * (1.0 + v * (1.0 - s))
    if name == "sigmoid":
        s = _sigmoid(v)
        return s * (1.0 - s)
    return 1.0 - np.tanh(v) ** 2


def reference_derivative_from_output(act, out):
    """``act'`` in float64 from the forward's output, for the activations ``needs()`` says
    allow it (ValueError for the others)."""
    import numpy as np
    act = activation(act)
    if needs(act) != "output":
        raise ValueError("the backward of %r needs the pre-activation, not the output" % (act.name,))
    y = np.asarray(out, dtype=np.float64)
    name, p = act.name, act.params
    if name == "relu":
        return (y > 0).astype(np.float64)
    if name == "leaky_relu":
        return np.where(y > 0, 1.0, p[0])
    if name == "clamp":
        return ((y > p[0]) & (y < p[1])).astype(np.float64)
    if name == "elu":
        return np.where(y > 0, 1.0, y + p[0])
    if name == "sigmoid":
        return y * (1.0 - y)
    return 1.0 - y * y


def _sigmoid(v):
    import numpy as np
    out = np.empty_like(v)
    pos = v >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-v[pos]))
    e = np.exp(v[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _erf(v):
    import numpy as np
    return np.vectorize(math.erf, otypes=[np.float64])(v)


# ---------------------------------------------------------------------------
# The whole epilogue, as the graph engine's key and graph carry it
# ---------------------------------------------------------------------------

Epilogue = collections.namedtuple("Epilogue", "alpha1 alpha2 act has_z has_bias")
Epilogue.__doc__ = ("``act(alpha1 * conv + alpha2 * z + bias)``: the scales as floats, the canonical "
                    "Activation, and whether z and the bias are given.")

KEY_FIELDS = 6      # alpha1, alpha2, the activation's index in NAMES, two parameters, the parts given


def epilogue(alpha1=1.0, alpha2=1.0, act=None, has_z=False, has_bias=False):
    """A canonical ``Epilogue`` (the scales checked as ``activation()`` checks parameters)."""
    return Epilogue(_number(alpha1, "alpha1"), _number(alpha2, "alpha2"), activation(act), bool(has_z),
                    bool(has_bias))


def padded(act):
    """An activation's parameters padded with zeros to two: the fixed-width form that cache keys,
    call signatures and kernel arguments carry (``unpadded`` reads it back)."""
    return tuple(act.params) + (0.0,) * (2 - len(act.params))


def unpadded(name, p0, p1):
    """The Activation ``name`` with the parameters ``padded`` wrote (ValueError where a parameter it
    does not take is not zero)."""
    n = len(_SPECS[name][0])
    if any(v != 0.0 for v in (p0, p1)[n:]):
        raise ValueError("an epilogue key gives %s parameters it does not take" % name)
    return activation((name,) + (p0, p1)[:n])


def extra_tensors(op, epi, input_shape, output_shape):
    """The tensors an epilogue problem binds after x, w and y, in that order, as (role, shape):
    z where given (op 'dgrad_act': the activation's input, of the input's shape; op 'epilogue': of
    the output's shape), then the bias, (1, K, 1, ...), where given."""
    out = [("z", tuple(input_shape) if op == "dgrad_act" else tuple(output_shape))] if epi.has_z else []
    if epi.has_bias:
        out.append(("bias", (1, output_shape[1]) + (1,) * (len(output_shape) - 2)))
    return out


def key_fields(epi):
    """The epilogue as numbers for a cache key and a tuning record: (alpha1, alpha2, the
    activation's index in ``NAMES``, its parameters ``padded``, 1 * has_z + 2 * has_bias)."""
    return (float(epi.alpha1), float(epi.alpha2), NAMES.index(epi.act.name)) + padded(epi.act) + \
        (int(epi.has_z) + 2 * int(epi.has_bias),)


# The graph engine's ops whose key ends with key_fields (engines/graph.pyx's EPILOGUE_OPS)
EPILOGUE_OPS = ("epilogue", "dgrad_act")


def from_key(key):
    """The Epilogue a cache key of op 'epilogue' or 'dgrad_act' carries (its extra ends with
    ``key_fields``), else None."""
    return from_key_fields(key.extra[-KEY_FIELDS:]) if key.op in EPILOGUE_OPS else None


def from_key_fields(fields):
    """The Epilogue that ``key_fields`` wrote (ValueError for fields no epilogue makes)."""
    fields = tuple(fields)
    if len(fields) != KEY_FIELDS:
        raise ValueError("an epilogue key has %d fields, got %d" % (KEY_FIELDS, len(fields)))
    alpha1, alpha2, index, p0, p1, parts = fields
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(NAMES):
        raise ValueError("bad activation index %r in an epilogue key" % (index,))
    if isinstance(parts, bool) or not isinstance(parts, int) or not 0 <= parts <= 3:
        raise ValueError("bad parts %r in an epilogue key" % (parts,))
    return epilogue(alpha1, alpha2, unpadded(NAMES[index], p0, p1), parts & 1, parts & 2)
