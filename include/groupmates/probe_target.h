// groupmates/probe_target.h: what an oracle probe needs from the live model (ALGORITHM.md section 2).
//
// Implement ProbeTarget for your model, or use ModuleProbeTarget (module_probe_target.h) for a
// C++ torch::nn::Module, or ScriptProbeTarget (script_probe_target.h) for a TorchScript module;
// the Python package wraps an nn.Module. GroupMatesLoader::on_step() snapshots it when a probe is due.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include <torch/types.h>

namespace groupmates {

/// What the prober needs from the live model. Implementations are not thread-safe: one thread
/// uses an instance at a time (the scheduler clones on the trainer's thread, then the clone is
/// used on the probe thread only).
class ProbeTarget {
 public:
  virtual ~ProbeTarget() = default;
  /// Deep copy of the weights AND the optimiser state, independent of this target.
  virtual std::unique_ptr<ProbeTarget> clone() const = 0;
  /// Makes this target (a clone() of `source`, since changed) what a new source.clone() would be, in place: weights,
  /// buffers, optimiser state and options, no gradients, lr_scale(), without building a model. False = not supported
  /// (the default) or `source` is of another kind; this target is then unspecified and the caller clones anew.
  virtual bool reset_from(const ProbeTarget& source) { return false; }
  /// One real optimiser step (same optimiser, lr and clipping as training, lr times lr_scale())
  /// on tokens int64 [B, T]; returns the training loss of the batch before the step.
  virtual double train_step(const torch::Tensor& tokens) = 0;
  /// Mean loss over the reference batches (no gradient; never changes weights or state).
  virtual double reference_loss() = 0;
  /// Multiplies the learning rate of later train_step()s (probes: a scaled step; default 1).
  virtual void set_lr_scale(double scale) = 0;
  virtual double lr_scale() const = 0;
  /// Device the weights live on (token batches are moved there).
  virtual torch::Device device() const = 0;
  /// Forward FLOPs per token of the model (about 2 x its non-embedding parameters); a forward plus
  /// backward counts 3x this. Used only for cost accounting; 0 = unknown (FLOPs then report 0).
  virtual double forward_flops_per_token() const { return 0; }
  /// Tokens in the reference set that reference_loss() evaluates (cost accounting; 0 = unknown).
  virtual int64_t reference_tokens() const { return 0; }
  /// The weights train_step() updates (handles, not copies), in a fixed order; empty = this target
  /// cannot give first-order labels (ProbeConfig::first_order_labels).
  virtual std::vector<torch::Tensor> weights() const { return {}; }
  /// d reference_loss() / d weights() at the current weights, one tensor per weights() entry, in eval
  /// mode (as reference_loss()); never changes weights or optimiser state. Empty = unsupported.
  virtual std::vector<torch::Tensor> reference_gradient() { return {}; }
};

}  // namespace groupmates
