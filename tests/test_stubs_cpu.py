"""The .pyi stubs of the Cython modules say what the modules have: every
name a stub declares at module level exists in the compiled module, and
every attribute or method a stub's class declares exists on the class (or,
for instance attributes, on an instance where one can be made without a
GPU).  The stubs and py.typed ship beside the modules."""
import ast
import glob
import importlib
import os

import pytest

import cudnnconv

ROOT = os.path.dirname(cudnnconv.__file__)
STUBS = sorted(glob.glob(os.path.join(ROOT, "*.pyi")) + glob.glob(os.path.join(ROOT, "*", "*.pyi")))
# instance attributes a class declares in its stub but that exist only on instances
INSTANCE_ONLY = {("CuDNNError", "status"), ("CuDNNError", "name"), ("CuDNNError", "message"),
                 ("CuDNNError", "context")}


def _module(stub):
    rel = os.path.relpath(stub, os.path.dirname(ROOT))[:-len(".pyi")]
    return rel.replace(os.sep, ".")


def test_every_extension_has_a_stub_and_py_typed_ships():
    assert os.path.exists(os.path.join(ROOT, "py.typed"))
    exts = glob.glob(os.path.join(ROOT, "*.so")) + glob.glob(os.path.join(ROOT, "*", "*.so"))
    have = {_module(s) for s in STUBS}
    for so in exts:
        rel = os.path.relpath(so, os.path.dirname(ROOT)).split(".")[0]
        assert rel.replace(os.sep, ".") in have, "no .pyi stub for %s" % so


@pytest.mark.parametrize("stub", STUBS, ids=_module)
def test_stub_names_exist(stub):
    if _module(stub).startswith("cudnnconv.torch."):
        # the package cudnnconv.torch imports torch (and says so plainly where it is missing)
        pytest.importorskip("torch", reason="cudnnconv.torch's modules import with PyTorch only")
    if _module(stub) == "cudnnconv.torch.conv_node":
        pytest.importorskip("cudnnconv.torch.conv_node",
                            reason="the C++ node is built only where torch imports at build time (setup.py)")
    mod = importlib.import_module(_module(stub))
    tree = ast.parse(open(stub).read())
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            if node.name == "__getattr__":
                continue
            assert hasattr(mod, node.name), "%s.%s" % (mod.__name__, node.name)
        elif isinstance(node, ast.AnnAssign):
            assert hasattr(mod, node.target.id), "%s.%s" % (mod.__name__, node.target.id)
        if isinstance(node, ast.ClassDef):
            cls = getattr(mod, node.name)
            for item in node.body:
                name = (item.name if isinstance(item, ast.FunctionDef)
                        else item.target.id if isinstance(item, ast.AnnAssign) else None)
                if name is None or name == "__init__" or (node.name, name) in INSTANCE_ONLY:
                    continue
                assert hasattr(cls, name), "%s.%s.%s" % (mod.__name__, node.name, name)


def test_error_attributes_the_stub_declares():
    from cudnnconv.core.status import CuDNNError
    e = CuDNNError(2000, "bad", "ctx")
    assert (e.status, e.name, e.message, e.context) == (2000, "CUDNN_STATUS_BAD_PARAM", "bad", "ctx")
