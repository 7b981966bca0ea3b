"""The one-line Python repro that errors carry."""

import numpy

from cudnnconv.params.layouts import CHANNELS_LAST

def _rand_expr(shape, dtype, layout):
    dt = numpy.dtype(dtype).name
    dt_expr = "ml_dtypes.bfloat16" if dt == "bfloat16" else repr(dt)
    base = "cupy.random.standard_normal(%r).astype(%s)" % (tuple(shape), dt_expr)
    if layout == CHANNELS_LAST and len(shape) >= 3:
        nd = len(shape)
        perm = (0,) + tuple(range(2, nd)) + (1,)
        inv = (0, nd - 1) + tuple(range(1, nd - 1))
        pshape = tuple(shape[p] for p in perm)
        base = ("cupy.ascontiguousarray(cupy.random.standard_normal(%r).astype(%s)).transpose(%r)"
                % (pshape, dt_expr, inv))
    return base


class RandomArray(tuple):
    """A keyword argument of a repro line that is an array: written as a random array of this shape."""


def repro_kwargs(geom, opts, extra=()):
    """The keyword arguments of a repro line, normalised: ``extra`` first
    (the function's own, e.g. ``[("fusion", "auto")]``), then the geometry,
    then the resolved flags."""
    return list(extra) + [("stride", geom.stride), ("padding", geom.padding), ("dilation", geom.dilation),
                          ("groups", geom.groups), ("benchmark", opts.benchmark),
                          ("deterministic", opts.deterministic), ("allow_tf32", opts.allow_tf32),
                          ("workspace_limit", opts.workspace_limit), ("engine", opts.engine)]


def repro(fn, arrays, dtype, layout, call_kwargs):
    """A one-line Python snippet that repeats a call on fresh random data.

    ``arrays`` lists the positional arguments as (name, value): a tuple is
    the shape of a random array (or, for a name ending in ``_shape``, the
    shape itself); anything else (a scalar, None) is written as a literal.
    ``call_kwargs`` are the keyword arguments after them, already normalised.
    """
    head = "import cupy, cudnnconv" + (", ml_dtypes" if numpy.dtype(dtype).name == "bfloat16" else "")
    args = []
    for name, value in arrays:
        if isinstance(value, tuple) and not name.endswith("_shape"):
            args.append(_rand_expr(value, dtype, layout))     # an array of this shape
        else:
            args.append(repr(value))                          # a shape, a scalar or None
    kw = ", ".join("%s=%s" % (k, _rand_expr(v, dtype, layout) if isinstance(v, RandomArray) else repr(v))
                   for k, v in call_kwargs)
    return "%s; cudnnconv.%s(%s%s)" % (head, fn, ", ".join(args), (", " + kw) if kw else "")
