"""Samples over the index limit, run as spatial tiles through an engine (policy tier, beside api).

``tiling.split_or_tile`` plans a call: batch chunks where whole samples fit the index limit, else
one chunk per sample and the spatial tiles of one sample (``Tiled``, which a call plan keeps as its
chunks).  ``run`` runs a tiled plan, chunk by chunk, with ``cudnnconv.tiled`` and an engine's
``run``:

* a tile runs on its window itself where the window is packed in the plan's layout and 16-byte
  aligned (a channels-last sample cut along its outermost spatial dim), with the tile's own padding:
  on any engine where that padding is the same before and after in every dim (an inner tile, or any
  tile of a convolution without padding along the cut dims), and on the graph engine
  (``one_sided_engine``) for an edge tile too, whose padding is one-sided (``params.tile_padding``;
  such problems stay in the process's caches, never the tuning file: ``params.persistent``).  Any
  other tile's window is copied into a packed array with the tile's padding as zeros around it
  (copies and fills in memory order: ``tiled.assign``, ``tiled.fill``; the planner counts that
  padding against the limit: ``padded=True``), and run with no padding, as it is where cuDNN
  refuses the one-sided problem;
* its result is written into the output's tile in place where that tile is packed in the layout
  and 16-byte aligned (``_in_place``), else into a packed array copied into it;
* forward writes every output tile; backward-weight sums the tiles' partial gradients, and the
  samples', in float32 for the 16-bit types (``split.accumulation_dtype``);
* backward-data, on the graph engine where every part is a packed view: the gradient cut into
  parts (``tiling.input_gradient_parts``), each computed whole, in place, from the
  gradient-output window that reads it, with one-sided padding at the edges: no copies and no
  sums.  Otherwise it sums each tile's gradient over its window (``tiled.backward_data``: copied
  where a window is alone, added over the halos), the window's gradient read through a view of
  the engine's padded buffer.

A transposed call runs as the input gradient of the convolution whose input is its output; a fused
call (``conv_bias_add_relu``) gives each tile its slice of z, and writes relu(alpha * z + bias) where
a window reads padding alone.
A tiled plan is never bound to the typed path: each call runs its tiles through the engine, whose
cache holds one choice per distinct tile shape.
"""
import math

from cudnnconv import _log, one_sided, params, split, tiled, tiling, workspace
from cudnnconv.core import build
from cudnnconv.core.status import CuDNNError, CuDNNOutOfMemoryError


class Tiled(tuple):
    """The chunks of a tiled plan, ((sample, 1), ...), with ``tiles``: the tiles of one sample."""

    def __new__(cls, chunks, tiles):
        self = super().__new__(cls, chunks)
        self.tiles = tiles
        return self


def plan(x_shape, w_shape, geom, max_worksize):
    """The chunks of the forward convolution of an input of ``x_shape`` (before any 'same' end
    padding: ``geom.same_extra`` is added here, as the engine sees it), weight ``w_shape`` and
    geometry ``geom``: ``split.plan_batch_split``'s list, or a ``Tiled`` where one sample is over
    the index limit.  A weight over the limit is a ValueError naming its size: no split or tiling
    changes the weight (or its gradient)."""
    wn = math.prod(int(d) for d in w_shape)
    if wn > build.INDEX_LIMIT:
        raise ValueError("the weight %s has %d elements, over the index limit of %d elements: neither splitting "
                         "the batch nor tiling the samples brings it under (cuDNN indexes each tensor with "
                         "32 bits)" % (tuple(w_shape), wn, build.INDEX_LIMIT))
    spatial = tuple(s + e for s, e in zip(x_shape[2:], geom.same_extra))
    chunks, tiles = tiling.split_or_tile(x_shape[0], x_shape[1], w_shape[0], spatial, tuple(w_shape[2:]),
                                         geom.stride, geom.dilation, geom.padding, geom.padding, max_worksize,
                                         build.INDEX_LIMIT, padded=True)
    return chunks if tiles is None else Tiled(chunks, tiles)


def is_tiled(chunks):
    return isinstance(chunks, Tiled)


def _relu_epilogue(z, alpha, bias):
    """relu(alpha * z + bias), bias over the channel dim, computed in float32 for the 16-bit types."""
    xp = tiled.array_module(z)
    wide = xp.float32 if z.dtype.itemsize == 2 else z.dtype
    b = bias.astype(wide).reshape((1, -1) + (1,) * (z.ndim - 2))
    return xp.maximum(alpha * z.astype(wide) + b, 0).astype(z.dtype)


def _tile_geom(geom):
    zeros = (0,) * geom.nsp
    return geom._replace(padding=zeros, same_extra=zeros)


def _padded(a, pads, layout):
    """A packed copy of ``a`` in ``layout`` with ``pads`` zeros before and after each spatial dim."""
    shape = a.shape[:2] + tuple(s + lo + hi for s, (lo, hi) in zip(a.shape[2:], pads))
    out = params.empty_in_layout(shape, a.dtype, layout)
    if any(lo or hi for lo, hi in pads):
        tiled.fill(out, 0)
    tiled.assign(out[_interior(a.shape, pads)], a)
    return out


def _packed(a, layout):
    """``a`` itself where it is packed in ``layout``, else a packed copy (``params.to_layout``, its
    copy run in memory order)."""
    if params.has_layout(a, layout):
        return a
    out = params.empty_in_layout(a.shape, a.dtype, layout)
    tiled.assign(out, a)
    return out


def _in_place(a, layout):
    """Whether an engine can take the tile or window ``a`` itself: packed in ``layout`` (a
    channels-last sample cut along its outermost spatial dim, or any tile of a one-channel NCHW
    sample cut so) and 16-byte aligned, as a fresh allocation is, so that the graph engine's plans,
    which it keys on alignment, are the ones a packed buffer would get."""
    data = a.data
    ptr = data.ptr if hasattr(data, "ptr") else a.ctypes.data      # CuPy, NumPy
    return ptr % 16 == 0 and params.has_layout(a, layout)


def _interior(shape, pads):
    return (slice(None), slice(None)) + tuple(slice(lo, lo + s) for s, (lo, _) in zip(shape[2:], pads))


def one_sided_engine(eng):
    """The engine that takes a tile's one-sided padding (``params.tile_padding``), so that every
    tile runs on views: the graph engine, named or as engine='auto''s first, else None (the legacy
    engine has symmetric padding only)."""
    first = getattr(eng, "first", eng)
    return first if getattr(first, "ONE_SIDED_PADDING", False) else None


def run(eng, op, plan, x, w, y, opts, z=None, bias=None, alpha=1.0):
    """Run ``op`` ('forward', 'fused', 'backward_data' or 'backward_filter') over a tiled plan's
    chunks, the arrays in forward roles (x: input or its gradient, w: weight or its gradient, y:
    output or its gradient; a fused call's ``z`` has the output's shape, ``bias`` is a vector and
    ``alpha`` its scale).  Returns the choices that ran, one per tile run."""
    tiles, layout, geom = plan.chunks.tiles, plan.layout, _tile_geom(plan.geom)
    one = one_sided_engine(eng)
    # the kernel's extent per dim (w is the weight or its gradient): how far a padding error reaches
    reach = tuple(d * (k - 1) + 1 for k, d in zip(w.shape[2:], plan.geom.dilation))
    choices = []

    def engine(xb, wb, yb, pad=None, via=eng, record=True, **kw):
        g = geom if pad is None else geom._replace(padding=pad)
        choice = via.run(op, xb, wb, yb, g, opts, layout, plan.device, plan.repro, **kw)
        if record:                      # (a check's second run is not one of the call's runs)
            choices.append(choice)
        if via is not eng and hasattr(eng, "ran_on"):
            eng.ran_on(via.ENGINE)      # engine='auto': last_call() names the engine that ran
        return choice

    def problem(xb, wb, pad):
        """The one-sided engine's key of a tile with padding ``pad`` (``params.make_key``, less the
        alignments)."""
        return params.make_key(op, one.ENGINE, plan.device, params.cudnn_dtype(xb.dtype), xb.shape, wb.shape, layout,
                               geom._replace(padding=pad), opts)

    def checked(prob, result, run_one_sided, run_copy, slabs=()):
        """Write ``result`` by ``run_one_sided()`` where ``prob`` may run one-sided, checked against
        ``run_copy(into)`` the first time a plan runs it, whole and over ``slabs``
        (``one_sided``); else by ``run_copy``."""
        capturing = tiled.array_module(result).__name__ != "numpy" and workspace.current_stream_capturing()
        if one_sided.refused(prob) or (capturing and not one_sided.trusted(prob)):
            return run_copy(result)
        try:
            choice = run_one_sided()
        except CuDNNOutOfMemoryError:
            raise
        except CuDNNError as e:
            _log.debug("tiled %s: one-sided padding refused (%s); copying the window", op, e.name)
            one_sided.refuse(prob, "cuDNN: " + e.name)
            return run_copy(result)
        tag = getattr(choice, "tag", choice)
        if capturing or one_sided.trusted(prob, tag):
            return
        want = params.empty_in_layout(result.shape, result.dtype, layout)
        copy_choice = run_copy(want, record=False)
        if not one_sided.judge(prob, tag, result, want, slabs):
            tiled.assign(result, want)
            choices[-1] = copy_choice   # what the result now comes from

    def on_window(xw, pads, wb, yb, **kw):
        """Run the tile whose window of x is ``xw``: the window itself with its padding where it is
        packed and aligned and the padding symmetric, or one-sided (checked) on an engine that
        takes that; else a padded copy of the window run with none."""
        if _in_place(xw, layout):
            pad = params.tile_padding(pads)     # ints where the same before and after in every dim
            if not params.one_sided(pad):
                return engine(xw, wb, yb, pad, **kw)
            if one is not None:
                wgrad = op == "backward_filter"         # the result: the weight's part, else y's tile
                result = wb if wgrad else yb

                def run_copy(into, record=True):
                    xb = _padded(xw, pads, layout)
                    if wgrad:
                        return engine(xb, into, yb, record=record, **kw)
                    return engine(xb, wb, into, record=record, **kw)
                # a weight gradient is compared whole; an output tile over its one-sided edges too
                slabs = () if wgrad else one_sided.edge_slabs(yb.shape, pads, reach)
                return checked(problem(xw, wb, pad), result, lambda: engine(xw, wb, yb, pad, via=one, **kw),
                               run_copy, slabs)
        engine(_padded(xw, pads, layout), wb, yb, **kw)

    if op in ("forward", "fused"):
        for s, _ in plan.chunks:
            zs = None if z is None else z[s:s + 1]

            def fwd(xw, w_, yt, pads, tile, zs=zs):
                yb = yt if _in_place(yt, layout) else params.empty_in_layout(yt.shape, yt.dtype, layout)
                kw = {} if op == "forward" else dict(
                    z=_packed(zs[tiled.out_slices(tile)], layout), bias=bias, alpha=alpha)
                on_window(xw, pads, w_, yb, **kw)
                if yb is not yt:
                    tiled.assign(yt, yb)

            def padding_alone(yt, tile, zs=zs):
                if op == "forward":
                    tiled.fill(yt, 0)
                else:                   # relu(alpha * z + bias) over a convolution of zero
                    tiled.assign(yt, _relu_epilogue(zs[tiled.out_slices(tile)], alpha, bias))
            tiled.forward(fwd, x[s:s + 1], w, y[s:s + 1], tiles, padding_alone)
    elif op == "backward_data":
        parts = _gradient_parts(plan, x, w) if one is not None else None

        def part_dgrad(gx_run, w_, gy_window, pads, part):
            pad = params.tile_padding(pads)
            if not params.one_sided(pad):
                return engine(gx_run, w_, gy_window, pad)

            def run_copy(into, record=True):     # the padded run's gradient, its interior copied out
                interior, choice = _padded_dgrad(engine, into.shape, pads, into.dtype, layout, w_, gy_window, record)
                tiled.assign(into, interior)
                return choice
            checked(problem(gx_run, w_, pad), gx_run,
                    lambda: engine(gx_run, w_, gy_window, pad, via=one), run_copy,
                    one_sided.edge_slabs(gx_run.shape, pads, reach))

        for s, _ in plan.chunks:
            if parts is None or not _parts_in_place(x[s:s + 1], y[s:s + 1], parts, layout):
                tiled.backward_data(_summed_dgrad(engine, x, layout), x[s:s + 1], w, y[s:s + 1], tiles)
            else:
                tiled.backward_data_parts(part_dgrad, x[s:s + 1], w, y[s:s + 1], parts)
    elif op == "backward_filter":
        acc = tiled.array_module(w).zeros(w.shape, dtype=split.accumulation_dtype(w.dtype))
        part = params.empty_in_layout(w.shape, w.dtype, layout)

        def wgrad(xw, gw_part, gyt, pads, tile):
            on_window(xw, pads, gw_part, _packed(gyt, layout))
        for s, _ in plan.chunks:        # every sample's tiles into one accumulator
            tiled.accumulate_weight(wgrad, x[s:s + 1], y[s:s + 1], tiles, acc, part)
        w[...] = acc if acc.dtype == w.dtype else acc.astype(w.dtype)
    else:
        raise ValueError("tiled_calls.run: unknown op %r" % (op,))
    return choices


def _gradient_parts(plan, gx, w):
    """The input gradient's parts (``tiling.input_gradient_parts``) of one sample of the plan, or
    None where they do not fit the limit."""
    g = plan.geom                       # (the backward calls have no 'same' end padding)
    return tiling.input_gradient_parts(plan.chunks.tiles, gx.shape[2:], w.shape[2:], g.stride, g.dilation,
                                       g.padding, g.padding, 1, gx.shape[1], w.shape[0], build.INDEX_LIMIT)


def _parts_in_place(gx, gy, parts, layout):
    """Whether every part's run and gradient-output window are packed and aligned views (a
    channels-last sample cut along its outermost spatial dim), so the parts need no copy at all;
    otherwise the sums over windows, which copy every window once anyway, are no slower."""
    for p in parts:
        if tiled.part_is_zero(p):
            continue
        if not (_in_place(gx[tiled._slices(p.run_lo, p.gx_hi)], layout)
                and _in_place(gy[tiled._slices(p.gy_lo, p.gy_hi)], layout)):
            return False
    return True


def _summed_dgrad(engine, gx, layout):
    def dgrad(shape, w_, gyt, pads, tile):
        pad = params.tile_padding(pads)
        if not params.one_sided(pad):   # the window's gradient, with its padding
            gxw = params.empty_in_layout(shape, gx.dtype, layout)
            engine(gxw, w_, _packed(gyt, layout), pad)
            return gxw
        # the padded window's gradient; tiled.backward_data reads its interior, a view
        return _padded_dgrad(engine, shape, pads, gx.dtype, layout, w_, _packed(gyt, layout))[0]
    return dgrad


def _padded_dgrad(engine, shape, pads, dtype, layout, w, gy, record=True):
    """The input gradient of a window of ``shape`` with padding ``pads``, computed with none into a
    buffer padded by them: (a view of the buffer's interior, the engine's choice)."""
    padded = shape[:2] + tuple(n + lo + hi for n, (lo, hi) in zip(shape[2:], pads))
    gxb = params.empty_in_layout(padded, dtype, layout)
    choice = engine(gxb, w, gy, record=record)
    return gxb[_interior(shape, pads)], choice
