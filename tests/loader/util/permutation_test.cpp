#include "util/permutation.h"

#include <gtest/gtest.h>

#include <cmath>
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
