// groupmates_testhooks: a test-only extension (never installed; `make python-testhooks` builds it in
// the engine's build directory, tests/python/conftest.py puts it on sys.path). It drives C++
// internals the public API does not reach:
//   * raise_error(code, where, message) throws a groupmates::Error, translated by the translators
//     groupmates._core / groupmates._engine installed (this module installs none), so the tests see
//     the package's own translation;
//   * make_bigram_target(...) is a C++ ModuleProbeTarget over a bigram LM (Embedding -> Linear), and
//     probe_labels(target, ...) runs the OracleProber on it or on the PyModuleProbeTarget that
//     groupmates.probe.make_target builds (both are groupmates._engine.ProbeTarget handles);
//   * delivery_defaults() reads groupmates::DeliveryOptions, whose Python form is
//     GroupMatesLoader's device= and pin_memory= (delivered in Python, see loader.py).
// Import groupmates (and so groupmates._engine) first.
#include <torch/extension.h>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <vector>

#include "groupmates/error.h"
#include "groupmates/loader.h"
#include "groupmates/module_probe_target.h"
#include "groupmates/probe_target.h"
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include <chrono>

#include "groupmates/engine/collectives.h"
#include "groupmates/engine/oracle_prober.h"
#include "groupmates/engine/shared_probes.h"
#include "groupmates/engine/rollout_policy.h"

#include "target_handle.h"

namespace py = pybind11;
namespace gm = groupmates;

using groupmates_binding::TargetHandle;

namespace {

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
                    int64_t rollout_length, int64_t rows_per_step, double lr_scale, bool first_order) {
  gm::OracleProberConfig c;
  c.first_order = first_order;
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

}  // namespace

PYBIND11_MODULE(groupmates_testhooks, m) {
  m.doc() = "test-only hooks into the groupmates C++ internals (tests/python)";
  py::module_::import("groupmates._engine");  // registers ProbeTarget and the error translation

  m.def("raise_error", [](const std::string& code, const std::string& where, const std::string& message) {
    for (int c = 0; c <= static_cast<int>(gm::ErrorCode::kSelectionFailed); ++c) {
      if (code == gm::error_code_name(static_cast<gm::ErrorCode>(c))) throw gm::Error(static_cast<gm::ErrorCode>(c), where, message);
    }
    throw gm::Error(gm::ErrorCode::kInternal, where, message);
  }, "Throws a groupmates::Error of this code (for tests of the translation)");

  m.def("delivery_defaults", [] {
    const gm::DeliveryOptions d;
    py::dict out;
    out["device"] = d.device.str();
    out["pin_memory"] = d.pin_memory;
    return out;
  }, "The defaults of groupmates::DeliveryOptions");

  m.def("make_bigram_target", [](const torch::Tensor& emb, const torch::Tensor& head_w, const torch::Tensor& head_b,
                                 const std::string& optimizer, double lr, std::vector<torch::Tensor> refs) {
    return TargetHandle{make_bigram_target(emb, head_w, head_b, optimizer, lr, std::move(refs))};
  }, "A C++ ModuleProbeTarget over a bigram LM (Embedding -> Linear) with these weights");

  m.def("probe_labels", [](TargetHandle& h, const torch::Tensor& pool, const std::vector<std::vector<int64_t>>& plans,
                           int64_t rollout_length, int64_t rows_per_step, double lr_scale, bool first_order) {
    return run_prober(*h.target, pool, plans, rollout_length, rows_per_step, lr_scale, first_order);
  }, py::arg("target"), py::arg("pool"), py::arg("plans"), py::arg("rollout_length"), py::arg("rows_per_step") = 1,
     py::arg("lr_scale") = 1.0, py::arg("first_order") = false, "OracleProber.run on the target; [{candidates, labels, cumulative, reference_before}]");

  // src/distributed/ over torch.distributed's group (a c10d::ProcessGroup from Python: torch's
  // pybind11 types, shared with this module) or the single-process collectives.
  py::class_<gm::Collectives, std::shared_ptr<gm::Collectives>>(m, "Collectives")
      .def_property_readonly("rank", &gm::Collectives::rank)
      .def_property_readonly("world_size", &gm::Collectives::world_size)
      .def("all_gather", [](gm::Collectives& c, const py::bytes& b) {
        const std::string mine = b;
        std::vector<std::string> all;
        {
          py::gil_scoped_release nogil;
          all = c.all_gather(mine);
        }
        py::list out;
        for (const auto& s : all) out.append(py::bytes(s));
        return out;
      })
      .def("broadcast", [](gm::Collectives& c, const py::bytes& b, int root) {
        const std::string mine = b;
        std::string got;
        {
          py::gil_scoped_release nogil;
          got = c.broadcast(mine, root);
        }
        return py::bytes(got);
      })
      .def("share_weights", [](gm::Collectives& c, const py::bytes& b, int root) {
        const std::string mine = b;
        std::string got;
        {
          py::gil_scoped_release nogil;
          got = gm::share_weights(c, mine, root);
        }
        return py::bytes(got);
      })
      .def("all_reduce_cluster_sums", [](gm::Collectives& c, torch::Tensor sums, torch::Tensor counts) {
        py::gil_scoped_release nogil;
        gm::all_reduce_cluster_sums(c, sums, counts);
      })
      .def("all_gather_rollouts", [](gm::Collectives& c, const py::list& rollouts) {
        std::vector<gm::LabelledRollout> mine;
        for (py::handle h : rollouts) {
          py::dict d = py::reinterpret_borrow<py::dict>(h);
          gm::LabelledRollout r;
          r.tokens = d["tokens"].cast<torch::Tensor>();
          r.labels = d["labels"].cast<std::vector<double>>();
          r.kind = static_cast<gm::RolloutKind>(d["kind"].cast<int64_t>());
          r.probe_step = d["probe_step"].cast<int64_t>();
          if (d.contains("prior")) r.prior = d["prior"].cast<torch::Tensor>();
          mine.push_back(std::move(r));
        }
        std::vector<gm::LabelledRollout> all;
        {
          py::gil_scoped_release nogil;
          all = gm::all_gather_rollouts(c, mine);
        }
        py::list out;
        for (const auto& r : all) {
          py::dict d;
          d["tokens"] = r.tokens;
          d["labels"] = r.labels;
          d["kind"] = static_cast<int64_t>(r.kind);
          d["probe_step"] = r.probe_step;
          if (r.prior.defined()) d["prior"] = r.prior;
          out.append(d);
        }
        return out;
      });
  m.def("process_group_collectives", [](py::object group, double timeout_seconds) {
    auto pg = group.cast<c10::intrusive_ptr<c10d::ProcessGroup>>();
    return gm::process_group_collectives(pg, std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000)));
  }, "Collectives over a torch.distributed ProcessGroup (e.g. torch.distributed.group.WORLD)");
  m.def("local_collectives", &gm::local_collectives);
  m.def("rollouts_of_rank", &gm::rollouts_of_rank);
}
