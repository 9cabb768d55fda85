// RefreshGate against a straightforward reference on fresh random checks, its exact save/load, and
// InfluenceRefresher publishing through it: labels the prior already ranks perfectly keep the prior-only
// model; labels the prior knows nothing about let the learned model through.
#include "online/refresh_gate.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "common/thrown_error.h"
#include "groupmates/error.h"
#include "loader/reader_test_util.h"
#include "online/influence_model_factory.h"
#include "online/influence_refresher.h"

using namespace groupmates;

TEST(RefreshGate, DecidesByMeanHeldoutSpearmanLikeAReference) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  int decided_by_margin = 0;  // checks where the lead was positive but under the margin
  for (int run = 0; run < 50; ++run) {
    const double margin = run % 5 == 0 ? 0.0 : double(run % 4) * 0.5;
    RefreshGate gate(margin);
    EXPECT_FALSE(gate.learned_wins()) << "no check yet: the prior-only model selects";
    std::vector<double> learned, prior;
    uint64_t labels = 0;
    for (int i = 0; i < 12; ++i) {
      double a = u(rng), b = u(rng);
      if (i == 3) a = std::numeric_limits<double>::quiet_NaN();  // constant predictions: no rank information
      const uint64_t n = 1 + rng() % 40;
      gate.record(a, b, n);
      learned.push_back(std::isfinite(a) ? a : 0.0), prior.push_back(b);
      labels += n;
      double ls = 0, ps = 0;  // the reference: plain means over every check so far, a lead of margin / sqrt(labels)
      for (size_t k = 0; k < learned.size(); ++k) ls += learned[k], ps += prior[k];
      ls /= double(learned.size()), ps /= double(prior.size());
      const double need = margin / std::sqrt(double(labels));
      EXPECT_EQ(gate.learned_wins(), ls - ps > need) << "check " << i << ", margin " << margin;
      decided_by_margin += ls > ps && ls - ps <= need;
      EXPECT_NEAR(gate.required_lead(), need, 1e-12);
      EXPECT_NEAR(gate.learned_mean(), ls, 1e-12);
      EXPECT_NEAR(gate.prior_mean(), ps, 1e-12);
      EXPECT_EQ(gate.checks(), learned.size());
      EXPECT_EQ(gate.labels(), labels);
      // The saved text restores exactly (the sums are hexadecimal floats).
      gate.set_learned_published(i % 2 == 0);
      RefreshGate back(margin);
      back.load(gate.save(), "gm.gate");
      EXPECT_EQ(back.save(), gate.save());
      EXPECT_EQ(back.learned_mean(), gate.learned_mean());
      EXPECT_EQ(back.learned_wins(), gate.learned_wins());
      EXPECT_EQ(back.learned_published(), i % 2 == 0);
    }
  }
  EXPECT_GT(decided_by_margin, 0) << "the margin never mattered: the test cannot tell it from the plain comparison";
}

TEST(RefreshGate, ALeadWithinRoundingIsATie) {
  // The same picks' labels summed in another order (GM_TEST_SEED=4980918063515351885 of
  // JudgedByItsPicksKeepsThePriorWhereThePriorPicksBest: 1.2020523469298146 against ...143).
  const double a = (0.1 + 0.1) + 0.6, b = 0.1 + (0.1 + 0.6);
  ASSERT_NE(a, b) << "the two orders round alike here: the test shows nothing";
  for (const double margin : {0.0, 1.0}) {
    RefreshGate gate(margin);
    gate.record(0.83123332606870026, 0.83123332606870026, 24);
    gate.record(std::max(a, b), std::min(a, b), 24);
    EXPECT_FALSE(gate.learned_wins()) << "margin " << margin << ": a lead of " << std::max(a, b) - std::min(a, b);
  }
  RefreshGate plain;
  plain.record(1.0 + 1e-9, 1.0, 24);
  EXPECT_TRUE(plain.learned_wins()) << "a lead of 1e-9 is a lead, not rounding";
}

TEST(RefreshGate, PicksGainIsMinusTheMeanLabelOfTheLowestPredictedRows) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> few(-3, 3);  // coarse predictions: many ties
  std::normal_distribution<double> n(0, 1);
  for (int run = 0; run < 200; ++run) {
    const size_t size = 1 + rng() % 40;
    const double share = double(rng() % 101) / 100.0;
    std::vector<double> predicted, labels;
    for (size_t i = 0; i < size; ++i) predicted.push_back(few(rng)), labels.push_back(n(rng));
    // Reference: k picks (half up; at least one); take whole groups of equal predictions from the lowest
    // while they fit, then the same fraction of every row of the group at the cut.
    const double k = std::max(1.0, std::floor(share * double(size) + 0.5));
    double sum = 0, left = k;
    for (int v = -3; v <= 3 && left > 0; ++v) {
      double group = 0, count = 0;
      for (size_t i = 0; i < size; ++i)
        if (predicted[i] == v) group += labels[i], count += 1;
      if (count == 0) continue;
      const double take = std::min(left, count);
      sum += group * take / count;
      left -= take;
    }
    EXPECT_NEAR(picks_gain(predicted, labels, share), -sum / k, 1e-12) << "run " << run;
  }
  EXPECT_DOUBLE_EQ(picks_gain({3, 1, 2}, {10, -4, 6}, 0.34), 4.0);   // k = 1: the row predicted 1
  EXPECT_DOUBLE_EQ(picks_gain({3, 1, 2}, {10, -4, 6}, 0.67), -1.0);  // k = 2: rows predicted 1, 2
  EXPECT_DOUBLE_EQ(picks_gain({3, 1, 2}, {10, -4, 6}, 0.5), -1.0);   // k = round(1.5) = 2
  EXPECT_DOUBLE_EQ(picks_gain({1, 1, 1, 1}, {1, 2, 3, 6}, 0.5), -3.0);  // all tied: minus the mean of all
  EXPECT_DOUBLE_EQ(picks_gain({0, 1, 1, 2}, {4, 2, 6, 0}, 0.5), -4.0);  // 4, then half of 2 and of 6
  EXPECT_TRUE(std::isnan(picks_gain({0, std::numeric_limits<double>::quiet_NaN()}, {1, 2}, 0.5)));
  EXPECT_NE(testing_errors::error_of([] { picks_gain({1, 2}, {1}, 0.5); }, ErrorCode::kInternal).find("2 predictions for 1 labels"),
            std::string::npos);
  EXPECT_EQ(testing_errors::where_of([] { picks_gain({}, {}, 0.5); }, ErrorCode::kInternal), "picks_gain");
  EXPECT_EQ(testing_errors::where_of([] { picks_gain({1}, {1}, 1.5); }, ErrorCode::kInternal), "picks_gain");
}

TEST(RefreshGate, StateWithoutTheLabelCountLoadsAndNeedsTheFullMargin) {
  RefreshGate gate(1.0);
  gate.load("2 0x1p+0 0x1p-1 1", "gm.gate");  // saved before the label count: learned mean 0.5, prior 0.25
  EXPECT_EQ(gate.labels(), 0u);
  EXPECT_EQ(gate.checks(), 2u);
  EXPECT_TRUE(gate.learned_published());
  EXPECT_FALSE(gate.learned_wins()) << "a lead of 0.25 is under the full margin 1 while no label is counted";
  gate.record(0.5, 0.25, 100);  // leads 0.25 > 1 / sqrt(100)
  EXPECT_TRUE(gate.learned_wins());
  RefreshGate plain;  // margin 0: the plain comparison
  plain.load("2 0x1p+0 0x1p-1 1", "gm.gate");
  EXPECT_TRUE(plain.learned_wins());
}

TEST(RefreshGate, MalformedStateNamesTheKey) {
  for (const std::string bad : {"", "3 0x1p+0", "3 0x1p+0 0x1p-1 2", "3 0x1p+0 0x1p-1 1 extra", "x 1 1 0",
                                "3 nan 0x1p-1 1", "3 1e999 0 0", "3 0x1p+0 0x1p-1 1 -4", "3 0x1p+0 0x1p-1 1 12 x",
                                "3 0x1p+0 0x1p-1 1 1.5", "-3 0x1p+0 0x1p-1 1 12", "3 0x1p+0 0x1p-1 1 12 off",
                                "3 0x1p+0 0x1p-1 1 12 off 2 0 0 0", "3 0x1p+0 0x1p-1 1 12 off -2 0 0 0 0",
                                "3 0x1p+0 0x1p-1 1 12 off 2 0 0 nan 0", "3 0x1p+0 0x1p-1 1 12 on 2 0 0 0 0",
                                "3 0x1p+0 0x1p-1 1 12 0x1p+1 2 0 0 0 0", "3 0x1p+0 0x1p-1 1 12 off 2 0 0 0 0 x",
                                "3 xyz 0x1p-1 1 12 0x0p+0 2 0 0 0 0", "99999999999999999999 0 0 0 12"}) {
    for (const bool adopt : {false, true}) {  // adopting rank 0's record skips the mode check, not the parsing
      RefreshGate gate;
      try {
        gate.load(bad, "LoaderState.extra.gm.gate", adopt);
        ADD_FAILURE() << "accepted '" << bad << "'";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("gm.gate"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("edited or truncated"), std::string::npos) << e.what();
      }
    }
  }
}

// The head share: before any check the start share; after, the share with the best mean score so far (a reference
// over fresh random scores, ties to the smaller share); without shrinkage always 1; the state restores it exactly.
TEST(RefreshGate, ChoosesTheHeadShareLikeAReference) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  const auto& shares = RefreshGate::kHeadShares;
  int chose[4] = {0, 0, 0, 0};
  for (int run = 0; run < 40; ++run) {
    const double start = run % 3 == 0 ? 0.0 : run % 3 == 1 ? 0.3 : 1.0;
    RefreshGate gate(1.0, /*shrinkage=*/true, start), whole(1.0);
    EXPECT_EQ(gate.head_share(), start) << "no check yet: the start share";
    EXPECT_EQ(whole.head_share(), 1.0);
    std::vector<double> sums(shares.size(), 0.0);
    for (int i = 0; i < 8; ++i) {
      std::vector<double> scores;
      for (size_t k = 0; k < shares.size(); ++k) {
        // Coarse values so that ties happen; a NaN (constant predictions) counts as 0.
        double v = std::round(u(rng) * 4) / 4;
        if (rng() % 17 == 0) v = std::numeric_limits<double>::quiet_NaN();
        scores.push_back(v);
        sums[k] += std::isfinite(v) ? v : 0.0;
      }
      gate.record_shares(scores);
      whole.record_shares(scores);
      size_t best = 0;  // the reference: the first share whose sum is the largest
      for (size_t k = 0; k < sums.size(); ++k)
        if (sums[k] > sums[best]) best = k;
      EXPECT_EQ(gate.head_share(), shares[best]) << "check " << i;
      EXPECT_EQ(whole.head_share(), 1.0);
      for (size_t k = 0; k < sums.size(); ++k) EXPECT_NEAR(gate.share_means()[k], sums[k] / (i + 1), 1e-12);
      RefreshGate back(1.0, true, start);
      back.load(gate.save(), "gm.gate");
      EXPECT_EQ(back.save(), gate.save());
      EXPECT_EQ(back.head_share(), gate.head_share());
      chose[best] += 1;
    }
  }
  for (int k = 0; k < 4; ++k) EXPECT_GT(chose[k], 0) << "share " << shares[k] << " was never the best: a weak test";
  RefreshGate gate(0, true, 0.5);
  EXPECT_THROW(gate.record_shares({0.1, 0.2}), Error) << "a score for each share";
  gate.record(0.5, 0.1, 24);
  EXPECT_EQ(gate.head_share(), 0.5) << "a gate check without share scores leaves the start share";
}

// A state saved under other head shrinkage (off, or another start) is refused, naming the key and the fix; one
// saved before head shrinkage existed published whole heads and resumes only without it.
TEST(RefreshGate, AStateIsRefusedUnderOtherHeadShrinkage) {
  RefreshGate on(1.0, true, 0.0), off(1.0), other_start(1.0, true, 0.25);
  on.record(0.2, 0.1, 24);
  on.record_shares({0.1, 0.2, 0.3, 0.4});
  for (RefreshGate* g : {&off, &other_start}) {
    const std::string what = testing_errors::error_of([&] { g->load(on.save(), "LoaderState.extra.gm.gate"); }, ErrorCode::kInvalidState);
    EXPECT_NE(what.find("gm.gate"), std::string::npos) << what;
    EXPECT_NE(what.find("refresh_head_shrinkage"), std::string::npos) << what;
  }
  const std::string legacy = "2 0x1p+0 0x1p-1 1 48";
  const std::string what = testing_errors::error_of([&] { RefreshGate(1.0, true, 0.0).load(legacy, "gm.gate"); },
                                                     ErrorCode::kInvalidState);
  EXPECT_NE(what.find("off (whole heads published)"), std::string::npos) << what;
  off.load(legacy, "gm.gate");
  EXPECT_EQ(off.head_share(), 1.0);
  EXPECT_EQ(off.checks(), 2u);
  RefreshGate back(1.0, true, 0.0);
  back.load(on.save(), "gm.gate");
  EXPECT_EQ(back.head_share(), 1.0);
  // Start shares are compared as numbers: a record written as -0 or as 0x1.0p-1 matches a start of 0 or 0.5.
  RefreshGate zero(1.0, true, 0.0), half(1.0, true, 0.5);
  zero.load("1 0x0p+0 0x0p+0 0 24 -0x0p+0 1 0x1p-3 0 0 0", "gm.gate");
  EXPECT_EQ(zero.head_share(), 0.0);
  half.load("1 0x0p+0 0x0p+0 0 24 0x1.0p-1 1 0 0 0x1p-3 0", "gm.gate");
  EXPECT_EQ(half.head_share(), 0.5);
  EXPECT_THROW(half.load("1 0x0p+0 0x0p+0 0 24 0x1.8p-1 1 0 0 0x1p-3 0", "gm.gate"), Error) << "start 0.75 is not 0.5";
  // A record saved before head shrinkage with no check and no learned model published holds nothing shrinkage would
  // change: it loads. One that published a learned model (a gate-off run records no check) is refused.
  RefreshGate fresh(1.0, true, 0.0);
  fresh.load("0 0x0p+0 0x0p+0 0 0", "gm.gate");
  EXPECT_EQ(fresh.head_share(), 0.0);
  EXPECT_THROW(fresh.load("0 0x0p+0 0x0p+0 1 0", "gm.gate"), Error) << "a gate-off run that published whole heads";
  // Ranks other than 0 take rank 0's record as it is, its shrinkage too.
  off.load(on.save(), "the refresh gate record broadcast by rank 0", /*adopt_shrinkage=*/true);
  EXPECT_EQ(off.save(), on.save());
  EXPECT_EQ(off.head_share(), 1.0);
}

namespace {

// Rollouts of L single-row positions; row i's tokens are drawn from its own random ids; label = f(row).
std::vector<LabelledRollout> rollouts(std::mt19937_64& rng, int count, int64_t step, bool labels_from_prior,
                                      int64_t L) {
  constexpr int64_t T = 12;
  std::normal_distribution<double> n(0, 1);
  std::uniform_int_distribution<int64_t> tok(1, 200);
  std::vector<LabelledRollout> out;
  for (int g = 0; g < count; ++g) {
    LabelledRollout r;
    r.probe_step = step;
    r.tokens = torch::empty({L, 1, T}, torch::kLong);
    r.prior = torch::empty({L, 1}, torch::kFloat);
    for (int64_t t = 0; t < L; ++t) {
      // Half of the rows share a "useful" token; the label says whether the row has it.
      const bool useful = n(rng) > 0;
      for (int64_t k = 0; k < T; ++k) r.tokens[t][0][k] = useful && k % 3 == 0 ? 7 : tok(rng);
      const double prior = n(rng);
      r.prior[t][0] = static_cast<float>(prior);
      // Labels are changes of the reference loss (lower = better); u predicts them (the prior likewise).
      r.labels.push_back(labels_from_prior ? prior : (useful ? -1.0 : 1.0) + 0.01 * n(rng));
    }
    out.push_back(r);
  }
  return out;
}

struct Outcome {
  std::vector<bool> published, gated;
  double last_learned = 0, last_prior = 0, last_whole = 0;  // last_whole: the learned model with its whole head
  double last_share = -1;
};

// A small encoder and refreshes that learn these rollouts' useful token within a few probes.
SelectionConfig refresher_config(uint64_t seed) {
  SelectionConfig cfg;
  cfg.encoder_buckets = 512;
  cfg.encoder_bag_dim = 32;
  cfg.encoder_dim = 16;
  cfg.refresh_train_steps = 60;
  cfg.refresh_learning_rate = 3e-2;
  cfg.train_ngram_table = true;
  cfg.seed = seed;
  return cfg;
}

Outcome run_refreshes(uint64_t seed, bool labels_from_prior, int probes, int64_t L, double top_share = 0,
                      double margin = 1) {
  std::mt19937_64 rng(seed);
  SelectionConfig cfg = refresher_config(seed);
  cfg.refresh_gate_top_share = top_share;
  cfg.refresh_gate_margin = margin;
  auto labels = std::make_shared<LabelBuffer>(1024);
  InfluenceRefresher refresher(cfg, make_influence_model(cfg, 0), make_influence_model(cfg, 0), labels);
  Outcome o;
  for (int p = 0; p < probes; ++p) {
    for (auto& r : rollouts(rng, 24, 100 * p, labels_from_prior, L)) labels->add(r);
    const RefreshResult r = refresher.refresh(100 * p, 24);
    EXPECT_EQ(r.error, "");
    o.published.push_back(!r.weights.empty());
    o.gated.push_back(r.gated);
    if (r.heldout_measured)
      o.last_learned = r.heldout_spearman, o.last_prior = r.heldout_spearman_prior, o.last_whole = r.heldout_spearman_unshrunk;
    o.last_share = r.head_share;
  }
  return o;
}

}  // namespace

TEST(InfluenceRefresherGate, KeepsThePriorOnlyModelWhileItPredictsBetter) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  // One-step rollouts (p = u, no relations) labelled by the prior itself: u = gamma * prior ranks them
  // perfectly (Spearman 1), so no learned model can do better.
  const Outcome o = run_refreshes(seed, /*labels_from_prior=*/true, 4, /*L=*/1);
  EXPECT_NEAR(o.last_prior, 1.0, 1e-9);
  for (size_t i = 0; i < o.gated.size(); ++i) {
    EXPECT_TRUE(o.gated[i]) << "refresh " << i;
    EXPECT_FALSE(o.published[i]) << "refresh " << i << ": the prior-only model is published already";
  }
}

TEST(InfluenceRefresherGate, PublishesTheLearnedModelOnceItPredictsBetter) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  // 6 probes: with 4, about one seed in a hundred (GM_TEST_SEED=4825586921979764675) had a learned model
  // ahead by > 0.2 that the gate's margin (1 / sqrt(held-out labels)) still refused at the last refresh.
  const Outcome o = run_refreshes(seed, /*labels_from_prior=*/false, 6, /*L=*/4);
  // The first refresh has no held-out check: nothing learned is published yet.
  EXPECT_TRUE(o.gated[0]);
  EXPECT_FALSE(o.published[0]);
  // The prior is noise here (within 4 standard errors of 0 for a Spearman of 24 rollouts x 4 labels: 0.3,
  // 3 standard errors, failed for GM_TEST_SEED=12118744167174313249); the learned model finds the useful token.
  EXPECT_LT(std::fabs(o.last_prior), 4.0 / std::sqrt(24.0 * 4 - 1));
  std::printf("[gate] last check: prior %.3f, learned with share %.2f %.3f, whole head %.3f\n", o.last_prior,
              o.last_share, o.last_learned, o.last_whole);
  // Over 120 seeds the whole head led the prior by 0.32-0.94 and reached >= 0.44; untrained it sits near 0 (standard
  // error 0.10). A lead of 0.2 failed for GM_TEST_SEED=8485153109189986519, whose prior (with its relational factor)
  // reached 0.285 by chance (learned 0.465).
  EXPECT_GT(o.last_whole, 0.3);
  EXPECT_GT(o.last_whole, o.last_prior + 0.1);
  // Published with a share of the head chosen on the checks (the first one judged the start share, 0: the prior).
  EXPECT_GT(o.last_share, 0.0);
  EXPECT_GT(o.last_learned, o.last_prior);
  EXPECT_FALSE(o.gated.back());
  EXPECT_TRUE(o.published.back());
}

TEST(InfluenceRefresherGate, JudgedByItsPicksKeepsThePriorWhereThePriorPicksBest) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  const Outcome o = run_refreshes(seed, /*labels_from_prior=*/true, 4, /*L=*/1, /*top_share=*/0.5, /*margin=*/0);
  for (size_t i = 0; i < o.gated.size(); ++i) {
    EXPECT_TRUE(o.gated[i]) << "refresh " << i;
    EXPECT_FALSE(o.published[i]) << "refresh " << i;
  }
}

TEST(InfluenceRefresherGate, JudgedByItsPicksPublishesALearnedModelThatPicksBetter) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  const Outcome o = run_refreshes(seed, /*labels_from_prior=*/false, 4, /*L=*/4, /*top_share=*/0.5, /*margin=*/0);
  EXPECT_TRUE(o.gated[0]);
  EXPECT_FALSE(o.published[0]);
  EXPECT_FALSE(o.gated.back());
  EXPECT_TRUE(o.published.back());
}

namespace refgate {

// Spearman's rho by its definition: Pearson's r of the average ranks (tied values share the mean of their ranks).
double reference_spearman(const std::vector<double>& x, const std::vector<double>& y) {
  const auto ranks = [](const std::vector<double>& v) {
    std::vector<double> r(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      double below = 0, equal = 0;
      for (double w : v) below += w < v[i], equal += w == v[i];
      r[i] = below + (equal + 1) / 2;
    }
    return r;
  };
  const std::vector<double> a = ranks(x), b = ranks(y);
  double ma = 0, mb = 0;
  for (size_t i = 0; i < a.size(); ++i) ma += a[i] / a.size(), mb += b[i] / b.size();
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) ab += (a[i] - ma) * (b[i] - mb), aa += (a[i] - ma) * (a[i] - ma), bb += (b[i] - mb) * (b[i] - mb);
  return ab / std::sqrt(aa * bb);
}

}  // namespace refgate

// The held-out figure a refresh reports (SelectionStats::last_heldout_spearman) is the rank correlation of the
// working model's predictions on the newest probe's rollouts, made before it trains on them, with their measured
// labels: recomputed here from the same model by the definition; and it rises once the model has learned.
TEST(InfluenceRefresherHeldout, IsTheSpearmanOfThePredictionsOnTheFreshRolloutsBeforeTraining) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  SelectionConfig cfg = refresher_config(seed);
  cfg.refresh_gate = false;
  constexpr int64_t L = 4;
  auto labels = std::make_shared<LabelBuffer>(1024);
  auto model = make_influence_model(cfg, 0);
  InfluenceRefresher refresher(cfg, model, make_influence_model(cfg, 0), labels);
  for (int p = 0; p < 3; ++p) {
    const std::vector<LabelledRollout> fresh = rollouts(rng, 24, 100 * p, /*labels_from_prior=*/false, L);
    std::vector<torch::Tensor> tokens, priors;
    std::vector<double> measured;
    for (const auto& r : fresh) {
      labels->add(r);
      tokens.push_back(r.tokens.reshape({L, -1}));
      priors.push_back(r.prior.reshape({L}));
      measured.insert(measured.end(), r.labels.begin(), r.labels.end());
    }
    // The model's predictions with its head scaled by `share` (u = share (w.h + b) + gamma * prior when L = 1).
    const auto predicted = [&](double share) {
      torch::NoGradGuard no_grad;
      model->eval();
      const torch::Tensor w = model->head()->weight.clone(), b = model->head()->bias.clone();
      model->head()->weight.mul_(share), model->head()->bias.mul_(share);
      const torch::Tensor u =
          model->predict_rollouts(torch::stack(tokens), {}, torch::stack(priors)).to(torch::kDouble).contiguous();
      model->head()->weight.copy_(w), model->head()->bias.copy_(b);
      return std::vector<double>(u.data_ptr<double>(), u.data_ptr<double>() + u.numel());
    };
    const double share = refresher.gate().head_share();  // chosen on the checks before this one
    const std::vector<double> whole = predicted(1.0), published = predicted(share);
    const RefreshResult r = refresher.refresh(100 * p, 24);
    ASSERT_EQ(r.error, "");
    EXPECT_EQ(r.heldout_measured, p > 0) << "probe " << p << ": no check before the first refresh";
    if (p == 0) continue;
    const double expected = refgate::reference_spearman(published, measured);
    const double expected_whole = refgate::reference_spearman(whole, measured);
    std::printf("[heldout] probe %d: share %.2f spearman %.4f (reference %.4f), whole head %.4f (reference %.4f)\n", p,
                share, r.heldout_spearman, expected, r.heldout_spearman_unshrunk, expected_whole);
    EXPECT_NEAR(r.heldout_spearman, expected, 1e-9) << "probe " << p;
    EXPECT_NEAR(r.heldout_spearman_unshrunk, expected_whole, 1e-9) << "probe " << p;
    // Trained on two probes, the whole head ranks the useful rows first: over 81 seeds 0.40 to 0.77 (median 0.63), and
    // 0.295 for GM_TEST_SEED=12200082578710161569 (one of a hundred more); an untrained or mis-sliced one sits near 0
    // (standard error 1 / sqrt(95) = 0.10 for 96 labels). The share the first check chose is not asserted: a head
    // trained on one probe may lose that check to the prior (GM_TEST_SEED=10269389168522052172: -0.04 against 0.08).
    if (p == 2) EXPECT_GT(r.heldout_spearman_unshrunk, 0.25) << "the model learned nothing in two refreshes";
  }
}

// A published model carries the chosen share of the working model's head, exactly (the working model keeps its
// whole head and trains on): the start share before the first check; then, where the labels are the prior's, share
// 0 (the prior ranks them perfectly), and where only the learned head can rank them, a share above 0.
TEST(InfluenceRefresherHeadShrinkage, PublishesTheHeadScaledByTheChosenShare) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  for (const bool labels_from_prior : {true, false}) {
    std::mt19937_64 rng(seed);
    SelectionConfig cfg = refresher_config(seed);
    cfg.refresh_gate = false;  // every refresh publishes
    cfg.refresh_head_share_start = 0.5;
    auto labels = std::make_shared<LabelBuffer>(1024);
    auto model = make_influence_model(cfg, 0);
    InfluenceRefresher refresher(cfg, model, make_influence_model(cfg, 0), labels);
    for (int p = 0; p < 4; ++p) {
      for (auto& r : rollouts(rng, 24, 100 * p, labels_from_prior, 1)) labels->add(r);
      const RefreshResult r = refresher.refresh(100 * p, 24);
      ASSERT_EQ(r.error, "");
      ASSERT_FALSE(r.weights.empty());
      const double share = r.head_share;
      EXPECT_EQ(share, refresher.gate().head_share());
      if (p == 0) EXPECT_EQ(share, 0.5) << "no check yet: the start share";
      if (p == 3) EXPECT_EQ(share > 0, !labels_from_prior) << "labels from the prior: " << labels_from_prior;
      auto published = make_influence_model(cfg, 0);
      published->import_weights(r.weights, "published");
      EXPECT_GT(model->head()->weight.abs().max().item<double>(), 0.0) << "the working head trained";
      EXPECT_TRUE(torch::equal(published->head()->weight, model->head()->weight * share)) << "probe " << p;
      EXPECT_TRUE(torch::equal(published->head()->bias, model->head()->bias * share)) << "probe " << p;
      EXPECT_EQ(published->prior_weight(), model->prior_weight());
    }
    // With the gate off its record stays empty (a later resume with the gate on starts its comparison afresh);
    // the shares' scores are recorded all the same.
    EXPECT_EQ(refresher.gate().checks(), 0u);
    EXPECT_NE(refresher.gate().share_means(), std::vector<double>(4, 0.0));
  }
}

// A refresh that fails (non-finite weights, or an exception after training) leaves the working model exactly as
// it was, so the next refresh starts from the last good one: with a trained n-gram table and with a frozen one
// (whose storage the models share; the rollback copies only what a refresh can change).
TEST(InfluenceRefresherRollback, AFailedRefreshLeavesTheWorkingWeightsAsTheyWere) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  for (bool trained_table : {true, false}) {
    SCOPED_TRACE(trained_table ? "trained table" : "frozen table");
    SelectionConfig cfg = refresher_config(seed);
    cfg.train_ngram_table = trained_table;
    cfg.refresh_gate = false;
    auto labels = std::make_shared<LabelBuffer>(1024);
    const InfluenceModelFactory factory(cfg, 0);  // as the loader makes them: a frozen table is shared
    auto baseline = factory.make();
    const std::string baseline_before = baseline->export_weights();
    InfluenceRefresher refresher(cfg, factory.make(), baseline, labels);
    for (auto& r : rollouts(rng, 24, 0, /*labels_from_prior=*/false, 1)) labels->add(r);
    ASSERT_EQ(refresher.refresh(0, 24).error, "");
    const std::string before = refresher.weights();

    refresh_fault_hook = [](int64_t, RelationalInfluenceModel& model) {  // NaN into every trainable tensor
      torch::NoGradGuard no_grad;
      for (auto& p : model.parameters())
        if (p.requires_grad()) p.view(-1)[0].fill_(std::numeric_limits<float>::quiet_NaN());
    };
    for (auto& r : rollouts(rng, 24, 100, false, 1)) labels->add(r);
    const RefreshResult nan = refresher.refresh(100, 24);
    EXPECT_TRUE(nan.nonfinite) << nan.error;
    EXPECT_TRUE(nan.weights.empty());
    EXPECT_TRUE(refresher.weights() == before) << "a non-finite refresh left its weights behind";

    refresh_fault_hook = [](int64_t, RelationalInfluenceModel&) { throw std::runtime_error("injected after training"); };
    for (auto& r : rollouts(rng, 24, 200, false, 1)) labels->add(r);
    const RefreshResult thrown = refresher.refresh(200, 24);
    refresh_fault_hook = nullptr;
    EXPECT_NE(thrown.error.find("injected after training"), std::string::npos) << thrown.error;
    EXPECT_TRUE(refresher.weights() == before) << "a failed refresh left its training behind";

    for (auto& r : rollouts(rng, 24, 300, false, 1)) labels->add(r);
    EXPECT_EQ(refresher.refresh(300, 24).error, "");
    EXPECT_FALSE(refresher.weights() == before) << "the next refresh trains again";
    EXPECT_TRUE(baseline->export_weights() == baseline_before) << "the prior-only model changed";
    EXPECT_TRUE(factory.make()->export_weights() == baseline_before) << "a model made now is not the initial one";
  }
}
