"""The demo (python3 -m cudnnconv): its float64 references, checked on the
CPU with NumPy against naive loops, and its no-GPU behaviour."""
import itertools
import subprocess
import sys

import numpy
import pytest

import cudnnconv
from cudnnconv import demo


def naive_forward(x, w, stride, padding, dilation):
    n, c, h, wd = x.shape
    k, _, kh, kw = w.shape
    ho = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    wo = (wd + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    y = numpy.zeros((n, k, ho, wo))
    for b, o, i, j in itertools.product(range(n), range(k), range(ho), range(wo)):
        acc = 0.0
        for ci, r, s in itertools.product(range(c), range(kh), range(kw)):
            hi, wi = i * stride - padding + r * dilation, j * stride - padding + s * dilation
            if 0 <= hi < h and 0 <= wi < wd:
                acc += x[b, ci, hi, wi] * w[o, ci, r, s]
        y[b, o, i, j] = acc
    return y


GEOMS = [(1, 0, 1), (2, 1, 1), (1, 2, 2), (3, 1, 2)]
RNG = numpy.random.default_rng(1)


@pytest.mark.parametrize("stride,padding,dilation", GEOMS)
def test_reference_forward_matches_naive_loops(stride, padding, dilation):
    x, w = RNG.standard_normal((2, 3, 7, 8)), RNG.standard_normal((4, 3, 3, 2))
    got = demo.ref_forward(numpy, x, w, stride, padding, dilation)
    numpy.testing.assert_allclose(got, naive_forward(x, w, stride, padding, dilation), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride,padding,dilation", GEOMS)
def test_reference_backward_is_the_adjoint_of_forward(stride, padding, dilation):
    """<conv(x, w), g> == <x, bwd_input(g)> == <w, bwd_weight(g)>."""
    x, w = RNG.standard_normal((2, 3, 9, 8)), RNG.standard_normal((5, 3, 3, 2))
    y = demo.ref_forward(numpy, x, w, stride, padding, dilation)
    g = RNG.standard_normal(y.shape)
    gx = demo.ref_backward_input(numpy, x.shape, w, g, stride, padding, dilation)
    gw = demo.ref_backward_weight(numpy, x, w.shape, g, stride, padding, dilation)
    assert gx.shape == x.shape and gw.shape == w.shape
    lhs = float((y * g).sum())
    assert abs(lhs - float((x * gx).sum())) <= 1e-9 * max(1.0, abs(lhs))
    assert abs(lhs - float((w * gw).sum())) <= 1e-9 * max(1.0, abs(lhs))


def test_rel_error():
    ref = numpy.array([1.0, -4.0, 2.0])
    assert demo.rel_error(numpy, ref.copy(), ref) == 0.0
    assert demo.rel_error(numpy, ref + numpy.array([0.0, 0.4, 0.0]), ref) == pytest.approx(0.1)


def test_demo_cases_are_valid_problems():
    from cudnnconv import params
    for label, dtype, layout, n, c, h, wd, k, ks, stride, padding, dilation in demo.CASES:
        _, out = params.conv_geometry((n, c, h, wd), (k, c, ks, ks), stride, padding, dilation, 1)
        assert out[:2] == (n, k), label
        assert dtype in demo.TOLERANCE and layout in ("NCHW", "NHWC")
    assert {c[1] for c in demo.CASES} == {"float16", "float32"}
    assert {(c[1], c[2]) for c in demo.CASES} >= {("float16", "NHWC"), ("float32", "NCHW")}


@pytest.mark.skipif(cudnnconv.cuda_available(), reason="checks the message shown without a GPU")
def test_demo_without_gpu_prints_one_line_and_exits_0():
    res = subprocess.run([sys.executable, "-m", "cudnnconv"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("no CUDA GPU/driver available: ")
    assert demo.gpu_unavailable_reason() is not None


def test_describe_choice():
    assert demo.describe_choice(None) == "-"
    assert demo.describe_choice({"engine": "legacy", "choices": []}) == "-"
    legacy = {"engine": "legacy", "choices": [
        {"engine": "legacy", "algo": 1, "algo_name": "IMPLICIT_PRECOMP_GEMM", "math_type": "FMA_MATH",
         "benchmarked": False}]}
    assert demo.describe_choice(legacy) == "legacy:IMPLICIT_PRECOMP_GEMM FMA_MATH (heuristic)"
    graph = {"engine": "graph", "choices": [
        {"engine": "graph", "tag": "eng62", "numerical_notes": ["TENSOR_CORE"], "benchmarked": True}] * 3}
    assert demo.describe_choice(graph) == "graph:eng62 TENSOR_CORE (benchmarked, 3 chunks)"
