"""The frameworks we compare with: PyTorch and JAX, each where importable.

Each peer is asked for a *call*: a zero-argument function computing one
direction of one layer on one input set (arrays shared with ours, zero-copy
through DLPack), returning the result.  ``load(names)`` returns the peers it
could import and a note for each it could not.

PyTorch runs with ``torch.backends.cudnn.benchmark = True`` (it times the
algorithms once per shape, as ours does with benchmark=True) and its default
``allow_tf32`` for cuDNN convolutions (True; the harness's --tf32 sets both
sides alike).  dgrad and wgrad go through ``aten.convolution_backward`` with
one output requested, the call autograd itself makes, without the autograd
bookkeeping.  The fused layer is timed against PyTorch's unfused eager
sequence (conv with bias, add_ alpha*z, relu_) as ``torch``, and against
``torch.cudnn_convolution_add_relu`` as ``torch_fused`` where it exists.
"""
import os


class Unavailable(Exception):
    pass


class TorchPeer:
    name = "torch"

    def __init__(self, allow_tf32=True):
        import torch
        if not torch.cuda.is_available():
            raise Unavailable("PyTorch %s sees no CUDA device" % torch.__version__)
        self.torch = torch
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = bool(allow_tf32)
        self.version = torch.__version__
        self.cudnn_version = torch.backends.cudnn.version()
        self.has_fused = hasattr(torch, "cudnn_convolution_add_relu")
        from bench.timing import TorchBackend
        self.backend = TorchBackend()

    def tensor(self, a):
        return self.torch.from_dlpack(a)

    def empty_like_layout(self, shape, like):
        """An uninitialised tensor of ``shape`` with ``like``'s memory format."""
        torch = self.torch
        t = torch.empty(shape, dtype=like.dtype, device=like.device)
        if len(shape) == 4 and like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous():
            t = t.contiguous(memory_format=torch.channels_last)
        elif len(shape) == 5 and like.is_contiguous(memory_format=torch.channels_last_3d) \
                and not like.is_contiguous():
            t = t.contiguous(memory_format=torch.channels_last_3d)
        return t

    def calls(self, layer, direction, arrays, variant=None):
        """One call per input set.  ``arrays`` is a list of dicts of CuPy
        arrays (x, w, gy, z, b as the direction needs)."""
        torch = self.torch
        geom = layer.geometry()[0]
        stride, pad, dil = list(geom.stride), list(geom.padding), list(geom.dilation)
        groups = layer.groups
        out = []
        for s in arrays:
            t = {k: self.tensor(v) for k, v in s.items()}
            if layer.op == "transpose":
                opad = list(layer.opad)
                out.append(lambda t=t: torch.convolution(t["x"], t["w"], None, stride, pad, dil, True, opad, groups))
            elif layer.op == "fused":
                if variant == "fused":
                    out.append(lambda t=t: torch.cudnn_convolution_add_relu(
                        t["x"], t["w"], t["z"], FUSED_ALPHA, t["b"], stride, pad, dil, groups))
                else:
                    def unfused(t=t):
                        y = torch.convolution(t["x"], t["w"], t["b"], stride, pad, dil, False, [0] * len(pad), groups)
                        y.add_(t["z"], alpha=FUSED_ALPHA)
                        return y.relu_()
                    out.append(unfused)
            elif direction == "fwd":
                out.append(lambda t=t: torch.convolution(t["x"], t["w"], None, stride, pad, dil, False,
                                                         [0] * len(pad), groups))
            elif direction == "dgrad":
                x_fake = self.empty_like_layout(layer.input_shape(), t["gy"])
                out.append(lambda t=t, x=x_fake: torch.ops.aten.convolution_backward(
                    t["gy"], x, t["w"], None, stride, pad, dil, False, [0] * len(pad), groups,
                    [True, False, False])[0])
            elif direction == "wgrad":
                w_fake = self.empty_like_layout(layer.weight_shape(), t["x"])
                out.append(lambda t=t, w=w_fake: torch.ops.aten.convolution_backward(
                    t["gy"], t["x"], w, None, stride, pad, dil, False, [0] * len(pad), groups,
                    [False, True, False])[1])
            else:
                raise ValueError(direction)
        return out

    def to_cupy(self, t):
        import cupy
        return cupy.from_dlpack(t)


FUSED_ALPHA = 0.5


class JaxPeer:
    """JAX through XLA: jitted lax.conv_general_dilated and its VJPs.  JAX
    runs on its own stream, so its times are host-clock times around
    ``block_until_ready`` over many calls (eager time only; XLA owns the
    launch, no graph replay here)."""
    name = "jax"

    def __init__(self):
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        import jax
        if not any(d.platform == "gpu" for d in jax.devices()):
            raise Unavailable("JAX %s has no GPU backend here" % jax.__version__)
        self.jax = jax
        self.version = jax.__version__

    def calls(self, layer, direction, arrays, variant=None):
        jax = self.jax
        from jax import lax
        if layer.op != "conv":
            raise Unavailable("the JAX peer times plain convolutions only")
        geom = layer.geometry()[0]
        nsp = layer.nsp
        sp = "DHW"[3 - nsp:]
        dn = ("NC" + sp, "OI" + sp, "NC" + sp)
        pads = [(p, p) for p in geom.padding]

        def fwd(x, w):
            return lax.conv_general_dilated(x, w, geom.stride, pads, rhs_dilation=geom.dilation,
                                            dimension_numbers=dn, feature_group_count=layer.groups)
        x_shape, w_shape = layer.input_shape(), layer.weight_shape()
        if direction == "fwd":
            f = jax.jit(fwd)
            args = [lambda s=s: (_jx(s["x"]), _jx(s["w"])) for s in arrays]
        elif direction == "dgrad":
            def f(w, gy):
                return jax.vjp(lambda x: fwd(x, w), jax.numpy.zeros(x_shape, w.dtype))[1](gy)[0]
            f = jax.jit(f)
            args = [lambda s=s: (_jx(s["w"]), _jx(s["gy"])) for s in arrays]
        else:
            def f(x, gy):
                return jax.vjp(lambda w: fwd(x, w), jax.numpy.zeros(w_shape, x.dtype))[1](gy)[0]
            f = jax.jit(f)
            args = [lambda s=s: (_jx(s["x"]), _jx(s["gy"])) for s in arrays]
        def _jx(a):
            import cupy
            return jax.dlpack.from_dlpack(cupy.ascontiguousarray(a))
        bound = [a() for a in args]        # import once, outside the timed calls
        return [lambda b=b: f(*b) for b in bound]

    def measure(self, calls, repeat=50, budget_s=1.0):
        import statistics
        import time
        for c in calls:
            c().block_until_ready()
        times = []
        n = max(8, len(calls))
        for _ in range(max(5, min(repeat, 20))):
            t0 = time.perf_counter()
            r = None
            for i in range(n):
                r = calls[i % len(calls)]()
            r.block_until_ready()
            times.append((time.perf_counter() - t0) * 1e3 / n)
            if sum(times) * n / 1e3 > budget_s:
                break
        return {"kernel_ms": None, "eager_ms": statistics.median(times), "host_us": None,
                "notes": ["JAX: host-clock time per call (XLA's own stream), no graph replay"]}

    def to_cupy(self, t):
        import cupy
        return cupy.from_dlpack(t)


def load(names, allow_tf32=True):
    """({name: peer}, [notes]) for the requested peers, each where importable."""
    peers, notes = {}, []
    for name in names:
        try:
            if name == "torch":
                peers[name] = TorchPeer(allow_tf32)
            elif name == "jax":
                peers[name] = JaxPeer()
            else:
                notes.append("unknown peer %r (known: torch, jax)" % name)
        except ImportError as e:
            notes.append("%s not compared: it does not import here (%s)" % (name, e))
        except Unavailable as e:
            notes.append("%s not compared: %s" % (name, e))
        except Exception as e:                      # noqa: BLE001
            notes.append("%s not compared: %s: %s" % (name, type(e).__name__, e))
    return peers, notes
