// groupmates._engine: the selecting GroupMatesLoader (LibTorch) for Python, and PyModuleProbeTarget,
// the ProbeTarget over a Python nn.Module + optimizer + loss_fn + reference batches.
//
// One translation unit on purpose (LibTorch headers make each one slow to compile).
//
// Threads and the GIL
//   * Every method that may wait in C++ (construction, next(), on_step(), state(), stats, close(),
//     the destructor) releases the GIL first and only then takes the binding's mutex: a thread
//     never waits for the mutex (or for the probe thread) while it holds the GIL.
//   * The probe thread is a C++ thread. PyModuleProbeTarget takes the GIL (gil_scoped_acquire)
//     around every call into Python (clone, train_step, reference_loss, weights, reference_gradient;
//     the tensors of the last two are detached C++ handles, whose release needs no GIL) and around the release of
//     its Python references; outside those scopes it touches no Python object.
//   * on_step() snapshots the live model on the caller's thread (clone() inside
//     GroupMatesLoader::on_step re-takes the GIL just for the deep copy).
//   * A Python exception inside a probe becomes a C++ PythonCallError carrying the formatted
//     message (the py::error_already_set is dropped under the GIL), so nothing Python-owned
//     travels across threads.
//   * A loader closed from inside a Python callback of a probe (e.g. a garbage collection that
//     runs on the probe thread finalizes the loader) cannot wait for its own probe: it is handed
//     to a detached thread that destroys it once the probe returns.
#include <torch/extension.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "groupmates/config.h"
#include "groupmates/engine/collectives.h"
#include "groupmates/error.h"
#include "groupmates/loader.h"
#include "groupmates/probe_target.h"
#include "groupmates/selection_config.h"

#include "binding_common.h"
#include "target_handle.h"

namespace py = pybind11;
namespace gm = groupmates;

using groupmates_binding::TargetHandle;

namespace {

/// A Python exception raised by a probe callback, as text (safe to carry across threads).
class PythonCallError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

bool python_finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return !Py_IsInitialized() || Py_IsFinalizing();
#else
  return !Py_IsInitialized() || _Py_IsFinalizing();
#endif
}

// Loaders being destroyed on detached threads (see Loader::close()); waited for at exit.
std::mutex detached_mu;
std::condition_variable detached_cv;
int64_t detached_pending = 0;

/// Waits (the caller released the GIL) until no detached destruction is pending or `seconds` passed.
bool wait_detached(double seconds) {
  std::unique_lock<std::mutex> lock(detached_mu);
  return detached_cv.wait_for(lock, std::chrono::duration<double>(seconds), [] { return detached_pending == 0; });
}

// Depth of PyModuleProbeTarget callbacks on this thread (see close()).
thread_local int callback_depth = 0;
struct CallbackScope {
  CallbackScope() { ++callback_depth; }
  ~CallbackScope() { --callback_depth; }
};

// ---------------------------------------------------------------------------------------------
// PyModuleProbeTarget

/// The Python half: groupmates.probe's functions, looked up once on a thread holding the GIL.
struct PyProbeOps {
  py::object clone;           // (model, optimizer) -> (model, optimizer)
  py::object train_step;      // (model, optimizer, loss_fn, tokens, lr_scale, clip) -> float
  py::object reference_loss;  // (model, loss_fn, reference_batches) -> float
  py::object weights;         // (model) -> [tensor] (None: no first-order labels)
  py::object reference_gradient;  // (model, loss_fn, reference_batches) -> [tensor] (None: as weights)
  std::mutex mu;
  std::string last_error;     // the last Python exception of a callback (any thread), formatted
  int64_t errors = 0;
  void record(const std::string& message) {
    std::lock_guard<std::mutex> lock(mu);
    last_error = message;
    ++errors;
  }
};

class PyModuleProbeTarget : public gm::ProbeTarget {
 public:
  /// Call with the GIL held. `reference_batches`: a list of tensors already on the model's device.
  PyModuleProbeTarget(std::shared_ptr<PyProbeOps> ops, py::object model, py::object optimizer, py::object loss_fn,
                      py::object reference_batches, torch::Device device, double lr_scale, double grad_clip)
      : ops_(std::move(ops)),
        model_(std::move(model)),
        optimizer_(std::move(optimizer)),
        loss_fn_(std::move(loss_fn)),
        reference_batches_(std::move(reference_batches)),
        device_(device),
        lr_scale_(lr_scale),
        grad_clip_(grad_clip) {
    // Cost accounting, counted once here (the GIL is held): 2 x the parameters, the reference tokens.
    if (!model_.is_none() && py::hasattr(model_, "parameters"))
      for (py::handle p : model_.attr("parameters")()) flops_per_token_ += 2.0 * p.attr("numel")().cast<double>();
    if (!reference_batches_.is_none())
      for (py::handle b : reference_batches_) reference_tokens_ += b.attr("numel")().cast<int64_t>();
  }

  ~PyModuleProbeTarget() override {
    if (python_finalizing()) {  // too late to run Python: leak the references
      (void)model_.release();
      (void)optimizer_.release();
      (void)loss_fn_.release();
      (void)reference_batches_.release();
      return;
    }
    py::gil_scoped_acquire gil;
    model_ = py::object();
    optimizer_ = py::object();
    loss_fn_ = py::object();
    reference_batches_ = py::object();
  }

  std::unique_ptr<gm::ProbeTarget> clone() const override {
    return call("clone", [&]() -> std::unique_ptr<gm::ProbeTarget> {
      py::tuple pair = ops_->clone(model_, optimizer_);
      return std::make_unique<PyModuleProbeTarget>(ops_, pair[0], pair[1], loss_fn_, reference_batches_, device_,
                                                   lr_scale_, grad_clip_);
    });
  }

  double train_step(const torch::Tensor& tokens) override {
    return call("train_step", [&] {
      py::object t = py::reinterpret_steal<py::object>(THPVariable_Wrap(tokens));
      if (!t) throw py::error_already_set();
      return ops_->train_step(model_, optimizer_, loss_fn_, t, lr_scale_, grad_clip_).cast<double>();
    });
  }

  double reference_loss() override {
    return call("reference_loss", [&] { return ops_->reference_loss(model_, loss_fn_, reference_batches_).cast<double>(); });
  }

  std::vector<torch::Tensor> weights() const override {
    if (ops_->weights.is_none()) return {};
    return call("weights", [&] { return tensors(ops_->weights(model_)); });
  }

  std::vector<torch::Tensor> reference_gradient() override {
    if (ops_->reference_gradient.is_none()) return {};
    return call("reference_gradient",
                [&] { return tensors(ops_->reference_gradient(model_, loss_fn_, reference_batches_)); });
  }

  void set_lr_scale(double scale) override {
    if (!(scale > 0)) throw gm::Error(gm::ErrorCode::kInvalidConfig, "PyModuleProbeTarget::set_lr_scale", "must be > 0");
    lr_scale_ = scale;
  }
  double lr_scale() const override { return lr_scale_; }
  torch::Device device() const override { return device_; }
  double forward_flops_per_token() const override { return flops_per_token_; }
  int64_t reference_tokens() const override { return reference_tokens_; }

  py::object model() const { return model_; }
  py::object optimizer() const { return optimizer_; }

 private:
  // A Python sequence of tensors as C++ tensors (sharing storage); called with the GIL held.
  static std::vector<torch::Tensor> tensors(const py::object& list) {
    std::vector<torch::Tensor> out;
    for (py::handle t : list) {
      if (!THPVariable_Check(t.ptr())) throw py::cast_error("expected a list of tensors");
      // detach(): a tensor of our own on the same storage (the optimiser's in-place updates stay visible),
      // so dropping it later on the probe thread never touches a Python object without the GIL.
      out.push_back(THPVariable_Unpack(t.ptr()).detach());
    }
    return out;
  }

  template <typename F>
  auto call(const char* what, F&& f) const -> decltype(f()) {
    if (python_finalizing())
      throw PythonCallError(std::string("groupmates: PyModuleProbeTarget.") + what + ": the interpreter is shutting down");
    py::gil_scoped_acquire gil;
    CallbackScope scope;
    try {
      return f();
    } catch (py::error_already_set& e) {
      // Format under the GIL, then drop the Python exception here (never carried to another thread).
      std::string message = std::string("groupmates: the probe's ") + what + " raised " + e.what();
      e.restore();
      PyErr_Clear();
      ops_->record(message);
      throw PythonCallError(message);
    } catch (py::cast_error& e) {
      std::string message = std::string("groupmates: the probe's ") + what + " returned an unexpected type: " + e.what();
      ops_->record(message);
      throw PythonCallError(message);
    }
  }

  std::shared_ptr<PyProbeOps> ops_;
  py::object model_, optimizer_, loss_fn_, reference_batches_;
  torch::Device device_;
  double lr_scale_;
  double grad_clip_;
  double flops_per_token_ = 0;
  int64_t reference_tokens_ = 0;
};

torch::Device to_device(const std::string& s) {
  try {
    return torch::Device(s);
  } catch (const c10::Error& e) {
    throw gm::Error(gm::ErrorCode::kInvalidConfig, "device", "not a torch device: '" + s + "'");
  }
}

// ---------------------------------------------------------------------------------------------
// The selecting loader

/// A copy of a 1-D tensor as a numpy array of T (a few values per batch).
template <typename T>
py::array_t<T> column(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kCPU, c10::CppTypeToScalarType<T>::value).contiguous();
  py::array_t<T> a(c.numel());
  if (c.numel() > 0) std::memcpy(a.mutable_data(), c.data_ptr<T>(), c.numel() * sizeof(T));
  return a;
}

class Loader : public groupmates_binding::LoaderHandle<gm::GroupMatesLoader> {
 public:
  /// `process_group`: a torch.distributed ProcessGroup (None: this process alone); every wait on it
  /// is bounded by `timeout_seconds`; its tensors go to `collective_device` ("cpu" for Gloo, the
  /// rank's "cuda:i" for NCCL).
  Loader(gm::LoaderConfig config, gm::SelectionConfig selection, gm::ProbeConfig probes, std::optional<std::string> state,
         py::object process_group, double timeout_seconds, const std::string& collective_device)
      : batch_size_(config.batch_size) {
    std::shared_ptr<gm::Collectives> collectives;
    if (!process_group.is_none()) {
      c10::intrusive_ptr<c10d::ProcessGroup> group;
      try {
        group = process_group.cast<c10::intrusive_ptr<c10d::ProcessGroup>>();
      } catch (const py::cast_error&) {
        throw gm::Error(gm::ErrorCode::kInvalidConfig, "process_group",
                        "is not a torch.distributed ProcessGroup: pass torch.distributed.group.WORLD or a group from "
                        "torch.distributed.new_group()");
      }
      collectives = gm::process_group_collectives(
          group, std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000.0)), torch::Device(collective_device));
    }
    py::gil_scoped_release nogil;
    if (state) {
      const auto parsed = gm::LoaderState::parse(*state);
      core_ = std::make_unique<gm::GroupMatesLoader>(std::move(config), selection, probes, parsed, gm::DeliveryOptions{},
                                                     collectives);
    } else {
      core_ = std::make_unique<gm::GroupMatesLoader>(std::move(config), selection, probes, gm::DeliveryOptions{},
                                                     collectives);
    }
  }
  ~Loader() override { close(); }

  /// The batch of binding_common.h's batch_dict (index: the trainer's batch index) plus influence
  /// [B] float, cluster [B] int64 and model_version; None at the end.
  py::object next(bool candidates) {
    std::optional<gm::Batch> b;
    uint64_t selected = 0;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(mu_);
      b = live().next();
      if (b) selected = live().selection_stats().selected;
    }
    if (!b) return py::none();
    const uint64_t index = batch_size_ > 0 && selected >= batch_size_ ? selected / batch_size_ - 1 : b->index;
    const torch::Tensor x = b->input_ids.to(torch::kCPU).contiguous();
    auto rows = groupmates_binding::rows_view(x, x.data_ptr<int64_t>(), x.size(0), x.size(1));
    py::dict d = groupmates_binding::batch_dict(std::move(rows), b->ids, index, candidates);
    d["influence"] = column<float>(b->influence);
    d["cluster"] = column<int64_t>(b->cluster);
    d["model_version"] = b->model_version;
    return std::move(d);
  }

  /// Reference rows (int64 [R, T]) for the importance estimator / prior.
  void set_reference(const torch::Tensor& rows) {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(mu_);
    live().set_reference(rows);
  }

  /// `target` may be null (records the step). The snapshot is taken here, on this thread.
  void on_step(int64_t step, PyModuleProbeTarget* target) {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(mu_);
    live().on_step(step, target);
  }

  /// SelectionStats as a dict (nested dicts for probes and cost, a list of dicts for switches).
  py::dict selection_stats() {
    gm::SelectionStats s;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(mu_);
      s = live().selection_stats();
    }
    return groupmates_binding::struct_dict(s);
  }

  /// Waits for a probe in flight, stops and joins the threads; idempotent. From inside a probe's
  /// Python callback (a GC on the probe thread) the loader is destroyed on a detached thread.
  void close() {
    std::unique_ptr<gm::GroupMatesLoader> dead;
    const bool held = PyGILState_Check() != 0;
    auto take = [&] {
      std::lock_guard<std::mutex> lock(mu_);
      dead = std::move(core_);
    };
    if (callback_depth > 0) {
      // The probe thread (or a snapshot) is running Python on this very thread: do not wait here.
      if (held) {
        py::gil_scoped_release nogil;
        take();
      } else {
        take();
      }
      if (dead) {
        {
          std::lock_guard<std::mutex> lock(detached_mu);
          ++detached_pending;
        }
        std::thread([d = std::move(dead)]() mutable {
          d.reset();
          std::lock_guard<std::mutex> lock(detached_mu);
          --detached_pending;
          detached_cv.notify_all();
        }).detach();
      }
      return;
    }
    if (held) {
      py::gil_scoped_release nogil;
      take();
      dead.reset();
    } else {
      take();
      dead.reset();
    }
  }

 protected:
  /// The trainer's batches: the rows emitted so far over the batch size (the state's own batch count
  /// is the window reader's).
  uint64_t position() override { return batch_size_ > 0 ? live().selection_stats().selected / batch_size_ : 0; }

 private:
  uint32_t batch_size_;
};

}  // namespace

PYBIND11_MODULE(_engine, m) {
  m.doc() = "groupmates selection engine (LibTorch); use the groupmates package, not this module";
  // The configs and stats are the classes of groupmates._core (imported first by the package).
  py::module_::import("groupmates._core");

  groupmates_binding::install_errors(m);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const PythonCallError& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    } catch (const c10::Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what_without_backtrace());
    }
  });
  m.attr("TORCH_VERSION") = TORCH_VERSION;
  m.def("_wait_detached", [](double seconds) {
    py::gil_scoped_release nogil;
    return wait_detached(seconds);
  }, py::arg("seconds") = 60.0,
     "Waits for loaders closed from inside a probe callback (destroyed on detached threads); called at exit");

  py::class_<PyProbeOps, std::shared_ptr<PyProbeOps>>(m, "_ProbeOps")
      .def(py::init([](py::object clone, py::object train_step, py::object reference_loss, py::object weights,
                       py::object reference_gradient) {
        auto ops = std::make_shared<PyProbeOps>();
        ops->clone = std::move(clone);
        ops->train_step = std::move(train_step);
        ops->reference_loss = std::move(reference_loss);
        ops->weights = std::move(weights);
        ops->reference_gradient = std::move(reference_gradient);
        return ops;
      }), py::arg("clone"), py::arg("train_step"), py::arg("reference_loss"), py::arg("weights") = py::none(),
          py::arg("reference_gradient") = py::none())
      .def_property_readonly("last_error", [](PyProbeOps& o) {
        std::lock_guard<std::mutex> lock(o.mu);
        return o.last_error;
      })
      .def_property_readonly("errors", [](PyProbeOps& o) {
        std::lock_guard<std::mutex> lock(o.mu);
        return o.errors;
      });

  // Opaque: what groupmates.probe.make_target hands GroupMatesLoader.on_step.
  py::class_<TargetHandle>(m, "ProbeTarget");

  m.def("_make_py_target", [](std::shared_ptr<PyProbeOps> ops, py::object model, py::object optimizer, py::object loss_fn,
                              py::object reference_batches, const std::string& device, double grad_clip) {
    return TargetHandle{std::make_shared<PyModuleProbeTarget>(ops, model, optimizer, loss_fn, reference_batches,
                                                              to_device(device), 1.0, grad_clip)};
  }, py::arg("ops"), py::arg("model"), py::arg("optimizer"), py::arg("loss_fn"), py::arg("reference_batches"),
     py::arg("device"), py::arg("grad_clip") = 1.0,
     "PyModuleProbeTarget over a Python model (for GroupMatesLoader.on_step; groupmates.probe builds it)");

  py::class_<Loader> loader(m, "Loader");
  loader.def(py::init<gm::LoaderConfig, gm::SelectionConfig, gm::ProbeConfig, std::optional<std::string>, py::object,
                      double, const std::string&>(),
             py::arg("config"), py::arg("selection"), py::arg("probes"), py::arg("state") = py::none(),
             py::arg("process_group") = py::none(), py::arg("timeout_seconds") = 1800.0,
             py::arg("collective_device") = "cpu")
      .def("on_step", [](Loader& l, int64_t step, TargetHandle* target) {
        gm::ProbeTarget* t = nullptr;
        if (target != nullptr) {
          t = dynamic_cast<PyModuleProbeTarget*>(target->target.get());
          if (t == nullptr) throw gm::Error(gm::ErrorCode::kInvalidConfig, "on_step", "target must be a PyModuleProbeTarget");
        }
        l.on_step(step, static_cast<PyModuleProbeTarget*>(t));
      }, py::arg("step"), py::arg("target") = nullptr)
      .def("set_reference", &Loader::set_reference, py::arg("rows"))
      .def("selection_stats", &Loader::selection_stats);
  groupmates_binding::def_loader(loader);
}
