// Saved influence-model weights (src/model/weights_format): read_weights() returns the named tensors of
// well-formed weights or throws groupmates::Error; it never reads outside the input; what it accepts is
// written back to the same bytes by write_weights(). Each input is parsed as is and as a payload under a frame
// with its true checksum (so the payload parser sees every mutation), and a valid blob built from it must read
// back to its parts. Deltas (weights_delta(): weights saved as the tensors they do not share with a base): the
// input as a delta's tensor list and own tensors against a fixed base, framed with the true checksums, is applied or
// refused with groupmates::Error, and what applies reads as weights; a delta made from the input's weights applies
// back to them byte for byte. (A bare torch archive, the format before, is refused here; LibTorch reads one only
// when the user sets GROUPMATES_TRUST_TORCH_ARCHIVE=1, see weights_format.h.)
#include <cstdint>
#include <cstdlib>
#include <string>

#include <xxhash.h>

#include "groupmates/error.h"
#include "model/weights_format.h"
#include "weights_delta_base.h"

namespace {

// Parses `blob`; what it accepts lies inside it and is written back to the same bytes.
void parse(const std::string& blob) {
  try {
    const groupmates::SavedWeights w = groupmates::read_weights(blob, "fuzz");
    for (const auto& t : w.tensors)
      if (t.bytes.data() < blob.data() || t.bytes.data() + t.bytes.size() > blob.data() + blob.size()) std::abort();
    if (groupmates::write_weights(w) != blob) std::abort();
  } catch (const groupmates::Error&) {
  }
}

void put_le(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out += static_cast<char>(v >> (8 * i));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  parse(bytes);
  // The input's payload (after a seed's 24-byte header, or all of it) under a frame with its true size and checksum:
  // the payload's parser gets every mutation, not only those that happen to keep the checksum.
  const std::string payload = size >= 24 && bytes.compare(0, 8, "GMWEIGHT") == 0 ? bytes.substr(24) : bytes;
  std::string framed = "GMWEIGHT";
  put_le(framed, payload.size());
  put_le(framed, XXH3_64bits(payload.data(), payload.size()));
  parse(framed + payload);
  // The input as one tensor's elements (and its first bytes as names): written, it must read back.
  groupmates::SavedWeights made;
  made.encoder_identity = bytes.substr(0, size % 7);
  groupmates::SavedTensor t;
  t.name = "t" + bytes.substr(0, size % 5);
  t.dtype = "uint8";
  t.shape = {static_cast<int64_t>(size)};
  t.bytes = bytes;
  made.tensors.push_back(t);
  const std::string written = groupmates::write_weights(made);
  const groupmates::SavedWeights back = groupmates::read_weights(written, "fuzz");
  if (back.encoder_identity != made.encoder_identity || back.tensors.size() != 1 || back.tensors[0].name != t.name ||
      back.tensors[0].shape != t.shape || back.tensors[0].bytes != bytes)
    std::abort();
  // Deltas. The input after a seed's header, version and base checksum (36 bytes), or all of it, as the tensor list
  // and own tensors of a delta against the fixed base, framed with the true checksums: the delta's, and the own
  // tensors' frame (the first "GMWEIGHT" in it) given its true size and checksum too.
  static const std::string base = fuzzdelta::base();
  std::string rest = size >= 36 && groupmates::is_weights_delta(bytes) ? bytes.substr(36) : bytes;
  const size_t inner = rest.find("GMWEIGHT");
  if (inner != std::string::npos && rest.size() - inner >= 24) {
    const std::string inner_payload = rest.substr(inner + 24);
    std::string header;
    put_le(header, inner_payload.size());
    put_le(header, XXH3_64bits(inner_payload.data(), inner_payload.size()));
    rest.replace(inner + 8, 16, header);
  }
  std::string dpayload(reinterpret_cast<const char*>("\x01\0\0\0"), 4);
  put_le(dpayload, XXH3_64bits(base.data() + 24, base.size() - 24));
  dpayload += rest;
  std::string delta = "GMWDELTA";
  put_le(delta, dpayload.size());
  put_le(delta, XXH3_64bits(dpayload.data(), dpayload.size()));
  delta += dpayload;
  std::string applied;
  try {
    applied = groupmates::apply_weights_delta(delta, base, "fuzz");
  } catch (const groupmates::Error&) {
  }
  if (!applied.empty()) {  // what applies is weights (read_weights must not throw), and its delta applies back
    groupmates::read_weights(applied, "fuzz applied");
    const std::string again = groupmates::weights_delta(applied, base);
    if (!again.empty() && groupmates::apply_weights_delta(again, base, "fuzz") != applied) std::abort();
  }
  try {
    groupmates::apply_weights_delta(bytes, base, "fuzz");  // as is: refused or applied, never a crash
  } catch (const groupmates::Error&) {
  }
  // The input's weights beside a base holding the same tensor and another: the delta applies back byte for byte.
  groupmates::SavedWeights with_other = made;
  const std::string other(3, '\x11');
  with_other.tensors.push_back(groupmates::SavedTensor{"other." + t.name, "uint8", {3}, other});
  const std::string base2 = groupmates::write_weights(with_other);
  const std::string d = groupmates::weights_delta(written, base2);
  if (d.empty() || groupmates::apply_weights_delta(d, base2, "fuzz") != written) std::abort();
  return 0;
}
