// host_window.h (internal): a SelectionInput as contiguous host arrays for the selectors.
#pragma once

#include <cstdint>
#include <string>

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

/// A stream-position-dependent seed: splitmix64 of (seed, window_seed).
using util::mix_seed;

}  // namespace groupmates
