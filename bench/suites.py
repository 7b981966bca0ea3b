"""The built-in suites: the distinct conv layers of a few real networks.

Each suite is a function of the batch size returning a list of Layers, each
distinct shape once, with ``count`` = how many times the network uses it.
``--batch`` sets N for every suite but ``tiny``, whose shapes exist to
measure host overhead and keep N=1.
"""
from bench.spec import Layer

DEFAULT_BATCH = {"resnet50": 128, "mobilenet": 128, "unet3d": 2, "wav2vec": 8, "zoo": 32, "tiny": 1}


class _Collector:
    """Keeps the first occurrence of each distinct shape and counts repeats."""

    def __init__(self):
        self.layers = []
        self._index = {}

    def add(self, name, n, c, k, spatial, kernel, pad=0, stride=1, dilation=1, groups=1, op="conv", opad=0):
        layer = Layer(n, c, k, spatial, kernel, pad, stride, dilation, groups, op, opad, name)
        key = layer.spec(with_name=False)
        if key in self._index:
            self.layers[self._index[key]].count += 1
        else:
            self._index[key] = len(self.layers)
            self.layers.append(layer)
        return layer.output_shape()[2:]


def resnet50(batch=128):
    """torchvision's ResNet-50 (v1.5: the stride sits in the 3x3) at 224x224."""
    col = _Collector()
    hw = col.add("conv1", batch, 3, 64, (224, 224), (7, 7), pad=3, stride=2)[0]
    hw = (hw + 2 - 3) // 2 + 1                      # max pool 3x3 s2 p1: 112 -> 56
    cin = 64
    for stage, (width, blocks, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)), 1):
        for b in range(blocks):
            s = stride if b == 0 else 1
            pre = "layer%d.%d" % (stage, b)
            col.add(pre + ".conv1", batch, cin, width, (hw, hw), (1, 1))
            out = col.add(pre + ".conv2", batch, width, width, (hw, hw), (3, 3), pad=1, stride=s)[0]
            col.add(pre + ".conv3", batch, width, width * 4, (out, out), (1, 1))
            if b == 0:
                col.add(pre + ".downsample", batch, cin, width * 4, (hw, hw), (1, 1), stride=s)
            cin, hw = width * 4, out
    return col.layers


def mobilenet(batch=128):
    """MobileNetV2 (1.0, 224x224): the depthwise 3x3 and pointwise 1x1 convs
    (and the stem)."""
    col = _Collector()
    hw = col.add("stem", batch, 3, 32, (224, 224), (3, 3), pad=1, stride=2)[0]
    cin = 32
    i = 0
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                       (6, 160, 3, 2), (6, 320, 1, 1)):
        for j in range(n):
            stride = s if j == 0 else 1
            hidden = cin * t
            pre = "block%d" % i
            if t != 1:
                col.add(pre + ".expand", batch, cin, hidden, (hw, hw), (1, 1))
            out = col.add(pre + ".dw", batch, hidden, hidden, (hw, hw), (3, 3), pad=1, stride=stride,
                          groups=hidden)[0]
            col.add(pre + ".project", batch, hidden, c, (out, out), (1, 1))
            cin, hw = c, out
            i += 1
    col.add("head", batch, cin, 1280, (hw, hw), (1, 1))
    return col.layers


def unet3d(batch=2):
    """A 3D U-Net (Cicek et al. 2016) on a 64^3 volume: 3x3x3 convs, 2x2x2
    transposed up-convolutions and the 1x1x1 head."""
    col = _Collector()
    size, cin = 64, 1
    skips = []
    for level, width in enumerate((32, 64, 128, 256)):
        col.add("enc%d.a" % level, batch, cin, width, (size,) * 3, (3, 3, 3), pad=1)
        col.add("enc%d.b" % level, batch, width, width * 2, (size,) * 3, (3, 3, 3), pad=1)
        cin = width * 2
        skips.append((cin, size))
        if level < 3:
            size //= 2
    for level in (2, 1, 0):
        skip_c, skip_size = skips[level]
        col.add("up%d" % level, batch, cin, cin, (size,) * 3, (2, 2, 2), stride=2, op="transpose")
        size = skip_size
        col.add("dec%d.a" % level, batch, cin + skip_c, skip_c, (size,) * 3, (3, 3, 3), pad=1)
        col.add("dec%d.b" % level, batch, skip_c, skip_c, (size,) * 3, (3, 3, 3), pad=1)
        cin = skip_c
    col.add("head", batch, cin, 3, (size,) * 3, (1, 1, 1))
    return col.layers


def wav2vec(batch=8):
    """wav2vec 2.0's feature encoder on 10 s of 16 kHz audio: seven 1D convs,
    512 channels, kernels (10,3,3,3,3,2,2), strides (5,2,2,2,2,2,2)."""
    col = _Collector()
    length, cin = 160000, 1
    for i, (k, s) in enumerate(((10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2))):
        length = col.add("conv%d" % i, batch, cin, 512, (length,), (k,), stride=s)[0]
        cin = 512
    return col.layers


def zoo(batch=32):
    """One of each kind the other suites lack: dilated, grouped, depthwise,
    transposed, fused conv_bias_add_relu, 3D 3x3x3 and 1D k=3."""
    col = _Collector()
    col.add("dilated3x3.d2", batch, 512, 512, (28, 28), (3, 3), pad=2, dilation=2)
    col.add("dilated3x3.d4", batch, 256, 256, (64, 64), (3, 3), pad=4, dilation=4)
    col.add("grouped3x3.g32", batch, 256, 256, (56, 56), (3, 3), pad=1, groups=32)
    col.add("depthwise3x3", batch, 256, 256, (56, 56), (3, 3), pad=1, groups=256)
    col.add("transpose4x4.s2", batch, 256, 128, (16, 16), (4, 4), pad=1, stride=2, op="transpose")
    col.add("transpose2x2.s2", batch, 128, 64, (64, 64), (2, 2), stride=2, op="transpose")
    col.add("fused3x3", batch, 64, 64, (56, 56), (3, 3), pad=1, op="fused")
    col.add("fused1x1", batch, 64, 256, (56, 56), (1, 1), op="fused")
    col.add("conv3d.3x3x3", batch // 8 or 1, 64, 64, (32, 32, 32), (3, 3, 3), pad=1)
    col.add("conv1d.k3", batch, 512, 512, (4096,), (3,), pad=1)
    return col.layers


def tiny(batch=1):
    """Host-overhead shapes: so small that the GPU finishes before the host
    has issued the next call."""
    col = _Collector()
    col.add("tiny3x3", batch, 8, 8, (8, 8), (3, 3), pad=1)
    col.add("tiny1x1", batch, 16, 16, (8, 8), (1, 1))
    col.add("tiny1d", batch, 8, 8, (64,), (3,), pad=1)
    col.add("tiny3d", batch, 4, 4, (8, 8, 8), (3, 3, 3), pad=1)
    col.add("tinyfused", batch, 8, 8, (8, 8), (3, 3), pad=1, op="fused")
    return col.layers


SUITES = {"resnet50": resnet50, "mobilenet": mobilenet, "unet3d": unet3d, "wav2vec": wav2vec, "zoo": zoo,
          "tiny": tiny}


def get(name, batch=None):
    """The layers of suite ``name`` at ``batch`` (its default where None;
    ``tiny`` always keeps its own)."""
    try:
        fn = SUITES[name]
    except KeyError:
        raise ValueError("unknown suite %r; suites: %s" % (name, ", ".join(SUITES))) from None
    if batch is None or name == "tiny":
        batch = DEFAULT_BATCH[name]
    return fn(batch)
