// Rollout policies (random, neighbour, bootstrap beam search vs brute force), label statistics
// and the label buffer (bounds, sampling, save/load).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <set>
#include <vector>

#include <gtest/gtest.h>
#include <torch/types.h>

#include "groupmates/error.h"
#include "groupmates/engine/hashed_ngram_encoder.h"
#include "groupmates/engine/influence_model.h"
#include "groupmates/engine/oracle_prober.h"
#include "groupmates/engine/rollout_policy.h"
#include "groupmates/engine/label_buffer.h"

namespace groupmates {
namespace {

void expect_valid(const std::vector<RolloutPlan>& plans, int64_t pool, int64_t n) {
  for (const auto& p : plans) {
    ASSERT_EQ(static_cast<int64_t>(p.candidates.size()), n);
    std::set<int64_t> distinct(p.candidates.begin(), p.candidates.end());
    EXPECT_EQ(static_cast<int64_t>(distinct.size()), n);
    for (int64_t c : p.candidates) {
      EXPECT_GE(c, 0);
      EXPECT_LT(c, pool);
    }
  }
}

TEST(RolloutPolicy, RandomIsDistinctAndSeeded) {
  const auto a = random_rollouts(50, 20, 10, 1, 3), b = random_rollouts(50, 20, 10, 1, 3),
             c = random_rollouts(50, 20, 5, 2, 4);
  ASSERT_EQ(a.size(), 20u);
  expect_valid(a, 50, 10);
  expect_valid(c, 50, 10);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].candidates, b[i].candidates);
  EXPECT_NE(a[0].candidates, c[0].candidates);
  EXPECT_THROW(random_rollouts(5, 1, 10, 1, 0), Error);
}

TEST(RolloutPolicy, ClusterNeighboursShareACluster) {
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < 60; ++i) ids.push_back(i % 4 == 3 ? 100 + i : i % 3);  // 3 big clusters + singletons
  const torch::Tensor cluster_ids = torch::tensor(ids, torch::kInt64);
  const auto plans = cluster_neighbour_rollouts(cluster_ids, 12, 4, 1, 9);
  ASSERT_EQ(plans.size(), 12u);
  expect_valid(plans, 60, 4);
  for (const auto& p : plans) {
    EXPECT_EQ(p.kind, RolloutKind::kNeighbour);
    for (int64_t c : p.candidates) EXPECT_EQ(ids[c], ids[p.candidates[0]]);
  }
  // A cluster smaller than a rollout: filled from the others, still distinct.
  const auto filled = cluster_neighbour_rollouts(torch::tensor({0, 0, 1, 2, 3, 4}, torch::kInt64), 3, 4, 1, 1);
  expect_valid(filled, 6, 4);
  for (const auto& p : filled) EXPECT_EQ(std::count_if(p.candidates.begin(), p.candidates.end(), [](int64_t c) { return c < 2; }), 2);
  EXPECT_TRUE(cluster_neighbour_rollouts(torch::arange(10, torch::kInt64), 3, 2, 1, 1).empty());
}

TEST(RolloutPolicy, EmbeddingNeighboursAreNearest) {
  // Three tight groups of 8 around orthogonal directions.
  auto gen = at::detail::createCPUGenerator(5);
  torch::Tensor e = torch::zeros({24, 6});
  for (int64_t i = 0; i < 24; ++i) e[i][i % 3].fill_(1.0);
  e += 0.05 * torch::randn({24, 6}, gen);
  const auto plans = embedding_neighbour_rollouts(e, 10, 4, 2, 2);
  expect_valid(plans, 24, 8);
  for (const auto& p : plans)
    for (int64_t c : p.candidates) EXPECT_EQ(c % 3, p.candidates[0] % 3);
}

std::shared_ptr<RelationalInfluenceModel> small_model(uint64_t seed) {
  HashedNgramEncoderConfig ec;
  ec.num_buckets = 64;
  ec.embed_dim = 8;
  ec.hidden_dim = 8;
  ec.out_dim = 8;
  torch::manual_seed(seed);
  auto model = std::make_shared<RelationalInfluenceModel>(std::make_shared<HashedNgramEncoder>(ec));
  torch::NoGradGuard no_grad;
  model->head()->weight.normal_(0, 1.0);
  model->head()->bias.fill_(0.2);
  model->tau_tensor().fill_(0.7);
  model->alpha_tensor().fill_(1.3);
  return model;
}

/// All ordered sequences of `length` distinct rows of h scored by predict_groups: (best, worst).
std::pair<std::vector<int64_t>, std::vector<int64_t>> brute_force(RelationalInfluenceModel& model,
                                                                  const torch::Tensor& h, int64_t length,
                                                                  double* best_score, double* worst_score) {
  const int64_t m = h.size(0);
  std::vector<int64_t> seq, best, worst;
  double lo = INFINITY, hi = -INFINITY;
  std::vector<char> used(m, 0);
  std::function<void()> rec = [&] {
    if (static_cast<int64_t>(seq.size()) == length) {
      const torch::Tensor idx = torch::tensor(seq, torch::kInt64);
      const double s = model.predict_groups(h.index_select(0, idx).unsqueeze(0)).sum().item<double>();
      if (s < lo) lo = s, best = seq;
      if (s > hi) hi = s, worst = seq;
      return;
    }
    for (int64_t i = 0; i < m; ++i)
      if (!used[i]) {
        used[i] = 1;
        seq.push_back(i);
        rec();
        seq.pop_back();
        used[i] = 0;
      }
  };
  rec();
  *best_score = lo;
  *worst_score = hi;
  return {best, worst};
}

TEST(BeamSearch, MatchesBruteForceOverAllOrderings) {
  int width5_optimal = 0, cases = 0;
  for (uint64_t seed : {1, 2, 3, 4}) {
    auto model = small_model(seed);
    model->eval();
    torch::NoGradGuard no_grad;
    auto gen = at::detail::createCPUGenerator(seed + 10);
    const int64_t m = 6, length = 3;
    torch::Tensor h = torch::randn({m, 8}, gen);
    h = h / h.norm(2, 1, true);
    double best_score, worst_score;
    const auto [best, worst] = brute_force(*model, h, length, &best_score, &worst_score);
    // Exhaustive width (every prefix kept): exactly the brute-force optimum.
    const BeamSearchResult full = beam_search_groups(*model, h, length, 6 * 5 * 4);
    EXPECT_EQ(full.best, best) << "seed " << seed;
    EXPECT_EQ(full.worst, worst) << "seed " << seed;
    EXPECT_NEAR(full.best_score, best_score, 1e-5);
    EXPECT_NEAR(full.worst_score, worst_score, 1e-5);
    // The reference width 5: its reported score is the model's score of its sequence.
    const BeamSearchResult beam = beam_search_groups(*model, h, length, 5);
    const double check = model->predict_groups(h.index_select(0, torch::tensor(beam.best, torch::kInt64)).unsqueeze(0))
                             .sum()
                             .item<double>();
    EXPECT_NEAR(beam.best_score, check, 1e-5);
    EXPECT_LE(beam.best_score, beam.worst_score);
    EXPECT_GE(beam.best_score, best_score - 1e-6);
    EXPECT_LE(beam.worst_score, worst_score + 1e-6);
    width5_optimal += (beam.best == best) + (beam.worst == worst);
    cases += 2;
  }
  EXPECT_GE(width5_optimal, cases / 2) << "width-5 beam far from the optimum on small cases";
  std::printf("width-5 beam found the brute-force optimum in %d of %d cases\n", width5_optimal, cases);
}

TEST(BeamSearch, FromScoresSmallExactCase) {
  // u = (-1, -0.5, 2); r: rows 0 and 1 near-duplicates (r small), 2 unrelated.
  const std::vector<double> u = {-1.0, -0.5, 2.0};
  const std::vector<double> r = {0.0, 0.1, 1.0,  //
                                 0.1, 0.0, 1.5,  //
                                 1.0, 1.5, 0.0};
  const BeamSearchResult res = beam_search_scores(u, r, 2, 5);
  // Sequences: (0,1): -1 + -0.5*0.1 = -1.05; (1,0): -0.5 - 0.1 = -0.6; (0,2): -1 + 2 = 1; (2,1): 2 - 0.75 = 1.25 ...
  EXPECT_EQ(res.best, (std::vector<int64_t>{0, 1}));
  EXPECT_NEAR(res.best_score, -1.05, 1e-12);
  // (1,2): -0.5 + 2 * 1.5 = 2.5 beats (2,1) = 1.25, (0,2) = (2,0) = 1.
  EXPECT_EQ(res.worst, (std::vector<int64_t>{1, 2}));
  EXPECT_NEAR(res.worst_score, 2.5, 1e-12);
}

TEST(BeamSearch, BootstrapRolloutsMapToPoolRows) {
  auto model = small_model(3);
  auto gen = at::detail::createCPUGenerator(3);
  const torch::Tensor pool = torch::randint(0, 500, {40, 12}, gen, torch::kInt64);
  const auto plans = bootstrap_rollouts(*model, pool, 3, 4, 1, 11, 16, 5);
  ASSERT_EQ(plans.size(), 6u);
  expect_valid(plans, 40, 4);
  for (size_t i = 0; i < plans.size(); ++i)
    EXPECT_EQ(plans[i].kind, i % 2 == 0 ? RolloutKind::kBootstrapBest : RolloutKind::kBootstrapWorst);
  EXPECT_TRUE(model->is_training()) << "training flag must be restored";
}

TEST(LabelStats, PerKindMeansAndStd) {
  std::vector<Rollout> rollouts(3);
  rollouts[0].kind = RolloutKind::kRandom;
  rollouts[0].labels = {1, 3};
  rollouts[0].cumulative = {1, 4};
  rollouts[1].kind = RolloutKind::kRandom;
  rollouts[1].labels = {-1, 1};
  rollouts[1].cumulative = {-1, 0};
  rollouts[2].kind = RolloutKind::kNeighbour;
  rollouts[2].labels = {2, 2};
  rollouts[2].cumulative = {2, 4};
  const auto stats = summarise_labels(rollouts);
  ASSERT_EQ(stats.size(), 2u);
  EXPECT_EQ(stats[0].kind, RolloutKind::kRandom);
  EXPECT_EQ(stats[0].count, 4);
  EXPECT_DOUBLE_EQ(stats[0].mean, 1.0);
  EXPECT_DOUBLE_EQ(stats[0].std, std::sqrt(2.0));
  EXPECT_DOUBLE_EQ(stats[0].first_mean, 0.0);
  EXPECT_DOUBLE_EQ(stats[0].later_mean, 2.0);
  EXPECT_DOUBLE_EQ(stats[0].final_mean, 2.0);
  EXPECT_EQ(stats[1].kind, RolloutKind::kNeighbour);
  EXPECT_DOUBLE_EQ(stats[1].std, 0.0);
  EXPECT_NE(format_label_stats(stats).find("neighbour"), std::string::npos);
}

LabelledRollout entry(int64_t step, int64_t length = 3, int64_t rows = 1, int64_t width = 5) {
  LabelledRollout e;
  e.tokens = torch::arange(length * rows * width, torch::kInt64).view({length, rows, width}) + step * 1000;
  for (int64_t t = 0; t < length; ++t) e.labels.push_back(0.1 * step + 0.01 * t + 1e-17);
  e.kind = static_cast<RolloutKind>(step % kNumRolloutKinds);
  e.probe_step = step;
  return e;
}

TEST(LabelBuffer, FifoBoundsAndCounters) {
  LabelBuffer buffer(3);
  for (int64_t s = 0; s < 5; ++s) buffer.add(entry(s));
  EXPECT_EQ(buffer.size(), 3u);
  EXPECT_EQ(buffer.total_added(), 5u);
  EXPECT_EQ(buffer.evicted(), 2u);
  const auto items = buffer.snapshot();
  for (size_t i = 0; i < items.size(); ++i) EXPECT_EQ(items[i].probe_step, static_cast<int64_t>(i) + 2);
  EXPECT_THROW(buffer.add(LabelledRollout{torch::zeros({3, 5}, torch::kInt64), {1, 2, 3}}), Error);
  EXPECT_THROW(LabelBuffer(0), Error);
}

TEST(LabelBuffer, SampleShapesAndNoReplacement) {
  LabelBuffer buffer(10);
  EXPECT_THROW(buffer.sample(1, 0), Error);
  for (int64_t s = 0; s < 6; ++s) buffer.add(entry(s));
  const auto batch = buffer.sample(6, 42);
  EXPECT_EQ(batch.tokens.sizes(), (std::vector<int64_t>{6, 3, 5}));
  EXPECT_EQ(batch.labels.sizes(), (std::vector<int64_t>{6, 3}));
  EXPECT_EQ(batch.labels.scalar_type(), torch::kDouble);
  std::set<int64_t> steps;
  for (int64_t g = 0; g < 6; ++g) steps.insert(batch.tokens[g][0][0].item<int64_t>() / 1000);
  EXPECT_EQ(steps.size(), 6u);
  EXPECT_EQ(buffer.sample(20, 1).tokens.size(0), 20);
  EXPECT_TRUE(torch::equal(buffer.sample(4, 9).tokens, buffer.sample(4, 9).tokens));
  LabelBuffer wide(4);
  wide.add(entry(1, 3, 2, 5));
  EXPECT_EQ(wide.all().tokens.sizes(), (std::vector<int64_t>{1, 3, 2, 5}));
  wide.add(entry(2, 4, 2, 5));
  EXPECT_THROW(wide.all(), Error);
}

TEST(LabelBuffer, SaveLoadRoundTrip) {
  LabelBuffer buffer(4);
  for (int64_t s = 0; s < 6; ++s) buffer.add(entry(s));
  const std::string blob = buffer.save();
  LabelBuffer restored(4);
  restored.load(blob);
  EXPECT_EQ(restored.size(), 4u);
  EXPECT_EQ(restored.total_added(), 6u);
  EXPECT_EQ(restored.evicted(), 2u);
  const auto a = buffer.snapshot(), b = restored.snapshot();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i].tokens, b[i].tokens));
    EXPECT_EQ(a[i].labels, b[i].labels);  // bit-exact doubles
    EXPECT_EQ(a[i].kind, b[i].kind);
    EXPECT_EQ(a[i].probe_step, b[i].probe_step);
  }
  EXPECT_EQ(restored.save(), blob);
  LabelBuffer smaller(2);
  smaller.load(blob);
  EXPECT_EQ(smaller.size(), 2u);
  EXPECT_EQ(smaller.snapshot()[0].probe_step, 4);
  EXPECT_EQ(smaller.evicted(), 4u);
  EXPECT_THROW(smaller.load("not a blob"), Error);
}

}  // namespace
}  // namespace groupmates
