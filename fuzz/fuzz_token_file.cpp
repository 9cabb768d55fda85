// Flat token files: byte 0 picks the dtype and byte 1 the window; the rest is the file. Opening
// succeeds or throws groupmates::Error; every window lies inside the file, windows plus the tail
// account for every token.
#include <cstdint>
#include <cstdlib>

#include "fuzz_util.h"
#include "groupmates/error.h"
#include "sources/token_file_source.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  static const std::string path = fuzz::scratch(".tok");
  const bool wide = data[0] & 1;
  const uint32_t window = data[1];  // 0 is an error case too
  fuzz::write_file(path, data + 2, size - 2);
  groupmates::SourceConfig c;
  c.format = groupmates::SourceFormat::kTokenFile;
  c.dtype = wide ? groupmates::TokenDtype::kUint32 : groupmates::TokenDtype::kUint16;
  c.paths = {path};
  try {
    groupmates::TokenFileSource src(c, window);
    const uint64_t width = wide ? 4 : 2, tokens = (size - 2) / width;
    if (src.num_windows() * window + src.tail_tokens() != tokens) std::abort();
    uint64_t sum = 0;  // unsigned: wraps instead of overflowing (as in fuzz_megatron_idx)
    for (uint64_t k = 0; k < src.num_windows(); ++k) {
      const auto v = src.window(k);
      for (uint64_t i = 0; i < v.size; ++i) sum += static_cast<uint64_t>(v.at(i));
    }
    fuzz::keep(sum);
  } catch (const groupmates::Error&) {
  }
  return 0;
}
