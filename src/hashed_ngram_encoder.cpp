// HashedNgramEncoder: XXH3-hashed token n-grams -> mean bag embedding -> MLP -> L2 normalise.
#include "groupmates/hashed_ngram_encoder.h"

#include <algorithm>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/nn/functional/normalization.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "bag_sum.h"
#include "groupmates/error.h"

namespace groupmates {

namespace {

// Lemire's multiply-shift: maps a 64-bit hash uniformly onto [0, buckets) without a division.
inline int64_t reduce(uint64_t hash, uint64_t buckets) {
  return static_cast<int64_t>((static_cast<unsigned __int128>(hash) * buckets) >> 64);
}

inline uint64_t ngram_seed(uint64_t seed, int n) { return seed * 0x9E3779B97F4A7C15ULL + uint64_t(n); }

// Host int64 tokens and bool mask, contiguous.
torch::Tensor host_tokens(const torch::Tensor& tokens) {
  if (tokens.dim() != 2)
    throw Error(ErrorCode::kInvalidConfig, "HashedNgramEncoder", "tokens must be [W, T], got " +
                                                                   std::to_string(tokens.dim()) + " dims");
  return tokens.to(torch::kCPU, torch::kLong).contiguous();
}

torch::Tensor host_mask(const torch::Tensor& mask, const torch::Tensor& tokens) {
  if (!mask.defined()) return mask;
  if (mask.sizes() != tokens.sizes())
    throw Error(ErrorCode::kInvalidConfig, "HashedNgramEncoder", "mask must have the shape of tokens");
  return mask.to(torch::kCPU, torch::kBool).contiguous();
}

// Whether the n-gram at t of a masked row is made only of real tokens.
inline bool all_real(const bool* m, int64_t t, int n) {
  for (int j = 0; j < n; ++j)
    if (!m[t + j]) return false;
  return true;
}

}  // namespace

HashedNgramEncoder::HashedNgramEncoder(const HashedNgramEncoderConfig& config) : config_(config) {
  if (config.num_buckets <= 0 || config.embed_dim <= 0 || config.hidden_dim <= 0 || config.out_dim <= 0)
    throw Error(ErrorCode::kInvalidConfig, "HashedNgramEncoderConfig",
                "num_buckets, embed_dim, hidden_dim and out_dim must be > 0");
  if (config.max_ngram < 1 || config.max_ngram > 3)
    throw Error(ErrorCode::kInvalidConfig, "HashedNgramEncoderConfig.max_ngram",
                "got " + std::to_string(config.max_ngram) + ", allowed 1..3");
  table_ = register_module("table", torch::nn::EmbeddingBag(torch::nn::EmbeddingBagOptions(config.num_buckets,
                                                                                             config.embed_dim)
                                                                  .mode(torch::kMean)));
  fc1_ = register_module("fc1", torch::nn::Linear(config.embed_dim, config.hidden_dim));
  fc2_ = register_module("fc2", torch::nn::Linear(config.hidden_dim, config.out_dim));
}

int64_t HashedNgramEncoder::bucket(const int64_t* ngram, int n) const {
  return reduce(XXH3_64bits_withSeed(ngram, sizeof(int64_t) * n, ngram_seed(config_.seed, n)),
                uint64_t(config_.num_buckets));
}

NgramBags HashedNgramEncoder::hash(const torch::Tensor& tokens_in, const torch::Tensor& mask_in) const {
  const torch::Tensor tokens = host_tokens(tokens_in);
  const torch::Tensor mask = host_mask(mask_in, tokens);
  const int64_t rows = tokens.size(0), length = tokens.size(1);
  const int max_n = config_.max_ngram;
  const int64_t* tok = tokens.data_ptr<int64_t>();
  const bool* msk = mask.defined() ? mask.data_ptr<bool>() : nullptr;

  // Row starts: fixed stride without a mask, else a prefix sum of per-row counts.
  std::vector<int64_t> start(rows + 1, 0);
  if (!msk) {
    int64_t per_row = 0;
    for (int n = 1; n <= max_n; ++n) per_row += std::max<int64_t>(0, length - n + 1);
    for (int64_t w = 0; w <= rows; ++w) start[w] = w * per_row;
  } else {
    at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
      for (int64_t w = begin; w < end; ++w) {
        const bool* m = msk + w * length;
        int64_t count = 0;
        for (int64_t t = 0; t < length; ++t)
          for (int n = 1; n <= max_n && t + n <= length; ++n) count += all_real(m, t, n);
        start[w + 1] = count;
      }
    });
    for (int64_t w = 0; w < rows; ++w) start[w + 1] += start[w];
  }

  torch::Tensor indices = torch::empty({start[rows]}, torch::kLong);
  int64_t* out = indices.data_ptr<int64_t>();
  std::vector<uint64_t> seeds(max_n + 1);
  for (int n = 1; n <= max_n; ++n) seeds[n] = ngram_seed(config_.seed, n);
  const uint64_t buckets = uint64_t(config_.num_buckets);
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t w = begin; w < end; ++w) {
      const int64_t* x = tok + w * length;
      const bool* m = msk ? msk + w * length : nullptr;
      int64_t* o = out + start[w];
      for (int64_t t = 0; t < length; ++t)
        for (int n = 1; n <= max_n && t + n <= length; ++n)
          if (!m || all_real(m, t, n)) *o++ = reduce(XXH3_64bits_withSeed(x + t, sizeof(int64_t) * n, seeds[n]), buckets);
    }
  });
  torch::Tensor offsets = torch::from_blob(start.data(), {rows}, torch::kLong).clone();
  return {indices, offsets};
}

torch::Tensor HashedNgramEncoder::fused_bag_mean(const torch::Tensor& tokens_in, const torch::Tensor& mask_in) const {
  const torch::Tensor tokens = host_tokens(tokens_in);
  const torch::Tensor mask = host_mask(mask_in, tokens);
  const int64_t rows = tokens.size(0), length = tokens.size(1), dim = config_.embed_dim;
  const int max_n = config_.max_ngram;
  const int64_t* tok = tokens.data_ptr<int64_t>();
  const bool* msk = mask.defined() ? mask.data_ptr<bool>() : nullptr;
  const torch::Tensor weight = table_->weight.contiguous();
  const float* table = weight.data_ptr<float>();
  torch::Tensor result = torch::empty({rows, dim}, torch::kFloat);
  float* res = result.data_ptr<float>();
  uint64_t seeds[4] = {0, 0, 0, 0};
  for (int n = 1; n <= max_n; ++n) seeds[n] = ngram_seed(config_.seed, n);
  const uint64_t buckets = uint64_t(config_.num_buckets);
  const detail::AddRowsFn add_rows = detail::add_rows_kernels().front().fn;

  at::parallel_for(0, rows, 8, [&](int64_t begin, int64_t end) {
    // Buckets of a block of n-grams are computed first and prefetched, then their rows summed:
    // the table is larger than the caches, so overlapping the misses is what matters.
    constexpr int64_t kBlock = 192;
    std::vector<uint32_t> idx(kBlock + 3);
    std::vector<float> acc(dim);
    for (int64_t w = begin; w < end; ++w) {
      const int64_t* x = tok + w * length;
      const bool* m = msk ? msk + w * length : nullptr;
      std::fill(acc.begin(), acc.end(), 0.0f);
      int64_t count = 0;
      for (int64_t t0 = 0; t0 < length; t0 += kBlock / 3) {
        const int64_t t1 = std::min(length, t0 + kBlock / 3);
        int64_t got = 0;
        for (int64_t t = t0; t < t1; ++t)
          for (int n = 1; n <= max_n && t + n <= length; ++n)
            if (!m || all_real(m, t, n)) {
              const int64_t b = reduce(XXH3_64bits_withSeed(x + t, sizeof(int64_t) * n, seeds[n]), buckets);
              for (int64_t line = 0; line < dim; line += 16) __builtin_prefetch(table + b * dim + line);
              idx[got++] = uint32_t(b);
            }
        add_rows(table, dim, idx.data(), got, acc.data());
        count += got;
      }
      const float scale = count > 0 ? 1.0f / float(count) : 0.0f;
      float* r = res + w * dim;
      for (int64_t d = 0; d < dim; ++d) r[d] = acc[d] * scale;
    }
  });
  return result;
}

torch::Tensor HashedNgramEncoder::bag_embed(const torch::Tensor& tokens, const torch::Tensor& mask) {
  const torch::Tensor& weight = table_->weight;
  const bool need_grad = torch::GradMode::is_enabled() && weight.requires_grad();
  if (!need_grad && weight.device().is_cpu() && weight.scalar_type() == torch::kFloat &&
      config_.num_buckets <= (int64_t(1) << 32))  // bucket ids as uint32
    return fused_bag_mean(tokens, mask);
  NgramBags bags = hash(tokens, mask);
  if (!weight.device().is_cpu()) {
    // Host -> device from pinned memory, asynchronously (CUDA only; nothing of this runs on CPU).
    if (torch::cuda::is_available()) {
      bags.indices = bags.indices.pin_memory();
      bags.offsets = bags.offsets.pin_memory();
    }
    bags.indices = bags.indices.to(weight.device(), /*non_blocking=*/true);
    bags.offsets = bags.offsets.to(weight.device(), /*non_blocking=*/true);
  }
  return table_->forward(bags.indices, bags.offsets);
}

torch::Tensor HashedNgramEncoder::project(const torch::Tensor& bags) {
  torch::Tensor x = fc2_->forward(torch::relu(fc1_->forward(bags)));
  return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().p(2.0).dim(1).eps(1e-12));
}

torch::Tensor HashedNgramEncoder::encode(const torch::Tensor& tokens, const torch::Tensor& mask) {
  if (!mask.defined() && config_.pad_id >= 0) return project(bag_embed(tokens, tokens.ne(config_.pad_id)));
  return project(bag_embed(tokens, mask));
}

}  // namespace groupmates
