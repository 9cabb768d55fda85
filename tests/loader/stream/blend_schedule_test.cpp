#include "stream/blend_schedule.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "loader/loader_test_util.h"

using groupmates::BlendSchedule;

TEST(BlendSchedule, EverySourceStaysWithinTwoOfItsShare) {
  const uint64_t seed = gmtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 20; ++trial) {
    const int S = 1 + static_cast<int>(rng() % 6);
    std::vector<double> w(S);
    double sum = 0;
    for (auto& x : w) sum += (x = std::exp(std::uniform_real_distribution<double>(-7, 0)(rng)));
    BlendSchedule b(w);
    std::vector<uint64_t> counts(S, 0);
    for (uint64_t n = 1; n <= 20000; ++n) {
      const uint32_t s = b.peek();
      b.commit(s);
      ++counts[s];
      for (int i = 0; i < S; ++i) ASSERT_LE(std::fabs(counts[i] - w[i] / sum * n), 2.0) << "source " << i << " at " << n;
    }
  }
}

TEST(BlendSchedule, ExtremeWeights) {
  BlendSchedule b({0.999, 0.001});
  uint64_t small = 0;
  for (int i = 0; i < 100000; ++i) {
    const uint32_t s = b.peek();
    b.commit(s);
    small += s == 1;
  }
  EXPECT_EQ(small, 100u);
}

TEST(BlendSchedule, RestoreCountsContinuesIdentically) {
  BlendSchedule a({0.3, 0.5, 0.2});
  for (int i = 0; i < 77; ++i) a.commit(a.peek());
  BlendSchedule b({0.3, 0.5, 0.2});
  b.set_counts(a.counts());
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(a.peek(), b.peek());
    a.commit(a.peek());
    b.commit(b.peek());
  }
}
