// line_index.h: where the lines of a JSONL file are, in decompressed bytes, and (for zstd) where
// its frames are.
//
// A plain file is indexed with one memchr pass over its map. A zstd file is decompressed once,
// sequentially, through a fixed 128 KiB window (pread of the compressed bytes, never the whole
// file in memory): the pass records every frame (compressed offset and size, decompressed offset
// and size) and every line start. A zstd frame is the only point a decoder can restart from, so a
// line is later read by decompressing the frame(s) holding it (sources/frame_cache.h); a frame
// bigger than `max_frame_bytes` is refused with the fix (recompress with `groupmates reframe`).
// A trailing newline does not make an extra line.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace groupmates {

/// One zstd frame of a file (skippable frames and frames of 0 bytes are left out).
struct ZstdFrame {
  uint64_t compressed_offset = 0;  ///< byte offset of the frame in the file
  uint64_t compressed_size = 0;    ///< bytes of the frame in the file
  uint64_t offset = 0;             ///< decompressed offset of its first byte
  uint64_t size = 0;               ///< decompressed bytes
};

/// Line starts of one file, in decompressed coordinates, and its zstd frames.
struct LineIndex {
  uint64_t size = 0;                 ///< decompressed bytes
  uint64_t content_end = 0;          ///< size without a final '\n'
  std::vector<uint64_t> starts;      ///< byte offset of each line's first byte
  std::vector<ZstdFrame> frames;     ///< empty for a plain file
  uint64_t max_frame_size = 0;       ///< largest frames[k].size

  /// Decompressed byte range [begin, end) of line k, without its '\n' (a '\r' before it is kept).
  std::pair<uint64_t, uint64_t> range(uint64_t k) const {
    return {starts[k], k + 1 < starts.size() ? starts[k + 1] - 1 : content_end};
  }
  /// The frame holding decompressed byte `offset` (offset < size; frames not empty).
  size_t frame_of(uint64_t offset) const;
  /// Bytes of memory the index holds.
  uint64_t memory_bytes() const { return starts.capacity() * 8 + frames.capacity() * sizeof(ZstdFrame); }
};

/// Indexes the lines of `size` plain bytes. Throws nothing.
LineIndex index_plain_lines(const char* data, uint64_t size);

/// Throws Error(kInvalidConfig) naming the file, the compressed offset of a frame of `index` over
/// `max_frame_bytes` decompressed, and the fixes (`groupmates reframe`, a larger zstd_cache_bytes).
void check_frames_fit(const std::string& path, const LineIndex& index, uint64_t max_frame_bytes);
/// Throws the error of check_frames_fit for the frame at `compressed_offset`.
[[noreturn]] void throw_frame_too_big(const std::string& path, uint64_t compressed_offset, uint64_t max_frame_bytes);

/// Indexes a zstd file by decompressing it once through a bounded window. Throws Error(kIo) if
/// it cannot be read, Error(kCorruptData) naming the compressed offset for a corrupt or
/// truncated stream, Error(kInvalidConfig) for a frame over `max_frame_bytes` decompressed
/// (naming both fixes: `groupmates reframe`, or a larger zstd_cache_bytes).
LineIndex index_zstd_lines(const std::string& path, uint64_t max_frame_bytes);

}  // namespace groupmates
