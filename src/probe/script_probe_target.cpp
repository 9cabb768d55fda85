// ScriptModuleProbeTarget: a TorchScript module + C++ optimiser as a probe target.
#include "groupmates/script_probe_target.h"

#include <sstream>

#include <torch/serialize/input-archive.h>
#include <torch/utils.h>
#include <torch/serialize/output-archive.h>

#include "groupmates/error.h"
#include "probe/optimizer_step.h"

namespace groupmates {

std::vector<torch::Tensor> script_parameters(const torch::jit::Module& module) {
  std::vector<torch::Tensor> params;
  for (const auto& p : module.parameters()) params.push_back(p);
  return params;
}

ScriptModuleProbeTarget::ScriptModuleProbeTarget(torch::jit::Module module,
                                                 std::shared_ptr<torch::optim::Optimizer> optimizer,
                                                 OptimizerFactory optimizer_factory,
                                                 std::vector<torch::Tensor> reference_batches, std::string loss_method,
                                                 const ModuleProbeTargetConfig& config)
    : module_(std::move(module)), optimizer_(std::move(optimizer)), optimizer_factory_(std::move(optimizer_factory)),
      loss_method_(std::move(loss_method)), config_(config), device_(torch::kCPU) {
  const char* where = "ScriptModuleProbeTarget";
  if (!optimizer_ || !optimizer_factory_) throw Error(ErrorCode::kInvalidConfig, where, "optimizer and its factory are required");
  if (!module_.find_method(loss_method_))
    throw Error(ErrorCode::kInvalidConfig, where, "the scripted module has no method '" + loss_method_ + "(tokens) -> loss'");
  if (reference_batches.empty()) throw Error(ErrorCode::kInvalidConfig, where, "no reference batches");
  bool trainable = false;
  for (const auto& p : module_.parameters()) {
    device_ = p.device();
    trainable = trainable || p.requires_grad();
  }
  if (!trainable)
    throw Error(ErrorCode::kInvalidConfig, where, "no parameter of the scripted module requires grad: nothing to train");
  for (auto& b : reference_batches) reference_batches_.push_back(b.to(device_));
}

torch::Tensor ScriptModuleProbeTarget::loss(const torch::Tensor& tokens) {
  return module_.get_method(loss_method_)({tokens.to(device_)}).toTensor();
}

std::unique_ptr<ProbeTarget> ScriptModuleProbeTarget::clone() const {
  // Copied without autograd history, so the copies are leaves an optimiser accepts.
  torch::jit::Module copy = [&] {
    torch::NoGradGuard no_grad;
    return module_.deepcopy();
  }();
  auto original = module_.parameters().begin();
  for (auto p : copy.parameters()) p.requires_grad_((*original++).requires_grad());
  std::shared_ptr<torch::optim::Optimizer> optimizer = optimizer_factory_(script_parameters(copy));
  load_bytes(saved_bytes(*optimizer_), *optimizer, device_, "ScriptModuleProbeTarget::clone",
             "the factory's optimizer does not fit the live state");
  return std::make_unique<ScriptModuleProbeTarget>(copy, optimizer, optimizer_factory_, reference_batches_, loss_method_,
                                                   config_);
}

double ScriptModuleProbeTarget::train_step(const torch::Tensor& tokens) {
  const bool was_training = module_.is_training();
  module_.train(true);
  optimizer_->zero_grad();
  torch::Tensor l = loss(tokens);
  const double value = l.item<double>();
  l.backward();
  clipped_scaled_step(*optimizer_, config_.grad_clip_norm, config_.lr_scale);
  module_.train(was_training);
  return value;
}

double ScriptModuleProbeTarget::reference_loss() {
  torch::NoGradGuard no_grad;
  const bool was_training = module_.is_training();
  module_.train(false);
  double sum = 0;
  for (const auto& b : reference_batches_) sum += loss(b).item<double>();
  module_.train(was_training);
  return sum / static_cast<double>(reference_batches_.size());
}

std::vector<torch::Tensor> ScriptModuleProbeTarget::weights() const {
  std::vector<torch::Tensor> out;
  for (const auto& p : module_.parameters())
    if (p.requires_grad()) out.push_back(p);
  return out;
}

std::vector<torch::Tensor> ScriptModuleProbeTarget::reference_gradient() {
  const bool was_training = module_.is_training();
  module_.train(false);
  torch::AutoGradMode grad_mode(true);
  const std::vector<torch::Tensor> params = weights();
  const double n = static_cast<double>(reference_batches_.size());
  std::vector<torch::Tensor> sum;  // one batch's graph at a time, the gradients summed
  try {
    for (const auto& b : reference_batches_) {
      std::vector<torch::Tensor> g = gradient_of(loss(b) / n, params);
      if (sum.empty()) sum = std::move(g);
      else for (size_t i = 0; i < sum.size(); ++i) sum[i].add_(g[i]);
    }
  } catch (...) {
    module_.train(was_training);
    throw;
  }
  module_.train(was_training);
  return sum;
}

void ScriptModuleProbeTarget::set_lr_scale(double scale) {
  if (!(scale > 0)) throw Error(ErrorCode::kInvalidConfig, "ScriptModuleProbeTarget::set_lr_scale", "must be > 0");
  config_.lr_scale = scale;
}

}  // namespace groupmates
