"""Find and load libcudnn before the extension modules are imported.

The extensions carry no RUNPATH (a path of the build machine would not exist
where a wheel is installed).  They need ``libcudnn.so.9``; this module loads
the nvidia-cudnn-cu13 wheel's library of the running environment (or
$CUDNN_HOME's) with RTLD_GLOBAL first, so that the dynamic loader finds it
already loaded and no LD_LIBRARY_PATH is needed.  Where neither exists, the
system loader's search applies (a cuDNN installed system-wide).
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


def loaded():
    """The path of the libcudnn.so.9 mapped into this process (what the
    extensions run on), or None where it cannot be told (not Linux)."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rstrip("\n").split(None, 5)[-1]
                if os.path.basename(path).startswith("libcudnn.so.9"):
                    return path
    except OSError:
        return None
    return None


MISSING = ("cudnnconv needs cuDNN 9 and could not load libcudnn.so.9: install it with "
           "`pip install nvidia-cudnn-cu13` into this environment, or set CUDNN_HOME to a cuDNN 9 install "
           "(its lib/ holding libcudnn.so.9)")
