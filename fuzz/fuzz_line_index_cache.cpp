// A cached line index file (.NAME.gmidx): the input is the cache file, with its trailing XXH3
// recomputed and (when byte 8's low bit is set) its key taken as the expected one, so the fuzzer
// reaches the structural checks. load_line_index returns nullopt with a reason, or an index whose
// lines and frames readers can use (checked here line by line), never crashes.
#include <xxhash.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_util.h"
#include "sources/line_index_cache.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = fuzz::scratch(".gmidx");
  std::vector<uint8_t> bytes(data, data + size);
  groupmates::LineIndexKey key{1000, 7, 42, false};
  if (bytes.size() >= 12 * 8 && bytes.size() % 8 == 0) {
    uint64_t w[4];
    std::memcpy(w, bytes.data() + 16, sizeof w);
    if (bytes[8] & 1) key = {w[0], static_cast<int64_t>(w[1]), w[2], w[3] == 1};
    const uint64_t sum = XXH3_64bits(bytes.data(), bytes.size() - 8);
    std::memcpy(bytes.data() + bytes.size() - 8, &sum, 8);
  }
  fuzz::write_file(path, bytes.data(), bytes.size());
  groupmates::IndexCacheOutcome outcome;
  std::string problem;
  const auto ix = groupmates::load_line_index(path, key, &outcome, &problem);
  if (!ix) {
    if (outcome == groupmates::IndexCacheOutcome::kHit) std::abort();
    if (outcome != groupmates::IndexCacheOutcome::kBuilt && problem.empty()) std::abort();  // every rejection says why
    return 0;
  }
  for (uint64_t k = 0; k < ix->starts.size(); ++k) {
    const auto [b, e] = ix->range(k);
    if (b > e || e > ix->size) std::abort();
    if (!ix->frames.empty() && b < ix->size) {
      const size_t f = ix->frame_of(b);
      if (f >= ix->frames.size() || ix->frames[f].offset > b || ix->frames[f].offset + ix->frames[f].size <= b) std::abort();
    }
  }
  return 0;
}
