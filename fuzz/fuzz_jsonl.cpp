// JSONL lines (plain file): byte 0 picks max_line_bytes (16 << (byte % 16)); the rest is the
// file. Every line's text() returns a Problem or the text, never crashes; read() without a
// tokenizer throws Error.
#include <cstdint>

#include "fuzz_util.h"
#include "groupmates/error.h"
#include "sources/jsonl_source.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static const std::string path = fuzz::scratch(".jsonl");
  fuzz::write_file(path, data + 1, size - 1);
  groupmates::SourceConfig c;
  c.name = "fuzz";
  c.format = groupmates::SourceFormat::kJsonl;
  c.paths = {path};
  c.index_cache = false;  // every input is indexed by the parser under test (fuzz_line_index_cache: the cache)
  c.text_field = (data[0] & 0x80) ? "content" : "text";
  c.max_line_bytes = uint64_t{16} << (data[0] % 16);
  try {
    groupmates::JsonlSource src(c, groupmates::BadInputPolicy::kSkip, /*load_tokenizer=*/false);
    for (uint64_t i = 0; i < src.num_documents(); ++i) {
      std::string text, detail;
      const auto p = src.text(i, &text, &detail);
      if (p == groupmates::JsonlSource::Problem::kNone && text.empty()) std::abort();  // empty text is a problem
      if (p != groupmates::JsonlSource::Problem::kNone && detail.empty()) std::abort();  // every problem says why
      (void)src.locate(i);
    }
  } catch (const groupmates::Error&) {
  }
  return 0;
}
