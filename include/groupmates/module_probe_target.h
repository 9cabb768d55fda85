// groupmates/module_probe_target.h: a ProbeTarget over a C++ torch::nn::Module and its optimiser.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include "groupmates/probe_target.h"

namespace groupmates {

/// Settings of a ModuleProbeTarget.
struct ModuleProbeTargetConfig {
  double grad_clip_norm = 1.0;  ///< clip the global gradient norm at this value before each step; 0 = off
  double lr_scale = 1.0;        ///< see ProbeTarget::set_lr_scale
  double forward_flops_per_token = 0;  ///< cost accounting; 0 = 2 x every parameter of the module (embeddings too)
};

/// A C++ torch::nn::Module trained by a torch::optim::Optimizer (AdamW, SGD, ...).
///
/// clone() serialises the module (parameters and buffers) and the optimiser (param groups with
/// their options, per-parameter state) into in-memory torch archives and loads them into a fresh
/// module built by `module_factory` and a fresh optimiser built by `optimizer_factory` over its
/// parameters. The factories must build the same architecture and optimiser type; the loaded
/// options (lr, betas, weight decay, ...) replace the factory's. Works with LibTorch 1.13 and 2.x.
///
/// Use the same instance for the real training steps (train_step) so probes use exactly the
/// trainer's optimiser settings, or keep training yourself and only hand this target to the prober.
class ModuleProbeTarget : public ProbeTarget {
 public:
  using ModulePtr = std::shared_ptr<torch::nn::Module>;
  using ModuleFactory = std::function<ModulePtr()>;
  using OptimizerFactory = std::function<std::shared_ptr<torch::optim::Optimizer>(torch::nn::Module&)>;
  /// Scalar loss of a batch of token rows [B, T] (on the module's device).
  using LossFn = std::function<torch::Tensor(torch::nn::Module&, const torch::Tensor&)>;

  /// `reference_batches`: token tensors [B_i, T_i] (moved to the module's device once).
  ModuleProbeTarget(ModulePtr module, std::shared_ptr<torch::optim::Optimizer> optimizer, ModuleFactory module_factory,
                    OptimizerFactory optimizer_factory, LossFn loss, std::vector<torch::Tensor> reference_batches,
                    const ModuleProbeTargetConfig& config = {});

  std::unique_ptr<ProbeTarget> clone() const override;
  /// Tensor copies into this target's own module and optimiser (Adam, AdamW, SGD; false for another optimiser).
  bool reset_from(const ProbeTarget& source) override;
  double train_step(const torch::Tensor& tokens) override;
  double reference_loss() override;
  void set_lr_scale(double scale) override;
  double lr_scale() const override { return config_.lr_scale; }
  torch::Device device() const override { return device_; }
  double forward_flops_per_token() const override;
  int64_t reference_tokens() const override;
  std::vector<torch::Tensor> weights() const override;
  std::vector<torch::Tensor> reference_gradient() override;

  torch::nn::Module& module() { return *module_; }
  const ModulePtr& module_ptr() const { return module_; }
  torch::optim::Optimizer& optimizer() { return *optimizer_; }
  const std::vector<torch::Tensor>& reference_batches() const { return reference_batches_; }

  /// The module's parameters and buffers and the optimiser's state as one byte blob (the same
  /// archives clone() uses); equal blobs = bit-identical weights and state. For tests and checks.
  std::string state_blob() const;

 private:
  ModulePtr module_;
  std::shared_ptr<torch::optim::Optimizer> optimizer_;
  ModuleFactory module_factory_;
  OptimizerFactory optimizer_factory_;
  LossFn loss_;
  std::vector<torch::Tensor> reference_batches_;
  ModuleProbeTargetConfig config_;
  torch::Device device_;
};

}  // namespace groupmates
