// The LoaderState text: parse() accepts it or throws groupmates::Error; what it accepts
// serializes and parses back to an equal state (and the same text).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "groupmates/error.h"
#include "groupmates/loader_state.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  groupmates::LoaderState s;
  try {
    s = groupmates::LoaderState::parse(text);
  } catch (const groupmates::Error&) {
    return 0;
  }
  const std::string once = s.serialize();
  const groupmates::LoaderState back = groupmates::LoaderState::parse(once);  // must not throw
  if (!(back == s)) std::abort();
  if (back.serialize() != once) std::abort();
  return 0;
}
