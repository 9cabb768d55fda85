// OracleProber: rollouts of L real optimiser steps from a copy of the live model (ALGORITHM.md 2).
#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "groupmates/error.h"
#include "groupmates/probe_target.h"
#include "groupmates/engine/oracle_prober.h"
#include "util/stopwatch.h"

#include <fmt/format.h>

namespace groupmates {

const char* rollout_kind_name(RolloutKind kind) {
  switch (kind) {
    case RolloutKind::kRandom: return "random";
    case RolloutKind::kNeighbour: return "neighbour";
    case RolloutKind::kBootstrapBest: return "bootstrap_best";
    case RolloutKind::kBootstrapWorst: return "bootstrap_worst";
  }
  return "unknown";
}

OracleProber::OracleProber(const OracleProberConfig& config) : config_(config) {
  if (config_.rollout_length < 1)
    throw Error(ErrorCode::kInvalidConfig, "OracleProberConfig.rollout_length", "must be >= 1");
  if (config_.rows_per_step < 1)
    throw Error(ErrorCode::kInvalidConfig, "OracleProberConfig.rows_per_step", "must be >= 1");
  if (config_.max_rollouts < 0) throw Error(ErrorCode::kInvalidConfig, "OracleProberConfig.max_rollouts", "must be >= 0");
  if (!(config_.max_seconds >= 0))
    throw Error(ErrorCode::kInvalidConfig, "OracleProberConfig.max_seconds", "must be >= 0 (0 = no limit)");
  if (!(config_.lr_scale > 0)) throw Error(ErrorCode::kInvalidConfig, "OracleProberConfig.lr_scale", "must be > 0");
}

const char* const first_order_unsupported =
    "the probe target gives no weights(): first-order labels need ProbeTarget::weights() and "
    "reference_gradient() (ModuleProbeTarget, ScriptModuleProbeTarget and the Python target have them); "
    "implement both in your target, or set ProbeConfig.first_order_labels = false (Python: "
    "ProbeConfig(first_order_labels=False)) for labels from reference evaluations";

ReferenceGradient ReferenceGradient::of(ProbeTarget& target) {
  const char* field = "ProbeConfig.first_order_labels";
  ReferenceGradient r;
  r.weights = target.weights();
  if (r.weights.empty())
    throw Error(ErrorCode::kInvalidConfig, field, first_order_unsupported);
  r.gradient = target.reference_gradient();
  if (r.gradient.size() != r.weights.size())
    throw Error(ErrorCode::kInvalidConfig, field,
                "the probe target's reference_gradient() gave " + std::to_string(r.gradient.size()) +
                    " tensors for its " + std::to_string(r.weights.size()) + " weights(): it must give one "
                    "gradient per weight, in the same order (or set ProbeConfig.first_order_labels = false; "
                    "Python: ProbeConfig(first_order_labels=False))");
  for (size_t i = 0; i < r.weights.size(); ++i)
    if (!r.gradient[i].defined() || !r.gradient[i].sizes().equals(r.weights[i].sizes()))
      throw Error(ErrorCode::kInvalidConfig, field,
                  "reference_gradient()[" + std::to_string(i) + "] has shape " +
                      (r.gradient[i].defined() ? c10::str(r.gradient[i].sizes()) : std::string("(undefined)")) +
                      ", weights()[" + std::to_string(i) + "] " + c10::str(r.weights[i].sizes()) +
                      ": the gradients must match the weights one for one");
  return r;
}

double ReferenceGradient::dot_change(const std::vector<torch::Tensor>& theta) const {
  if (theta.size() != weights.size())
    throw Error(ErrorCode::kInvalidConfig, "ProbeConfig.first_order_labels",
                "a copy of the probe target has " + std::to_string(theta.size()) + " weights, the target " +
                    std::to_string(weights.size()) + ": clone() must keep the weights");
  torch::NoGradGuard no_grad;
  // On the weights' device, in float at least (half weights would round the small differences away),
  // summed in double; one transfer to the host for the whole model.
  torch::Tensor sum;
  for (size_t i = 0; i < theta.size(); ++i) {
    const auto type = torch::promote_types(theta[i].scalar_type(), torch::kFloat);
    const torch::Tensor part =
        (theta[i].detach().to(type) - weights[i].detach().to(type)).mul_(gradient[i].to(type)).sum(torch::kDouble);
    sum = sum.defined() ? sum.add_(part) : part;
  }
  return sum.defined() ? sum.item<double>() : 0.0;
}

bool OracleProber::run_rollout(const ProbeTarget& target, const torch::Tensor& pool, const RolloutPlan& plan,
                               double reference_before, Rollout& out, const ReferenceGradient* first_order,
                               std::unique_ptr<ProbeTarget>* scratch) const {
  if (config_.first_order && first_order == nullptr)
    throw Error(ErrorCode::kInvalidConfig, "OracleProber::run_rollout",
                "first-order labels need the target's ReferenceGradient (ReferenceGradient::of)");
  const util::Stopwatch clock;
  const int64_t length = config_.rollout_length, rows = config_.rows_per_step;
  std::unique_ptr<ProbeTarget> own;
  std::unique_ptr<ProbeTarget>& held = scratch != nullptr ? *scratch : own;
  // A rollout's copy: the scratch copy reset in place (no model built: 24 one-row rollouts of the benchmark's
  // TinyGpt 282 -> 193 ms), else a fresh clone (the old copy freed first: never two alive besides the target).
  if (!held || !held->reset_from(target)) {
    held.reset();
    held = target.clone();
  }
  ProbeTarget* copy = held.get();
  copy->set_lr_scale(config_.lr_scale);
  const torch::Tensor ids =
      torch::tensor(plan.candidates, torch::TensorOptions().dtype(torch::kInt64)).to(pool.device());
  out.candidates = plan.candidates;
  out.kind = plan.kind;
  out.reference_before = reference_before;
  out.labels.assign(length, 0.0);
  out.cumulative.assign(length, 0.0);
  double previous = 0;
  for (int64_t t = 0; t < length; ++t) {
    const torch::Tensor batch = pool.index_select(0, ids.slice(0, t * rows, (t + 1) * rows));
    const double train_loss = copy->train_step(batch);
    if (!std::isfinite(train_loss)) return false;
    const double s = config_.first_order ? first_order->dot_change(copy->weights())
                                         : copy->reference_loss() - reference_before;
    if (!std::isfinite(s)) return false;
    out.cumulative[t] = s;
    out.labels[t] = s - previous;  // y_1 = s_1
    previous = s;
  }
  out.seconds = clock.seconds();
  return true;
}

ProbeRun::ProbeRun(const OracleProber& prober, ProbeTarget& target, const torch::Tensor& pool,
                   std::vector<RolloutPlan> plans)
    : prober_(prober), target_(target), pool_(pool), plans_(std::move(plans)) {
  const char* where = "OracleProber::run";
  if (!pool.defined() || pool.dim() != 2 || pool.scalar_type() != torch::kInt64)
    throw Error(ErrorCode::kInvalidConfig, where, "pool must be int64 token rows [N, T]");
  const OracleProberConfig& config = prober_.config();
  const int64_t n = pool.size(0);
  const size_t needed = static_cast<size_t>(config.rollout_length * config.rows_per_step);
  for (const auto& plan : plans_) {
    if (plan.candidates.size() != needed)
      throw Error(ErrorCode::kInvalidConfig, where,
                  "a plan has " + std::to_string(plan.candidates.size()) + " candidates, expected rollout_length * "
                  "rows_per_step = " + std::to_string(needed));
    for (int64_t id : plan.candidates)
      if (id < 0 || id >= n)
        throw Error(ErrorCode::kInvalidConfig, where,
                    "candidate " + std::to_string(id) + " outside the pool of " + std::to_string(n) + " rows");
  }
}

ProbeRun::~ProbeRun() = default;

bool ProbeRun::advance(int64_t rollouts) {
  if (done()) return true;
  const util::Stopwatch clock;
  const OracleProberConfig& config = prober_.config();
  if (!started_) {
    started_ = true;
    result_.reference_before = target_.reference_loss();  // R_0: the same for every rollout of this run
    if (!std::isfinite(result_.reference_before)) {
      // The snapshot itself is broken: nothing it produces can be trusted.
      result_.discarded = static_cast<int64_t>(plans_.size());
      result_.attempted = result_.discarded;
      next_ = plans_.size();
    } else if (config.first_order && !plans_.empty() && config.max_rollouts > 0) {
      gradient_ = std::make_unique<ReferenceGradient>(ReferenceGradient::of(target_));
    }
    result_.seconds += clock.seconds();
    return done();
  }
  for (int64_t k = 0; k < rollouts && next_ < plans_.size(); ++next_) {
    if (result_.attempted >= config.max_rollouts ||
        (config.max_seconds > 0 && result_.seconds + clock.seconds() >= config.max_seconds)) {
      ++result_.skipped;
      continue;
    }
    ++result_.attempted;
    ++k;
    Rollout rollout;
    if (prober_.run_rollout(target_, pool_, plans_[next_], result_.reference_before, rollout, gradient_.get(),
                            &scratch_))
      result_.rollouts.push_back(std::move(rollout));
    else
      ++result_.discarded;
  }
  result_.seconds += clock.seconds();
  if (done()) scratch_.reset();
  return done();
}

ProbeResult OracleProber::run(ProbeTarget& target, const torch::Tensor& pool,
                              const std::vector<RolloutPlan>& plans) const {
  ProbeRun run(*this, target, pool, plans);
  while (!run.advance(std::numeric_limits<int64_t>::max())) {
  }
  return run.result();
}

std::vector<LabelStats> summarise_labels(const std::vector<Rollout>& rollouts) {
  struct Acc {
    int64_t rollouts = 0, count = 0, later_count = 0;
    double sum = 0, sq = 0, first = 0, later = 0, later_sq = 0, final_sum = 0;
  };
  Acc acc[kNumRolloutKinds];
  for (const auto& r : rollouts) {
    Acc& a = acc[static_cast<int>(r.kind)];
    ++a.rollouts;
    for (size_t t = 0; t < r.labels.size(); ++t) {
      const double y = r.labels[t];
      ++a.count;
      a.sum += y;
      a.sq += y * y;
      if (t == 0) {
        a.first += y;
      } else {
        ++a.later_count;
        a.later += y;
        a.later_sq += y * y;
      }
    }
    if (!r.cumulative.empty()) a.final_sum += r.cumulative.back();
  }
  std::vector<LabelStats> out;
  for (int k = 0; k < kNumRolloutKinds; ++k) {
    const Acc& a = acc[k];
    if (a.rollouts == 0) continue;
    LabelStats s;
    s.kind = static_cast<RolloutKind>(k);
    s.rollouts = a.rollouts;
    s.count = a.count;
    if (a.count > 0) {
      s.mean = a.sum / a.count;
      s.std = std::sqrt(std::max(0.0, a.sq / a.count - s.mean * s.mean));
    }
    s.first_mean = a.first / a.rollouts;
    if (a.later_count > 0) {
      s.later_mean = a.later / a.later_count;
      s.later_std = std::sqrt(std::max(0.0, a.later_sq / a.later_count - s.later_mean * s.later_mean));
    }
    s.final_mean = a.final_sum / a.rollouts;
    out.push_back(s);
  }
  return out;
}

std::string format_label_stats(const std::vector<LabelStats>& stats) {
  std::string out = "kind              rollouts  labels        mean         std     y1 mean  y>1 mean   y>1 std  s_L mean\n";
  for (const auto& s : stats)
    fmt::format_to(std::back_inserter(out), "{:<16} {:>9} {:>7} {:>11.3e} {:>11.3e} {:>11.3e} {:>9.2e} {:>9.2e} {:>9.2e}\n",
                   rollout_kind_name(s.kind), s.rollouts, s.count, s.mean, s.std, s.first_mean, s.later_mean,
                   s.later_std, s.final_mean);
  return out;
}

}  // namespace groupmates
