// zstd frames of a .jsonl.zst: the input is the compressed file. Decompression succeeds (and the
// lines index) or throws groupmates::Error naming the file; run with a small -max_len (a zstd
// frame of n bytes can legitimately expand ~30000x).
#include <cstdint>

#include "fuzz_util.h"
#include "groupmates/error.h"
#include "sources/jsonl_source.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = fuzz::scratch(".jsonl.zst");
  fuzz::write_file(path, data, size);
  groupmates::SourceConfig c;
  c.name = "fuzz";
  c.format = groupmates::SourceFormat::kJsonl;
  c.paths = {path};
  c.index_cache = false;  // every input is indexed by the parser under test (fuzz_line_index_cache: the cache)
  try {
    groupmates::JsonlSource src(c, groupmates::BadInputPolicy::kSkip, /*load_tokenizer=*/false);
    const uint64_t n = std::min<uint64_t>(src.num_documents(), 256);
    for (uint64_t i = 0; i < n; ++i) {
      std::string text;
      (void)src.text(i, &text);
    }
  } catch (const groupmates::Error&) {
  }
  return 0;
}
