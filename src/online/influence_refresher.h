// influence_refresher.h: trains the influence model on the label buffer after each probe (private).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "groupmates/engine/influence_model.h"
#include "groupmates/engine/label_buffer.h"
#include "groupmates/selection_config.h"
#include "online/refresh_gate.h"

namespace groupmates {

/// What one refresh produced.
struct RefreshResult {
  std::string weights;             ///< the weights to publish; empty: nothing to publish (failed, or gated
                                   ///< while the prior-only model is already the published one)
  std::string error;               ///< why it failed ("" = trained)
  bool nonfinite = false;          ///< it failed because the refreshed weights or predictions were NaN/inf
  bool gated = false;              ///< trained, but the gate kept the prior-only model (SelectionConfig::refresh_gate)
  double flops = 0;                ///< held-out check + training steps
  bool heldout_measured = false;   ///< the check ran (fresh rollouts and a model refreshed before)
  double heldout_spearman = 0;     ///< predictions on the fresh rollouts vs their labels as measured
  double heldout_spearman_scaled = 0;  ///< the same vs the labels as standardised for training
  double heldout_spearman_prior = 0;   ///< the prior-only model's predictions vs the measured labels
  double heldout_spearman_unshrunk = 0; ///< the learned model with its whole head (share 1) vs the measured labels
  double head_share = 1;               ///< the share of the learned head a published learned model carries now
                                       ///< (SelectionConfig::refresh_head_shrinkage)
};

/// Owns the working copy of the influence model that refreshes train (ALGORITHM.md section 3), on the
/// probe thread only. Before training, the model predicts the newest probe's rollouts (a held-out
/// check); after, a model whose weights or predictions are not finite is not published and the
/// working copy goes back to the last good weights. With SelectionConfig::refresh_gate, the prior-only
/// model (`baseline`: the initial model, never trained) predicts the same rollouts and RefreshGate decides
/// whether the refreshed model or the prior-only one is published.
/// Test-only fault injection (tests/online): when set, called on the probe thread after a refresh's
/// training steps and before the finite check, with the probe step and the working model; it may
/// throw or write NaN into the model. Empty in production; set it only while no loader runs.
extern std::function<void(int64_t probe_step, RelationalInfluenceModel& model)> refresh_fault_hook;

class InfluenceRefresher {
 public:
  InfluenceRefresher(SelectionConfig config, std::shared_ptr<RelationalInfluenceModel> model,
                     std::shared_ptr<RelationalInfluenceModel> baseline, std::shared_ptr<LabelBuffer> labels);
  /// Trains on the whole buffer after the probe at trainer step `step` added `fresh` rollouts.
  RefreshResult refresh(int64_t step, int64_t fresh);
  /// The working weights (saved with the loader's state) / restore them; `refreshed`: a refresh succeeded before.
  std::string weights() const;
  void load(const std::string& weights, bool refreshed, const std::string& origin);
  /// Whether a refresh on the buffer as it is would shrink the head (refresh_head_shrinkage, and a prior for every
  /// rollout, as refresh() requires of the prior it trains with).
  bool shrinks() const;
  /// Whether a refresh succeeded before (shared with the other ranks with the weights).
  bool refreshed() const { return refreshed_; }
  /// The gate's record (saved with the loader's state; used on the probe thread only).
  RefreshGate& gate() { return gate_; }

 private:
  SelectionConfig config_;
  std::shared_ptr<RelationalInfluenceModel> model_;
  std::shared_ptr<RelationalInfluenceModel> baseline_;  ///< never trained; exported when the gate turns back to it
  std::shared_ptr<LabelBuffer> labels_;
  RefreshGate gate_;
  bool refreshed_ = false;
};

}  // namespace groupmates
