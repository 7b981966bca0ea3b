/* The interface between cudnnconv.torch.conv_node (C++, built against torch) and the typed
 * backward of cudnnconv.torch.typed (Cython): plain C, so that neither side needs the other's
 * headers.  The node reads each tensor once, through ATen, and hands the reads over with the
 * tensors' Python objects (for the fallback through the public functions). */
#ifndef CUDNNCONV_TORCH_NODE_H
#define CUDNNCONV_TORCH_NODE_H

#include <Python.h>
#include <stddef.h>
#include <stdint.h>

#define CUDNNCONV_NODE_DIMS 8    /* as cudnnconv.core.arrays' MAX_DIMS (typed checks): more dims are not read */

typedef struct {
    PyObject* tensor;            /* the tensor as a Python object (a new reference), or Py_None */
    PyObject* dtype;             /* its torch.dtype (borrowed: torch holds every dtype object) */
    size_t ptr;                  /* data_ptr() */
    int ndim;                    /* -1: not read (more dims than CUDNNCONV_NODE_DIMS) */
    int device;                  /* get_device(): -1 off CUDA */
    int64_t shape[CUDNNCONV_NODE_DIMS];
    int64_t strides[CUDNNCONV_NODE_DIMS];   /* in elements, as stride() gives them */
} cudnnconv_node_tensor;

/* The typed backward: the input gradient into t[3] and the weight gradient into t[4] (each
 * Py_None where the engine does not ask for it) of the convolution of t[0] (x) and t[1] (w), from
 * t[2], the output gradient made dense; geom: the two gradient calls' scalars; flags: the
 * forward's.  Called with the GIL held; 0, or -1 with a Python exception set. */
typedef int (*cudnnconv_node_backward)(PyObject* geom, PyObject* flags, const cudnnconv_node_tensor* t);

/* The capsule's name carries the layout's version: a conv_node and a typed of different layouts
 * (one module rebuilt without the other) refuse each other in conv_node.configure(). */
#define CUDNNCONV_NODE_BACKWARD_CAPSULE "cudnnconv.torch.typed.conv_backward/1"

#endif
