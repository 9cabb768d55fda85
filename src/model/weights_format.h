// weights_format.h (internal, no LibTorch): the format of saved influence-model weights, read and written
// by groupmates itself so that LibTorch never parses a saved byte. LibTorch's archive reader is not robust
// to damaged input: a libFuzzer run of import_weights over torch archives aborted the process within two
// minutes (std::terminate on an exception LibTorch 1.13 throws through a noexcept frame while it resolves a
// mutated archive's type names; that input is tests/data/model/torch_reader_crash.pt).
//
//   bytes  0-7   "GMWEIGHT"
//   bytes  8-15  the payload's size, uint64
//   bytes 16-23  XXH3-64 of the payload (seed 0)
//   payload      uint32 version (2) | string encoder identity | uint32 tensor count | each tensor:
//                string name | string dtype ("float32", "int64", ...) | uint32 rank | rank x int64 dims |
//                uint64 byte count | the elements, row-major
//   string       uint32 length | bytes
// All integers little-endian, as are the elements (the hosts LibTorch runs on).
//
// Weights saved before this format are a bare torch archive (a zip: "PK\3\4"): refused unless the caller
// trusts them (GROUPMATES_TRUST_TORCH_ARCHIVE=1; RelationalInfluenceModel::import_weights).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace groupmates {

/// One saved tensor: its elements are a view into the blob it was read from.
struct SavedTensor {
  std::string name;            ///< the module's parameter or buffer name, e.g. "head.weight"
  std::string dtype;           ///< "float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool"
  std::vector<int64_t> shape;  ///< dims (empty: a scalar)
  std::string_view bytes;      ///< numel x element size bytes, row-major
};

/// The content of saved weights.
struct SavedWeights {
  std::string encoder_identity;      ///< Encoder::identity() of the model that saved them
  std::vector<SavedTensor> tensors;  ///< parameters then buffers, in the module's order; names unique
};

/// Bytes per element of `dtype`, or 0 if it is not one of SavedTensor::dtype's names.
size_t element_size(std::string_view dtype);
/// The framed bytes of `weights` (a tensor's `bytes` must hold numel x element size bytes).
std::string write_weights(const SavedWeights& weights);
/// True if `blob` starts like a bare torch archive (weights saved before this format).
bool is_torch_archive(std::string_view blob);
/// Weights stored beside other weights that hold many of the same tensors (a loader state keeps up to five copies of
/// one model, each with the same ~17 MB frozen n-gram table): the tensors of `blob` that `base` holds identically
/// (name, dtype, shape, bytes) are named instead of copied. Framed like weights ("GMWDELTA", payload size, XXH3):
///   payload  uint32 version (1) | uint64 the base's checksum (its header's) | uint32 tensor count | each tensor, in
///            blob's order: string name | uint8 1 = taken from the base, 0 = in the blob below | framed weights (the
///            tensors not taken from the base, with blob's encoder identity)
/// Returns "" when either is not framed weights or no tensor is shared (then store `blob` itself).
std::string weights_delta(std::string_view blob, std::string_view base);
/// True if `blob` starts like weights_delta()'s result ("GMWDELTA").
bool is_weights_delta(std::string_view blob);
/// The blob weights_delta() was given, byte for byte, from its result and the same base. Every field checked; throws
/// Error(kCorruptData, origin, what is wrong and the fix), e.g. when `base` is not the weights it was made against.
std::string apply_weights_delta(std::string_view delta, std::string_view base, const std::string& origin);
/// Parses framed weights, every field checked (magic, size, checksum, counts, names, dtypes, shapes, byte counts,
/// nothing after the last tensor). Throws Error(kCorruptData, origin, what is wrong and the fix); `origin` names the
/// file or state field. The tensors' bytes are views into `blob`: keep it alive while they are used.
SavedWeights read_weights(std::string_view blob, const std::string& origin);

}  // namespace groupmates
