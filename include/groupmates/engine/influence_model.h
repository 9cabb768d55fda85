// groupmates/influence_model.h: the relational data influence model (ALGORITHM.md section 3).
//
//   h_i  = encoder(x_i)                         (unit norm)
//   u_i  = w . dropout(h_i) + b [+ gamma * prior_i]  (individual influence; the optional prior is a cheap
//                                                 per-row estimate such as the negated importance weight)
//   r_ij = alpha * (1 - (h_i . h_j) / tau)      (relationship weight; tau, alpha learnable, init 1)
//   p_0  = u_0;  p_t = u_t * (1/t) * sum_{j<t} r_tj   (prediction for position t of an ordered group)
//
// Trained by mean-squared error between p and the standardised marginal labels y of rollouts;
// the standardisation statistics (centre, scale) are buffers of the model, saved with it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <torch/nn/module.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/serialize/input-archive.h>
#include <torch/types.h>

#include "groupmates/engine/encoder.h"

namespace groupmates {

/// How labels are standardised before training: (y - centre) / scale.
enum class LabelScaling {
  kMeanStd,    ///< centre = mean, scale = standard deviation (the reference's choice)
  kMedianMad,  ///< centre = median, scale = 1.4826 * median absolute deviation (robust to outliers)
};

/// Hyper-parameters of the relational head.
struct InfluenceModelConfig {
  double dropout = 0.1;     ///< dropout on h before the linear head (training mode only)
  double tau_init = 1.0;    ///< initial temperature tau
  double alpha_init = 1.0;  ///< initial relationship scale alpha
  double tau_min = 0;       ///< > 0: constrain() keeps tau >= tau_min, alpha >= 0 and gamma >= 0 (0 = unconstrained);
                            ///< with tau_min >= 1 every r_ij of unit embeddings is >= 0: relations only discount
  double prior_weight_init = 1.0;  ///< initial gamma, the weight of the per-row prior in u
  bool zero_head = true;    ///< start with w = 0, b = 0 (u = gamma * prior until the first refresh)
};

/// Encoder + linear head + learnable (tau, alpha); predicts the influence of ordered groups.
class RelationalInfluenceModel : public torch::nn::Module {
 public:
  /// Takes ownership of `encoder` as the submodule "encoder".
  explicit RelationalInfluenceModel(std::shared_ptr<Encoder> encoder, const InfluenceModelConfig& config = {});

  /// h: [N, D] unit embeddings of token rows [N, T] (mask optional, bool [N, T]).
  torch::Tensor embed(const torch::Tensor& tokens, const torch::Tensor& mask = {});
  /// u = w . dropout(h) + b (+ gamma * prior, when `prior` [...] is given) over the last dim: [..., D] -> [...].
  torch::Tensor individual(const torch::Tensor& h, const torch::Tensor& prior = {});
  /// r = alpha * (1 - a b^T / tau): [..., N, D] x [..., M, D] -> [..., N, M].
  torch::Tensor relation(const torch::Tensor& a, const torch::Tensor& b);
  /// p of every position of ordered groups from their embeddings: [G, L, D] (prior optional [G, L]) -> [G, L].
  torch::Tensor predict_groups(const torch::Tensor& h, const torch::Tensor& prior = {});
  /// p of rollouts given as tokens [G, L, T] (mask optional [G, L, T], prior optional [G, L]) -> [G, L].
  torch::Tensor predict_rollouts(const torch::Tensor& tokens, const torch::Tensor& mask = {},
                                 const torch::Tensor& prior = {});
  /// Mean-squared error between predictions p and standardised raw labels (same shape).
  torch::Tensor loss(const torch::Tensor& predictions, const torch::Tensor& raw_labels) const;

  /// Sets centre/scale from a collection of raw labels (any shape).
  void fit_label_stats(const torch::Tensor& raw_labels, LabelScaling scaling = LabelScaling::kMeanStd);
  /// (y - centre) / scale.
  torch::Tensor standardise(const torch::Tensor& raw_labels) const;
  double label_centre() const;
  double label_scale() const;

  /// Projects the learnable scalars back into their allowed range (when tau_min > 0: tau >= tau_min
  /// and alpha >= 0); InfluenceTrainer calls it after every optimiser step.
  void constrain();
  double tau() const;
  double alpha() const;
  double prior_weight() const;
  Encoder& encoder() { return *encoder_; }
  torch::nn::Linear& head() { return head_; }
  /// The learnable scalars as tensors (for tests and optimisers): shape [].
  torch::Tensor& tau_tensor() { return tau_; }
  torch::Tensor& alpha_tensor() { return alpha_; }
  torch::Tensor& prior_weight_tensor() { return prior_weight_; }

  /// All parameters and buffers, with the encoder's identity(), as a byte blob in groupmates' own checksummed
  /// format (src/model/weights_format.h; LibTorch never parses saved bytes); import needs the same architecture
  /// and encoder.
  std::string export_weights() const;
  /// Replaces every parameter and buffer with the blob's, or changes nothing and throws: Error(kCorruptData,
  /// origin) for damaged or malformed bytes or NaN/inf values, Error(kInvalidState, origin) on a mismatch of
  /// architecture or encoder (Encoder::identity()). `origin` names the file or field in errors. A bare torch
  /// archive (weights saved before 2026-12-05) is read only with GROUPMATES_TRUST_TORCH_ARCHIVE=1 (LibTorch's
  /// reader may abort the process on a damaged one; a refused or failed read may leave the model unusable).
  void import_weights(const std::string& blob, const std::string& origin = "influence-model weights");
  /// export_weights() to a file / import_weights() from a file (bit-exact round trip).
  void save_file(const std::string& path) const;
  void load_file(const std::string& path);

 private:
  static constexpr const char* kEncoderIdentityKey = "encoder_identity";
  void check_encoder_identity(torch::serialize::InputArchive& archive, const std::string& origin) const;
  void import_torch_archive(const std::string& blob, const std::string& origin);

  double tau_min_ = 0;
  std::shared_ptr<Encoder> encoder_;
  torch::nn::Dropout dropout_{nullptr};
  torch::nn::Linear head_{nullptr};
  torch::Tensor tau_, alpha_, prior_weight_;
  torch::Tensor label_centre_, label_scale_;
};

}  // namespace groupmates
