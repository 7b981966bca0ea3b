"""``python -m cudnnconv.knob_sweep_worker``: the knob sweep's worker process.

``cudnnconv.knob_sandbox`` starts it and says why it is a process of its own; its module doc
gives the protocol (one JSON object per line on stdin and stdout).  Per problem, on arrays of its
own with fresh random data, the worker runs the heuristics' first config as the reference, then
tries settings in this order until the request's seconds run out (``sweep_problem``):

1. the heuristics' configs, each with its own knobs;
2. every engine with cuDNN's default knobs;
3. a coordinate search: the settings one knob away from the two fastest so far
   (``knob_space.neighbours``), moving to a faster one while there is one (at most ``PASSES`` moves
   from each start);
4. the rest of every engine's settings (``knob_space.settings``), engines interleaved, those of the
   fastest engines first.

Each setting is built, run once on an output poisoned with NaN (all bits set), checked against
the reference (relative L2 difference within ``TOLERANCE`` of its dtype; an unwritten element
shows as NaN), then timed with ``gpu_timing.time_samples``.  A setting that fails to finalize or
to run for a reason that leaves the process sound (cuDNN's NOT_SUPPORTED or BAD_PARAM, or no
memory) is reported and the sweep goes on; anything else may have broken the CUDA context, so the
worker says what and exits, and the searching process starts a fresh one past that setting.

``sweep_problem`` holds the order and the protocol and takes the problem as an object (``GpuProblem``
here), so that the CPU tests can drive it with a stand-in.
"""
import json
import math
import os
import sys
import threading
import time

from cudnnconv import knob_space

PASSES = 3
# relative L2 difference from the reference config's result that another config may show: the
# configs sum in other orders (and fp32 may use TF32 where the key allows it); a config that
# computes something else is off by order 1
TOLERANCE = {0: 1e-4, 1: 1e-9, 2: 1e-2, 9: 5e-2}
TF32_TOLERANCE = 1e-2
_ITEMSIZE = {0: 4, 1: 8, 2: 2, 9: 2}
_OUTPUT = {"forward": 2, "fused": 2, "epilogue": 2, "dgrad_act": 0, "backward_data": 0, "backward_filter": 1}
_BENIGN_STATUS = ("CUDNN_STATUS_NOT_SUPPORTED", "CUDNN_STATUS_BAD_PARAM")


class OutOfTime(Exception):
    """The request's seconds ran out before the next setting."""


class Skipped(Exception):
    """A setting that did not get as far as a timing, for a reason that leaves the process sound:
    ``status`` ('failed', 'excluded' or 'wrong') and ``detail`` (or ``error``) say why."""

    def __init__(self, status, detail="", error=None, info=None):
        Exception.__init__(self, detail)
        self.status, self.detail, self.error, self.info = status, detail, error, info or {}


_PROTO = None                # the pipe to the searching process (main sets it); sys.stdout otherwise


def _send(obj):
    out = _PROTO if _PROTO is not None else sys.stdout
    out.write(json.dumps(obj) + "\n")
    out.flush()


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


def benign(e):
    """Whether an exception from building or running a config leaves the process sound."""
    if isinstance(e, MemoryError):
        return True
    name = getattr(e, "name", None)
    return isinstance(name, str) and name.startswith(_BENIGN_STATUS)


def sweep_problem(problem, seconds, skip, send=_send, clock=time.perf_counter, known=()):
    """One problem's sweep: the order of the module doc, within ``seconds``, past the requested
    tags in ``skip``, each step told to the searching process through ``send``.  ``problem``
    (``GpuProblem`` or a stand-in) builds, runs, checks and times configs.  ``known``: ``(engine,
    knobs, ms)`` that an earlier worker timed for this problem (after a hang or a crash), which
    order the engines and seed the coordinate search as this worker's own would.  Exceptions other
    than ``Skipped`` and ``OutOfTime`` propagate: the caller exits on them."""
    deadline = clock() + max(float(seconds), 0.0)
    skip = set(skip)
    ref = problem.reference()
    if ref is None:
        send({"error": "no heuristics config of this problem ran, so there is no reference"})
        return
    send({"reference": ref[0], "ms": ref[1]})
    tried = set()
    timed = {(int(i), knob_space.as_setting(k)): float(ms) for i, k, ms in known}

    def result(tag, idx, knobs, status, **more):
        d = {"tag": tag, "engine_index": idx, "knobs": [list(k) for k in knobs], "status": status}
        d.update(more)
        send({"result": d})

    def attempt(idx, knobs):
        knobs = knob_space.as_setting(knobs)
        if (idx, knobs) in timed:
            return timed[(idx, knobs)]
        want = problem.tag(idx, knobs)
        if want in tried or want in skip:
            return None
        if clock() >= deadline:
            raise OutOfTime()
        tried.add(want)
        head = {"engine_index": idx, "knobs": [list(k) for k in knobs]}
        send(dict(head, build=want))
        shown = want                     # the tag a result goes under: cuDNN's, once it is built
        try:
            c, tag, info = problem.build(idx, knobs)
            if tag != want and (tag in tried or tag in skip):     # cuDNN read it back as one already tried
                raise Skipped("excluded", "the same config as %s" % tag)
            tried.add(tag)
            shown = tag
            send(dict(head, start=want, tag=tag))
            ms = problem.first_run(c)
            send({"ran": want, "ms": ms})
            err = problem.check()
            if not err <= problem.tol:
                raise Skipped("wrong", error=err if math.isfinite(err) else 1e300, info=info)
            ms = problem.time(c)
        except Skipped as s:
            more = dict(s.info)
            if s.error is not None:
                more["error"] = s.error
            else:
                more["detail"] = s.detail
            result(shown, idx, knobs, s.status, **more)
            return None
        result(tag, idx, knobs, "timed", ms=ms, error=err, **info)
        timed[(idx, knobs)] = ms
        return ms

    engines = problem.engines()
    try:
        for idx, knobs in problem.heuristics():                 # 1. the heuristics' own
            attempt(idx, knobs)
        for idx in engines:                                     # 2. every engine's defaults
            attempt(idx, ())
        for (idx, knobs), ms in sorted(timed.items(), key=lambda kv: kv[1])[:2]:     # 3. coordinate search
            if idx not in engines:
                continue
            best, best_ms = knobs, ms
            for _ in range(PASSES):
                moved = False
                for n in knob_space.neighbours(best, engines[idx]):
                    t = attempt(idx, n)
                    if t is not None and t < best_ms:
                        best, best_ms, moved = knob_space.as_setting(n), t, True
                if not moved:
                    break
        order = sorted(engines, key=lambda i: min([ms for (e, _), ms in timed.items() if e == i] or [math.inf]))
        for idx, knobs in knob_space.round_robin([(i, knob_space.settings(engines[i])) for i in order]):
            attempt(idx, knobs)                                 # 4. the rest
    except OutOfTime:
        pass


class _Buffers:
    """The problem's tensors (x, w, y, and z and bias for the fused graph and where an epilogue takes
    them) as raw device memory with random data."""

    def __init__(self, key):
        import cupy
        from cudnnconv import activations, params
        geom, y_shape = params.conv_geometry(key.input_shape, key.weight_shape, key.stride, key.padding,
                                             key.dilation, key.groups)
        shapes = [tuple(key.input_shape), tuple(key.weight_shape), tuple(y_shape)]
        epi = activations.from_key(key)
        if key.op == "fused":
            shapes += [tuple(y_shape), (1, key.weight_shape[0]) + (1,) * (len(key.weight_shape) - 2)]
        elif epi is not None:                        # z and the bias where the epilogue takes them
            shapes += [shape for _, shape in activations.extra_tensors(key.op, epi, key.input_shape, y_shape)]
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

    def output_f64(self):
        import cupy
        v = self.view(self.mem[self.out], self.counts[self.out])
        if self.dtype == 9:
            return (v.astype(cupy.uint32) << 16).view(cupy.float32).astype(cupy.float64)
        return v.astype(cupy.float64)

    def poison_output(self, stream):
        import cupy
        m = self.mem[self.out]
        cupy.cuda.runtime.memsetAsync(m.ptr, 0xFF, self.counts[self.out] * self.itemsize, stream.ptr)


class GpuProblem:
    """The problem a key names, on this process's GPU: cuDNN configs built on its graph, run on
    this worker's own arrays, checked against the reference and timed."""

    def __init__(self, key):
        import cupy
        from cudnnconv import workspace
        from cudnnconv.engines import graph
        self.graph = graph
        cupy.cuda.Device(int(key.device)).use()
        self.buf = _Buffers(key)
        self.a = graph.sweep_args(key, self.buf.ptrs())
        self.opts = graph.sweep_options(key)
        self.budget = workspace.search_budget(self.opts.workspace_limit)
        self.stream = cupy.cuda.get_current_stream()
        self.tol = tolerance(key)
        self.ref = None
        self.heur = graph.sweep_heuristics(self.a, self.opts)
        self.ws = None

    def tag(self, idx, knobs):
        return self.graph.make_tag(idx, knobs)

    def heuristics(self):
        return [(c.engine_index, c.knobs) for c in self.heur]

    def engines(self):
        return dict(self.graph.sweep_engines(self.a))

    def _runner(self, c):
        import cupy
        self.run = self.ws = None        # the last setting's workspace goes before this one's comes
        self.ws = cupy.cuda.alloc(c.workspace) if c.workspace else None
        return self.graph.sweep_runner(c, self.a, self.ws.ptr if self.ws is not None else 0)

    def _one_run(self, c):
        import cupy
        run = self._runner(c)
        self.buf.poison_output(self.stream)
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record(self.stream)
        run()
        end.record(self.stream)
        end.synchronize()
        self.run = run
        return cupy.cuda.get_elapsed_time(start, end)

    def reference(self):
        """(tag, ms) of the first heuristics config that runs, its output kept; None if none does."""
        for c in self.heur:
            if c.workspace > self.budget:
                continue
            try:
                ms = self._one_run(c)
            except Exception as e:
                if benign(e):
                    continue
                raise
            try:
                self.ref = self.buf.output_f64()
            except MemoryError:
                return None
            self.run = self.ws = None
            return c.tag, ms
        return None

    def build(self, idx, knobs):
        from cudnnconv.core.status import CuDNNError
        excluded, rejected = len(self.a.excluded), len(self.a.rejected)
        try:
            c = self.graph.sweep_build(self.a, idx, list(knobs), self.opts)
        except CuDNNError as e:
            if not benign(e):
                raise
            raise Skipped("failed", "did not finalize: %s" % e.name)
        if c is None:
            if len(self.a.rejected) > rejected:      # cuDNN refused the config or its plan
                raise Skipped("failed", "did not finalize: %s" % self.a.rejected[-1][1])
            why = self.a.excluded[-1][1] if len(self.a.excluded) > excluded else "excluded by the call's flags"
            raise Skipped("excluded", str(why))
        info = dict(workspace=int(c.workspace), notes=list(c.notes), behavior=list(c.behavior))
        if c.workspace > self.budget:
            raise Skipped("excluded", "workspace %d > the search budget %d" % (c.workspace, self.budget), info=info)
        return c, str(c.tag), info

    def first_run(self, c):
        try:
            return self._one_run(c)
        except Exception as e:
            if not benign(e):
                raise
            raise Skipped("failed", "failed to run: %s" % getattr(e, "name", type(e).__name__))

    def check(self):
        try:
            return rel_error(self.buf.output_f64(), self.ref)
        except MemoryError:
            raise Skipped("failed", "no memory to check its result")

    def time(self, c):
        from cudnnconv import gpu_timing, ranking
        try:
            times = gpu_timing.time_samples(self.run, stream=self.stream)
        except Exception as e:
            if not benign(e):
                raise
            raise Skipped("failed", "failed to run: %s" % getattr(e, "name", type(e).__name__))
        finally:
            self.run = self.ws = None
        return ranking.median_and_spread(times)[0]


def _die_with_parent():
    """Exit within a second of the searching process's end (a watchdog thread; stdin's end does
    it too while the worker waits for a request).  A worker left waiting on a kernel that never
    returns would otherwise keep the GPU busy for good: CuPy waits on the GPU without the GIL, so
    the watchdog runs.  (Linux's PR_SET_PDEATHSIG would fire when the *thread* that started the
    worker ends, and a search run from a short-lived thread would lose a worker that another
    thread is using.)"""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)
    threading.Thread(target=watch, name="cudnnconv-knob-sweep-watchdog", daemon=True).start()


def serve(lines, make_problem=GpuProblem, send=_send, clock=time.perf_counter):
    """Answer every request in ``lines`` (a problem each), yielding after each.  The request's
    seconds count from its arrival, the problem's setup (its arrays, its heuristics' plans)
    included.  A failure that leaves the process sound (no memory, cuDNN's NOT_SUPPORTED or
    BAD_PARAM) is told and the next request served; any other may have left the CUDA context
    unsound: it is told, then raised, and the caller exits."""
    from cudnnconv import gpu_timing, tuning
    for line in lines:
        if not line.strip():
            continue
        arrived = clock()
        req = json.loads(line)
        timing = {k: req[k] for k in ("repeats", "warmup") if k in req}
        if timing:
            gpu_timing.benchmark_settings(**timing)
        problem = None
        try:
            problem = make_problem(tuning.key_from_json(req["key"]))
            seconds = float(req.get("seconds", 0.0)) - (clock() - arrived)
            sweep_problem(problem, seconds, req.get("skip", ()), send, clock, req.get("known", ()))
        except Exception as e:
            send({"error": "%s: %s" % (type(e).__name__, str(e)[:500])})
            if not benign(e):
                raise
        finally:
            problem = None
        yield


def main():
    # the pipe is the protocol: nothing else may write to it, neither C code nor a print()
    global _PROTO
    _PROTO = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _die_with_parent()
    try:
        # ready means ready: the CUDA context made and cuDNN's libraries loaded, so that a
        # request's seconds go to its problem
        import cupy
        cupy.cuda.runtime.getDeviceCount()
        cupy.cuda.Device().synchronize()
        import importlib
        importlib.import_module("cudnnconv.engines.graph")
        from cudnnconv.core import handle
        handle.get_handle(cupy.cuda.runtime.getDevice())
    except Exception as e:
        _send({"error": "CuPy, cuDNN or the GPU is not usable here (%s: %s)" % (type(e).__name__, e)})
        return 1
    _send({"ready": os.getpid()})
    try:
        for _ in serve(sys.stdin):
            # the problem's arrays and workspaces go back to the device, not to this process's
            # pool: the process that asked is the one that needs the memory
            cupy.get_default_memory_pool().free_all_blocks()
            _send({"done": True})
    except Exception:
        import traceback
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
