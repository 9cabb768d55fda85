#include "util/permutation.h"

#include <xxhash.h>

namespace groupmates {

namespace {
constexpr int kRounds = 4;
}

uint64_t derive_seed(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
  const uint64_t words[3] = {a, b, c};
  return XXH3_64bits_withSeed(words, sizeof(words), seed);
}

Permutation::Permutation(uint64_t n, uint64_t seed, bool shuffle) : n_(n), seed_(seed), shuffle_(shuffle) {
  uint32_t bits = 2;
  while (bits < 64 && (uint64_t{1} << bits) < n) bits += 2;
  half_bits_ = bits / 2;
  half_mask_ = (uint64_t{1} << half_bits_) - 1;
}

uint64_t Permutation::feistel(uint64_t x) const {
  uint64_t left = x >> half_bits_;
  uint64_t right = x & half_mask_;
  for (int round = 0; round < kRounds; ++round) {
    const uint64_t key[2] = {right, static_cast<uint64_t>(round)};
    const uint64_t f = XXH3_64bits_withSeed(key, sizeof(key), seed_) & half_mask_;
    const uint64_t next_right = left ^ f;
    left = right;
    right = next_right;
  }
  return (left << half_bits_) | right;
}

uint64_t Permutation::at(uint64_t i) const {
  if (!shuffle_) return i;
  // Cycle walking: the domain is at most 4n, so the expected number of steps is below 4.
  uint64_t x = feistel(i);
  while (x >= n_) x = feistel(x);
  return x;
}

}  // namespace groupmates
