// source_cursor.h: one source's candidates in its own seeded order, one at a time.
//
// A cursor is a stage in the manner of tf.data: next() and save/restore of its own position.
// It only plans (views into maps, tokenized documents); copying happens in the workers.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sources/document_source.h"
#include "stream/candidate_plan.h"
#include "groupmates/config.h"
#include "groupmates/loader_state.h"
#include "stream/skip_counters.h"

namespace groupmates {

class LazyThreadPool;
class DocumentSource;
class TokenFileSource;

/// A cursor's position: epoch of this source, next document/window, tokens used of it.
struct CursorState {
  uint64_t epoch = 0;
  uint64_t position = 0;
  uint64_t offset = 0;
};

class SourceCursor {
 public:
  virtual ~SourceCursor() = default;
  /// The next candidate of the current epoch, or nullopt when the epoch is exhausted.
  virtual std::optional<CandidatePlan> next() = 0;
  /// Starts `epoch` from its beginning (a fresh permutation).
  virtual void start_epoch(uint64_t epoch) = 0;
  /// Current position.
  virtual CursorState save() const = 0;
  /// Continues from a saved position.
  virtual void load(const CursorState& state) = 0;
  /// Fingerprint of the opened data (a state must match it).
  virtual uint64_t fingerprint() const = 0;
  /// The version 1 fingerprint, which covered paths too (restores states saved before content fingerprints).
  virtual uint64_t path_fingerprint() const = 0;
  /// Every data file of the source, with size and sampled content hash.
  virtual std::vector<DataFileFingerprint> data_files() const = 0;
  /// The source's cache counters (line index, zstd frames; zero for flat token files).
  virtual SourceCacheStats cache_stats() const = 0;
  /// "path:line N" / "path:token OFFSET" of a document+offset, for error messages.
  virtual std::string locate(uint64_t document, uint64_t offset) const = 0;
};

/// Everything a cursor needs besides its source.
struct CursorContext {
  uint32_t source_index = 0;
  std::string source_name;
  uint64_t seed = 0;
  bool shuffle = true;
  uint32_t shuffle_block = 0;  ///< documents: the local shuffle in effect (LoaderConfig::shuffle_block, or what
                               ///< kShuffleBlockAuto chose for the source; 0: global); windows ignore it
  uint32_t shuffle_span = 256;
  uint32_t sequence_length = 0;
  PackingMode packing = PackingMode::kPacked;
  int64_t eos_id = -1;
  int64_t pad_id = 0;
  uint32_t read_ahead = 256;
  LazyThreadPool* pool = nullptr;  ///< where documents are read/tokenized ahead (nullptr: inline)
  SkipCounters* skips = nullptr;
};

/// Windows of a flat token file source, in a seeded permutation per epoch.
std::unique_ptr<SourceCursor> make_window_cursor(std::shared_ptr<const TokenFileSource> source, CursorContext ctx);
/// Documents of a Megatron/JSONL source, in a seeded permutation per epoch, packed or
/// document-aligned; documents are read (tokenized) ahead on the pool.
std::unique_ptr<SourceCursor> make_document_cursor(std::shared_ptr<const DocumentSource> source, CursorContext ctx);

/// Stable candidate id hash of (source name, document, offset).
uint64_t candidate_hash(const std::string& source_name, uint64_t document, uint64_t offset);

}  // namespace groupmates
