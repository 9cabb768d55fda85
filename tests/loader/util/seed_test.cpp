// util/seed.h against a straightforward reference SplitMix64 (Vigna's splitmix64.c) on fresh random
// inputs, and mix_seed against the formula the selectors used before it moved here (their streams
// must stay bit-identical).
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "loader/reader_test_util.h"
#include "util/seed.h"

namespace groupmates {
namespace util {
namespace {

// https://prng.di.unimi.it/splitmix64.c, as written there.
struct ReferenceSplitMix64 {
  uint64_t x;
  uint64_t next() {
    uint64_t z = (x += 0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
    z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
    return z ^ (z >> 31);
  }
};

// The former src/selection/host_window.h mix_seed, verbatim.
uint64_t former_mix_seed(uint64_t seed, uint64_t window_seed) {
  uint64_t z = seed ^ (window_seed + 0x9E3779B97F4A7C15ULL + (seed << 6) + (seed >> 2));
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// A fresh seed, printed with the test's name (GM_TEST_SEED=... replays it).
uint64_t printed_seed() {
  const uint64_t seed = rdtest::fresh_seed();
  const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
  std::printf("%s.%s: %s\n", test->test_suite_name(), test->name(), rdtest::seed_trace(seed).c_str());
  return seed;
}

TEST(Seed, SplitMix64MatchesTheReference) {
  const uint64_t seed = printed_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 10000; ++i) {
    const uint64_t x = rng();
    ASSERT_EQ(splitmix64(x), ReferenceSplitMix64{x}.next()) << "x = " << x;
  }
  // A generator's stream, draw after draw.
  const uint64_t start = rng();
  ReferenceSplitMix64 ref{start};
  uint64_t state = start;
  for (int i = 0; i < 10000; ++i) ASSERT_EQ(splitmix64_next(state), ref.next()) << "draw " << i;
  EXPECT_EQ(state, ref.x);
  // Edge values.
  for (uint64_t x : {uint64_t{0}, ~uint64_t{0}, uint64_t{1} << 63, kSplitMix64Gamma, uint64_t(0) - kSplitMix64Gamma})
    EXPECT_EQ(splitmix64(x), ReferenceSplitMix64{x}.next()) << "x = " << x;
}

TEST(Seed, MixSeedIsTheFormerSelectorSeedBitForBit) {
  const uint64_t seed = printed_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 10000; ++i) {
    const uint64_t s = rng(), w = i % 2 ? rng() : rng() % 1000;  // small window indices too
    ASSERT_EQ(mix_seed(s, w), former_mix_seed(s, w)) << "seed " << s << " stream " << w;
  }
  static_assert(mix_seed(0, 0) == splitmix64(0), "seed 0, stream 0 is SplitMix64's first draw from 0");
}

// For one seed, stream -> mix_seed is a bijection (an add, an xor and a bijective mixer): the windows
// of a run never share a seed. (Across seeds no such promise: the combine is not injective in pairs.)
TEST(Seed, MixSeedGivesEveryStreamOfASeedItsOwnSeed) {
  const uint64_t seed = printed_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::set<uint64_t> seen;
  for (uint64_t w = 0; w < 8192; ++w) seen.insert(mix_seed(seed, w));
  EXPECT_EQ(seen.size(), 8192u);
}

}  // namespace
}  // namespace util
}  // namespace groupmates
