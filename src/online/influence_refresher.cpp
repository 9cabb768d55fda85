#include "online/influence_refresher.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "groupmates/engine/influence_trainer.h"
#include "groupmates/engine/metrics.h"
#include "groupmates/error.h"
#include "probe/label_standardisation.h"
#include "util/permutation.h"

namespace groupmates {

namespace {

// Why a refreshed model must not be published, or "" if it may.
std::string unpublishable(RelationalInfluenceModel& model, const torch::Tensor& predictions) {
  for (const auto& item : model.named_parameters())
    if (!torch::isfinite(item.value()).all().item<bool>()) return "parameter '" + item.key() + "' is not finite";
  if (predictions.defined() && !torch::isfinite(predictions).all().item<bool>()) return "its predictions are not finite";
  return "";
}

// The tensors a refresh may change, each with a copy of its value: every parameter that trains and every buffer.
// Frozen parameters (the n-gram table, whose storage the loader's models share) are left out: nothing in a refresh
// writes them. A few hundred KB with the default encoder, where exporting the whole model took ~17 MB.
class TrainableCopy {
 public:
  explicit TrainableCopy(RelationalInfluenceModel& model) {
    for (const auto& p : model.parameters())
      if (p.requires_grad()) saved_.emplace_back(p, p.detach().clone());
    for (const auto& b : model.buffers()) saved_.emplace_back(b, b.detach().clone());
  }
  /// Puts the copied values back.
  void restore() const {
    torch::NoGradGuard no_grad;
    for (const auto& [dst, value] : saved_) dst.copy_(value);
  }

 private:
  std::vector<std::pair<torch::Tensor, torch::Tensor>> saved_;
};

// Scales the model's head (w and b) by `share` while it lives, then puts the exact values back.
class ScaledHead {
 public:
  ScaledHead(RelationalInfluenceModel& model, double share) : model_(model) {
    if (share == 1.0) return;
    torch::NoGradGuard no_grad;
    weight_ = model.head()->weight.detach().clone();
    bias_ = model.head()->bias.detach().clone();
    model.head()->weight.mul_(share);
    model.head()->bias.mul_(share);
  }
  ~ScaledHead() {
    if (!weight_.defined()) return;
    torch::NoGradGuard no_grad;
    model_.head()->weight.copy_(weight_);
    model_.head()->bias.copy_(bias_);
  }
  ScaledHead(const ScaledHead&) = delete;
  ScaledHead& operator=(const ScaledHead&) = delete;

 private:
  RelationalInfluenceModel& model_;
  torch::Tensor weight_, bias_;
};

// Thrown for a refreshed model that is not finite (told apart from other failures in the stats).
struct NonFinite : Error {
  using Error::Error;
};

}  // namespace

std::function<void(int64_t, RelationalInfluenceModel&)> refresh_fault_hook;

InfluenceRefresher::InfluenceRefresher(SelectionConfig config, std::shared_ptr<RelationalInfluenceModel> model,
                                       std::shared_ptr<RelationalInfluenceModel> baseline,
                                       std::shared_ptr<LabelBuffer> labels)
    : config_(std::move(config)),
      model_(std::move(model)),
      baseline_(std::move(baseline)),
      labels_(std::move(labels)),
      gate_(config_.refresh_gate_margin, config_.refresh_head_shrinkage, config_.refresh_head_share_start) {}

std::string InfluenceRefresher::weights() const { return model_->export_weights(); }

bool InfluenceRefresher::shrinks() const {
  if (!config_.refresh_head_shrinkage || !config_.importance_prior) return false;
  const std::vector<LabelledRollout> entries = labels_->snapshot();
  return !entries.empty() &&
         std::all_of(entries.begin(), entries.end(), [](const LabelledRollout& e) { return e.prior.defined(); });
}

void InfluenceRefresher::load(const std::string& weights, bool refreshed, const std::string& origin) {
  model_->import_weights(weights, origin);
  refreshed_ = refreshed;
}

RefreshResult InfluenceRefresher::refresh(int64_t step, int64_t fresh_rollouts) {
  RefreshResult out;
  const TrainableCopy last_good(*model_);
  try {
    const std::vector<LabelledRollout> entries = labels_->snapshot();
    const int64_t g = static_cast<int64_t>(entries.size());
    if (g == 0) throw Error(ErrorCode::kInvalidState, "InfluenceRefresher::refresh", "no labelled rollouts");
    const int64_t L = static_cast<int64_t>(entries[0].labels.size());
    std::vector<torch::Tensor> rows, priors;
    for (const auto& e : entries) {
      rows.push_back(e.tokens.reshape({L, -1}));
      if (e.prior.defined()) priors.push_back(e.prior.reshape({L}));
    }
    const torch::Tensor tokens = torch::stack(rows);  // [G, L, T]
    // The prior only when every rollout has one (rollouts from before set_reference() have none).
    const torch::Tensor prior =
        priors.size() == entries.size() && config_.importance_prior ? torch::stack(priors) : torch::Tensor();
    const std::vector<double> std_labels =
        standardise_per_probe(entries, config_.robust_label_scaling, config_.per_position_labels);
    const torch::Tensor labels = torch::tensor(std_labels, torch::kDouble).view({g, L}).to(torch::kFloat);
    const int64_t fresh = std::min<int64_t>(g, fresh_rollouts);
    // Head shrinkage pulls the learned model toward the prior-only one; without a prior a share only rescales u
    // (the same ranking) or, at 0, makes it constant: the whole head is published then.
    const bool shrink = config_.refresh_head_shrinkage && prior.defined();
    const double row_flops = model_->encoder().flops_per_row(tokens.size(2)) +
                             2.0 * double(model_->encoder().dim()) * double(L);  // head + relations
    if (fresh > 0 && refreshed_) {  // held-out check: the newest rollouts, before training on them
      std::vector<double> measured;  // the fresh rollouts' marginal labels as measured
      for (int64_t i = g - fresh; i < g; ++i)
        measured.insert(measured.end(), entries[i].labels.begin(), entries[i].labels.end());
      const torch::Tensor fresh_prior = prior.defined() ? prior.slice(0, g - fresh, g) : prior;
      int64_t predictions = 0;  // model passes over the fresh rollouts, for the FLOPs
      const auto predict = [&](RelationalInfluenceModel& m, double share) {
        ++predictions;
        const ScaledHead scaled(m, share);
        torch::NoGradGuard no_grad;
        m.eval();
        const torch::Tensor p =
            m.predict_rollouts(tokens.slice(0, g - fresh, g), {}, fresh_prior).to(torch::kDouble).contiguous();
        return std::vector<double>(p.data_ptr<double>(), p.data_ptr<double>() + p.numel());
      };
      const std::vector<double> scaled(std_labels.end() - fresh * L, std_labels.end());
      const double top_share = config_.refresh_gate_top_share;
      // A model's score for the gate and the head share: its picks by the standardised labels, or its Spearman.
      const auto score = [&](const std::vector<double>& p) {
        return top_share > 0 ? picks_gain(p, scaled, top_share) : spearman(p, measured);
      };
      // The model as it would be published now (the share chosen on the checks before this one), then every share.
      const double share_now = shrink ? gate_.head_share() : 1.0;
      const std::vector<double> predicted = predict(*model_, share_now);
      std::vector<double> share_scores;
      for (const double s : RefreshGate::kHeadShares) {
        if (!shrink && s != 1.0) continue;
        const std::vector<double> p = s == share_now ? predicted : predict(*model_, s);
        if (shrink) share_scores.push_back(score(p));
        if (s == 1.0) out.heldout_spearman_unshrunk = spearman(p, measured);
      }
      out.heldout_measured = true;
      out.heldout_spearman = spearman(predicted, measured);
      out.heldout_spearman_scaled = spearman(predicted, scaled);
      if (config_.refresh_gate) {
        const std::vector<double> prior_predicted = predict(*baseline_, 1.0);
        out.heldout_spearman_prior = spearman(prior_predicted, measured);
        gate_.record(score(predicted), score(prior_predicted), static_cast<uint64_t>(measured.size()));
      }
      if (shrink) gate_.record_shares(share_scores);
      out.flops += double(fresh * L) * row_flops * double(predictions);
    }
    model_->fit_label_stats(labels, LabelScaling::kMeanStd);  // ~(0, 1): labels are standardised already
    InfluenceTrainerConfig tc;
    tc.learning_rate = config_.refresh_learning_rate;
    InfluenceTrainer trainer(model_, tc);
    const int64_t batch = std::min<int64_t>(config_.refresh_batch_rollouts, g);
    for (uint32_t i = 0; i < config_.refresh_train_steps; ++i) {
      const Permutation order(static_cast<uint64_t>(g), derive_seed(config_.seed, static_cast<uint64_t>(step), i));
      std::vector<int64_t> pick;
      for (int64_t k = 0; k < batch; ++k) pick.push_back(static_cast<int64_t>(order.at(k)));
      const torch::Tensor idx = torch::tensor(pick, torch::kLong);
      trainer.step(tokens.index_select(0, idx), labels.index_select(0, idx), {},
                   prior.defined() ? prior.index_select(0, idx) : prior);
    }
    out.flops += 3.0 * double(config_.refresh_train_steps) * double(batch * L) * row_flops;
    if (refresh_fault_hook) refresh_fault_hook(step, *model_);
    torch::Tensor check;
    {
      torch::NoGradGuard no_grad;
      model_->eval();
      const int64_t k = std::min<int64_t>(g, 4);
      check = model_->predict_rollouts(tokens.slice(0, g - k, g), {}, prior.defined() ? prior.slice(0, g - k, g) : prior);
    }
    const std::string why = unpublishable(*model_, check);
    if (!why.empty())
      throw NonFinite(ErrorCode::kInvalidState, "InfluenceRefresher::refresh", "refreshed model not published: " + why);
    refreshed_ = true;
    out.head_share = shrink ? gate_.head_share() : 1.0;
    if (!config_.refresh_gate || gate_.learned_wins()) {
      const ScaledHead published(*model_, out.head_share);
      out.weights = model_->export_weights();
      gate_.set_learned_published(true);
    } else {  // the prior-only model selects: publish it again if a learned model was published last
      out.gated = true;
      if (gate_.learned_published()) out.weights = baseline_->export_weights();
      gate_.set_learned_published(false);
    }
  } catch (const NonFinite& e) {
    out.error = e.what();
    out.nonfinite = true;
    last_good.restore();
  } catch (const std::exception& e) {
    out.error = e.what();
    last_good.restore();  // the next refresh starts from the last good model
  } catch (...) {
    out.error = "unknown exception";
    last_good.restore();
  }
  return out;
}

}  // namespace groupmates
