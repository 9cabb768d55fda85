// util/seed.h: the one SplitMix64 (Steele, Lea and Flood 2014; Vigna's splitmix64.c) used to derive
// seeds and hashes. Every function is a pure function of its arguments: the same values on every
// platform and build (tests compare streams drawn from these seeds bit for bit).
#pragma once

#include <cstdint>

namespace groupmates {
namespace util {

/// SplitMix64's increment (2^64 / golden ratio).
constexpr uint64_t kSplitMix64Gamma = 0x9E3779B97F4A7C15ULL;

/// SplitMix64's output function (the variant-13 finalizer of MurmurHash3): a bijection of 64 bits.
constexpr uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/// The first output of a SplitMix64 generator whose state is x: a 64-bit hash of x.
constexpr uint64_t splitmix64(uint64_t x) { return splitmix64_mix(x + kSplitMix64Gamma); }

/// The next output of the SplitMix64 generator with state `state`, which it advances.
inline uint64_t splitmix64_next(uint64_t& state) {
  state += kSplitMix64Gamma;
  return splitmix64_mix(state);
}

/// A seed for the stream `stream` of a run seeded with `seed` (e.g. one per window): the pair is
/// combined (boost::hash_combine's shape, with SplitMix64's gamma) and mixed with SplitMix64.
constexpr uint64_t mix_seed(uint64_t seed, uint64_t stream) {
  return splitmix64_mix(seed ^ (stream + kSplitMix64Gamma + (seed << 6) + (seed >> 2)));
}

}  // namespace util
}  // namespace groupmates
