#include "stream/blend_schedule.h"

#include <numeric>

#include "groupmates/error.h"

namespace groupmates {

BlendSchedule::BlendSchedule(const std::vector<double>& weights) : weights_(weights), counts_(weights.size(), 0) {
  const double sum = std::accumulate(weights.begin(), weights.end(), 0.0);
  for (double& w : weights_) w /= sum;
}

uint32_t BlendSchedule::peek() const {
  uint32_t best = 0;
  double best_error = -1e300;
  for (uint32_t s = 0; s < weights_.size(); ++s) {
    const double error = weights_[s] * static_cast<double>(total_ + 1) - static_cast<double>(counts_[s]);
    if (error > best_error) {
      best_error = error;
      best = s;
    }
  }
  return best;
}

void BlendSchedule::commit(uint32_t source) {
  ++counts_[source];
  ++total_;
}

void BlendSchedule::reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  total_ = 0;
}

void BlendSchedule::set_counts(const std::vector<uint64_t>& counts) {
  if (counts.size() != counts_.size())
    throw Error(ErrorCode::kInvalidState, "", "saved blend has " + std::to_string(counts.size()) +
                                                  " sources, the config has " + std::to_string(counts_.size()));
  counts_ = counts;
  total_ = std::accumulate(counts.begin(), counts.end(), uint64_t{0});
}

}  // namespace groupmates
