// megatron_source.h: Megatron-LM indexed dataset reader (PREFIX.idx + PREFIX.bin, MMIDIDX v1).
//
// .idx layout (little-endian): 9-byte magic "MMIDIDX\0\0", uint64 version (1), uint8 dtype code,
// uint64 sequence count N, uint64 document count D, int32 sizes[N] (tokens per sequence),
// int64 pointers[N] (byte offsets in .bin), int64 document_indices[D]. Each sequence is one
// document. Both files are memory-mapped; opening checks only what is O(1) (magic, version,
// dtype, exact .idx size, .bin present, the last sequence inside the .bin) and never walks the
// arrays. Each document's bounds are checked when it is read.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sources/document_source.h"
#include "groupmates/config.h"
#include "stream/token_view.h"

namespace groupmates {

class MappedFile;

/// Megatron dtype code -> token width. Returns false (and leaves *width alone) for float codes,
/// int8 (no TokenWidth for it) and unknown codes.
bool megatron_dtype_width(uint8_t code, TokenWidth* width);
/// "uint16", "int32", "float64", ... or "unknown".
const char* megatron_dtype_name(uint8_t code);

class MegatronSource : public DocumentSource {
 public:
  /// Opens every prefix in config.paths ("data/wiki" for data/wiki.idx + data/wiki.bin; a
  /// trailing ".bin"/".idx" is tolerated). Throws Error(kIo) for a missing/unreadable file,
  /// Error(kCorruptData) for a bad header, a truncated .idx/.bin or a file with no documents.
  MegatronSource(const SourceConfig& config, BadInputPolicy policy);
  ~MegatronSource() override;

  uint64_t num_documents() const override;
  /// Checks the document's bounds in its .bin (negative size, misaligned or out-of-range pointer);
  /// a bad one throws Error(kCorruptData) under kFail, or is counted in `skips` (reasons
  /// corrupt_index / out_of_bounds) and returned skipped under kSkip. A 0-token sequence is not
  /// an error here: it comes back as an empty view (the document cursor decides what to do).
  Document read(uint64_t i, SkipCounters& skips) const override;
  /// "PREFIX.bin:byte OFFSET (document i)".
  std::string locate(uint64_t i) const override;
  uint64_t fingerprint() const override;
  uint64_t path_fingerprint() const override;
  std::vector<DataFileFingerprint> data_files() const override;

  /// Raw index entry of document i (unchecked values straight from the .idx).
  struct Entry {
    uint32_t file = 0;      ///< index of the prefix in config.paths
    uint64_t local = 0;     ///< sequence number within that prefix
    int64_t size = 0;       ///< tokens
    int64_t pointer = 0;    ///< byte offset in the .bin
  };
  Entry entry(uint64_t i) const;
  /// Empty if document i is readable, else the problem; `*reason` gets the skip reason key.
  std::string check(uint64_t i, std::string* reason = nullptr) const;

  uint32_t num_files() const;
  /// Prefix (without .idx/.bin) of file f.
  const std::string& prefix(uint32_t f) const;
  TokenWidth width(uint32_t f) const;
  uint8_t dtype_code(uint32_t f) const;
  uint64_t bin_size(uint32_t f) const;
  /// Number of documents of file f.
  uint64_t file_documents(uint32_t f) const;
  /// The number of document (D) entries in file f's .idx header.
  uint64_t file_document_index_count(uint32_t f) const;

 private:
  struct File;
  std::vector<std::unique_ptr<File>> files_;
  std::vector<uint64_t> first_doc_;  // size files+1
  std::string source_name_;
  BadInputPolicy policy_;
  uint64_t fingerprint_ = 0;       // by content (sizes, counts, sampled hashes), in file order
  uint64_t path_fingerprint_ = 0;  // version 1's: the same with each path
  std::vector<DataFileFingerprint> data_files_;
};

}  // namespace groupmates
