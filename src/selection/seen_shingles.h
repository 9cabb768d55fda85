// seen_shingles.h: a bounded memory of the token shingles of the rows recently selected, and how much of
// a candidate row it has seen (near-duplicates of what the trainer was just given). No LibTorch.
//
//   SeenShingles seen(config);
//   double share = seen.overlap(row, T);  // share of the row's sampled shingles among the remembered ones
//   seen.add(row, T);                     // once the row is selected
//
// A shingle is a run of `shingle_tokens` consecutive tokens (never spanning padding), hashed; one in
// `sample_every` of them (by hash, so the same text samples the same shingles wherever a row cuts it) is
// kept. The memory is the last `capacity` kept shingles in the order added (older ones are forgotten),
// as exact 32-bit keys: a fresh shingle matches by chance with probability about capacity / 2^32.
// Deterministic; save()/load() hold the whole memory.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace groupmates {

/// Settings of a SeenShingles memory.
struct SeenShinglesConfig {
  int shingle_tokens = 8;         ///< tokens per shingle, [2, 64]
  uint32_t sample_every = 8;      ///< one shingle in this many (by hash) is kept, [1, 1024]
  uint64_t capacity = 1 << 17;    ///< kept shingles remembered (the oldest forgotten first), [1, 2^24]
  int64_t pad_id = -1;            ///< token id no shingle contains (-1 = none)
  uint64_t seed = 0;              ///< hash seed

  /// Throws Error(kInvalidConfig) naming the field and the allowed range.
  void validate() const;
};

/// The sampled shingles of the last rows added, with how much of a row they cover.
class SeenShingles {
 public:
  explicit SeenShingles(const SeenShinglesConfig& config = {});

  /// Share of the row's sampled shingles that are remembered, in [0, 1] (0 for a row without any).
  double overlap(const int64_t* row, int64_t width) const;
  /// Remembers the row's sampled shingles (forgetting the oldest beyond capacity).
  void add(const int64_t* row, int64_t width);
  /// The row's sampled shingle keys, in row order (for tests); appended to `out`.
  void sampled(const int64_t* row, int64_t width, std::vector<uint32_t>& out) const;
  /// Shingles remembered now (<= capacity).
  uint64_t size() const { return ring_.size(); }
  /// The memory as a byte blob / restore from one (throws Error(kInvalidState) on a mismatch).
  std::string save() const;
  void load(const std::string& blob);
  const SeenShinglesConfig& config() const { return config_; }

 private:
  SeenShinglesConfig config_;
  std::vector<uint32_t> ring_;  // kept shingles, oldest at head_ once full
  uint64_t head_ = 0;
  std::unordered_map<uint32_t, uint32_t> counts_;  // key -> occurrences in ring_
};

}  // namespace groupmates
