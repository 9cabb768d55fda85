// HashedNgramEncoder: XXH3-hashed token n-grams -> mean bag embedding -> MLP -> L2 normalise.
#include "groupmates/engine/hashed_ngram_encoder.h"

#include <algorithm>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/nn/functional/normalization.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "model/bag_sum.h"
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

HashedNgramEncoder::HashedNgramEncoder(const HashedNgramEncoderConfig& config, const torch::Tensor& table)
    : config_(config) {
  if (config.num_buckets <= 0 || config.embed_dim <= 0 || config.hidden_dim <= 0 || config.out_dim <= 0)
    throw Error(ErrorCode::kInvalidConfig, "HashedNgramEncoderConfig",
                "num_buckets, embed_dim, hidden_dim and out_dim must be > 0");
  if (config.max_ngram < 1 || config.max_ngram > 3)
    throw Error(ErrorCode::kInvalidConfig, "HashedNgramEncoderConfig.max_ngram",
                "got " + std::to_string(config.max_ngram) + ", allowed 1..3");
  auto options = torch::nn::EmbeddingBagOptions(config.num_buckets, config.embed_dim).mode(torch::kMean);
  if (table.defined()) {
    if (table.dim() != 2 || table.size(0) != config.num_buckets || table.size(1) != config.embed_dim ||
        table.scalar_type() != torch::kFloat)
      throw Error(ErrorCode::kInvalidConfig, "HashedNgramEncoder",
                  "a shared table must be float [num_buckets, embed_dim] = [" + std::to_string(config.num_buckets) +
                      ", " + std::to_string(config.embed_dim) + "]");
    // A tensor of its own over the same storage (not detach(): LibTorch may refuse set_() on a detached
    // alias, which imports use): requires_grad, version counter and metadata stay this encoder's own.
    torch::NoGradGuard no_grad;
    torch::Tensor own = torch::empty({0}, table.options());
    own.set_(table);
    options._weight(own);
  }
  table_ = register_module("table", torch::nn::EmbeddingBag(options));
  fc1_ = register_module("fc1", torch::nn::Linear(config.embed_dim, config.hidden_dim));
  fc2_ = register_module("fc2", torch::nn::Linear(config.hidden_dim, config.out_dim));
}

std::string HashedNgramEncoder::identity_of(const HashedNgramEncoderConfig& c) {
  return "hashed_ngram(buckets=" + std::to_string(c.num_buckets) + ",embed=" + std::to_string(c.embed_dim) +
         ",hidden=" + std::to_string(c.hidden_dim) + ",dim=" + std::to_string(c.out_dim) +
         ",max_ngram=" + std::to_string(c.max_ngram) + ",seed=" + std::to_string(c.seed) + ")";
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

int64_t HashedNgramEncoder::sum_chunk_rows(int64_t embed_dim) {
  constexpr int64_t kChunkBytes = int64_t(1) << 19;
  const int64_t fit = std::max<int64_t>(1, kChunkBytes / (int64_t(sizeof(float)) * std::max<int64_t>(1, embed_dim)));
  int64_t rows = 1;
  while (rows * 2 <= fit) rows *= 2;
  return rows;
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

  // Table chunks (sum_chunk_rows() rows, 512 KiB, which a core's L2 holds): a row's n-grams are
  // summed chunk by chunk, in position order within a chunk, and a block of rows visits the chunks
  // together, so each chunk comes from memory once per block rather than once per n-gram. Every
  // row's order depends on its own tokens only (not on the block, the threads or the CPU).
  int shift = 0;
  while ((int64_t(1) << (shift + 1)) <= sum_chunk_rows(dim)) ++shift;
  const int64_t chunks = ((config_.num_buckets - 1) >> shift) + 1;
  int64_t per_row = 0;  // n-grams of an unmasked row
  for (int n = 1; n <= max_n; ++n) per_row += std::max<int64_t>(0, length - n + 1);
  // Rows per block: their sorted bucket ids take up to 2 MiB (256 rows of 1,024 tokens, 1-2-grams).
  constexpr int64_t kBlockBytes = int64_t(2) << 20;
  const int64_t block = std::clamp<int64_t>(kBlockBytes / std::max<int64_t>(1, per_row * int64_t(sizeof(uint32_t))), 1, 512);

  at::parallel_for(0, rows, 8, [&](int64_t begin, int64_t end) {
    std::vector<uint32_t> ids(per_row);                // one row's buckets in position order
    std::vector<uint32_t> sorted(block * per_row);     // row r's buckets by chunk at r * per_row
    std::vector<int64_t> starts(block * (chunks + 1));  // row r's chunk c: [starts[r(chunks+1)+c], ..+c+1)
    std::vector<int64_t> cursor(chunks), count(block);
    std::vector<float> acc(block * dim);
    for (int64_t w0 = begin; w0 < end; w0 += block) {
      const int64_t here = std::min(block, end - w0);
      for (int64_t r = 0; r < here; ++r) {
        const int64_t* x = tok + (w0 + r) * length;
        const bool* m = msk ? msk + (w0 + r) * length : nullptr;
        int64_t* st = starts.data() + r * (chunks + 1);
        uint32_t* out = sorted.data() + r * per_row;
        uint32_t* o = chunks == 1 ? out : ids.data();
        int64_t got = 0;
        for (int64_t t = 0; t < length; ++t)
          for (int n = 1; n <= max_n && t + n <= length; ++n)
            if (!m || all_real(m, t, n))
              o[got++] = uint32_t(reduce(XXH3_64bits_withSeed(x + t, sizeof(int64_t) * n, seeds[n]), buckets));
        count[r] = got;
        st[0] = 0;
        if (chunks == 1) {
          st[1] = got;
          continue;
        }
        std::fill(st + 1, st + chunks + 1, 0);  // stable counting sort by chunk
        for (int64_t i = 0; i < got; ++i) ++st[(o[i] >> shift) + 1];
        for (int64_t c = 0; c < chunks; ++c) st[c + 1] += st[c];
        std::copy(st, st + chunks, cursor.begin());
        for (int64_t i = 0; i < got; ++i) out[cursor[o[i] >> shift]++] = o[i];
      }
      std::fill(acc.begin(), acc.begin() + here * dim, 0.0f);
      for (int64_t c = 0; c < chunks; ++c)
        for (int64_t r = 0; r < here; ++r) {
          const int64_t* st = starts.data() + r * (chunks + 1);
          if (st[c + 1] > st[c])
            add_rows(table, dim, sorted.data() + r * per_row + st[c], st[c + 1] - st[c], acc.data() + r * dim);
        }
      for (int64_t r = 0; r < here; ++r) {
        const float scale = count[r] > 0 ? 1.0f / float(count[r]) : 0.0f;
        const float* a = acc.data() + r * dim;
        float* out = res + (w0 + r) * dim;
        for (int64_t d = 0; d < dim; ++d) out[d] = a[d] * scale;
      }
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
