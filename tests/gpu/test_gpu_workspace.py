"""The workspace a cached choice runs with, on a GPU: under CUDA-graph capture, and on two streams.

cudnnconv.workspace.kept_pointer keeps one workspace block per stream with each choice (the legacy
engine's choices only for calls under capture; outside, a block per call).  Two defects it
prevents, each shown here with both engines and the three directions:

- A call captured into a CUDA graph runs at every replay on the workspace pointer it had at
  capture.  A block taken for the call and handed back to CuPy's pool right after would, by the
  replay, belong to another array: the replay would write the workspace over that array.  The test
  fills arrays of the workspace's size (which the pool serves from the block the call would have
  freed) with a pattern, replays, and checks both the pattern and the result.
- Two streams running the same problem at once must not share one block.
"""
import numpy
import pytest

import cudnnconv
import reference as ref

pytestmark = pytest.mark.gpu

cupy = pytest.importorskip("cupy")

ENGINES = cudnnconv.build_info()["engines"]
DIRECTIONS = ("forward", "backward_data", "backward_filter")
# Problems whose algorithms usually take a workspace (a case whose choice needs none is skipped);
# stride 1 and 'same' padding, so that the output has the input's spatial size.
PROBLEMS = {
    "fp32_5x5": ((8, 32, 33, 33), (32, 32, 5, 5), dict(padding=2), "float32", "nchw"),
    "fp16_3x3_nhwc": ((16, 64, 28, 28), (64, 64, 3, 3), dict(padding=1), "float16", "channels_last"),
}


def _call(direction, engine, x, w, gy, kw, out):
    if direction == "forward":
        return cudnnconv.conv(x, w, out=out, engine=engine, **kw)
    if direction == "backward_data":
        return cudnnconv.conv_backward_input(x.shape, w, gy, out=out, engine=engine, **kw)
    return cudnnconv.conv_backward_weight(x, w.shape, gy, out=out, engine=engine, **kw)


def _expect(direction, x, w, gy, kw):
    if direction == "forward":
        return ref.conv(x, w, **kw)
    if direction == "backward_data":
        return ref.conv_backward_input(x.shape, w, gy, **kw)
    return ref.conv_backward_weight(x, w.shape, gy, **kw)


def _problem(name, direction):
    xs, ws, kw, dtype, layout = PROBLEMS[name]
    x = ref.random(xs, dtype, layout)
    w = ref.random(ws, dtype, layout, scale=0.2)
    gy = ref.random((xs[0], ws[0]) + tuple(xs[2:]), dtype, layout)
    out_shape = {"forward": gy.shape, "backward_data": x.shape, "backward_filter": w.shape}[direction]
    return x, w, gy, kw, dtype, layout, out_shape


def _choice(direction, engine, x, w, gy, kw):
    if direction == "forward":
        return cudnnconv.last_choice(x, w, engine=engine, **kw)
    return cudnnconv.last_choice(x, w, gy, direction=direction, engine=engine, **kw)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_replayed_capture_keeps_its_workspace(engine, direction, name):
    x, w, gy, kw, dtype, layout, out_shape = _problem(name, direction)
    out = ref.poisoned(out_shape, dtype, layout)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        _call(direction, engine, x, w, gy, kw, out)                       # warm-up: search and cache
        stream.synchronize()
        choice = _choice(direction, engine, x, w, gy, kw)
        assert choice is not None
        if choice.workspace <= 0:
            pytest.skip("the %s engine's choice (%s) takes no workspace here" % (engine, choice.describe()))
        out.fill(float("nan"))
        stream.begin_capture()
        _call(direction, engine, x, w, gy, kw, out)
        graph = stream.end_capture()
        stream.synchronize()
        assert bool(cupy.isnan(out).all())                               # captured, not run
        # Arrays of the workspace's size, taken after the capture: where a captured call had given its
        # block back to the pool, one of them is that block.
        nbytes = -(-choice.workspace // 8) * 8
        taken = [cupy.full(nbytes // 8, 0x5A5A5A5A5A5A5A5A, dtype=numpy.uint64) for _ in range(4)]
        x[...] = ref.random(x.shape, dtype, layout)
        gy[...] = ref.random(gy.shape, dtype, layout)
        graph.launch(stream)
        stream.synchronize()
    for a in taken:
        assert bool((a == 0x5A5A5A5A5A5A5A5A).all()), "the replay wrote over an array allocated after the capture"
    got_err = ref.rel_error(out, _expect(direction, x, w, gy, kw))
    assert got_err <= ref.tolerance(dtype, dtype == "float32"), got_err


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_two_streams_run_one_problem_on_their_own_blocks(engine, direction):
    cudnnconv.clear_cache()          # a fresh choice: one the capture test ran under capture keeps its block
    x, w, gy, kw, dtype, layout, out_shape = _problem("fp16_3x3_nhwc", direction)
    streams = [cupy.cuda.Stream(non_blocking=True) for _ in range(2)]
    inputs = []
    for s in streams:
        with s:
            inputs.append((ref.random(x.shape, dtype, layout), ref.random(gy.shape, dtype, layout),
                           ref.poisoned(out_shape, dtype, layout)))
    cupy.cuda.runtime.deviceSynchronize()
    for s, (xi, gyi, oi) in zip(streams, inputs):
        with s:
            _call(direction, engine, xi, w, gyi, kw, oi)
    cupy.cuda.runtime.deviceSynchronize()
    choice = _choice(direction, engine, x, w, gy, kw)
    if choice.workspace <= 0:
        pytest.skip("the %s engine's choice (%s) takes no workspace here" % (engine, choice.describe()))
    if not getattr(choice, "keeps_workspace", True):
        # the legacy engine: outside a capture a block per call, from CuPy's stream-ordered pool
        assert choice.ws_mem is None and not choice.ws_more
    else:
        blocks = {choice.ws_stream: choice.ws_mem.ptr}
        blocks.update({s: m.ptr for s, m in (choice.ws_more or {}).items()})
        assert set(blocks) >= {s.ptr for s in streams}, blocks
        assert len(set(blocks.values())) == len(blocks), "two streams share a workspace block"
    # Both streams at once, many times over: each result must still be its own input's.
    for i in range(20):
        for s, (xi, gyi, oi) in zip(streams, inputs):
            with s:
                oi.fill(float("nan"))
                _call(direction, engine, xi, w, gyi, kw, oi)
    cupy.cuda.runtime.deviceSynchronize()
    for xi, gyi, oi in inputs:
        err = ref.rel_error(oi, _expect(direction, xi, w, gyi, kw))
        assert err <= ref.tolerance(dtype), err
