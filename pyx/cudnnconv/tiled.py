"""Running one convolution tile by tile, in every direction (policy tier, no engine, no GPU needed).

``tiling.plan_spatial_tiles`` says which outputs each tile makes and which window of the input it
reads, with the tile's own padding.  This module runs such a plan through a caller's ``run``
function, which computes one tile's problem: a convolution of the tile's window (a view of the
input) with the tile's padding, the call's stride, dilation and groups.  It decides nothing about
engines or memory layouts: the caller's ``run`` packs a window that its engine cannot take as a view,
pads by copy where its engine takes only symmetric padding, and writes the result where it is told.
Arrays are CuPy arrays on the GPU and NumPy arrays in the CPU tests (the same code: slicing, ``+=``,
``fill`` and ``zeros``).

Copies, fills and sums over whole windows go through ``assign``, ``fill`` and ``add_into``, which
run them with the arrays' axes in the destination's memory order (largest stride first).  A
channels-last window is (N, C, D, H, W) by its axes but (N, D, H, W, C) in memory; CuPy runs an
elementwise kernel over the axes as given and merges only neighbouring axes whose strides chain, so
in the axes' order it indexes five strided dims (a 1.4e9-element window copy took 46 ms on an H200),
and in memory order it merges W with C (6.7 ms).

What each direction does with the tiles (every output element is in exactly one tile):

* forward: each output tile is written once, from its window.  A tile whose window is empty
  (outputs that read padding alone) has a convolution of zero: ``empty(y_tile, tile)`` writes it
  (default: zeros).  A bias added after the convolution is the caller's, over the whole output; a
  fused call (z shares the output's tiling) slices z by the tile ``run`` is given, and gives an
  ``empty`` that writes its epilogue of a zero convolution;
* weight gradient: the sum over tiles of each window's weight gradient with its gradient-output
  tile, accumulated in ``acc_dtype`` (float32 for the 16-bit types, as the batch split does) and
  written once at the end;
* input gradient, cut into parts (``tiling.input_gradient_parts``, ``backward_data_parts``): each
  part of the gradient computed whole from the gradient-output window that reads it, no sums;
  where the parts do not fit the limit, or for a caller that sums:
* input gradient, summed: the sum over tiles of each tile's input gradient over its window.  Adjacent
  windows overlap by the kernel's halo, and the overlaps add up as the convolution's adjoint does.
  The sum is the one the tiles make in order on a zeroed gradient, each addition for the 16-bit
  types in float32 and rounded once: an element in one window gets its term exactly, one in the
  overlap of two windows (the most there are unless tiles are shorter than the kernel's reach) one
  more rounding, of the size of the rounding each term already has; a float32 copy of a tensor
  over the index limit would cost more memory than that is worth.  It is made without zeroing or
  adding over whole windows: a part is copied where no earlier window reached, added over the
  halos alone, and zeros written where no window reaches (``backward_data``).  A transposed
  convolution is this direction of the convolution whose output is the transposed call's input.

``run`` signatures, one per direction (``pads``: one (before, after) pair per spatial dim;
``tile``: the ``tiling.Tile``):

* forward: ``run(x_window, w, y_tile, pads, tile)`` writes the convolution into ``y_tile`` (a view
  of y);
* input gradient cut into parts (``backward_data_parts``): ``run(gx_run, w, gy_window, pads,
  part)`` writes the part's gradient into ``gx_run`` (a view of gx);
* input gradient summed over windows: ``run(shape, w, gy_tile, pads, tile)`` returns the window's gradient, an array
  of ``shape`` (the gradient's batch and channels by the window) and the gradient's dtype, in any
  layout (a view of the runner's own buffer is fine: it is read before the next tile runs);
* weight gradient: ``run(x_window, gw_part, gy_tile, pads, tile)`` writes the window's weight
  gradient into ``gw_part``, an array of the weight's shape and dtype that every tile reuses:
  ``run`` overwrites it and keeps no reference to it.
"""
import itertools
import math

from cudnnconv.params.layouts import memory_order

# Block copies: a copy between two arrays of one dtype whose innermost axes (in the destination's
# memory order) are contiguous in both is a set of 2-d copies, rows of contiguous bytes at two
# pitches, which cudaMemcpy2DAsync runs at the device's copy bandwidth.  CuPy's elementwise copy of
# a window over the index limit ran at about a fifth of it on an H200 (docs/design.md).
MIN_ROW_BYTES = 512        # narrower rows: the elementwise copy
MAX_BLOCKS = 1024          # more 2-d copies than this in one assign: the elementwise copy
MAX_PITCH = 2 ** 31 - 1    # cudaMemcpy2D's limit on a pitch (and so on a row), cudaDevAttrMaxPitch


def copy_plan(shape, itemsize, dst_strides, src_strides, min_row=MIN_ROW_BYTES):
    """The copy of an array of ``shape`` between two layouts (byte strides, axes in the
    destination's memory order, as ``assign`` transposes them) as block copies: a list of
    ``(dst_offset, dst_pitch, src_offset, src_pitch, width, height)`` in bytes from each array's
    first element, each copying ``height`` rows of ``width`` contiguous bytes.  A single block with
    ``height`` 1 is one contiguous run.  None where the layouts do not allow it: the innermost
    contiguous run narrower than ``min_row`` bytes, a negative stride, rows that overlap, a pitch over
    MAX_PITCH or more than MAX_BLOCKS blocks."""
    if 0 in shape:
        return []
    width, i = itemsize, len(shape) - 1
    while i >= 0 and (shape[i] == 1 or (dst_strides[i] == width and src_strides[i] == width)):
        width *= shape[i]
        i -= 1
    if i < 0:
        return [(0, width, 0, width, width, 1)]
    height, dpitch, spitch = shape[i], dst_strides[i], src_strides[i]
    if width < min_row or dpitch < width or spitch < width or max(dpitch, spitch) > MAX_PITCH:
        return None
    outer = [(n, dst_strides[k], src_strides[k]) for k, n in enumerate(shape[:i]) if n > 1]
    if any(d < 0 or s < 0 for _, d, s in outer) or math.prod(n for n, _, _ in outer) > MAX_BLOCKS:
        return None
    blocks = []
    for index in itertools.product(*[range(n) for n, _, _ in outer]):
        d = sum(j * ds for j, (_, ds, _) in zip(index, outer))
        s_ = sum(j * ss for j, (_, _, ss) in zip(index, outer))
        blocks.append((d, dpitch, s_, spitch, width, height))
    return blocks


def _copy_blocks(dst, src, blocks):
    """Run ``copy_plan``'s blocks from CuPy array ``src`` into ``dst`` on the current stream."""
    import cupy
    rt = cupy.cuda.runtime
    stream = cupy.cuda.get_current_stream().ptr
    d0, s0 = dst.data.ptr, src.data.ptr
    for d, dpitch, s, spitch, width, height in blocks:
        if height == 1:
            rt.memcpyAsync(d0 + d, s0 + s, width, rt.memcpyDeviceToDevice, stream)
        else:
            rt.memcpy2DAsync(d0 + d, dpitch, s0 + s, spitch, width, height, rt.memcpyDeviceToDevice, stream)


def assign(dst, src):
    """``dst[...] = src`` (same shape), run over both arrays' axes in ``dst``'s memory order: as
    block copies (``copy_plan``) where both are CuPy arrays of one dtype and the layouts allow, else
    as an elementwise copy."""
    order = memory_order(dst)
    d, s = dst.transpose(order), src.transpose(order)
    if dst.dtype == src.dtype and array_module(dst) is not _numpy() and array_module(src) is not _numpy():
        blocks = copy_plan(d.shape, d.itemsize, d.strides, s.strides)
        if blocks is not None:
            _copy_blocks(d, s, blocks)
            return
    d[...] = s


def fill(a, value):
    """``a.fill(value)``, run over ``a``'s axes in its memory order."""
    a.transpose(memory_order(a)).fill(value)


def add_into(dst, src):
    """``dst += src`` (same shape), run over both arrays' axes in ``dst``'s memory order."""
    order = memory_order(dst)
    view = dst.transpose(order)
    view += src.transpose(order)


def empty_like_order(like, shape, dtype, xp):
    """A new array of ``shape`` and ``dtype`` whose axes lie in memory in ``like``'s order."""
    order = memory_order(like)
    a = xp.empty(tuple(shape[i] for i in order), dtype=dtype)
    inverse = [0] * len(order)
    for k, i in enumerate(order):
        inverse[i] = k
    return a.transpose(inverse)


def _slices(lo, hi):
    return (slice(None), slice(None)) + tuple(slice(a, b) for a, b in zip(lo, hi))


def out_slices(tile):
    """The index of ``tile``'s outputs in an array of the whole output (batch and channels whole)."""
    return _slices(tile.out_lo, tile.out_hi)


def _pads(tile):
    return tuple(zip(tile.pad_lo, tile.pad_hi))


def _empty_window(tile):
    return any(a == b for a, b in zip(tile.in_lo, tile.in_hi))


def _zeros(y_tile, tile):
    fill(y_tile, 0)


def forward(run, x, w, y, tiles, empty=_zeros):
    """Write every output tile of ``y`` from its window of ``x`` (``empty`` for a window that reads
    padding alone); returns ``y``."""
    for t in tiles:
        yt = y[out_slices(t)]
        if _empty_window(t):
            empty(yt, t)
            continue
        run(x[_slices(t.in_lo, t.in_hi)], w, yt, _pads(t), t)
    return y


MAX_FILLS = 16             # more gaps than this between an input gradient's windows: one fill of the whole


def _cuts(windows, spatial):
    """Per spatial dim, the sorted positions where some window starts or ends, with 0 and the
    dim's size: the windows cut the gradient into cells that each lie wholly inside or outside
    every window."""
    return [sorted({0, n}.union(*[(lo[d], hi[d]) for lo, hi in windows])) for d, n in enumerate(spatial)]


def _boxes(grid):
    """``grid`` (a NumPy array of cells) as boxes of equal value that cover it once: a list of
    (((start, stop) per dim, in cells), value).  A dim along which the grid varies is cut where
    its slabs change, and each run of equal slabs is taken the same way, so equal neighbours share
    a box: a tiling along one dim gives at most one box per change along it."""
    import numpy
    out = []

    def take(origin, sub):
        first = sub.flat[0]
        if (sub == first).all():
            out.append((tuple((o, o + n) for o, n in zip(origin, sub.shape)), first.item()))
            return
        for d in range(sub.ndim):
            if sub.shape[d] < 2:
                continue
            after = tuple(slice(1, None) if k == d else slice(None) for k in range(sub.ndim))
            before = tuple(slice(None, -1) if k == d else slice(None) for k in range(sub.ndim))
            differ = sub[after] != sub[before]          # slab i against slab i - 1, cell by cell
            others = tuple(k for k in range(sub.ndim) if k != d)
            changes = (numpy.flatnonzero(differ.any(axis=others) if others else differ) + 1).tolist()
            if changes:
                break
        bounds = [0] + changes + [sub.shape[d]]
        for lo, hi in zip(bounds, bounds[1:]):
            index = tuple(slice(lo, hi) if k == d else slice(None) for k in range(sub.ndim))
            take(tuple(o + (lo if k == d else 0) for k, o in enumerate(origin)), sub[index])
    take((0,) * grid.ndim, grid)
    return out


def backward_data(run, gx, w, gy, tiles):
    """``gx`` (written whole) as the sum over tiles of each tile's input gradient over its window;
    returns ``gx``.

    The windows cut the gradient into cells (``_cuts``).  A cell no window covers is zero; in the
    cells of its window that no earlier window covered, a tile's part is copied (``assign``: block
    copies where the layouts allow); where an earlier window covered a cell, the part is added
    (16-bit types: the sum taken in float32 and rounded once, as the batch split does).  Element
    for element that is the sum the tiles in order make on a zeroed gradient, with no pass over
    the whole gradient and no float32 copy of a window: only the halos, where windows overlap,
    are added.  (By value: a part's -0.0 where it is alone stays -0.0, where the sum on zeros made
    it +0.0.)"""
    import numpy
    xp = array_module(gx)
    nsp = gx.ndim - 2
    live = [t for t in tiles if not _empty_window(t)]
    cuts = _cuts([(t.in_lo, t.in_hi) for t in live], gx.shape[2:])
    at = [{v: i for i, v in enumerate(c)} for c in cuts]
    owner = numpy.full([len(c) - 1 for c in cuts], -1, dtype=numpy.int64)   # the first window over each cell
    cells = []
    for k, t in enumerate(live):
        r = tuple(slice(at[d][t.in_lo[d]], at[d][t.in_hi[d]]) for d in range(nsp))
        view = owner[r]
        view[view < 0] = k
        cells.append(r)

    def span(box, origin=(0,) * nsp):     # a box of cells as an index of gx, or of a window at origin
        return (slice(None), slice(None)) + tuple(
            slice(cuts[d][a] - o, cuts[d][b] - o) for d, ((a, b), o) in enumerate(zip(box, origin)))

    gaps = [box for box, uncovered in _boxes(owner < 0) if uncovered]
    if len(gaps) > MAX_FILLS:            # many small gaps (a stride past the kernel's reach): one fill
        fill(gx, 0)
    else:
        for box in gaps:
            fill(gx[span(box)], 0)
    for k, t in enumerate(live):
        part = run(gx.shape[:2] + tuple(b - a for a, b in zip(t.in_lo, t.in_hi)), w, gy[out_slices(t)], _pads(t), t)
        r = cells[k]
        for box, first in _boxes(owner[r] == k):
            box = tuple((a + s.start, b + s.start) for (a, b), s in zip(box, r))
            dst, src = gx[span(box)], part[span(box, t.in_lo)]
            if first:
                assign(dst, src)
            elif gx.dtype.itemsize == 2:     # float16, bfloat16: one rounding of a float32 sum
                wide = empty_like_order(gx, dst.shape, xp.float32, xp)
                assign(wide, dst)
                add_into(wide, src)
                assign(dst, wide)
            else:
                add_into(dst, src)
        del part, dst, src                   # the runner's buffer goes back before the next tile runs
    return gx


def part_is_zero(part):
    """Whether a ``tiling.GradPart`` is read by no output: its run or its window is empty."""
    return any(a == b for a, b in zip(part.run_lo, part.gx_hi)) or any(a == b for a, b in zip(part.gy_lo, part.gy_hi))


def backward_data_parts(run, gx, w, gy, parts):
    """``gx`` (written whole) from ``tiling.input_gradient_parts``' parts, which partition it: each
    part's run is computed whole by ``run(gx_run, w, gy_window, pads, part)`` into ``gx_run`` (a
    view of ``gx``), and the positions no output reads are zero.  No sums and no pass over the whole
    gradient: every element is written once (twice where a part's run starts past its own first
    positions, which are zeroed first); returns ``gx``."""
    for p in parts:
        box = gx[_slices(p.gx_lo, p.gx_hi)]
        if part_is_zero(p):
            fill(box, 0)                 # read by no output
            continue
        if p.run_lo != p.gx_lo:
            fill(box, 0)                 # the positions before the run (a stride past the kernel's reach)
        run(gx[_slices(p.run_lo, p.gx_hi)], w, gy[_slices(p.gy_lo, p.gy_hi)], tuple(zip(p.pad_lo, p.pad_hi)), p)
    return gx


def backward_weight(run, x, gw, gy, tiles, acc_dtype):
    """``gw`` (written once) as the sum over tiles of each window's weight gradient with its
    gradient-output tile, accumulated in ``acc_dtype``; returns ``gw``."""
    xp = array_module(gw)
    acc = xp.zeros(gw.shape, dtype=acc_dtype)
    accumulate_weight(run, x, gy, tiles, acc, xp.empty(gw.shape, dtype=gw.dtype))
    gw[...] = acc if acc.dtype == gw.dtype else acc.astype(gw.dtype)
    return gw


def accumulate_weight(run, x, gy, tiles, acc, part):
    """Add to ``acc`` each tile's weight gradient, which ``run`` writes into ``part`` (an array of
    the weight's shape and dtype, reused for every tile); returns ``acc``.  A caller summing more
    than one call's tiles (the samples of a batch, say) keeps one accumulator for all of them."""
    for t in tiles:
        if _empty_window(t):
            continue                    # outputs that read padding alone add nothing to the weights
        run(x[_slices(t.in_lo, t.in_hi)], part, gy[out_slices(t)], _pads(t), t)
        acc += part if part.dtype == acc.dtype else part.astype(acc.dtype)
    return acc


def _numpy():
    import numpy
    return numpy


def array_module(a):
    """The array module of ``a``: NumPy for NumPy arrays, else CuPy."""
    numpy = _numpy()
    if isinstance(a, numpy.ndarray):
        return numpy
    import cupy
    return cupy
