// zstd_reframe.h: rewrites a JSONL file (plain or zstd) as zstd frames of about `frame_bytes`
// decompressed bytes each, cut at line ends: `groupmates reframe IN OUT`.
//
// A zstd frame is the only point a decoder can restart from, so a .jsonl.zst written by `zstd`
// (one frame for the whole file) can only be read at random by decompressing it whole; with small
// frames a line costs one frame's decompression (sources/frame_cache.h). The input is streamed
// (memory: one frame plus the longest line), the output written to OUT.tmp.<pid> and renamed
// over OUT when complete. Each frame records its content size and a checksum.
#pragma once

#include <cstdint>
#include <string>

namespace groupmates {

/// What a reframe wrote.
struct ReframeResult {
  uint64_t frames = 0;             ///< zstd frames written
  uint64_t decompressed_bytes = 0; ///< content bytes (unchanged)
  uint64_t input_bytes = 0;        ///< bytes of the input file
  uint64_t output_bytes = 0;       ///< bytes of the output file
};

/// Default frame size of `groupmates reframe`: 64 KiB decompressed.
inline constexpr uint64_t kDefaultReframeBytes = uint64_t{64} << 10;

/// Rewrites `in` (plain or zstd JSONL) as `out` in frames of ~frame_bytes (a longer line gets a
/// frame of its own). Throws Error(kIo) naming a file that cannot be read or written,
/// Error(kCorruptData) naming the offset of a corrupt input stream, Error(kInvalidConfig) for
/// frame_bytes < 4096 or a level outside 1..19.
ReframeResult reframe_jsonl_zstd(const std::string& in, const std::string& out, uint64_t frame_bytes = kDefaultReframeBytes,
                                 int level = 3);

}  // namespace groupmates
