"""The package imports without a GPU and reports how it was built."""
import os
import shutil
import subprocess
import sys

import pytest

import cudnnconv
from cudnnconv.core import build

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, "include")


def test_import_in_a_fresh_interpreter():
    # Whatever this machine has, a bare import must succeed and say whether CUDA is usable.
    code = "import cudnnconv; print(type(cudnnconv.cuda_available()).__name__)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "bool"


def test_public_names_exist():
    for name in cudnnconv.__all__:
        assert hasattr(cudnnconv, name), name
    for fn in ("conv", "conv_backward_input", "conv_backward_weight", "conv_transpose",
               "conv_bias_add_relu", "flags", "version", "build_info", "clear_cache", "last_call"):
        assert callable(getattr(cudnnconv, fn)), fn
    assert issubclass(cudnnconv.CuDNNError, RuntimeError)


def test_build_info_keys_and_types():
    info = cudnnconv.build_info()
    for key in ("cudnn_headers_from", "cuda_headers_from", "CUDNNCONV_INDEX_LIMIT", "CUDNNCONV_LEGACY_API",
                "CUDNNCONV_GRAPH_API", "CUDNNCONV_DEBUG", "min_cudnn_version",
                "compiled_cudnn_version", "runtime_cudnn_version", "engines",
                "libcudnn_preloaded_from", "cudnnconv_version"):
        assert key in info, key
    for key in ("CUDNNCONV_LEGACY_API", "CUDNNCONV_GRAPH_API", "CUDNNCONV_DEBUG"):
        assert isinstance(info[key], bool), key
    assert info["cudnn_headers_from"] in ("nvidia-cudnn-cu13 wheel", "CUDNN_HOME")
    assert info["cuda_headers_from"] in ("CUDA_HOME", "/usr/local/cuda", "nvidia-cuda-runtime wheel")
    assert info["cudnnconv_version"] == cudnnconv.__version__
    assert isinstance(info["engines"], list)


def test_engines_match_the_build():
    info = cudnnconv.build_info()
    assert ("legacy" in info["engines"]) == info["CUDNNCONV_LEGACY_API"]
    if info["CUDNNCONV_LEGACY_API"]:
        assert "legacy" in info["engines"]
    assert set(info["engines"]) <= {"legacy", "graph"}
    assert info["engines"], "a default build contains at least one engine"


def test_index_limit_default_or_from_build_env():
    limit = cudnnconv.build_info()["CUDNNCONV_INDEX_LIMIT"]
    assert isinstance(limit, int) and limit >= 1
    assert limit == build.INDEX_LIMIT
    requested = os.environ.get("CUDNNCONV_INDEX_LIMIT")
    if requested:   # a small-limit test build
        assert limit == int(requested)
    elif limit != 2**31 - 1:
        pytest.skip("this extension was built with CUDNNCONV_INDEX_LIMIT=%d" % limit)
    else:
        assert limit == 2**31 - 1


def test_versions_are_ints_and_at_least_9():
    info = cudnnconv.build_info()
    assert info["min_cudnn_version"] == 90000
    for key in ("compiled_cudnn_version", "runtime_cudnn_version"):
        v = info[key]
        assert isinstance(v, int), key
        assert 90000 <= v < 200000, (key, v)
    assert cudnnconv.version() == info["runtime_cudnn_version"]
    # Same major version at compile and run time (libcudnn.so.9 both).
    assert info["runtime_cudnn_version"] // 10000 == info["compiled_cudnn_version"] // 10000


def test_libcudnn_path():
    path = cudnnconv.build_info()["libcudnn_preloaded_from"]
    if path is None:
        pytest.skip("libcudnn came from the system loader, not a preload")
    assert os.path.basename(path).startswith("libcudnn.so.9")
    assert os.path.exists(path)


def test_clear_cache_and_cache_info():
    cudnnconv.clear_cache()
    info = cudnnconv.cache_info()
    assert set(info) == set(cudnnconv.build_info()["engines"])
    for name, ci in info.items():
        assert ci.size == 0 and ci.hits == 0 and ci.misses == 0, name


def test_last_call_is_none_on_a_fresh_thread():
    import threading
    seen = []
    t = threading.Thread(target=lambda: seen.append(cudnnconv.last_call()))
    t.start()
    t.join()
    assert seen == [None]


# ---------------------------------------------------------------------------
# The configuration header refuses cuDNN < 9.0
# ---------------------------------------------------------------------------

def _compile_config(tmp_path, major, minor=0, patch=0):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler (cc) on PATH")
    (tmp_path / "cudnn_version.h").write_text(
        "#define CUDNN_MAJOR %d\n#define CUDNN_MINOR %d\n#define CUDNN_PATCHLEVEL %d\n"
        "#define CUDNN_VERSION (CUDNN_MAJOR * 10000 + CUDNN_MINOR * 100 + CUDNN_PATCHLEVEL)\n"
        % (major, minor, patch))
    src = tmp_path / "probe.c"
    src.write_text('#include "cudnnconv_config.h"\nint cudnnconv_probe = CUDNNCONV_MIN_CUDNN_VERSION;\n')
    return subprocess.run([cc, "-fsyntax-only", "-I", str(tmp_path), "-I", CONFIG_DIR, str(src)],
                          capture_output=True, text=True, timeout=60)


def test_config_header_refuses_cudnn_8(tmp_path):
    res = _compile_config(tmp_path, 8, 9, 7)
    assert res.returncode != 0
    assert "cudnnconv needs cuDNN >= 9.0" in res.stderr


@pytest.mark.parametrize("version", [(9, 0, 0), (9, 28, 1)])
def test_config_header_accepts_cudnn_9(tmp_path, version):
    res = _compile_config(tmp_path, *version)
    assert res.returncode == 0, res.stderr
    assert "cudnnconv needs" not in res.stderr
