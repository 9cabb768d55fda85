// examples/tiny_gpt/tiny_gpt.h: a small causal transformer LM for examples, benchmarks and tests.
//
// Token + learned position embeddings, n_layers pre-LayerNorm blocks (causal multi-head
// self-attention, GELU MLP), a final LayerNorm and an output head tied to the token embedding.
// Initialisation is a pure function of config.seed (a private generator: the global RNG is not
// touched): N(0, 0.02) weights, residual projections N(0, 0.02 / sqrt(2 n_layers)), zero biases.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/normalization.h>
#include <torch/optim/optimizer.h>
#include <torch/types.h>

namespace groupmates {

/// Sizes of a TinyGpt.
struct TinyGptConfig {
  int64_t vocab_size = 256;
  int64_t context = 128;   ///< longest sequence forward() accepts
  int64_t d_model = 128;
  int64_t n_layers = 2;
  int64_t n_heads = 4;     ///< must divide d_model
  int64_t d_ff = 0;        ///< MLP width; 0 = 4 * d_model
  uint64_t seed = 0;       ///< initialisation seed
  int64_t ignore_id = -1;  ///< loss() skips targets equal to it (the padding id; -1 = none)
};

/// A TinyGptConfig of these sizes (the other fields at their defaults).
TinyGptConfig tiny_gpt_config(int64_t vocab, int64_t context, int64_t d_model, int64_t layers, int64_t heads,
                              uint64_t seed = 0);

/// An optimiser factory (as ModuleProbeTarget takes one): AdamW over the module's parameters with
/// learning rate `lr` and LibTorch's other defaults unless given.
std::function<std::shared_ptr<torch::optim::Optimizer>(torch::nn::Module&)> adamw_factory(double lr,
                                                                                          double weight_decay = 1e-2);

class TinyGptBlock;

/// Small causal GPT: forward() gives logits, loss() the next-token cross entropy.
class TinyGpt : public torch::nn::Module {
 public:
  explicit TinyGpt(const TinyGptConfig& config = {});

  /// tokens int64 [B, T] (T <= context) -> logits [B, T, vocab_size].
  torch::Tensor forward(const torch::Tensor& tokens);
  /// Mean next-token cross entropy of rows [B, T] (T >= 2): positions 0..T-2 predict 1..T-1;
  /// targets equal to config.ignore_id are left out of the mean.
  torch::Tensor loss(const torch::Tensor& tokens);
  /// Mean cross entropy of the logits of input_ids [B, T] against labels [B, T] (a
  /// groupmates::TrainingBatch); labels equal to -100 (no target: padding, document ends) or to
  /// config.ignore_id are left out of the mean.
  torch::Tensor loss(const torch::Tensor& input_ids, const torch::Tensor& labels);
  const TinyGptConfig& config() const { return config_; }
  /// Number of parameters (the tied head counted once).
  int64_t num_parameters() const;

 private:
  TinyGptConfig config_;
  torch::nn::Embedding token_embedding_{nullptr};
  torch::nn::Embedding position_embedding_{nullptr};
  std::vector<std::shared_ptr<TinyGptBlock>> blocks_;
  torch::nn::LayerNorm final_norm_{nullptr};
};

/// The ModuleProbeTarget::LossFn of a TinyGpt: `static_cast<TinyGpt&>(module).loss(tokens)`
/// (throws groupmates::Error if the module is not a TinyGpt).
torch::Tensor tiny_gpt_loss(torch::nn::Module& module, const torch::Tensor& tokens);

}  // namespace groupmates
