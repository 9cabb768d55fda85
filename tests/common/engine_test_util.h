// Shared helpers of the selection tests.
#pragma once

#include <memory>
#include <vector>

#include <torch/types.h>

#include "groupmates/engine/hashed_ngram_encoder.h"
#include "groupmates/engine/influence_model.h"

namespace groupmates::testing {

/// A small HashedNgramEncoder (fast to build and train in tests).
inline HashedNgramEncoderConfig small_encoder(int64_t out_dim = 8) {
  HashedNgramEncoderConfig c;
  c.num_buckets = 512;
  c.embed_dim = 16;
  c.hidden_dim = 16;
  c.out_dim = out_dim;
  return c;
}

inline std::shared_ptr<RelationalInfluenceModel> small_model(int64_t out_dim = 8) {
  return std::make_shared<RelationalInfluenceModel>(std::make_shared<HashedNgramEncoder>(small_encoder(out_dim)));
}

/// n random unit rows of width d, float.
inline torch::Tensor random_unit(int64_t n, int64_t d) {
  torch::Tensor x = torch::randn({n, d});
  return x / x.norm(2, 1, true);
}

/// Row-major copy of a tensor as doubles.
inline std::vector<double> as_doubles(const torch::Tensor& t) {
  const torch::Tensor c = t.detach().to(torch::kCPU, torch::kDouble).contiguous().flatten();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

}  // namespace groupmates::testing
