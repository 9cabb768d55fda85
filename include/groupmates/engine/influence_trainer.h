// groupmates/influence_trainer.h: fits a RelationalInfluenceModel to labelled rollouts (AdamW).
#pragma once

#include <memory>
#include <vector>

#include <torch/types.h>

#include "groupmates/engine/influence_model.h"

namespace torch::optim {
class AdamW;
}

namespace groupmates {

/// Optimiser settings. The reference uses lr 5e-5 for a pretrained BERT encoder; a hashed
/// encoder trained from scratch wants a much larger rate (the default).
struct InfluenceTrainerConfig {
  double learning_rate = 3e-3;
  double weight_decay = 0.01;
  double grad_clip_norm = 1.0;  ///< 0 = no clipping
};

/// Correlations of predictions with labels on held-out rollouts.
struct InfluenceEvaluation {
  double mse = 0;       ///< against standardised labels
  double pearson = 0;
  double spearman = 0;
};

/// One AdamW optimiser bound to one model.
class InfluenceTrainer {
 public:
  InfluenceTrainer(std::shared_ptr<RelationalInfluenceModel> model, const InfluenceTrainerConfig& config = {});
  ~InfluenceTrainer();

  /// One optimiser step on rollouts: tokens [G, L, T], raw labels [G, L]; returns the loss.
  /// prior: optional per-row prior [G, L] (RelationalInfluenceModel::individual).
  double step(const torch::Tensor& tokens, const torch::Tensor& raw_labels, const torch::Tensor& mask = {},
              const torch::Tensor& prior = {});
  /// Eval-mode predictions vs labels over all positions of the given rollouts.
  InfluenceEvaluation evaluate(const torch::Tensor& tokens, const torch::Tensor& raw_labels,
                               const torch::Tensor& mask = {}, const torch::Tensor& prior = {});

 private:
  std::shared_ptr<RelationalInfluenceModel> model_;
  InfluenceTrainerConfig config_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
};

}  // namespace groupmates
