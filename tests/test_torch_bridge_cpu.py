"""cudnnconv.torch.bridge's stream choice on the CPU (skipped without torch): a call enters nothing
where CuPy's current device and stream already are the tensor's device and torch's current stream,
and otherwise enters CuPy's device and a CuPy stream over torch's (Stream.from_external with the
CUDA stream protocol, or ExternalStream on a CuPy without it).  CuPy and torch's stream getter are
replaced by recorders; tests/gpu/test_gpu_torch.py runs the real thing."""
import types

import pytest

torch = pytest.importorskip("torch", reason="cudnnconv.torch's tests need PyTorch")
pytest.importorskip("cudnnconv.torch")
from cudnnconv.torch import bridge  # noqa: E402


class _Ctx:
    def __init__(self, log, name):
        self.log, self.name = log, name

    def __enter__(self):
        self.log.append(("enter", self.name))

    def __exit__(self, *a):
        self.log.append(("exit", self.name))


def _fake_cupy(log, current_ptr, from_external=True):
    def device(index):
        return _Ctx(log, ("device", index))

    class Stream:
        pass

    if from_external:
        def from_external(obj):
            log.append(("from_external", obj.__cuda_stream__()))
            return _Ctx(log, "stream")
        Stream.from_external = staticmethod(from_external)

    def external(ptr, index):
        log.append(("ExternalStream", ptr, index))
        return _Ctx(log, "stream")
    cuda = types.SimpleNamespace(Device=device, Stream=Stream, ExternalStream=external,
                                 get_current_stream=lambda: types.SimpleNamespace(ptr=current_ptr))
    return types.SimpleNamespace(cuda=cuda)


@pytest.fixture
def world(monkeypatch):
    """torch's current raw stream is 0xabc on every device; records what runs_on was asked."""
    asked = []
    monkeypatch.setattr(bridge, "_raw_stream", lambda index: 0xABC)
    return asked


def test_nothing_is_entered_where_cupy_already_runs_on_torchs_device_and_stream(monkeypatch, world):
    monkeypatch.setattr(bridge, "_runs_on", lambda d, s: world.append((d, s)) or True)
    t = torch.zeros(2)
    assert bridge.on_torch_stream(t) is bridge._NOTHING
    assert world == [(t.get_device(), 0xABC)]
    with bridge.on_torch_stream(t):                    # the shared no-op context nests and re-enters
        with bridge.on_torch_stream(t):
            pass


@pytest.mark.parametrize("from_external", [True, False])
def test_elsewhere_the_call_enters_cupys_device_and_a_stream_over_torchs(monkeypatch, world, from_external):
    log = []
    monkeypatch.setattr(bridge, "_runs_on", lambda d, s: False)
    monkeypatch.setattr(bridge, "cupy", _fake_cupy(log, current_ptr=0x111, from_external=from_external))
    t = torch.zeros(2)
    with bridge.on_torch_stream(t):
        log.append("call")
    made = ("from_external", (0, 0xABC)) if from_external else ("ExternalStream", 0xABC, t.get_device())
    assert log == [("enter", ("device", t.get_device())), made, ("enter", "stream"), "call", ("exit", "stream"),
                   ("exit", ("device", t.get_device()))]


def test_only_the_device_is_entered_where_cupys_stream_there_already_is_torchs(monkeypatch, world):
    log = []
    monkeypatch.setattr(bridge, "_runs_on", lambda d, s: False)
    monkeypatch.setattr(bridge, "cupy", _fake_cupy(log, current_ptr=0xABC))
    t = torch.zeros(2)
    with bridge.on_torch_stream(t):
        log.append("call")
    assert log == [("enter", ("device", t.get_device())), "call", ("exit", ("device", t.get_device()))]


def test_torchs_stream_falls_back_to_its_public_getter(monkeypatch):
    monkeypatch.setattr(bridge, "_raw_stream", None)
    monkeypatch.setattr(bridge.torch.cuda, "current_stream", lambda index: types.SimpleNamespace(cuda_stream=77 + index))
    assert bridge.torch_stream(3) == 80


@pytest.mark.parametrize("bench", [False, True])          # not "benchmark": pytest-benchmark's fixture name
@pytest.mark.parametrize("det", [False, True])
@pytest.mark.parametrize("algorithms", [False, True])
@pytest.mark.parametrize("tf32", [False, True])
def test_torchs_flags_read_through_its_c_getters_equal_its_public_properties(bench, det, algorithms, tf32):
    cudnn = torch.backends.cudnn
    old = (cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32, torch.are_deterministic_algorithms_enabled())
    try:
        cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32 = bench, det, tf32
        torch.use_deterministic_algorithms(algorithms)
        want = (bench, det or algorithms, tf32)
        assert bridge.torch_flags() == want
        assert bridge._public_flags() == want
        assert bridge.call_flags() == want + (None, None)   # outside a cudnnconv.flags() block
        assert bridge.flag_kwargs(bridge.call_flags()) == {"benchmark": bench, "deterministic": det or algorithms,
                                                            "allow_tf32": tf32}
    finally:
        cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32 = old[:3]
        torch.use_deterministic_algorithms(old[3])


def test_inside_a_flags_block_a_call_takes_the_blocks_flags_spelled_out():
    import cudnnconv
    with cudnnconv.flags(benchmark=True, deterministic=True):
        assert bridge.call_flags() == (True, True, True, None, "auto")
        assert bridge.flag_kwargs(bridge.call_flags()) == {"benchmark": True, "deterministic": True,
                                                           "allow_tf32": True, "engine": "auto"}
        with cudnnconv.flags(allow_tf32=False, workspace_limit=4096, engine="graph"):
            assert bridge.call_flags() == (False, False, False, 4096, "graph")
            assert bridge.flag_kwargs(bridge.call_flags()) == {"benchmark": False, "deterministic": False,
                                                               "allow_tf32": False, "workspace_limit": 4096,
                                                               "engine": "graph"}
    assert bridge.call_flags()[:3] == bridge.torch_flags()
    assert bridge.flag_kwargs(bridge.NO_FLAGS) == {}


def test_flags_spelled_out_resolve_as_the_block_does_on_a_thread_without_it():
    """What the block's flags spelled out resolve to on a thread outside the block (autograd's
    backward thread) equals what the block resolves to where it applies."""
    import threading

    import cudnnconv
    from cudnnconv import options
    with cudnnconv.flags(benchmark=True, deterministic=True, workspace_limit=1 << 20, engine="legacy"):
        flags, inside = bridge.call_flags(), options.resolve()
    got = []
    t = threading.Thread(target=lambda: got.append(options.resolve(**bridge.flag_kwargs(flags))))
    t.start()
    t.join()
    assert got == [inside] and inside == options.Options(True, True, True, 1 << 20, "legacy")


def test_run_hands_the_typed_path_torchs_stream_and_its_dtype_table(monkeypatch):
    got = []
    monkeypatch.setattr(bridge, "_raw_stream", lambda index: 0x100 + index)
    monkeypatch.setattr(bridge, "_run_strided", lambda *a: got.append(a) or True)
    tensors, out, scalars, flags = ("x", "w", None), "y", ((1, 1), (0, 0), (1, 1), 1), bridge.NO_FLAGS
    assert bridge.run(bridge.CONV, tensors, out, scalars, flags, 2) is True
    assert got == [(bridge.CONV, tensors, out, scalars, flags, bridge._STRIDED, 0x102)]
    for dt, (npdt, itemsize) in bridge._STRIDED.items():
        assert npdt is bridge._DTYPES[dt] and itemsize == torch.empty(0, dtype=dt).element_size()


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("make", [lambda t: t, lambda t: t.to(memory_format=torch.channels_last),
                                  lambda t: t[:, 1:3, ::2], lambda t: t[:1].expand(3, -1, -1, -1),
                                  lambda t: t.permute(0, 2, 3, 1), lambda t: t[:, :0], lambda t: t[1, 2]],
                         ids=["contiguous", "channels_last", "sliced", "expanded", "permuted", "empty", "2d"])
def test_the_typed_path_reads_a_tensor_as_its_views_signature(dtype, make):
    """callplan.run_strided reads a torch tensor (through its own accessors) as exactly the signature
    of the CuPy view bridge.as_array makes over it: the same plan is found either way.  A CPU
    tensor's address stands in for a GPU one (nothing reads it)."""
    pytest.importorskip("cupy", reason="the view is a CuPy array")
    from cudnnconv import callplan

    t = make(torch.randn(2, 4, 6, 5, dtype=dtype))

    class OnDevice0:                      # what both read of a tensor
        shape = t.shape
        data_ptr, stride = t.data_ptr, t.stride

        def __init__(self):
            self.dtype = t.dtype

        def get_device(self):
            return 0

    got = callplan.strided_signature(OnDevice0(), bridge._STRIDED)
    assert got is not None and got == callplan.array_signature(bridge.as_array(OnDevice0()))
    assert got[0] == tuple(t.shape) and got[3] == t.data_ptr() and got[4] == 0


@pytest.mark.parametrize("x_shape,w_shape,fmt,out_shape,expect_fmt", [
    ((2, 3, 8, 8), (4, 3, 3, 3), torch.channels_last, (2, 4, 6, 6), torch.channels_last),
    ((2, 3, 8, 8), (4, 3, 3, 3), None, (2, 4, 6, 6), torch.contiguous_format),
    ((1, 3, 8, 8), (1, 3, 8, 8), torch.channels_last, (1, 1, 1, 1), torch.channels_last),  # size-1 dims
    # an empty batch is contiguous in every format, so it reads as plain (as the format rule has it)
    ((0, 3, 8, 8), (4, 3, 3, 3), torch.channels_last, (0, 4, 6, 6), torch.contiguous_format),
    ((2, 3, 4, 8, 8), (4, 3, 3, 3, 3), torch.channels_last_3d, (2, 4, 2, 6, 6), torch.channels_last_3d),
    ((2, 3, 16), (4, 3, 3), None, (2, 4, 14), torch.contiguous_format),
])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_the_output_has_the_strides_torch_empty_gives_its_format_first_call_and_cached(x_shape, w_shape, fmt,
                                                                                       out_shape, expect_fmt, dtype):
    # the first call of a (shape, format) asks torch.empty; later calls take its strides from the memo
    # through new_empty_strided: both must be what torch.empty with that memory format gives, in the
    # input's dtype (not torch's default one)
    bridge._STRIDES.clear()
    x = (torch.empty(x_shape, dtype=dtype).contiguous(memory_format=fmt) if fmt is not None
         else torch.empty(x_shape, dtype=dtype))
    w = torch.empty(w_shape, dtype=dtype)
    expect = torch.empty(out_shape, memory_format=expect_fmt).stride()
    for _ in range(2):
        y = bridge.empty_like_layout(out_shape, x, w)
        assert (tuple(y.shape), y.stride(), y.dtype, y.device) == (out_shape, expect, dtype, x.device)
    assert bridge._STRIDES == {(out_shape, expect_fmt): expect}


def test_a_channels_last_weight_makes_a_channels_last_output_where_the_input_is_plain():
    x = torch.empty(2, 3, 8, 8)
    w = torch.empty(4, 3, 3, 3).contiguous(memory_format=torch.channels_last)
    for _ in range(2):
        y = bridge.empty_like_layout((2, 4, 6, 6), x, w)
        assert y.stride() == (144, 1, 24, 4)
