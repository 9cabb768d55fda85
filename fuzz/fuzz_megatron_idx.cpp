// Megatron .idx (MMIDIDX v1): the input is the index; the .bin is 4 KiB of fixed bytes. Opening
// must either succeed or throw groupmates::Error; every document then reads (or is skipped and
// counted under kSkip, or throws Error under kFail) and its tokens lie inside the .bin.
#include <cstdint>
#include <vector>

#include "fuzz_util.h"
#include "groupmates/error.h"
#include "sources/megatron_source.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string prefix = fuzz::scratch("_mega");
  static const bool bin_written = [] {
    std::vector<uint8_t> bin(4096);
    for (size_t i = 0; i < bin.size(); ++i) bin[i] = static_cast<uint8_t>(i * 7);
    fuzz::write_file(prefix + ".bin", bin.data(), bin.size());
    return true;
  }();
  (void)bin_written;
  fuzz::write_file(prefix + ".idx", data, size);
  groupmates::SourceConfig c;
  c.name = "fuzz";
  c.format = groupmates::SourceFormat::kMegatron;
  c.paths = {prefix};
  for (auto policy : {groupmates::BadInputPolicy::kSkip, groupmates::BadInputPolicy::kFail}) {
    try {
      groupmates::MegatronSource src(c, policy);
      groupmates::SkipCounters skips;
      const uint64_t n = std::min<uint64_t>(src.num_documents(), 4096);
      for (uint64_t i = 0; i < n; ++i) {
        try {
          const groupmates::Document d = src.read(i, skips);
          // Unsigned, so the sum wraps: int64 tokens (dtype 5) of any value are valid data, and a
          // signed sum overflowed on them (the harness's own UB, found by `make fuzz`; regression kept).
          uint64_t sum = 0;
          for (uint64_t k = 0; k < d.tokens.size; ++k) sum += static_cast<uint64_t>(d.tokens.at(k));  // ASan checks the bounds
          (void)src.locate(i);
          fuzz::keep(sum);
        } catch (const groupmates::Error&) {
          if (policy == groupmates::BadInputPolicy::kSkip) throw;  // kSkip never throws for a bad entry
        }
      }
      (void)src.data_files();
    } catch (const groupmates::Error&) {
    }
  }
  return 0;
}
