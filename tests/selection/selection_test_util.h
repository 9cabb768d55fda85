// selection_test_util.h: fresh, printed, replayable seeds for the LibTorch-free selection tests.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>

namespace seltest {

/// GM_TEST_SEED when set (to replay a failure), else a fresh random seed.
inline uint64_t fresh_seed() {
  if (const char* s = std::getenv("GM_TEST_SEED")) return std::strtoull(s, nullptr, 10);
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd();
}

/// For SCOPED_TRACE: how to replay this seed.
inline std::string seed_trace(uint64_t seed) { return "GM_TEST_SEED=" + std::to_string(seed) + " to replay"; }

}  // namespace seltest
