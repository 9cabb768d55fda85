// groupmates/engine/oracle_prober.h: rollouts of real optimiser steps from a copy of the live
// model, and the marginal labels they give (ALGORITHM.md section 2).
//
// A rollout from weights theta (and optimiser state): R_0 = reference loss; for t = 1..L one real
// optimiser step on the t-th batch, R_t = reference loss, s_t = R_t - R_0, y_t = s_t - s_{t-1}
// (y_1 = s_1). Negative = the data helped. A rollout with a non-finite loss is discarded.
// First-order labels (OracleProberConfig::first_order): the same steps, but R_t - R_0 is estimated as
// <g, theta_t - theta_0>, g the reference loss's gradient at theta_0 (computed once per run()), so no
// reference evaluation follows a step: a label costs one step (3 F per token) instead of a step and an
// evaluation of the reference set.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>

#include "groupmates/probe_target.h"

namespace groupmates {

/// How a rollout's candidates were chosen.
enum class RolloutKind : int64_t {
  kRandom = 0,          ///< uniform without replacement from the pool
  kNeighbour = 1,       ///< near neighbours (same cluster / top cosine): exercises the relational terms
  kBootstrapBest = 2,   ///< beam search with the current model: best predicted sequence
  kBootstrapWorst = 3,  ///< beam search with the current model: worst predicted sequence
};
constexpr int kNumRolloutKinds = 4;
/// "random", "neighbour", "bootstrap_best", "bootstrap_worst".
const char* rollout_kind_name(RolloutKind kind);

/// Which pool rows a rollout trains on: step t (0-based) uses candidates[t * rows_per_step ..
/// (t + 1) * rows_per_step).
struct RolloutPlan {
  std::vector<int64_t> candidates;  ///< [L * rows_per_step] row ids into the pool
  RolloutKind kind = RolloutKind::kRandom;
};

/// One finished rollout (only finite ones are ever returned).
struct Rollout {
  std::vector<int64_t> candidates;  ///< [L * rows_per_step] row ids into the pool
  std::vector<double> labels;       ///< [L] marginal labels y_t = s_t - s_{t-1}, y_1 = s_1
  std::vector<double> cumulative;   ///< [L] raw s_t = R_t - R_0 (first order: <g, theta_t - theta_0>)
  double reference_before = 0;      ///< R_0
  RolloutKind kind = RolloutKind::kRandom;
  double seconds = 0;               ///< wall time of this rollout (clone + L steps + L evaluations or dot products)
};

/// Settings of an OracleProber.
struct OracleProberConfig {
  int64_t rollout_length = 10;  ///< L
  int64_t rows_per_step = 1;    ///< candidate rows per optimiser step (the batch of one step)
  int64_t max_rollouts = 64;    ///< at most this many rollouts per run() (planned beyond are skipped)
  double max_seconds = 0;       ///< stop starting new rollouts after this many seconds; 0 = no limit
  double lr_scale = 1.0;        ///< probes step with lr * lr_scale (a full step can swamp the labels)
  bool first_order = false;     ///< s_t = <reference gradient at the start, weight change> (needs
                                ///< ProbeTarget::weights() and reference_gradient())
};

/// The error text when a target cannot give first-order labels (no weights()).
extern const char* const first_order_unsupported;

/// What first-order labels need of the probed weights: the reference gradient and the weights it was taken at.
struct ReferenceGradient {
  std::vector<torch::Tensor> gradient;  ///< d R / d theta at theta_0, one per weight
  std::vector<torch::Tensor> weights;   ///< theta_0 (the probed target's own tensors, never changed)
  /// From `target` (its weights() and reference_gradient()); Error(kInvalidConfig) naming
  /// ProbeConfig.first_order_labels if the target gives neither or they do not match.
  static ReferenceGradient of(ProbeTarget& target);
  /// <gradient, theta - theta_0> for weights `theta` in the same order (double accumulation).
  double dot_change(const std::vector<torch::Tensor>& theta) const;
};

/// What one run() produced and what it cost.
struct ProbeResult {
  std::vector<Rollout> rollouts;  ///< finite rollouts, in plan order
  int64_t attempted = 0;          ///< rollouts started
  int64_t discarded = 0;          ///< rollouts dropped for a NaN/inf loss
  int64_t skipped = 0;            ///< planned rollouts not started (max_rollouts / max_seconds)
  double reference_before = 0;    ///< R_0 of the probed weights
  double seconds = 0;             ///< wall time of run()
  /// seconds / attempted (0 if none).
  double seconds_per_rollout() const { return attempted > 0 ? seconds / attempted : 0.0; }
};

/// Runs rollouts from a target's current weights; never modifies the target it is given.
class OracleProber {
 public:
  explicit OracleProber(const OracleProberConfig& config = {});

  /// Runs the plans (each of exactly L * rows_per_step candidates) on copies of `target`.
  /// `pool`: int64 [N, T] candidate rows (any device). Throws Error(kInvalidConfig) on bad plans.
  ProbeResult run(ProbeTarget& target, const torch::Tensor& pool, const std::vector<RolloutPlan>& plans) const;

  /// One rollout from a copy of `target` whose reference loss before any step is `reference_before`.
  /// Returns false (and leaves `out` unspecified) if a loss became NaN/inf. With config().first_order,
  /// `first_order` (ReferenceGradient::of(target)) is required. `scratch`: the copy to step, reused across
  /// rollouts (ProbeTarget::reset_from(target) instead of a clone() each; cloned into when empty or unsupported).
  bool run_rollout(const ProbeTarget& target, const torch::Tensor& pool, const RolloutPlan& plan,
                   double reference_before, Rollout& out, const ReferenceGradient* first_order = nullptr,
                   std::unique_ptr<ProbeTarget>* scratch = nullptr) const;

  const OracleProberConfig& config() const { return config_; }

 private:
  OracleProberConfig config_;
};

/// One probe's rollouts run a slice at a time, so that the trainer's thread can run a probe between its own steps
/// (ProbeSchedulerConfig::trainer_thread_rollouts); OracleProber::run is this run to the end in one call.
class ProbeRun {
 public:
  /// Checks the plans as OracleProber::run does (Error(kInvalidConfig)); nothing runs yet. `target` and `pool` must
  /// outlive the run.
  ProbeRun(const OracleProber& prober, ProbeTarget& target, const torch::Tensor& pool, std::vector<RolloutPlan> plans);
  ~ProbeRun();
  /// The first call measures R_0 (and, for first-order labels, the reference gradient) and nothing else; each later
  /// call runs up to `rollouts` more planned rollouts. Returns done().
  bool advance(int64_t rollouts);
  /// Whether every plan was run, skipped (max_rollouts / max_seconds) or discarded.
  bool done() const { return started_ && next_ >= plans_.size(); }
  /// The result so far; `seconds` is the time spent inside advance() (max_seconds is checked against it).
  const ProbeResult& result() const { return result_; }

 private:
  const OracleProber& prober_;
  ProbeTarget& target_;
  const torch::Tensor& pool_;
  std::vector<RolloutPlan> plans_;
  size_t next_ = 0;
  bool started_ = false;
  ProbeResult result_;
  std::unique_ptr<ReferenceGradient> gradient_;
  std::unique_ptr<ProbeTarget> scratch_;  // one copy of the target for every rollout
};

/// Label statistics of one rollout kind.
struct LabelStats {
  RolloutKind kind = RolloutKind::kRandom;
  int64_t rollouts = 0;
  int64_t count = 0;         ///< labels (rollouts * L)
  double mean = 0, std = 0;  ///< over all labels y_t of the kind (population std)
  double first_mean = 0;     ///< mean of y_1 (individual effect of the first batch)
  double later_mean = 0;     ///< mean of y_t, t >= 2 (where the relational terms act)
  double later_std = 0;
  double final_mean = 0;     ///< mean of s_L (the whole rollout's effect)
};
/// One entry per kind present in `rollouts`, in RolloutKind order.
std::vector<LabelStats> summarise_labels(const std::vector<Rollout>& rollouts);
/// A fixed-width table of summarise_labels() for logs and reports.
std::string format_label_stats(const std::vector<LabelStats>& stats);

}  // namespace groupmates
