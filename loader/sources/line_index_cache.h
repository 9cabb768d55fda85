// line_index_cache.h: a JSONL file's LineIndex saved on disk, so a later open skips indexing.
//
// Where: `.NAME.gmidx` beside the data file when its directory is writable, else
// `CACHE_DIR/HASH-NAME.gmidx` (HASH: of the absolute path) when a cache directory is set, else
// nowhere (the index is rebuilt at every open). Keyed by the data file's content fingerprint: its
// size, mtime (ns) and sampled content hash (MappedFile::sampled_hash); a cache whose key differs
// is stale, one that fails its checks (magic, version, lengths, XXH3 of the whole file) corrupt:
// both are reported and rebuilt. Written to a unique temporary file in the same directory and
// renamed over the target, so jobs sharing a cache never see a torn file (the last writer wins;
// every writer writes the same index).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "sources/line_index.h"

namespace groupmates {

/// The content fingerprint a cached index is valid for.
struct LineIndexKey {
  uint64_t size = 0;          ///< bytes of the data file
  int64_t mtime_ns = 0;       ///< its modification time
  uint64_t content_hash = 0;  ///< its sampled content hash
  bool compressed = false;    ///< indexed as zstd
};

/// What happened to one file's cached index at open.
enum class IndexCacheOutcome { kHit, kBuilt, kStale, kCorrupt, kNoCache };

/// How a source's files fared with the cache, and the first problem, for one report line.
struct IndexCacheCounts {
  uint64_t hits = 0;      ///< valid cached index used
  uint64_t built = 0;     ///< not cached yet: built and saved
  uint64_t stale = 0;     ///< the data changed: rebuilt and saved
  uint64_t corrupt = 0;   ///< the cache file failed its checks: rebuilt and saved
  uint64_t uncached = 0;  ///< no cache location, or it could not be written: built, not saved
  std::string first_problem;  ///< "CACHE_PATH: what" of the first stale/corrupt/unwritten one
  /// Counts one file's outcome (`where`: its cache path, or the data path when it has none).
  void count(IndexCacheOutcome outcome, const std::string& where, const std::string& problem);
  /// "" when every file was a hit or a first build; else what went wrong, how often, and the fix.
  std::string report() const;
};

/// The content fingerprint of `path` (whose sampled hash is `content_hash`). Throws Error(kIo).
LineIndexKey line_index_key(const std::string& path, uint64_t content_hash, bool compressed);

/// Where the index of `data_path` is cached ("" when nowhere: its directory is not writable and
/// `cache_dir` is empty). Creates cache_dir if needed; throws Error(kIo) naming it if it cannot.
std::string line_index_cache_path(const std::string& data_path, const std::string& cache_dir);

/// The index cached at `cache_path` if it is there and valid for `key`; otherwise nullopt and
/// `*outcome` says why (kBuilt: no cache file; kStale; kCorrupt, with `*problem` saying what).
std::optional<LineIndex> load_line_index(const std::string& cache_path, const LineIndexKey& key,
                                         IndexCacheOutcome* outcome, std::string* problem);

/// Saves `index` at `cache_path` atomically (temporary file + rename). Returns false with
/// `*problem` set if it cannot be written (the open goes on without a cache).
bool save_line_index(const std::string& cache_path, const LineIndexKey& key, const LineIndex& index,
                     std::string* problem);

}  // namespace groupmates
