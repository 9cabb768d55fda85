// groupmates/script_probe_target.h: a TorchScript model as the live model the prober copies.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/optim/optimizer.h>
#include <torch/script.h>

#include "groupmates/probe_target.h"
#include "groupmates/module_probe_target.h"

namespace groupmates {

/// A scripted module whose method `loss_method` maps tokens int64 [B, T] to a scalar loss,
/// trained by a C++ optimiser over its parameters. clone() deep-copies the module
/// (Module::deepcopy) and the optimiser state (through an in-memory archive).
class ScriptModuleProbeTarget : public ProbeTarget {
 public:
  /// Builds an optimiser over a module's parameters (the same kind and options as the live one).
  using OptimizerFactory = std::function<std::shared_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor>)>;

  ScriptModuleProbeTarget(torch::jit::Module module, std::shared_ptr<torch::optim::Optimizer> optimizer,
                          OptimizerFactory optimizer_factory, std::vector<torch::Tensor> reference_batches,
                          std::string loss_method = "loss", const ModuleProbeTargetConfig& config = {});

  std::unique_ptr<ProbeTarget> clone() const override;
  double train_step(const torch::Tensor& tokens) override;
  double reference_loss() override;
  void set_lr_scale(double scale) override;
  double lr_scale() const override { return config_.lr_scale; }
  torch::Device device() const override { return device_; }
  std::vector<torch::Tensor> weights() const override;
  std::vector<torch::Tensor> reference_gradient() override;
  torch::jit::Module& module() { return module_; }
  torch::optim::Optimizer& optimizer() { return *optimizer_; }

 private:
  torch::Tensor loss(const torch::Tensor& tokens);

  torch::jit::Module module_;
  std::shared_ptr<torch::optim::Optimizer> optimizer_;
  OptimizerFactory optimizer_factory_;
  std::vector<torch::Tensor> reference_batches_;
  std::string loss_method_;
  ModuleProbeTargetConfig config_;
  torch::Device device_;
};

/// The parameters of a scripted module, in registration order (what an optimiser should get).
std::vector<torch::Tensor> script_parameters(const torch::jit::Module& module);

}  // namespace groupmates
