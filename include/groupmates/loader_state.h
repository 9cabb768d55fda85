// groupmates/loader_state.h: the exact position of a loader in its global stream. No LibTorch here.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace groupmates {

/// Position of one source in its own order.
struct SourcePosition {
  uint64_t epoch = 0;     ///< how many times this source has restarted
  uint64_t position = 0;  ///< next window / document of the epoch's permutation
  uint64_t offset = 0;    ///< tokens of that document already used
};

/// One data file as it was when the state was saved: a file changed under a saved state (other
/// size, or other content in blocks sampled by an XXH3 fingerprint) is named on restore.
struct DataFileFingerprint {
  std::string path;
  uint64_t size = 0;
  uint64_t content_hash = 0;
  bool operator==(const DataFileFingerprint& o) const {
    return path == o.path && size == o.size && content_hash == o.content_hash;
  }
};

/// A small, serialisable state. It is global (not per rank): every rank of a run saves the same
/// state after the same step, and it restores onto any number of ranks with the same global
/// batch size (elastic resumption).
struct LoaderState {
  uint64_t config_fingerprint = 0;    ///< hash of everything that defines the stream
  uint64_t global_batch_size = 0;     ///< batch_size * world_size when saved
  uint64_t batches = 0;               ///< global batches consumed
  uint64_t pass = 0;                  ///< completed passes over the blend
  bool ended = false;                 ///< the stream had ended
  std::vector<uint64_t> blend_counts; ///< candidates taken from each source in this pass
  std::vector<SourcePosition> sources;
  std::map<std::string, uint64_t> skipped;  ///< SkipCounters at that point
  std::map<std::string, std::string> extra; ///< state of later stages (selection), opaque here
  std::vector<DataFileFingerprint> files;   ///< every data file read, in source order

  /// A versioned text form ("groupmates-state 1 ..."), stable across platforms.
  std::string serialize() const;
  /// Parses serialize()'s output; throws Error(kInvalidState) naming the bad field (a malformed or
  /// negative number, a number out of range, text after `end`, a truncated state).
  static LoaderState parse(const std::string& text);
  bool operator==(const LoaderState& other) const;
};

}  // namespace groupmates
