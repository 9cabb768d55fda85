// candidate_plan.h: what to copy to build one candidate row, decided by the sequential planner
// and executed by a worker.
#pragma once

#include <cstdint>
#include <vector>

#include "groupmates/candidate_id.h"
#include "stream/token_view.h"

namespace groupmates {

/// A run of tokens to copy, or `fill_count` copies of `fill` (EOS separator, padding).
/// `document`/`offset` locate `tokens` in its source, for error messages.
struct Segment {
  TokenView tokens;
  uint64_t document = 0;
  uint64_t offset = 0;
  int64_t fill = 0;
  uint64_t fill_count = 0;
};

/// One candidate: its id and the segments that make its sequence_length tokens, in order.
struct CandidatePlan {
  CandidateId id;
  std::vector<Segment> segments;
};

}  // namespace groupmates
