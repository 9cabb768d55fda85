// The base64 blobs of a state's extra fields (online/blob_text): text_to_blob() accepts the text
// or throws groupmates::Error; accepted text re-encodes to itself when canonical, and every byte
// string round-trips through blob_to_text().
#include <cstdint>
#include <cstdlib>
#include <string>

#include "groupmates/error.h"
#include "online/blob_text.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  if (groupmates::text_to_blob(groupmates::blob_to_text(bytes), "fuzz") != bytes) std::abort();
  try {
    const std::string blob = groupmates::text_to_blob(bytes, "fuzz");
    if (blob.size() != bytes.size() / 4 * 3 - (size >= 1 && bytes[size - 1] == '=') - (size >= 2 && bytes[size - 2] == '='))
      std::abort();
  } catch (const groupmates::Error&) {
  }
  return 0;
}
