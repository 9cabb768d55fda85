// Saved influence-model weights (src/model/weights_envelope): unwrap_weights() returns the archive inside a
// frame whose size and checksum match, a bare torch archive (saved before the frame) as is, or throws
// groupmates::Error; what it returns lies inside the input, a verified archive framed again gives the input
// back, and every byte string framed unwraps to itself. (The archive's own reader is LibTorch's, reached only
// through a matching checksum or a bare archive: not fuzzed here, see weights_envelope.h.)
#include <cstdint>
#include <cstdlib>
#include <string>

#include "groupmates/error.h"
#include "model/weights_envelope.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const std::string framed = groupmates::wrap_weights(bytes);  // outlives the view unwrap_weights returns
  const groupmates::UnwrappedWeights round = groupmates::unwrap_weights(framed, "fuzz");
  if (!round.verified || round.archive != bytes) std::abort();
  try {
    const groupmates::UnwrappedWeights u = groupmates::unwrap_weights(bytes, "fuzz");
    if (u.archive.data() < bytes.data() || u.archive.data() + u.archive.size() > bytes.data() + bytes.size()) std::abort();
    if (u.verified ? groupmates::wrap_weights(u.archive) != bytes : u.archive.size() != bytes.size()) std::abort();
  } catch (const groupmates::Error&) {
  }
  return 0;
}
