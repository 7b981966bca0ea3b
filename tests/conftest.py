"""Test policy shared by the CPU suite (tests/) and the GPU suite (tests/gpu/).

GPU tests carry the ``gpu`` marker, usually as a module-level
``pytestmark = pytest.mark.gpu``.  Without a usable CUDA device and driver
every such test is skipped with one clear reason, so the CPU suite runs (and
must pass) on a machine without a GPU.  Everything else runs everywhere.

The ``fake_cuda_array`` fixture builds objects that expose only
``__cuda_array_interface__``: the public API checks its arguments on that
metadata alone, so bad-argument tests need no GPU.
"""
import threading

import pytest

GPU_SKIP_REASON = "needs a CUDA GPU with a working driver"


def isolated_tuning(monkeypatch, env):
    """For a tuning test module's autouse fixture (``yield from``): the
    device environment faked as ``env``, no autosave, and an empty tuning
    store and legacy choice cache before and after each test."""
    from cudnnconv import engine_registry, tuning
    cache = engine_registry.legacy.CACHE
    monkeypatch.setattr(tuning, "device_environment", lambda device: dict(env))
    tuning.enable_autosave(None)
    tuning._store.clear()
    cache.clear()
    yield
    tuning.enable_autosave(None)
    tuning._store.clear()
    cache.clear()


def build_shared_library(directory, name, source, why):
    """Compile C ``source`` into ``directory/name`` (a shared library) with the host's C compiler and
    return its path; skip the calling test, saying ``why`` it needed one, where there is none."""
    import shutil
    import subprocess
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build %s" % why)
    src = directory / (name + ".c")
    src.write_text(source)
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(directory / name), str(src), "-lm"], check=True)
    return str(directory / name)


def join_all(threads, timeout):
    """Join every thread within ``timeout`` seconds in all (one deadline, not one per thread); fail
    naming any still running (a deadlock?)."""
    import time
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = [t.name for t in threads if t.is_alive()]
    assert not alive, "threads still running after %d s (a deadlock?): %s" % (timeout, alive)


def run_threads(worker, n_workers, disturber, kinds, done, timeout):
    """``n_workers`` threads of ``worker(seed)`` beside one ``disturber(kind)`` thread per kind: the
    workers are joined, then ``done`` is set (also when the join fails, so that no disturber outlives
    the test) and the disturbers joined, each group within ``timeout``."""
    others = [threading.Thread(target=disturber, args=(k,), name=k, daemon=True) for k in kinds]
    workers = [threading.Thread(target=worker, args=(s,), name="worker%d" % s, daemon=True) for s in range(n_workers)]
    for t in others + workers:
        t.start()
    try:
        join_all(workers, timeout)
    finally:
        done.set()
        join_all(others, timeout)


def _cuda_available():
    import cudnnconv
    return cudnnconv.cuda_available()


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items or _cuda_available():
        return
    skip = pytest.mark.skip(reason=GPU_SKIP_REASON)
    for item in gpu_items:
        item.add_marker(skip)


class FakeCudaArray:
    """Metadata of a CUDA array and nothing else (no memory behind it)."""

    def __init__(self, shape, typestr="<f4", ptr=0x7F0000000000):
        self.shape = tuple(shape)
        self.__cuda_array_interface__ = {
            "shape": self.shape, "typestr": typestr, "data": (ptr, False),
            "version": 3, "strides": None,
        }

    def __repr__(self):
        return "FakeCudaArray(%s, %s)" % (self.shape, self.__cuda_array_interface__["typestr"])


@pytest.fixture
def fresh_search():
    """The benchmark settings restored, and the choice caches cleared, around a test."""
    import cudnnconv
    saved = cudnnconv.benchmark_settings()
    cudnnconv.clear_cache()
    yield
    cudnnconv.clear_cache()
    cudnnconv.benchmark_settings(**saved)


@pytest.fixture
def fake_cuda_array():
    """``fake_cuda_array(shape, typestr='<f4')``: see FakeCudaArray."""
    return FakeCudaArray


class MetaArray:
    """What the typed call path and the first passes read of a CuPy array
    (shape, strides, dtype, item size, size, data pointer and device), with
    an array interface that says the same; no memory behind it.  Tests make
    the typed path take it for cupy.ndarray with callplan._use_array_type."""

    def __init__(self, shape, elem_strides, dtype, ptr, device=0):
        import math
        import types
        import numpy
        self.shape = tuple(shape)
        self.dtype = numpy.dtype(dtype)
        self.itemsize = self.dtype.itemsize
        self.strides = tuple(s * self.itemsize for s in elem_strides)
        self.ndim = len(self.shape)
        self.size = math.prod(self.shape)
        self.data = types.SimpleNamespace(ptr=ptr, device_id=device)
        self.device = types.SimpleNamespace(id=device)

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.data.ptr, False),
                "strides": self.strides, "version": 3}
