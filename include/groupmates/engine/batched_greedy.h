// groupmates/batched_greedy.h: the greedy group selection of greedy_group.h for many clusters at
// once with tensor ops, on any device (the GPU path: one batch of small kernels per pick step, no
// host round trip inside the loop). Same rule and the same tie rule (first listed member wins).
#pragma once

#include <torch/types.h>

#include "groupmates/engine/greedy_group.h"

namespace groupmates {

/// Picks of every cluster: position of each pick within its cluster's padded member list.
struct BatchedPicks {
  torch::Tensor positions;  ///< int64 [C, K]: -1 after the cluster's quota
  torch::Tensor scores;     ///< [C, K]: u, then a*u, of each pick (0 after the quota)
};

/// h [C, N, D] and u [C, N] of members padded per cluster, valid bool [C, N] (false = padding),
/// quota int64 [C] (<= valid members). K = max quota. Computes in the dtype of h.
BatchedPicks batched_greedy_select(const torch::Tensor& h, const torch::Tensor& u, const torch::Tensor& valid,
                                   const torch::Tensor& quota, RelationParams relation);

}  // namespace groupmates
