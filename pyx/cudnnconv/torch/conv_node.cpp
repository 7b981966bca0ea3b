// cudnnconv.torch.conv_node: the autograd node of a cudnnconv forward convolution, in C++.
//
// A torch.autograd.Function costs a training step host time that PyTorch's own convolutions do
// not pay: its forward builds a Python context object and its backward runs in Python, entered
// from the autograd engine through PyNode (the grads packed into a tuple, BackwardCFunction.apply,
// once_differentiable's no_grad block, ctx attribute reads, the saved tensors unpacked into new
// Python objects, the outputs validated again).  This node is what PyTorch's own
// ConvolutionBackward0 is: a C++ Node with two SavedVariables, entered by the engine directly.  It
// allocates the gradients with ATen (torch's caching allocator, on the stream the engine made
// current: the forward's) and hands the two convolutions to cudnnconv's typed backward
// (cudnnconv.torch.typed, Cython) through one C function pointer, under the GIL.
//
// It is built only where torch imports in the building environment (setup.py), against that
// torch's headers, and is loaded only by cudnnconv.torch.functional, after torch.  A build for
// another torch fails to import, and cudnnconv.torch then records its Python autograd.Function
// (docs/torch.md).  The module imports nothing of cudnnconv: typed hands over its backward with
// configure(), so the dependency points from cudnnconv.torch.functional to both.
//
// Behaviour, each the Python Function's (_Conv in functional.py), which the tests hold it to:
// - record(x, w, b, y, geom, flags): y (the convolution of x and w, computed by the caller with no
//   autograd) gets b added (under no_grad) and this node as its grad_fn; the node saves x and w
//   (SavedVariable: version checks, saved-tensor hooks, "backward through the graph a second
//   time") and holds geom (the two gradient calls' scalars) and flags (the forward's cudnn flags).
// - backward: the incoming gradient made dense in x's memory format, as bridge.dense does; the
//   input and weight gradients from empty_like(x) / empty_like(w), each only where the engine asks
//   for it (task_should_compute_output: needs_input_grad, narrowed by autograd.grad's inputs); the
//   bias gradient as the sum over every dim but 1.
// - double backward is refused as once_differentiable refuses it: under create_graph the
//   gradients carry a DelayedError, which raises "trying to differentiate twice a function that
//   was marked with @once_differentiable" only when they are differentiated.
// - an error in the convolution (a cuDNN status, a bad workspace) is the Python exception the
//   typed backward raised, re-raised from backward() on the caller's thread.

#include <Python.h>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/DynamicTypes.h>
#include <torch/csrc/Exceptions.h>
#include <torch/csrc/autograd/edge.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/basic_ops.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/python_cpp_function.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/autograd/saved_variable.h>

#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "cudnnconv_torch_node.h"

namespace {

using torch::autograd::Edge;
using torch::autograd::Node;
using torch::autograd::SavedVariable;
using torch::autograd::variable_list;

// How this torch holds a Node: std::shared_ptr before 2.13, c10::intrusive_ptr since.
using NodePtr = decltype(std::declval<Edge>().function);
constexpr bool kIntrusive = !std::is_same_v<NodePtr, std::shared_ptr<Node>>;

template <class T, class... A>
auto make_node(A&&... a) {
  if constexpr (kIntrusive) {
    return c10::make_intrusive<T>(std::forward<A>(a)...);
  } else {
    return std::make_shared<T>(std::forward<A>(a)...);
  }
}

// cudnnconv.torch.typed's backward (include/cudnnconv_torch_node.h), from configure().
cudnnconv_node_backward g_backward = nullptr;
constexpr const char* kTwice =
    "trying to differentiate twice a function that was marked with @once_differentiable";

bool finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing();
#else
  return _Py_IsFinalizing();
#endif
}

// A new reference to a Python object, released under the GIL (a node may die on any thread).
class PyRef {
 public:
  PyRef() = default;
  PyRef(const PyRef&) = delete;
  PyRef& operator=(const PyRef&) = delete;
  ~PyRef() {
    // (at interpreter shutdown the object is left: a thread other than Python's own may not take
    // the GIL then)
    if (p_ != nullptr && Py_IsInitialized() && !finalizing()) {
      PyGILState_STATE s = PyGILState_Ensure();
      Py_DECREF(p_);
      PyGILState_Release(s);
    }
  }
  PyObject* get() const { return p_; }
  void hold(PyObject* o) {  // (the GIL held; once, on a new node)
    Py_XINCREF(o);
    p_ = o;
  }

 private:
  PyObject* p_ = nullptr;
};

// The memory format of a convolution output next to t (bridge.memory_format).
at::MemoryFormat format_of(const at::Tensor& t) {
  if (t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    return at::MemoryFormat::ChannelsLast;
  }
  if (t.dim() == 5 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast3d)) {
    return at::MemoryFormat::ChannelsLast3d;
  }
  return at::MemoryFormat::Contiguous;
}

// g in like's memory format where it is not dense in either layout (bridge.dense).
at::Tensor dense(const at::Tensor& g, const at::Tensor& like) {
  for (int64_t s : g.strides()) {
    if (s == 0) {
      return g.contiguous(format_of(like));
    }
  }
  if (g.is_contiguous()) {
    return g;
  }
  at::MemoryFormat fmt = format_of(like);
  if (fmt == at::MemoryFormat::Contiguous || !g.is_contiguous(fmt)) {
    return g.contiguous(fmt);
  }
  return g;
}

// The Python error set now, as an exception the engine re-raises on backward()'s caller (the GIL held).
[[noreturn]] void throw_python() {
  python_error err;
  err.persist();
  throw std::move(err);
}

// A backward call's five reads; their Python objects are released when it goes (the GIL held).
struct Reads {
  cudnnconv_node_tensor t[5] = {};
  Reads() = default;
  Reads(const Reads&) = delete;
  Reads& operator=(const Reads&) = delete;
  ~Reads() {
    for (auto& m : t) {
      Py_XDECREF(m.tensor);
    }
  }
};

struct CudnnConvBackward : public Node {
  explicit CudnnConvBackward(torch::autograd::edge_list&& next) : Node(std::move(next)) {}

  std::string name() const override { return "CudnnConvBackward"; }

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    x_.reset_data();
    w_.reset_data();
  }

  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    variable_list out(3);
    const bool need_x = task_should_compute_output(0);
    const bool need_w = task_should_compute_output(1);
    const bool need_b = has_bias_ && task_should_compute_output(2);
    if (!(need_x || need_w || need_b)) {
      return out;
    }
    at::Tensor x = x_.unpack();  // (raises where x changed in place, or the graph was freed)
    at::Tensor w = w_.unpack();
    // An undefined output gradient (a consumer that gave None) is zeros, as a Python Function's
    // backward sees it (PyNode materializes it).
    const at::Tensor g0 = grads[0].defined() ? grads[0] : input_metadata(0).zeros_like();
    const bool twice = at::GradMode::is_enabled() && g0.requires_grad();
    {
      at::NoGradGuard no_grad;
      at::Tensor g = dense(g0, x);
      if (need_x) {
        out[0] = at::empty_like(x);
      }
      if (need_w) {
        out[1] = at::empty_like(w);
      }
      if (need_x || need_w) {
        run(x, w, g, out[0], out[1]);
      }
      if (need_b) {
        std::vector<int64_t> dims;
        for (int64_t d = 0; d < g.dim(); ++d) {
          if (d != 1) {
            dims.push_back(d);
          }
        }
        out[2] = g.sum(dims);
      }
    }
    if (twice) {
      // once_differentiable: detached copies that require grad, through a DelayedError node
      variable_list fake;
      for (auto& v : out) {
        fake.push_back(v.defined() ? v.detach().requires_grad_(true) : v);
      }
      auto err = make_node<torch::autograd::DelayedError>(kTwice, static_cast<int64_t>(fake.size()));
      return err->apply(std::move(fake));
    }
    return out;
  }

  // x, w, g, gx, gw read for the typed backward (gx, gw undefined where not asked for); the GIL held.
  static bool read(const at::Tensor* ts, cudnnconv_node_tensor* out) {
    bool made = true;
    for (int i = 0; i < 5; ++i) {
      const at::Tensor& t = ts[i];
      cudnnconv_node_tensor& m = out[i];
      m.ndim = -1;
      m.dtype = nullptr;
      if (!t.defined()) {
        m.tensor = Py_NewRef(Py_None);
        continue;
      }
      m.tensor = THPVariable_Wrap(t);
      made = made && m.tensor != nullptr;
      const int64_t n = t.dim();
      if (n > CUDNNCONV_NODE_DIMS) {
        continue;
      }
      m.dtype = reinterpret_cast<PyObject*>(torch::getTHPDtype(t.scalar_type()));
      m.ptr = reinterpret_cast<size_t>(t.data_ptr());
      m.device = t.get_device();
      for (int64_t d = 0; d < n; ++d) {
        m.shape[d] = t.size(d);
        m.strides[d] = t.stride(d);
      }
      m.ndim = static_cast<int>(n);
    }
    return made;
  }

  // The typed backward's call.  The GIL and the tensors' Python objects are released by their
  // guards on every way out, an exception from ATen or the Python error of a failed call included.
  void run(const at::Tensor& x, const at::Tensor& w, const at::Tensor& g, const at::Tensor& gx,
           const at::Tensor& gw) {
    pybind11::gil_scoped_acquire gil;
    const at::Tensor ts[5] = {x, w, g, gx, gw};
    Reads r;
    if (!read(ts, r.t)) {
      throw_python();
    }
    if (g_backward == nullptr) {
      PyErr_SetString(PyExc_RuntimeError, "cudnnconv.torch.conv_node: no backward configured");
      throw_python();
    }
    if (g_backward(geom_.get(), flags_.get(), r.t) != 0) {
      throw_python();
    }
  }

  SavedVariable x_, w_;
  PyRef geom_, flags_;
  bool has_bias_ = false;
};

// record(x, w, b, y, geom, flags) -> y: see the file's head.
PyObject* record(PyObject*, PyObject* const* args, Py_ssize_t n) {
  HANDLE_TH_ERRORS
  if (n != 6) {
    PyErr_SetString(PyExc_TypeError, "record(x, w, b, y, geom, flags) takes 6 arguments");
    return nullptr;
  }
  for (int i = 0; i < 4; ++i) {
    if (!(i == 2 && args[i] == Py_None) && !THPVariable_Check(args[i])) {
      PyErr_SetString(PyExc_TypeError, "record: x, w and y must be tensors, b a tensor or None");
      return nullptr;
    }
  }
  if (!PyTuple_CheckExact(args[4]) || PyTuple_GET_SIZE(args[4]) != 2 || !PyTuple_CheckExact(PyTuple_GET_ITEM(args[4], 0))
      || !PyTuple_CheckExact(PyTuple_GET_ITEM(args[4], 1)) || !PyTuple_CheckExact(args[5])) {
    PyErr_SetString(PyExc_TypeError, "record: geom must be a tuple of two tuples, flags a tuple");
    return nullptr;
  }
  const at::Tensor& x = THPVariable_Unpack(args[0]);
  const at::Tensor& w = THPVariable_Unpack(args[1]);
  at::Tensor b = args[2] == Py_None ? at::Tensor() : THPVariable_Unpack(args[2]);
  const at::Tensor& y = THPVariable_Unpack(args[3]);
  // The GIL stays held: a saved-tensor hook is Python, and this is one short step after the
  // convolution the caller launched with it held.
  if (b.defined()) {
    if (y.dim() < 2) {
      PyErr_SetString(PyExc_ValueError, "record: y must have a channel dim to add a bias to");
      return nullptr;
    }
    at::NoGradGuard no_grad;
    std::vector<int64_t> view(static_cast<size_t>(y.dim()), 1);
    view[1] = -1;
    y.add_(b.view(view));
  }
  if (torch::autograd::compute_requires_grad(x, w, b)) {
    auto node = make_node<CudnnConvBackward>(torch::autograd::collect_next_edges(x, w, b));
    node->x_ = SavedVariable(x, false);
    node->w_ = SavedVariable(w, false);
    node->has_bias_ = b.defined();
    node->geom_.hold(args[4]);
    node->flags_.hold(args[5]);
    torch::autograd::set_history(y, node);
  }
  return Py_NewRef(args[3]);
  END_HANDLE_TH_ERRORS
}

PyObject* configure(PyObject*, PyObject* capsule) {
  void* fn = PyCapsule_GetPointer(capsule, CUDNNCONV_NODE_BACKWARD_CAPSULE);
  if (fn == nullptr) {
    return nullptr;
  }
  g_backward = reinterpret_cast<cudnnconv_node_backward>(fn);
  Py_RETURN_NONE;
}

// read_probe(t, capsule): t read as the node reads each tensor, handed to the capsule's
// PyObject* (*)(const cudnnconv_node_tensor*) (typed.node_signature_capsule(): the signature the
// typed backward makes of it), whose result is returned: for a test that holds the two reads equal.
PyObject* read_probe(PyObject*, PyObject* const* args, Py_ssize_t n) {
  HANDLE_TH_ERRORS
  if (n != 2 || !THPVariable_Check(args[0])) {
    PyErr_SetString(PyExc_TypeError, "read_probe(tensor, capsule)");
    return nullptr;
  }
  using Probe = PyObject* (*)(const cudnnconv_node_tensor*);
  auto fn = reinterpret_cast<Probe>(PyCapsule_GetPointer(args[1], "cudnnconv.torch.typed.node_signature"));
  if (fn == nullptr) {
    return nullptr;
  }
  const at::Tensor ts[5] = {THPVariable_Unpack(args[0])};
  Reads r;
  return CudnnConvBackward::read(ts, r.t) ? fn(&r.t[0]) : nullptr;
  END_HANDLE_TH_ERRORS
}

PyMethodDef kMethods[] = {
    {"record", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(record)), METH_FASTCALL,
     "record(x, w, b, y, geom, flags) -> y: y + b, with this module's node as its grad_fn."},
    {"configure", configure, METH_O,
     "configure(capsule): the typed backward the node calls (cudnnconv.torch.typed.backward_capsule())."},
    {"read_probe", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(read_probe)), METH_FASTCALL,
     "read_probe(t, capsule): t as the node reads it, through the capsule's function (tests)."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "cudnnconv.torch.conv_node",
                       "The autograd node of a cudnnconv forward convolution (C++).", -1, kMethods};

}  // namespace

// grad_fn's Python type: CudnnConvBackward, with the methods and properties of torch's own C++ nodes
// (name(), next_functions, register_hook, metadata, ...).
static PyTypeObject kNodeType = {PyVarObject_HEAD_INIT(nullptr, 0)};

// The torch this module was compiled against must be the one running: the node's layout and the
// inline code of torch's headers are that version's.
bool same_torch() {
  PyObject* torch = PyImport_ImportModule("torch");
  if (torch == nullptr) {
    return false;
  }
  PyObject* version = PyObject_GetAttrString(torch, "__version__");
  Py_DECREF(torch);
  if (version == nullptr) {
    return false;
  }
  PyObject* text = PyObject_Str(version);  // (torch.__version__ is a str subclass)
  Py_DECREF(version);
  if (text == nullptr) {
    return false;
  }
  const char* running = PyUnicode_AsUTF8(text);
  const bool same = running != nullptr && std::string(running) == CUDNNCONV_TORCH_BUILT;
  if (running != nullptr && !same) {
    PyErr_Format(PyExc_ImportError, "built for torch %s, running torch %s: rebuild cudnnconv",
                 CUDNNCONV_TORCH_BUILT, running);
  }
  Py_DECREF(text);
  return same;
}

PyMODINIT_FUNC PyInit_conv_node() {
  if (!same_torch()) {
    return nullptr;
  }
  try {
    torch::autograd::_initFunctionPyTypeObject(kNodeType, "cudnnconv.torch.conv_node.CudnnConvBackward", nullptr,
                                               nullptr);
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_ImportError, e.what());
    return nullptr;
  }
  torch::autograd::registerCppFunction(typeid(CudnnConvBackward), &kNodeType);
  return PyModule_Create(&kModule);
}
