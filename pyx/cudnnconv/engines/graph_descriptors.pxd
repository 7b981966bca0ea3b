from libc.stdint cimport int64_t

from cudnnconv.decl.cudnn cimport cudnnHandle_t
from cudnnconv.decl.cudnn_backend cimport (
    cudnnBackendDescriptor_t, cudnnBackendDescriptorType_t, cudnnBackendAttributeName_t,
    cudnnBackendAttributeType_t)

cdef enum:
    VP_SLOTS = 4             # variant packs kept per plan (see VariantPacks)
    VP_MAX_TENSORS = 8       # tensors one pack can bind


cdef class BackendDescriptor:
    cdef cudnnBackendDescriptor_t ptr
    cdef readonly int kind
    cdef readonly bint finalized
    # Python objects this descriptor must outlive or be outlived by: the
    # descriptors set into it, and (plans) the Handle they were built with,
    # which is then destroyed only after the plan.
    cdef list _refs
    cdef readonly str text          # a readable summary, for errors

    cdef int set_int64s(self, cudnnBackendAttributeName_t name, const int64_t* values, int64_t n) except -1
    cdef int set_int64(self, cudnnBackendAttributeName_t name, int64_t value) except -1
    cdef int set_enum(self, cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t t, int value) except -1
    cdef int set_bool(self, cudnnBackendAttributeName_t name, bint value) except -1
    cdef int set_scalar(self, cudnnBackendAttributeName_t name, bint as_double, double value) except -1
    cdef int set_desc(self, cudnnBackendAttributeName_t name, BackendDescriptor d) except -1
    cdef int set_descs(self, cudnnBackendAttributeName_t name, list ds) except -1
    cdef int set_handle(self, cudnnBackendAttributeName_t name, cudnnHandle_t h) except -1
    cdef int set_ptrs(self, cudnnBackendAttributeName_t name, void** values, int64_t n) except -1
    cdef int keep(self, obj) except -1
    cdef int finalize(self) except -1
    cdef int64_t get_int64(self, cudnnBackendAttributeName_t name) except? -1
    cdef int get_enums(self, cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t t,
                       int* out, int capacity) except -1

cdef BackendDescriptor create(cudnnBackendDescriptorType_t kind)

cdef BackendDescriptor tensor(int64_t uid, int dtype, tuple dims, tuple strides, int64_t alignment,
                              bint is_virtual)
cdef BackendDescriptor convolution(int compute_type, tuple padding, tuple post_padding, tuple stride,
                                   tuple dilation)
cdef BackendDescriptor conv_operation(str op, BackendDescriptor x, BackendDescriptor w,
                                      BackendDescriptor y, BackendDescriptor conv, bint as_double)
cdef BackendDescriptor pointwise_operation(int mode, int math_prec, BackendDescriptor x,
                                           BackendDescriptor b, BackendDescriptor y, double alpha2,
                                           bint as_double, double alpha1=*, dict attributes=*)
cdef BackendDescriptor pointwise_backward_operation(int mode, int math_prec, BackendDescriptor x,
                                                    BackendDescriptor dy, BackendDescriptor dx, bint as_double,
                                                    dict attributes)
cdef BackendDescriptor operation_graph(list ops, cudnnHandle_t handle)


cdef class VariantPacks:
    # The variant packs of one execution plan's last VP_SLOTS pointer sets,
    # as raw descriptors this object owns (see graph_descriptors.pyx).
    cdef cudnnBackendDescriptor_t packs[VP_SLOTS]
    cdef void* ptrs[VP_SLOTS][VP_MAX_TENSORS]
    cdef void* ws[VP_SLOTS]
    cdef int64_t uids[VP_MAX_TENSORS]
    cdef int n
    cdef int next
    cdef cudnnBackendDescriptor_t get(self, void** ptrs, void* ws) except NULL
    cdef cudnnBackendDescriptor_t build(self, void** ptrs, void* ws) except NULL
    cdef void clear(self) noexcept


cdef VariantPacks variant_packs(const int64_t* uids, int n)
