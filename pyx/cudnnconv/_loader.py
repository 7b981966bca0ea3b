"""Find and load libcudnn before the extension modules are imported.

The extensions carry an rpath to the cuDNN they were built against.  When
that path is gone (a wheel built elsewhere, an isolated build environment),
we load the nvidia-cudnn-cu13 wheel's library of this environment (or
$CUDNN_HOME's) with RTLD_GLOBAL first, so that no LD_LIBRARY_PATH is needed.
"""
import ctypes
import glob
import os

_loaded = None


def _candidates():
    home = os.environ.get("CUDNN_HOME")
    if home:
        for d in ("lib", "lib64"):
            yield from sorted(glob.glob(os.path.join(home, d, "libcudnn.so.9*")))
    try:
        import nvidia.cudnn
        for root in list(getattr(nvidia.cudnn, "__path__", [])):
            yield from sorted(glob.glob(os.path.join(root, "lib", "libcudnn.so.9*")))
    except ImportError:
        pass


def preload():
    """Load libcudnn.so.9 globally; returns its path, or None if the system's
    loader is left to find it."""
    global _loaded
    if _loaded is not None:
        return _loaded or None
    for path in _candidates():
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        _loaded = path
        return path
    _loaded = ""
    return None
