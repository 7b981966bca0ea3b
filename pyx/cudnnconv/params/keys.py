"""The problem key of the choice caches, and the one function that builds it."""
import collections

from cudnnconv.params.geometry import one_sided

ProblemKey = collections.namedtuple(
    "ProblemKey",
    "op engine device dtype input_shape weight_shape layout padding stride dilation groups "
    "deterministic allow_tf32 workspace_limit extra")


def make_key(op, engine, device, dtype_code, x_shape, w_shape, layout, geom, opts, extra=()):
    """The one function that builds a cache key: an immutable, hashable value.

    It holds everything that decides whether a cached choice is valid.  Left
    out, on purpose:
      * the output shape: a function of the input, weight and geometry;
      * the bias: always added outside the convolution kernel (or, fused,
        through its own descriptor of shape (1, K, 1...) fixed by K);
      * strides beyond the layout: inputs are packed into one of the two
        layouts before the engine sees them, so the layout names them all;
      * the stream and the data pointers: they do not change which algorithm
        is valid (the graph engine puts pointer *alignment* in ``extra``);
      * benchmark: a benchmarked choice is also a valid answer for a
        heuristic call; the search re-benchmarks a heuristic entry when
        benchmark=True asks for it (see search.try_all);
      * same_extra: 'same' padding's asymmetric part is applied to the input
        before the engine sees it, so the input shape already carries it.

    A spatial tile's one-sided padding (``geometry.tile_padding``'s pairs) is
    kept whole in ``padding``, so the output's size still follows from the key.
    Such keys live in the process's caches only: the tuning file, the warm-up
    and the knob sweep take keys of calls, whose padding is one int per dim
    (``persistent``).
    """
    return ProblemKey(op, engine, device, dtype_code, tuple(x_shape), tuple(w_shape), layout,
                      geom.padding, geom.stride, geom.dilation, geom.groups,
                      bool(opts.deterministic), bool(opts.allow_tf32), opts.workspace_limit, tuple(extra))


def persistent(key):
    """Whether ``key`` is one the tuning file, the warm-up and the knob sweep take: every key but a
    spatial tile's with one-sided padding, which no call of the API has."""
    return not one_sided(key.padding)
