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
//     around every call into Python (clone, train_step, reference_loss) and around the release of
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

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "groupmates/config.h"
#include "groupmates/error.h"
#include "groupmates/loader.h"
#include "groupmates/loader_state.h"
#include "groupmates/probe_target.h"
#include "groupmates/module_probe_target.h"
#include "groupmates/engine/oracle_prober.h"
#include "groupmates/engine/rollout_policy.h"
#include "groupmates/selection_config.h"

#include "binding_common.h"

namespace py = pybind11;
namespace gm = groupmates;

using groupmates_binding::ClosedError;
using groupmates_binding::translate;

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

py::object wrap(const torch::Tensor& t) { return py::reinterpret_steal<py::object>(THPVariable_Wrap(t)); }

class Loader : public groupmates_binding::LoaderHandle<gm::GroupMatesLoader> {
 public:
  Loader(gm::LoaderConfig config, gm::SelectionConfig selection, gm::ProbeConfig probes, std::optional<std::string> state)
      : batch_size_(config.batch_size) {
    py::gil_scoped_release nogil;
    if (state) {
      const auto parsed = gm::LoaderState::parse(*state);
      core_ = std::make_unique<gm::GroupMatesLoader>(std::move(config), selection, probes, parsed);
    } else {
      core_ = std::make_unique<gm::GroupMatesLoader>(std::move(config), selection, probes);
    }
  }
  ~Loader() { close(); }

  /// (input_ids [B,T] int64, ids [B] int64, influence [B] float, cluster [B] int64, model_version, index) or None.
  py::object next() {
    std::optional<gm::Batch> b;
    uint64_t selected = 0;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(mu_);
      b = live().next();
      if (b) selected = live().selection_stats().selected;
    }
    if (!b) return py::none();
    torch::Tensor ids = torch::empty({static_cast<int64_t>(b->ids.size())}, torch::kInt64);
    int64_t* p = ids.data_ptr<int64_t>();
    for (size_t i = 0; i < b->ids.size(); ++i) p[i] = static_cast<int64_t>(b->ids[i].hash);
    const uint64_t index = batch_size_ > 0 && selected >= batch_size_ ? selected / batch_size_ - 1 : b->index;
    return py::make_tuple(wrap(b->input_ids), wrap(ids), wrap(b->influence), wrap(b->cluster), b->model_version, index);
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

  py::dict stats() {
    gm::LoaderStats s;
    std::string report;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(mu_);
      s = live().stats();
      report = live().skip_report();
    }
    py::dict d;
    d["windows_read"] = s.batches;
    d["buffers_allocated"] = s.buffers_allocated;
    d["consumer_wait_seconds"] = s.consumer_wait_seconds;
    d["skip_report"] = report;
    return d;
  }

  py::dict selection_stats() {
    gm::SelectionStats s;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(mu_);
      s = live().selection_stats();
    }
    py::dict d;
    d["windows"] = s.windows;
    d["warmup_windows"] = s.warmup_windows;
    d["seen"] = s.seen;
    d["selected"] = s.selected;
    d["seen_per_cluster"] = s.seen_per_cluster;
    d["selected_per_cluster"] = s.selected_per_cluster;
    d["model_version"] = s.model_version;
    d["refreshes"] = s.refreshes;
    d["refresh_seconds"] = s.refresh_seconds;
    d["refresh_wait_seconds"] = s.refresh_wait_seconds;
    d["last_heldout_spearman"] = s.last_heldout_spearman;
    d["last_heldout_spearman_scaled"] = s.last_heldout_spearman_scaled;
    d["refreshes_failed"] = s.refreshes_failed;
    d["probes_skipped_budget"] = s.probes_skipped_budget;
    d["last_refresh_error"] = s.last_refresh_error;
    d["prior_weight"] = s.prior_weight;
    py::list switches;
    for (const auto& sw : s.switches) switches.append(py::make_tuple(sw.window, sw.probe_step, sw.version));
    d["switches"] = switches;
    py::dict c;
    const gm::SelectionCost& k = s.cost;
    c["flops_per_token"] = k.flops_per_token;
    c["train_tokens"] = k.train_tokens;
    c["probe_train_tokens"] = k.probe_train_tokens;
    c["probe_eval_tokens"] = k.probe_eval_tokens;
    c["train_flops"] = k.train_flops;
    c["probe_flops"] = k.probe_flops;
    c["refresh_flops"] = k.refresh_flops;
    c["scoring_flops"] = k.scoring_flops;
    c["scoring_seconds"] = k.scoring_seconds;
    c["selection_seconds"] = k.selection_seconds;
    c["wait_scoring_seconds"] = k.wait_scoring_seconds;
    c["wait_refresh_seconds"] = k.wait_refresh_seconds;
    c["wait_probe_seconds"] = k.wait_probe_seconds;
    c["snapshot_seconds"] = k.snapshot_seconds;
    d["cost"] = c;
    py::dict p;
    p["probes_started"] = s.probes.probes_started;
    p["probes_completed"] = s.probes.probes_completed;
    p["probes_skipped_busy"] = s.probes.probes_skipped_busy;
    p["probes_failed"] = s.probes.probes_failed;
    p["rollouts_kept"] = s.probes.rollouts_kept;
    p["rollouts_discarded"] = s.probes.rollouts_discarded;
    p["rollouts_skipped"] = s.probes.rollouts_skipped;
    p["snapshot_seconds"] = s.probes.snapshot_seconds;
    p["probe_seconds"] = s.probes.probe_seconds;
    p["wall_seconds"] = s.probes.wall_seconds;
    p["probe_share"] = s.probes.probe_share;
    p["snapshot_share"] = s.probes.snapshot_share;
    p["seconds_per_rollout"] = s.probes.seconds_per_rollout;
    p["last_probe_step"] = s.probes.last_probe_step;
    d["probes"] = p;
    return d;
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

 private:
  uint32_t batch_size_;
};

// ---------------------------------------------------------------------------------------------
// Test hooks: the oracle prober on a C++ ModuleProbeTarget (a bigram LM: embedding -> linear)
// and on a PyModuleProbeTarget, over the same pool and plans.

struct BigramImpl : torch::nn::Module {
  BigramImpl(int64_t vocab, int64_t dim)
      : emb(register_module("emb", torch::nn::Embedding(vocab, dim))),
        head(register_module("head", torch::nn::Linear(dim, vocab))) {}
  torch::Tensor forward(const torch::Tensor& x) { return head(emb(x)); }
  torch::nn::Embedding emb;
  torch::nn::Linear head;
};

/// Next-token cross-entropy of a [B, T] batch: logits of x[:, :-1] against x[:, 1:].
torch::Tensor bigram_loss(torch::nn::Module& m, const torch::Tensor& tokens) {
  auto& model = static_cast<BigramImpl&>(m);
  const torch::Tensor x = tokens.slice(1, 0, tokens.size(1) - 1), y = tokens.slice(1, 1, tokens.size(1));
  const torch::Tensor logits = model.forward(x);
  return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), y.reshape({-1}));
}

std::shared_ptr<gm::ProbeTarget> make_bigram_target(const torch::Tensor& emb_weight, const torch::Tensor& head_weight,
                                                    const torch::Tensor& head_bias, const std::string& optimizer,
                                                    double lr, std::vector<torch::Tensor> reference_batches) {
  const int64_t vocab = emb_weight.size(0), dim = emb_weight.size(1);
  auto factory = [vocab, dim]() -> gm::ModuleProbeTarget::ModulePtr { return std::make_shared<BigramImpl>(vocab, dim); };
  gm::ModuleProbeTarget::OptimizerFactory opt_factory;
  if (optimizer == "sgd") {
    opt_factory = [lr](torch::nn::Module& m) -> std::shared_ptr<torch::optim::Optimizer> {
      return std::make_shared<torch::optim::SGD>(m.parameters(), torch::optim::SGDOptions(lr));
    };
  } else if (optimizer == "adamw") {
    opt_factory = [lr](torch::nn::Module& m) -> std::shared_ptr<torch::optim::Optimizer> {
      return std::make_shared<torch::optim::AdamW>(m.parameters(), torch::optim::AdamWOptions(lr));
    };
  } else {
    throw gm::Error(gm::ErrorCode::kInvalidConfig, "optimizer", "expected 'sgd' or 'adamw'");
  }
  auto module = std::make_shared<BigramImpl>(vocab, dim);
  {
    torch::NoGradGuard no_grad;
    module->emb->weight.copy_(emb_weight);
    module->head->weight.copy_(head_weight);
    module->head->bias.copy_(head_bias);
  }
  auto opt = opt_factory(*module);
  auto loss = [](torch::nn::Module& m, const torch::Tensor& t) { return bigram_loss(m, t); };
  return std::make_shared<gm::ModuleProbeTarget>(module, opt, factory, opt_factory, loss, std::move(reference_batches));
}

py::list run_prober(gm::ProbeTarget& target, const torch::Tensor& pool, const std::vector<std::vector<int64_t>>& plans,
                    int64_t rollout_length, int64_t rows_per_step, double lr_scale) {
  gm::OracleProberConfig c;
  c.rollout_length = rollout_length;
  c.rows_per_step = rows_per_step;
  c.lr_scale = lr_scale;
  c.max_rollouts = static_cast<int64_t>(plans.size());
  std::vector<gm::RolloutPlan> ps;
  for (const auto& p : plans) {
    gm::RolloutPlan plan;
    plan.candidates = p;
    ps.push_back(plan);
  }
  gm::ProbeResult r;
  {
    py::gil_scoped_release nogil;  // the Python target re-takes it for each call into Python
    r = gm::OracleProber(c).run(target, pool, ps);
  }
  py::list out;
  for (const auto& rollout : r.rollouts) {
    py::dict d;
    d["candidates"] = rollout.candidates;
    d["labels"] = rollout.labels;
    d["cumulative"] = rollout.cumulative;
    d["reference_before"] = rollout.reference_before;
    out.append(d);
  }
  return out;
}

/// Holds either kind of target for the test hook.
struct TargetHandle {
  std::shared_ptr<gm::ProbeTarget> target;
};

}  // namespace

PYBIND11_MODULE(_engine, m) {
  m.doc() = "groupmates selection engine (LibTorch); use the groupmates package, not this module";

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const gm::Error& e) {
      translate(e);
    } catch (const ClosedError& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    } catch (const PythonCallError& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    } catch (const c10::Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what_without_backtrace());
    }
  });
  groupmates_binding::def_register_errors(m);
  m.attr("TORCH_VERSION") = TORCH_VERSION;
  m.def("_wait_detached", [](double seconds) {
    py::gil_scoped_release nogil;
    return wait_detached(seconds);
  }, py::arg("seconds") = 60.0,
     "Waits for loaders closed from inside a probe callback (destroyed on detached threads); called at exit");

  py::enum_<gm::SelectionMode>(m, "SelectionMode")
      .value("none", gm::SelectionMode::kNone)
      .value("random", gm::SelectionMode::kRandom)
      .value("individual", gm::SelectionMode::kIndividual)
      .value("group", gm::SelectionMode::kGroup)
      .value("group_no_clusters", gm::SelectionMode::kGroupNoClusters)
      .value("importance", gm::SelectionMode::kImportance);

  py::enum_<gm::RefreshMode>(m, "RefreshMode")
      .value("when_ready", gm::RefreshMode::kWhenReady)
      .value("at_step", gm::RefreshMode::kAtStep);

  py::class_<gm::SelectionConfig>(m, "SelectionConfig")
      .def(py::init<>())
      .def_readwrite("mode", &gm::SelectionConfig::mode)
      .def_readwrite("window_size", &gm::SelectionConfig::window_size)
      .def_readwrite("ratio", &gm::SelectionConfig::ratio)
      .def_readwrite("clusters", &gm::SelectionConfig::clusters)
      .def_readwrite("influence_prefilter", &gm::SelectionConfig::influence_prefilter)
      .def_readwrite("prefilter_ratio", &gm::SelectionConfig::prefilter_ratio)
      .def_readwrite("nearest_pick_discount", &gm::SelectionConfig::nearest_pick_discount)
      .def_readwrite("temperature", &gm::SelectionConfig::temperature)
      .def_readwrite("relations", &gm::SelectionConfig::relations)
      .def_readwrite("merge_cluster_budgets", &gm::SelectionConfig::merge_cluster_budgets)
      .def_readwrite("importance_prior", &gm::SelectionConfig::importance_prior)
      .def_readwrite("importance_buckets", &gm::SelectionConfig::importance_buckets)
      .def_readwrite("importance_mix", &gm::SelectionConfig::importance_mix)
      .def_readwrite("refresh_mode", &gm::SelectionConfig::refresh_mode)
      .def_readwrite("encoder_buckets", &gm::SelectionConfig::encoder_buckets)
      .def_readwrite("encoder_dim", &gm::SelectionConfig::encoder_dim)
      .def_readwrite("encoder_bag_dim", &gm::SelectionConfig::encoder_bag_dim)
      .def_readwrite("encoder_max_ngram", &gm::SelectionConfig::encoder_max_ngram)
      .def_readwrite("refresh_train_steps", &gm::SelectionConfig::refresh_train_steps)
      .def_readwrite("refresh_batch_rollouts", &gm::SelectionConfig::refresh_batch_rollouts)
      .def_readwrite("refresh_learning_rate", &gm::SelectionConfig::refresh_learning_rate)
      .def_readwrite("robust_label_scaling", &gm::SelectionConfig::robust_label_scaling)
      .def_readwrite("per_position_labels", &gm::SelectionConfig::per_position_labels)
      .def_readwrite("relation_tau_min", &gm::SelectionConfig::relation_tau_min)
      .def_readwrite("train_ngram_table", &gm::SelectionConfig::train_ngram_table)
      .def_readwrite("label_buffer_rollouts", &gm::SelectionConfig::label_buffer_rollouts)
      .def_readwrite("seed", &gm::SelectionConfig::seed)
      .def_readwrite("log_path", &gm::SelectionConfig::log_path)
      .def("validate", &gm::SelectionConfig::validate);

  py::class_<gm::ProbeConfig>(m, "ProbeConfig")
      .def(py::init<>())
      .def_readwrite("interval_steps", &gm::ProbeConfig::interval_steps)
      .def_readwrite("first_step", &gm::ProbeConfig::first_step)
      .def_readwrite("rollout_length", &gm::ProbeConfig::rollout_length)
      .def_readwrite("random_rollouts", &gm::ProbeConfig::random_rollouts)
      .def_readwrite("neighbour_rollouts", &gm::ProbeConfig::neighbour_rollouts)
      .def_readwrite("bootstrap_pairs", &gm::ProbeConfig::bootstrap_pairs)
      .def_readwrite("lr_scale", &gm::ProbeConfig::lr_scale)
      .def_readwrite("pool_rows", &gm::ProbeConfig::pool_rows)
      .def_readwrite("effect_delay_steps", &gm::ProbeConfig::effect_delay_steps)
      .def_readwrite("max_seconds", &gm::ProbeConfig::max_seconds)
      .def_readwrite("budget", &gm::ProbeConfig::budget)
      .def_readwrite("min_rollouts", &gm::ProbeConfig::min_rollouts)
      .def("validate", &gm::ProbeConfig::validate);

  py::class_<PyProbeOps, std::shared_ptr<PyProbeOps>>(m, "_ProbeOps")
      .def(py::init([](py::object clone, py::object train_step, py::object reference_loss) {
        auto ops = std::make_shared<PyProbeOps>();
        ops->clone = std::move(clone);
        ops->train_step = std::move(train_step);
        ops->reference_loss = std::move(reference_loss);
        return ops;
      }))
      .def_property_readonly("last_error", [](PyProbeOps& o) {
        std::lock_guard<std::mutex> lock(o.mu);
        return o.last_error;
      })
      .def_property_readonly("errors", [](PyProbeOps& o) {
        std::lock_guard<std::mutex> lock(o.mu);
        return o.errors;
      });

  py::class_<TargetHandle>(m, "ProbeTarget")
      .def_property_readonly("lr_scale", [](const TargetHandle& h) { return h.target->lr_scale(); })
      .def_property_readonly("device", [](const TargetHandle& h) { return h.target->device().str(); })
      .def("train_step", [](TargetHandle& h, const torch::Tensor& tokens) {
        py::gil_scoped_release nogil;
        return h.target->train_step(tokens);
      })
      .def("reference_loss", [](TargetHandle& h) {
        py::gil_scoped_release nogil;
        return h.target->reference_loss();
      })
      .def("clone", [](const TargetHandle& h) {
        std::unique_ptr<gm::ProbeTarget> c;
        {
          py::gil_scoped_release nogil;
          c = h.target->clone();
        }
        return TargetHandle{std::shared_ptr<gm::ProbeTarget>(std::move(c))};
      });

  m.def("_make_py_target", [](std::shared_ptr<PyProbeOps> ops, py::object model, py::object optimizer, py::object loss_fn,
                              py::object reference_batches, const std::string& device, double grad_clip) {
    return TargetHandle{std::make_shared<PyModuleProbeTarget>(ops, model, optimizer, loss_fn, reference_batches,
                                                              to_device(device), 1.0, grad_clip)};
  }, py::arg("ops"), py::arg("model"), py::arg("optimizer"), py::arg("loss_fn"), py::arg("reference_batches"),
     py::arg("device"), py::arg("grad_clip") = 1.0,
     "PyModuleProbeTarget over a Python model (for GroupMatesLoader.on_step; groupmates.probe builds it)");

  m.def("_make_bigram_target", [](const torch::Tensor& emb, const torch::Tensor& head_w, const torch::Tensor& head_b,
                                  const std::string& optimizer, double lr, std::vector<torch::Tensor> refs) {
    return TargetHandle{make_bigram_target(emb, head_w, head_b, optimizer, lr, std::move(refs))};
  }, "Test hook: a C++ ModuleProbeTarget over a bigram LM (Embedding -> Linear) with these weights");

  m.def("_probe_labels", [](TargetHandle& h, const torch::Tensor& pool, const std::vector<std::vector<int64_t>>& plans,
                            int64_t rollout_length, int64_t rows_per_step, double lr_scale) {
    return run_prober(*h.target, pool, plans, rollout_length, rows_per_step, lr_scale);
  }, py::arg("target"), py::arg("pool"), py::arg("plans"), py::arg("rollout_length"), py::arg("rows_per_step") = 1,
     py::arg("lr_scale") = 1.0, "Test hook: OracleProber.run on the target; [{candidates, labels, cumulative, reference_before}]");

  py::class_<Loader>(m, "Loader")
      .def(py::init<gm::LoaderConfig, gm::SelectionConfig, gm::ProbeConfig, std::optional<std::string>>(),
           py::arg("config"), py::arg("selection"), py::arg("probes"), py::arg("state") = py::none())
      .def("next", &Loader::next)
      .def("skip", &Loader::skip, py::arg("n"))
      .def("on_step", [](Loader& l, int64_t step, TargetHandle* target) {
        gm::ProbeTarget* t = nullptr;
        if (target != nullptr) {
          t = dynamic_cast<PyModuleProbeTarget*>(target->target.get());
          if (t == nullptr) throw gm::Error(gm::ErrorCode::kInvalidConfig, "on_step", "target must be a PyModuleProbeTarget");
        }
        l.on_step(step, static_cast<PyModuleProbeTarget*>(t));
      }, py::arg("step"), py::arg("target") = nullptr)
      .def("set_reference", &Loader::set_reference, py::arg("rows"))
      .def("state", &Loader::state)
      .def("stats", &Loader::stats)
      .def("selection_stats", &Loader::selection_stats)
      .def("close", &Loader::close)
      .def_property_readonly("closed", &Loader::closed)
      .def("abandon", &Loader::abandon);
}
