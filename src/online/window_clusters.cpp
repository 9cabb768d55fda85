#include "online/window_clusters.h"

#include <xxhash.h>

namespace groupmates {

WindowClusters::WindowClusters(int64_t clusters, uint64_t seed, torch::Device device)
    : config_{clusters, seed}, device_(device), kmeans_(config_, device) {}

uint64_t WindowClusters::hash() const {
  if (!kmeans_.initialized()) return 0;
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  for (const torch::Tensor& t : {kmeans_.centroids(), kmeans_.counts()}) {
    const torch::Tensor c = t.to(torch::kCPU).contiguous();
    XXH3_64bits_update(state, c.data_ptr(), c.numel() * c.element_size());
  }
  const uint64_t h = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return h;
}

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
