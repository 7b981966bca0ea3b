"""Errors cuDNN raises (status name and repro line), cross-device arrays, and
the choice cache's observability."""
import pytest

import cudnnconv
import reference as ref
from gpu_cases import ENGINES

pytestmark = pytest.mark.gpu

cupy = pytest.importorskip("cupy")


@pytest.mark.parametrize("engine", ENGINES)
def test_arrays_on_two_devices(engine):
    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs")
    with cupy.cuda.Device(0):
        x = ref.random((1, 2, 5, 5), "float32")
    with cupy.cuda.Device(1):
        w = ref.random((2, 2, 3, 3), "float32")
    with pytest.raises(ValueError, match="device"):
        cudnnconv.conv(x, w, engine=engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_second_device_runs(engine):
    """A whole call on device 1 runs there and is correct."""
    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs")
    with cupy.cuda.Device(1):
        x = ref.random((2, 3, 6, 6), "float64")
        w = ref.random((4, 3, 3, 3), "float64")
        expect = ref.conv(x, w, padding=1)
    y = cudnnconv.conv(x, w, padding=1, engine=engine)
    assert y.device.id == 1
    with cupy.cuda.Device(1):
        assert ref.rel_error(y, expect) <= 1e-10


def _engine_module(engine):
    from cudnnconv import engine_registry
    return getattr(engine_registry, engine)


@pytest.mark.parametrize("deterministic", [True, False], ids=["default_algo", "search"])
@pytest.mark.parametrize("engine", ENGINES)
def test_cudnn_rejection_carries_status_and_repro(engine, deterministic):
    """A problem cuDNN itself rejects (descriptors that disagree: an output
    whose shape is not the convolution's) raises CuDNNError naming the status
    and carrying a runnable repro line.  The public API checks shapes before
    cuDNN sees them, so this goes one level down, to the engine's run() with
    the arguments api.py passes it."""
    from cudnnconv import options, params
    mod = _engine_module(engine)
    x = ref.random((2, 4, 8, 8), "float32")
    w = ref.random((6, 4, 3, 3), "float32")
    geom, yshape = params.conv_geometry(x.shape, w.shape, 1, 1, 1, 1)
    y_bad = cupy.empty((2, 6, 5, 7), dtype="float32")    # should be (2, 6, 8, 8)
    opts = options.resolve(benchmark=False, deterministic=deterministic, allow_tf32=False, engine=engine)
    repro = ("conv", [("input", x.shape), ("weight", w.shape)], x.dtype, params.NCHW,
             [("padding", (1, 1)), ("engine", engine)])
    cudnnconv.clear_cache()
    with pytest.raises(cudnnconv.CuDNNError) as info:
        mod.run("forward", x, w, y_bad, geom, opts, params.NCHW, x.device.id, repro)
    msg = str(info.value)
    assert "CUDNN_STATUS_" in msg, msg
    assert info.value.name.startswith("CUDNN_STATUS_")
    assert "repro:" in msg, msg
    line = msg.split("repro:", 1)[1].strip().splitlines()[0]
    assert "cudnnconv.conv(" in line
    compile(line, "<repro>", "exec")           # the repro line is valid Python
    # Pickles with everything.
    import pickle
    e2 = pickle.loads(pickle.dumps(info.value))
    assert str(e2) == msg
    cudnnconv.clear_cache()


@pytest.mark.parametrize("engine", ENGINES)
def test_fused_refusal_is_cudnn_error(engine):
    """fusion='fused' either fuses or raises a CuDNNError with the status and a repro line."""
    x = ref.random((1, 3, 7, 7, 7), "float64", "channels_last")
    w = ref.random((6, 1, 3, 3, 3), "float64", "channels_last")
    z = ref.random((1, 6, 7, 7, 7), "float64", "channels_last")
    b = ref.random((6,), "float64")
    expect = ref.conv_bias_add_relu(x, w, z, 0.3, b, padding=1, dilation=1, groups=3)
    try:
        y = cudnnconv.conv_bias_add_relu(x, w, z, 0.3, b, padding=1, groups=3, fusion="fused",
                                         engine=engine)
    except cudnnconv.CuDNNError as e:
        assert "CUDNN_STATUS_" in str(e) and "repro:" in str(e), str(e)
        y = cudnnconv.conv_bias_add_relu(x, w, z, 0.3, b, padding=1, groups=3, fusion="auto", engine=engine)
        assert cudnnconv.last_call()["path"] == "composed"
    else:
        assert cudnnconv.last_call()["path"] == "fused"
    assert ref.rel_error(y, expect) <= 1e-10


@pytest.mark.parametrize("engine", ENGINES)
def test_cache_entry_and_hit(engine):
    cudnnconv.clear_cache()
    x = ref.random((2, 4, 9, 9), "float32")
    w = ref.random((8, 4, 3, 3), "float32")
    info0 = cudnnconv.cache_info()[engine]
    assert info0.size == 0 and info0.hits == 0
    y1 = cudnnconv.conv(x, w, padding=1, allow_tf32=False, engine=engine)
    info1 = cudnnconv.cache_info()[engine]
    assert info1.size >= 1, info1
    assert info1.misses >= 1, info1
    y2 = cudnnconv.conv(x, w, padding=1, allow_tf32=False, engine=engine)
    info2 = cudnnconv.cache_info()[engine]
    assert info2.hits == info1.hits + 1, (info1, info2)
    assert info2.size == info1.size
    assert info2.misses == info1.misses
    assert ref.rel_error(y2, ref.conv(x, w, padding=1)) <= 1e-5
    assert bool((ref.bits(y1) == ref.bits(y2)).all())
    # A different problem (another dtype) is another entry; benchmark=True
    # does not take the heuristic entry as its answer.
    cudnnconv.conv(x.astype("float64"), w.astype("float64"), padding=1, engine=engine)
    assert cudnnconv.cache_info()[engine].size == info2.size + 1
    cudnnconv.clear_cache()
    info3 = cudnnconv.cache_info()[engine]
    assert (info3.size, info3.hits, info3.misses) == (0, 0, 0)


@pytest.mark.parametrize("engine", ENGINES)
def test_cache_per_direction(engine):
    """Each direction is its own entry; repeats of each are hits."""
    cudnnconv.clear_cache()
    x = ref.random((2, 4, 9, 9), "float32")
    w = ref.random((8, 4, 3, 3), "float32")
    gy = ref.random((2, 8, 9, 9), "float32")
    for _ in range(2):
        cudnnconv.conv(x, w, padding=1, engine=engine)
        cudnnconv.conv_backward_input(x.shape, w, gy, padding=1, engine=engine)
        cudnnconv.conv_backward_weight(x, w.shape, gy, padding=1, engine=engine)
    info = cudnnconv.cache_info()[engine]
    assert info.size == 3, info
    assert info.hits == 3, info
    cudnnconv.clear_cache()
