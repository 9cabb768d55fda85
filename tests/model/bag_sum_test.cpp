// The fused bag kernel of HashedNgramEncoder and its row sums (src/bag_sum.*), against plain
// implementations on fresh random inputs (GM_TEST_SEED=... replays a run; the seed is printed).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "model/bag_sum.h"
#include "groupmates/engine/hashed_ngram_encoder.h"

namespace groupmates {
namespace {

uint64_t fresh_seed() {
  if (const char* s = std::getenv("GM_TEST_SEED")) return std::strtoull(s, nullptr, 10);
  std::random_device rd;
  return ((uint64_t{rd()} << 32) ^ rd()) % 1000000007ULL;
}

// The definition: acc[d] += row[d], row after row, one float addition at a time.
void add_rows_reference(const float* table, int64_t dim, const uint32_t* rows, int64_t n, float* acc) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t d = 0; d < dim; ++d) acc[d] += table[int64_t(rows[i]) * dim + d];
}

TEST(BagSum, EveryKernelEqualsThePlainLoopBitForBit) {
  const uint64_t seed = fresh_seed();
  std::printf("[bag_sum] seed %llu (GM_TEST_SEED=%llu to replay); kernels:", (unsigned long long)seed,
              (unsigned long long)seed);
  for (const auto& k : detail::add_rows_kernels()) std::printf(" %s", k.isa);
  std::printf("\n");
  SCOPED_TRACE("GM_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  ASSERT_FALSE(detail::add_rows_kernels().empty());
  EXPECT_STREQ(detail::add_rows_kernels().back().isa, "baseline");
  // Widths below, at and across every vector and tile boundary (16-float AVX-512 vectors, tiles of
  // 256; 8-float AVX2 vectors, tiles of 64; baseline tiles of 16).
  for (int64_t dim : {1, 3, 7, 8, 9, 15, 16, 17, 31, 48, 63, 64, 65, 100, 255, 256, 257, 272, 300, 513}) {
    const int64_t buckets = 1 + int64_t(rng() % 700);
    std::vector<float> table(buckets * dim);
    for (float& x : table) x = normal(rng);
    for (int64_t n : {int64_t(0), int64_t(1), int64_t(2), int64_t(1 + rng() % 300)}) {
      std::vector<uint32_t> rows(n);
      for (uint32_t& r : rows) r = uint32_t(rng() % buckets);
      std::vector<float> start(dim + 16);  // the accumulator does not start at 0; a guard zone after it
      for (float& x : start) x = normal(rng);
      std::vector<float> want = start;
      add_rows_reference(table.data(), dim, rows.data(), n, want.data());
      for (const auto& kernel : detail::add_rows_kernels()) {
        std::vector<float> got = start;
        kernel.fn(table.data(), dim, rows.data(), n, got.data());
        EXPECT_EQ(0, std::memcmp(got.data(), want.data(), sizeof(float) * got.size()))
            << kernel.isa << ": dim " << dim << ", " << n << " rows (guard zone included)";
      }
    }
  }
}

// The fused kernel's documented order, written plainly: a row's n-grams (bucket() of each, in
// position order), stably sorted by bucket / sum_chunk_rows(dim), added one float at a time.
torch::Tensor bag_mean_in_chunk_order(const HashedNgramEncoder& enc, const torch::Tensor& tokens,
                                      const torch::Tensor& mask, const torch::Tensor& table) {
  const int64_t rows = tokens.size(0), length = tokens.size(1), dim = table.size(1);
  const int64_t chunk = HashedNgramEncoder::sum_chunk_rows(dim);
  const torch::Tensor tok = tokens.contiguous(), t = table.contiguous();
  const torch::Tensor m = mask.defined() ? mask.contiguous() : torch::ones_like(tokens, torch::kBool);
  torch::Tensor out = torch::zeros({rows, dim});
  for (int64_t w = 0; w < rows; ++w) {
    const int64_t* x = tok.data_ptr<int64_t>() + w * length;
    const bool* real = m.data_ptr<bool>() + w * length;
    std::vector<int64_t> buckets;
    for (int64_t p = 0; p < length; ++p)
      for (int n = 1; n <= enc.config().max_ngram && p + n <= length; ++n) {
        bool all = true;
        for (int j = 0; j < n; ++j) all = all && real[p + j];
        if (all) buckets.push_back(enc.bucket(x + p, n));
      }
    std::stable_sort(buckets.begin(), buckets.end(), [&](int64_t a, int64_t b) { return a / chunk < b / chunk; });
    std::vector<float> acc(dim, 0.0f);
    for (int64_t b : buckets)
      for (int64_t d = 0; d < dim; ++d) acc[d] += t.data_ptr<float>()[b * dim + d];
    const float scale = buckets.empty() ? 0.0f : 1.0f / float(buckets.size());
    for (int64_t d = 0; d < dim; ++d) out[w][d] = acc[d] * scale;
  }
  return out;
}

// The definition in double: mean of the table rows of the row's unmasked n-grams.
torch::Tensor bag_mean_in_double(const HashedNgramEncoder& enc, const torch::Tensor& tokens, const torch::Tensor& mask,
                                 const torch::Tensor& table) {
  const NgramBags bags = enc.hash(tokens, mask);
  const int64_t rows = tokens.size(0), total = bags.indices.numel();
  const torch::Tensor t = table.to(torch::kDouble);
  torch::Tensor out = torch::zeros({rows, table.size(1)}, torch::kDouble);
  for (int64_t w = 0; w < rows; ++w) {
    const int64_t a = bags.offsets[w].item<int64_t>(), b = w + 1 < rows ? bags.offsets[w + 1].item<int64_t>() : total;
    if (b > a) out[w] = t.index_select(0, bags.indices.slice(0, a, b)).mean(0);
  }
  return out.to(torch::kFloat);
}

TEST(FusedBagKernel, EqualsPlainImplementationsOnRandomInputs) {
  const uint64_t seed = fresh_seed();
  std::printf("[fused bag kernel] seed %llu (GM_TEST_SEED=%llu to replay), kernel %s\n", (unsigned long long)seed,
              (unsigned long long)seed, detail::add_rows_kernels().front().isa);
  SCOPED_TRACE("GM_TEST_SEED=" + std::to_string(seed));
  torch::manual_seed(seed);
  std::mt19937_64 rng(seed);
  const int threads_before = at::get_num_threads();
  torch::NoGradGuard no_grad;
  for (int64_t dim : {16, 48, 100, 256, 272}) {
    for (int max_ngram : {1, 2, 3}) {
      HashedNgramEncoderConfig config;
      // Several table chunks, the last one partial.
      config.num_buckets = 3 * HashedNgramEncoder::sum_chunk_rows(dim) + 1 + int64_t(rng() % 997);
      config.embed_dim = dim;
      config.hidden_dim = 8;
      config.out_dim = 4;
      config.max_ngram = max_ngram;
      config.seed = rng() % 1000;
      HashedNgramEncoder enc(config);
      const torch::Tensor table = enc.named_parameters()["table.weight"];
      for (int64_t length : {1, 2, 3, 77}) {
        const int64_t rows = 1 + int64_t(rng() % 40);
        const torch::Tensor tokens = torch::randint(0, 50257, {rows, length}, torch::kLong);
        torch::Tensor mask = torch::rand({rows, length}).gt(0.15);
        mask[0].fill_(false);  // a row with no n-gram embeds to 0
        for (const torch::Tensor& m : {torch::Tensor(), mask}) {
          const std::string what = "dim " + std::to_string(dim) + " max_ngram " + std::to_string(max_ngram) +
                                   " length " + std::to_string(length) + (m.defined() ? " masked" : "");
          at::set_num_threads(1);
          const torch::Tensor fused = enc.bag_embed(tokens, m);
          at::set_num_threads(2);
          const torch::Tensor fused2 = enc.bag_embed(tokens, m);
          at::set_num_threads(threads_before);
          EXPECT_TRUE(torch::equal(fused, bag_mean_in_chunk_order(enc, tokens, m, table))) << what;
          EXPECT_TRUE(torch::equal(fused, fused2)) << what << ": 1 vs 2 threads";
          const torch::Tensor exact = bag_mean_in_double(enc, tokens, m, table);
          EXPECT_TRUE(torch::allclose(fused, exact, 1e-5, 1e-6))
              << what << ": max diff " << (fused - exact).abs().max().item<float>();
          // A row's bits do not depend on the other rows of the batch.
          const int64_t w = int64_t(rng() % rows);
          const torch::Tensor alone = enc.bag_embed(tokens.slice(0, w, w + 1), m.defined() ? m.slice(0, w, w + 1) : m);
          EXPECT_TRUE(torch::equal(alone[0], fused[w])) << what << ": row " << w << " alone";
        }
      }
    }
  }
}

}  // namespace
}  // namespace groupmates
