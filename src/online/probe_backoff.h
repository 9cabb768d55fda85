// probe_backoff.h: skips due probes while the refresh gate keeps refusing learned models (private).
#pragma once

#include <algorithm>
#include <cstdint>

namespace groupmates {

/// Exponential back-off of oracle probes (ProbeConfig::gated_backoff_max). After n held-out checks in a
/// row refused the learned model, the next min(2^n - 1, max_skip) due probes are skipped; a published
/// learned model resets n. Probes then cost little once they have shown they cannot beat the prior,
/// and still check again now and then. Not thread-safe (OnlineSelection guards it).
class ProbeBackoff {
 public:
  explicit ProbeBackoff(uint64_t max_skip) : max_skip_(max_skip) {}

  /// A held-out check refused the learned model (the prior-only model keeps selecting).
  void refused() {
    streak_ += 1;
    const uint64_t skip = streak_ >= 63 ? ~uint64_t{0} : (uint64_t{1} << streak_) - 1;
    skip_ = std::min(skip, max_skip_);
  }
  /// A learned model was published: probes run at every due step again.
  void published() { streak_ = skip_ = 0; }
  /// Called at a due probe: true if it is to be skipped (and counts it off).
  bool skip_due() {
    if (skip_ == 0) return false;
    skip_ -= 1;
    return true;
  }

  /// Refusals in a row, and due probes still to skip (saved with the loader's state).
  uint64_t streak() const { return streak_; }
  uint64_t pending_skips() const { return skip_; }
  void restore(uint64_t streak, uint64_t pending_skips) {
    streak_ = streak;
    skip_ = pending_skips;
  }

 private:
  uint64_t max_skip_;
  uint64_t streak_ = 0, skip_ = 0;
};

}  // namespace groupmates
