// util::Stopwatch and monotonic_seconds: monotonic, at least the time slept, laps add up.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "util/stopwatch.h"

namespace groupmates {
namespace util {
namespace {

using namespace std::chrono_literals;

TEST(Stopwatch, MeasuresAtLeastTheTimeSlept) {
  Stopwatch total;
  const double t0 = monotonic_seconds();
  std::this_thread::sleep_for(20ms);
  const double s = total.seconds();
  EXPECT_GE(s, 0.020);
  EXPECT_LT(s, 10.0);
  EXPECT_GE(monotonic_seconds() - t0, 0.020);
  EXPECT_GE(total.seconds(), s);  // never goes back
}

TEST(Stopwatch, LapsRestartAndAddUpToTheTotal) {
  Stopwatch total, laps;
  double sum = 0;
  for (int i = 0; i < 5; ++i) {
    std::this_thread::sleep_for(5ms);
    const double lap = laps.lap();
    EXPECT_GE(lap, 0.005);
    sum += lap;
  }
  const double all = total.seconds();
  EXPECT_LE(sum, all);
  EXPECT_NEAR(sum, all, 0.05);
  laps.restart();
  EXPECT_LT(laps.seconds(), sum);
}

}  // namespace
}  // namespace util
}  // namespace groupmates
