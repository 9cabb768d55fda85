// frame_cache.h: decompressed zstd frames of one source's files, kept in a bounded LRU.
//
// A line of a .jsonl.zst file is read by decompressing the frame(s) holding it whole: the
// compressed bytes are pread into a per-thread buffer (never mapped, so they do not stay in the
// process's resident set) and decompressed with a per-thread ZSTD_DCtx into a new block, which
// the cache then keeps while the total stays within `budget_bytes` (least recently used blocks
// are dropped first). Blocks are shared_ptr: a reader keeps its block alive after eviction, so
// the memory in use is at most budget_bytes plus one frame (or two, for a line across frames)
// per reading thread. Thread-safe (one mutex around the map; decompression runs outside it, so
// two threads may decompress the same frame at once and the second copy is dropped).
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "sources/line_index.h"

namespace groupmates {

class FrameCache {
 public:
  /// A decompressed frame.
  using Block = std::shared_ptr<const std::string>;
  /// Hit/miss counts and the cache's size.
  struct Stats {
    uint64_t hits = 0, misses = 0, bytes = 0, peak_bytes = 0;
  };

  /// A cache holding at most `budget_bytes` of decompressed frames.
  explicit FrameCache(uint64_t budget_bytes);
  /// Frame `frame` of file `file` (path `path`, indexed as `index`): from the cache or
  /// decompressed now. Throws Error(kIo / kCorruptData) naming the file and compressed offset
  /// if the file cannot be read or no longer holds that frame (changed since it was indexed).
  Block get(uint32_t file, const std::string& path, const LineIndex& index, size_t frame);
  /// Counts so far.
  Stats stats() const;
  uint64_t budget_bytes() const { return budget_; }

 private:
  struct Entry {
    Block block;
    std::list<uint64_t>::iterator lru;
  };
  const uint64_t budget_;
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, Entry> map_;
  std::list<uint64_t> lru_;  // front: most recently used
  Stats stats_;
};

}  // namespace groupmates
