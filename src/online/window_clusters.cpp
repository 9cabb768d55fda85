#include "online/window_clusters.h"

namespace groupmates {

WindowClusters::WindowClusters(int64_t clusters, uint64_t seed, torch::Device device)
    : config_{clusters, seed}, device_(device), kmeans_(config_, device) {}

void WindowClusters::begin_window() {
  before_ = kmeans_.initialized() ? kmeans_.save_state() : std::string();
  version_before_ = version_;
}

torch::Tensor WindowClusters::update(const torch::Tensor& embeddings, uint64_t version) {
  if (version_ != version) {  // another embedding space: refit from the carried centroids (identities kept)
    version_ = version;
    return kmeans_.refit(embeddings);
  }
  return kmeans_.update(embeddings);
}

void WindowClusters::restore(const std::string& state, uint64_t version) {
  if (!state.empty()) kmeans_.load_state(state);
  version_ = version;
  before_ = state;
  version_before_ = version;
}

}  // namespace groupmates
