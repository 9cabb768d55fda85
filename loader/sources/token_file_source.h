// token_file_source.h: flat token files (no header, little-endian uint16/uint32), memory-mapped.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "groupmates/config.h"
#include "groupmates/loader_state.h"
#include "stream/token_view.h"

namespace groupmates {

/// Non-overlapping windows of `window` tokens over one or more flat token files. Windows never
/// cross a file boundary; a file's tail shorter than a window is not used (tail_tokens(); the
/// cursor counts it as "epoch_tail_tokens" at the end of every epoch, as for documents). Window k is a view into the map; thread-safe.
class TokenFileSource {
 public:
  /// Maps every path; throws Error(kIo) for a missing/unreadable file, Error(kCorruptData) for a
  /// size that is not a multiple of the token width or an empty file.
  TokenFileSource(const SourceConfig& config, uint32_t window);
  ~TokenFileSource();
  /// Number of windows over all files.
  uint64_t num_windows() const;
  /// Tokens of window k.
  TokenView window(uint64_t k) const;
  /// (file index, token offset in that file) of window k.
  std::pair<uint32_t, uint64_t> locate(uint64_t k) const;
  /// Path of file i.
  const std::string& path(uint32_t file) const;
  /// Tokens left over at file ends (shorter than a window), summed over files.
  uint64_t tail_tokens() const;
  /// A hash of the paths, sizes and window length; a saved state must match it.
  uint64_t fingerprint() const;
  /// The version 1 fingerprint (paths too).
  uint64_t path_fingerprint() const;
  /// Every file with its size and sampled content hash (also in fingerprint()).
  std::vector<DataFileFingerprint> data_files() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace groupmates
