// blend_schedule.h: which source the next candidate of the blend comes from.
//
// Deterministic and exact at any weights (0.999/0.001 included): the next candidate comes from
// the source furthest behind its share, argmax_s (w_s * (n + 1) - count_s), ties to the lower
// index (the rule Megatron-LM's blended dataset uses). After n candidates every source is within
// two candidates of w_s * n (one, with two sources).
#pragma once

#include <cstdint>
#include <vector>

namespace groupmates {

class BlendSchedule {
 public:
  /// Weights need not sum to 1; they are normalised. All must be > 0.
  explicit BlendSchedule(const std::vector<double>& weights);
  /// The source of the next candidate (does not advance).
  uint32_t peek() const;
  /// Records that a candidate of `source` was taken.
  void commit(uint32_t source);
  /// Starts a new pass: all counts zero.
  void reset();
  const std::vector<uint64_t>& counts() const { return counts_; }
  /// Restores counts saved from counts().
  void set_counts(const std::vector<uint64_t>& counts);

 private:
  std::vector<double> weights_;
  std::vector<uint64_t> counts_;
  uint64_t total_ = 0;
};

}  // namespace groupmates
