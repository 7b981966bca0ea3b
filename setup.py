"""Build script for cudnnconv.

Compile-time options come from environment variables (see the README's
table); their defaults live in include/cudnnconv_config.h.  This file only
finds cuDNN and the CUDA headers and turns the variables into -D flags.

cuDNN is found, in this order:
  1. $CUDNN_HOME/include and $CUDNN_HOME/lib (or lib64);
  2. the nvidia-cudnn-cu13 wheel installed in the environment doing the build.
The CUDA headers (cuda_runtime_api.h, included by cudnn.h) are found under
$CUDA_HOME/include (default /usr/local/cuda), else in an nvidia-cuda-runtime
wheel.  No CUDA library is linked: cuDNN and CuPy each carry their own runtime.
"""
import glob
import json
import os
import shutil
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

try:
    from setuptools.modified import newer_group
except ImportError:                       # setuptools < 69
    from setuptools._distutils.dep_util import newer_group

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "pyx")


def _fail(msg):
    sys.stderr.write("\ncudnnconv build error: %s\n\n" % msg)
    raise SystemExit(1)


def _flag(name, default):
    value = os.environ.get(name)
    if value is None or value == "":
        return None  # keep the header's default
    if value.lower() in ("1", "on", "yes", "true"):
        return 1
    if value.lower() in ("0", "off", "no", "false"):
        return 0
    _fail("%s must be 0/1 (or on/off), got %r" % (name, value))


def _site_dirs():
    import site
    dirs = list(site.getsitepackages()) + [site.getusersitepackages()]
    dirs += [p for p in sys.path if p.endswith("site-packages")]
    seen, out = set(), []
    for d in dirs:
        if d and os.path.isdir(d) and d not in seen:
            seen.add(d)
            out.append(d)
    return out


def find_cudnn():
    home = os.environ.get("CUDNN_HOME")
    if home:
        inc = os.path.join(home, "include")
        libs = [os.path.join(home, d) for d in ("lib", "lib64", "lib/x86_64-linux-gnu")]
        libs = [d for d in libs if glob.glob(os.path.join(d, "libcudnn.so*"))]
        if not os.path.exists(os.path.join(inc, "cudnn.h")) or not libs:
            _fail("CUDNN_HOME=%s has no include/cudnn.h or lib*/libcudnn.so*" % home)
        return "CUDNN_HOME", inc, libs[0]
    for site_dir in _site_dirs():
        root = os.path.join(site_dir, "nvidia", "cudnn")
        inc, lib = os.path.join(root, "include"), os.path.join(root, "lib")
        if os.path.exists(os.path.join(inc, "cudnn.h")) and glob.glob(os.path.join(lib, "libcudnn.so*")):
            return "nvidia-cudnn-cu13 wheel", inc, lib
    _fail("cuDNN not found: install the nvidia-cudnn-cu13 wheel (pip install nvidia-cudnn-cu13) "
          "into the environment that builds cudnnconv (build with --no-build-isolation), or set CUDNN_HOME")


def find_cuda_include():
    home = os.environ.get("CUDA_HOME") or "/usr/local/cuda"
    inc = os.path.join(home, "include")
    if os.path.exists(os.path.join(inc, "cuda_runtime_api.h")):
        return ("CUDA_HOME" if os.environ.get("CUDA_HOME") else home), inc
    for site_dir in _site_dirs():
        for hdr in glob.glob(os.path.join(site_dir, "nvidia", "*", "include", "cuda_runtime_api.h")):
            return "nvidia-cuda-runtime wheel", os.path.dirname(hdr)
    _fail("cuda_runtime_api.h not found under CUDA_HOME=%s/include nor in an nvidia-cuda-runtime wheel; "
          "set CUDA_HOME to a CUDA toolkit, or pip install nvidia-cuda-runtime nvidia-cuda-crt "
          "(the runtime headers, and crt/host_defines.h that they include)" % home)


def cudnn_soname(lib_dir):
    for name in ("libcudnn.so.9", "libcudnn.so"):
        if os.path.exists(os.path.join(lib_dir, name)):
            return name
    return os.path.basename(sorted(glob.glob(os.path.join(lib_dir, "libcudnn.so*")))[0])


def extensions():
    from Cython.Build import cythonize

    cudnn_from, cudnn_inc, cudnn_lib = find_cudnn()
    cuda_from, cuda_inc = find_cuda_include()
    # Where the headers came from, as a label ("nvidia-cudnn-cu13 wheel", "CUDNN_HOME", ...), never a
    # path: an extension carries no absolute path of the machine or environment that built it.
    macros = [
        ("CUDNNCONV_CUDNN_HEADERS", '"%s"' % cudnn_from),
        ("CUDNNCONV_CUDA_HEADERS", '"%s"' % cuda_from),
    ]
    options = {}
    for name in ("CUDNNCONV_LEGACY_API", "CUDNNCONV_GRAPH_API", "CUDNNCONV_DEBUG"):
        value = _flag(name, None)
        if value is not None:
            macros.append((name, str(value)))
        options[name] = value
    limit = os.environ.get("CUDNNCONV_INDEX_LIMIT")
    if limit:
        try:
            if int(limit) < 1:
                raise ValueError
        except ValueError:
            _fail("CUDNNCONV_INDEX_LIMIT must be a positive integer, got %r" % limit)
        macros.append(("CUDNNCONV_INDEX_LIMIT", "%dLL" % int(limit)))

    # No RUNPATH: an absolute one would name the build machine's (or a deleted
    # isolated build environment's) cuDNN.  The package loads libcudnn itself
    # at import (cudnnconv._loader: the nvidia-cudnn-cu13 wheel of the running
    # environment, or $CUDNN_HOME, else the system loader), before any
    # extension needs it.  Release builds carry no debug info;
    # CUDNNCONV_DEBUG_INFO=1 keeps it.
    debug_info = _flag("CUDNNCONV_DEBUG_INFO", None) == 1
    common = dict(
        include_dirs=[os.path.join(HERE, "include"), cudnn_inc, cuda_inc],
        library_dirs=[cudnn_lib],
        extra_link_args=["-l:" + cudnn_soname(cudnn_lib)] + ([] if debug_info else ["-s"]),
        extra_compile_args=["-O2", "-Wno-deprecated-declarations", "-Wno-unused-function"]
        + ([] if debug_info else ["-g0"]),
        define_macros=macros,
    )
    modules = ["core.status", "core.handle", "core.build", "core.state", "core.executor", "core.arrays", "callplan",
               "torch.typed"]
    if options["CUDNNCONV_LEGACY_API"] != 0:
        modules += ["engines.legacy_descriptors", "engines.legacy"]
    if options["CUDNNCONV_GRAPH_API"] != 0 and os.path.exists(os.path.join(SRC, "cudnnconv", "engines", "graph.pyx")):
        modules += ["engines.graph_descriptors", "engines.graph"]
    exts = [
        Extension("cudnnconv." + m, [os.path.join("pyx", "cudnnconv", *m.split(".")) + ".pyx"], **common)
        for m in modules
    ]
    return cythonize(
        exts,
        include_path=[SRC],
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "embedsignature": True},
    ) + torch_extensions(debug_info)


def torch_extensions(debug_info):
    """cudnnconv.torch.conv_node, the C++ autograd node of cudnnconv.torch's forward convolutions,
    where torch imports in the environment doing the build (build with --no-build-isolation) and
    CUDNNCONV_TORCH_NODE is not 0; CUDNNCONV_TORCH_NODE=1 makes a build without torch an error.
    It is compiled against that torch's headers and runs only with that torch (a torch of another
    version fails its import, and cudnnconv.torch records its Python autograd.Function instead;
    docs/torch.md).  Like the other extensions it carries no RUNPATH: torch's libraries are loaded
    by ``import torch``, which cudnnconv.torch does before it loads the node."""
    want = _flag("CUDNNCONV_TORCH_NODE", None)
    if want == 0:
        return []
    try:
        import torch
        from torch.utils import cpp_extension
    except Exception:                 # no torch, or one that fails to import (its CUDA libraries, say)
        if want == 1:
            _fail("CUDNNCONV_TORCH_NODE=1, but torch does not import in the environment doing the build")
        return []
    abi = int(bool(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", True)))
    # torch's headers put their own path in assertion messages (__FILE__): name them from torch/ on
    site = os.path.dirname(os.path.dirname(os.path.abspath(torch.__file__)))
    return [Extension(
        "cudnnconv.torch.conv_node", [os.path.join("pyx", "cudnnconv", "torch", "conv_node.cpp")],
        include_dirs=[os.path.join(HERE, "include")] + cpp_extension.include_paths(),
        depends=[os.path.join("include", "cudnnconv_torch_node.h")],
        library_dirs=cpp_extension.library_paths(),
        libraries=["c10", "torch", "torch_cpu", "torch_python"],
        language="c++",
        extra_compile_args=["-O2", "-std=c++20", "-fvisibility=hidden", "-Wno-deprecated-declarations",
                            "-D_GLIBCXX_USE_CXX11_ABI=%d" % abi, "-fmacro-prefix-map=%s%s=" % (site, os.sep)]
        + ([] if debug_info else ["-g0"]),
        extra_link_args=[] if debug_info else ["-s"],
        # the torch it runs with must be this one (PyInit_conv_node checks); a new torch also makes
        # an in-place build's stamp differ, so the node is rebuilt
        define_macros=[("CUDNNCONV_TORCH_BUILT", '"%s"' % torch.__version__)],
        # where it does not compile (a compiler without C++20, say), the rest of cudnnconv still
        # builds, and cudnnconv.torch records its Python Function; CUDNNCONV_TORCH_NODE=1 makes that an error
        optional=want is None,
    )]


class BuildExt(build_ext):
    """setuptools' build_ext, with two changes.

    1. An editable install (``pip install -e .``) keeps each extension whose in-place copy is the
       one the last build made (its size and mtime are in its stamp), with the same options (the
       CUDNNCONV_* macros and flags), and newer than its generated C/C++ source and the headers.
       setuptools builds an editable install's extensions in a fresh temporary folder each time, so
       without this every reinstall compiled every module again.  Cython regenerates a source
       whenever its .pyx or a cimported .pxd changed, which makes it newer than the extension.
       Every build that writes extensions in place (editable or ``build_ext --inplace``) writes
       the stamps, in build/inplace-stamps/; anything else that replaced an extension does not
       match its stamp, and the extension is rebuilt.
    2. No RUNPATH: see ``build_extensions``.
    """

    def _stamp(self, ext, path):
        st = os.stat(path)
        return json.dumps([sorted(map(list, ext.define_macros)), ext.extra_compile_args, ext.extra_link_args,
                           ext.include_dirs, ext.library_dirs, st.st_size, st.st_mtime_ns])

    def _stamp_path(self, ext):
        return os.path.join(HERE, "build", "inplace-stamps", ext.name + ".json")

    def _inplace_path(self, ext):
        if hasattr(self, "_get_inplace_equivalent"):
            return self._get_inplace_equivalent(self.get_finalized_command("build_py"), ext)
        return None, None

    def run(self):
        in_place = bool(self.inplace or getattr(self, "editable_mode", False))
        self._vouched = set()           # extensions compiled now, or kept by a matching stamp
        super().run()
        if not in_place:
            return
        for ext in self.extensions:
            inplace, _ = self._inplace_path(ext)
            stamp = self._stamp_path(ext)
            if ext.name in self._vouched and inplace and os.path.exists(inplace):
                os.makedirs(os.path.dirname(stamp), exist_ok=True)
                with open(stamp, "w") as f:
                    f.write(self._stamp(ext, inplace))
            elif os.path.exists(stamp):
                # distutils skipped it as up to date by time alone: its options are not known
                os.remove(stamp)

    def build_extensions(self):
        # Some Pythons (pyenv's, for one) put -Wl,-rpath,<their lib folder> in every extension's link
        # line.  These extensions do not link libpython, so that RUNPATH would only carry the build
        # machine's path into the wheel: leave it out (either spelling, one token or two; not
        # -rpath-link, which only guides the linker).
        for attr in ("linker_so", "linker_so_cxx"):
            line = getattr(self.compiler, attr, None)
            if line:
                setattr(self.compiler, attr, _without_rpath(line))
        super().build_extensions()

    def build_extension(self, ext):
        inplace, target = self._inplace_path(ext)
        if getattr(self, "editable_mode", False) and inplace and os.path.exists(inplace):
            deps = list(ext.sources) + list(ext.depends) + [
                h for d in ext.include_dirs for h in glob.glob(os.path.join(d, "cudnn*.h"))
                + glob.glob(os.path.join(d, "cudnnconv*.h"))]
            try:
                with open(self._stamp_path(ext)) as f:
                    same = f.read() == self._stamp(ext, inplace)
            except OSError:
                same = False
            if same and not newer_group(deps, inplace, "newer"):
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copy2(inplace, target)          # what setuptools then copies back in place
                self.announce("%s: up to date in place, not rebuilt" % ext.name, level=2)
                self._vouched.add(ext.name)
                return
        out = self.get_ext_fullpath(ext.name)
        before = os.stat(out).st_mtime_ns if os.path.exists(out) else None
        super().build_extension(ext)
        if os.path.exists(out) and os.stat(out).st_mtime_ns != before:
            self._vouched.add(ext.name)                # compiled now, with these options


def _without_rpath(line):
    """A link line without -Wl,-rpath,DIR / -Wl,-R,DIR, nor -Wl,-rpath -Wl,DIR (two tokens)."""
    out, skip = [], False
    for a in line:
        if skip:
            skip = False
            continue
        if a in ("-Wl,-rpath", "-Wl,-R"):
            skip = True
            continue
        if a.startswith(("-Wl,-rpath,", "-Wl,-rpath=", "-Wl,-R,")) or (a.startswith("-Wl,-R") and a[6:7] == "/"):
            continue
        out.append(a)
    return out


setup(
    name="cudnnconv",
    cmdclass={"build_ext": BuildExt},
    version="0.1.0",
    description="cuDNN convolutions on CuPy arrays: legacy and graph engines, persistent tuning",
    package_dir={"": "pyx"},
    packages=["cudnnconv", "cudnnconv.decl", "cudnnconv.core", "cudnnconv.engines", "cudnnconv.params",
              "cudnnconv.torch"],
    package_data={"cudnnconv": ["*.pxd", "*/*.pxd", "*.pyi", "*/*.pyi", "py.typed"]},
    ext_modules=extensions(),
    python_requires=">=3.9",
    install_requires=["numpy", "cupy-cuda13x", "nvidia-cudnn-cu13"],
    extras_require={"test": ["pytest", "hypothesis", "ml_dtypes"], "bf16": ["ml_dtypes"]},
    zip_safe=False,
)
