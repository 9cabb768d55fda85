// weights_envelope.h (internal, no LibTorch): the checksummed frame around saved influence-model weights,
// so that corrupt bytes are refused before LibTorch's archive reader sees them (that reader is not robust to
// corrupt input: a libFuzzer run of import_weights on bare archives aborted the process within two minutes,
// std::terminate on an exception LibTorch 1.13 throws through a noexcept frame while it resolves a mutated
// archive's type names; that input is tests/data/model/torch_reader_crash.pt).
//
//   bytes  0-7   "GMWEIGHT"
//   bytes  8-15  the payload's size, uint64 little-endian
//   bytes 16-23  XXH3-64 of the payload (seed 0), little-endian
//   bytes 24-    the payload: a torch archive (RelationalInfluenceModel::export_weights)
//
// Weights saved before the frame are a bare torch archive (a zip: "PK\3\4"); they are still accepted,
// unverified.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace groupmates {

/// The payload of a blob, and whether a checksum vouched for it.
struct UnwrappedWeights {
  std::string_view archive;  ///< the torch archive (a view into the blob given to unwrap_weights)
  bool verified = false;     ///< false: a bare archive saved before the frame
};

/// `archive` inside the frame.
std::string wrap_weights(std::string_view archive);
/// The archive inside `blob`, its frame checked (magic, size, checksum); a bare torch archive is returned as is.
/// Throws Error(kCorruptData, origin, what is wrong and the fix) otherwise; `origin` names the file or field.
UnwrappedWeights unwrap_weights(std::string_view blob, const std::string& origin);

}  // namespace groupmates
