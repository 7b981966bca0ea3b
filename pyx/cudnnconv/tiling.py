"""Spatial tiles with halos for samples over the index limit: a pure planning function (policy tier).

cuDNN's kernels index a tensor with 32-bit integers.  ``split.plan_batch_split`` brings a call
under the limit by splitting the batch; when a single sample is itself over the limit, the only way
through is to split its spatial dims.  ``plan_spatial_tiles`` partitions the *output* of a forward
convolution into tiles and gives each the window of the input it reads:

* the output tiles cover the output exactly once (each output element is in one tile);
* a tile of outputs ``[out_lo, out_hi)`` along a dim reads the input positions
  ``o*stride - pad_lo + t*dilation`` for ``o`` in the tile and ``t`` in the kernel: its window
  ``[in_lo, in_hi)`` is that range clipped to the tensor (the halo is the kernel's reach past the
  tile's own share of the input), and the part of the range outside the tensor becomes the tile's
  own padding, ``pad_lo`` before and ``pad_hi`` after.  So a tile has the convolution's real padding
  where it meets the tensor's edge and none inside it;
* run on its window with its padding and the convolution's stride and dilation, a tile computes
  exactly its outputs: the window's first padded position is the one its first output starts at,
  so the strides line up.

The same plan serves every direction.  A forward (and a fused call: z and the output share the
tiling) writes each output tile from its input window.  A weight gradient is the sum, over the
tiles, of the weight gradients of each tile's input window with its gradient-output tile (every
output element is in one tile, so every term of the sum is counted once); 16-bit types sum in
float32, as the batch split does.  An input gradient is the sum of each tile's input gradient over
its window: adjacent windows overlap by the halo, and the overlaps add up, as the convolution's
adjoint does.  A transposed convolution is the input gradient of the convolution whose output
shape is its input's.

How tiles are sized: ``n`` samples of ``in_channels`` input and ``out_channels`` output channels
per call, and every tile's input window (n x in_channels x the window) and output tile
(n x out_channels x the tile) within ``index_limit`` elements.  The outermost spatial dim is tiled
first, into the fewest tiles that fit, of near-equal size; where a single output row of it is still
over the limit, it is tiled a row at a time and the next dim is tiled the same way, and so on.
Where one output element's window is over the limit (a huge channel count, or a kernel window of
that size), tiling cannot help: ValueError names the sizes.

``split_or_tile`` puts the two splits together for a call: batch chunks where whole samples fit,
otherwise one chunk per sample and the tiles of one sample.
"""
import collections
import math

from cudnnconv import split

# More tiles than this is no real problem (65,536 tiles of 2**31 elements are 2**47 elements):
# shapes that claim it are refused rather than planned for hours.
MAX_TILES = 1 << 16

Tile = collections.namedtuple("Tile", "out_lo out_hi in_lo in_hi pad_lo pad_hi")
Tile.__doc__ = """One tile: per spatial dim (each field a tuple, one int per dim), the outputs
``[out_lo, out_hi)``, the input window ``[in_lo, in_hi)`` they read (halo included, clipped to the
tensor), and the tile's padding before (``pad_lo``) and after (``pad_hi``) its window.  A window
can be empty (``in_lo == in_hi``, placed outside the tensor) where padding wider than the kernel's
reach leaves outputs that read padding alone; such a tile's outputs are the bias (zero without
one)."""


def output_size(size, kernel, stride, dilation, pad_lo, pad_hi):
    """The number of outputs along one dim (PyTorch's formula)."""
    return (size + pad_lo + pad_hi - dilation * (kernel - 1) - 1) // stride + 1


def window(out_lo, out_hi, size, kernel, stride, dilation, pad_lo):
    """(in_lo, in_hi, pad_lo, pad_hi) of the outputs [out_lo, out_hi) along one dim: the input they
    read, clipped to [0, size), and the padding the clipping leaves before and after it.  Always
    ``in_lo - pad_lo`` is where the first output starts reading and ``in_hi + pad_hi`` one past where
    the last stops, with both paddings >= 0; where the outputs read padding alone, the window is
    empty (``in_lo == in_hi``, then outside [0, size))."""
    first = out_lo * stride - pad_lo                               # where the first output starts
    last = (out_hi - 1) * stride - pad_lo + dilation * (kernel - 1)  # what the last output reads last
    if first >= size:                    # every position read lies past the end: an empty window there
        lo = hi = first
    elif last < 0:                       # ... or before the start
        lo = hi = last + 1
    else:
        lo, hi = max(first, 0), min(last + 1, size)
    return lo, hi, lo - first, last + 1 - hi


def _check(n, in_channels, out_channels, spatial, kernel, stride, dilation, pad_lo, pad_hi, index_limit):
    nsp = len(spatial)
    if not 1 <= nsp <= 3 or not all(len(t) == nsp for t in (kernel, stride, dilation, pad_lo, pad_hi)):
        raise ValueError("a tiling plan needs 1 to 3 spatial dims with one kernel size, stride, dilation and "
                         "padding each; got spatial %s, kernel %s, stride %s, dilation %s, padding %s/%s"
                         % (tuple(spatial), tuple(kernel), tuple(stride), tuple(dilation), tuple(pad_lo),
                            tuple(pad_hi)))
    ok = (n >= 1 and in_channels >= 1 and out_channels >= 1 and index_limit >= 1
          and all(v >= 1 for v in tuple(spatial) + tuple(kernel) + tuple(stride) + tuple(dilation))
          and all(v >= 0 for v in tuple(pad_lo) + tuple(pad_hi)))
    if not ok:
        raise ValueError("invalid tiling request: n=%d channels %d -> %d, spatial %s, kernel %s, stride %s, "
                         "dilation %s, padding %s/%s, limit %d"
                         % (n, in_channels, out_channels, tuple(spatial), tuple(kernel), tuple(stride),
                            tuple(dilation), tuple(pad_lo), tuple(pad_hi), index_limit))
    out = tuple(output_size(*a) for a in zip(spatial, kernel, stride, dilation, pad_lo, pad_hi))
    if min(out) < 1:
        raise ValueError("the convolution has no output: spatial %s, kernel %s, stride %s, dilation %s, "
                         "padding %s/%s give output %s" % (tuple(spatial), tuple(kernel), tuple(stride),
                                                          tuple(dilation), tuple(pad_lo), tuple(pad_hi), out))
    return out


def _reach(rows, size, kernel, stride, dilation, padded=False):
    """The most input positions ``rows`` consecutive outputs read along a dim: clipped to the
    tensor, or (``padded``) with the padding they read counted in, as a window copied with its
    padding holds them."""
    span = (rows - 1) * stride + dilation * (kernel - 1) + 1
    return span if padded else min(size, span)


def _rows(out_size, fits):
    """The fewest near-equal tiles of a dim of ``out_size`` outputs whose tiles ``fits(rows)``:
    (tile count, rows per tile), or None where even one row does not fit."""
    if fits(out_size):
        return 1, out_size
    if not fits(1):
        return None
    lo, hi = 1, out_size                 # fits(lo), not fits(hi): the largest row count that fits
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    count = -(-out_size // lo)
    return count, -(-out_size // count)  # the same count, rows spread evenly (never more than lo)


def plan_spatial_tiles(n, in_channels, out_channels, spatial, kernel, stride, dilation, pad_lo, pad_hi,
                       index_limit, padded=False):
    """Tiles (``Tile``, row-major over the tile grid) of a forward convolution of ``n`` samples,
    ``in_channels`` -> ``out_channels``, input spatial sizes ``spatial``, with per-dim ``kernel``
    sizes, ``stride``, ``dilation`` and padding ``pad_lo`` before / ``pad_hi`` after each dim, such
    that every tile's input window and output tile hold at most ``index_limit`` elements.  With
    ``padded``, the window counts its padding too (``in_hi - in_lo + pad_lo + pad_hi`` per dim): what
    a caller that copies each window with its padding as zeros hands its engine.  One tile, the
    whole convolution, where both already fit.  See the module doc for what the tiles promise.

    Raises:
        ValueError: an invalid request, a convolution with no output, one output element whose
            window is over the limit (tiling cannot help), or more than MAX_TILES tiles.
    """
    spatial, kernel, stride, dilation = tuple(spatial), tuple(kernel), tuple(stride), tuple(dilation)
    pad_lo, pad_hi = tuple(pad_lo), tuple(pad_hi)
    out = _check(n, in_channels, out_channels, spatial, kernel, stride, dilation, pad_lo, pad_hi, index_limit)
    nsp = len(spatial)
    rows = list(out)                     # outputs per tile along each dim, decided outermost first
    for d in range(nsp + 1):
        inner_out = math.prod(out[d + 1:])
        inner_in = math.prod(_reach(out[e], spatial[e], kernel[e], stride[e], dilation[e], padded) if padded
                             else spatial[e] for e in range(d + 1, nsp))
        outer_in = math.prod(_reach(rows[e], spatial[e], kernel[e], stride[e], dilation[e], padded)
                             for e in range(d))
        outer_out = math.prod(rows[:d])

        def fits(r, d=d, outer_in=outer_in, outer_out=outer_out, inner_in=inner_in, inner_out=inner_out):
            win = _reach(r, spatial[d], kernel[d], stride[d], dilation[d], padded)
            return (n * in_channels * outer_in * win * inner_in <= index_limit
                    and n * out_channels * outer_out * r * inner_out <= index_limit)

        if d == nsp:                     # one output row along every dim, and still over the limit
            one_in = n * in_channels * outer_in
            one_out = n * out_channels * outer_out
            raise ValueError(
                "one output element of this convolution reads %d input elements (%d samples x %d channels x "
                "a %s window) and writes %d (%d samples x %d channels); over the index limit of %d elements, "
                "no spatial tiling brings it under (input %s, kernel %s, dilation %s)"
                % (one_in, n, in_channels, "x".join(str(_reach(1, s, k, st, dl, padded)) for s, k, st, dl in
                                                     zip(spatial, kernel, stride, dilation)),
                   one_out, n, out_channels, index_limit, spatial, kernel, dilation))
        got = _rows(out[d], fits)
        if got is not None:
            rows[d] = got[1]
            break
        rows[d] = 1                      # one output row at a time here, and the next dim is tiled too
    counts = [-(-o // r) for o, r in zip(out, rows)]
    if math.prod(counts) > MAX_TILES:
        raise ValueError("an input sample of spatial size %s with padding %s/%s has outputs %s per channel: over "
                         "the index limit of %d elements it would need %d tiles (at most %d are planned), and no "
                         "GPU holds such arrays"
                         % (spatial, pad_lo, pad_hi, out, index_limit, math.prod(counts), MAX_TILES))
    per_dim = []
    for d in range(nsp):
        spans = [(lo, min(lo + rows[d], out[d])) for lo in range(0, out[d], rows[d])]
        per_dim.append([(lo, hi) + window(lo, hi, spatial[d], kernel[d], stride[d], dilation[d], pad_lo[d])
                        for lo, hi in spans])
    tiles = [[]]
    for options in per_dim:
        tiles = [t + [o] for t in tiles for o in options]
    return [Tile(*(tuple(part[i] for part in t) for i in range(6))) for t in tiles]


GradPart = collections.namedtuple("GradPart", "gx_lo gx_hi run_lo gy_lo gy_hi pad_lo pad_hi")
GradPart.__doc__ = """One part of an input gradient cut by ``input_gradient_parts``: per spatial dim
(each field a tuple, one int per dim), the gradient's positions ``[gx_lo, gx_hi)`` the part owns, of
which ``[run_lo, gx_hi)`` are computed (the ones before ``run_lo`` are read by no output, so zero),
from the gradient-output window ``[gy_lo, gy_hi)`` with the padding ``pad_lo`` before and
``pad_hi`` after: the input gradient of the convolution of the run with that padding, whose outputs
are exactly that window.  A part whose run or window is empty along some dim is zero."""


def _grad_span(o_lo, o_hi, size, out, kernel, stride, dilation, pad):
    """``GradPart``'s fields along one dim for the tile of outputs ``[o_lo, o_hi)``: the gradient
    positions from where the tile's first output starts reading to where the next tile's starts
    (the tensor's ends for the first and last), the outputs that read them, and the padding that
    lines those outputs up with them."""
    effk = dilation * (kernel - 1) + 1
    a = 0 if o_lo == 0 else min(max(o_lo * stride - pad, 0), size)
    b = size if o_hi == out else min(max(o_hi * stride - pad, 0), size)
    if a >= b:
        return a, b, b, 0, 0, 0, 0
    g_lo = max(0, -(-(a + pad - effk + 1) // stride))   # the first output whose reach ends in [a, b)
    g_hi = min(out, (b - 1 + pad) // stride + 1)         # one past the last that starts reading in it
    if g_lo >= g_hi:
        return a, b, b, 0, 0, 0, 0                       # no output reads these positions
    run_lo = max(a, g_lo * stride - pad)                 # before it: positions no output reads (stride > reach)
    return (a, b, run_lo, g_lo, g_hi, run_lo + pad - g_lo * stride,
            max(0, (g_hi - 1) * stride - pad + effk - b))


def input_gradient_parts(tiles, spatial, kernel, stride, dilation, pad_lo, pad_hi, n, in_channels, out_channels,
                         index_limit):
    """The input gradient of a tiled convolution (``plan_spatial_tiles``' ``tiles``) cut into one
    ``GradPart`` per tile that partitions the gradient: each part is computed whole, from the
    gradient-output window that reads it, with one-sided padding where it meets the tensor's edge,
    so the parts need no sums over halos.  Where the tiles' windows overlap, the part boundary is
    where the later tile's outputs start reading.  None where some part's run, its window (the
    tile's outputs and the halo's, over the limit where the tiles were sized by their outputs) or
    the run with its padding (what a part computes into a padded buffer when its one-sided run is
    checked or refused: ``one_sided``) is over ``index_limit`` elements: the caller then sums the
    tiles' gradients over their windows (``tiled.backward_data``)."""
    spatial, kernel, stride, dilation, pad_lo = (tuple(v) for v in (spatial, kernel, stride, dilation, pad_lo))
    out = tuple(output_size(*a) for a in zip(spatial, kernel, stride, dilation, pad_lo, pad_hi))
    parts = []
    for t in tiles:
        dims = [_grad_span(t.out_lo[d], t.out_hi[d], spatial[d], out[d], kernel[d], stride[d], dilation[d], pad_lo[d])
                for d in range(len(spatial))]
        p = GradPart(*(tuple(v[i] for v in dims) for i in range(7)))
        run = math.prod(b - a for a, b in zip(p.run_lo, p.gx_hi))
        padded = math.prod(b - a + lo + hi for a, b, lo, hi in zip(p.run_lo, p.gx_hi, p.pad_lo, p.pad_hi))
        window = math.prod(b - a for a, b in zip(p.gy_lo, p.gy_hi))
        if n * in_channels * max(run, padded if window else 0) > index_limit or n * out_channels * window > index_limit:
            return None
        parts.append(p)
    return parts


def split_or_tile(n, in_channels, out_channels, spatial, kernel, stride, dilation, pad_lo, pad_hi, max_worksize,
                  index_limit, padded=False):
    """How a call of ``n`` samples gets under ``index_limit``: ``(chunks, tiles)``.  Where whole
    samples fit, ``split.plan_batch_split``'s batch chunks and ``tiles`` None; where one sample is
    itself over the limit, one chunk per sample and the spatial tiles of one sample
    (``plan_spatial_tiles`` with n=1 and ``padded``), which every chunk runs.  Errors as those two
    raise them (a sample that no tiling brings under the limit names its sizes)."""
    in_per = in_channels * math.prod(spatial)
    out_per = out_channels * math.prod(output_size(*a) for a in zip(spatial, kernel, stride, dilation, pad_lo, pad_hi))
    if max(in_per, out_per) <= index_limit:
        return split.plan_batch_split(n, n * in_per, n * out_per, max_worksize, index_limit), None
    if n > split.MAX_CHUNKS:
        raise ValueError("a batch of %d samples each over the index limit of %d elements would need %d calls "
                         "(at most %d are planned)" % (n, index_limit, n, split.MAX_CHUNKS))
    tiles = plan_spatial_tiles(1, in_channels, out_channels, spatial, kernel, stride, dilation, pad_lo, pad_hi,
                               index_limit, padded)
    return [(s, 1) for s in range(n)], tiles
