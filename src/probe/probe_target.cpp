// ModuleProbeTarget: a C++ torch::nn::Module + optimiser as a probe target (groupmates/probe.h).
#include <cmath>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>
#include <torch/autograd.h>
#include <torch/utils.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include "groupmates/error.h"
#include "groupmates/probe_target.h"
#include "groupmates/module_probe_target.h"
#include "probe/optimizer_step.h"

namespace groupmates {
namespace {

torch::Device module_device(const torch::nn::Module& module) {
  for (const auto& p : module.parameters()) return p.device();
  for (const auto& b : module.buffers()) return b.device();
  return torch::kCPU;
}

torch::Tensor deep(const torch::Tensor& t) { return t.defined() ? t.detach().clone() : t; }

// A deep copy of one parameter's optimiser state for the optimisers whose state we know (Adam,
// AdamW, SGD); null for any other (the caller then falls back to archives).
std::unique_ptr<torch::optim::OptimizerParamState> deep_state(const torch::optim::OptimizerParamState& s) {
  if (auto* a = dynamic_cast<const torch::optim::AdamWParamState*>(&s)) {
    auto c = std::make_unique<torch::optim::AdamWParamState>(*a);
    c->exp_avg(deep(a->exp_avg())).exp_avg_sq(deep(a->exp_avg_sq())).max_exp_avg_sq(deep(a->max_exp_avg_sq()));
    return c;
  }
  if (auto* a = dynamic_cast<const torch::optim::AdamParamState*>(&s)) {
    auto c = std::make_unique<torch::optim::AdamParamState>(*a);
    c->exp_avg(deep(a->exp_avg())).exp_avg_sq(deep(a->exp_avg_sq())).max_exp_avg_sq(deep(a->max_exp_avg_sq()));
    return c;
  }
  if (auto* g = dynamic_cast<const torch::optim::SGDParamState*>(&s)) {
    auto c = std::make_unique<torch::optim::SGDParamState>(*g);
    c->momentum_buffer(deep(g->momentum_buffer()));
    return c;
  }
  return nullptr;
}

// Copies weights and optimiser state tensor by tensor on their own device (no archives, no host
// round trip). False if the optimiser's state is of a type deep_state() does not know, or the
// structures differ; `to` is then unspecified and the caller uses archives.
bool copy_direct(torch::nn::Module& from_module, torch::optim::Optimizer& from_opt, torch::nn::Module& to_module,
                 torch::optim::Optimizer& to_opt) {
  const auto src = from_module.parameters(), dst = to_module.parameters();
  const auto src_b = from_module.buffers(), dst_b = to_module.buffers();
  if (src.size() != dst.size() || src_b.size() != dst_b.size()) return false;
  auto& groups_from = from_opt.param_groups();
  auto& groups_to = to_opt.param_groups();
  if (groups_from.size() != groups_to.size()) return false;
  auto& state_from = from_opt.state();
  auto& state_to = to_opt.state();
  using Map = std::decay_t<decltype(state_from)>;
  std::vector<std::pair<typename Map::key_type, std::unique_ptr<torch::optim::OptimizerParamState>>> copies;
  for (size_t g = 0; g < groups_from.size(); ++g) {
    const auto& pf = groups_from[g].params();
    const auto& pt = groups_to[g].params();
    if (pf.size() != pt.size()) return false;
    for (size_t i = 0; i < pf.size(); ++i) {
      if (!pf[i].sizes().equals(pt[i].sizes())) return false;
      auto it = state_from.find(state_key(state_from, pf[i]));
      if (it == state_from.end()) continue;
      auto c = deep_state(*it->second);
      if (!c) return false;
      copies.emplace_back(state_key(state_to, pt[i]), std::move(c));
    }
  }
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < src.size(); ++i) {
    if (!src[i].sizes().equals(dst[i].sizes())) return false;
    dst[i].copy_(src[i]);
  }
  for (size_t i = 0; i < src_b.size(); ++i) {
    if (!src_b[i].sizes().equals(dst_b[i].sizes())) return false;
    dst_b[i].copy_(src_b[i]);
  }
  for (size_t g = 0; g < groups_from.size(); ++g) groups_to[g].set_options(groups_from[g].options().clone());
  state_to.clear();
  for (auto& [key, value] : copies) state_to[key] = std::move(value);
  return true;
}

/// Restores the module's training flag on scope exit.
class ModeGuard {
 public:
  ModeGuard(torch::nn::Module& module, bool training) : module_(module), was_(module.is_training()) {
    if (was_ != training) module_.train(training);
  }
  ~ModeGuard() {
    if (module_.is_training() != was_) module_.train(was_);
  }

 private:
  torch::nn::Module& module_;
  bool was_;
};

}  // namespace

void clipped_scaled_step(torch::optim::Optimizer& optimizer, double grad_clip_norm, double lr_scale) {
  if (grad_clip_norm > 0) {
    std::vector<torch::Tensor> params;
    for (auto& group : optimizer.param_groups())
      for (auto& p : group.params()) params.push_back(p);
    torch::nn::utils::clip_grad_norm_(params, grad_clip_norm);
  }
  if (lr_scale == 1.0) {
    optimizer.step();
    return;
  }
  std::vector<double> saved;
  for (auto& group : optimizer.param_groups()) {
    saved.push_back(group.options().get_lr());
    group.options().set_lr(saved.back() * lr_scale);
  }
  optimizer.step();
  size_t i = 0;
  for (auto& group : optimizer.param_groups()) group.options().set_lr(saved[i++]);
}

std::vector<torch::Tensor> gradient_of(const torch::Tensor& loss, const std::vector<torch::Tensor>& params) {
  const std::vector<torch::Tensor> grads =
      torch::autograd::grad({loss}, params, /*grad_outputs=*/{}, /*retain_graph=*/false, /*create_graph=*/false,
                            /*allow_unused=*/true);
  std::vector<torch::Tensor> out;
  out.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i)
    out.push_back(grads[i].defined() ? grads[i].detach() : torch::zeros_like(params[i]));
  return out;
}

ModuleProbeTarget::ModuleProbeTarget(ModulePtr module, std::shared_ptr<torch::optim::Optimizer> optimizer,
                                     ModuleFactory module_factory, OptimizerFactory optimizer_factory, LossFn loss,
                                     std::vector<torch::Tensor> reference_batches,
                                     const ModuleProbeTargetConfig& config)
    : module_(std::move(module)),
      optimizer_(std::move(optimizer)),
      module_factory_(std::move(module_factory)),
      optimizer_factory_(std::move(optimizer_factory)),
      loss_(std::move(loss)),
      config_(config),
      device_(torch::kCPU) {
  const char* where = "ModuleProbeTarget";
  if (!module_) throw Error(ErrorCode::kInvalidConfig, where, "module is null");
  if (!optimizer_) throw Error(ErrorCode::kInvalidConfig, where, "optimizer is null");
  if (!module_factory_ || !optimizer_factory_)
    throw Error(ErrorCode::kInvalidConfig, where, "module and optimizer factories are required (clone() uses them)");
  if (!loss_) throw Error(ErrorCode::kInvalidConfig, where, "loss callback is empty");
  if (reference_batches.empty()) throw Error(ErrorCode::kInvalidConfig, where, "no reference batches");
  if (!(config_.grad_clip_norm >= 0))
    throw Error(ErrorCode::kInvalidConfig, "ModuleProbeTargetConfig.grad_clip_norm", "must be >= 0 (0 = off)");
  if (!(config_.lr_scale > 0)) throw Error(ErrorCode::kInvalidConfig, "ModuleProbeTargetConfig.lr_scale", "must be > 0");
  device_ = module_device(*module_);
  reference_batches_.reserve(reference_batches.size());
  for (auto& batch : reference_batches) {
    if (!batch.defined() || batch.dim() != 2)
      throw Error(ErrorCode::kInvalidConfig, where, "reference batches must be token tensors [B, T]");
    reference_batches_.push_back(batch.to(device_));
  }
}

std::string ModuleProbeTarget::state_blob() const {
  const std::string a = saved_bytes(*module_), b = saved_bytes(*optimizer_);
  return std::to_string(a.size()) + ":" + a + b;
}

std::unique_ptr<ProbeTarget> ModuleProbeTarget::clone() const {
  {  // Fast path: tensor copies on the model's own device (Adam, AdamW, SGD).
    ModulePtr fresh = module_factory_();
    if (!fresh) throw Error(ErrorCode::kInvalidConfig, "ModuleProbeTarget::clone", "module factory returned null");
    fresh->to(device_);
    fresh->train(module_->is_training());
    std::shared_ptr<torch::optim::Optimizer> optimizer = optimizer_factory_(*fresh);
    if (!optimizer) throw Error(ErrorCode::kInvalidConfig, "ModuleProbeTarget::clone", "optimizer factory returned null");
    if (copy_direct(*module_, *optimizer_, *fresh, *optimizer))
      return std::make_unique<ModuleProbeTarget>(fresh, optimizer, module_factory_, optimizer_factory_, loss_,
                                                 reference_batches_, config_);
  }
  // Any other optimiser: weights and state through in-memory archives (deep copies on every LibTorch version).
  const std::string weights = saved_bytes(*module_), state = saved_bytes(*optimizer_);
  ModulePtr fresh = module_factory_();
  if (!fresh) throw Error(ErrorCode::kInvalidConfig, "ModuleProbeTarget::clone", "module factory returned null");
  fresh->to(device_);
  load_bytes(weights, *fresh, device_, "ModuleProbeTarget::clone", "the factory's module does not fit the live weights");
  fresh->train(module_->is_training());
  std::shared_ptr<torch::optim::Optimizer> optimizer = optimizer_factory_(*fresh);
  if (!optimizer) throw Error(ErrorCode::kInvalidConfig, "ModuleProbeTarget::clone", "optimizer factory returned null");
  load_bytes(state, *optimizer, device_, "ModuleProbeTarget::clone", "the factory's optimizer does not fit the live state");
  return std::make_unique<ModuleProbeTarget>(fresh, optimizer, module_factory_, optimizer_factory_, loss_,
                                             reference_batches_, config_);
}

bool ModuleProbeTarget::reset_from(const ProbeTarget& source) {
  const auto* from = dynamic_cast<const ModuleProbeTarget*>(&source);
  if (from == nullptr || from == this || from->device_ != device_) return false;
  if (!copy_direct(*from->module_, *from->optimizer_, *module_, *optimizer_)) return false;
  // No gradients, as in a fresh clone: LibTorch 1.13's zero_grad() keeps zero-filled ones, with which an optimiser
  // would step a parameter the next batch does not reach (weight decay, momentum) where a fresh clone skips it.
  for (auto& p : module_->parameters())
    if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
  module_->train(from->module_->is_training());
  config_ = from->config_;
  loss_ = from->loss_;
  reference_batches_ = from->reference_batches_;  // tensor handles, as clone() passes them
  return true;
}

double ModuleProbeTarget::train_step(const torch::Tensor& tokens) {
  ModeGuard mode(*module_, true);
  optimizer_->zero_grad();
  torch::Tensor loss = loss_(*module_, tokens.to(device_));
  const double value = loss.item<double>();
  loss.backward();
  clipped_scaled_step(*optimizer_, config_.grad_clip_norm, config_.lr_scale);
  return value;
}

double ModuleProbeTarget::reference_loss() {
  torch::NoGradGuard no_grad;
  ModeGuard mode(*module_, false);
  double sum = 0;
  for (const auto& batch : reference_batches_) sum += loss_(*module_, batch).item<double>();
  return sum / static_cast<double>(reference_batches_.size());
}

std::vector<torch::Tensor> ModuleProbeTarget::weights() const {
  std::vector<torch::Tensor> out;
  for (const auto& p : module_->parameters())
    if (p.requires_grad()) out.push_back(p);
  return out;
}

std::vector<torch::Tensor> ModuleProbeTarget::reference_gradient() {
  ModeGuard mode(*module_, false);
  torch::AutoGradMode grad_mode(true);
  const std::vector<torch::Tensor> params = weights();
  const double n = static_cast<double>(reference_batches_.size());
  // One batch's graph at a time (as reference_loss() evaluates them), the gradients summed.
  std::vector<torch::Tensor> sum;
  for (const auto& batch : reference_batches_) {
    std::vector<torch::Tensor> g = gradient_of(loss_(*module_, batch) / n, params);
    if (sum.empty()) sum = std::move(g);
    else for (size_t i = 0; i < sum.size(); ++i) sum[i].add_(g[i]);
  }
  return sum;
}

double ModuleProbeTarget::forward_flops_per_token() const {
  if (config_.forward_flops_per_token > 0) return config_.forward_flops_per_token;
  double n = 0;
  for (const auto& p : module_->parameters()) n += double(p.numel());
  return 2 * n;
}

int64_t ModuleProbeTarget::reference_tokens() const {
  int64_t n = 0;
  for (const auto& batch : reference_batches_) n += batch.numel();
  return n;
}

void ModuleProbeTarget::set_lr_scale(double scale) {
  if (!(scale > 0)) throw Error(ErrorCode::kInvalidConfig, "ModuleProbeTarget::set_lr_scale", "must be > 0");
  config_.lr_scale = scale;
}

}  // namespace groupmates
