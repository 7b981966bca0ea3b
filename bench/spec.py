"""Layers: the compact spec strings, their JSON files, and what a layer is.

A spec is comma-separated ``KEY=VALUE`` pairs, e.g.::

    N=32,C=64,H=56,W=56,K=64,R=3,S=3,pad=1,stride=1,groups=1

* 2D: ``H, W`` (input) and ``R, S`` (kernel height, width).
* 1D: ``L`` (input length) and ``S`` or ``R`` (kernel length).
* 3D: ``D, H, W`` (input) and ``T, R, S`` (kernel depth, height, width).
* ``pad``, ``stride``, ``dilation`` take one int for every spatial dim, or one
  int per dim joined by ``x`` (``pad=1x0``); ``groups`` an int.
* ``op`` is ``conv`` (default), ``transpose`` (a transposed convolution:
  ``C`` is its input channels, ``K`` its output channels; ``opad`` its
  output_padding) or ``fused`` (conv_bias_add_relu).
* ``name`` labels the layer, ``count`` says how often a network uses it.

Missing kernel sizes are 1, padding 0, stride, dilation and groups 1.
``N``, ``C`` and ``K`` are required.  Every layer is checked through
``cudnnconv.params`` (the same validation the library runs) when parsed.
"""
import json
import math

from cudnnconv import params

OPS = ("conv", "transpose", "fused")
_INT_KEYS = ("N", "C", "K", "L", "D", "H", "W", "T", "R", "S", "groups", "count")
_TUPLE_KEYS = ("pad", "stride", "dilation", "opad")
_ALIASES = {"padding": "pad", "dil": "dilation", "g": "groups", "output_padding": "opad"}


class SpecError(ValueError):
    """A layer spec that is malformed or is not a valid convolution."""


class Layer:
    """One convolution problem, independent of dtype and layout.

    ``spatial`` is the input's spatial size and ``kernel`` the filter's, one
    entry per spatial dim (1 to 3).  For ``op='transpose'`` the input has
    ``c`` channels and the output ``k``; the weight is (C, K/groups, *kernel)
    as in PyTorch.
    """
    __slots__ = ("name", "op", "n", "c", "k", "spatial", "kernel", "pad", "stride", "dilation", "groups",
                 "opad", "count")

    def __init__(self, n, c, k, spatial, kernel, pad=0, stride=1, dilation=1, groups=1, op="conv", opad=0,
                 name=None, count=1):
        nsp = len(spatial)
        if not 1 <= nsp <= 3 or len(kernel) != nsp:
            raise SpecError("need 1 to 3 spatial dims and a kernel size for each, got input %s and kernel %s"
                            % (tuple(spatial), tuple(kernel)))
        if op not in OPS:
            raise SpecError("op must be one of %s, got %r" % (", ".join(OPS), op))
        self.op = op
        self.n, self.c, self.k = int(n), int(c), int(k)
        self.spatial = tuple(int(v) for v in spatial)
        self.kernel = tuple(int(v) for v in kernel)
        self.pad = _per_dim(pad, nsp, "pad")
        self.stride = _per_dim(stride, nsp, "stride")
        self.dilation = _per_dim(dilation, nsp, "dilation")
        self.opad = _per_dim(opad, nsp, "opad")
        self.groups = int(groups)
        self.count = int(count)
        if self.count < 1:
            raise SpecError("count must be positive, got %d" % self.count)
        if op != "transpose" and any(self.opad):
            raise SpecError("opad (output_padding) is only for op=transpose")
        self.name = name or self.spec(with_name=False)
        self.geometry()                   # raises SpecError when it is no valid convolution

    # -- shapes ---------------------------------------------------------------
    @property
    def nsp(self):
        return len(self.spatial)

    def input_shape(self):
        return (self.n, self.c) + self.spatial

    def weight_shape(self):
        if self.op == "transpose":
            return (self.c, self.k // self.groups) + self.kernel
        return (self.k, self.c // self.groups) + self.kernel

    def geometry(self):
        """(cudnnconv Geometry, output shape), through cudnnconv.params."""
        try:
            if self.op == "transpose":
                return params.transpose_geometry(self.input_shape(), self.weight_shape(), self.stride, self.pad,
                                                 self.opad, self.groups, self.dilation)
            return params.conv_geometry(self.input_shape(), self.weight_shape(), self.stride, self.pad,
                                        self.dilation, self.groups)
        except (ValueError, TypeError) as e:
            raise SpecError("%s: %s" % (self.spec(with_name=False), e)) from None

    def output_shape(self):
        return self.geometry()[1]

    def forward_problem(self):
        """(x_shape, w_shape, y_shape) of the forward convolution this layer
        computes or is the backward-input of (a transposed convolution of x is
        the dgrad of the forward convolution from its output to x)."""
        if self.op == "transpose":
            y = self.output_shape()
            return y, self.weight_shape(), self.input_shape()
        return self.input_shape(), self.weight_shape(), self.output_shape()

    def flops(self):
        """Multiply-adds x 2 of the convolution (each direction does as many)."""
        x, w, y = self.forward_problem()
        return 2.0 * math.prod(y) * math.prod(w[1:])

    def with_batch(self, n):
        return Layer(n, self.c, self.k, self.spatial, self.kernel, self.pad, self.stride, self.dilation,
                     self.groups, self.op, self.opad, self.name, self.count)

    # -- text -----------------------------------------------------------------
    def spec(self, with_name=True):
        """The spec string that parses back to this layer."""
        dims = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}[self.nsp]
        kdims = {1: ("S",), 2: ("R", "S"), 3: ("T", "R", "S")}[self.nsp]
        parts = ["N=%d" % self.n, "C=%d" % self.c]
        parts += ["%s=%d" % kv for kv in zip(dims, self.spatial)]
        parts.append("K=%d" % self.k)
        parts += ["%s=%d" % kv for kv in zip(kdims, self.kernel)]
        parts += ["pad=%s" % _fmt(self.pad), "stride=%s" % _fmt(self.stride)]
        if any(d != 1 for d in self.dilation):
            parts.append("dilation=%s" % _fmt(self.dilation))
        parts.append("groups=%d" % self.groups)
        if self.op != "conv":
            parts.append("op=%s" % self.op)
        if any(self.opad):
            parts.append("opad=%s" % _fmt(self.opad))
        if with_name and self.name != self.spec(with_name=False):
            parts.append("name=%s" % self.name)
        if with_name and self.count != 1:
            parts.append("count=%d" % self.count)
        return ",".join(parts)

    def shape_text(self):
        """Short label: '3x3 64->64 @56 s1' (plus g, d, op where they matter)."""
        k = "x".join(map(str, self.kernel))
        sp = "x".join(map(str, self.spatial)) if len(set(self.spatial)) > 1 else str(self.spatial[0])
        s = "%s %d->%d @%s" % (k, self.c, self.k, sp)
        if any(v != 1 for v in self.stride):
            s += " s%s" % _fmt(self.stride)
        if self.groups != 1:
            s += " g%d" % self.groups
        if any(v != 1 for v in self.dilation):
            s += " d%s" % _fmt(self.dilation)
        if self.op != "conv":
            s += " [%s]" % self.op
        return s

    def __eq__(self, other):
        return isinstance(other, Layer) and self.spec() == other.spec()

    def __hash__(self):
        return hash(self.spec())

    def __repr__(self):
        return "Layer(%s)" % self.spec()


def _fmt(t):
    return str(t[0]) if len(set(t)) == 1 else "x".join(map(str, t))


def _per_dim(v, nsp, what):
    if isinstance(v, int) and not isinstance(v, bool):
        vals = (v,) * nsp
    else:
        vals = tuple(int(x) for x in v)
        if len(vals) == 1:
            vals = vals * nsp
    if len(vals) != nsp:
        raise SpecError("%s needs 1 or %d values (one per spatial dim), got %s" % (what, nsp, vals))
    return vals


def _int(key, text):
    try:
        return int(text)
    except ValueError:
        raise SpecError("%s must be an integer, got %r" % (key, text)) from None


def parse_spec(text, name=None, count=None):
    """A Layer from a spec string (see the module's docstring); SpecError otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise SpecError("empty layer spec")
    kv = {}
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        if "=" not in part:
            raise SpecError("%r is not KEY=VALUE (in %r)" % (part, text))
        key, val = part.split("=", 1)
        key = _ALIASES.get(key, key)
        if key not in _INT_KEYS + _TUPLE_KEYS + ("op", "name"):
            raise SpecError("unknown key %r in %r; keys: %s" % (key, text, ", ".join(_INT_KEYS + _TUPLE_KEYS +
                                                                                      ("op", "name"))))
        if key in kv:
            raise SpecError("key %r given twice in %r" % (key, text))
        kv[key] = val
    for req in ("N", "C", "K"):
        if req not in kv:
            raise SpecError("%s= is required (in %r)" % (req, text))
    ints = {k: _int(k, v) for k, v in kv.items() if k in _INT_KEYS}
    tuples = {k: tuple(_int(k, p) for p in v.split("x")) for k, v in kv.items() if k in _TUPLE_KEYS}
    if "L" in ints:
        if any(k in ints for k in ("H", "W", "D", "T")):
            raise SpecError("a 1D spec has L= (and S= or R= for the kernel) only, not H/W/D/T: %r" % text)
        if "R" in ints and "S" in ints:
            raise SpecError("a 1D kernel is S= or R=, not both: %r" % text)
        spatial, kernel = (ints["L"],), (ints.get("S", ints.get("R", 1)),)
    elif "D" in ints:
        if "H" not in ints or "W" not in ints:
            raise SpecError("a 3D spec needs D=, H= and W=: %r" % text)
        spatial = (ints["D"], ints["H"], ints["W"])
        kernel = (ints.get("T", 1), ints.get("R", 1), ints.get("S", 1))
    else:
        if "H" not in ints or "W" not in ints:
            raise SpecError("a spec needs H= and W= (2D), L= (1D) or D=,H=,W= (3D): %r" % text)
        if "T" in ints:
            raise SpecError("T= (kernel depth) needs D= (3D): %r" % text)
        spatial = (ints["H"], ints["W"])
        kernel = (ints.get("R", 1), ints.get("S", 1))
    for key in ("N", "C", "K") + ("L", "D", "H", "W", "T", "R", "S"):
        if key in ints and ints[key] < 1:
            raise SpecError("%s must be positive, got %d" % (key, ints[key]))
    return Layer(ints["N"], ints["C"], ints["K"], spatial, kernel,
                 pad=tuples.get("pad", 0), stride=tuples.get("stride", 1), dilation=tuples.get("dilation", 1),
                 groups=ints.get("groups", 1), op=kv.get("op", "conv"), opad=tuples.get("opad", 0),
                 name=name or kv.get("name"), count=count or ints.get("count", 1))


def load_layers_file(path):
    """Layers from a JSON file: a list (or {"layers": [...]}) whose entries are
    spec strings or objects {"spec": "...", "name": "...", "count": n}."""
    with open(path) as f:
        data = json.load(f)
    if isinstance(data, dict):
        data = data.get("layers")
    if not isinstance(data, list):
        raise SpecError("%s: expected a list of layer specs (or {\"layers\": [...]})" % path)
    out = []
    for i, entry in enumerate(data):
        if isinstance(entry, str):
            out.append(parse_spec(entry))
        elif isinstance(entry, dict) and isinstance(entry.get("spec"), str):
            out.append(parse_spec(entry["spec"], name=entry.get("name"), count=entry.get("count")))
        else:
            raise SpecError("%s: entry %d must be a spec string or {\"spec\": ...}, got %r" % (path, i, entry))
    return out
