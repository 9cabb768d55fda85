// Rollout policies: random, neighbour (same cluster / top cosine) and bootstrap beam search.
#include <algorithm>
#include <cstdint>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "groupmates/error.h"
#include "groupmates/engine/influence_model.h"
#include "groupmates/engine/oracle_prober.h"
#include "groupmates/engine/rollout_policy.h"
#include "util/seed.h"

namespace groupmates {
namespace {

/// SplitMix64: the same draws on every platform (std distributions are implementation-defined).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed * util::kSplitMix64Gamma + 0x632BE59BD9B4E019ULL) {}
  uint64_t next() { return util::splitmix64_next(state_); }
  /// Uniform in [0, n), n > 0.
  int64_t below(int64_t n) {
    return static_cast<int64_t>((static_cast<unsigned __int128>(next()) * static_cast<uint64_t>(n)) >> 64);
  }
  template <typename T>
  void shuffle(std::vector<T>& v) {
    for (int64_t i = static_cast<int64_t>(v.size()) - 1; i > 0; --i) std::swap(v[i], v[below(i + 1)]);
  }
  /// k distinct values of [0, n) in random order (partial Fisher-Yates).
  std::vector<int64_t> sample(int64_t n, int64_t k) {
    std::vector<int64_t> all(n);
    std::iota(all.begin(), all.end(), 0);
    for (int64_t i = 0; i < k; ++i) std::swap(all[i], all[i + below(n - i)]);
    all.resize(k);
    return all;
  }

 private:
  uint64_t state_;
};

int64_t checked_group_size(const char* where, int64_t pool_size, int64_t count, int64_t length, int64_t rows_per_step) {
  if (count < 0) throw Error(ErrorCode::kInvalidConfig, where, "count must be >= 0");
  if (length < 1 || rows_per_step < 1)
    throw Error(ErrorCode::kInvalidConfig, where, "length and rows_per_step must be >= 1");
  const int64_t n = length * rows_per_step;
  if (n > pool_size)
    throw Error(ErrorCode::kInvalidConfig, where,
                "a rollout needs " + std::to_string(n) + " distinct rows but the pool has " + std::to_string(pool_size));
  return n;
}

/// Eval mode for the duration of a call; the previous flag is restored.
class EvalGuard {
 public:
  explicit EvalGuard(torch::nn::Module& m) : m_(m), was_(m.is_training()) {
    if (was_) m_.eval();
  }
  ~EvalGuard() {
    if (was_) m_.train(true);
  }

 private:
  torch::nn::Module& m_;
  bool was_;
};

}  // namespace

std::vector<RolloutPlan> random_rollouts(int64_t pool_size, int64_t count, int64_t length, int64_t rows_per_step,
                                         uint64_t seed) {
  const int64_t n = checked_group_size("random_rollouts", pool_size, count, length, rows_per_step);
  Rng rng(seed);
  std::vector<RolloutPlan> plans(count);
  for (auto& plan : plans) {
    plan.candidates = rng.sample(pool_size, n);
    plan.kind = RolloutKind::kRandom;
  }
  return plans;
}

std::vector<RolloutPlan> cluster_neighbour_rollouts(const torch::Tensor& cluster_ids, int64_t count, int64_t length,
                                                    int64_t rows_per_step, uint64_t seed) {
  const char* where = "cluster_neighbour_rollouts";
  if (!cluster_ids.defined() || cluster_ids.dim() != 1)
    throw Error(ErrorCode::kInvalidConfig, where, "cluster_ids must be int64 [N]");
  const torch::Tensor ids = cluster_ids.to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t pool = ids.size(0);
  const int64_t n = checked_group_size(where, pool, count, length, rows_per_step);
  std::map<int64_t, std::vector<int64_t>> members;
  const int64_t* p = ids.data_ptr<int64_t>();
  for (int64_t i = 0; i < pool; ++i) members[p[i]].push_back(i);
  std::vector<const std::vector<int64_t>*> eligible;
  std::vector<int64_t> cumulative;
  int64_t total = 0;
  for (const auto& item : members)
    if (item.second.size() >= 2) {
      eligible.push_back(&item.second);
      total += static_cast<int64_t>(item.second.size());
      cumulative.push_back(total);
    }
  std::vector<RolloutPlan> plans;
  if (eligible.empty()) return plans;  // no two rows share a cluster: no neighbour rollouts
  Rng rng(seed);
  for (int64_t g = 0; g < count; ++g) {
    const int64_t draw = rng.below(total);
    const size_t c = std::upper_bound(cumulative.begin(), cumulative.end(), draw) - cumulative.begin();
    const std::vector<int64_t>& cluster = *eligible[c];
    const int64_t m = static_cast<int64_t>(cluster.size());
    RolloutPlan plan;
    plan.kind = RolloutKind::kNeighbour;
    for (int64_t k : rng.sample(m, std::min(n, m))) plan.candidates.push_back(cluster[k]);
    if (m < n) {  // fill from the other clusters
      std::vector<char> used(pool, 0);
      for (int64_t i : cluster) used[i] = 1;
      std::vector<int64_t> rest;
      for (int64_t i = 0; i < pool; ++i)
        if (!used[i]) rest.push_back(i);
      for (int64_t k : rng.sample(static_cast<int64_t>(rest.size()), n - m)) plan.candidates.push_back(rest[k]);
      rng.shuffle(plan.candidates);
    }
    plans.push_back(std::move(plan));
  }
  return plans;
}

std::vector<RolloutPlan> embedding_neighbour_rollouts(const torch::Tensor& embeddings, int64_t count, int64_t length,
                                                      int64_t rows_per_step, uint64_t seed) {
  const char* where = "embedding_neighbour_rollouts";
  if (!embeddings.defined() || embeddings.dim() != 2)
    throw Error(ErrorCode::kInvalidConfig, where, "embeddings must be float [N, D]");
  torch::NoGradGuard no_grad;
  const torch::Tensor h = embeddings.to(torch::kCPU, torch::kFloat);
  const torch::Tensor unit = h / h.norm(2, 1, true).clamp_min(1e-12);
  const int64_t pool = h.size(0);
  const int64_t n = checked_group_size(where, pool, count, length, rows_per_step);
  Rng rng(seed);
  std::vector<RolloutPlan> plans(count);
  for (auto& plan : plans) {
    const int64_t anchor = rng.below(pool);
    torch::Tensor sim = torch::mv(unit, unit[anchor]);
    sim[anchor].fill_(2.0);  // the anchor first even if another row is identical
    const torch::Tensor top = std::get<1>(sim.topk(n)).contiguous();
    plan.candidates.assign(top.data_ptr<int64_t>(), top.data_ptr<int64_t>() + n);
    rng.shuffle(plan.candidates);
    plan.kind = RolloutKind::kNeighbour;
  }
  return plans;
}

BeamSearchResult beam_search_scores(const std::vector<double>& u, const std::vector<double>& r, int64_t length,
                                    int64_t beam_width) {
  const int64_t m = static_cast<int64_t>(u.size());
  if (static_cast<int64_t>(r.size()) != m * m)
    throw Error(ErrorCode::kInvalidConfig, "beam_search_scores", "r must hold M * M values");
  if (length < 1 || length > m)
    throw Error(ErrorCode::kInvalidConfig, "beam_search_scores",
                "length " + std::to_string(length) + " outside [1, " + std::to_string(m) + "]");
  if (beam_width < 1) throw Error(ErrorCode::kInvalidConfig, "beam_search_scores", "beam_width must be >= 1");
  struct Beam {
    std::vector<int64_t> seq;
    std::vector<double> sum_r;  // sum over the prefix j of r[i][j], for every row i
    std::vector<char> used;
    double score = 0;
  };
  auto search = [&](double sign) {
    std::vector<Beam> beams(1);
    beams[0].sum_r.assign(m, 0.0);
    beams[0].used.assign(m, 0);
    for (int64_t t = 0; t < length; ++t) {
      struct Ext {
        double key;
        size_t beam;
        int64_t row;
        double score;
      };
      std::vector<Ext> ext;
      for (size_t b = 0; b < beams.size(); ++b)
        for (int64_t i = 0; i < m; ++i) {
          if (beams[b].used[i]) continue;
          const double p = t == 0 ? u[i] : u[i] * beams[b].sum_r[i] / static_cast<double>(t);
          const double score = beams[b].score + p;
          ext.push_back({sign * score, b, i, score});
        }
      const size_t keep = std::min<size_t>(ext.size(), static_cast<size_t>(beam_width));
      std::partial_sort(ext.begin(), ext.begin() + keep, ext.end(), [](const Ext& a, const Ext& b) {
        if (a.key != b.key) return a.key < b.key;
        if (a.beam != b.beam) return a.beam < b.beam;
        return a.row < b.row;
      });
      std::vector<Beam> next;
      next.reserve(keep);
      for (size_t k = 0; k < keep; ++k) {
        Beam nb = beams[ext[k].beam];
        const int64_t row = ext[k].row;
        nb.seq.push_back(row);
        nb.used[row] = 1;
        nb.score = ext[k].score;
        for (int64_t i = 0; i < m; ++i) nb.sum_r[i] += r[i * m + row];
        next.push_back(std::move(nb));
      }
      beams = std::move(next);
    }
    return beams.front();
  };
  BeamSearchResult result;
  Beam best = search(1.0), worst = search(-1.0);
  result.best = best.seq;
  result.best_score = best.score;
  result.worst = worst.seq;
  result.worst_score = worst.score;
  return result;
}

BeamSearchResult beam_search_groups(RelationalInfluenceModel& model, const torch::Tensor& embeddings, int64_t length,
                                    int64_t beam_width, const torch::Tensor& prior) {
  if (!embeddings.defined() || embeddings.dim() != 2)
    throw Error(ErrorCode::kInvalidConfig, "beam_search_groups", "embeddings must be float [M, D]");
  torch::NoGradGuard no_grad;
  EvalGuard eval(model);
  const torch::Tensor h = embeddings.to(model.head()->weight.device(), model.head()->weight.scalar_type());
  const torch::Tensor u = model.individual(h, prior).to(torch::kCPU, torch::kDouble).contiguous();
  const torch::Tensor r = model.relation(h, h).to(torch::kCPU, torch::kDouble).contiguous();
  std::vector<double> uv(u.data_ptr<double>(), u.data_ptr<double>() + u.numel());
  std::vector<double> rv(r.data_ptr<double>(), r.data_ptr<double>() + r.numel());
  return beam_search_scores(uv, rv, length, beam_width);
}

std::vector<RolloutPlan> bootstrap_rollouts(RelationalInfluenceModel& model, const torch::Tensor& pool, int64_t pairs,
                                            int64_t length, int64_t rows_per_step, uint64_t seed, int64_t subset_size,
                                            int64_t beam_width, const torch::Tensor& prior) {
  const char* where = "bootstrap_rollouts";
  if (!pool.defined() || pool.dim() != 2) throw Error(ErrorCode::kInvalidConfig, where, "pool must be tokens [N, T]");
  const int64_t n = checked_group_size(where, pool.size(0), pairs, length, rows_per_step);
  const int64_t subset = std::min<int64_t>(pool.size(0), std::max<int64_t>(subset_size, n));
  Rng rng(seed);
  std::vector<RolloutPlan> plans;
  torch::NoGradGuard no_grad;
  EvalGuard eval(model);
  for (int64_t g = 0; g < pairs; ++g) {
    const std::vector<int64_t> rows = rng.sample(pool.size(0), subset);
    const torch::Tensor idx = torch::tensor(rows, torch::TensorOptions().dtype(torch::kInt64)).to(pool.device());
    const torch::Tensor h = model.embed(pool.index_select(0, idx));
    const torch::Tensor p = prior.defined() ? prior.to(torch::kCPU).index_select(0, idx.to(torch::kCPU)) : prior;
    const BeamSearchResult found = beam_search_groups(model, h, n, beam_width, p);
    RolloutPlan best, worst;
    best.kind = RolloutKind::kBootstrapBest;
    worst.kind = RolloutKind::kBootstrapWorst;
    for (int64_t k : found.best) best.candidates.push_back(rows[k]);
    for (int64_t k : found.worst) worst.candidates.push_back(rows[k]);
    plans.push_back(std::move(best));
    plans.push_back(std::move(worst));
  }
  return plans;
}

}  // namespace groupmates
