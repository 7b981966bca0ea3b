"""Arguments in, validated problem out (policy tier, no GPU needed), one job per module:

* ``ingest``: array arguments (cupy.ndarray, ``__cuda_array_interface__``,
  DLPack) checked on their metadata; dtypes alike, one device, ``out`` and
  overlap;
* ``dtypes``: the dtypes cudnnconv takes, as cuDNN's data-type codes;
* ``layouts``: the two memory layouts (NCHW and channels-last), their
  strides, which one a call uses, arrays made or packed in one;
* ``geometry``: stride, padding, dilation and groups against the shapes, and
  the output shape, for every direction;
* ``keys``: the problem key and ``make_key``, the one function that builds it;
* ``repro``: the one-line Python repro that errors carry.

Everything here runs before any GPU work: a bad argument raises ValueError or
TypeError with the offending values, never a crash inside cuDNN.  The
package's names are the ones its callers use (``params.conv_geometry``, ...).
"""
from cudnnconv.params.dtypes import (  # noqa: F401
    _CUDNN_DTYPE, cudnn_dtype)
from cudnnconv.params.ingest import (  # noqa: F401
    ArrayArg, _span, check_out, check_same_device, check_same_dtype, finite_real, inspect_array, overlaps)
from cudnnconv.params.layouts import (  # noqa: F401
    CHANNELS_LAST, NCHW, _layout_strides, empty_in_layout, has_layout, layout_strides, memory_order, suggest_layout,
    to_layout)
from cudnnconv.params.geometry import (  # noqa: F401
    Geometry, backward_input_geometry, backward_weight_geometry, check_bias, conv_geometry, one_sided,
    padding_pairs, spatial_tuple, tile_padding, transpose_geometry)
from cudnnconv.params.keys import (  # noqa: F401
    ProblemKey, make_key, persistent)
from cudnnconv.params.repro import (  # noqa: F401
    RandomArray, repro, repro_kwargs)
