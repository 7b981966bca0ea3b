"""The dtypes cudnnconv takes, as cuDNN's data-type codes."""

import numpy

# cuDNN's data-type codes (cudnnDataType_t; stable across cuDNN 9).
_CUDNN_DTYPE = {"float32": 0, "float64": 1, "float16": 2, "bfloat16": 9}


_DTYPE_CODES = {}          # dtype (object or name) -> code, filled as seen (numpy's dtype.name is slow)


def cudnn_dtype(dtype):
    """The cudnnDataType_t code for a NumPy/CuPy dtype, or TypeError."""
    try:
        return _DTYPE_CODES[dtype]
    except (KeyError, TypeError):
        pass
    dt = numpy.dtype(dtype)
    name = dt.name
    try:
        code = _CUDNN_DTYPE[name]
    except KeyError:
        hint = ""
        if dt.kind == "V" and dt.itemsize == 2:
            # cupy.asarray(torch bfloat16 tensor) gives raw 2-byte void: the
            # array interface has no bfloat16.  It may be anything, so no guess.
            hint = ("; 2-byte void is what the CUDA array interface makes of bfloat16: pass the tensor "
                    "itself (cudnnconv reads bfloat16 through DLPack), use cupy.from_dlpack(tensor), or, "
                    "if the array holds bfloat16, view it as ml_dtypes.bfloat16")
        raise TypeError("unsupported dtype %s: cudnnconv supports float16, bfloat16, "
                        "float32 and float64%s" % (name, hint)) from None
    if len(_DTYPE_CODES) < 64:
        try:
            _DTYPE_CODES[dtype] = code
        except TypeError:
            pass
    return code
