// host_window.h (internal): a SelectionInput as contiguous host arrays for the selectors.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>

#include "groupmates/error.h"
#include "groupmates/engine/selector.h"
#include "util/seed.h"

namespace groupmates {

/// u float [W], h float [W, D], clusters int64 [W] (if asked), all contiguous on the CPU.
struct HostWindow {
  torch::Tensor u, h, clusters;
  int64_t rows = 0, dim = 0;
};

inline HostWindow to_host(const SelectionInput& input, bool need_h, bool need_clusters) {
  HostWindow w;
  if (!input.u.defined() || input.u.dim() != 1)
    throw Error(ErrorCode::kInvalidConfig, "SelectionInput.u", "must be a [W] tensor");
  w.u = input.u.detach().to(torch::kCPU, torch::kFloat).contiguous();
  w.rows = w.u.size(0);
  if (need_h) {
    if (!input.embeddings.defined() || input.embeddings.dim() != 2 || input.embeddings.size(0) != w.rows)
      throw Error(ErrorCode::kInvalidConfig, "SelectionInput.embeddings", "must be [W, D] with W = u.size(0)");
    w.h = input.embeddings.detach().to(torch::kCPU, torch::kFloat).contiguous();
    w.dim = w.h.size(1);
  }
  if (need_clusters) {
    if (!input.cluster_ids.defined() || input.cluster_ids.dim() != 1 || input.cluster_ids.size(0) != w.rows)
      throw Error(ErrorCode::kInvalidConfig, "SelectionInput.cluster_ids", "must be [W] with W = u.size(0)");
    w.clusters = input.cluster_ids.to(torch::kCPU, torch::kLong).contiguous();
    if (w.rows > 0 && w.clusters.min().item<int64_t>() < 0)
      throw Error(ErrorCode::kInvalidConfig, "SelectionInput.cluster_ids", "must be >= 0");
  }
  return w;
}

/// The maximum of u over `candidates` (RelationParams::nonpositive_u's shift; candidates not empty).
inline float max_u_over(const float* u, const std::vector<int64_t>& candidates) {
  float top = u[candidates.front()];
  for (int64_t r : candidates) top = std::max(top, u[r]);
  return top;
}

/// u [rows] minus its maximum over `candidates`: every candidate's u <= 0 (RelationParams::nonpositive_u).
inline std::vector<float> u_minus_max(const float* u, int64_t rows, const std::vector<int64_t>& candidates) {
  const float top = max_u_over(u, candidates);
  std::vector<float> out(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) out[i] = u[i] - top;
  return out;
}

/// A stream-position-dependent seed: splitmix64 of (seed, window_seed).
using util::mix_seed;

}  // namespace groupmates
