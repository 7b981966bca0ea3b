"""The two paths of a cudnnconv.torch forward call, for the tests that hold them equal
(test_torch_typed_cpu.py, gpu/test_gpu_torch.py): the Python path alone, and a call's outcome."""


def python_path(nsp, *args):
    """functional._conv without the typed forward in front of it: the Python path, with every check."""
    from cudnnconv.torch import functional
    saved = functional._typed_forward
    functional._typed_forward = lambda *a: None
    try:
        return functional._conv(nsp, *args)
    finally:
        functional._typed_forward = saved


def outcome(f):
    """("ok", what f returns) or ("raised", (the exception's type, its message))."""
    try:
        return "ok", f()
    except Exception as e:          # the error itself is what is compared
        return "raised", (type(e), str(e))
