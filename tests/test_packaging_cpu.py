"""The built extensions are relocatable: no RUNPATH names the build's cuDNN,
release builds carry no debug info, and without cuDNN the import says what
to install (no GPU needed)."""
import glob
import os
import shutil
import subprocess
import sys

import pytest

import cudnnconv

READELF = shutil.which("readelf")
needs_readelf = pytest.mark.skipif(READELF is None, reason="readelf (binutils) is not installed")


def _extensions():
    root = os.path.dirname(cudnnconv.__file__)
    found = sorted(glob.glob(os.path.join(root, "**", "*.so"), recursive=True))
    assert found, "no built extension under %s" % root
    return found


def _dynamic(path):
    return subprocess.run([READELF, "-d", path], capture_output=True, text=True, check=True).stdout


@needs_readelf
def test_no_extension_has_a_runpath():
    """No RUNPATH or RPATH at all: not to cuDNN, not to a (deleted) isolated
    build environment, and not to the interpreter's own library folder, which
    some Pythons (pyenv's, for one) put in every extension's link line."""
    for so in _extensions():
        for line in _dynamic(so).splitlines():
            assert "(RUNPATH)" not in line and "(RPATH)" not in line, (so, line)


@needs_readelf
def test_release_builds_carry_no_debug_info():
    if os.environ.get("CUDNNCONV_DEBUG_INFO", "").lower() in ("1", "on", "yes", "true"):
        pytest.skip("built with CUDNNCONV_DEBUG_INFO=1")
    for so in _extensions():
        sections = subprocess.run([READELF, "-S", so], capture_output=True, text=True, check=True).stdout
        assert ".debug_info" not in sections, so


def test_no_extension_carries_a_build_path():
    """No extension holds a path of the machine or environment that built it: not the sources, not
    a site-packages (where the cuDNN wheel's headers were), not an isolated build environment.
    build_info() says where the headers came from by a label instead."""
    src_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for so in _extensions():
        with open(so, "rb") as f:
            data = f.read()
        for needle in (b"site-packages", b"dist-packages", b"pip-build-env", src_root.encode()):
            assert needle not in data, (so, needle)


def test_build_info_says_which_libcudnn_runs():
    info = cudnnconv.build_info()
    loaded = info["libcudnn_loaded"]
    if loaded is None:
        pytest.skip("/proc/self/maps is not readable here")
    assert os.path.basename(loaded).startswith("libcudnn.so.9") and os.path.exists(loaded)
    if info["libcudnn_preloaded_from"]:
        assert os.path.realpath(loaded) == os.path.realpath(info["libcudnn_preloaded_from"])


def test_without_cudnn_the_import_says_what_to_install():
    code = ("import sys\n"
            "sys.modules['nvidia.cudnn'] = None      # no cuDNN wheel in this environment\n"
            "try:\n"
            "    import cudnnconv\n"
            "except ImportError as e:\n"
            "    print('ImportError:', e)\n"
            "else:\n"
            "    print('imported', cudnnconv.build_info()['libcudnn_loaded'])\n")
    env = {k: v for k, v in os.environ.items() if k not in ("CUDNN_HOME", "LD_LIBRARY_PATH", "LD_PRELOAD")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    if out.stdout.startswith("imported"):
        pytest.skip("a system-wide libcudnn.so.9 is installed: %s" % out.stdout.strip())
    assert "pip install nvidia-cudnn-cu13" in out.stdout and "CUDNN_HOME" in out.stdout, out.stdout
