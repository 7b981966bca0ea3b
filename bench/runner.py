"""Run layers: make inputs, check each result against PyTorch, then time.

For each layer and direction:

1. ``nsets`` input sets of random data (uniform in [-1, 1), never zeros),
   enough that together they exceed 3x the L2 cache;
2. PyTorch's result on set 0 is the reference; each engine of ours writes
   into an output poisoned with NaN and is compared by
   ``||ours - ref|| / ||ref||`` (in float64) against the dtype's tolerance;
   an unwritten element (NaN) or an error over tolerance is a FAIL, and a
   failed layer gets no time;
3. ours (per engine) and the peers are timed by ``bench.timing``.

Our first call of each layer-direction is timed on its own, host clock to a synchronize
(``first_call_ms``), with the searches it ran (``searches``: choice-cache misses): what a search
costs, or, with a warm tuning file, that none ran.
"""
import math
import time

import numpy

from bench import peers as _peers
from bench import timing

DIRECTIONS = ("fwd", "dgrad", "wgrad")

# ||ours - torch|| / ||torch|| allowed per dtype.  Both sides accumulate in
# fp32; the fp32 bound assumes TF32 on both sides (the default; --tf32 off
# tightens it), whose 10-bit mantissa gives ~5e-4 per side.
TOLERANCE = {"float16": 5e-3, "bfloat16": 3e-2, "float32": 5e-3, "float32_notf32": 1e-5, "float64": 1e-10}

DTYPES = {"fp16": "float16", "half": "float16", "float16": "float16", "bf16": "bfloat16", "bfloat16": "bfloat16",
          "fp32": "float32", "float": "float32", "float32": "float32", "fp64": "float64", "float64": "float64"}


def tolerance(dtype, allow_tf32=True):
    if dtype == "float32" and not allow_tf32:
        return TOLERANCE["float32_notf32"]
    return TOLERANCE[dtype]


def directions_for(layer, wanted):
    """Transposed and fused layers run forward only (their backward is
    another layer's forward or dgrad)."""
    if layer.op == "conv":
        return [d for d in DIRECTIONS if d in wanted]
    return ["fwd"] if "fwd" in wanted else []


def _shapes(layer, direction):
    """(names of the operands, {name: shape}, shape of the result)."""
    x, w, y = layer.input_shape(), layer.weight_shape(), layer.output_shape()
    if layer.op == "fused":
        return ("x", "w", "z", "b"), {"x": x, "w": w, "z": y, "b": (layer.k,)}, y
    if direction == "fwd":
        return ("x", "w"), {"x": x, "w": w}, y
    if direction == "dgrad":
        return ("w", "gy"), {"w": w, "gy": y}, x
    return ("x", "gy"), {"x": x, "gy": y}, w


def _random(cupy, rs, shape, dtype, layout):
    from cudnnconv import params
    a = params.empty_in_layout(shape, dtype, layout if len(shape) >= 3 else params.NCHW)
    a[...] = rs.uniform(-1.0, 1.0, shape, dtype=numpy.float32).astype(dtype)
    return a


def make_sets(layer, direction, dtype, layout, l2_bytes, seed=0, most=16):
    """A list of input sets (dicts of CuPy arrays) and the bytes of one set."""
    import cupy
    names, shapes, out_shape = _shapes(layer, direction)
    isz = numpy.dtype(dtype).itemsize
    per_set = isz * (sum(math.prod(s) for s in shapes.values()) + math.prod(out_shape))
    n = timing.sets_needed(per_set, l2_bytes, most)
    rs = cupy.random.RandomState(seed)
    sets = [{k: _random(cupy, rs, shapes[k], dtype, layout) for k in names} for _ in range(n)]
    return sets, per_set, out_shape


def rel_err(ours, ref):
    """||ours - ref|| / ||ref|| in float64; inf when ours has a NaN or Inf."""
    import cupy
    a = ours.astype(cupy.float64)
    b = ref.astype(cupy.float64)
    if not bool(cupy.isfinite(a).all()):
        return float("inf")
    den = float(cupy.linalg.norm(b.ravel()))
    num = float(cupy.linalg.norm((a - b).ravel()))
    return num / den if den else num


def our_call(layer, direction, s, out, engine, allow_tf32):
    import cudnnconv
    geom = layer.geometry()[0]
    kw = dict(out=out, benchmark=True, allow_tf32=allow_tf32, engine=engine)
    st, pad, dil, g = geom.stride, geom.padding, geom.dilation, layer.groups
    if layer.op == "transpose":
        return lambda: cudnnconv.conv_transpose(s["x"], s["w"], None, st, pad, layer.opad, g, dil, **kw)
    if layer.op == "fused":
        return lambda: cudnnconv.conv_bias_add_relu(s["x"], s["w"], s["z"], _peers.FUSED_ALPHA, s["b"], st, pad,
                                                    dil, g, **kw)
    if direction == "fwd":
        return lambda: cudnnconv.conv(s["x"], s["w"], None, st, pad, dil, g, **kw)
    if direction == "dgrad":
        return lambda: cudnnconv.conv_backward_input(layer.input_shape(), s["w"], s["gy"], st, pad, dil, g, **kw)
    return lambda: cudnnconv.conv_backward_weight(s["x"], layer.weight_shape(), s["gy"], st, pad, dil, g, **kw)


def describe_choice(last):
    """(algorithm or engine text, workspace bytes, path) from last_call()."""
    if not last:
        return None, None, None
    names, ws = [], 0
    for c in last.get("choices") or []:
        name = None
        for key in ("algo_name", "engine_tag", "tag", "engine_name", "name", "engine_id", "algo"):
            if c.get(key) is not None:
                name = str(c[key])
                break
        knobs = c.get("knobs")
        if knobs and isinstance(knobs, dict) and "_k" not in str(name):
            # graph engine: the config is the engine plus its knobs, which its tag carries (eng62_k2=4);
            # a name without them gets them appended
            name = "%s{%s}" % (name, ",".join("%s=%s" % kv for kv in sorted(knobs.items(), key=str)))
        math_type = c.get("math_type")
        if math_type and isinstance(math_type, str) and "TENSOR" in math_type:
            name = "%s+TC" % name
        if name not in names:
            names.append(name)
        w = c.get("workspace", c.get("workspace_bytes", 0)) or 0
        ws = max(ws, int(w))
    return "/".join(str(n) for n in names) or None, ws, last.get("path")


def _misses(cudnnconv):
    """Choice-cache misses over every engine so far: each is one search."""
    return sum(c.misses for c in cudnnconv.cache_info().values())


def _entry(status, **kw):
    e = {"status": status, "kernel_ms": None, "eager_ms": None, "host_us": None, "rel_err": None, "notes": []}
    e.update(kw)
    return e


def _short(e):
    return "%s: %s" % (type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "")


class Runner:
    def __init__(self, dtype, layout, engines, peer_names, repeat=50, budget_s=0.6, allow_tf32=True, seed=0):
        import cupy
        self.cupy = cupy
        self.dtype = dtype
        self.layout = layout
        self.engines = engines
        self.repeat = repeat
        self.budget_s = budget_s
        self.allow_tf32 = allow_tf32
        self.seed = seed
        self.tol = tolerance(dtype, allow_tf32)
        self.peers, self.notes = _peers.load(peer_names, allow_tf32)
        self.ours = timing.CupyBackend()
        self.l2 = int(cupy.cuda.Device().attributes.get("L2CacheSize", 50 << 20))

    def run(self, layer, direction):
        cupy = self.cupy
        rec = {"layer": layer.name, "spec": layer.spec(with_name=False), "shape": layer.shape_text(),
               "op": layer.op, "count": layer.count, "direction": direction, "flops": layer.flops(),
               "input_shape": list(layer.input_shape()), "weight_shape": list(layer.weight_shape()),
               "output_shape": list(layer.output_shape()), "ours": {}, "peers": {}}
        sets, per_set, out_shape = make_sets(layer, direction, self.dtype, self.layout, self.l2, self.seed)
        rec["nsets"], rec["bytes_per_set"] = len(sets), per_set
        cupy.cuda.Device().synchronize()
        ref = None
        torch = self.peers.get("torch")
        torch_calls = {}
        if torch is not None:
            variants = [None] + (["fused"] if layer.op == "fused" and torch.has_fused else [])
            for v in variants:
                name = "torch" if v is None else "torch_fused"
                try:
                    torch_calls[name] = torch.calls(layer, direction, sets, v)
                    with torch.backend.stream_ctx():
                        r = torch_calls[name][0]()
                    torch.backend.synchronize()
                    r = torch.to_cupy(r)
                    if ref is None:
                        ref = r.copy()
                    else:
                        err = rel_err(r, ref)
                        if not err <= self.tol:
                            rec["peers"][name] = _entry("FAIL", rel_err=err)
                            torch_calls.pop(name)
                except Exception as e:                # noqa: BLE001
                    rec["peers"][name] = _entry("error", notes=[_short(e)])
                    torch_calls.pop(name, None)
            if layer.op == "fused" and not torch.has_fused:
                rec["peers"]["torch_fused"] = _entry("n/a", notes=["torch.cudnn_convolution_add_relu not in this "
                                                                   "PyTorch"])
        from cudnnconv import params
        outs = [params.empty_in_layout(out_shape, self.dtype, self.layout if len(out_shape) >= 3 else params.NCHW)
                for _ in sets]
        for eng in self.engines:
            rec["ours"][eng] = self._run_ours(layer, direction, sets, outs, eng, ref)
        for name, calls in torch_calls.items():
            try:
                m = torch.backend.measure(calls, self.repeat, budget_s=self.budget_s)
                rec["peers"][name] = _entry("ok", **m)
            except Exception as e:                    # noqa: BLE001
                rec["peers"][name] = _entry("error", notes=[_short(e)])
        jax = self.peers.get("jax")
        if jax is not None:
            rec["peers"]["jax"] = self._run_jax(jax, layer, direction, sets, ref)
        for e in list(rec["ours"].values()) + list(rec["peers"].values()):
            if e.get("kernel_ms") or e.get("eager_ms"):
                t = e.get("kernel_ms") or e.get("eager_ms")
                e["tflops"] = layer.flops() / (t * 1e-3) / 1e12
        del sets, outs, ref
        torch_calls.clear()
        cupy.get_default_memory_pool().free_all_blocks()
        if torch is not None:
            torch.torch.cuda.empty_cache()
        return rec

    def _run_ours(self, layer, direction, sets, outs, eng, ref):
        import cudnnconv
        cupy = self.cupy
        calls = [our_call(layer, direction, s, o, eng, self.allow_tf32) for s, o in zip(sets, outs)]
        try:
            outs[0].fill(numpy.nan)               # poison: an unwritten element stays NaN
            cupy.cuda.Device().synchronize()
            misses = _misses(cudnnconv)
            t0 = time.perf_counter()
            calls[0]()                            # the first call: it searches, unless a cache or tuning file knows
            cupy.cuda.Device().synchronize()
            first_ms = (time.perf_counter() - t0) * 1e3
            searches = _misses(cudnnconv) - misses
            algo, ws, path = describe_choice(cudnnconv.last_call())
            engine = (cudnnconv.last_call() or {}).get("engine")
        except Exception as e:                    # noqa: BLE001
            return _entry("error", notes=[_short(e)])
        info = dict(algo=algo, workspace=ws, path=path, engine=engine, first_call_ms=first_ms, searches=searches)
        if ref is not None:
            err = rel_err(outs[0], ref)
            if not err <= self.tol:
                return _entry("FAIL", rel_err=err, **info)
        else:
            err = None
            if not bool(cupy.isfinite(outs[0]).all()):
                return _entry("FAIL", rel_err=float("inf"), notes=["NaN/Inf in the result (no reference)"], **info)
        try:
            m = self.ours.measure(calls, self.repeat, budget_s=self.budget_s)
        except Exception as e:                    # noqa: BLE001
            return _entry("error", rel_err=err, notes=[_short(e)], **info)
        # what ran in the timed calls (the cached choice): same as the check's
        algo2, ws2, path2 = describe_choice(cudnnconv.last_call())
        info.update(algo=algo2 or algo, workspace=ws2 if ws2 is not None else ws, path=path2 or path)
        status = "ok" if ref is not None else "unchecked"
        return _entry(status, rel_err=err, **dict(m, **info))

    def _run_jax(self, jax, layer, direction, sets, ref):
        try:
            calls = jax.calls(layer, direction, sets)
            r = jax.to_cupy(calls[0]())
            if ref is not None:
                err = rel_err(r, ref.reshape(r.shape) if ref.shape != r.shape else ref)
                if not err <= self.tol:
                    return _entry("FAIL", rel_err=err)
            return _entry("ok", **jax.measure(calls, self.repeat, self.budget_s))
        except _peers.Unavailable as e:
            return _entry("n/a", notes=[str(e)])
        except Exception as e:                    # noqa: BLE001
            return _entry("error", notes=[_short(e)])
