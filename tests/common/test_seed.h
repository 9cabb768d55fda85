// test_seed.h: a fresh random seed per test run, printed and replayable (GM_TEST_SEED=N), for the
// LibTorch test suites (the loader tests have rdtest::fresh_seed, the same convention).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>

namespace testing_seed {

/// GM_TEST_SEED if set, else a fresh one; print it with SCOPED_TRACE(trace(seed)).
inline uint64_t fresh() {
  if (const char* s = std::getenv("GM_TEST_SEED")) return std::strtoull(s, nullptr, 10);
  std::random_device rd;
  return ((uint64_t{rd()} << 32) ^ rd()) % 1000000007ULL;  // small enough for torch::manual_seed
}

inline std::string trace(uint64_t seed) {
  return "seed " + std::to_string(seed) + " (GM_TEST_SEED=" + std::to_string(seed) + " to replay)";
}

}  // namespace testing_seed
