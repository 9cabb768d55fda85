// groupmates/selection.h: selectors turn a scored window into the chosen rows, best first.
//
// Every selector sees the same input (u, embeddings, cluster ids, relationship scalars) and a
// ratio, and returns round(ratio * W) row ids (halves up) in predicted-best order. Randomised
// selectors draw from (seed, window_seed), so a window's selection is a pure function of its
// position, never of timing.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/types.h>

#include "groupmates/engine/greedy_group.h"

namespace groupmates {

/// A scored window. Tensors may live on any device; selectors read them on the host.
struct SelectionInput {
  torch::Tensor u;            ///< float [W]: individual influence, lower = better
  torch::Tensor embeddings;   ///< float [W, D], unit rows
  torch::Tensor cluster_ids;  ///< int64 [W] in [0, k); may be undefined for selectors without clusters
  RelationParams relation;    ///< alpha, tau of the model version that scored the window
  uint64_t window_seed = 0;   ///< e.g. the window's index in the stream; mixes into random draws
};

/// Selected rows in predicted-best order, with the score each was selected on.
struct Selection {
  std::vector<int64_t> indices;
  std::vector<double> scores;
};

/// One way of choosing rows of a window.
class Selector {
 public:
  virtual ~Selector() = default;
  /// Selects ratio_budget(W, ratio) rows of the window.
  virtual Selection select(const SelectionInput& input, double ratio) const = 0;
};

/// How ClusterGreedySelector splits the budget between clusters.
enum class BudgetMode {
  /// The paper's rule: the same ratio of every cluster (k_c by largest remainder so the total is
  /// exact). Use on a pool already filtered for quality.
  kUniformRatio,
  /// First keep the best budget / prefilter_ratio rows of the window by u, then take the same
  /// ratio of every cluster's kept rows. Moves the budget toward the clusters the model rates
  /// well; use on a pool that mixes domains of very different value.
  kInfluencePrefilter,
};

/// Where ClusterGreedySelector solves its clusters (both give the same picks up to float rounding).
enum class GreedyExecution {
  kAuto,           ///< kBatchedTensor when the embeddings are on a CUDA device, else kHostThreads
  kHostThreads,    ///< one loop per cluster in double on the host, clusters spread over at::parallel_for
  kBatchedTensor,  ///< all clusters padded into one batch of tensor ops on the embeddings' device
                   ///< (double on CPU, float on CUDA); only picks and scores come back to the host
};

/// Group-MATES: greedy relational selection within each cluster, clusters solved in parallel.
/// k_c: the window budget round(ratio * W) split over clusters in proportion to their (kept) sizes
/// by largest remainder, so k_c is ratio * |c| rounded down or up and sum k_c is exact.
/// Output: the clusters' pick lists merged by score (a k-way merge that keeps each cluster's
/// greedy order; ties to the lowest cluster id).
class ClusterGreedySelector : public Selector {
 public:
  /// merge_budgets: instead of a quota k_c per cluster, every cluster's greedy runs over all its
  /// (kept) members and the window takes the best round(ratio * W) picks of the merged orders.
  explicit ClusterGreedySelector(BudgetMode mode = BudgetMode::kUniformRatio, double prefilter_ratio = 0.8,
                                 GreedyExecution execution = GreedyExecution::kAuto, bool merge_budgets = false);
  Selection select(const SelectionInput& input, double ratio) const override;

 private:
  BudgetMode mode_;
  double prefilter_ratio_;
  GreedyExecution execution_;
  bool merge_budgets_;
};

/// Relational greedy over the whole window, no clusters (ablation; O(W * k * D)).
class GreedySelector : public Selector {
 public:
  Selection select(const SelectionInput& input, double ratio) const override;
};

/// Uniform random subset (the baseline every claim is measured against); score = draw order.
class RandomSelector : public Selector {
 public:
  explicit RandomSelector(uint64_t seed = 0) : seed_(seed) {}
  Selection select(const SelectionInput& input, double ratio) const override;

 private:
  uint64_t seed_;
};

/// MATES individual selection: Gumbel-top-k on -u / temperature; score = the perturbed key.
/// temperature 0: deterministic top-k by u (score = u; ties to the lower row).
class IndividualSelector : public Selector {
 public:
  explicit IndividualSelector(double temperature = 0.5, uint64_t seed = 0) : temperature_(temperature), seed_(seed) {}
  Selection select(const SelectionInput& input, double ratio) const override;

 private:
  double temperature_;
  uint64_t seed_;
};

}  // namespace groupmates
