#include "util/permutation.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

#include "loader/loader_test_util.h"

using groupmates::Permutation;

TEST(Permutation, IsABijectionForManySizes) {
  const uint64_t seed = gmtest::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (uint64_t n : {1ull, 2ull, 3ull, 5ull, 16ull, 17ull, 1000ull, 4097ull, 65536ull, 100003ull}) {
    Permutation p(n, seed);
    std::vector<char> seen(n, 0);
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t x = p.at(i);
      ASSERT_LT(x, n);
      ASSERT_FALSE(seen[x]) << "n=" << n << " value " << x << " twice";
      seen[x] = 1;
    }
  }
}

TEST(Permutation, IdentityWithoutShuffleAndDependsOnSeed) {
  Permutation id(1000, 7, false);
  for (uint64_t i = 0; i < 1000; ++i) EXPECT_EQ(id.at(i), i);
  Permutation a(1000, 1), b(1000, 2), a2(1000, 1);
  int differ = 0, fixed = 0;
  for (uint64_t i = 0; i < 1000; ++i) {
    differ += a.at(i) != b.at(i);
    fixed += a.at(i) == i;
    EXPECT_EQ(a.at(i), a2.at(i));
  }
  EXPECT_GT(differ, 900);
  EXPECT_LT(fixed, 20);
}

TEST(Permutation, NeighboursAreSpreadOut) {
  // Consecutive outputs should not come from nearby inputs (no bunching from one file region).
  const uint64_t n = 1 << 20;
  const uint64_t seed = gmtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  Permutation p(n, seed);
  uint64_t close = 0;
  const uint64_t pairs = 9999, near = n / 100;
  for (uint64_t i = 0; i < pairs; ++i) {
    const uint64_t a = p.at(i), b = p.at(i + 1);
    close += (a > b ? a - b : b - a) < near;
  }
  // Two independent uniform draws land within `near` of each other with probability ~2 near / n
  // (minus the edge effect): binomial mean and sigma, 4.5 sigma either way (a biased shuffle
  // falls out on either side: bunching above, a stride that avoids neighbours below).
  const double q = 2.0 * near / n - (double(near) / n) * (double(near) / n);
  const double mean = pairs * q, sigma = std::sqrt(pairs * q * (1 - q));
  EXPECT_NEAR(static_cast<double>(close), mean, 4.5 * sigma);
}

namespace {
// The local shuffle written from its definition (Permutation::blocked), with explicit lists.
std::vector<uint64_t> reference_local_order(uint64_t n, uint64_t seed, uint64_t block, uint64_t span) {
  const uint64_t full_blocks = n / block, full = full_blocks * block;
  const Permutation outer(full_blocks, seed);
  std::vector<uint64_t> order;
  for (uint64_t k = 0; k * span < full_blocks; ++k) {
    std::vector<uint64_t> members;
    for (uint64_t j = k * span; j < std::min(full_blocks, (k + 1) * span); ++j)
      for (uint64_t r = 0; r < block; ++r) members.push_back(outer.at(j) * block + r);
    const Permutation inner(members.size(), groupmates::derive_seed(seed, 0x7370616eULL, k));
    for (uint64_t j = 0; j < members.size(); ++j) order.push_back(members[inner.at(j)]);
  }
  const Permutation tail(n - full, groupmates::derive_seed(seed, 0x7461696cULL));
  for (uint64_t j = 0; j < n - full; ++j) order.push_back(full + tail.at(j));
  return order;
}
}  // namespace

TEST(Permutation, LocalShuffleEqualsItsDefinitionAndIsABijection) {
  const uint64_t seed = gmtest::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (uint64_t n : {1ull, 5ull, 64ull, 1000ull, 4097ull})
    for (uint64_t block : {1ull, 3ull, 32ull, 5000ull})
      for (uint64_t span : {1ull, 4ull, 256ull}) {
        const Permutation p = Permutation::blocked(n, seed, block, span);
        const auto want = reference_local_order(n, seed, block, span);
        ASSERT_EQ(want.size(), n);
        std::vector<char> seen(n, 0);
        for (uint64_t i = 0; i < n; ++i) {
          const uint64_t x = p.at(i);
          ASSERT_EQ(x, want[i]) << "n=" << n << " block=" << block << " span=" << span << " i=" << i;
          ASSERT_FALSE(seen[x]) << "n=" << n << " block=" << block << " span=" << span << ": " << x << " twice";
          seen[x] = 1;
        }
      }
  // block 0 is the global permutation.
  const Permutation global(1000, seed), zero = Permutation::blocked(1000, seed, 0, 8);
  for (uint64_t i = 0; i < 1000; ++i) ASSERT_EQ(zero.at(i), global.at(i));
}

TEST(Permutation, LocalShuffleReadsSpanBlocksAtATimeAndStillMixes) {
  const uint64_t seed = gmtest::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const uint64_t n = 100000, block = 32, span = 16, span_size = block * span;
  const Permutation p = Permutation::blocked(n, seed, block, span);
  uint64_t same_block_neighbours = 0, contiguous_spans = 0;
  for (uint64_t k = 0; (k + 1) * span_size <= n; ++k) {
    std::map<uint64_t, uint64_t> blocks;  // block -> elements seen in this span
    for (uint64_t i = k * span_size; i < (k + 1) * span_size; ++i) {
      ++blocks[p.at(i) / block];
      if (i + 1 < (k + 1) * span_size) same_block_neighbours += p.at(i) / block == p.at(i + 1) / block;
    }
    ASSERT_EQ(blocks.size(), span) << "span " << k << " reads other than " << span << " whole blocks";
    for (const auto& [b, count] : blocks) ASSERT_EQ(count, block) << "span " << k << " block " << b;
    // Unpermuted blocks would make every span blocks k * span .. k * span + span - 1.
    contiguous_spans += blocks.begin()->first == k * span && blocks.rbegin()->first == k * span + span - 1;
  }
  const uint64_t spans = n / span_size, pairs = spans * (span_size - 1);
  // Neighbours from one block: probability (block - 1) / (span_size - 1) if the span is well mixed;
  // binomial mean, 4.5 sigma either way.
  const double q = double(block - 1) / double(span_size - 1), mean = pairs * q, sigma = std::sqrt(pairs * q * (1 - q));
  EXPECT_NEAR(static_cast<double>(same_block_neighbours), mean, 4.5 * sigma);
  // A span of 16 random blocks of 3,125 is contiguous with probability ~16! / 3,125^15: never.
  EXPECT_EQ(contiguous_spans, 0u) << "the blocks are not permuted";
}
