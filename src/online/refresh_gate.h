// refresh_gate.h: publishes a learned influence model only while it predicts fresh probes better than
// the prior-only model does (private).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace groupmates {

/// Champion/challenger check of refreshes. Before a refresh trains on the newest probe, the learned
/// model (trained on the probes before it) and the prior-only model (the initial one: u = gamma *
/// importance prior) both predict that probe's rollouts, and each one's held-out Spearman (or, with
/// SelectionConfig::refresh_gate_top_share, its picks_gain) is recorded.
/// A refreshed model is published only while the learned models' mean held-out Spearman over all
/// checks so far exceeds the prior-only model's by `margin` standard errors, the standard error taken
/// as 1 / sqrt(held-out labels so far) (a Spearman of n pairs: about 1 / sqrt(n - 1)); otherwise the
/// prior-only model selects. margin 0: the plain comparison (a lead within rounding of 0 is a tie, which
/// keeps the prior-only model).
/// With head shrinkage it also chooses how much of the learned head a published model carries: at each
/// check the working model predicts with its head scaled by every share in kHeadShares, and from then on
/// refreshes publish the share with the best mean score over all checks so far (ties: the smaller share;
/// before the first check, `head_share_start`). The learned score recorded for the gate is the one of the
/// share in force at the check, so both the share and the gate are judged on probes they did not see.
class RefreshGate {
 public:
  /// The shares of the learned head (w.h + b) a published model may carry: u = share * (w.h + b) + gamma * prior.
  static constexpr std::array<double, 4> kHeadShares{0.0, 0.25, 0.5, 1.0};

  /// `shrinkage` false: the head is published whole (share 1), as before head shrinkage existed.
  explicit RefreshGate(double margin = 0, bool shrinkage = false, double head_share_start = 1.0)
      : margin_(margin), shrinkage_(shrinkage), head_share_start_(head_share_start) {}
  /// Records one held-out check of `labels` measured labels (a non-finite Spearman, e.g. of constant
  /// predictions, counts as 0). Called only with SelectionConfig::refresh_gate.
  void record(double learned_spearman, double prior_spearman, uint64_t labels);
  /// Records each share's score at one held-out check, in kHeadShares' order (a non-finite one counts as 0);
  /// called at every check with shrinkage, gate or not.
  void record_shares(const std::vector<double>& share_scores);
  /// The share of the learned head a model published now carries (1 without shrinkage).
  double head_share() const;
  /// The learned model should select now (false before the first check).
  bool learned_wins() const;
  /// The margin the learned mean must clear now (margin / sqrt(labels so far); margin with none counted).
  double required_lead() const;
  uint64_t labels() const { return labels_; }
  /// Held-out checks recorded, and the mean Spearman of each model over them (0 before the first).
  uint64_t checks() const { return checks_; }
  double learned_mean() const { return checks_ ? learned_sum_ / double(checks_) : 0.0; }
  double prior_mean() const { return checks_ ? prior_sum_ / double(checks_) : 0.0; }
  /// The last model a refresh published is a learned one (not the prior-only model).
  bool learned_published() const { return learned_published_; }
  void set_learned_published(bool learned) { learned_published_ = learned; }

  /// Mean score of each share over the checks so far (kHeadShares' order; zeros before the first).
  std::vector<double> share_means() const;

  /// The whole state as text (exact: sums as hexadecimal floats) / restore it; load throws
  /// Error(kInvalidState) naming `what` when the text is malformed, or when it was saved under another head
  /// shrinkage (off, or another start share) than this gate's, unless `adopt_shrinkage` (ranks other than 0
  /// take rank 0's record as it is). A state saved before the label count existed (four fields) loads with 0
  /// labels: the gate then needs the full margin until its next check; one saved before head shrinkage existed
  /// (four or five fields) published whole heads: unless it has neither a check nor a published learned model, it
  /// loads only without shrinkage.
  std::string save() const;
  /// The head-shrinkage mode as saved: "off", or the start share as a hexadecimal float.
  std::string shrinkage_text() const;
  void load(const std::string& text, const std::string& what, bool adopt_shrinkage = false);

 private:
  double margin_ = 0;
  bool shrinkage_ = false;
  double head_share_start_ = 1.0;
  uint64_t checks_ = 0, labels_ = 0;
  double learned_sum_ = 0, prior_sum_ = 0;
  uint64_t share_checks_ = 0;  // checks that recorded every share's score (with the gate off too: may exceed checks_)
  std::array<double, kHeadShares.size()> share_sums_{};
  bool learned_published_ = false;
};

/// A model's score for the gate by the picks it would make: minus the mean of `labels` (measured, lower =
/// better) over the k = max(1, round(share * n)) rows with the lowest `predicted`; rows tied at the cut
/// share its remaining weight equally (so constant predictions score minus the mean of all labels).
/// Higher is better, like a Spearman; NaN when a prediction is not finite (the gate counts it as 0).
/// Throws Error(kInternal) on sizes that differ or are 0, or a share outside [0, 1].
double picks_gain(const std::vector<double>& predicted, const std::vector<double>& labels, double share);

}  // namespace groupmates
