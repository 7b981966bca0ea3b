"""``python -m cudnnconv.knob_sweep_worker``: the knob sweep's worker process.

``cudnnconv.knob_sandbox`` starts it and says why it is a process of its own; its module doc
gives the protocol (one JSON object per line on stdin and stdout).  Per problem, on arrays of its
own with fresh random data, the worker runs the heuristics' first config as the reference, then
tries settings in this order until the request's seconds run out:

1. the heuristics' configs, each with its own knobs;
2. every engine with cuDNN's default knobs;
3. a coordinate search: the settings one knob away from the two fastest so far
   (``knob_space.neighbours``), moving to a faster one while there is one (at most ``PASSES`` moves
   from each start);
4. the rest of every engine's settings (``knob_space.settings``), engines interleaved, those of the
   fastest engines first.

Each setting is built, run once on an output poisoned with NaN (all bits set), checked against
the reference (relative L2 difference within ``TOLERANCE`` of its dtype; an unwritten element
shows as NaN), then timed with ``gpu_timing.time_samples``.
"""
import json
import math
import os
import sys
import time

PASSES = 3
# relative L2 difference from the reference config's result that another config may show: the
# configs sum in other orders (and fp32 may use TF32 where the key allows it); a config that
# computes something else is off by order 1
TOLERANCE = {0: 1e-4, 1: 1e-9, 2: 1e-2, 9: 5e-2}
TF32_TOLERANCE = 1e-2
_ITEMSIZE = {0: 4, 1: 8, 2: 2, 9: 2}
_OUTPUT = {"forward": 2, "fused": 2, "backward_data": 0, "backward_filter": 1}


class _OutOfTime(Exception):
    pass


def _send(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class _Buffers:
    """The problem's tensors (x, w, y, and z and bias for the fused graph) as raw device memory with
    random data, and the reference output."""

    def __init__(self, key):
        import cupy
        from cudnnconv import params
        geom, y_shape = params.conv_geometry(key.input_shape, key.weight_shape, key.stride, key.padding,
                                             key.dilation, key.groups)
        shapes = [tuple(key.input_shape), tuple(key.weight_shape), tuple(y_shape)]
        if key.op == "fused":
            shapes += [tuple(y_shape), (1, key.weight_shape[0]) + (1,) * (len(key.weight_shape) - 2)]
        self.dtype = int(key.dtype)
        self.itemsize = _ITEMSIZE[self.dtype]
        self.counts = [math.prod(s) for s in shapes]
        rng = cupy.random.RandomState(1234)
        self.mem = []
        for n in self.counts:
            m = cupy.cuda.alloc(max(n, 1) * self.itemsize)
            self.mem.append(m)
            self._fill(m, n, rng)
        self.out = _OUTPUT[key.op]

    def ptrs(self):
        return [m.ptr for m in self.mem]

    def _fill(self, mem, n, rng):
        import cupy
        v = rng.standard_normal(n, dtype=cupy.float32)
        self.view(mem, n)[...] = self._encode(v)

    def view(self, mem, n):
        """The raw storage (a MemoryPointer) as a CuPy array of the dtype's bit width."""
        import cupy
        dt = {4: cupy.float32, 8: cupy.float64, 2: cupy.uint16}[self.itemsize]
        if self.dtype == 2:
            dt = cupy.float16
        return cupy.ndarray((n,), dt, mem)

    def _encode(self, v):
        import cupy
        if self.dtype == 9:            # bfloat16: the high half of float32, rounded to nearest even
            b = v.view(cupy.uint32)
            return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(cupy.uint16)
        return v

    def as_f64(self, i):
        import cupy
        v = self.view(self.mem[i], self.counts[i])
        if self.dtype == 9:
            return (v.astype(cupy.uint32) << 16).view(cupy.float32).astype(cupy.float64)
        return v.astype(cupy.float64)

    def poison_output(self):
        import cupy
        m = self.mem[self.out]
        cupy.cuda.runtime.memsetAsync(m.ptr, 0xFF, self.counts[self.out] * self.itemsize,
                                      cupy.cuda.get_current_stream().ptr)

    def output_f64(self):
        return self.as_f64(self.out)


def rel_error(got, ref):
    """‖got − ref‖ / ‖ref‖ of two float64 arrays (CuPy or NumPy); inf where ``got`` is not finite."""
    import numpy
    try:
        import cupy
        xp = cupy.get_array_module(got)
    except ImportError:
        xp = numpy
    if not bool(xp.isfinite(got).all()):
        return math.inf
    den = float(xp.linalg.norm(ref))
    num = float(xp.linalg.norm(got - ref))
    return num / den if den > 0 else (0.0 if num == 0 else math.inf)


def tolerance(key):
    if int(key.dtype) == 0 and key.allow_tf32:
        return TF32_TOLERANCE
    return TOLERANCE.get(int(key.dtype), 1e-2)


def sweep(req):
    """One problem's sweep (the request's key, seconds and skip list)."""
    import cupy
    from cudnnconv import gpu_timing, knob_space, ranking, tuning, workspace
    from cudnnconv.core.status import CuDNNError
    from cudnnconv.engines import graph

    key = tuning.key_from_json(req["key"])
    deadline = time.perf_counter() + max(float(req.get("seconds", 0.0)), 0.0)
    skip = set(req.get("skip", ()))
    cupy.cuda.Device(int(key.device)).use()
    buf = _Buffers(key)
    a = graph.sweep_args(key, buf.ptrs())
    opts = graph.sweep_options(key)
    budget = workspace.search_budget(opts.workspace_limit)
    stream = cupy.cuda.get_current_stream()
    tol = tolerance(key)

    def one_run(c, ws):
        run = graph.sweep_runner(c, a, ws.ptr if ws is not None else 0)
        buf.poison_output()
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record(stream)
        run()
        end.record(stream)
        end.synchronize()
        return run, cupy.cuda.get_elapsed_time(start, end)

    heur = graph.sweep_heuristics(a, opts)
    ref = None
    for c in heur:
        if c.workspace > budget:
            continue
        ws = cupy.cuda.alloc(c.workspace) if c.workspace else None
        try:
            _, ms = one_run(c, ws)
        except (CuDNNError, MemoryError):
            continue
        ref = buf.output_f64()
        _send({"reference": c.tag, "ms": ms})
        break
    if ref is None:
        _send({"error": "no heuristics config of this problem ran, so there is no reference"})
        return
    tried, timed = set(), {}

    def result(tag, idx, knobs, status, **more):
        d = {"tag": tag, "engine_index": idx, "knobs": [list(k) for k in knobs], "status": status}
        d.update(more)
        _send({"result": d})

    def attempt(idx, knobs):
        knobs = tuple(sorted((int(t), int(v)) for t, v in knobs))
        want = graph.make_tag(idx, knobs)
        if want in tried or want in skip:
            return None
        if time.perf_counter() >= deadline:
            raise _OutOfTime()
        tried.add(want)
        try:
            c = graph.sweep_build(a, idx, list(knobs), opts)
        except CuDNNError as e:
            result(want, idx, knobs, "failed", detail="did not finalize: %s" % e.name)
            return None
        if c is None:
            why = a.excluded[-1][1] if a.excluded else "excluded"
            result(want, idx, knobs, "excluded", detail=str(why))
            return None
        tag = c.tag
        if tag != want and (tag in tried or tag in skip):     # cuDNN read it back as one already tried
            result(want, idx, knobs, "excluded", detail="the same config as %s" % tag)
            return None
        tried.add(tag)
        if c.workspace > budget:
            result(tag, idx, knobs, "excluded", detail="workspace %d > the search budget %d" % (c.workspace, budget))
            return None
        info = dict(workspace=int(c.workspace), notes=list(c.notes), behavior=list(c.behavior))
        try:
            ws = cupy.cuda.alloc(c.workspace) if c.workspace else None
        except MemoryError:
            result(tag, idx, knobs, "excluded", detail="workspace %d could not be allocated" % c.workspace, **info)
            return None
        _send({"start": want, "engine_index": idx, "knobs": [list(k) for k in knobs]})
        try:
            run, _ = one_run(c, ws)
        except (CuDNNError, MemoryError) as e:
            result(tag, idx, knobs, "failed", detail="failed to run: %s" % getattr(e, "name", type(e).__name__),
                   **info)
            return None
        err = rel_error(buf.output_f64(), ref)
        if not err <= tol:
            result(tag, idx, knobs, "wrong", error=err if math.isfinite(err) else 1e300, **info)
            return None
        try:
            times = gpu_timing.time_samples(run, stream=stream)
        except (CuDNNError, MemoryError) as e:
            result(tag, idx, knobs, "failed", detail="failed to run: %s" % getattr(e, "name", type(e).__name__),
                   **info)
            return None
        ms = ranking.median_and_spread(times)[0]
        result(tag, idx, knobs, "timed", ms=ms, error=err, **info)
        timed[(idx, knobs)] = ms
        return ms

    engines = dict(graph.sweep_engines(a))
    try:
        for c in heur:                                          # 1. the heuristics' own
            attempt(c.engine_index, c.knobs)
        for idx in engines:                                     # 2. every engine's defaults
            attempt(idx, ())
        ranked = sorted(timed.items(), key=lambda kv: kv[1])
        for (idx, knobs), ms in ranked[:2]:                     # 3. coordinate search from the two fastest
            if idx not in engines:
                continue
            best, best_ms = knobs, ms
            for _ in range(PASSES):
                moved = False
                for n in knob_space.neighbours(best, engines[idx]):
                    t = attempt(idx, n)
                    if t is not None and t < best_ms:
                        best, best_ms, moved = n, t, True
                if not moved:
                    break
        order = sorted(engines, key=lambda i: min([ms for (e, _), ms in timed.items() if e == i] or [math.inf]))
        for idx, knobs in knob_space.round_robin([(i, knob_space.settings(engines[i])) for i in order]):
            attempt(idx, knobs)                                 # 4. the rest
    except _OutOfTime:
        pass


def main():
    # the pipe is the protocol: nothing else may write to stdout
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = proto
    try:
        import cupy
        cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        _send({"error": "CuPy or the GPU is not usable here (%s: %s)" % (type(e).__name__, e)})
        return 1
    _send({"ready": os.getpid()})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            sweep(json.loads(line))
        except Exception as e:
            _send({"error": "%s: %s" % (type(e).__name__, str(e)[:500])})
        # the problem's arrays and workspaces go back to the device, not to this process's pool: the
        # process that asked is the one that needs the memory
        cupy.get_default_memory_pool().free_all_blocks()
        _send({"done": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())
