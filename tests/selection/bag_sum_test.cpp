// The fused bag kernel's row sums (src/bag_sum.*): every instruction-set variant against a plain
// loop, bit for bit, on fresh random inputs (GM_TEST_SEED=... replays a run).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bag_sum.h"

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

}  // namespace
}  // namespace groupmates
