// util/stopwatch.h: wall-clock seconds on the monotonic clock (std::chrono::steady_clock), the one
// copy of the "now minus then, in seconds" code that timings, benchmarks and tests share.
#pragma once

#include <chrono>

namespace groupmates {
namespace util {

/// Seconds since an arbitrary, fixed epoch of the monotonic clock: for differences only.
inline double monotonic_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// Starts on construction; seconds() reads the time since then, lap() reads it and restarts.
class Stopwatch {
 public:
  using Clock = std::chrono::steady_clock;

  Stopwatch() : start_(Clock::now()) {}
  /// Seconds since construction or the last restart()/lap().
  double seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }
  /// Starts again from now.
  void restart() { start_ = Clock::now(); }
  /// seconds(), then restart() (from the same instant, so laps add up to the total).
  double lap() {
    const Clock::time_point t = Clock::now();
    const double s = std::chrono::duration<double>(t - start_).count();
    start_ = t;
    return s;
  }
  Clock::time_point start() const { return start_; }

 private:
  Clock::time_point start_;
};

}  // namespace util
}  // namespace groupmates
