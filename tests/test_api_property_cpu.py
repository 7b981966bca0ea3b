"""Property tests of the five public functions on argument metadata (no GPU).

Every array here is a fake CUDA array: an object with a
``__cuda_array_interface__`` and no memory behind it.  On a machine without a
GPU a call therefore ends in one of three ways: a ValueError or a TypeError
from the argument checks, or, for a call that passes every check, the
library's CudaUnavailableError when it tries to make CuPy arrays.  Hypothesis
draws

* valid calls of all five functions (1 to 3 spatial dims, groups, strides,
  dilations, integer, 'same' and 'valid' padding, output padding, each
  parameter written as an int, a tuple, a list or NumPy integers), which must
  be accepted, and whose output shape must be PyTorch's (the formula is
  restated below, and compared with ``params.conv_geometry`` and
  ``params.transpose_geometry``); an ``out``, ``z`` or ``grad_output`` of
  that shape is accepted, one off by one in a spatial dim refused, naming it;
* invalid calls, each a valid call with one defect put in (a shape, a channel
  count, a parameter's value or type, a dtype, an array-interface field, a
  flag), which must be refused with a ValueError or TypeError whose message
  names what is wrong;
* arbitrary calls (some arguments replaced by odd values and odd arrays),
  which may end only in those three ways, a refusal naming an argument.

The bulk runs in child processes, a fixed number of cases per child, so that
a crash or a hang fails a test instead of the test run: a case is a JSON
description of a call, which ``_CHILD`` rebuilds and runs, printing one JSON
line per case.  A failing case is printed with a command that replays it in
one process with its traceback:
``PYTHONPATH=pyx python3 tests/test_api_property_cpu.py '<case>'``.
"""
import collections
import json
import math
import os
import re
import subprocess
import sys
import zlib

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, Phase, given, seed, settings, strategies as st  # noqa: E402

import numpy  # noqa: E402

import cudnnconv  # noqa: E402
from conftest import FakeCudaArray  # noqa: E402
from cudnnconv import params  # noqa: E402

# ---------------------------------------------------------------------------
# The child: rebuilds the drawn calls from JSON and reports how each ended
# ---------------------------------------------------------------------------

_CHILD = r'''
import json
import sys

import numpy

import cudnnconv
from cudnnconv import params



class Accepted(Exception):
    """Raised, where a GPU is usable, by a call that passed every check,
    instead of handing fake pointers to the GPU (only in the child)."""


def _stop(self):
    raise Accepted("the call passed every check")


_NP = {"int64": numpy.int64, "int32": numpy.int32, "uint64": numpy.uint64, "bool_": numpy.bool_,
       "float64": numpy.float64, "float32": numpy.float32}


class Fake:
    """A CUDA array's metadata and nothing else."""

    def __init__(self, cai):
        self.__cuda_array_interface__ = cai

    def __repr__(self):
        return "Fake(%r)" % (self.__cuda_array_interface__,)


def build(v):
    """The Python value a JSON description stands for."""
    if not isinstance(v, dict):
        return v
    (tag, x), = v.items()
    if tag == "tuple":
        return tuple(build(e) for e in x)
    if tag == "list":
        return [build(e) for e in x]
    if tag == "array":
        return Fake({k: build(e) for k, e in x.items()})
    if tag == "np":
        return _NP[x[0]](x[1])
    if tag == "ndarray":
        return numpy.array(x[0], dtype=x[1])
    if tag == "zeros":
        return numpy.zeros(x[0], dtype=x[1])
    if tag == "bytes":
        return x.encode("latin-1")
    if tag == "complex":
        return complex(*x)
    if tag == "dict":
        return {k: build(e) for k, e in x.items()}
    if tag == "object":
        return object()
    raise ValueError("unknown tag %r" % (tag,))


def call(case):
    fn = getattr(cudnnconv, case["fn"])
    return fn(*[build(a) for a in case["args"]], **{k: build(v) for k, v in case["kwargs"].items()})


def run(case):
    """{"exc": the exception's type name (None: it returned), "msg": its text}."""
    try:
        call(case)
    except Exception as e:
        return {"exc": type(e).__name__, "msg": str(e)}
    return {"exc": None, "msg": "the call returned"}


if __name__ == "__main__":
    if cudnnconv.cuda_available():
        params.ArrayArg.materialize = _stop
    cases = json.load(sys.stdin)
    for i, case in enumerate(cases):
        r = run(case)
        r["i"] = i
        print(json.dumps(r), flush=True)
    print(json.dumps({"done": len(cases)}), flush=True)
'''

_LIB = {"__name__": "cudnnconv_property_child"}
exec(compile(_CHILD, "<the child of test_api_property_cpu>", "exec"), _LIB)      # the same code, in process

GPU = cudnnconv.cuda_available()
ACCEPTED = "Accepted" if GPU else "CudaUnavailableError"     # how a call that passed every check ends here
ALLOWED = ("ValueError", "TypeError", ACCEPTED)

# What a refusal's message must name: an argument, or a phrase plainly about one.
ARGUMENTS = ("input", "weight", "bias", "z", "out", "grad_output", "input_shape", "weight_shape", "stride",
             "padding", "dilation", "groups", "output_padding", "alpha", "fusion", "benchmark", "deterministic",
             "allow_tf32", "workspace_limit", "engine")
VOCABULARY = ARGUMENTS + ("channels", "kernel size", "dtype")


def _names_one_of(msg, words):
    """Whether ``msg`` has one of ``words`` as a whole word (``input`` is not
    found in ``input_shape``, nor ``out`` in ``output``)."""
    pattern = r"(?<![A-Za-z0-9_])(%s)(?![A-Za-z0-9_])" % "|".join(re.escape(w) for w in words)
    return re.search(pattern, msg) is not None


# ---------------------------------------------------------------------------
# JSON descriptions of argument values
# ---------------------------------------------------------------------------

ADDR = 0x7F0000000000          # a device address aligned for every item size
ABSENT = object()              # an argument left out of the call


def T(*xs):
    return {"tuple": list(xs)}


def L(*xs):
    return {"list": list(xs)}


def NP(kind, v):
    return {"np": [kind, v]}


def ARR(shape, t="<f4", ptr=ADDR, strides=None, fields=None):
    """A fake CUDA array; ``fields`` replace interface entries (ABSENT drops one)."""
    cai = {"shape": T(*shape), "typestr": t, "data": T(ptr, False), "version": 3,
           "strides": None if strides is None else T(*strides)}
    for k, v in (fields or {}).items():
        if v is ABSENT:
            del cai[k]
        else:
            cai[k] = v
    return {"array": cai}


def ZEROS(shape, dtype="float32"):
    return {"zeros": [list(shape), dtype]}


def _text(v):
    """A description as Python-like text, for failure reports."""
    if isinstance(v, dict):
        (tag, x), = v.items()
        if tag == "tuple":
            return "(%s%s)" % (", ".join(_text(e) for e in x), "," if len(x) == 1 else "")
        if tag == "list":
            return "[%s]" % ", ".join(_text(e) for e in x)
        if tag == "array":
            extra = "".join(", %s=%s" % (k, _text(e)) for k, e in x.items()
                            if k not in ("shape", "typestr") and
                            not (k == "data" and e == T(ADDR, False) or k == "version" or
                                 k == "strides" and e is None))
            missing = "".join(", no %s" % k for k in ("shape", "typestr", "data") if k not in x)
            return "A(%s, %s%s%s)" % (_text(x.get("shape")), _text(x.get("typestr")), extra, missing)
        if tag == "np":
            return "numpy.%s(%s)" % (x[0], _text(x[1]))
        if tag == "ndarray":
            return "numpy.array(%r, %r)" % tuple(x)
        if tag == "zeros":
            return "numpy.zeros(%s, %r)" % (tuple(x[0]), x[1])
        if tag == "bytes":
            return repr(x.encode("latin-1"))
        if tag == "complex":
            return repr(complex(*x))
        if tag == "dict":
            return "{%s}" % ", ".join("%r: %s" % (k, _text(e)) for k, e in x.items())
        return "object()"
    if isinstance(v, float) and not math.isfinite(v):
        return "float(%r)" % str(v)
    if type(v) is int and abs(v) >= 1 << 40:
        a = abs(v)
        return ("-" if v < 0 else "") + ("2**%d" % (a.bit_length() - 1) if a & (a - 1) == 0 else hex(a))
    return repr(v)


def _call_text(case):
    return "cudnnconv.%s(%s)" % (case["fn"], ", ".join([_text(a) for a in case["args"]] +
                                                       ["%s=%s" % (k, _text(v)) for k, v in case["kwargs"].items()]))


# ---------------------------------------------------------------------------
# Valid problems, and PyTorch's shape formula
# ---------------------------------------------------------------------------

FUNCTIONS = ("conv", "conv_backward_input", "conv_backward_weight", "conv_transpose", "conv_bias_add_relu")
BACKWARD = ("conv_backward_input", "conv_backward_weight")
ITEMSIZE = {"<f2": 2, "<f4": 4, "<f8": 8}
OTHER_FLOAT = {"<f2": "<f4", "<f4": "<f8", "<f8": "<f2"}
HUGE = (2 ** 62, 2 ** 63, 2 ** 70)


class Problem:
    """The numbers of a valid call, before they are written as arguments.

    ``c`` is the input's channels, ``k`` the output's (for conv_transpose too:
    its weight is (c, k/groups, *kernel)); ``padmode`` is 'int', 'same' or
    'valid'; ``opad`` is conv_transpose's output_padding.
    """

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def replace(self, **kw):
        d = dict(self.__dict__)
        d.update(kw)
        return Problem(**d)

    @property
    def x_shape(self):
        return (self.n, self.c) + self.insz

    @property
    def w_shape(self):
        if self.fn == "conv_transpose":
            return (self.c, self.k // self.groups) + self.ksz
        return (self.k, self.c // self.groups) + self.ksz

    @property
    def y_shape(self):
        """PyTorch's output shape, restated (not asked of the library)."""
        out = []
        for i in range(self.nsp):
            n_in, s, d, kk = self.insz[i], self.stride[i], self.dil[i], self.ksz[i]
            if self.fn == "conv_transpose":
                out.append((n_in - 1) * s - 2 * self.pad[i] + d * (kk - 1) + self.opad[i] + 1)
            elif self.padmode == "same":
                out.append(n_in)
            else:
                p = 0 if self.padmode == "valid" else self.pad[i]
                out.append((n_in + 2 * p - d * (kk - 1) - 1) // s + 1)     # // is floor division, exact
        return (self.n, self.k) + tuple(out)

    @property
    def result_shape(self):
        """The shape of what the function returns (and of ``out``)."""
        return {"conv_backward_input": self.x_shape, "conv_backward_weight": self.w_shape}.get(self.fn, self.y_shape)


def _dims(draw, nsp, strategy):
    return tuple(draw(strategy) for _ in range(nsp))


@st.composite
def problems(draw, fn):
    nsp = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 1, 1, 2, 3, 4]))
    c = groups * draw(st.integers(1, 3))
    k = groups * draw(st.integers(1, 3))
    n = draw(st.sampled_from([0, 1, 1, 2, 3]))
    ksz = _dims(draw, nsp, st.integers(1, 4))
    dil = _dims(draw, nsp, st.sampled_from([1, 1, 2, 3]))
    t = draw(st.sampled_from(["<f4", "<f4", "<f2", "<f8"]))
    if fn == "conv_transpose":
        stride = _dims(draw, nsp, st.sampled_from([1, 1, 2, 3]))
        pad = _dims(draw, nsp, st.integers(0, 3))
        opad = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dil))
        # the smallest input whose output is not empty, and then some
        insz = tuple(1 + -(-max(0, 2 * p - d * (kk - 1) - o) // s) + draw(st.integers(0, 4))
                     for s, p, d, kk, o in zip(stride, pad, dil, ksz, opad))
        return Problem(fn=fn, nsp=nsp, groups=groups, c=c, k=k, n=n, ksz=ksz, dil=dil, t=t, stride=stride,
                       pad=pad, padmode="int", opad=opad, insz=insz)
    padmode = draw(st.sampled_from(["int"] * 5 + ["same", "valid"]))
    if padmode == "same":
        stride = (1,) * nsp
        pad = (0,) * nsp                   # unused: 'same' is written as the string
        if fn in BACKWARD:                 # symmetric 'same' only: an even dilated kernel extent
            ksz = tuple(kk + (d * (kk - 1)) % 2 for kk, d in zip(ksz, dil))
    else:
        # a huge stride is valid (each output dim is then 1)
        stride = _dims(draw, nsp, st.sampled_from([1, 1, 1, 2, 3, 3, 2 ** 63, 2 ** 70]))
        pad = _dims(draw, nsp, st.integers(0, 3)) if padmode == "int" else (0,) * nsp
    insz = tuple(max(1, d * (kk - 1) + 1 - 2 * p) + draw(st.integers(0, 5))
                 for kk, d, p in zip(ksz, dil, pad))
    return Problem(fn=fn, nsp=nsp, groups=groups, c=c, k=k, n=n, ksz=ksz, dil=dil, t=t, stride=stride,
                   pad=pad, padmode=padmode, opad=(0,) * nsp, insz=insz)


# ---------------------------------------------------------------------------
# Writing a problem as a call
# ---------------------------------------------------------------------------

SIGNATURES = {      # (required positional, optional positional) in order
    "conv": (("input", "weight"), ("bias", "stride", "padding", "dilation", "groups")),
    "conv_backward_input": (("input_shape", "weight", "grad_output"), ("stride", "padding", "dilation", "groups")),
    "conv_backward_weight": (("input", "weight_shape", "grad_output"), ("stride", "padding", "dilation", "groups")),
    "conv_transpose": (("input", "weight"), ("bias", "stride", "padding", "output_padding", "groups", "dilation")),
    "conv_bias_add_relu": (("input", "weight", "z", "alpha", "bias"), ("stride", "padding", "dilation", "groups")),
}
DEFAULTS = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1, "output_padding": 0}
KEYWORD_ONLY = ("out", "fusion", "benchmark", "deterministic", "allow_tf32", "workspace_limit", "engine")
FLAGS = ("benchmark", "deterministic", "allow_tf32", "workspace_limit", "engine")
ENGINES = ["auto"] + list(cudnnconv.build_info()["engines"])


def array_names(fn):
    req, opt = SIGNATURES[fn]
    return [a for a in req + opt if a in ("input", "weight", "z", "grad_output", "bias")]


def _strides(shape, itemsize, layout):
    nd = len(shape)
    order = list(range(nd)) if layout == "nchw" or nd < 3 else [0] + list(range(2, nd)) + [1]
    strides, acc = [0] * nd, itemsize
    for d in reversed(order):
        strides[d] = acc
        acc *= max(shape[d], 1)
    return strides


class Writer:
    """Writes the arrays of one call, each at its own address (``first``
    sets them apart from those of another writer)."""

    def __init__(self, draw, t, first=0):
        self.draw, self.t, self.count = draw, t, first

    def array(self, shape, t=None):
        t = t or self.t
        self.count += 1
        layout = self.draw(st.sampled_from(["none", "none", "nchw", "nhwc"]))
        strides = None if layout == "none" else _strides(shape, ITEMSIZE.get(t, 4), layout)
        return ARR(shape, t, ADDR + (self.count << 32), strides)


def _form(draw, vals, default):
    """A valid way of writing the per-dim ints ``vals`` (ABSENT: left out)."""
    same = all(v == vals[0] for v in vals)
    choices = ["tuple", "list", "nptuple"] + (["int", "int", "np", "one"] if same else [])
    if all(v == default for v in vals):
        choices += ["absent", "absent"]
    how = draw(st.sampled_from(choices))

    def np_int(v):
        return NP("int64", v) if v < 2 ** 62 else v
    return {"absent": ABSENT, "int": vals[0], "np": np_int(vals[0]), "one": T(vals[0]), "tuple": T(*vals),
            "list": L(*vals), "nptuple": T(*[np_int(v) for v in vals])}[how]


def _shape_form(draw, shape):
    how = draw(st.sampled_from(["tuple", "tuple", "list", "np"]))
    return {"tuple": T(*shape), "list": L(*shape), "np": T(*[NP("int64", s) for s in shape])}[how]


def write(draw, p):
    """The named arguments of a valid call of ``p`` (a dict; left-out ones absent)."""
    fn, wr = p.fn, Writer(draw, p.t)
    named = {}
    if fn == "conv_backward_input":
        named["input_shape"] = _shape_form(draw, p.x_shape)
    else:
        named["input"] = wr.array(p.x_shape)
    if fn == "conv_backward_weight":
        named["weight_shape"] = _shape_form(draw, p.w_shape)
    else:
        named["weight"] = wr.array(p.w_shape)
    if fn in BACKWARD:
        named["grad_output"] = wr.array(p.y_shape)
    if fn == "conv_bias_add_relu":
        named["z"] = wr.array(p.y_shape)
        named["alpha"] = draw(st.sampled_from([1.0, 0.5, -2.0, 0, 1, NP("float64", 0.25), NP("float32", 2.0),
                                               NP("int64", 3), 2 ** 70, 1e300]))
        if draw(st.booleans()):
            named["fusion"] = draw(st.sampled_from(["auto", "fused", "composed"]))
    if fn in ("conv", "conv_transpose", "conv_bias_add_relu"):
        bias = draw(st.sampled_from(["array", "none", "absent"]))
        if bias == "array":
            named["bias"] = wr.array((p.k,))
        elif bias == "none" or fn == "conv_bias_add_relu":
            named["bias"] = None
    forms = {"stride": _form(draw, p.stride, 1), "dilation": _form(draw, p.dil, 1),
             "groups": draw(st.sampled_from([p.groups, p.groups, NP("int64", p.groups)] +
                                            ([ABSENT] if p.groups == 1 else [])))}
    if p.padmode == "int":
        forms["padding"] = _form(draw, p.pad, 0)
    else:
        forms["padding"] = p.padmode
    if fn == "conv_transpose":
        forms["output_padding"] = _form(draw, p.opad, 0)
    named.update((k, v) for k, v in forms.items() if v is not ABSENT)
    if draw(st.sampled_from([False, False, True])):
        named["out"] = wr.array(p.result_shape)
    elif draw(st.booleans()):
        named["out"] = None
    for flag in ("benchmark", "deterministic", "allow_tf32"):
        v = draw(st.sampled_from([ABSENT, ABSENT, None, True, False, NP("bool_", True)]))
        if v is not ABSENT:
            named[flag] = v
    v = draw(st.sampled_from([ABSENT, ABSENT, None, 0, 1 << 20, 2 ** 70, NP("int64", 1 << 30)]))
    if v is not ABSENT:
        named["workspace_limit"] = v
    v = draw(st.sampled_from([ABSENT, ABSENT, None] + ENGINES))
    if v is not ABSENT:
        named["engine"] = v
    return named


def as_call(draw, fn, named, **expect):
    """A case: the call of ``fn`` with ``named``, some optional arguments
    positional (the leading ones), the rest keywords."""
    req, opt = SIGNATURES[fn]
    cut = 0 if draw is None else draw(st.integers(0, len(opt)))
    args = [named[r] for r in req] + [named.get(o, DEFAULTS[o]) for o in opt[:cut]]
    kwargs = {o: named[o] for o in opt[cut:] + KEYWORD_ONLY if o in named}
    case = {"fn": fn, "args": args, "kwargs": kwargs, "expect": "any", "names": None, "exc": None, "label": ""}
    case.update(expect)
    return case


# ---------------------------------------------------------------------------
# Defects to put into a valid call
# ---------------------------------------------------------------------------
# Each m_<defect>(draw, p, named) changes ``named`` in place and returns (the
# words of which the message must have one, the exception it must raise or
# None for either).  The huge ones (words None) make a problem too large
# rather than wrong: the message need only name some argument, and a huge
# parameter with an empty batch may be accepted (there is nothing to compute).

PARAMS = ("stride", "padding", "dilation")
BAD_TYPES = [1.5, 1.0, True, False, "1", None, T(T(1)), NP("float64", 1.0), NP("bool_", True),
             {"bytes": "1"}, {"dict": {}}, {"object": 0}, {"complex": [1, 0]},
             {"ndarray": [[1, 1], "int64"]}, L(None), T("1"), T(1.0), T(True)]


def _param_names(p):
    return PARAMS + (("output_padding",) if p.fn == "conv_transpose" else ())


def _one_dim(draw, p, vals, v):
    i = draw(st.integers(0, p.nsp - 1))
    vals = list(vals)
    vals[i] = v
    return T(*vals) if p.nsp > 1 or draw(st.booleans()) else v


def _current(p, name):
    return {"stride": p.stride, "padding": p.pad, "dilation": p.dil, "output_padding": p.opad}[name]


def m_param_not_positive(draw, p, named):
    name = draw(st.sampled_from(_param_names(p)))
    low = 1 if name in ("stride", "dilation") else 0
    named[name] = _one_dim(draw, p, _current(p, name), draw(st.integers(low - 3, low - 1)))
    return [name], "ValueError"


def m_param_length(draw, p, named):
    name = draw(st.sampled_from(_param_names(p)))
    length = draw(st.sampled_from([0, p.nsp + 1, p.nsp + 2]))
    named[name] = draw(st.sampled_from([T, L]))(*([1 if name in ("stride", "dilation") else 0] * length))
    return [name], "ValueError"


def m_param_type(draw, p, named):
    name = draw(st.sampled_from(_param_names(p)))
    named[name] = draw(st.sampled_from(BAD_TYPES + [T(*([1.0] * p.nsp)), L(*([None] * p.nsp))]))
    exc = None if name == "padding" and named[name] == "1" else "TypeError"     # a str padding: no mode
    return [name], exc


def m_padding_bad_string(draw, p, named):
    named["padding"] = draw(st.sampled_from(["full", "SAME", "", "same " if p.fn != "conv_transpose" else "same",
                                             "valid" if p.fn == "conv_transpose" else "Valid"]))
    return ["padding"], "ValueError"


def m_same_with_stride(draw, p, named):
    named["padding"] = "same"
    named["stride"] = _one_dim(draw, p, (1,) * p.nsp, draw(st.integers(2, 4)))
    return ["padding", "stride"], "ValueError"


def _huge_spots(p):
    """(parameter, dim) where 2**62 or more is a problem: a padding (an
    output too large to plan, or conv_transpose's empty), a dilation of a
    kernel larger than 1 (larger than the input, or conv_transpose's output
    too large), conv_transpose's output padding (not below the stride) and
    its stride over an input larger than 1 (an output too large).  A huge
    padding along a huge stride is no problem: the output stays small."""
    spots = []
    for i in range(p.nsp):
        if p.fn == "conv_transpose" or p.stride[i] < 2 ** 40:
            spots.append(("padding", i))
        if p.ksz[i] > 1:
            spots.append(("dilation", i))
        if p.fn == "conv_transpose":
            spots.append(("output_padding", i))
            if p.insz[i] > 1:
                spots.append(("stride", i))
    return spots


def m_huge_param(draw, p, named):
    name, i = draw(st.sampled_from(_huge_spots(p)))
    vals = list(_current(p, name))
    vals[i] = draw(st.sampled_from(HUGE))
    named[name] = T(*vals)
    if p.padmode != "int" and name != "padding":
        named["padding"] = T(*([0] * p.nsp))
    return None, "ValueError"


def m_huge_batch(draw, p, named):
    """A batch of 2**50 samples and more (every array and shape agreeing):
    more chunks under the index limit than a GPU could hold, or more elements
    than an array interface can count."""
    named.clear()
    named.update(write(draw, p.replace(n=draw(st.sampled_from([2 ** 50, 2 ** 55, 2 ** 61])))))
    return None, "ValueError"


def m_groups_value(draw, p, named):
    named["groups"] = draw(st.sampled_from([0, -1, -4, NP("int64", 0)]))
    return ["groups"], "ValueError"


def m_groups_type(draw, p, named):
    named["groups"] = draw(st.sampled_from([1.0, 2.0, True, "1", None, T(1), L(1), NP("float64", 1.0),
                                            NP("bool_", True), {"object": 0}]))
    return ["groups"], "TypeError"


def m_groups_not_dividing(draw, p, named):
    named["groups"] = draw(st.sampled_from([p.c + 1, 2 * p.c + 1, 2 ** 63, 2 ** 70]))
    return ["groups", "input", "input_shape", "channels"], "ValueError"


def m_flag(draw, p, named):
    flag = draw(st.sampled_from(["benchmark", "deterministic", "allow_tf32"]))
    named[flag] = draw(st.sampled_from([1, 0, "no", "True", 1.0, L(), NP("int64", 1), {"object": 0}]))
    return [flag], "TypeError"


def m_workspace(draw, p, named):
    named["workspace_limit"] = draw(st.sampled_from([-1, -2 ** 70, 1.5, "1GB", True, NP("float64", 3.0),
                                                     NP("bool_", False), L(1)]))
    return ["workspace_limit"], "ValueError"


def m_engine(draw, p, named):
    named["engine"] = draw(st.sampled_from(["cudnn8", "AUTO", "", 1, True, T("auto"), {"bytes": "auto"},
                                            {"ndarray": [["auto", "graph"], "U5"]}, {"ndarray": [["auto"], "U4"]}]))
    return ["engine"], "ValueError"


def m_fusion(draw, p, named):
    named["fusion"] = draw(st.sampled_from(["AUTO", "yes", "", None, 1, True, T("auto"),
                                            {"ndarray": [["auto", "fused"], "U5"]}, {"ndarray": [["auto"], "U4"]}]))
    return ["fusion"], "ValueError"


def m_alpha_value(draw, p, named):
    named["alpha"] = draw(st.sampled_from([math.nan, math.inf, -math.inf, NP("float64", math.nan)]))
    return ["alpha"], "ValueError"


def m_alpha_type(draw, p, named):
    named["alpha"] = draw(st.sampled_from(["1.5", "one", "nan", None, True, False, NP("bool_", True),
                                           {"complex": [1, 1]}, 10 ** 400, L(1.0), {"bytes": "1"},
                                           {"object": 0}]))
    return ["alpha"], "TypeError"


def _shape_of(p, name):
    """The shape of argument ``name`` (an array, or input_shape or weight_shape)."""
    if name in ("input", "input_shape"):
        return p.x_shape
    if name in ("weight", "weight_shape"):
        return p.w_shape
    if name == "bias":
        return (p.k,)
    if name == "out":
        return p.result_shape
    return p.y_shape                # z, grad_output


def _set_shape(draw, p, named, name, shape):
    if name in ("input_shape", "weight_shape"):
        named[name] = _shape_form(draw, shape)
    else:
        named[name] = Writer(draw, p.t, 16).array(shape)


def _x_name(p):
    return "input_shape" if p.fn == "conv_backward_input" else "input"


def _w_name(p):
    return "weight_shape" if p.fn == "conv_backward_weight" else "weight"


def m_ndim(draw, p, named):
    name = draw(st.sampled_from([_x_name(p), _w_name(p)]))
    shape = _shape_of(p, name)
    nd = draw(st.sampled_from([v for v in (0, 1, 2, 3, 4, 5, 6) if v != len(shape)]))
    shape = (shape + (3,) * 6)[:nd]
    _set_shape(draw, p, named, name, shape)
    return [_x_name(p), _w_name(p)], "ValueError"


def m_channels(draw, p, named):
    name = draw(st.sampled_from([_x_name(p), _w_name(p)]))
    shape = list(_shape_of(p, name))
    d = 1 if p.fn != "conv_transpose" or name == _x_name(p) else 0
    shape[d] += draw(st.sampled_from([1, 2, p.c + 1]))
    _set_shape(draw, p, named, name, tuple(shape))
    return [_x_name(p), _w_name(p), "channels"], "ValueError"


def m_out_channels_not_divisible(draw, p, named):
    shape = list(p.w_shape)
    shape[0] += draw(st.integers(1, p.groups - 1))
    _set_shape(draw, p, named, _w_name(p), tuple(shape))
    return [_w_name(p), "channels"], "ValueError"


def m_zero_dim(draw, p, named):
    name = draw(st.sampled_from([_x_name(p), _w_name(p)]))
    shape = list(_shape_of(p, name))
    shape[draw(st.integers(0 if name == _w_name(p) else 1, len(shape) - 1))] = 0
    _set_shape(draw, p, named, name, tuple(shape))
    return [name], "ValueError"


def m_negative_dim(draw, p, named):
    name = draw(st.sampled_from([_x_name(p), _w_name(p)] + [a for a in ("z", "grad_output", "bias") if
                                                            isinstance(named.get(a), dict)]))
    shape = list(_shape_of(p, name))
    shape[draw(st.integers(0, len(shape) - 1))] = draw(st.sampled_from([-1, -3, -2 ** 63]))
    _set_shape(draw, p, named, name, tuple(shape))
    return [name], "ValueError"


def _too_small(p):
    return [i for i in range(p.nsp) if p.dil[i] * (p.ksz[i] - 1) + 1 - 2 * p.pad[i] >= 2]


def m_kernel_too_large(draw, p, named):
    i = draw(st.sampled_from(_too_small(p)))
    insz = list(p.insz)
    insz[i] = draw(st.integers(1, p.dil[i] * (p.ksz[i] - 1) - 2 * p.pad[i]))
    _set_shape(draw, p, named, _x_name(p), p.replace(insz=tuple(insz)).x_shape)
    return ["kernel size", _x_name(p)], "ValueError"


def _arrays_in(named, fn):
    return [a for a in array_names(fn) + ["out"] if isinstance(named.get(a), dict)]


def _first_array(fn):
    return {"conv_backward_input": "weight"}.get(fn, "input")


def m_dtype_mismatch(draw, p, named):
    name = draw(st.sampled_from(_arrays_in(named, p.fn)))
    shape = _shape_of(p, name)
    named[name] = Writer(draw, p.t, 16).array(shape, OTHER_FLOAT[p.t])
    return [name, _first_array(p.fn)], "TypeError"


UNSUPPORTED = ["<i4", "|b1", "<c8", "<V2", "<V4", "<i8", "|u1", "<c16", "<f16", "|i1", "<u2", "<M8[ns]", "|O",
               ">f4", ">f8", ">f2"]


def m_unsupported_dtype(draw, p, named):
    t = draw(st.sampled_from(UNSUPPORTED))
    names = _arrays_in(named, p.fn)
    which = names if draw(st.booleans()) else [draw(st.sampled_from(names))]
    for name in which:
        named[name] = ARR(_shape_of(p, name), t, ADDR + (len(name) << 36))
    return ["dtype", _first_array(p.fn)] + which, "TypeError"


def m_bias(draw, p, named):
    shape = draw(st.sampled_from([(p.k + 1,), (p.k, 1), (1, p.k), (), (p.k, p.k)] + ([(p.k - 1,)] if p.k > 1 else [])))
    named["bias"] = Writer(draw, p.t, 16).array(shape)
    return ["bias"], "ValueError"


def m_out_shape(draw, p, named):
    shape = list(p.result_shape)
    how = draw(st.sampled_from(["dim", "dim", "ndim"]))
    if how == "dim":
        i = draw(st.integers(0, len(shape) - 1))
        shape[i] += 1 if shape[i] == 0 else draw(st.sampled_from([-1, 1]))
    else:
        shape = shape[:-1] if draw(st.booleans()) else shape + [1]
    named["out"] = Writer(draw, p.t, 16).array(tuple(shape))
    return ["out"], "ValueError"


def m_spatial_off_by_one(draw, p, named):
    """grad_output, z or out one off in a spatial dim (never to a negative size)."""
    name = {"conv_backward_input": "grad_output", "conv_backward_weight": "grad_output",
            "conv_bias_add_relu": "z"}.get(p.fn, "out")
    shape = list(p.y_shape)
    i = 2 + draw(st.integers(0, p.nsp - 1))
    shape[i] += 1 if shape[i] == 1 and p.fn != "conv_transpose" else draw(st.sampled_from([-1, 1]))
    named[name] = Writer(draw, p.t, 16).array(tuple(shape))
    return [name], "ValueError"


def m_out_dtype(draw, p, named):
    named["out"] = Writer(draw, p.t, 16).array(p.result_shape, OTHER_FLOAT[p.t])
    return ["out"], "TypeError"


def m_none_array(draw, p, named):
    name = draw(st.sampled_from([a for a in array_names(p.fn) if a != "bias"]))
    named[name] = None
    return [name], "TypeError"


def m_host_array(draw, p, named):
    name = draw(st.sampled_from(array_names(p.fn) + ["out"]))
    shape = _shape_of(p, name)
    named[name] = draw(st.sampled_from([ZEROS(shape), 1.0, "array", L(1.0), {"object": 0}, T(*shape)]))
    return [name], "TypeError"


def m_interface(draw, p, named):
    """One broken ``__cuda_array_interface__`` field of one array."""
    candidates = [a for a in _arrays_in(named, p.fn) if math.prod(_shape_of(p, a)) > 0]
    name = draw(st.sampled_from(candidates or _arrays_in(named, p.fn)))
    shape = _shape_of(p, name)
    size = math.prod(shape)
    item = ITEMSIZE[p.t]
    broken = [dict(shape=ABSENT), dict(typestr=ABSENT), dict(data=ABSENT), dict(typestr=None), dict(typestr="zz"),
              dict(typestr=4), dict(data=12345), dict(data=T(1.5, False)), dict(data=T(ADDR)), dict(data=None),
              dict(data=T(2 ** 63, False)), dict(data=T(-item * 4, False)),
              dict(shape=T(*([2.0] + list(shape[1:])))), dict(shape=T(*([True] + list(shape[1:])))),
              dict(shape="2x4"), dict(shape=None), dict(shape=T(*(list(shape[:-1]) + [None]))),
              dict(strides=T(*([item] * (len(shape) + 1)))), dict(strides=T(*([float(item)] * len(shape)))),
              dict(strides=T(*([item + 1] * len(shape)))), dict(strides=T(*([2 ** 63] * len(shape)))),
              dict(strides=7), dict(mask=ARR(shape, "|b1", ADDR + (8 << 36))), dict(mask=T(ADDR, False))]
    if size:
        broken += [dict(data=T(0, False)), dict(data=T(ADDR + 1, False))]
    if not shape:
        broken = [b for b in broken if "strides" not in b]
    fields = draw(st.sampled_from(broken))
    named[name] = ARR(shape, p.t, ADDR + (7 << 36), fields=fields)
    return [name], None


def m_shape_argument(draw, p, named):
    name = _x_name(p) if p.fn == "conv_backward_input" else _w_name(p)
    shape = _shape_of(p, name)
    head = list(shape[:-1])
    named[name] = draw(st.sampled_from([
        "2,4,8,8", None, 5, {"ndarray": [list(shape), "int64"]}, {"dict": {}}, {"bytes": "\x02\x04\x08\x08"},
        T(*head, 1.0), T(*head, True), T(*head, None), T(*head, "3"), T(*head, T(3)), L(*head, NP("float64", 3.0))]))
    return [name], "TypeError"


def m_backward_same_asymmetric(draw, p, named):
    """'same' padding with an even dilated kernel extent in some dim: the
    backward functions refuse the asymmetric padding it needs."""
    i = draw(st.integers(0, p.nsp - 1))
    ksz, dil = list(p.ksz), list(p.dil)
    if dil[i] % 2 == 0:
        dil[i] = 1
    ksz[i] = 2
    q = p.replace(padmode="same", stride=(1,) * p.nsp, pad=(0,) * p.nsp, ksz=tuple(ksz), dil=tuple(dil))
    named.clear()
    named.update(write(draw, q))
    return ["padding"], "ValueError"


def m_transpose_output_padding(draw, p, named):
    i = draw(st.integers(0, p.nsp - 1))
    opad = list(p.opad)
    opad[i] = max(p.stride[i], p.dil[i]) + draw(st.integers(0, 2))
    named["output_padding"] = T(*opad)
    return ["output_padding"], "ValueError"


def m_transpose_empty_output(draw, p, named):
    i = draw(st.integers(0, p.nsp - 1))
    pad = list(p.pad)
    full = (p.insz[i] - 1) * p.stride[i] + p.dil[i] * (p.ksz[i] - 1) + p.opad[i] + 1
    pad[i] = -(-full // 2) + draw(st.integers(0, 3))
    named["padding"] = T(*pad)
    return ["padding"], "ValueError"


def m_transpose_weight_cin(draw, p, named):
    shape = list(p.w_shape)
    shape[0] += draw(st.sampled_from([-1, 1, p.c])) if p.c > 1 else draw(st.sampled_from([1, 2]))
    named["weight"] = Writer(draw, p.t, 16).array(tuple(shape))
    return ["weight"], "ValueError"


def m_missing_z(draw, p, named):
    named["z"] = draw(st.sampled_from([None, ZEROS(p.y_shape), 0.0]))
    return ["z"], "TypeError"


ALL = FUNCTIONS
NOT_TR = ("conv", "conv_bias_add_relu") + BACKWARD

MUTATIONS = [     # (mutate, functions, applies(p))
    (m_param_not_positive, ALL, None),
    (m_param_length, ALL, None),
    (m_param_type, ALL, None),
    (m_padding_bad_string, ALL, None),
    (m_same_with_stride, NOT_TR, None),
    (m_huge_param, ALL, _huge_spots),
    (m_huge_batch, ALL, None),
    (m_groups_value, ALL, None),
    (m_groups_type, ALL, None),
    (m_groups_not_dividing, ALL, None),
    (m_flag, ALL, None),
    (m_workspace, ALL, None),
    (m_engine, ALL, None),
    (m_fusion, ("conv_bias_add_relu",), None),
    (m_alpha_value, ("conv_bias_add_relu",), None),
    (m_alpha_type, ("conv_bias_add_relu",), None),
    (m_ndim, ALL, None),
    (m_channels, ALL, None),
    (m_out_channels_not_divisible, NOT_TR, lambda p: p.groups > 1),
    (m_zero_dim, ALL, None),
    (m_negative_dim, ALL, None),
    (m_kernel_too_large, NOT_TR, lambda p: p.padmode != "same" and _too_small(p)),
    (m_dtype_mismatch, ALL, None),
    (m_unsupported_dtype, ALL, None),
    (m_bias, ("conv", "conv_transpose", "conv_bias_add_relu"), None),
    (m_out_shape, ALL, None),
    (m_spatial_off_by_one, ALL, None),
    (m_out_dtype, ALL, None),
    (m_none_array, ALL, None),
    (m_host_array, ALL, None),
    (m_interface, ALL, None),
    (m_shape_argument, BACKWARD, None),
    (m_backward_same_asymmetric, BACKWARD, None),
    (m_transpose_output_padding, ("conv_transpose",), None),
    (m_transpose_empty_output, ("conv_transpose",), None),
    (m_transpose_weight_cin, ("conv_transpose",), None),
    (m_missing_z, ("conv_bias_add_relu",), None),
]


def _applicable(fn, p, only=None):
    return [m for m, fns, applies in MUTATIONS
            if fn in fns and (applies is None or applies(p)) and (only is None or m is only)]


@st.composite
def invalid_cases(draw, functions=FUNCTIONS, mutation=None):
    """A valid call with one defect put in (``mutation``, or any that applies)."""
    fn = draw(st.sampled_from(functions))
    p = draw(problems(fn).filter(lambda p: _applicable(fn, p, mutation)))
    named = write(draw, p)
    mutate = draw(st.sampled_from(_applicable(fn, p, mutation)))
    names, exc = mutate(draw, p, named)
    label = mutate.__name__[2:]
    expect = "any" if mutate is m_huge_param and p.n == 0 else "refused"
    return as_call(draw, fn, named, expect=expect, names=names, exc=exc, label=label)


@st.composite
def valid_pairs(draw, functions=FUNCTIONS):
    """(problem, the valid call, the same call with its grad_output, z or
    out one off in a spatial dim)."""
    fn = draw(st.sampled_from(functions))
    p = draw(problems(fn))
    named = write(draw, p)
    valid = as_call(draw, fn, dict(named), expect="accepted", label="valid")
    names, exc = m_spatial_off_by_one(draw, p, named)
    twin = as_call(draw, fn, named, expect="refused", names=names, exc=exc, label="spatial_off_by_one")
    return p, valid, twin


# ---------------------------------------------------------------------------
# Arbitrary calls: some arguments replaced by odd values
# ---------------------------------------------------------------------------

JUNK = [None, True, False, 0, -1, 1, 2, 3, 2 ** 31, 2 ** 62, 2 ** 63, 2 ** 64, 2 ** 70, -2 ** 63, 10 ** 400, 1.5, 1.0,
        -0.0, math.nan, math.inf, -math.inf, "", "same", "valid", "full", "auto", "graph", "fused", "1", "no",
        {"bytes": "same"}, NP("int64", 2), NP("int32", -1), NP("uint64", 2 ** 64 - 1), NP("bool_", True),
        NP("float64", 1.0), NP("float32", math.nan), T(), T(1), T(1, 1), T(1, 1, 1), T(1, 1, 1, 1), L(1, 1),
        T(1.0, 1.0), T(True, 1), T(None), T(T(1, 1)), T("1", "1"), {"ndarray": [[1, 1], "int64"]},
        {"ndarray": [["auto"], "U4"]}, {"ndarray": [1, "int64"]}, {"ndarray": [1.5, "float64"]},
        {"complex": [1, 0]}, {"dict": {"shape": T(1)}}, {"object": 0}, ZEROS((2, 4, 8, 8))]

DIMS = [0, 1, 1, 2, 3, 4, 5, 8, -1, 2 ** 31, 2 ** 40, 2 ** 62, 2 ** 63, 2 ** 64]
TYPESTRS = ["<f4", "<f4", "<f2", "<f8"] + UNSUPPORTED + ["zz", "", "f4,i4", "(2)f4", "<U4", "<f4 "]


@st.composite
def odd_arrays(draw):
    shape = draw(st.lists(st.sampled_from(DIMS), min_size=0, max_size=6))
    t = draw(st.sampled_from(TYPESTRS))
    ptr = draw(st.sampled_from([ADDR, ADDR, 0, ADDR + 1, ADDR + 2, 2 ** 63, -8, 2 ** 70]))
    fields = {}
    if draw(st.integers(0, 3)) == 0:
        fields["strides"] = T(*draw(st.lists(st.sampled_from([0, 1, 2, 4, 8, -4, 2 ** 62, 2 ** 63]),
                                             min_size=len(shape), max_size=len(shape) + 1)))
    if draw(st.integers(0, 5)) == 0:
        fields[draw(st.sampled_from(["shape", "typestr", "data", "version"]))] = draw(st.sampled_from(JUNK + [ABSENT]))
    return ARR(shape, t, ptr, fields=fields)


nested = st.recursive(st.sampled_from([0, 1, 2, -1, 2 ** 63, 1.0, None, True, "same", NP("int64", 1)]),
                      lambda inner: st.lists(inner, max_size=4).map(lambda xs: T(*xs)) |
                      st.lists(inner, max_size=4).map(lambda xs: L(*xs)), max_leaves=8)


@st.composite
def perturbed_shapes(draw, shape):
    """``shape`` with a dim or two changed (to 0, -1, 2**62, ...), maybe one dim more or less."""
    shape = list(shape)
    for _ in range(draw(st.integers(1, 2))):
        shape[draw(st.integers(0, len(shape) - 1))] = draw(st.sampled_from(DIMS))
    how = draw(st.sampled_from(["same", "same", "same", "shorter", "longer"]))
    return shape[:-1] if how == "shorter" else shape + [draw(st.sampled_from(DIMS))] if how == "longer" else shape


@st.composite
def perturbed_arrays(draw, shape, t):
    return ARR(draw(perturbed_shapes(shape)), draw(st.sampled_from([t] * 6 + TYPESTRS)),
               draw(st.sampled_from([ADDR + (9 << 36)] * 6 + [0, ADDR + 2])))


ARRAY_SLOTS = ("input", "weight", "bias", "z", "grad_output", "out", "input_shape", "weight_shape")
PARAM_SLOTS = ("stride", "padding", "dilation", "groups", "output_padding", "alpha", "fusion")


@st.composite
def arbitrary_cases(draw, functions=FUNCTIONS):
    """A valid call with up to 3 arrays (or shapes), up to 2 parameters and,
    now and then, a flag replaced by odd values.  Flags are checked first,
    so an odd flag in every call would hide the rest."""
    fn = draw(st.sampled_from(functions))
    p = draw(problems(fn))
    named = write(draw, p)
    req, opt = SIGNATURES[fn]
    slots = req + opt + ("out",) + (("fusion",) if fn == "conv_bias_add_relu" else ())
    for name in draw(st.lists(st.sampled_from([a for a in ARRAY_SLOTS if a in slots]), max_size=3, unique=True)):
        shape = _shape_of(p, name)
        if name.endswith("_shape"):
            named[name] = draw(perturbed_shapes(shape).map(lambda s: T(*s)) | st.sampled_from(JUNK) | nested)
        else:
            named[name] = draw(perturbed_arrays(shape, p.t) | perturbed_arrays(shape, p.t) | odd_arrays() |
                               st.sampled_from(JUNK))
    for name in draw(st.lists(st.sampled_from([a for a in PARAM_SLOTS if a in slots]), max_size=2, unique=True)):
        named[name] = draw(st.sampled_from(JUNK) | nested)
    if draw(st.integers(0, 7)) == 0:
        named[draw(st.sampled_from(FLAGS))] = draw(st.sampled_from(JUNK) | odd_arrays() | nested)
    return as_call(draw, fn, named, label="arbitrary")


# ---------------------------------------------------------------------------
# Running and judging cases
# ---------------------------------------------------------------------------

def _verdict(case, r):
    """None when the outcome ``r`` is one ``case`` allows, else what is wrong."""
    exc, msg = r["exc"], r["msg"]
    if exc not in ALLOWED:
        return "raised %s, not one of %s" % (exc, ", ".join(ALLOWED))
    if exc == ACCEPTED:
        return "an invalid call was accepted" if case["expect"] == "refused" else None
    if case["expect"] == "accepted":
        return "a valid call was refused"
    if case["exc"] and exc != case["exc"]:
        return "raised %s, expected %s" % (exc, case["exc"])
    if not _names_one_of(msg, case["names"] or VOCABULARY):
        return "the message names %s" % ("none of " + ", ".join(case["names"]) if case["names"] else
                                         "no argument (nor channels, kernel size or dtype)")
    return None


def _report(case, r, why):
    return ("%s [%s]\n  call:    %s\n  outcome: %s: %s\n  replay:  PYTHONPATH=pyx python3 "
            "tests/test_api_property_cpu.py '%s'" % (why, case["label"], _call_text(case), r["exc"], r["msg"][:400],
                                                     json.dumps(case)))


def _judge(cases, results):
    failed = [(c, r, why) for c, r in zip(cases, results) for why in [_verdict(c, r)] if why]
    if failed:
        kinds = collections.Counter("%s [%s %s]" % (why, c["fn"], c["label"]) for c, r, why in failed)
        pytest.fail("%d of %d cases failed:\n%s\n\nthe first (at most two of a kind):\n\n%s" % (
            len(failed), len(cases), "\n".join("%5d  %s" % (n, k) for k, n in sorted(kinds.items())),
            "\n\n".join(_report(c, r, why) for c, r, why in _first_of_each(failed, 2))), pytrace=False)


def _first_of_each(failed, per_kind):
    seen = collections.Counter()
    for c, r, why in failed:
        seen[why, c["fn"], c["label"]] += 1
        if seen[why, c["fn"], c["label"]] <= per_kind:
            yield c, r, why


BATCH = 400                    # cases per child process
CHILD_TIMEOUT = 120            # seconds; a batch takes about 2


def _run_batch(cases):
    """The outcomes of ``cases``, run in a child process; a child that dies
    or hangs fails the test, printing the batch."""
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(cudnnconv.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([pkg_root] + [p for p in [env.get("PYTHONPATH")] if p])
    payload = json.dumps(cases)
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD], input=payload.encode(), capture_output=True,
                              timeout=CHILD_TIMEOUT, env=env)
        out, err, rc, hung = proc.stdout, proc.stderr, proc.returncode, False
    except subprocess.TimeoutExpired as e:
        out, err, rc, hung = e.stdout or b"", e.stderr or b"", None, True
    lines = [json.loads(line) for line in out.decode(errors="replace").splitlines() if line.startswith("{")]
    done = bool(lines) and "done" in lines[-1]
    results = [r for r in lines if "i" in r]
    if hung or rc != 0 or not done or len(results) != len(cases):
        print("the batch:", payload)
        nxt = cases[len(results)] if len(results) < len(cases) else None
        pytest.fail("the child %s after %d of %d cases%s\nstderr (tail):\n%s" % (
            "hung (%d s)" % CHILD_TIMEOUT if hung else "died (exit status %s)" % rc, len(results), len(cases),
            "; the case it was running:\n  %s\n  %s" % (_call_text(nxt), json.dumps(nxt)) if nxt else "",
            err.decode(errors="replace")[-3000:]), pytrace=False)
    return results


def _run_batches(cases):
    results = []
    for i in range(0, len(cases), BATCH):
        results += _run_batch(cases[i:i + BATCH])
    return results


def _drawn(strategy, n, name):
    """``n`` examples of ``strategy``, the same on every run: derandomized,
    from a seed of its own ``name`` (one seed for all would draw the same
    problems for every kind of defect)."""
    out = []

    @seed(zlib.crc32(name.encode()))
    @settings(max_examples=n, derandomize=True, deadline=None, database=None, phases=(Phase.generate,),
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(example):
        out.append(example)

    collect()
    assert len(out) == n, len(out)
    return out


def _geometry_of(p, named):
    """The library's output shape of the problem, from the pure functions."""
    build = _LIB["build"]
    get = lambda name: build(named.get(name, DEFAULTS[name]))       # noqa: E731
    if p.fn == "conv_transpose":
        return params.transpose_geometry(p.x_shape, p.w_shape, get("stride"), get("padding"),
                                         get("output_padding"), get("groups"), get("dilation"))[1]
    return params.conv_geometry(p.x_shape, p.w_shape, get("stride"), get("padding"), get("dilation"),
                                get("groups"))[1]


def _named_of(case):
    """The named arguments of a case (positional ones by their names)."""
    req, opt = SIGNATURES[case["fn"]]
    named = dict(zip(req + opt, case["args"]))
    named.update(case["kwargs"])
    return named


def _check_formula(p, case):
    got = _geometry_of(p, _named_of(case))
    assert got == p.y_shape, "%s: the library's output shape %s, PyTorch's formula %s" % (
        _call_text(case), got, p.y_shape)


def _skip_on_gpu():
    if GPU:
        pytest.skip("a CUDA device is usable here: a valid call would run (on fake pointers)")


# ---------------------------------------------------------------------------
# In process: quick feedback
# ---------------------------------------------------------------------------

QUICK = settings(derandomize=True, deadline=None, database=None, max_examples=150,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def _problem_and_call(draw, functions):
    fn = draw(st.sampled_from(functions))
    p = draw(problems(fn))
    return p, as_call(draw, fn, write(draw, p))


@QUICK
@given(_problem_and_call(("conv", "conv_bias_add_relu") + BACKWARD))
def test_conv_geometry_is_pytorchs_formula(pc):
    p, case = pc
    _check_formula(p, case)


@QUICK
@given(_problem_and_call(("conv_transpose",)))
def test_transpose_geometry_is_pytorchs_formula(pc):
    p, case = pc
    _check_formula(p, case)


@settings(QUICK, max_examples=100)
@given(valid_pairs())
def test_valid_call_in_process(pvt):
    p, valid, twin = pvt
    _check_formula(p, valid)
    _skip_on_gpu()
    _judge([twin, valid], [_LIB["run"](twin), _LIB["run"](valid)])


@settings(QUICK, max_examples=200)
@given(invalid_cases())
def test_invalid_call_in_process(case):
    if GPU:
        pytest.skip("an invalid call accepted by mistake would run on fake pointers")
    _judge([case], [_LIB["run"](case)])


# ---------------------------------------------------------------------------
# In child processes: the bulk
# ---------------------------------------------------------------------------

def test_valid_calls_are_accepted_with_pytorchs_output_shape():
    """Valid calls of every function are accepted, their output shape is the
    formula's, and grad_output, z or out one off in a spatial dim is refused
    naming it (400 problems, 800 calls, 2 children)."""
    drawn = _drawn(valid_pairs(), 400, "valid")
    for p, valid, _ in drawn:
        _check_formula(p, valid)
    cases = [c for _, valid, twin in drawn for c in (twin, valid) if c is twin or not GPU]
    assert {c["fn"] for c in cases} == set(FUNCTIONS)
    _judge(cases, _run_batches(cases))
    _skip_on_gpu()


PER_DEFECT = 8        # calls per function and defect that applies to it, times:
TIMES = {m_param_type: 2, m_engine: 2, m_fusion: 3, m_alpha_type: 3, m_unsupported_dtype: 2, m_interface: 3,
         m_host_array: 2, m_shape_argument: 2}       # the defects drawn from longer lists of values


def test_invalid_calls_are_refused_naming_the_argument():
    """A valid call with one defect put in is refused with a ValueError or
    TypeError naming the argument (8 or more calls of each function with each
    defect that applies: 1,456 calls, 4 children)."""
    cases = []
    for mutate, fns, _ in MUTATIONS:
        for fn in fns:
            cases += _drawn(invalid_cases((fn,), mutate), PER_DEFECT * TIMES.get(mutate, 1),
                            "%s/%s" % (fn, mutate.__name__))
    assert len(cases) == 1456
    _judge(cases, _run_batches(cases))


def test_arbitrary_calls_end_in_an_allowed_way():
    """Calls with odd values in some arguments end only in ValueError or
    TypeError naming an argument, or are accepted (800 calls, 2 children)."""
    cases = _drawn(arbitrary_cases(), 800, "arbitrary")
    _judge(cases, _run_batches(cases))


def test_a_crashing_or_hanging_child_fails_the_test(monkeypatch):
    """The harness itself: a child that dies or hangs is a failure, not a pass."""
    case = as_call(None, "conv", {"input": ARR((1, 1, 3)), "weight": ARR((1, 1, 3))})
    for body, words in (("import os; os.abort()", "died"), ("import time; time.sleep(60)", "hung")):
        monkeypatch.setattr(sys.modules[__name__], "_CHILD", body)
        monkeypatch.setattr(sys.modules[__name__], "CHILD_TIMEOUT", 1)
        with pytest.raises(pytest.fail.Exception, match=words):
            _run_batch([case])


def _masked(shape):
    a = FakeCudaArray(shape)
    a.__cuda_array_interface__["mask"] = FakeCudaArray(shape, "|b1")
    return a


_X, _W, _Y = FakeCudaArray((2, 4, 8, 8)), FakeCudaArray((6, 4, 3, 3)), FakeCudaArray((2, 6, 6, 6))


@pytest.mark.parametrize("call, exc, fragment", [
    # accepted before, though CuPy refuses both (with a message naming no argument)
    (lambda: cudnnconv.conv(FakeCudaArray((2, 4, 8, 8), ">f4"), FakeCudaArray((6, 4, 3, 3), ">f4")), TypeError,
     "^input has the big-endian dtype '>f4'"),
    (lambda: cudnnconv.conv(_X, _masked((6, 4, 3, 3))), TypeError, "^weight is a masked array"),
    # accepted before: float() reads a str, bytes or bool
    (lambda: cudnnconv.conv_bias_add_relu(_X, _W, _Y, "1.5", None), TypeError, "^alpha must be a finite real"),
    (lambda: cudnnconv.conv_bias_add_relu(_X, _W, _Y, b"1", None), TypeError, "^alpha must be a finite real"),
    (lambda: cudnnconv.conv_bias_add_relu(_X, _W, _Y, True, None), TypeError, "^alpha must be a finite real"),
    # a one-element array was accepted (`in` compares elementwise), a longer one
    # raised NumPy's "truth value of an array is ambiguous"
    (lambda: cudnnconv.conv(_X, _W, engine=numpy.array(["auto"])), ValueError, "^engine must be one of"),
    (lambda: cudnnconv.conv(_X, _W, engine=numpy.array(["auto", "graph"])), ValueError, "^engine must be one of"),
    (lambda: cudnnconv.conv_bias_add_relu(_X, _W, _Y, 1.0, None, fusion=numpy.array(["auto"])),
     ValueError, "^fusion must be one of"),
    (lambda: cudnnconv.conv_bias_add_relu(_X, _W, _Y, 1.0, None, fusion=numpy.array(["auto", "fused"])),
     ValueError, "^fusion must be one of"),
    # "a batch of ... samples would need ... chunks" named no argument
    (lambda: cudnnconv.conv(FakeCudaArray((2 ** 50, 1, 8)), FakeCudaArray((1, 1, 3))), ValueError,
     "^the input's batch of 1125899906842624 samples"),
], ids=["big-endian", "mask", "alpha-str", "alpha-bytes", "alpha-bool", "engine-array-1", "engine-array-2",
        "fusion-array-1", "fusion-array-2", "batch-2**50"])
def test_what_these_properties_found(call, exc, fragment):
    """The defects the properties above found, as plain regression cases."""
    with pytest.raises(exc, match=fragment) as info:
        call()
    assert type(info.value) is exc


def test_the_vocabulary_is_whole_words():
    assert _names_one_of("stride must be positive", ["stride"])
    assert not _names_one_of("input_shape must be a sequence", ["input"])
    assert not _names_one_of("the output has shape", ["out"])
    assert _names_one_of("kernel size 3 (dilated to 5) is larger", VOCABULARY)
    assert not _names_one_of("The truth value of an array is ambiguous", VOCABULARY)


if __name__ == "__main__":          # replay cases given as JSON arguments, in this process, with tracebacks
    import traceback
    for text in sys.argv[1:]:
        one = json.loads(text)
        print(_call_text(one))
        try:
            _LIB["call"](one)
            print("  returned")
        except Exception:
            traceback.print_exc()
