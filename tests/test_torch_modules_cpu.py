"""cudnnconv.torch's modules and conversion on the CPU (skipped without torch): the same
constructor, parameters and state_dict keys as torch.nn's, checkpoints both ways, convert/revert in
place, and torch's own convolution for CPU tensors."""
import copy

import pytest

torch = pytest.importorskip("torch", reason="cudnnconv.torch's tests need PyTorch")
cct = pytest.importorskip("cudnnconv.torch")

CASES = [
    ("Conv1d", dict(in_channels=4, out_channels=6, kernel_size=3, padding=1, bias=True), (2, 4, 9)),
    ("Conv2d", dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=2, padding="valid",
                    padding_mode="reflect", groups=2), (2, 4, 9, 8)),
    ("Conv3d", dict(in_channels=2, out_channels=4, kernel_size=3, padding="same", dilation=2, bias=False),
     (1, 2, 7, 6, 5)),
    ("ConvTranspose1d", dict(in_channels=4, out_channels=2, kernel_size=4, stride=2, padding=1), (2, 4, 5)),
    ("ConvTranspose2d", dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, output_padding=1, groups=2),
     (1, 4, 5, 6)),
    ("ConvTranspose3d", dict(in_channels=2, out_channels=2, kernel_size=2, stride=2), (1, 2, 3, 3, 3)),
]


@pytest.mark.parametrize("name,kw,shape", CASES, ids=[c[0] for c in CASES])
def test_same_state_dict_both_ways_and_torchs_result_on_the_cpu(name, kw, shape):
    torch.manual_seed(0)
    theirs = getattr(torch.nn, name)(**kw)
    ours = getattr(cct, name)(**kw)
    assert isinstance(ours, getattr(torch.nn, name))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    back = getattr(torch.nn, name)(**kw)
    back.load_state_dict(ours.state_dict())
    assert repr(ours) == repr(theirs)
    x = torch.randn(shape)
    assert torch.equal(ours(x), theirs(x))            # a CPU tensor runs torch's own convolution
    assert torch.equal(back(x), theirs(x))


def test_convert_and_revert_swap_classes_in_place():
    class MyConv(torch.nn.Conv2d):                    # a user's subclass: may override forward, left alone
        pass

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 4, 2, stride=2), MyConv(4, 2, 1)),
                                torch.nn.Conv1d(2, 2, 1))
    params = {n: p for n, p in model.named_parameters()}
    before = copy.deepcopy(model.state_dict())
    assert cct.convert(model) is model
    assert type(model[0]) is cct.Conv2d and type(model[3][0]) is cct.ConvTranspose2d and type(model[4]) is cct.Conv1d
    assert type(model[3][1]) is MyConv and type(model[1]) is torch.nn.BatchNorm2d
    assert all(p is params[n] for n, p in model.named_parameters())     # the same Parameter objects
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert cct.revert(model) is model
    assert type(model[0]) is torch.nn.Conv2d and type(model[3][0]) is torch.nn.ConvTranspose2d
    assert type(model[3][1]) is MyConv
    assert all(p is params[n] for n, p in model.named_parameters())
    with pytest.raises(TypeError, match="torch.nn.Module"):
        cct.convert([model])


def test_functional_forms_refuse_cpu_tensors_by_name():
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    with pytest.raises(TypeError, match="input is on cpu"):
        cct.conv2d(x, w)
    with pytest.raises(TypeError, match="input must be a torch.Tensor"):
        cct.conv_transpose2d([1.0], w)


def test_the_configuration_is_cudnnconvs_own():
    import cudnnconv
    for name in ("flags", "explain", "save_tuning", "load_tuning", "clear_cache", "cache_info", "last_call"):
        assert getattr(cct, name) is getattr(cudnnconv, name)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("make", [lambda t: t, lambda t: t.to(memory_format=torch.channels_last),
                                  lambda t: t[:, 1:3, ::2], lambda t: t[:1].expand(3, -1, -1, -1)],
                         ids=["contiguous", "channels_last", "sliced", "expanded"])
def test_a_tensor_is_seen_as_the_cupy_array_cupys_constructor_makes(dtype, make):
    """bridge.as_array against CuPy's public constructor over the same memory (a CPU tensor's address
    stands in for a GPU one: nothing reads it), field for field."""
    import cupy
    from cudnnconv.torch import bridge

    t = make(torch.randn(2, 4, 6, 5, dtype=dtype))

    class OnDevice0:                                 # as_array reads these five things of a tensor
        dtype = t.dtype
        shape = t.shape
        data_ptr, stride = t.data_ptr, t.stride

        def get_device(self):
            return 0

    a = bridge.as_array(OnDevice0())
    size = t.element_size()
    strides = tuple(s * size for s in t.stride())
    extent = size + sum((n - 1) * s for n, s in zip(t.shape, strides))
    ref = cupy.ndarray(tuple(t.shape), bridge._DTYPES[t.dtype],
                       cupy.cuda.MemoryPointer(cupy.cuda.UnownedMemory(t.data_ptr(), extent, t, 0), 0), strides)
    for name in ("shape", "strides", "dtype", "size", "_c_contiguous", "_f_contiguous", "_index_32_bits"):
        assert getattr(a, name) == getattr(ref, name), name
    assert a.data.ptr == t.data_ptr() and a.data.mem.size == extent
