// document_source.h: random access to the documents of one source (Megatron .bin/.idx, JSONL).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "groupmates/loader_state.h"

#include "groupmates/config.h"
#include "stream/skip_counters.h"
#include "stream/token_view.h"

namespace groupmates {

/// One document's tokens, or why it was skipped.
struct Document {
  TokenView tokens;     ///< valid when !skipped
  bool skipped = false; ///< true when the record was bad and the policy is kSkip (already counted)
};

/// A source's cache counters (JSONL: its line-index cache at open, its zstd frame LRU while reading).
struct SourceCacheStats {
  uint64_t line_index_hits = 0;    ///< files whose line index came from the on-disk cache
  uint64_t line_index_misses = 0;  ///< files indexed at open (not cached yet, stale, corrupt, or no cache location)
  uint64_t frame_hits = 0;         ///< reads of a .jsonl.zst line served by decompressed frames in the LRU
  uint64_t frame_misses = 0;       ///< reads that decompressed a frame
  uint64_t frame_bytes = 0;        ///< decompressed bytes the LRU holds now
};

/// A local shuffle (LoaderConfig::shuffle_block / shuffle_span); block 0 = the global permutation.
struct LocalShuffle {
  uint32_t block = 0;
  uint32_t span = 0;
  bool operator==(const LocalShuffle& o) const { return block == o.block && span == o.span; }
};

/// A source whose unit is the document. Documents are numbered 0..num_documents()-1 across all
/// of the source's files, in file order. Opening is cheap (maps files, reads headers, never
/// walks a whole index); read() is thread-safe.
class DocumentSource {
 public:
  virtual ~DocumentSource() = default;
  /// Number of documents (records) over all files.
  virtual uint64_t num_documents() const = 0;
  /// Tokens of document i; for kSkip policy a bad record comes back skipped (and counted in
  /// `skips`), for kFail it throws Error naming the file and line/offset.
  virtual Document read(uint64_t i, SkipCounters& skips) const = 0;
  /// "path:line N" or "path.bin:byte OFFSET" of document i, for messages.
  virtual std::string locate(uint64_t i) const = 0;
  /// A hash of what was opened, by content (sizes, counts, sampled content hashes; never paths); a
  /// saved state must match it.
  virtual uint64_t fingerprint() const = 0;
  /// The fingerprint of version 1 states, which also covered the paths (see LoaderState::version).
  virtual uint64_t path_fingerprint() const = 0;
  /// Every file read, with its size and sampled content hash (also mixed into fingerprint()).
  virtual std::vector<DataFileFingerprint> data_files() const = 0;
  /// Its cache counters so far (zero for a source without caches).
  virtual SourceCacheStats cache_stats() const { return {}; }
  /// What LoaderConfig::kShuffleBlockAuto chooses for it, with spans of at most `max_span` blocks:
  /// the global permutation (the default) where any document is as cheap to read as its neighbour.
  virtual LocalShuffle auto_shuffle(uint32_t max_span) const {
    (void)max_span;
    return {};
  }
};

/// Opens a kMegatron or kJsonl source. Throws Error (kIo / kCorruptData / kInvalidConfig).
std::unique_ptr<DocumentSource> open_document_source(const SourceConfig& config, BadInputPolicy policy);

}  // namespace groupmates
