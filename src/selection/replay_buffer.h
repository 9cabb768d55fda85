// replay_buffer.h: the best rows emitted so far (lowest predicted influence u), kept to be emitted again.
// No LibTorch.
//
//   ReplayBuffer best(256);
//   best.offer(u, id, row, T);            // every row a window emits, with the u it was selected by
//   const ReplayEntry& e = best.take(i);  // sorted best first; counts the replay, drops the row at max_replays
//
// Holds at most `capacity` rows: a row is kept while fewer than `capacity` rows have a lower u (ties: the
// earlier row first) and until it was taken `max_replays` times (so no row is repeated more than that, however
// long the run; a row dropped is never offered again unless the stream yields it anew). With `relatives`
// on, the buffer holds one row of a family of near-duplicates: a row is related to an entry when at least
// `relatives.overlap` of its sampled token shingles are among the entry's, and it is kept only if its score
// is better than every related entry's, which it then replaces. Deterministic; save()/load() hold the rows
// and their counts (an entry's shingles are recomputed from its tokens).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "groupmates/candidate_id.h"
#include "selection/seen_shingles.h"

namespace groupmates {

/// One remembered row.
struct ReplayEntry {
  double score = 0;             ///< the u it was selected by (lower = better)
  CandidateId id;               ///< its candidate id (a replayed row keeps it)
  std::vector<int64_t> tokens;  ///< its tokens
  uint64_t replays = 0;         ///< times taken so far
  std::vector<uint32_t> shingles;  ///< its sampled shingle keys, sorted, unique (relatives on only)
};

/// Near-duplicates in the buffer (ReplayBuffer, SelectionConfig::replay_relative_overlap).
struct ReplayRelatives {
  double overlap = 0;          ///< share of a row's sampled shingles among an entry's that makes them relatives; 0 = off
  SeenShinglesConfig shingles;  ///< how shingles are cut and sampled (capacity unused)
};

/// The `capacity` best rows offered so far, sorted best first.
class ReplayBuffer {
 public:
  /// capacity in [1, 65536], max_replays >= 1; throws Error(kInvalidConfig) otherwise.
  explicit ReplayBuffer(uint64_t capacity, uint64_t max_replays = UINT64_MAX, const ReplayRelatives& relatives = {});
  /// Keeps the row if it is among the best `capacity` so far and better than its relatives (a non-finite score is
  /// never kept). Returns the rows this left out for a better relative: the row itself (1), or the entries it
  /// replaced (0 with relatives off).
  uint64_t offer(double score, const CandidateId& id, const int64_t* tokens, int64_t width);
  uint64_t size() const { return entries_.size(); }
  uint64_t capacity() const { return capacity_; }
  /// The i-th best row (i < size()).
  const ReplayEntry& at(uint64_t i) const { return entries_.at(i); }
  /// A copy of the i-th best row, counted as replayed once more; a row taken max_replays times leaves the buffer.
  ReplayEntry take(uint64_t i);
  /// The rows as a byte blob / restore from one (throws Error(kInvalidState) on a mismatch).
  std::string save() const;
  void load(const std::string& blob);

 private:
  std::vector<uint32_t> shingles_of(const int64_t* tokens, int64_t width) const;

  uint64_t capacity_, max_replays_;
  ReplayRelatives relatives_;
  SeenShingles shingler_;  // cuts shingles only (relatives on)
  std::vector<ReplayEntry> entries_;  // ascending by score; equal scores in the order offered
};

}  // namespace groupmates
