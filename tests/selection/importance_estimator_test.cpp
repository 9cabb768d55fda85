// ImportanceEstimator (DSIR-style importance weights) against a direct computation from the
// n-gram lists: counts, add-one smoothing, the reference mixed toward the pool, padding, state.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <random>

#include "groupmates/error.h"
#include "selection/importance_estimator.h"

using namespace groupmates;

namespace {

uint64_t fresh_seed() {
  if (const char* s = std::getenv("GM_TEST_SEED")) return std::strtoull(s, nullptr, 10);
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd();
}

std::vector<int64_t> random_rows(std::mt19937_64& rng, int64_t rows, int64_t width, int64_t lo, int64_t hi) {
  std::vector<int64_t> t(size_t(rows * width));
  for (auto& x : t) x = lo + int64_t(rng() % uint64_t(hi - lo));
  return t;
}

// The definition, computed the long way from each row's n-gram buckets.
std::vector<double> reference_scores(const ImportanceEstimator& est, const std::vector<int64_t>& ref,
                                     const std::vector<std::vector<int64_t>>& observed, const std::vector<int64_t>& rows,
                                     int64_t width) {
  const ImportanceConfig& c = est.config();
  std::map<int64_t, double> rc, pc;
  double rn = 0, pn = 0;
  std::vector<int64_t> f;
  for (size_t r = 0; r < ref.size() / size_t(width); ++r) {
    f.clear();
    est.features(ref.data() + r * width, width, f);
    for (int64_t g : f) rc[g] += 1, rn += 1;
  }
  for (const auto& o : observed)
    for (size_t r = 0; r < o.size() / size_t(width); ++r) {
      f.clear();
      est.features(o.data() + r * width, width, f);
      for (int64_t g : f) pc[g] += 1, pn += 1;
    }
  std::vector<double> out;
  for (size_t r = 0; r < rows.size() / size_t(width); ++r) {
    f.clear();
    est.features(rows.data() + r * width, width, f);
    double sum = 0;
    for (int64_t g : f) {
      const double pp = (pc[g] + 1) / (pn + double(c.buckets));
      const double pr = c.reference_mix * rc[g] / rn + (1 - c.reference_mix) * pp;
      sum += std::log(pr / pp);
    }
    out.push_back(f.empty() ? 0.0 : sum / double(f.size()));
  }
  return out;
}

// A random estimator setting (buckets, n-gram order, reference mix, hash seed).
ImportanceConfig random_config(std::mt19937_64& rng) {
  ImportanceConfig c;
  c.buckets = 64 + int64_t(rng() % 500);
  c.max_ngram = 1 + int(rng() % 3);
  c.reference_mix = 0.1 + 0.9 * double(rng() % 1000) / 1000.0;
  c.seed = rng();
  return c;
}

}  // namespace

TEST(ImportanceEstimatorTest, ScoresFollowTheDefinition) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("GM_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const ImportanceConfig c = random_config(rng);
  ImportanceEstimator est(c);
  const int64_t width = 3 + int64_t(rng() % 20);
  const auto ref = random_rows(rng, 5, width, 0, 30);
  est.set_reference(ref.data(), 5, width);
  std::vector<std::vector<int64_t>> observed;
  for (int w = 0; w < 3; ++w) {
    observed.push_back(random_rows(rng, 8, width, 0, 200));
    est.observe(observed.back().data(), 8, width);
  }
  const auto rows = random_rows(rng, 10, width, 0, 200);
  const auto got = est.score(rows.data(), 10, width);
  const auto want = reference_scores(est, ref, observed, rows, width);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-12) << "row " << i;
  EXPECT_EQ(est.pool_total(), uint64_t(3 * 8) * uint64_t(c.max_ngram) * uint64_t(width) -
                                  uint64_t(3 * 8) * uint64_t(c.max_ngram * (c.max_ngram - 1) / 2));
}

TEST(ImportanceEstimatorTest, ReferenceLikeRowsScoreHigher) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("GM_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  ImportanceEstimator est;
  const int64_t width = 32;
  const auto ref = random_rows(rng, 8, width, 0, 50);       // the reference's vocabulary: 0..49
  est.set_reference(ref.data(), 8, width);
  auto like = random_rows(rng, 20, width, 0, 50);
  auto other = random_rows(rng, 20, width, 50, 1000);
  est.observe(like.data(), 20, width);
  est.observe(other.data(), 20, width);
  const auto a = est.score(like.data(), 20, width), b = est.score(other.data(), 20, width);
  double worst_like = 1e9, best_other = -1e9;
  for (double x : a) worst_like = std::min(worst_like, x);
  for (double x : b) best_other = std::max(best_other, x);
  EXPECT_GT(worst_like, best_other);
  // The prior: standardised, negated (lower = better), mean 0 and unit population std.
  std::vector<double> all(a);
  all.insert(all.end(), b.begin(), b.end());
  const auto prior = importance_prior(all);
  double m = 0, v = 0;
  for (float p : prior) m += p;
  m /= double(prior.size());
  for (float p : prior) v += (p - m) * (p - m);
  EXPECT_NEAR(m, 0.0, 1e-6);
  EXPECT_NEAR(v / double(prior.size()), 1.0, 1e-5);
  EXPECT_LT(prior[0], prior[20]);
}

TEST(ImportanceEstimatorTest, PaddingIsNeverAFeature) {
  ImportanceConfig c;
  c.pad_id = 0;
  ImportanceEstimator est(c);
  std::vector<int64_t> f1, f2;
  const std::vector<int64_t> row = {5, 6, 7, 0, 0, 0}, prefix = {5, 6, 7};
  est.features(row.data(), 6, f1);
  est.features(prefix.data(), 3, f2);
  EXPECT_EQ(f1, f2);
  EXPECT_EQ(f1.size(), 5u);  // 3 unigrams + 2 bigrams
}

TEST(ImportanceEstimatorTest, StateRoundTripsAndMismatchesAreRefused) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("GM_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  ImportanceEstimator a;
  const auto ref = random_rows(rng, 4, 16, 0, 100), pool = random_rows(rng, 16, 16, 0, 300);
  a.set_reference(ref.data(), 4, 16);
  a.observe(pool.data(), 16, 16);
  ImportanceEstimator b;
  EXPECT_FALSE(b.has_reference());
  EXPECT_THROW(b.score(pool.data(), 16, 16), Error);
  b.load(a.save());
  EXPECT_EQ(a.score(pool.data(), 16, 16), b.score(pool.data(), 16, 16));
  ImportanceConfig small;
  small.buckets = 128;
  ImportanceEstimator c(small);
  EXPECT_THROW(c.load(a.save()), Error);
  EXPECT_THROW(c.load(std::string("garbage")), Error);
  // set_reference replaces, never adds.
  a.set_reference(ref.data(), 4, 16);
  EXPECT_EQ(a.reference_total(), b.reference_total());
}

// Relevance feedback: p_ref = (1 - f) * reference + f * feedback frequencies, computed the long way.
TEST(ImportanceEstimatorTest, FeedbackFollowsTheDefinitionAndRoundTrips) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("GM_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  ImportanceConfig c = random_config(rng);
  c.feedback_weight = 0.05 + 0.9 * double(rng() % 1000) / 1000.0;
  ImportanceEstimator est(c);
  const int64_t width = 3 + int64_t(rng() % 20);
  const auto ref = random_rows(rng, 5, width, 0, 30), pool = random_rows(rng, 12, width, 0, 200),
             fb1 = random_rows(rng, 3, width, 20, 120), fb2 = random_rows(rng, 2, width, 0, 200),
             rows = random_rows(rng, 10, width, 0, 200);
  est.set_reference(ref.data(), 5, width);
  est.observe(pool.data(), 12, width);
  const auto before = est.score(rows.data(), 10, width);
  // Without feedback rows the weight does not apply: the plain definition.
  const auto plain = reference_scores(est, ref, {pool}, rows, width);
  for (size_t i = 0; i < before.size(); ++i) EXPECT_NEAR(before[i], plain[i], 1e-12) << "row " << i;
  const std::string saved_plain = est.save();
  est.add_feedback(fb1.data(), 3, width);
  est.add_feedback(fb2.data(), 2, width);
  // The long way: reference and feedback frequencies from the n-gram lists.
  std::map<int64_t, double> rc, fc, pc;
  double rn = 0, fn = 0, pn = 0;
  std::vector<int64_t> f;
  auto count = [&](const std::vector<int64_t>& t, std::map<int64_t, double>& m, double& n) {
    for (size_t r = 0; r < t.size() / size_t(width); ++r) {
      f.clear();
      est.features(t.data() + r * width, width, f);
      for (int64_t g : f) m[g] += 1, n += 1;
    }
  };
  count(ref, rc, rn);
  count(fb1, fc, fn);
  count(fb2, fc, fn);
  count(pool, pc, pn);
  EXPECT_EQ(est.feedback_total(), uint64_t(fn));
  const auto got = est.score(rows.data(), 10, width);
  for (size_t r = 0; r < 10; ++r) {
    f.clear();
    est.features(rows.data() + r * width, width, f);
    double sum = 0;
    for (int64_t g : f) {
      const double pp = (pc[g] + 1) / (pn + double(c.buckets));
      const double target = (1 - c.feedback_weight) * rc[g] / rn + c.feedback_weight * fc[g] / fn;
      sum += std::log((c.reference_mix * target + (1 - c.reference_mix) * pp) / pp);
    }
    EXPECT_NEAR(got[r], f.empty() ? 0.0 : sum / double(f.size()), 1e-12) << "row " << r;
  }
  // State: feedback counts round-trip; a state saved before any feedback loads with none.
  ImportanceEstimator b(c);
  b.load(est.save());
  EXPECT_EQ(b.feedback_total(), est.feedback_total());
  EXPECT_EQ(b.score(rows.data(), 10, width), got);
  b.load(saved_plain);
  EXPECT_EQ(b.feedback_total(), 0u);
  EXPECT_EQ(b.score(rows.data(), 10, width), before);
  std::string torn = est.save();
  torn.pop_back();
  EXPECT_THROW(b.load(torn), Error);
  ImportanceConfig bad = c;
  bad.feedback_weight = 1.0;
  EXPECT_THROW(ImportanceEstimator{bad}, Error);
}
