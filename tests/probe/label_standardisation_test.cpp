// Per-probe label standardisation against a straightforward reference on fresh random labels.
#include "probe/label_standardisation.h"

#include <gtest/gtest.h>

#include "common/test_seed.h"

#include <algorithm>
#include <cmath>
#include <random>

using namespace groupmates;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The straightforward reference: raw standardised by median and 1.4826 * MAD, or mean and std.
std::vector<double> reference_standardise(const std::vector<double>& raw, bool robust) {
  double centre = 0, scale = 0;
  if (robust) {
    centre = median(raw);
    std::vector<double> dev;
    for (double y : raw) dev.push_back(std::fabs(y - centre));
    scale = 1.4826 * median(dev);
  } else {
    for (double y : raw) centre += y;
    centre /= raw.size();
    for (double y : raw) scale += (y - centre) * (y - centre);
    scale = std::sqrt(scale / raw.size());
  }
  std::vector<double> out;
  for (double y : raw) out.push_back((y - centre) / scale);
  return out;
}

}  // namespace

TEST(LabelStandardisation, EachProbeByItsOwnMedianAndMad) {
  const uint64_t seed = testing_seed::fresh();
  SCOPED_TRACE(testing_seed::trace(seed));
  std::mt19937_64 rng(seed);
  std::vector<LabelledRollout> entries;
  const std::vector<double> scales = {3e-2, 2e-3, 7e-4};  // label scale falls as training goes on
  for (int i = 0; i < 30; ++i) {
    LabelledRollout r;
    r.probe_step = 100 * (i % 3);
    std::normal_distribution<double> d(-scales[i % 3], scales[i % 3]);
    for (int t = 0; t < 5; ++t) r.labels.push_back(d(rng));
    entries.push_back(r);
  }
  for (bool robust : {true, false}) {
    const std::vector<double> out = standardise_per_probe(entries, robust);
    ASSERT_EQ(out.size(), 150u);
    for (int64_t step : {0, 100, 200}) {
      std::vector<double> raw, got;
      for (size_t i = 0; i < entries.size(); ++i)
        if (entries[i].probe_step == step)
          for (int t = 0; t < 5; ++t) raw.push_back(entries[i].labels[t]), got.push_back(out[i * 5 + t]);
      const std::vector<double> want = reference_standardise(raw, robust);
      for (size_t k = 0; k < raw.size(); ++k) EXPECT_NEAR(got[k], want[k], 1e-9) << "step " << step;
    }
  }
}

TEST(LabelStandardisation, PerProbeAndPosition) {
  const uint64_t seed = testing_seed::fresh();
  SCOPED_TRACE(testing_seed::trace(seed));
  std::mt19937_64 rng(seed);
  std::vector<LabelledRollout> entries;
  const int L = 6;
  for (int i = 0; i < 40; ++i) {
    LabelledRollout r;
    r.probe_step = 50 * (i % 2);
    for (int t = 0; t < L; ++t) {  // a drift with t and a scale per probe, as real probes show
      std::normal_distribution<double> d(-0.03 + 0.01 * t, (i % 2 ? 1e-3 : 1e-2) * (1 + t));
      r.labels.push_back(d(rng));
    }
    entries.push_back(r);
  }
  for (bool robust : {true, false}) {
    const std::vector<double> out = standardise_per_probe(entries, robust, /*per_position=*/true);
    ASSERT_EQ(out.size(), entries.size() * L);
    for (int64_t step : {0, 50})
      for (int t = 0; t < L; ++t) {
        std::vector<double> raw, got;
        for (size_t i = 0; i < entries.size(); ++i)
          if (entries[i].probe_step == step) raw.push_back(entries[i].labels[t]), got.push_back(out[i * L + t]);
        const std::vector<double> want = reference_standardise(raw, robust);
        for (size_t k = 0; k < raw.size(); ++k) EXPECT_NEAR(got[k], want[k], 1e-9) << "step " << step << " t " << t;
      }
  }
  // Per probe only, the drift survives standardisation: position 0 is below position L-1.
  const std::vector<double> flat = standardise_per_probe(entries, true, false);
  double first = 0, last = 0;
  for (size_t i = 0; i < entries.size(); ++i) first += flat[i * L], last += flat[i * L + L - 1];
  EXPECT_LT(first, last);
}

TEST(LabelStandardisation, ConstantLabelsKeepScaleOne) {
  LabelledRollout r;
  r.probe_step = 7;
  r.labels = {0.5, 0.5, 0.5};
  const std::vector<double> out = standardise_per_probe({r}, true);
  for (double y : out) EXPECT_EQ(y, 0.0);
}
