// window_clusters.h: the k-means lifecycle of a selecting loader (private).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <torch/types.h>

#include "groupmates/engine/spherical_kmeans.h"

namespace groupmates {

/// Online spherical k-means over each window's embeddings. Centroids live in one model version's
/// embedding space: the first window scored by another version refits them (Lloyd iterations from
/// the carried centroids, so cluster i stays cluster i) instead of re-seeding. Keeps the state from
/// before the current window: a saved loader state re-clusters that window on restore.
class WindowClusters {
 public:
  WindowClusters(int64_t clusters, uint64_t seed, torch::Device device);
  /// Shares the centroids across data-parallel ranks (SphericalKMeans::set_collectives).
  void set_collectives(std::shared_ptr<Collectives> collectives) { kmeans_.set_collectives(std::move(collectives)); }
  /// XXH3 of the centroids and counts as they are now (equal on every rank when shared).
  uint64_t hash() const;
  /// Remembers the state before the window about to be clustered (its save point).
  void begin_window();
  /// Updates the centroids with `embeddings` [W, D] of a window scored by `version`; its cluster ids int64 [W].
  torch::Tensor update(const torch::Tensor& embeddings, uint64_t version);
  /// The state before the current window, and the version its centroids belong to.
  const std::string& saved_state() const { return before_; }
  uint64_t saved_version() const { return version_before_; }
  /// Restores a saved_state()/saved_version() as the state before the current window.
  void restore(const std::string& state, uint64_t version);

 private:
  SphericalKMeansConfig config_;
  torch::Device device_;
  SphericalKMeans kmeans_;
  uint64_t version_ = 0;  // whose embedding space the centroids live in (0 = none yet)
  std::string before_;
  uint64_t version_before_ = 0;
};

}  // namespace groupmates
