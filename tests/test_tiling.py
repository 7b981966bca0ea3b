"""cudnnconv.tiling: the spatial tiling plan, proved by brute force on small geometries (no GPU).

For drawn geometries (1-3 spatial dims, kernel, stride, dilation, asymmetric padding) and index
limits small enough to force tiling: the output tiles cover the output exactly once; every output
element's receptive field inside the tensor lies in its tile's window, and the tile's window with
its padding, run with the convolution's stride and dilation, reads exactly the positions the whole
convolution reads for it (the strides line up); every window and tile is within the limit.  Then
the convolution itself, in float64 NumPy: the forward assembled from tiles, the weight gradient
summed over tiles and the input gradient summed over overlapping windows equal the untiled ones.
"""
import ctypes
import math

import numpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cudnnconv import params, tiled, tiling


# ---------------------------------------------------------------------------
# The suite's float64 reference (tests/gpu/reference.py: NumPy arrays work too), with a tile's own
# (before, after) padding per dim
# ---------------------------------------------------------------------------

def _load_reference():
    import importlib.util
    import os
    spec = importlib.util.spec_from_file_location(
        "reference", os.path.join(os.path.dirname(__file__), "gpu", "reference.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ref = _load_reference()


def conv(x, w, stride, dilation, pads):
    return ref.conv(x, w, None, stride, pads, dilation)


def conv_backward_input(x_shape, w, gy, stride, dilation, pads):
    return ref.conv_backward_input(x_shape, w, gy, stride, pads, dilation)


def conv_backward_weight(x, w_shape, gy, stride, dilation, pads):
    return ref.conv_backward_weight(x, w_shape, gy, stride, pads, dilation)


def test_the_reference_takes_a_padding_pair_per_dim():
    """Pairs equal to symmetric padding give the same results; asymmetric ones equal the input
    padded by hand and convolved with none."""
    rng = numpy.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 2))
    y = conv(x, w, (2, 1), (1, 2), ((1, 1), (2, 2)))
    numpy.testing.assert_allclose(y, ref.conv(x, w, None, (2, 1), (1, 2), (1, 2)), rtol=1e-12, atol=1e-12)
    gy = rng.standard_normal(y.shape)
    numpy.testing.assert_allclose(conv_backward_input(x.shape, w, gy, (2, 1), (1, 2), ((1, 1), (2, 2))),
                                  ref.conv_backward_input(x.shape, w, gy, (2, 1), (1, 2), (1, 2)), atol=1e-12)
    numpy.testing.assert_allclose(conv_backward_weight(x, w.shape, gy, (2, 1), (1, 2), ((1, 1), (2, 2))),
                                  ref.conv_backward_weight(x, w.shape, gy, (2, 1), (1, 2), (1, 2)), atol=1e-12)
    pads = ((2, 0), (0, 3))
    numpy.testing.assert_allclose(conv(x, w, (1, 2), (2, 1), pads),
                                  ref.conv(numpy.pad(x, ((0, 0), (0, 0)) + pads), w, None, (1, 2), 0, (2, 1)),
                                  rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError):
        ref.pads_for(((1, 1),), (3, 2), 1)                 # one pair for two dims


# ---------------------------------------------------------------------------
# Geometries
# ---------------------------------------------------------------------------

@st.composite
def geometries(draw):
    nsp = draw(st.integers(1, 3))
    spatial = tuple(draw(st.integers(1, 9 if nsp < 3 else 6)) for _ in range(nsp))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(nsp))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nsp))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(nsp))
    pad_lo = tuple(draw(st.integers(0, 4)) for _ in range(nsp))
    pad_hi = tuple(draw(st.integers(0, 4)) for _ in range(nsp))
    out = tuple(tiling.output_size(*a) for a in zip(spatial, kernel, stride, dilation, pad_lo, pad_hi))
    if min(out) < 1:
        pad_hi = tuple(p + dilation[i] * (kernel[i] - 1) for i, p in enumerate(pad_hi))   # give it an output
        out = tuple(tiling.output_size(*a) for a in zip(spatial, kernel, stride, dilation, pad_lo, pad_hi))
    n, cin, cout = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    whole = max(n * cin * math.prod(spatial), n * cout * math.prod(out))
    # the smallest limit one output element fits in, up to the whole: every depth of tiling
    least = max(n * cin * math.prod(min(s, d * (k - 1) + 1) for s, k, d in zip(spatial, kernel, dilation)),
                n * cout)
    limit = draw(st.integers(least, max(least, whole)))
    return dict(n=n, in_channels=cin, out_channels=cout, spatial=spatial, kernel=kernel, stride=stride,
                dilation=dilation, pad_lo=pad_lo, pad_hi=pad_hi, index_limit=limit), out


def _plan(g):
    return tiling.plan_spatial_tiles(**g)


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(geometries())
def test_tiles_cover_the_output_once_read_their_whole_receptive_field_and_line_up(case):
    g, out = case
    tiles = _plan(g)
    count = numpy.zeros(out, dtype=numpy.int64)
    for t in tiles:
        count[tuple(slice(a, b) for a, b in zip(t.out_lo, t.out_hi))] += 1
        for d in range(len(out)):
            s, k, st_, dl = g["spatial"][d], g["kernel"][d], g["stride"][d], g["dilation"][d]
            pl = g["pad_lo"][d]
            assert 0 <= t.out_lo[d] < t.out_hi[d] <= out[d]
            assert t.pad_lo[d] >= 0 and t.pad_hi[d] >= 0 and t.in_lo[d] <= t.in_hi[d]
            if t.in_lo[d] < t.in_hi[d]:
                assert 0 <= t.in_lo[d] < t.in_hi[d] <= s
            # the tile, run alone on its padded window, makes exactly its outputs ...
            assert tiling.output_size(t.in_hi[d] - t.in_lo[d], k, st_, dl, t.pad_lo[d], t.pad_hi[d]) \
                == t.out_hi[d] - t.out_lo[d]
            for o in range(t.out_lo[d], t.out_hi[d]):
                for tap in range(k):
                    p = o * st_ - pl + tap * dl                            # what the whole conv reads
                    local = (o - t.out_lo[d]) * st_ + tap * dl             # ... and the tile, in its padded window
                    assert t.in_lo[d] - t.pad_lo[d] + local == p           # the strides line up
                    if 0 <= p < s:
                        assert t.in_lo[d] <= p < t.in_hi[d]                # the receptive field is in the window
                    else:
                        assert not (t.in_lo[d] <= p < t.in_hi[d])          # padding stays padding
        win = math.prod(b - a for a, b in zip(t.in_lo, t.in_hi))
        assert g["n"] * g["in_channels"] * win <= g["index_limit"]
        assert g["n"] * g["out_channels"] * math.prod(b - a for a, b in zip(t.out_lo, t.out_hi)) <= g["index_limit"]
    assert (count == 1).all()


def _runners(g):
    """The three directions' tile runners of cudnnconv.tiled, on the float64 reference."""
    s, d = g["stride"], g["dilation"]

    def fwd(xw, w, yt, pads, tile):
        yt[...] = conv(xw, w, s, d, pads)

    def dgrad(shape, w, gyt, pads, tile):
        return conv_backward_input(shape, w, gyt, s, d, pads)

    def wgrad(xw, part, gyt, pads, tile):
        part[...] = conv_backward_weight(xw, part.shape, gyt, s, d, pads)
    return fwd, dgrad, wgrad


@SETTINGS
@given(geometries())
def test_padded_tiles_hold_their_padding_within_the_limit(case):
    """With padded=True a tile's window with its padding (what a caller copying it with zeros hands
    its engine) is within the limit; where no tiling can do that, the refusal says so."""
    g, out = case
    least = max(g["n"] * g["in_channels"] * math.prod(d * (k - 1) + 1 for k, d in zip(g["kernel"], g["dilation"])),
                g["n"] * g["out_channels"])
    if g["index_limit"] < least:
        with pytest.raises(ValueError, match="no spatial tiling brings it under"):
            tiling.plan_spatial_tiles(**g, padded=True)
        return
    tiles = tiling.plan_spatial_tiles(**g, padded=True)
    count = numpy.zeros(out, dtype=numpy.int64)
    for t in tiles:
        count[tuple(slice(a, b) for a, b in zip(t.out_lo, t.out_hi))] += 1
        padded = math.prod(b - a + lo + hi for a, b, lo, hi in zip(t.in_lo, t.in_hi, t.pad_lo, t.pad_hi))
        assert g["n"] * g["in_channels"] * padded <= g["index_limit"]
        assert g["n"] * g["out_channels"] * math.prod(b - a for a, b in zip(t.out_lo, t.out_hi)) <= g["index_limit"]
    assert (count == 1).all()


@SETTINGS
@given(geometries(), st.integers(0, 2 ** 32 - 1))
def test_tiled_convolutions_equal_the_whole_in_every_direction(case, seed):
    """cudnnconv.tiled runs the plan: forward written tile by tile, the weight gradient summed over
    tiles, the input gradient summed over overlapping windows; each equals the untiled one, and
    every element of every result is written (the results start poisoned)."""
    g, out = case
    rng = numpy.random.default_rng(seed)
    n, cin, cout = g["n"], g["in_channels"], g["out_channels"]
    x = rng.standard_normal((n, cin) + g["spatial"])
    w = rng.standard_normal((cout, cin) + g["kernel"])
    pads = tuple(zip(g["pad_lo"], g["pad_hi"]))
    y = conv(x, w, g["stride"], g["dilation"], pads)
    gy = rng.standard_normal(y.shape)
    gx = conv_backward_input(x.shape, w, gy, g["stride"], g["dilation"], pads)
    gw = conv_backward_weight(x, w.shape, gy, g["stride"], g["dilation"], pads)
    fwd, dgrad, wgrad = _runners(g)
    tiles = _plan(g)
    ty = tiled.forward(fwd, x, w, numpy.full(y.shape, numpy.nan), tiles)
    tgx = tiled.backward_data(dgrad, numpy.full(x.shape, numpy.nan), w, gy, tiles)
    tgw = tiled.backward_weight(wgrad, x, numpy.full(w.shape, numpy.nan), gy, tiles, numpy.float64)
    numpy.testing.assert_allclose(ty, y, rtol=1e-12, atol=1e-12)
    numpy.testing.assert_allclose(tgx, gx, rtol=1e-11, atol=1e-11)
    numpy.testing.assert_allclose(tgw, gw, rtol=1e-11, atol=1e-11)


def _channels_last(a):
    """``a``'s values in an array whose channels lie innermost in memory."""
    perm = (0,) + tuple(range(2, a.ndim)) + (1,)
    out = numpy.empty(tuple(a.shape[p] for p in perm), a.dtype).transpose(numpy.argsort(perm))
    out[...] = a
    return out


def _summed_on_zeros(run, gx, w, gy, tiles):
    """The input gradient as tiled.backward_data summed it before it added only the halos: every
    tile's part added over its whole window on a zeroed gradient, in tile order (16-bit types: each
    addition in float32, rounded once).  The reference the overlap-only sum must equal element for
    element."""
    gx[...] = 0
    for t in tiles:
        if any(a == b for a, b in zip(t.in_lo, t.in_hi)):
            continue
        part = run(gx.shape[:2] + tuple(b - a for a, b in zip(t.in_lo, t.in_hi)), w, gy[tiled.out_slices(t)],
                   tuple(zip(t.pad_lo, t.pad_hi)), t)
        sl = (slice(None), slice(None)) + tuple(slice(a, b) for a, b in zip(t.in_lo, t.in_hi))
        if gx.dtype.itemsize == 2:
            gx[sl] = (gx[sl].astype(numpy.float32) + part.astype(numpy.float32)).astype(gx.dtype)
        else:
            gx[sl] += part
    return gx


@SETTINGS
@given(geometries(), st.sampled_from([numpy.float16, numpy.float32]), st.integers(0, 2 ** 32 - 1), st.booleans(),
       st.booleans())
def test_the_input_gradient_adds_only_where_windows_overlap_and_equals_the_sum_on_zeros(case, dtype, seed, padded,
                                                                                     last):
    """tiled.backward_data copies each part where no earlier window reached and adds it where one
    did; on parts of random values (a window's own, seeded by the tile) that equals, element for
    element, the sum of every part over its whole window on a zeroed gradient, in tile order, with
    the 16-bit sums rounded as that sum rounds them, however many windows overlap; and every
    element is written (the gradient starts poisoned)."""
    g, out = case
    if padded:                           # as tiled_calls plans (a window's padding counts too)
        least = g["n"] * g["in_channels"] * math.prod(d * (k - 1) + 1 for k, d in zip(g["kernel"], g["dilation"]))
        g["index_limit"] = max(g["index_limit"], least, g["n"] * g["out_channels"])
    tiles = tiling.plan_spatial_tiles(**g, padded=padded)
    shape = (g["n"], g["in_channels"]) + g["spatial"]
    layout = _channels_last if last else (lambda a: a)

    def run(shape, w, gyt, pads, tile):
        rng = numpy.random.default_rng([seed] + list(tile.in_lo))
        part = rng.standard_normal(shape).astype(dtype)
        part[rng.random(shape) < 0.05] = -0.0                # signed zeros too
        return layout(part)
    gy = numpy.zeros((g["n"], g["out_channels"]) + out)
    got = tiled.backward_data(run, layout(numpy.full(shape, numpy.nan, dtype)), None, gy, tiles)
    want = _summed_on_zeros(run, numpy.full(shape, numpy.nan, dtype), None, gy, tiles)
    assert not numpy.isnan(got).any()
    bits = numpy.uint16 if dtype == numpy.float16 else numpy.uint32
    # bit for bit, but for the sign of a zero (a part's -0.0 alone is copied; on zeros it became +0.0)
    numpy.testing.assert_array_equal(numpy.ascontiguousarray(got + dtype(0)).view(bits),
                                     numpy.ascontiguousarray(want + dtype(0)).view(bits))


@given(st.integers(1, 3).flatmap(lambda nd: st.lists(st.integers(1, 4), min_size=nd, max_size=nd)),
       st.integers(0, 2 ** 32 - 1), st.integers(1, 3))
def test_boxes_cover_a_grid_once_with_each_cells_value(shape, seed, values):
    """tiled._boxes: every cell of the grid in exactly one box, whose value is the cell's; a grid
    that varies along one dim only has one box per run of equal values along it."""
    grid = numpy.random.default_rng(seed).integers(0, values, shape)
    seen = numpy.zeros(shape, numpy.int64)
    for box, value in tiled._boxes(grid):
        index = tuple(slice(a, b) for a, b in box)
        assert (grid[index] == value).all()
        seen[index] += 1
    assert (seen == 1).all()
    line = numpy.random.default_rng(seed).integers(0, values, shape[0])
    along = numpy.broadcast_to(line.reshape((-1,) + (1,) * (len(shape) - 1)), shape)
    runs = 1 + int((line[1:] != line[:-1]).sum())
    assert len(tiled._boxes(along)) == runs


@pytest.mark.parametrize("max_fills", [0, 1000])
def test_gaps_no_window_reaches_are_zero_filled_one_by_one_or_at_once(monkeypatch, max_fills):
    """A stride past the kernel's reach leaves inputs no window reads (their gradient is zero):
    filled gap by gap, or with one fill of the whole gradient where there are more than MAX_FILLS
    gaps; either way the gradient equals the reference and is written whole."""
    monkeypatch.setattr(tiled, "MAX_FILLS", max_fills)
    g = _g(n=1, in_channels=1, out_channels=1, spatial=(20,), kernel=(1,), stride=(3,), dilation=(1,),
           pad_lo=(0,), pad_hi=(0,), index_limit=3)
    tiles = _plan(g)
    owner = numpy.zeros(20, int)
    for t in tiles:
        owner[t.in_lo[0]:t.in_hi[0]] += 1
    assert (owner == 0).sum() >= 2                               # gaps between the windows
    fills = []
    fill = tiled.fill
    monkeypatch.setattr(tiled, "fill", lambda a, v: (fills.append(a.shape), fill(a, v)))
    rng = numpy.random.default_rng(2)
    w, gy = rng.standard_normal((1, 1, 1)), rng.standard_normal((1, 1, 7))
    fwd, dgrad, wgrad = _runners(g)
    gx = tiled.backward_data(dgrad, numpy.full((1, 1, 20), numpy.nan), w, gy, tiles)
    numpy.testing.assert_allclose(gx, conv_backward_input((1, 1, 20), w, gy, (3,), (1,), ((0, 0),)), atol=1e-12)
    runs, n = [], 0
    for c in list(owner) + [1]:                                  # the gaps: runs of inputs no window reads
        if c == 0:
            n += 1
        elif n:
            runs.append((1, 1, n))
            n = 0
    assert fills == ([(1, 1, 20)] if max_fills == 0 else runs)


def test_the_input_gradient_of_two_tiles_adds_over_the_halo_alone(monkeypatch):
    """A gradient tiled in two along its depth: each part copied once where it is alone, the second
    added over the depth the two windows share, and nothing over the whole gradient (no fill)."""
    g = _g(n=1, in_channels=2, out_channels=2, spatial=(12, 3), kernel=(3, 3), pad_lo=(1, 1), pad_hi=(1, 1),
           index_limit=2 * 8 * 3)
    tiles = _plan(g)
    assert len(tiles) == 2
    overlap = tiles[0].in_hi[0] - tiles[1].in_lo[0]
    assert overlap == 2
    copied, added, filled = [], [], []
    assign, add_into, fill = tiled.assign, tiled.add_into, tiled.fill
    monkeypatch.setattr(tiled, "assign", lambda d, s_: (copied.append((d.shape, d.dtype, s_.dtype)), assign(d, s_)))
    monkeypatch.setattr(tiled, "add_into", lambda d, s_: (added.append(d.shape), add_into(d, s_)))
    monkeypatch.setattr(tiled, "fill", lambda a, v: (filled.append(a.shape), fill(a, v)))
    rng = numpy.random.default_rng(1)
    w = rng.standard_normal((2, 2, 3, 3))
    gy = rng.standard_normal((1, 2, 12, 3))
    fwd, dgrad, wgrad = _runners(g)
    gx = tiled.backward_data(lambda *a: dgrad(*a).astype(numpy.float16),
                             numpy.full((1, 2, 12, 3), numpy.nan, numpy.float16), w, gy, tiles)
    assert filled == []
    depth0 = tiles[0].in_hi[0] - tiles[0].in_lo[0]
    assert copied[0] == ((1, 2, depth0, 3), numpy.float16, numpy.float16)        # the first part, whole
    assert added == [(1, 2, overlap, 3)]                                         # the halo, in float32
    assert copied[-1] == ((1, 2, tiles[1].in_hi[0] - tiles[0].in_hi[0], 3), numpy.float16, numpy.float16)
    exact = conv_backward_input((1, 2, 12, 3), w, gy, (1, 1), (1, 1), ((1, 1), (1, 1)))
    numpy.testing.assert_allclose(gx.astype(numpy.float64), exact, rtol=2e-3, atol=2e-3)


def test_tiled_runs_each_tile_once_on_views_of_its_window():
    g = _g(spatial=(12, 7), index_limit=4 * 5 * 9)
    tiles = _plan(g)
    assert len(tiles) > 2
    x = numpy.arange(4 * 12 * 7, dtype=numpy.float64).reshape(1, 4, 12, 7)
    w = numpy.ones((4, 4, 3, 3))
    seen = []

    def fwd(xw, w_, yt, pads, tile):
        assert tile is t and numpy.shares_memory(xw, x)
        assert xw.shape[2:] == tuple(b - a for a, b in zip(t.in_lo, t.in_hi))
        assert yt.shape[2:] == tuple(b - a for a, b in zip(t.out_lo, t.out_hi))
        seen.append(pads)
        yt[...] = conv(xw, w_, (1, 1), (1, 1), pads)
    for t in tiles:                  # each tile alone: its window is a view of x, its pads are the tile's
        tiled.forward(fwd, x, w, numpy.zeros((1, 4, 12, 7)), [t])
    assert seen == [tuple(zip(t.pad_lo, t.pad_hi)) for t in tiles]
    # interior tiles pad nothing along the tiled dim; the edges have the convolution's padding
    assert seen[0][0] == (1, 0) and seen[-1][0] == (0, 1) and all(p[0] == (0, 0) for p in seen[1:-1])


def test_tiled_weight_gradient_accumulates_in_the_wider_dtype():
    """16-bit parts summed in float16 lose what a float32 sum keeps: 64 tiles of one row each, every
    part 1 + 3 * 2**-10 (exact in float16), sum 64 + 3 * 2**-4 (exact in float16 too).  A float16
    running sum rounds away the small part of each term once its spacing outgrows it and ends at
    64.0625; the float32 accumulator gives the sum exactly."""
    g = _g(n=1, in_channels=1, out_channels=1, spatial=(64, 1), kernel=(1, 1), pad_lo=(0, 0), pad_hi=(0, 0),
           index_limit=1)
    tiles = _plan(g)
    assert len(tiles) == 64
    x = numpy.ones((1, 1, 64, 1), dtype=numpy.float16)
    gy = numpy.ones((1, 1, 64, 1), dtype=numpy.float16)
    term = numpy.float16(1 + 3 * 2 ** -10)

    def wgrad(xw, part, gyt, pads, tile):
        part[...] = term
    got = tiled.backward_weight(wgrad, x, numpy.empty((1, 1, 1, 1), numpy.float16), gy, tiles, numpy.float32)
    want = numpy.float16(64 + 3 * 2 ** -4)
    assert got.dtype == numpy.float16 and got[0, 0, 0, 0] == want
    narrow = tiled.backward_weight(wgrad, x, numpy.empty((1, 1, 1, 1), numpy.float16), gy, tiles, numpy.float16)
    assert narrow[0, 0, 0, 0] != want                    # the float16 sum is the one that loses


@st.composite
def _strided_pair(draw):
    """(dst, src): two NumPy arrays of one shape (now and then with an empty dim), each a slice of a
    larger array whose axes lie in memory in a drawn order (as a channels-last window lies in a
    channels-last tensor), some axes of either now and then reversed (negative strides)."""
    nd = draw(st.integers(1, 5))
    shape = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    if draw(st.integers(0, 9)) == 0:
        k = draw(st.integers(0, nd - 1))
        shape = shape[:k] + (0,) + shape[k + 1:]

    def array(seed):
        order = draw(st.permutations(range(nd)))
        extra = tuple(draw(st.integers(0, 2)) for _ in range(nd))
        base = numpy.random.default_rng(seed).standard_normal(tuple(shape[i] + extra[i] for i in order))
        whole = base.transpose(numpy.argsort(order))
        lo = tuple(draw(st.integers(0, e)) for e in extra)
        view = whole[tuple(slice(a, a + n) for a, n in zip(lo, shape))]
        if draw(st.integers(0, 4)) == 0:
            view = view[tuple(slice(None, None, -1) if draw(st.booleans()) else slice(None) for _ in range(nd))]
        return view
    return array(draw(st.integers(0, 2 ** 32 - 1))), array(draw(st.integers(0, 2 ** 32 - 1)))


@SETTINGS
@given(_strided_pair())
def test_memory_order_copies_fills_and_sums_equal_the_plain_ones(pair):
    """tiled.assign, fill and add_into write what ``dst[...] = src``, ``fill`` and ``+=`` write, on
    views of any memory order, and nothing outside ``dst``; empty_like_order lays its axes out in
    the order of the array it copies."""
    dst, src = pair
    base = dst.base
    for op, plain in ((lambda d, s: tiled.assign(d, s), lambda d, s: d.__setitem__(Ellipsis, s)),
                      (lambda d, s: tiled.add_into(d, s), lambda d, s: d.__iadd__(s)),
                      (lambda d, s: tiled.fill(d, 2.5), lambda d, s: d.fill(2.5))):
        before = base.copy()
        plain(dst, src)
        want_base = base.copy()
        base[...] = before
        op(dst, src)
        numpy.testing.assert_array_equal(base, want_base)
    like = dst
    made = tiled.empty_like_order(like, like.shape, numpy.float32, numpy)
    assert made.shape == like.shape and made.dtype == numpy.float32
    if like.size:                      # an empty array's strides say nothing of a memory order
        big = [i for i in range(like.ndim) if like.shape[i] > 1]
        assert sorted(big, key=lambda i: -made.strides[i]) == sorted(big, key=lambda i: -abs(like.strides[i]))


def _run_blocks(dst, src, blocks):
    """``copy_plan``'s blocks run on the host, byte for byte, as cudaMemcpy2DAsync runs them; a row
    outside either array's buffer fails the test before it is copied."""
    d0, s0 = dst.ctypes.data, src.ctypes.data

    def inside(arr, addr, n):
        lo = arr.base.ctypes.data
        return lo <= addr and addr + n <= lo + arr.base.nbytes
    for d, dpitch, s, spitch, width, height in blocks:
        for r in range(height):
            to, frm = d0 + d + r * dpitch, s0 + s + r * spitch
            assert inside(dst, to, width) and inside(src, frm, width), (d, dpitch, s, spitch, width, height)
            ctypes.memmove(to, frm, width)


@SETTINGS
@given(_strided_pair())
def test_block_copies_write_what_assignment_writes_and_nothing_else(pair):
    """Where ``copy_plan`` gives blocks for two views (any memory order, any slice), running them
    writes ``dst[...] = src`` and no byte outside ``dst``; where it gives None, assign's elementwise
    copy runs instead (the property above).  Rows of any width count here (``min_row=1``), so
    that the small drawn arrays reach every layout."""
    dst, src = pair
    order = params.memory_order(dst)
    d, s_ = dst.transpose(order), src.transpose(order)
    blocks = tiled.copy_plan(d.shape, d.itemsize, d.strides, s_.strides, min_row=1)
    if blocks is None:
        assert any(n > 1 for n in d.shape)                     # declined: not for a single element
        return
    base = dst.base
    before = base.copy()
    dst[...] = src
    want = base.copy()
    base[...] = before
    _run_blocks(d, s_, blocks)
    numpy.testing.assert_array_equal(base, want)


def test_block_copies_of_a_channels_last_window_are_rows_at_two_pitches():
    """The copies tiled calls make of a channels-last (N, C, D, H, W) window: into the interior of
    its padded buffer, one 2-d copy per depth plane (rows of W x C elements, the buffer's pitch
    (W + 2) x C); from a packed output tile into the output, one contiguous run."""
    n, c, d, h, w = 1, 32, 5, 6, 16
    item = 2
    def cl(shape):
        return numpy.zeros((shape[0],) + tuple(shape[2:]) + (shape[1],), numpy.float16).transpose(0, 4, 1, 2, 3)
    window = cl((n, c, d, h, w))
    padded = cl((n, c, d + 2, h + 2, w + 2))
    interior = padded[:, :, 1:-1, 1:-1, 1:-1]
    order = params.memory_order(interior)
    assert order == [0, 2, 3, 4, 1]
    i, s_ = interior.transpose(order), window.transpose(order)
    blocks = tiled.copy_plan(i.shape, item, i.strides, s_.strides)
    row = w * c * item
    assert blocks == [(k * (h + 2) * (w + 2) * c * item, (w + 2) * c * item, k * h * row, row, row, h)
                      for k in range(d)]
    y = cl((n, c, 3 * d, h, w))
    tile = y[:, :, d:2 * d]
    order = params.memory_order(tile)
    t, p = tile.transpose(order), window.transpose(order)
    assert tiled.copy_plan(t.shape, item, t.strides, p.strides) == [(0, d * h * row, 0, d * h * row, d * h * row, 1)]
    # the layouts it leaves to the elementwise copy: rows narrower than MIN_ROW_BYTES, reversed strides
    narrow = cl((1, 2, 2, 2, 2))
    o = narrow.transpose(params.memory_order(narrow))
    assert tiled.copy_plan(o.shape, item, o.strides, o.strides) == [(0, 32, 0, 32, 32, 1)]   # contiguous: one run
    rows = cl((1, 2, 2, 4, 4))[:, :, :, :, :2]
    o = rows.transpose(params.memory_order(rows))
    assert tiled.copy_plan(o.shape, item, o.strides, o.strides) is None
    flipped = padded[:, :, ::-1]
    o = flipped.transpose(params.memory_order(flipped))
    assert tiled.copy_plan(o.shape, item, o.strides, o.strides) is None


def test_assign_takes_block_copies_only_for_device_arrays_of_one_dtype(monkeypatch):
    """``assign`` of a channels-last window into its padded buffer's interior runs ``copy_plan``'s
    blocks (run here on the host, byte for byte) where both arrays are device arrays of one dtype,
    and the elementwise copy where either is a NumPy array or the dtypes differ; both write
    ``dst[...] = src`` and nothing else."""
    import types
    device_ids = set()
    gpu = types.SimpleNamespace(__name__="cupy")
    monkeypatch.setattr(tiled, "array_module", lambda a: gpu if id(a) in device_ids else numpy)
    ran = []
    monkeypatch.setattr(tiled, "_copy_blocks", lambda d, s_, b: (ran.append(len(b)), _run_blocks(d, s_, b)))
    rng = numpy.random.default_rng(3)

    def cl(shape, dtype):
        a = rng.standard_normal((shape[0],) + tuple(shape[2:]) + (shape[1],)).astype(dtype)
        return a.transpose(0, 4, 1, 2, 3)
    n, c, d, h, w = 1, 32, 3, 4, 16
    for src_dtype, src_on_device, blocks in ((numpy.float16, True, True), (numpy.float16, False, False),
                                             (numpy.float32, True, False)):
        window = cl((n, c, d, h, w), src_dtype)
        padded = cl((n, c, d + 2, h + 2, w + 2), numpy.float16)
        interior = padded[:, :, 1:-1, 1:-1, 1:-1]
        device_ids.clear()
        device_ids.add(id(interior))
        if src_on_device:
            device_ids.add(id(window))
        want = padded.copy()
        want[:, :, 1:-1, 1:-1, 1:-1] = window
        ran.clear()
        tiled.assign(interior, window)
        assert (ran == [d]) if blocks else (ran == []), (src_dtype, src_on_device, ran)
        numpy.testing.assert_array_equal(padded, want)


def test_block_copies_go_to_the_cuda_runtime_at_each_arrays_own_address(monkeypatch):
    """``_copy_blocks`` hands each block to cudaMemcpy2DAsync (a one-row block to cudaMemcpyAsync)
    at the arrays' first-element addresses plus the block's offsets, on CuPy's current stream."""
    import sys
    import types
    calls = []
    rt = types.SimpleNamespace(
        memcpyDeviceToDevice=3,
        memcpyAsync=lambda *a: calls.append(("1d",) + a),
        memcpy2DAsync=lambda *a: calls.append(("2d",) + a))
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(
        runtime=rt, get_current_stream=lambda: types.SimpleNamespace(ptr=77)))
    monkeypatch.setitem(sys.modules, "cupy", fake)

    def array(ptr):
        return types.SimpleNamespace(data=types.SimpleNamespace(ptr=ptr))
    tiled._copy_blocks(array(1000), array(5000), [(0, 64, 8, 32, 32, 4), (256, 64, 136, 32, 32, 4),
                                                  (0, 96, 0, 96, 96, 1)])
    assert calls == [("2d", 1000, 64, 5008, 32, 32, 4, 3, 77), ("2d", 1256, 64, 5136, 32, 32, 4, 3, 77),
                     ("1d", 1000, 5000, 96, 3, 77)]


def test_tiled_input_gradient_in_16_bits_reads_each_part_through_the_runners_view():
    """backward_data on a channels-last float16 gradient, with a runner that returns its window's
    gradient as the interior view of a padded channels-last buffer (as tiled_calls' does): the
    overlapping windows still sum to the whole gradient, one runner call per tile."""
    g = _g(n=1, in_channels=3, out_channels=2, spatial=(9, 5), kernel=(3, 3), pad_lo=(1, 1), pad_hi=(1, 1),
           index_limit=3 * 5 * 5)
    tiles = _plan(g)
    assert len(tiles) > 2
    rng = numpy.random.default_rng(5)
    w = rng.standard_normal((2, 3, 3, 3))
    gy = rng.standard_normal((1, 2, 9, 5))
    gx = numpy.full((1, 9, 5, 3), numpy.nan, dtype=numpy.float16).transpose(0, 3, 1, 2)
    seen = []

    def dgrad(shape, w_, gyt, pads, tile):
        seen.append(shape)
        padded = numpy.full((shape[0],) + tuple(n + lo + hi for n, (lo, hi) in zip(shape[2:], pads)) + (shape[1],),
                            numpy.nan, numpy.float16).transpose(0, 3, 1, 2)
        view = padded[(slice(None), slice(None)) + tuple(slice(lo, lo + n) for n, (lo, _) in zip(shape[2:], pads))]
        view[...] = conv_backward_input(shape, w_, gyt, (1, 1), (1, 1), pads)
        return view
    tiled.backward_data(dgrad, gx, w, gy, tiles)
    assert not numpy.isnan(gx).any()
    assert len(seen) == len(tiles)
    exact = conv_backward_input((1, 3, 9, 5), w, gy, (1, 1), (1, 1), ((1, 1), (1, 1)))
    # each element: at most two float16-rounded terms, summed in float32, rounded once
    assert numpy.abs(gx.astype(numpy.float64) - exact).max() <= 3 * 2 ** -11 * numpy.abs(exact).max() + 1e-3


def test_tiles_that_read_padding_alone_make_zeros_and_add_nothing():
    # padding wider than the kernel's reach: the first and last outputs read padding alone
    g = _g(n=1, in_channels=2, out_channels=3, spatial=(6,), kernel=(2,), stride=(1,), dilation=(1,),
           pad_lo=(3,), pad_hi=(3,), index_limit=6)
    tiles = _plan(g)
    empties = [t for t in tiles if any(a == b for a, b in zip(t.in_lo, t.in_hi))]
    assert empties
    fwd, dgrad, wgrad = _runners(g)
    calls = []

    def counted(run):
        def f(a, b, c, pads, tile):
            assert tile not in empties                   # no empty window reaches a runner
            calls.append(tile)
            return run(a, b, c, pads, tile)
        return f
    rng = numpy.random.default_rng(3)
    x, w = rng.standard_normal((1, 2, 6)), rng.standard_normal((3, 2, 2))
    pads = ((3, 3),)
    y = tiled.forward(counted(fwd), x, w, numpy.full((1, 3, 11), numpy.nan), tiles)
    numpy.testing.assert_allclose(y, conv(x, w, (1,), (1,), pads), atol=1e-12)
    gy = rng.standard_normal(y.shape)
    gx = tiled.backward_data(counted(dgrad), numpy.full(x.shape, numpy.nan), w, gy, tiles)
    numpy.testing.assert_allclose(gx, conv_backward_input(x.shape, w, gy, (1,), (1,), pads), atol=1e-12)
    gw = tiled.backward_weight(counted(wgrad), x, numpy.full(w.shape, numpy.nan), gy, tiles, numpy.float64)
    numpy.testing.assert_allclose(gw, conv_backward_weight(x, w.shape, gy, (1,), (1,), pads), atol=1e-12)
    assert len(calls) == 3 * (len(tiles) - len(empties))
    # A fused call's epilogue of a zero convolution goes where the windows are empty.
    marked = tiled.forward(fwd, x, w, numpy.full((1, 3, 11), numpy.nan), tiles,
                           empty=lambda yt, t: yt.fill(-7.0))
    for t in empties:
        assert (marked[:, :, t.out_lo[0]:t.out_hi[0]] == -7.0).all()
    assert numpy.isfinite(marked).all()


# ---------------------------------------------------------------------------
# Sizing and refusals
# ---------------------------------------------------------------------------

def _g(**kw):
    g = dict(n=1, in_channels=4, out_channels=4, spatial=(16, 16), kernel=(3, 3), stride=(1, 1), dilation=(1, 1),
             pad_lo=(1, 1), pad_hi=(1, 1), index_limit=1 << 31)
    g.update(kw)
    return g


def test_one_tile_when_the_whole_fits():
    (t,) = tiling.plan_spatial_tiles(**_g())
    assert t == tiling.Tile((0, 0), (16, 16), (0, 0), (16, 16), (1, 1), (1, 1))


def test_the_outermost_dim_first_in_the_fewest_near_equal_tiles():
    # 4 x 16 x 16 = 1024 elements each way.  A limit of 512: a window of at most 8 rows (4 x 8 x 16),
    # so tiles of at most 6 output rows; the fewest such tiles are 3, of 6, 6 and 4 rows
    tiles = tiling.plan_spatial_tiles(**_g(index_limit=512))
    assert [(t.out_lo[0], t.out_hi[0]) for t in tiles] == [(0, 6), (6, 12), (12, 16)]
    assert all(t.out_lo[1] == 0 and t.out_hi[1] == 16 for t in tiles)
    assert [(t.in_lo[0], t.in_hi[0], t.pad_lo[0], t.pad_hi[0]) for t in tiles] == \
        [(0, 7, 1, 0), (5, 13, 0, 0), (11, 16, 0, 1)]


def test_the_next_dim_when_one_row_of_the_outermost_is_over_the_limit():
    # one output row reads 3 input rows: 4 x 3 x 16 = 192 elements; a limit of 100 tiles the rows too
    tiles = tiling.plan_spatial_tiles(**_g(index_limit=100))
    assert all(t.out_hi[0] - t.out_lo[0] == 1 for t in tiles)
    assert len({(t.out_lo[1], t.out_hi[1]) for t in tiles}) > 1
    assert len(tiles) == 16 * len({(t.out_lo[1], t.out_hi[1]) for t in tiles})
    for t in tiles:
        assert 4 * math.prod(b - a for a, b in zip(t.in_lo, t.in_hi)) <= 100


def test_a_limit_no_tiling_can_meet_is_refused_with_the_sizes():
    # one output element reads 4 channels x a 3x3 window = 36 elements
    with pytest.raises(ValueError, match=r"reads 36 input elements \(1 samples x 4 channels x a 3x3 window\).*"
                                         r"index limit of 35"):
        tiling.plan_spatial_tiles(**_g(index_limit=35))
    with pytest.raises(ValueError, match="writes 8 "):
        tiling.plan_spatial_tiles(**_g(in_channels=1, out_channels=8, kernel=(1, 1), pad_lo=(0, 0), pad_hi=(0, 0),
                                       index_limit=7))
    assert tiling.plan_spatial_tiles(**_g(index_limit=36))         # and 36 is enough


@pytest.mark.parametrize("bad", [dict(n=0), dict(in_channels=0), dict(spatial=(16,)), dict(stride=(0, 1)),
                                 dict(pad_lo=(-1, 0)), dict(index_limit=0), dict(spatial=(1, 1, 1, 1),
                                 kernel=(1,) * 4, stride=(1,) * 4, dilation=(1,) * 4, pad_lo=(0,) * 4,
                                 pad_hi=(0,) * 4)])
def test_invalid_requests_are_refused(bad):
    with pytest.raises(ValueError):
        tiling.plan_spatial_tiles(**_g(**bad))


def test_no_output_is_refused():
    with pytest.raises(ValueError, match="no output"):
        tiling.plan_spatial_tiles(**_g(spatial=(2, 16), pad_lo=(0, 1), pad_hi=(0, 1)))


def test_absurd_tile_counts_are_refused():
    with pytest.raises(ValueError, match="tiles"):
        tiling.plan_spatial_tiles(**_g(spatial=(1 << 20, 1 << 10), in_channels=1, out_channels=1, index_limit=64))


def test_a_real_over_limit_sample_plans_quickly_and_within_the_limit():
    # 1 x 32 channels x 80 x 1024 x 1024 (2.7e9 elements), a 3x3x3 convolution, padding 1
    g = dict(n=1, in_channels=32, out_channels=32, spatial=(80, 1024, 1024), kernel=(3, 3, 3), stride=(1, 1, 1),
             dilation=(1, 1, 1), pad_lo=(1, 1, 1), pad_hi=(1, 1, 1), index_limit=2 ** 31 - 1)
    tiles = tiling.plan_spatial_tiles(**g)
    assert len(tiles) == 2 and [t.out_hi[0] - t.out_lo[0] for t in tiles] == [40, 40]
    for t in tiles:
        assert 32 * math.prod(b - a for a, b in zip(t.in_lo, t.in_hi)) <= 2 ** 31 - 1
        assert t.in_hi[0] - t.in_lo[0] == 41                 # 40 rows and a one-row halo


# ---------------------------------------------------------------------------
# A call's way under the limit: batch chunks or spatial tiles
# ---------------------------------------------------------------------------

def test_split_or_tile_splits_the_batch_where_samples_fit():
    from cudnnconv import split
    g = dict(in_channels=4, out_channels=8, spatial=(16, 16), kernel=(3, 3), stride=(1, 1), dilation=(1, 1),
             pad_lo=(1, 1), pad_hi=(1, 1))
    chunks, tiles = tiling.split_or_tile(10, **g, max_worksize=1 << 20, index_limit=8 * 256 * 3)
    assert tiles is None
    assert chunks == split.plan_batch_split(10, 10 * 4 * 256, 10 * 8 * 256, 1 << 20, 8 * 256 * 3)
    assert chunks == [(0, 3), (3, 3), (6, 3), (9, 1)]
    assert tiling.split_or_tile(10, **g, max_worksize=1 << 20, index_limit=1 << 31) == ([(0, 10)], None)


def test_split_or_tile_tiles_each_sample_where_one_is_over_the_limit():
    g = dict(in_channels=4, out_channels=8, spatial=(16, 16), kernel=(3, 3), stride=(1, 1), dilation=(1, 1),
             pad_lo=(1, 1), pad_hi=(1, 1))
    limit = 8 * 16 * 5                                  # under one sample's 8 x 256 outputs
    chunks, tiles = tiling.split_or_tile(3, **g, max_worksize=1 << 20, index_limit=limit)
    assert chunks == [(0, 1), (1, 1), (2, 1)]
    assert tiles == tiling.plan_spatial_tiles(1, index_limit=limit, **g) and len(tiles) > 1
    with pytest.raises(ValueError, match="no spatial tiling brings it under"):
        tiling.split_or_tile(2, **g, max_worksize=1 << 20, index_limit=7)


# ---------------------------------------------------------------------------
# tiled_calls: a tiled plan run through an engine, with NumPy arrays and a float64 stand-in engine
# ---------------------------------------------------------------------------

class _ReferenceEngine:
    """An engine's ``run`` on NumPy arrays: the float64 reference with the geometry it is given."""

    ENGINE = "reference"

    def __init__(self, limit, layout=None):
        self.shapes = []
        self.arrays = []
        self.paddings = []
        self.limit = limit
        self.layout = layout

    def run(self, op, x, w, y, geom, opts, layout, device, repro, z=None, bias=None, alpha=1.0):
        from cudnnconv import params
        assert geom.same_extra == (0,) * geom.nsp
        # a tile's padding is symmetric, or copied in, unless the engine takes one-sided padding
        assert getattr(self, "ONE_SIDED_PADDING", False) or not params.one_sided(geom.padding)
        assert x.size <= self.limit and y.size <= self.limit, (x.shape, y.shape, self.limit)
        if self.layout is not None:     # the activations it is handed are packed in the plan's layout
            assert layout == self.layout
            assert all(params.has_layout(a, layout) for a in (x, y) + ((z,) if z is not None else ())), op
        pads = params.padding_pairs(geom.padding)
        # the output's size follows from the input, the weight and the padding (as cuDNN's graph wants)
        assert y.shape[2:] == tuple(tiling.output_size(n, k, s, d, lo, hi) for n, k, s, d, (lo, hi) in
                                    zip(x.shape[2:], w.shape[2:], geom.stride, geom.dilation, pads)), (op, pads)
        self.paddings.append(geom.padding)
        if op == "forward":
            y[...] = conv(x, w, geom.stride, geom.dilation, pads)
        elif op == "fused":
            assert z.shape == y.shape
            y[...] = numpy.maximum(conv(x, w, geom.stride, geom.dilation, pads) + alpha * z
                                   + bias.reshape((1, -1) + (1,) * geom.nsp), 0)
        elif op == "backward_data":
            x[...] = conv_backward_input(x.shape, w, y, geom.stride, geom.dilation, pads)
        else:
            w[...] = conv_backward_weight(x, w.shape, y, geom.stride, geom.dilation, pads)
        self.shapes.append((op, x.shape))
        self.arrays.append((x, y))
        return op


def _in_layout(shape, dtype, layout):
    """A NumPy array of ``shape`` packed in ``layout`` (params.empty_in_layout's NumPy twin)."""
    from cudnnconv import params
    if layout == params.NCHW:
        return numpy.empty(shape, dtype=dtype)
    nd = len(shape)
    perm = (0,) + tuple(range(2, nd)) + (1,)
    return numpy.empty(tuple(shape[p] for p in perm), dtype=dtype).transpose(numpy.argsort(perm))


def _numpy_layouts(monkeypatch):
    from cudnnconv import params

    def to_layout(a, layout):
        if params.has_layout(a, layout):
            return a
        out = _in_layout(a.shape, a.dtype, layout)
        out[...] = a
        return out
    monkeypatch.setattr(params, "empty_in_layout", _in_layout)
    monkeypatch.setattr(params, "to_layout", to_layout)


def _packed_in(a, layout):
    out = _in_layout(a.shape, a.dtype, layout)
    out[...] = a
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                    HealthCheck.function_scoped_fixture])
@given(geometries(), st.integers(0, 2 ** 32 - 1), st.sampled_from(["nchw", "channels_last"]))
def test_tiled_calls_run_every_direction_through_an_engine(monkeypatch, case, seed, layout):
    """A tiled plan of two samples through tiled_calls.run, in either layout: windows copied with
    their padding and run with none, results copied into the output's tiles, gradients summed; every
    direction equals the untiled float64 result and writes every element of it."""
    import types
    from cudnnconv import params, tiled_calls
    _numpy_layouts(monkeypatch)
    g, out = case
    rng = numpy.random.default_rng(seed)
    n, cin, cout = 2, g["in_channels"], g["out_channels"]
    layout = params.NCHW if layout == "nchw" else params.CHANNELS_LAST
    x = _packed_in(rng.standard_normal((n, cin) + g["spatial"]), layout)
    w = _packed_in(rng.standard_normal((cout, cin) + g["kernel"]), layout)
    pads = tuple(zip(g["pad_lo"], g["pad_hi"]))
    y = conv(x, w, g["stride"], g["dilation"], pads)
    gy = _packed_in(rng.standard_normal(y.shape), layout)
    least = cin * math.prod(d * (k - 1) + 1 for k, d in zip(g["kernel"], g["dilation"]))
    g["index_limit"] = max(g["index_limit"], least, cout)        # a padded window of one output fits
    tiles = tiling.plan_spatial_tiles(**dict(g, n=1), padded=True)
    nsp = len(g["spatial"])
    geom = params.Geometry(nsp, g["stride"], g["pad_lo"], g["dilation"], 1, (0,) * nsp)
    plan = types.SimpleNamespace(chunks=tiled_calls.Tiled([(0, 1), (1, 1)], tiles), layout=layout, geom=geom,
                                 device=0, repro=None)
    eng = _ReferenceEngine(g["index_limit"], layout)

    def poisoned(shape):
        return _packed_in(numpy.full(shape, numpy.nan), layout)
    ty = poisoned(y.shape)
    ran = tiled_calls.run(eng, "forward", plan, x, w, ty, None)
    numpy.testing.assert_allclose(ty, y, rtol=1e-12, atol=1e-12)
    live = [t for t in tiles if all(a < b for a, b in zip(t.in_lo, t.in_hi))]
    assert len(ran) == n * len(live)
    tgx = poisoned(x.shape)
    tiled_calls.run(eng, "backward_data", plan, tgx, w, gy, None)
    numpy.testing.assert_allclose(tgx, conv_backward_input(x.shape, w, gy, g["stride"], g["dilation"], pads),
                                  rtol=1e-11, atol=1e-11)
    tgw = poisoned(w.shape)
    tiled_calls.run(eng, "backward_filter", plan, x, tgw, gy, None)
    numpy.testing.assert_allclose(tgw, conv_backward_weight(x, w.shape, gy, g["stride"], g["dilation"], pads),
                                  rtol=1e-11, atol=1e-11)
    # fused: each tile gets its slice of z; a window reading padding alone gets relu(alpha * z + bias)
    z, b = _packed_in(rng.standard_normal(y.shape), layout), rng.standard_normal(cout)
    tf = poisoned(y.shape)
    tiled_calls.run(eng, "fused", plan, x, w, tf, None, z=z, bias=b, alpha=0.75)
    want = numpy.maximum(y + 0.75 * z + b.reshape((1, -1) + (1,) * nsp), 0)
    numpy.testing.assert_allclose(tf, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_tiled_calls_write_packed_output_tiles_in_place(monkeypatch, layout):
    """A channels-last sample cut along its outermost spatial dim has packed output tiles: the
    forward hands the engine the output's own tile (no copy after); in NCHW the tile is not packed,
    and the engine writes a packed array that is copied in.  The input gradient's windows come back
    as views of the engine's padded buffers either way, and every result equals the reference."""
    import types
    from cudnnconv import params, tiled_calls
    _numpy_layouts(monkeypatch)
    lay = params.NCHW if layout == "nchw" else params.CHANNELS_LAST
    g = _g(n=1, in_channels=2, out_channels=2, spatial=(12, 4), kernel=(3, 3), pad_lo=(1, 1), pad_hi=(1, 1),
           index_limit=2 * 8 * 6)
    tiles = tiling.plan_spatial_tiles(**g, padded=True)
    assert len(tiles) == 2 and all(t.out_lo[1] == 0 and t.out_hi[1] == 4 for t in tiles)
    geom = params.Geometry(2, (1, 1), (1, 1), (1, 1), 1, (0, 0))
    plan = types.SimpleNamespace(chunks=tiled_calls.Tiled([(0, 1)], tiles), layout=lay, geom=geom, device=0,
                                 repro=None)
    rng = numpy.random.default_rng(4)
    x, w = _packed_in(rng.standard_normal((1, 2, 12, 4)), lay), rng.standard_normal((2, 2, 3, 3))
    y = _packed_in(numpy.full((1, 2, 12, 4), numpy.nan), lay)
    eng = _ReferenceEngine(g["index_limit"], lay)
    copies = []
    assign = tiled.assign
    monkeypatch.setattr(tiled, "assign", lambda d, s_: (copies.append(numpy.shares_memory(d, y)), assign(d, s_)))
    tiled_calls.run(eng, "forward", plan, x, w, y, None)
    numpy.testing.assert_allclose(y, conv(x, w, (1, 1), (1, 1), ((1, 1), (1, 1))), rtol=1e-12, atol=1e-12)
    in_place = [numpy.shares_memory(out, y) for _, out in eng.arrays]
    assert in_place == ([True, True] if layout == "channels_last" else [False, False])
    assert sum(copies) == (0 if layout == "channels_last" else 2)            # copies into y
    gy = _packed_in(rng.standard_normal((1, 2, 12, 4)), lay)
    gx = _packed_in(numpy.full((1, 2, 12, 4), numpy.nan), lay)
    tiled_calls.run(eng, "backward_data", plan, gx, w, gy, None)
    numpy.testing.assert_allclose(gx, conv_backward_input(gx.shape, w, gy, (1, 1), (1, 1), ((1, 1), (1, 1))),
                                  rtol=1e-11, atol=1e-11)


def test_output_tiles_are_written_in_place_only_where_packed_and_aligned():
    """tiled_calls._in_place: a packed, 16-byte aligned tile yes; the same tile 2 bytes off its
    alignment (a float16 slab whose rows are 6 bytes), or not packed in the layout, no."""
    from cudnnconv import params, tiled_calls
    cl = _in_layout((1, 4, 12, 8), numpy.float16, params.CHANNELS_LAST)
    assert tiled_calls._in_place(cl[:, :, 4:8], params.CHANNELS_LAST)
    assert not tiled_calls._in_place(cl[:, :, :, 4:8], params.CHANNELS_LAST)              # not packed
    assert not tiled_calls._in_place(cl[:, :, 4:8], params.NCHW)
    odd = _in_layout((1, 1, 12, 3), numpy.float16, params.CHANNELS_LAST)                   # 6-byte rows
    assert odd.ctypes.data % 16 == 0 and params.has_layout(odd[:, :, 1:4], params.CHANNELS_LAST)
    assert not tiled_calls._in_place(odd[:, :, 1:4], params.CHANNELS_LAST)               # 6 bytes in
    assert tiled_calls._in_place(odd[:, :, 8:12], params.CHANNELS_LAST)                  # 48 bytes in


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("kernel,pad", [(3, 1), (1, 0)])
def test_tiles_with_symmetric_padding_run_on_their_windows_themselves(monkeypatch, layout, kernel, pad):
    """A tile whose padding is the same before and after in every dim (an inner tile; every tile
    of an unpadded convolution) hands the engine its window of x itself, with that padding, where
    the window is packed (channels-last); an edge tile of a padded convolution gets a padded copy
    run with none, as does every tile in NCHW.  Each direction equals the reference."""
    import types
    from cudnnconv import params, tiled_calls
    _numpy_layouts(monkeypatch)
    lay = params.NCHW if layout == "nchw" else params.CHANNELS_LAST
    g = _g(n=1, in_channels=2, out_channels=2, spatial=(18, 4), kernel=(kernel, kernel), pad_lo=(pad, pad),
           pad_hi=(pad, pad), index_limit=2 * 8 * (4 + 2 * pad))
    tiles = tiling.plan_spatial_tiles(**g, padded=True)
    assert len(tiles) >= 3
    geom = params.Geometry(2, (1, 1), (pad, pad), (1, 1), 1, (0, 0))
    plan = types.SimpleNamespace(chunks=tiled_calls.Tiled([(0, 1)], tiles), layout=lay, geom=geom, device=0,
                                 repro=None)
    rng = numpy.random.default_rng(6)
    x, w = _packed_in(rng.standard_normal((1, 2, 18, 4)), lay), rng.standard_normal((2, 2, kernel, kernel))
    pads = ((pad, pad), (pad, pad))
    symmetric = [all(a == b for a, b in zip(t.pad_lo, t.pad_hi)) for t in tiles]
    want_views = [sym and layout == "channels_last" for sym in symmetric]
    assert any(want_views) == (layout == "channels_last") and (all(symmetric) == (pad == 0))
    for op in ("forward", "backward_filter", "backward_data"):
        eng = _ReferenceEngine(10 ** 6, lay)
        if op == "forward":
            y = _packed_in(numpy.full((1, 2, 18, 4), numpy.nan), lay)
            tiled_calls.run(eng, op, plan, x, w, y, None)
            numpy.testing.assert_allclose(y, conv(x, w, (1, 1), (1, 1), pads), rtol=1e-12, atol=1e-12)
        elif op == "backward_filter":
            gw = numpy.full(w.shape, numpy.nan)
            gy = _packed_in(rng.standard_normal((1, 2, 18, 4)), lay)
            tiled_calls.run(eng, op, plan, x, gw, gy, None)
            numpy.testing.assert_allclose(gw, conv_backward_weight(x, w.shape, gy, (1, 1), (1, 1), pads),
                                          rtol=1e-11, atol=1e-11)
        else:
            gx = _packed_in(numpy.full((1, 2, 18, 4), numpy.nan), lay)
            gy = _packed_in(rng.standard_normal((1, 2, 18, 4)), lay)
            tiled_calls.run(eng, op, plan, gx, w, gy, None)
            numpy.testing.assert_allclose(gx, conv_backward_input(gx.shape, w, gy, (1, 1), (1, 1), pads),
                                          rtol=1e-11, atol=1e-11)
            want_views = symmetric                 # its windows' gradients: written whole, in either layout
        given = [numpy.shares_memory(xa, x) for xa, _ in eng.arrays] if op != "backward_data" else \
            [xa.shape[2:] == tuple(b - a for a, b in zip(t.in_lo, t.in_hi)) for (xa, _), t in zip(eng.arrays, tiles)]
        assert given == want_views, (op, given)
        assert eng.paddings == [(t.pad_lo if v else (0, 0)) for t, v in zip(tiles, want_views)], op


def test_tiled_calls_plan_chooses_chunks_or_tiles():
    from cudnnconv import params, split, tiled_calls
    from cudnnconv.core import build
    geom, _ = params.conv_geometry((2, 4, 16, 16), (8, 4, 3, 3), 1, 1, 1, 1)
    chunks = tiled_calls.plan((2, 4, 16, 16), (8, 4, 3, 3), geom, split.FORWARD_MAX_WORKSIZE)
    assert chunks == [(0, 2)] and not tiled_calls.is_tiled(chunks)
    big = (2, 4, 16, 2 ** 28)                                     # one sample over 2**31 - 1 elements
    assert 4 * 16 * 2 ** 28 > build.INDEX_LIMIT
    chunks = tiled_calls.plan(big, (8, 4, 3, 3), geom, split.FORWARD_MAX_WORKSIZE)
    assert tiled_calls.is_tiled(chunks) and list(chunks) == [(0, 1), (1, 1)] and len(chunks.tiles) >= 2


def test_tiled_calls_fused_epilogue_where_a_window_reads_padding_alone(monkeypatch):
    import types
    from cudnnconv import params, tiled_calls
    _numpy_layouts(monkeypatch)
    g = _g(n=1, in_channels=2, out_channels=3, spatial=(6,), kernel=(2,), stride=(1,), dilation=(1,),
           pad_lo=(3,), pad_hi=(3,), index_limit=8)
    tiles = tiling.plan_spatial_tiles(**g, padded=True)
    assert any(a == b for t in tiles for a, b in zip(t.in_lo, t.in_hi))
    rng = numpy.random.default_rng(5)
    x, w = rng.standard_normal((1, 2, 6)), rng.standard_normal((3, 2, 2))
    z, b = rng.standard_normal((1, 3, 11)), rng.standard_normal(3)
    geom = params.Geometry(1, (1,), (3,), (1,), 1, (0,))
    plan = types.SimpleNamespace(chunks=tiled_calls.Tiled([(0, 1)], tiles), layout=params.NCHW, geom=geom,
                                 device=0, repro=None)
    y = numpy.full((1, 3, 11), numpy.nan)
    tiled_calls.run(_ReferenceEngine(8), "fused", plan, x, w, y, None, z=z, bias=b, alpha=-1.5)
    want = numpy.maximum(conv(x, w, (1,), (1,), ((3, 3),)) - 1.5 * z + b.reshape(1, 3, 1), 0)
    numpy.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    # in float16 the epilogue is computed in float32 and rounded once
    zh = z.astype(numpy.float16)
    got = tiled_calls._relu_epilogue(zh, 0.3, b.astype(numpy.float16))
    assert got.dtype == numpy.float16
    numpy.testing.assert_array_equal(got, numpy.maximum(0.3 * zh.astype(numpy.float32)
                                                        + b.astype(numpy.float16).astype(numpy.float32)
                                                        .reshape(1, 3, 1), 0).astype(numpy.float16))


_OPTS = __import__("types").SimpleNamespace(deterministic=False, allow_tf32=False, workspace_limit=None)


class _OneSidedEngine(_ReferenceEngine):
    """The reference engine taking a tile's one-sided padding, as the graph engine does."""
    ONE_SIDED_PADDING = True


# ---------------------------------------------------------------------------
# The input gradient cut into parts: one-sided padding, no sums
# ---------------------------------------------------------------------------

def _parts(g, tiles):
    return tiling.input_gradient_parts(tiles, g["spatial"], g["kernel"], g["stride"], g["dilation"], g["pad_lo"],
                                       g["pad_hi"], g["n"], g["in_channels"], g["out_channels"], g["index_limit"])


@SETTINGS
@given(geometries())
def test_input_gradient_parts_partition_the_gradient_and_read_exactly_its_outputs(case):
    """Brute force per part: the parts cover the gradient once; every position of a part's run gets
    every output that reads it from the part's window, and the window with the part's padding lines
    up (its first padded position is where the window's first output starts reading, and it makes
    exactly the window's outputs); positions of a part outside its run are read by no output; every
    run, window and padded run is within the limit, or there are no parts."""
    g, out = case
    tiles = _plan(g)
    parts = _parts(g, tiles)
    n, cin, cout, limit = g["n"], g["in_channels"], g["out_channels"], g["index_limit"]
    if parts is None:                   # then some part, cut as the module says, is over the limit
        over = False
        for t in tiles:
            dims = [tiling._grad_span(t.out_lo[d], t.out_hi[d], g["spatial"][d], out[d], g["kernel"][d],
                                      g["stride"][d], g["dilation"][d], g["pad_lo"][d]) for d in range(len(out))]
            run = math.prod(v[1] - v[2] for v in dims)
            padded = math.prod(v[1] - v[2] + v[5] + v[6] for v in dims)
            win = math.prod(v[4] - v[3] for v in dims)
            over |= n * cin * max(run, padded if win else 0) > limit or n * cout * win > limit
        assert over
        return
    assert len(parts) == len(tiles)
    count = numpy.zeros(g["spatial"], dtype=numpy.int64)
    for p in parts:
        count[tuple(slice(a, b) for a, b in zip(p.gx_lo, p.gx_hi))] += 1
        run = math.prod(b - a for a, b in zip(p.run_lo, p.gx_hi))
        win = math.prod(b - a for a, b in zip(p.gy_lo, p.gy_hi))
        assert n * cin * run <= limit and n * cout * win <= limit
        if run and win:                 # the padded run, which a checked or refused part computes
            padded = math.prod(b - a + lo + hi for a, b, lo, hi in zip(p.run_lo, p.gx_hi, p.pad_lo, p.pad_hi))
            assert n * cin * padded <= limit
        for d in range(len(out)):
            size, k, st_, dl, pl = (g[f][d] for f in ("spatial", "kernel", "stride", "dilation", "pad_lo"))
            assert 0 <= p.gx_lo[d] <= p.run_lo[d] <= p.gx_hi[d] <= size
            readers = {i: {o for o in range(out[d]) for tap in range(k) if o * st_ - pl + tap * dl == i}
                       for i in range(p.gx_lo[d], p.gx_hi[d])}
            if not (run and win):       # the whole part is zero: no output reads it along some dim
                empty_run = p.run_lo[d] == p.gx_hi[d] or p.gy_lo[d] == p.gy_hi[d]
                assert not empty_run or not any(readers.values())
                continue
            assert 0 <= p.gy_lo[d] < p.gy_hi[d] <= out[d] and p.pad_lo[d] >= 0 and p.pad_hi[d] >= 0
            for i, who in readers.items():
                if i < p.run_lo[d]:
                    assert not who                                      # before the run: read by none
                else:
                    assert who <= set(range(p.gy_lo[d], p.gy_hi[d]))    # its readers are in the window
            assert p.run_lo[d] - p.pad_lo[d] == p.gy_lo[d] * st_ - pl   # the strides line up
            assert tiling.output_size(p.gx_hi[d] - p.run_lo[d], k, st_, dl, p.pad_lo[d], p.pad_hi[d]) \
                == p.gy_hi[d] - p.gy_lo[d]
    assert (count == 1).all()


@SETTINGS
@given(geometries(), st.integers(0, 2 ** 32 - 1))
def test_the_input_gradient_from_parts_equals_the_whole(case, seed):
    """tiled.backward_data_parts on the float64 reference with each part's one-sided padding: equal
    to the untiled input gradient, every element written (the gradient starts poisoned)."""
    g, out = case
    parts = _parts(g, _plan(g))
    if parts is None:
        return
    rng = numpy.random.default_rng(seed)
    n, cin, cout = g["n"], g["in_channels"], g["out_channels"]
    w = rng.standard_normal((cout, cin) + g["kernel"])
    gy = rng.standard_normal((n, cout) + out)
    pads = tuple(zip(g["pad_lo"], g["pad_hi"]))
    want = conv_backward_input((n, cin) + g["spatial"], w, gy, g["stride"], g["dilation"], pads)
    runs = []

    def run(gx_run, w_, gyw, pads_, part):
        runs.append(part)
        gx_run[...] = conv_backward_input(gx_run.shape, w_, gyw, g["stride"], g["dilation"], pads_)
    got = tiled.backward_data_parts(run, numpy.full(want.shape, numpy.nan), w, gy, parts)
    numpy.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)
    assert len(runs) <= len(parts)


def test_parts_of_a_padded_3x3_cut_in_two():
    """By hand: 12 rows, 3 taps, padding 1, outputs cut into [0, 6) and [6, 12).  The second tile's
    outputs start reading at row 5: the first part is rows [0, 5), the gradient of outputs [0, 6)
    (output 5 reads rows 4 to 6) with padding 1 before and 2 after; the second rows [5, 12), of
    outputs [4, 12) (output 4 reads rows 3 to 5), padding 2 before and 1 after: 10 rows padded, so
    a limit of 9 gives no parts, nor does a window of 8 outputs in 2 channels against 14."""
    g = _g(spatial=(12,), kernel=(3,), stride=(1,), dilation=(1,), pad_lo=(1,), pad_hi=(1,), in_channels=1,
           out_channels=1, index_limit=8)
    tiles = tiling.plan_spatial_tiles(**g, padded=True)
    assert [(t.out_lo, t.out_hi) for t in tiles] == [((0,), (6,)), ((6,), (12,))]
    assert _parts(dict(g, index_limit=9), tiles) is None
    a, b = _parts(dict(g, index_limit=10), tiles)
    assert (a.gx_lo, a.run_lo, a.gx_hi, a.gy_lo, a.gy_hi, a.pad_lo, a.pad_hi) == \
        ((0,), (0,), (5,), (0,), (6,), (1,), (2,))
    assert (b.gx_lo, b.run_lo, b.gx_hi, b.gy_lo, b.gy_hi, b.pad_lo, b.pad_hi) == \
        ((5,), (5,), (12,), (4,), (12,), (2,), (1,))
    assert _parts(dict(g, out_channels=2, index_limit=14), tiles) is None


def test_tile_padding_is_ints_where_symmetric_else_pairs():
    from cudnnconv import params
    assert params.tile_padding(((1, 1), (0, 0))) == (1, 0)
    assert params.tile_padding(((1, 0), (2, 2))) == ((1, 0), (2, 2))
    assert not params.one_sided((1, 0)) and params.one_sided(((1, 0), (2, 2)))
    assert params.padding_pairs((1, 0)) == ((1, 1), (0, 0))
    assert params.padding_pairs(((1, 0), (2, 2))) == ((1, 0), (2, 2))
    opts = __import__("types").SimpleNamespace(deterministic=False, allow_tf32=True, workspace_limit=None)
    geom = params.Geometry(2, (1, 1), (1, 1), (1, 1), 1, (0, 0))
    sym = params.make_key("forward", "graph", 0, 0, (1, 2, 8, 8), (2, 2, 3, 3), "NCHW", geom, opts)
    one = params.make_key("forward", "graph", 0, 0, (1, 2, 8, 8), (2, 2, 3, 3), "NCHW",
                          geom._replace(padding=((1, 0), (1, 1))), opts)
    assert sym != one and params.persistent(sym) and not params.persistent(one)


def _one_sided_plan(layout, g, samples=1):
    import types
    from cudnnconv import params, tiled_calls
    tiles = tiling.plan_spatial_tiles(**g, padded=True)
    nsp = len(g["spatial"])
    geom = params.Geometry(nsp, g["stride"], g["pad_lo"], g["dilation"], 1, (0,) * nsp)
    return types.SimpleNamespace(chunks=tiled_calls.Tiled([(s, 1) for s in range(samples)], tiles), layout=layout,
                                 geom=geom, device=0, repro=None), tiles


@pytest.fixture
def fresh_verdicts():
    from cudnnconv import one_sided
    one_sided.forget()
    yield one_sided
    one_sided.forget()


def _run_op(op, plan, eng, x, w, gy, lay, y_shape, stride, pads):
    """One tiled call of ``op`` into a poisoned result; (the result, the reference, the array its
    views would share memory with)."""
    from cudnnconv import tiled_calls
    if op == "forward":
        got = _packed_in(numpy.full(y_shape, numpy.nan), lay)
        tiled_calls.run(eng, op, plan, x, w, got, _OPTS)
        return got, conv(x, w, (stride, 1), (1, 1), pads), x
    if op == "backward_data":
        got = _packed_in(numpy.full(x.shape, numpy.nan), lay)
        tiled_calls.run(eng, op, plan, got, w, gy, _OPTS)
        return got, conv_backward_input(x.shape, w, gy, (stride, 1), (1, 1), pads), got
    got = numpy.full(w.shape, numpy.nan)
    tiled_calls.run(eng, op, plan, x, got, gy, _OPTS)
    return got, conv_backward_weight(x, w.shape, gy, (stride, 1), (1, 1), pads), x


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("kernel,pad,stride", [(3, 1, 1), (5, 2, 2), (2, 0, 3)])
def test_on_an_engine_with_one_sided_padding_every_tile_runs_on_views(monkeypatch, fresh_verdicts, layout, kernel,
                                                                      pad, stride):
    """Channels-last, cut along the outermost dim: every tile hands the engine its window of x and
    its tile of y themselves, edge tiles with their one-sided padding, and the input gradient is cut
    into parts computed in place from views of the gradient output.  The first call of each
    one-sided problem also runs its padded copy, once, to check the plan (``one_sided``); from the
    second on there is not one copy in any direction.  In NCHW the windows are not packed: the
    copies and the sums over windows, as before.  Every call equals the float64 reference."""
    from cudnnconv import params
    _numpy_layouts(monkeypatch)
    lay = params.NCHW if layout == "nchw" else params.CHANNELS_LAST
    g = _g(n=1, in_channels=2, out_channels=2, spatial=(20, 4), kernel=(kernel, kernel), stride=(stride, 1),
           pad_lo=(pad, pad), pad_hi=(pad, pad), index_limit=2 * 10 * (4 + 2 * pad))
    plan, tiles = _one_sided_plan(lay, g, samples=2)
    assert len(tiles) >= 2 and (pad == 0 or any(t.pad_lo != t.pad_hi for t in tiles))
    # the limit the call's runs are held to: twice what the tiles were sized for, so that the input
    # gradient's parts (a part's halo and padding reach past its tile's window) fit it
    from cudnnconv.core import build
    monkeypatch.setattr(build, "INDEX_LIMIT", 2 * g["index_limit"])
    rng = numpy.random.default_rng(8)
    x, w = _packed_in(rng.standard_normal((2, 2, 20, 4)), lay), rng.standard_normal((2, 2, kernel, kernel))
    pads = ((pad, pad), (pad, pad))
    y_shape = conv(x, w, (stride, 1), (1, 1), pads).shape
    gy = _packed_in(rng.standard_normal(y_shape), lay)
    copies = []
    for name in ("assign", "fill", "add_into"):
        real = getattr(tiled, name)
        monkeypatch.setattr(tiled, name, lambda *a, _real=real, _name=name: (copies.append(_name), _real(*a))[1])
    views = layout == "channels_last"
    for op in ("forward", "backward_data", "backward_filter"):
        for call in range(2):
            eng = _OneSidedEngine(build.INDEX_LIMIT, lay)
            del copies[:]
            got, want, base = _run_op(op, plan, eng, x, w, gy, lay, y_shape, stride, pads)
            numpy.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)
            shared = [numpy.shares_memory(xa, base) for xa, _ in eng.arrays]
            one_sided = [params.one_sided(p) for p in eng.paddings]
            if not views:
                assert copies and not any(shared) and not any(one_sided), op
            elif call == 0:             # each one-sided problem checked once against its padded copy
                checks = sum(not s for s in shared)         # (the second sample's tiles: already checked)
                assert (checks > 0) == (pad > 0) and checks <= sum(one_sided) // 2, (op, checks, one_sided)
            else:
                assert copies == [] and all(shared) and (sum(one_sided) > 0) == (pad > 0), (op, copies, shared)
    assert not fresh_verdicts.verdicts()[1]


def test_a_one_sided_plan_that_disagrees_is_refused_and_its_result_replaced(monkeypatch, fresh_verdicts):
    """An engine whose one-sided results are wrong (one output row off, as a plan that ignores the
    post-padding could be): the check finds it, warns, writes the padded copy's result instead, and
    the problem runs from the copy on later calls; every result equals the reference."""
    from cudnnconv import params
    _numpy_layouts(monkeypatch)
    lay = params.CHANNELS_LAST
    g = _g(n=1, in_channels=2, out_channels=2, spatial=(16, 4), kernel=(3, 3), pad_lo=(1, 1), pad_hi=(1, 1),
           index_limit=2 * 9 * 6)
    plan, tiles = _one_sided_plan(lay, g)

    class Wrong(_OneSidedEngine):
        def run(self, op, x, w, y, geom, *a, **kw):
            tag = super().run(op, x, w, y, geom, *a, **kw)
            if params.one_sided(geom.padding):
                out = {"forward": y, "backward_data": x, "backward_filter": w}[op]
                out[:, :, :1] += 1.0
            return tag
    rng = numpy.random.default_rng(11)
    x, w = _packed_in(rng.standard_normal((1, 2, 16, 4)), lay), rng.standard_normal((2, 2, 3, 3))
    pads = ((1, 1), (1, 1))
    gy = _packed_in(rng.standard_normal((1, 2, 16, 4)), lay)
    for op in ("forward", "backward_data", "backward_filter"):
        with pytest.warns(RuntimeWarning, match="disagreed with its padded copy"):
            got, want, _ = _run_op(op, plan, Wrong(10 ** 6, lay), x, w, gy, lay, (1, 2, 16, 4), 1, pads)
        numpy.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)
        eng = Wrong(10 ** 6, lay)
        got, want, _ = _run_op(op, plan, eng, x, w, gy, lay, (1, 2, 16, 4), 1, pads)
        numpy.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)
        assert not any(params.one_sided(p) for p in eng.paddings), op       # refused: straight to the copy
    trusted, refused = fresh_verdicts.verdicts()
    assert len(refused) == 6 and not trusted   # two edge tiles, three ops


def test_relative_error_and_bounds():
    from cudnnconv import one_sided
    a = numpy.arange(1.0, 13.0).reshape(1, 3, 4)
    assert one_sided.relative_error(a, a) == 0.0
    b = a.copy()
    b[0, 0, 0] += 1.0
    assert one_sided.relative_error(b, a) == pytest.approx(1.0 / numpy.linalg.norm(a))
    assert one_sided.relative_error(numpy.zeros(3), numpy.zeros(3)) == 0.0
    assert one_sided.relative_error(numpy.ones(3), numpy.zeros(3)) == float("inf")
    assert one_sided.bound("float32", True) > one_sided.bound("float32", False)
    assert one_sided.bound("float16", False) < 0.04 and one_sided.bound("bfloat16", False) < 0.04   # the 4% seen


def test_a_refused_one_sided_problem_falls_back_to_the_padded_copy(monkeypatch, fresh_verdicts):
    """Where the engine refuses a one-sided problem (a CuDNNError), that tile runs from a padded copy
    of its window with no padding, and the input gradient falls back to the sums over windows,
    written whole again; every result equals the reference."""
    from cudnnconv import params, tiled_calls
    from cudnnconv.core.status import CuDNNError
    _numpy_layouts(monkeypatch)
    lay = params.CHANNELS_LAST
    g = _g(n=1, in_channels=2, out_channels=2, spatial=(16, 4), kernel=(3, 3), pad_lo=(1, 1), pad_hi=(1, 1),
           index_limit=2 * 9 * 6)
    plan, tiles = _one_sided_plan(lay, g)
    refused = []

    class Refusing(_OneSidedEngine):
        def run(self, op, x, w, y, geom, *a, **kw):
            if params.one_sided(geom.padding):
                refused.append(op)
                raise CuDNNError(3000, "refused in this test")
            return super().run(op, x, w, y, geom, *a, **kw)
    rng = numpy.random.default_rng(9)
    x, w = _packed_in(rng.standard_normal((1, 2, 16, 4)), lay), rng.standard_normal((2, 2, 3, 3))
    pads = ((1, 1), (1, 1))
    y = _packed_in(numpy.full((1, 2, 16, 4), numpy.nan), lay)
    tiled_calls.run(Refusing(10 ** 6, lay), "forward", plan, x, w, y, _OPTS)
    numpy.testing.assert_allclose(y, conv(x, w, (1, 1), (1, 1), pads), rtol=1e-12, atol=1e-12)
    gy = _packed_in(rng.standard_normal((1, 2, 16, 4)), lay)
    gx = _packed_in(numpy.full((1, 2, 16, 4), numpy.nan), lay)
    tiled_calls.run(Refusing(10 ** 6, lay), "backward_data", plan, gx, w, gy, _OPTS)
    numpy.testing.assert_allclose(gx, conv_backward_input(gx.shape, w, gy, (1, 1), (1, 1), pads), rtol=1e-11,
                                  atol=1e-11)
    gw = numpy.full(w.shape, numpy.nan)
    tiled_calls.run(Refusing(10 ** 6, lay), "backward_filter", plan, x, gw, gy, _OPTS)
    numpy.testing.assert_allclose(gw, conv_backward_weight(x, w.shape, gy, (1, 1), (1, 1), pads), rtol=1e-11,
                                  atol=1e-11)
    assert set(refused) == {"forward", "backward_data", "backward_filter"}


def test_the_one_sided_engine_is_the_graph_engine_or_autos_first():
    import types
    from cudnnconv import tiled_calls
    graph_like = types.SimpleNamespace(ONE_SIDED_PADDING=True, ENGINE="graph")
    legacy_like = types.SimpleNamespace(ENGINE="legacy")
    assert tiled_calls.one_sided_engine(graph_like) is graph_like
    assert tiled_calls.one_sided_engine(legacy_like) is None
    assert tiled_calls.one_sided_engine(types.SimpleNamespace(first=graph_like, second=legacy_like)) is graph_like
    assert tiled_calls.one_sided_engine(types.SimpleNamespace(first=legacy_like, second=graph_like)) is None


def test_one_sided_problems_are_never_written_to_the_tuning_file(monkeypatch):
    """A tile's one-sided key has no call to replay and no form in the file: saving the caches
    skips it and keeps the same problem's symmetric key."""
    import types
    from cudnnconv import params, tuning
    opts = types.SimpleNamespace(deterministic=False, allow_tf32=True, workspace_limit=None)
    geom = params.Geometry(2, (1, 1), (1, 1), (1, 1), 1, (0, 0))
    sym = params.make_key("forward", "graph", 0, 0, (1, 2, 8, 8), (2, 2, 3, 3), "NCHW", geom, opts, (16, 16, 16))
    one = sym._replace(padding=((1, 0), (1, 1)))
    monkeypatch.setattr(tuning, "codec", lambda engine: (lambda choice, key: {"tag": "t"},))
    monkeypatch.setattr(tuning, "_env_here", lambda device, memo: {"device": device})
    got = tuning._records_from_caches(only=[(sym, object()), (one, object())])
    assert [k for _, k, _, _ in got] == [sym]


def test_a_padding_error_on_the_edge_planes_of_a_long_tile_is_caught(fresh_verdicts):
    """Over the whole of a 4000-plane tile, one edge plane 30% off is a relative error of about
    5e-3, under the float16 bound; over the planes within the kernel's reach of the one-sided edge
    it is about 0.17, and the plan is refused.  A correct result (one rounding apart) agrees."""
    rng = numpy.random.default_rng(12)
    want = rng.standard_normal((1, 2, 4000, 3)).astype(numpy.float16)
    got = want.copy()
    got[:, :, 0] = (got[:, :, 0].astype(numpy.float32) * 1.3).astype(numpy.float16)
    pads = ((1, 0), (1, 1))
    slabs = fresh_verdicts.edge_slabs(got.shape, pads, (3, 3))
    assert len(slabs) == 2 and got[slabs[0]].shape == (1, 2, 3, 3) and got[slabs[1]].shape == (1, 2, 3, 3)
    assert fresh_verdicts.relative_error(got, want) < fresh_verdicts.bound("float16", False)
    from cudnnconv import params
    geom = params.Geometry(2, (1, 1), pads, (1, 1), 1, (0, 0))
    key = params.make_key("forward", "graph", 0, params.cudnn_dtype(want.dtype), (1, 2, 4000, 3), (2, 2, 3, 3),
                          params.CHANNELS_LAST, geom, _OPTS)
    with pytest.warns(RuntimeWarning, match="disagreed"):
        assert not fresh_verdicts.judge(key, "t", got, want, slabs)
    near = (want.astype(numpy.float32) * (1 + 2e-3)).astype(numpy.float16)           # a rounding or two apart
    assert fresh_verdicts.judge(key._replace(device=1), "t", near, want, slabs)
    trusted, refused = fresh_verdicts.verdicts()
    assert trusted == {key._replace(device=1): frozenset({"t"})}
    assert list(refused) == [key] and refused[key].startswith("plan t gave relative error 0.1")
    refused.clear()                                                                 # a copy
    assert fresh_verdicts.refused(key) and fresh_verdicts.trusted(key._replace(device=1), "t")
    assert fresh_verdicts.edge_slabs(got.shape, ((1, 1), (0, 0)), (3, 3)) == []    # symmetric: no edge
