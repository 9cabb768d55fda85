// groupmates/streaming_loader.h: the plain streaming loader (no LibTorch, no selection).
//
//   groupmates::StreamingLoader loader(config);
//   while (auto batch = loader.next()) { use(batch->tokens.get()); }   // [B, T] int64
//   auto saved = loader.state().serialize();  // later: StreamingLoader(config, LoaderState::parse(saved))
//
// The stream is global: candidate order is a pure function of (config, seed), global batch g is
// candidates [g*B*W, (g+1)*B*W) and rank r takes rows [r*B, (r+1)*B) of it (after a resume with
// another B*W: the next B*W candidates after the state's `samples`). Thread count never
// changes the stream. Worker errors reach next() with the file and offset.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "groupmates/candidate_id.h"
#include "groupmates/config.h"
#include "groupmates/loader_state.h"

namespace groupmates {

/// One batch on this rank: `tokens` is [batch_size, sequence_length] int64, row-major. Its memory
/// returns to the loader's pool when the last copy of `tokens` is dropped.
struct HostBatch {
  std::shared_ptr<int64_t> tokens;
  uint32_t batch_size = 0;
  uint32_t sequence_length = 0;
  std::vector<CandidateId> ids;  ///< one per row
  uint64_t index = 0;            ///< global batch index
};

/// Allocates a token buffer of `bytes`; the returned owner keeps it alive (e.g. pinned memory
/// owned by a tensor). The default is plain aligned host memory.
using BufferAllocator = std::function<std::shared_ptr<void>(size_t bytes, void** data)>;

/// Counters of the loader's work so far.
struct LoaderStats {
  uint64_t batches = 0;            ///< batches returned by next()
  uint64_t buffers_allocated = 0;  ///< token buffers ever allocated (steady state: prefetch + held)
  double consumer_wait_seconds = 0; ///< time next() waited for a batch
  uint64_t batches_in_flight = 0;  ///< now: batches planned or assembled and not yet returned (<= prefetch_batches)
  // Caches of JSONL sources (zero for other formats), summed over the sources:
  uint64_t line_index_cache_hits = 0;    ///< files whose line index was read from its on-disk cache at open
  uint64_t line_index_cache_misses = 0;  ///< files indexed at open (first open, stale or corrupt cache, none writable)
  uint64_t zstd_frame_cache_hits = 0;    ///< document reads served by decompressed zstd frames in the LRU
  uint64_t zstd_frame_cache_misses = 0;  ///< document reads that decompressed a frame (zstd_cache_bytes bounds the LRU)
  uint64_t zstd_frame_cache_bytes = 0;   ///< decompressed bytes the frame LRUs hold now
};

class StreamingLoader {
 public:
  /// Opens every source and checks the config; throws Error for a bad config or file. Starts no
  /// thread: the planner and the pool start at the first next() (lazily, as peers start in __iter__).
  explicit StreamingLoader(LoaderConfig config, BufferAllocator allocator = {});
  /// Continues exactly from a saved state, at its sample position (any world size and batch size;
  /// data files matched by content, so the data may have moved: LoaderState's DataFileFingerprint).
  StreamingLoader(LoaderConfig config, const LoaderState& state, BufferAllocator allocator = {});
  /// Stops the workers (if they started) promptly, also when they are blocked on full queues.
  ~StreamingLoader();
  StreamingLoader(const StreamingLoader&) = delete;
  StreamingLoader& operator=(const StreamingLoader&) = delete;

  /// The next batch of this rank, or nullopt at the end of the stream; rethrows worker errors.
  std::optional<HostBatch> next();
  /// The state after the last batch next() returned.
  LoaderState state() const;
  /// What was skipped so far, by source and reason.
  std::map<std::string, uint64_t> skipped() const;
  /// A readable report of skipped(), with the first location of each kind.
  std::string skip_report() const;
  LoaderStats stats() const;
  const LoaderConfig& config() const;
  /// Hash of everything that defines the global stream (sources' data by content, not path; seed, shapes).
  uint64_t config_fingerprint() const;
  /// Per source, the local shuffle in effect as {shuffle_block, shuffle_span}: what shuffle_block set, or
  /// what kShuffleBlockAuto chose; {0, 0} for the global permutation (and for token files, no shuffle).
  std::vector<std::pair<uint32_t, uint32_t>> local_shuffles() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace groupmates
