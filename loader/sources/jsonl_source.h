// jsonl_source.h: JSONL documents (one JSON object per line), plain or zstd-compressed.
//
// Plain .jsonl files are memory-mapped. .jsonl.zst / .zst files (or any file starting with the
// zstd magic) are streamed: opening decompresses each once through a bounded window to index its
// lines and zstd frames (sources/line_index.h), and read(i) decompresses the frame holding line i
// into a per-source LRU bounded by config.zstd_cache_bytes (sources/frame_cache.h). Every frame
// must fit that budget: a file written by `zstd` is one frame, so a big one is refused at open with
// the fix (`groupmates reframe` rewrites it as 64 KiB frames, sources/zstd_reframe.h).
// memory_bytes() reports what the source holds. The line index costs 8 bytes per line.
// Line indexes are cached on disk by content fingerprint (sources/line_index_cache.h: beside the
// data, or in config.index_cache_dir), so a second open reads no data beyond 17 sampled pages.
// A trailing newline at the end of a file does not make an extra line; "\r\n" endings are
// accepted.
//
// read(i) validates line i's UTF-8, parses it with simdjson (one parser per thread), takes the
// string field config.text_field and tokenizes it with the source's SentencePiece model.
// Bad records (invalid_json, invalid_utf8, missing_field, empty_text) follow the BadInputPolicy;
// blank (empty or whitespace-only) lines are always skipped and counted as "empty_line". A line
// longer than config.max_line_bytes is a bad record too ("line_too_long"), checked before it is
// parsed: one line costs ~70x its size while parsed and tokenized, so the cap bounds memory (and
// how long a shutdown can wait behind a worker tokenizing it).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sources/document_source.h"
#include "sources/frame_cache.h"
#include "sources/line_index_cache.h"
#include "util/buffer_recycler.h"
#include "groupmates/config.h"

namespace groupmates {

class Tokenizer;

class JsonlSource : public DocumentSource {
 public:
  /// What is wrong with a record.
  enum class Problem { kNone, kEmptyLine, kInvalidJson, kInvalidUtf8, kMissingField, kEmptyText, kLineTooLong };
  /// Skip-counter reason key of a problem: "empty_line", "invalid_json", "invalid_utf8",
  /// "missing_field", "empty_text", "line_too_long" ("" for kNone).
  static const char* problem_key(Problem p);

  /// Opens every file of config.paths and indexes its lines. Loads config.tokenizer_model when
  /// `load_tokenizer` (read() needs it; text() does not). Throws Error(kIo) for a missing or
  /// unreadable file, Error(kCorruptData) for an empty file or a corrupt/truncated zstd stream,
  /// Error(kInvalidConfig) for no paths or no tokenizer_model.
  JsonlSource(const SourceConfig& config, BadInputPolicy policy, bool load_tokenizer = true);
  ~JsonlSource() override;

  uint64_t num_documents() const override;
  Document read(uint64_t i, SkipCounters& skips) const override;
  /// "path:line N" (1-based line in its file).
  std::string locate(uint64_t i) const override;
  uint64_t fingerprint() const override;
  uint64_t path_fingerprint() const override;
  SourceCacheStats cache_stats() const override;
  /// With zstd-compressed files: blocks of the mean lines per frame over those files (applied to all the
  /// source's documents), spans of a quarter of the frames (of their mean size) the frame cache holds, at
  /// most max_span, at least 1; the global permutation for plain files only, and when frames hold under
  /// 1.5 lines (blocks of 1 would only permute documents globally, at a higher cost). Spans under 8
  /// (frames over 1/32 of the cache: e.g. a file written by `zstd`, one frame) mix few frames at a
  /// time: said on stderr with the fixes (`groupmates reframe`, a larger zstd_cache_bytes), once per
  /// process and source, unless the whole source fits the cache.
  LocalShuffle auto_shuffle(uint32_t max_span) const override;
  std::vector<DataFileFingerprint> data_files() const override;

  /// Checks record i and extracts its text without tokenizing; on a problem, *detail (if given)
  /// says what is wrong (without location or fix).
  Problem text(uint64_t i, std::string* text, std::string* detail = nullptr) const;
  /// Raw bytes of line i (without the line ending), copied.
  std::string line(uint64_t i) const;

  uint32_t num_files() const;
  const std::string& path(uint32_t f) const;
  /// Lines (records) of file f.
  uint64_t file_lines(uint32_t f) const;
  /// True if file f is zstd-compressed.
  bool compressed(uint32_t f) const;
  /// Bytes of memory this source holds privately: the cached zstd frames plus the line indexes
  /// (memory-mapped plain files are not counted: they are page cache, shared and reclaimable).
  uint64_t memory_bytes() const;
  /// Hits, misses and size of the decompressed-frame cache.
  FrameCache::Stats frame_cache_stats() const;
  /// How the files' cached line indexes fared at open (also reported on stderr when not clean).
  const IndexCacheCounts& index_cache_counts() const;
  /// The tokenizer (null when opened with load_tokenizer = false).
  const std::shared_ptr<Tokenizer>& tokenizer() const;

 private:
  struct File;
  struct LineBytes;
  std::pair<const File*, uint64_t> find(uint64_t i) const;
  LineBytes bytes(uint64_t i) const;
  Problem parse(std::string_view raw, std::string_view* text, std::string* detail) const;

  std::vector<std::unique_ptr<File>> files_;
  std::vector<uint64_t> first_line_;  // size files+1
  std::string source_name_;
  std::string text_field_;
  std::string tokenizer_model_;  ///< its path, for messages
  uint64_t max_line_bytes_;
  BadInputPolicy policy_;
  std::shared_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<FrameCache> cache_;
  // Documents' token vectors, reused (util/buffer_recycler.h): at most 64 kept, of at most 16 KiB (4,096
  // tokens) each, so a document holds at most 16 KiB more than its tokens; longer ones are allocated.
  mutable BufferRecycler<std::vector<uint32_t>> token_buffers_{64, size_t{16} << 10};
  IndexCacheCounts index_cache_;
  uint64_t fingerprint_ = 0;       // by content (sizes, counts, sampled hashes), in file order
  uint64_t path_fingerprint_ = 0;  // version 1's: the same with each path
  std::vector<DataFileFingerprint> data_files_;
};

}  // namespace groupmates
