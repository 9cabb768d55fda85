// groupmates/engine/rollout_policy.h: which pool rows a probe's rollouts train on: random,
// neighbour (same cluster / top cosine) and bootstrap (beam search over the model's predictions).
#pragma once

#include <cstdint>
#include <vector>

#include <torch/types.h>

#include "groupmates/engine/oracle_prober.h"

namespace groupmates {

class RelationalInfluenceModel;


/// `count` rollouts drawn uniformly without replacement (within a rollout) from [0, pool_size).
std::vector<RolloutPlan> random_rollouts(int64_t pool_size, int64_t count, int64_t length, int64_t rows_per_step,
                                         uint64_t seed);

/// `count` rollouts each drawn from one cluster (clusters picked with probability proportional
/// to size among those with >= 2 members), in random order; when the cluster has fewer members
/// than a rollout needs, the rest are random rows of other clusters. cluster_ids: int64 [N].
std::vector<RolloutPlan> cluster_neighbour_rollouts(const torch::Tensor& cluster_ids, int64_t count, int64_t length,
                                                    int64_t rows_per_step, uint64_t seed);

/// `count` rollouts: a random anchor and its top-(n-1) cosine neighbours (n = length * rows_per_step),
/// in random order. embeddings: float [N, D] (rows need not be unit norm).
std::vector<RolloutPlan> embedding_neighbour_rollouts(const torch::Tensor& embeddings, int64_t count, int64_t length,
                                                      int64_t rows_per_step, uint64_t seed);

/// Best and worst ordered sequences found by beam search (indices into the searched rows).
struct BeamSearchResult {
  std::vector<int64_t> best, worst;
  double best_score = 0, worst_score = 0;  ///< predicted group influence sum_t p_t (lower = better)
};

/// Beam search (width `beam_width`) over ordered sequences of `length` distinct rows of
/// `embeddings` [M, D] scored by the model's predict_groups (eval mode, no gradient; the model's
/// training flag is restored). Deterministic: ties go to the lower row id.
/// `prior` (optional, float [M]): the rows' prior for the model's u (RelationalInfluenceModel::individual).
BeamSearchResult beam_search_groups(RelationalInfluenceModel& model, const torch::Tensor& embeddings, int64_t length,
                                    int64_t beam_width = 5, const torch::Tensor& prior = {});

/// Beam search from precomputed scores: u [M] individual influences and r [M, M] relationship
/// weights (p_0 = u_0, p_t = u_t * mean_{j<t} r_tj). beam_search_groups() calls this.
BeamSearchResult beam_search_scores(const std::vector<double>& u, const std::vector<double>& r, int64_t length,
                                    int64_t beam_width = 5);

/// `pairs` times: a random subset of `subset_size` pool rows is embedded with the model and beam
/// search returns its best and worst predicted sequences of length * rows_per_step rows
/// (consecutive chunks of rows_per_step form the steps): 2 * pairs plans, best then worst.
/// `prior` (optional, float [N]): the pool rows' prior for the model's u.
std::vector<RolloutPlan> bootstrap_rollouts(RelationalInfluenceModel& model, const torch::Tensor& pool, int64_t pairs,
                                            int64_t length, int64_t rows_per_step, uint64_t seed,
                                            int64_t subset_size = 64, int64_t beam_width = 5,
                                            const torch::Tensor& prior = {});


}  // namespace groupmates
