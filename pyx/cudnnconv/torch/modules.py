"""torch.nn's convolution modules, run through cudnnconv.

Each class subclasses its torch.nn namesake and replaces only the call of the convolution, so the
constructor, parameters, ``state_dict`` keys, ``repr`` and ``isinstance(m, torch.nn.Conv2d)`` are
PyTorch's own, and checkpoints load both ways.  The non-zero padding modes ('reflect',
'replicate', 'circular') pad with torch.nn.functional.pad first, as torch.nn does, then convolve
with no padding.  A module given a CPU tensor (a model moved to the CPU for export, say) runs
torch's own convolution.
"""
import torch

import cudnnconv.torch.functional as F
from cudnnconv.torch.typed import forward as _typed_forward

_pad = torch.nn.functional.pad
_is_compiling = getattr(torch.compiler, "is_compiling", lambda: False)


def _conv_forward(self, base, fn, nsp, input, weight, bias):
    # The typed forward first (cudnnconv.torch.typed: None where it does not take the call), called
    # here rather than through ``fn`` so that an eager call skips fn's torch.compiler.disable
    # wrapper; while dynamo traces, ``fn`` is called, and the graph breaks there as it always did.
    if self.padding_mode == "zeros" and not _is_compiling():
        y = _typed_forward(nsp, input, weight, bias, self.stride, self.padding, self.dilation, self.groups,
                           F._CONV_APPLY)
        if y is not None:
            return y
    if not input.is_cuda:
        return base._conv_forward(self, input, weight, bias)
    if self.padding_mode != "zeros":
        return fn(_pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode), weight, bias,
                  self.stride, 0, self.dilation, self.groups)
    return fn(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class Conv1d(torch.nn.Conv1d):
    def _conv_forward(self, input, weight, bias):
        return _conv_forward(self, torch.nn.Conv1d, F.conv1d, 1, input, weight, bias)


class Conv2d(torch.nn.Conv2d):
    def _conv_forward(self, input, weight, bias):
        return _conv_forward(self, torch.nn.Conv2d, F.conv2d, 2, input, weight, bias)


class Conv3d(torch.nn.Conv3d):
    def _conv_forward(self, input, weight, bias):
        return _conv_forward(self, torch.nn.Conv3d, F.conv3d, 3, input, weight, bias)


def _transpose_forward(self, base, fn, nsp, input, output_size):
    if not input.is_cuda:
        return base.forward(self, input, output_size)
    if self.padding_mode != "zeros":
        raise ValueError("Only 'zeros' padding mode is supported for %s" % type(self).__name__)
    output_padding = self._output_padding(input, output_size, self.stride, self.padding, self.kernel_size, nsp,
                                          self.dilation)
    return fn(input, self.weight, self.bias, self.stride, self.padding, output_padding, self.groups, self.dilation)


class ConvTranspose1d(torch.nn.ConvTranspose1d):
    def forward(self, input, output_size=None):
        return _transpose_forward(self, torch.nn.ConvTranspose1d, F.conv_transpose1d, 1, input, output_size)


class ConvTranspose2d(torch.nn.ConvTranspose2d):
    def forward(self, input, output_size=None):
        return _transpose_forward(self, torch.nn.ConvTranspose2d, F.conv_transpose2d, 2, input, output_size)


class ConvTranspose3d(torch.nn.ConvTranspose3d):
    def forward(self, input, output_size=None):
        return _transpose_forward(self, torch.nn.ConvTranspose3d, F.conv_transpose3d, 3, input, output_size)
