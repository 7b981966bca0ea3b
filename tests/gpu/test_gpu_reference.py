"""Checks of the float64 reference itself.

The CPU part runs everywhere (NumPy): the reference against a brute-force
sum over every output element, and the adjoint identities between forward,
backward-input, backward-weight and transposed.  The GPU part compares the
reference with PyTorch's float64 convolutions, a second, outside check.
"""
import itertools

import numpy
import pytest

import reference as ref

RNG = numpy.random.default_rng(1234)


def _brute(x, w, stride, pads, dil, groups):
    n, _ = x.shape[:2]
    k, cg = w.shape[:2]
    nsp = x.ndim - 2
    xp = numpy.pad(x, [(0, 0), (0, 0)] + pads)
    out_sp = [(xp.shape[2 + i] - dil[i] * (w.shape[2 + i] - 1) - 1) // stride[i] + 1 for i in range(nsp)]
    y = numpy.zeros((n, k) + tuple(out_sp))
    for b, kk in itertools.product(range(n), range(k)):
        gi = kk // (k // groups)
        for pos in itertools.product(*map(range, out_sp)):
            s = 0.0
            for c in range(cg):
                for o in itertools.product(*map(range, w.shape[2:])):
                    idx = tuple(p * st + oo * d for p, st, oo, d in zip(pos, stride, o, dil))
                    s += xp[(b, gi * cg + c) + idx] * w[(kk, c) + o]
            y[(b, kk) + pos] = s
    return y


CPU_CASES = [
    ((2, 4, 9), (6, 2, 3), (2,), 1, (1,), 2),
    ((2, 4, 7, 8), (4, 2, 2, 3), (1, 2), 1, (2, 1), 2),
    ((1, 3, 5, 6, 4), (2, 3, 2, 2, 3), (1, 1, 1), "same", (1, 2, 1), 1),
    ((2, 4, 7, 6), (4, 1, 4, 3), (1, 1), "same", (1, 1), 4),
    ((1, 2, 8, 7), (2, 2, 2, 4), (1, 1), "same", (3, 1), 1),
]


@pytest.mark.parametrize("case", CPU_CASES, ids=[str(c[0]) for c in CPU_CASES])
def test_reference_forward_brute_force_and_adjoints(case):
    xs, wsh, stride, padding, dil, groups = case
    x, w = RNG.standard_normal(xs), RNG.standard_normal(wsh)
    y = ref.conv(x, w, None, stride, padding, dil, groups)
    yb = _brute(x, w, stride, ref.pads_for(padding, wsh[2:], dil), dil, groups)
    assert y.shape == yb.shape == ref.conv_out_shape(xs, wsh, stride, padding, dil)
    assert numpy.abs(y - yb).max() <= 1e-12 * numpy.abs(yb).max()
    g = RNG.standard_normal(y.shape)
    lhs = float((y * g).sum())
    gw = ref.conv_backward_weight(x, wsh, g, stride, padding, dil, groups)
    assert abs(lhs - float((w * gw).sum())) <= 1e-12 * numpy.linalg.norm(y) * numpy.linalg.norm(g)
    pads = ref.pads_for(padding, wsh[2:], dil)
    if all(a == b for a, b in pads):
        gx = ref.conv_backward_input(xs, w, g, stride, padding, dil, groups)
        assert abs(lhs - float((x * gx).sum())) <= 1e-12 * numpy.linalg.norm(y) * numpy.linalg.norm(g)


T_CASES = [((2, 4, 5, 6), (4, 3, 3, 3), 2, 1, 1, 1, 1), ((2, 4, 5), (4, 2, 3), 3, 0, 2, 2, 1),
           ((1, 4, 3, 4, 3), (4, 1, 2, 3, 2), (2, 1, 2), (1, 0, 0), (1, 0, 0), 2, (1, 2, 1)),
           ((2, 2, 5, 5), (2, 3, 3, 3), 1, 1, 1, 1, 2)]


@pytest.mark.parametrize("case", T_CASES, ids=[str(c[0]) for c in T_CASES])
def test_reference_transpose_is_backward_input(case):
    """The transposed definition (scatter) equals the adjoint of forward, computed separately."""
    xs, wsh, st, pad, op, g, dil = case
    x, w = RNG.standard_normal(xs), RNG.standard_normal(wsh)
    y = ref.conv_transpose(x, w, None, st, pad, op, g, dil)
    osh = ref.transpose_out_shape(xs, wsh, st, pad, op, g, dil)
    assert y.shape == osh
    gx = ref.conv_backward_input(osh, w, x, st, pad, dil, g)
    assert numpy.abs(y - gx).max() <= 1e-12 * numpy.abs(gx).max()


@pytest.mark.gpu
@pytest.mark.parametrize("case", CPU_CASES[:2] + CPU_CASES[3:4], ids=[str(c[0]) for c in CPU_CASES[:2] + CPU_CASES[3:4]])
def test_reference_matches_torch_float64(case):
    torch = pytest.importorskip("torch")
    import cupy
    xs, wsh, stride, padding, dil, groups = case
    x = torch.randn(*xs, dtype=torch.float64, device="cuda")
    w = torch.randn(*wsh, dtype=torch.float64, device="cuda")
    f = {3: torch.nn.functional.conv1d, 4: torch.nn.functional.conv2d, 5: torch.nn.functional.conv3d}[len(xs)]
    yt = f(x, w, None, stride, padding, dil, groups)
    y = ref.conv(cupy.asarray(x), cupy.asarray(w), None, stride, padding, dil, groups)
    assert ref.rel_error(cupy.asarray(yt), y) <= 1e-12
    ft = {3: torch.nn.functional.conv_transpose1d, 4: torch.nn.functional.conv_transpose2d}
    if len(xs) in ft and padding != "same":
        wt = torch.randn(xs[1], 3, *wsh[2:], dtype=torch.float64, device="cuda")
        yt = ft[len(xs)](x, wt, None, stride, padding, 0, groups, dil)
        y = ref.conv_transpose(cupy.asarray(x), cupy.asarray(wt), None, stride, padding, 0, groups, dil)
        assert ref.rel_error(cupy.asarray(yt), y) <= 1e-12
