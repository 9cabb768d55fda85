// groupmates/spherical_kmeans.h: online mini-batch spherical k-means (cosine distance).
//
// The first window seeds the centroids with greedy k-means++ (D^2 sampling on 1 - cos, deterministic
// given the seed) and refines them with a few Lloyd iterations; of init_restarts such starts, the
// one with the highest total cosine is kept. Every later window moves each
// centroid toward the mean of its members with a per-centroid rate 1/n per point (Sculley's
// mini-batch k-means), then renormalises. n is the centroid's running count capped at `max_count`:
// uncapped, the rate decays to 0 and a centroid stops following a drifting stream; capped, each
// window's members weigh about m / max_count, an exponential memory of roughly max_count points. A centroid that wins no point for `reseed_after_idle_windows`
// windows in a row (or is empty after the first window) is re-seeded on the window's point that is
// farthest from its own centroid.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>

#include <torch/types.h>

#include "groupmates/engine/collectives.h"

namespace groupmates {

/// Sizes and seeds of SphericalKMeans.
struct SphericalKMeansConfig {
  int64_t num_clusters = 64;            ///< k
  uint64_t seed = 0;                    ///< seeds k-means++ (the only randomness)
  int init_iterations = 10;             ///< Lloyd iterations on the first window
  int init_restarts = 4;                ///< seeded starts on the first window; the best (total cosine) is kept
  int64_t reseed_after_idle_windows = 8;  ///< windows without members before a centroid is re-seeded
  /// Cap on the count n in the step size 1/n (0 = no cap: plain Sculley, the rate decays to 0).
  /// With the default, a centroid that wins ~64 points a window (4,096 rows, 64 clusters) keeps
  /// moving by ~0.6% of the way to its members' mean every window, forever. A window with more
  /// members m than the cap replaces the centroid by their mean (n is never below m).
  double max_count = 10000;
};

/// Online spherical k-means over unit-norm embeddings.
class SphericalKMeans {
 public:
  explicit SphericalKMeans(const SphericalKMeansConfig& config = {}, torch::Device device = torch::kCPU);

  /// Nearest centroid (max cosine; ties to the lowest id) of each row of x [W, D] -> int64 [W].
  torch::Tensor assign(const torch::Tensor& x) const;
  /// Seeds on the first call, else one mini-batch step; returns the assignment used for the step.
  torch::Tensor update(const torch::Tensor& x);
  /// Lloyd iterations on x from the current centroids (seeds on the first call), counts restarted from
  /// x's members: the embedding space changed (a new model version), cluster identities carry over.
  torch::Tensor refit(const torch::Tensor& x);

  /// Shares the centroids across data-parallel ranks (null or one rank: local). Every rank then
  /// calls update()/refit() on its own window in the same order: rank 0 seeds and its state is
  /// broadcast, each step's member sums and counts are all-reduced, re-seeds come from rank 0, so
  /// the centroids are bit-identical on every rank (the k-means of the union of the ranks' windows).
  void set_collectives(std::shared_ptr<Collectives> collectives) { collectives_ = std::move(collectives); }

  bool initialized() const { return initialized_; }
  const torch::Tensor& centroids() const { return centroids_; }  ///< float [k, D], unit rows
  const torch::Tensor& counts() const { return counts_; }        ///< float [k]: points absorbed (uncapped)

  /// State (centroids, counts, idle windows) to / from a byte blob or a file (bit-exact).
  std::string save_state() const;
  void load_state(const std::string& blob);
  void save(const std::string& path) const;
  void load(const std::string& path);

 private:
  void seed(const torch::Tensor& x);
  void seed_once(const torch::Tensor& x, std::mt19937_64& rng);
  void lloyd(const torch::Tensor& x);
  void reseed_idle(const torch::Tensor& x, const torch::Tensor& assignment);
  bool shared() const { return collectives_ && collectives_->world_size() > 1 && !local_only_; }
  /// Sums [k, D] and counts [k] over the ranks (in float64; the same result on every rank).
  void all_reduce(torch::Tensor& sums, torch::Tensor& counts);
  /// Rank 0's state on every rank.
  void broadcast_state();

  SphericalKMeansConfig config_;
  torch::Device device_;
  bool initialized_ = false;
  torch::Tensor centroids_;  // [k, D]
  torch::Tensor counts_;     // [k]
  torch::Tensor idle_;       // int64 [k]
  std::shared_ptr<Collectives> collectives_;
  bool local_only_ = false;  // rank 0 seeding on its own window
};

}  // namespace groupmates
