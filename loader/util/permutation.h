// util/permutation.h: a seeded pseudo-random bijection of [0, n), computed on the fly.
//
// A Feistel network over the smallest even-bit power-of-two domain >= n, with cycle walking
// back into [0, n). O(1) memory and O(1) set-up whatever n is (no index is materialised, so
// start-up does not grow with the dataset), and at(i) is a pure function of (n, seed, i).
#pragma once

#include <cstdint>

namespace groupmates {

class Permutation {
 public:
  /// The permutation of [0, n) for `seed`; identity when `shuffle` is false.
  Permutation(uint64_t n, uint64_t seed, bool shuffle = true);
  /// A local shuffle of [0, n): [0, n) cut into blocks of `block` consecutive elements, the blocks
  /// permuted, then the elements of each run of `span` consecutive permuted blocks permuted among
  /// themselves; the last n % block elements (fewer than a block) come last, permuted among
  /// themselves. Positions [k * block * span, (k + 1) * block * span) read only `span` blocks, so
  /// a reader of consecutive positions touches `span` regions of its files at a time.
  /// block == 0 is the global permutation above.
  static Permutation blocked(uint64_t n, uint64_t seed, uint64_t block, uint64_t span);
  /// The element at position i (i < n).
  uint64_t at(uint64_t i) const;
  uint64_t size() const { return n_; }

 private:
  uint64_t feistel(uint64_t x) const;
  uint64_t blocked_at(uint64_t i) const;
  uint64_t n_;
  uint64_t seed_;
  bool shuffle_;
  uint32_t half_bits_ = 0;
  uint64_t half_mask_ = 0;
  uint64_t block_ = 0;  // blocked(): elements per block (0: global)
  uint64_t span_ = 0;   // blocked(): blocks shuffled together
};

/// Mixes a seed with up to three integers (source index, epoch, step, ...) into a new seed (XXH3; the
/// stream, rollout draws and refresh samples use it: changing it changes every stream).
uint64_t derive_seed(uint64_t seed, uint64_t a, uint64_t b = 0, uint64_t c = 0);

}  // namespace groupmates
