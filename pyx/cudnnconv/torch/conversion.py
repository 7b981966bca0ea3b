"""convert(model) and revert(model): torch.nn convolutions swapped in place.

A swap changes only the module's class (``module.__class__``), to the cudnnconv.torch subclass of
the same name or back: the module object, its parameters and buffers (their devices, dtypes and
memory formats), hooks and the model's references to it are untouched.  Only modules of exactly a
torch.nn convolution class are swapped: a user's subclass may override ``forward`` and is left
alone (``torch_rules.conversion_plan``).
"""
import torch

from cudnnconv import torch_rules as rules
import cudnnconv.torch.modules as _ours


def _swap(model, reverse):
    if not isinstance(model, torch.nn.Module):
        raise TypeError("%s takes a torch.nn.Module, got %s" % ("revert" if reverse else "convert",
                                                                type(model).__name__))
    found = dict(model.named_modules(remove_duplicate=False))
    plan = rules.conversion_plan([(name, type(m)) for name, m in found.items()], reverse=reverse)
    target = torch.nn if reverse else _ours
    for name, cls_name in plan:
        found[name].__class__ = getattr(target, cls_name)
    return model


def convert(model):
    """Swap every torch.nn convolution of ``model`` (itself included) for cudnnconv.torch's, in
    place; returns ``model``."""
    return _swap(model, False)


def revert(model):
    """Undo ``convert``: every cudnnconv.torch convolution of ``model`` back to torch.nn's, in
    place; returns ``model``."""
    return _swap(model, True)
