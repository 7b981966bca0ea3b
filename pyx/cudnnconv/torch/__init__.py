"""cudnnconv for PyTorch: drop-in convolutions with autograd, on PyTorch's stream.

    import cudnnconv.torch as cct
    cct.convert(model)              # every torch.nn convolution now runs through cudnnconv

Functional forms (``conv1d/2d/3d``, ``conv_transpose1d/2d/3d``, ``conv_bias_add_relu``, and
``conv_act``: act(alpha1 * conv + alpha2 * z + bias), fused where cuDNN can) take the
arguments of ``torch.nn.functional``'s and differentiate through cudnnconv's backward functions
(input, weight and bias gradients; ``needs_input_grad`` respected; double backward refused with a
clear error).  ``Conv1d/2d/3d`` and ``ConvTranspose1d/2d/3d`` subclass ``torch.nn``'s, so they take
the same constructor arguments and ``state_dict`` keys; ``convert(model)`` swaps every ``torch.nn``
convolution of a model in place and ``revert(model)`` swaps them back.  A forward convolution that
records autograd gets a C++ autograd node where one was built (``autograd_node()`` says whether;
``use_autograd_node(False)`` records the Python autograd.Function instead).  See ``docs/torch.md``.

Importing ``cudnnconv`` never imports torch: only this module does.
"""
try:
    import torch as _torch  # noqa: F401
except ImportError as _e:          # a clear message, not a bare ModuleNotFoundError from deep inside
    raise ImportError("cudnnconv.torch needs PyTorch (pip install torch); cudnnconv itself runs without it") \
        from _e

import cudnnconv as _cc  # noqa: E402
from cudnnconv.torch.functional import (  # noqa: E402,F401
    conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d, conv_transpose3d, conv_bias_add_relu, conv_act)
from cudnnconv.torch.modules import (  # noqa: E402,F401
    Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d)
from cudnnconv.torch.conversion import convert, revert  # noqa: E402,F401
from cudnnconv.torch.functional import autograd_node, use_autograd_node  # noqa: E402,F401

# The configuration is cudnnconv's own: the same objects, the same tuning cache and flags.
flags, explain, last_choice, last_call = _cc.flags, _cc.explain, _cc.last_choice, _cc.last_call
save_tuning, load_tuning, clear_cache, cache_info = _cc.save_tuning, _cc.load_tuning, _cc.clear_cache, _cc.cache_info

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
           "conv_bias_add_relu", "conv_act", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
           "ConvTranspose3d", "convert", "revert", "flags", "explain", "last_choice", "last_call", "save_tuning",
           "load_tuning", "clear_cache", "cache_info", "autograd_node", "use_autograd_node"]
