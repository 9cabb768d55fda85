// groupmates/engine/shared_probes.h: one influence model for all data-parallel ranks (issue #14).
// The pieces a refresh shared across ranks is made of, over Collectives:
//   * each rank runs its share of a probe's rollouts (rollouts_of_rank) on its own snapshot
//     (data-parallel replicas are identical);
//   * the labelled rollouts are all-gathered, in (rank, index) order on every rank, so every
//     rank's label buffer holds the same entries in the same order;
//   * one rank trains and broadcasts the weights (share_weights): bit-identical by construction,
//     checked by a hash all-gather;
//   * cluster centroids: the update sums and counts are all-reduced (all_reduce_cluster_sums).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>

#include "groupmates/engine/collectives.h"
#include "groupmates/engine/label_buffer.h"
#include "groupmates/engine/probe_scheduler.h"  // rollouts_of_rank

namespace groupmates {

/// The labelled rollouts of every rank, concatenated in rank order (each rank's in its order).
std::vector<LabelledRollout> all_gather_rollouts(Collectives& collectives, const std::vector<LabelledRollout>& mine);

/// `weights` of rank `root` on every rank; then every rank's hash of what it holds is all-gathered
/// and compared: Error(kDistributed) if any differs.
std::string share_weights(Collectives& collectives, const std::string& weights, int root = 0);

/// XXH3 of `bytes` on every rank, in rank order (for checks and tests).
std::vector<uint64_t> hashes_of_ranks(Collectives& collectives, const std::string& bytes);

/// The spherical k-means update across ranks: per-cluster sums [K, D] and counts [K] (float64,
/// on the CPU) summed over the ranks in place, so every rank computes the same centroids.
void all_reduce_cluster_sums(Collectives& collectives, torch::Tensor& sums, torch::Tensor& counts);

/// A LabelledRollout as bytes and back (torch's pickle format).
std::string serialize_rollouts(const std::vector<LabelledRollout>& rollouts);
std::vector<LabelledRollout> deserialize_rollouts(const std::string& bytes);

}  // namespace groupmates
