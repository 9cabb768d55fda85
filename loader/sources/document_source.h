// document_source.h: random access to the documents of one source (Megatron .bin/.idx, JSONL).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "groupmates/loader_state.h"

#include "groupmates/config.h"
#include "stream/skip_counters.h"
#include "stream/token_view.h"

namespace groupmates {

/// One document's tokens, or why it was skipped.
struct Document {
  TokenView tokens;     ///< valid when !skipped
  bool skipped = false; ///< true when the record was bad and the policy is kSkip (already counted)
};

/// A source whose unit is the document. Documents are numbered 0..num_documents()-1 across all
/// of the source's files, in file order. Opening is cheap (maps files, reads headers, never
/// walks a whole index); read() is thread-safe.
class DocumentSource {
 public:
  virtual ~DocumentSource() = default;
  /// Number of documents (records) over all files.
  virtual uint64_t num_documents() const = 0;
  /// Tokens of document i; for kSkip policy a bad record comes back skipped (and counted in
  /// `skips`), for kFail it throws Error naming the file and line/offset.
  virtual Document read(uint64_t i, SkipCounters& skips) const = 0;
  /// "path:line N" or "path.bin:byte OFFSET" of document i, for messages.
  virtual std::string locate(uint64_t i) const = 0;
  /// A hash of what was opened (paths, sizes, counts); a saved state must match it.
  virtual uint64_t fingerprint() const = 0;
  /// Every file read, with its size and sampled content hash (also mixed into fingerprint()).
  virtual std::vector<DataFileFingerprint> data_files() const = 0;
};

/// Opens a kMegatron or kJsonl source. Throws Error (kIo / kCorruptData / kInvalidConfig).
std::unique_ptr<DocumentSource> open_document_source(const SourceConfig& config, BadInputPolicy policy);

}  // namespace groupmates
