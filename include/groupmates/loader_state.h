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

/// One data file as it was when the state was saved, identified by content: its size and an XXH3
/// of fixed 4 KiB blocks sampled from it (MappedFile::sampled_hash), never by its path. On restore
/// each saved file is matched by content to a file of the same source, so data copied, moved or
/// renamed resumes exactly; a file changed under a saved state (other size, or other content in
/// the sampled blocks) is named, with what changed. `path` is where it was, for messages only.
struct DataFileFingerprint {
  std::string path;
  uint64_t size = 0;
  uint64_t content_hash = 0;
  uint32_t source = 0;  ///< index of the source reading it (version 1 states: unknown, 0)
  bool same_content(const DataFileFingerprint& o) const { return size == o.size && content_hash == o.content_hash; }
  bool operator==(const DataFileFingerprint& o) const {
    return path == o.path && same_content(o) && source == o.source;
  }
};

/// A small, serialisable state. It is global (not per rank): every rank of a run saves the same
/// state after the same step, and it restores onto any number of ranks with the same global
/// batch size (elastic resumption).
struct LoaderState {
  /// Text format this state was parsed from (serialize() writes the newest, 2). Version 1 (before
  /// content fingerprints) covered file paths in config_fingerprint and matched files by path: it
  /// still restores, with the data at the paths it was saved with.
  uint32_t version = 2;
  uint64_t config_fingerprint = 0;    ///< hash of everything that defines the stream (data by content, not path)
  uint64_t global_batch_size = 0;     ///< batch_size * world_size of the last batch before the save
  uint64_t batches = 0;               ///< global batches consumed
  /// Candidates (rows) consumed in those batches: the stream position. A restore with another global
  /// batch size (batch-size ramp-up) continues at this position, so no row is repeated or skipped.
  uint64_t samples = 0;
  uint64_t pass = 0;                  ///< completed passes over the blend
  bool ended = false;                 ///< the stream had ended
  std::vector<uint64_t> blend_counts; ///< candidates taken from each source in this pass
  std::vector<SourcePosition> sources;
  std::map<std::string, uint64_t> skipped;  ///< SkipCounters at that point
  std::map<std::string, std::string> extra; ///< state of later stages (selection), opaque here
  std::vector<DataFileFingerprint> files;   ///< every data file read, in source order

  /// A versioned text form ("groupmates-state 2 ..."), stable across platforms.
  std::string serialize() const;
  /// Parses serialize()'s output (also version 1 text); throws Error(kInvalidState) naming the bad field (a malformed or
  /// negative number, a number out of range, text after `end`, a truncated state).
  static LoaderState parse(const std::string& text);
  bool operator==(const LoaderState& other) const;
};

}  // namespace groupmates
