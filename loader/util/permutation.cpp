#include "util/permutation.h"

#include <xxhash.h>

#include <algorithm>

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

Permutation Permutation::blocked(uint64_t n, uint64_t seed, uint64_t block, uint64_t span) {
  Permutation p(n, seed, true);
  if (block > 0) {
    p.block_ = block;
    // More blocks per span than the source has changes nothing; clamped, span * block stays <= n + block.
    p.span_ = std::clamp<uint64_t>(span, 1, std::max<uint64_t>(1, n / block));
  }
  return p;
}

uint64_t Permutation::blocked_at(uint64_t i) const {
  const uint64_t full_blocks = n_ / block_, full = full_blocks * block_;
  if (i >= full)  // the tail (fewer than a block): last, permuted among itself
    return full + Permutation(n_ - full, derive_seed(seed_, 0x7461696cULL)).at(i - full);
  const uint64_t span_size = span_ * block_, span = i / span_size, first_block = span * span_;
  const uint64_t blocks_here = std::min(span_, full_blocks - first_block);
  const uint64_t q = Permutation(blocks_here * block_, derive_seed(seed_, 0x7370616eULL, span)).at(i - span * span_size);
  const uint64_t block = Permutation(full_blocks, seed_).at(first_block + q / block_);
  return block * block_ + q % block_;
}

uint64_t Permutation::at(uint64_t i) const {
  if (!shuffle_) return i;
  if (block_ > 0) return blocked_at(i);
  // Cycle walking: the domain is at most 4n, so the expected number of steps is below 4.
  uint64_t x = feistel(i);
  while (x >= n_) x = feistel(x);
  return x;
}

}  // namespace groupmates
