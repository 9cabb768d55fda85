// groupmates/greedy_group.h: the greedy group selection of ALGORITHM.md section 4 on raw arrays,
// and how a budget is split between clusters (no LibTorch).
//
// Greedy over a set S: pick argmin_i u_i; then keep a_i = mean of r_ij over the picked j and pick
// argmin_i a_i * u_i among the unpicked, updating a_i <- ((n - 1) a_i + r_i,new) / n after the n-th
// pick, with r_ij = alpha * (1 - h_i . h_j / tau). Exact ties go to the member listed first.
// RelationAggregate::kNearest replaces the mean by the minimum (a_i <- min(a_i, r_i,new)).
// Dot products and a_i are accumulated in double.
#pragma once

#include <cstdint>
#include <vector>

namespace groupmates {

/// How the greedy rule combines a candidate's relations r_ij to the points already picked into a_i.
enum class RelationAggregate {
  kMean,     ///< the mean over the picks (ALGORITHM.md section 4, and how the model is trained)
  kNearest,  ///< the minimum, i.e. the relation to the nearest pick: one near-duplicate among n
             ///< picks discounts a candidate fully instead of by about 1/n
};

/// The learnable relationship scalars of the model version that scored the window, and the rule
/// that combines them during selection.
struct RelationParams {
  double alpha = 1.0;
  double tau = 1.0;
  RelationAggregate aggregate = RelationAggregate::kMean;
  /// The selectors (ClusterGreedySelector, GreedySelector) first subtract the maximum of u over the
  /// greedy's candidates (after any prefilter; one shift per window), so that every u_i <= 0 and a
  /// larger distance from the picks always lowers a_i * u_i. The rule assumes u <= 0 (a training
  /// step lowers the reference loss); a window-standardised u has both signs, and for u_i > 0 the
  /// product rewards closeness to the picks. Order by u alone is unchanged.
  bool nonpositive_u = false;
};

/// Picks of one greedy run, in pick order.
struct GreedyPicks {
  std::vector<int64_t> indices;  ///< window row ids
  std::vector<double> scores;    ///< predicted influence of each pick at its position: u, then a*u
};

/// Greedy group selection of k of the n `members` (row ids into h [*, dim] and u [*]).
GreedyPicks greedy_group_select(const float* h, int64_t dim, const float* u, const int64_t* members,
                                int64_t n, int64_t k, RelationParams relation);

/// round(ratio * n) with halves rounded up, clamped to [0, n].
int64_t ratio_budget(int64_t n, double ratio);

/// Splits `total` between groups in proportion to `sizes` by largest remainder: every group gets
/// floor(total * size / sum) and the leftover units go to the largest fractional parts (ties to the
/// lowest group id). Never gives a group more than its size.
std::vector<int64_t> allocate_budget(const std::vector<int64_t>& sizes, int64_t total);

}  // namespace groupmates
