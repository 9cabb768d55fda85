// groupmates/candidate_id.h: the stable identity of a candidate sequence. No LibTorch here.
#pragma once

#include <cstdint>

namespace groupmates {

/// Where a candidate sequence starts: source index, document (file index for flat token files),
/// token offset in that document; `hash` is XXH3 of (source name, document, offset), stable
/// across runs, thread counts and rank counts.
struct CandidateId {
  uint64_t hash = 0;
  uint32_t source = 0;
  uint64_t document = 0;
  uint64_t offset = 0;
};

}  // namespace groupmates
