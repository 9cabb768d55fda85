// Greedy group selection vs the definition (ALGORITHM.md section 4), vs the brute-force optimum,
// budgets, and every Selector.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <vector>

#include "groupmates/engine/batched_greedy.h"
#include "groupmates/error.h"
#include "groupmates/engine/greedy_group.h"
#include "groupmates/engine/selector.h"
#include "common/engine_test_util.h"
#include "common/test_seed.h"

namespace groupmates {
namespace {

struct Window {
  torch::Tensor u, h;
  std::vector<double> uv, hv;
  int64_t d;
};

Window random_window(int64_t n, int64_t d, bool clustered) {
  Window w;
  w.d = d;
  w.h = testing::random_unit(n, d);
  if (clustered) {  // related points, cosines well above 0, as within a k-means cluster
    w.h = w.h * 0.5 + testing::random_unit(1, d);
    w.h = w.h / w.h.norm(2, 1, true);
  }
  w.u = torch::randn({n}) - 0.5;
  w.uv = testing::as_doubles(w.u);
  w.hv = testing::as_doubles(w.h);
  return w;
}

double r_of(const Window& w, int64_t i, int64_t j, RelationParams rel) {
  double dot = 0;
  for (int64_t k = 0; k < w.d; ++k) dot += w.hv[i * w.d + k] * w.hv[j * w.d + k];
  return rel.alpha * (1.0 - dot / rel.tau);
}

// The definition, naively: a_i recomputed as the mean of r_ij over all picked j (kNearest: the
// minimum); O(n^2 k).
std::vector<int64_t> naive_greedy(const Window& w, const std::vector<int64_t>& members, int64_t k, RelationParams rel) {
  std::vector<int64_t> picked;
  std::vector<bool> taken(members.size(), false);
  for (int64_t step = 0; step < k; ++step) {
    int64_t best = -1;
    double best_value = std::numeric_limits<double>::infinity();
    for (size_t i = 0; i < members.size(); ++i) {
      if (taken[i]) continue;
      double value = w.uv[members[i]];
      if (!picked.empty()) {
        double mean = 0, least = std::numeric_limits<double>::infinity();
        for (int64_t j : picked) {
          mean += r_of(w, members[i], j, rel);
          least = std::min(least, r_of(w, members[i], j, rel));
        }
        value *= rel.aggregate == RelationAggregate::kNearest ? least : mean / double(picked.size());
      }
      if (value < best_value) {  // strict: ties go to the first listed
        best_value = value;
        best = int64_t(i);
      }
    }
    taken[best] = true;
    picked.push_back(members[best]);
  }
  return picked;
}

// Predicted influence of an ordered group: sum_t p_t.
double group_value(const Window& w, const std::vector<int64_t>& order, RelationParams rel) {
  double total = 0;
  for (size_t t = 0; t < order.size(); ++t) {
    double factor = 1;
    if (t > 0) {
      factor = 0;
      for (size_t j = 0; j < t; ++j) factor += r_of(w, order[t], order[j], rel);
      factor /= double(t);
    }
    total += w.uv[order[t]] * factor;
  }
  return total;
}

TEST(GreedyGroup, EqualsNaiveDefinition) {
  torch::manual_seed(10);
  for (int trial = 0; trial < 20; ++trial) {
    const int64_t n = 5 + trial * 7, k = 1 + trial * 3 % n;
    const Window w = random_window(n, 16, trial % 2 == 0);
    const RelationParams rel{0.5 + 0.1 * trial, 0.7 + 0.05 * trial};
    std::vector<int64_t> members(n);
    std::iota(members.begin(), members.end(), 0);
    const GreedyPicks got = greedy_group_select(w.h.data_ptr<float>(), w.d, w.u.data_ptr<float>(), members.data(), n,
                                                k, rel);
    EXPECT_EQ(got.indices, naive_greedy(w, members, k, rel)) << "trial " << trial;
    // Scores are each pick's p_t, so they sum to the group's predicted influence.
    const double sum = std::accumulate(got.scores.begin(), got.scores.end(), 0.0);
    EXPECT_NEAR(sum, group_value(w, got.indices, rel), 1e-9 * (1 + std::abs(sum)));
  }
}

TEST(GreedyGroup, NearestPickAggregateEqualsNaiveDefinition) {
  torch::manual_seed(12);
  for (int trial = 0; trial < 20; ++trial) {
    const int64_t n = 5 + trial * 7, k = 1 + trial * 3 % n;
    const Window w = random_window(n, 16, trial % 2 == 0);
    const RelationParams rel{0.5 + 0.1 * trial, 0.7 + 0.05 * trial, RelationAggregate::kNearest};
    std::vector<int64_t> members(n);
    std::iota(members.begin(), members.end(), 0);
    const GreedyPicks got = greedy_group_select(w.h.data_ptr<float>(), w.d, w.u.data_ptr<float>(), members.data(), n,
                                                k, rel);
    EXPECT_EQ(got.indices, naive_greedy(w, members, k, rel)) << "trial " << trial;
  }
}

TEST(GreedyGroup, NearestPickDiscountKeepsANearDuplicateOut) {
  // One cluster: A (best u), its near-duplicate B (cos ~0.99), and 10 related rows (cos ~0.7).
  // The mean over the picks dilutes B's discount as picks accumulate, so B gets in; the nearest
  // pick (A) keeps it out.
  torch::manual_seed(13);
  const int64_t d = 32, n = 12;
  const torch::Tensor centre = testing::random_unit(1, d);
  torch::Tensor h = centre + 0.65 * testing::random_unit(n, d);
  h[1] = h[0] + 0.1 * testing::random_unit(1, d)[0];
  h = h / h.norm(2, 1, true);
  Window w;
  w.d = d;
  w.h = h.to(torch::kFloat).contiguous();
  w.u = -1.0 - 0.01 * torch::arange(n, torch::kFloat);
  w.u[0] = -2.0f;
  w.u[1] = -1.9f;
  w.uv = testing::as_doubles(w.u);
  w.hv = testing::as_doubles(w.h);
  ASSERT_GT(r_of(w, 0, 1, {}), 0.0);
  ASSERT_LT(r_of(w, 0, 1, {}), 0.05);
  std::vector<int64_t> members(n);
  std::iota(members.begin(), members.end(), 0);
  const int64_t k = 6;
  auto picks = [&](RelationAggregate agg) {
    return greedy_group_select(w.h.data_ptr<float>(), d, w.u.data_ptr<float>(), members.data(), n, k,
                               {1.0, 1.0, agg}).indices;
  };
  const std::vector<int64_t> mean = picks(RelationAggregate::kMean), nearest = picks(RelationAggregate::kNearest);
  EXPECT_EQ(mean[0], 0);
  EXPECT_EQ(nearest[0], 0);
  EXPECT_NE(std::find(mean.begin(), mean.end(), 1), mean.end());
  EXPECT_EQ(std::find(nearest.begin(), nearest.end(), 1), nearest.end());
}

TEST(GreedyGroup, TiesGoToTheLowestIndex) {
  Window w;
  w.d = 2;
  w.h = torch::tensor({{1.0f, 0.0f}, {1.0f, 0.0f}, {0.0f, 1.0f}, {0.0f, 1.0f}, {0.0f, 1.0f}});
  w.u = torch::tensor({-1.0f, -1.0f, -1.0f, -1.0f, -1.0f});
  w.uv = testing::as_doubles(w.u);
  w.hv = testing::as_doubles(w.h);
  const std::vector<int64_t> members{0, 1, 2, 3, 4};
  const GreedyPicks got = greedy_group_select(w.h.data_ptr<float>(), 2, w.u.data_ptr<float>(), members.data(), 5, 5, {});
  EXPECT_EQ(got.indices, naive_greedy(w, members, 5, {}));
  EXPECT_EQ(got.indices[0], 0);
  EXPECT_EQ(got.indices[1], 2);  // r = 1 (orthogonal) beats r = 0 (same point) for negative u
}

TEST(GreedyGroup, GapToBruteForceOptimumOnSmallClusters) {
  torch::manual_seed(11);
  double total_gap = 0, max_gap = 0;
  int optimal = 0, clusters = 0;
  for (int trial = 0; trial < 60; ++trial) {
    const int64_t n = 4 + trial % 7;  // 4..10
    const int64_t k = ratio_budget(n, 0.5);
    const Window w = random_window(n, 8, true);
    const RelationParams rel{1.0, 1.0};
    std::vector<int64_t> members(n);
    std::iota(members.begin(), members.end(), 0);
    const GreedyPicks got = greedy_group_select(w.h.data_ptr<float>(), w.d, w.u.data_ptr<float>(), members.data(), n,
                                                k, rel);
    ASSERT_EQ(got.indices, naive_greedy(w, members, k, rel)) << "trial " << trial;  // the straightforward greedy
    const double greedy = group_value(w, got.indices, rel);
    // Brute force over every ordered k-subset.
    double best = std::numeric_limits<double>::infinity();
    std::vector<int64_t> order;
    std::vector<bool> used(n, false);
    std::function<void()> search = [&] {
      if (int64_t(order.size()) == k) {
        best = std::min(best, group_value(w, order, rel));
        return;
      }
      for (int64_t i = 0; i < n; ++i)
        if (!used[i]) {
          used[i] = true;
          order.push_back(i);
          search();
          order.pop_back();
          used[i] = false;
        }
    };
    search();
    ASSERT_GE(greedy, best - 1e-9);
    const double gap = (greedy - best) / std::max(1e-12, std::abs(best));
    total_gap += gap;
    max_gap = std::max(max_gap, gap);
    optimal += gap < 1e-9;
    ++clusters;
  }
  std::printf("[greedy vs optimum] %d clusters of 4..10, k = n/2: optimal in %d, mean relative gap %.4f, max %.4f\n",
              clusters, optimal, total_gap / clusters, max_gap);
  // Seed 11 is fixed, so these are exact figures of this greedy (optimal in 33, mean 0.0091, max
  // 0.0613), bounded with a small margin: a greedy that ignored the relations or picked at random
  // falls far outside (a bound of 0.25 on the mean would not notice).
  EXPECT_GE(optimal, 30);
  EXPECT_LT(total_gap / clusters, 0.015);
  EXPECT_LT(max_gap, 0.08);
}

TEST(Budget, RatioAndLargestRemainder) {
  EXPECT_EQ(ratio_budget(10, 0.5), 5);
  EXPECT_EQ(ratio_budget(5, 0.5), 3);  // 2.5 rounds half up
  EXPECT_EQ(ratio_budget(7, 0.0), 0);
  EXPECT_EQ(ratio_budget(7, 1.5), 7);
  EXPECT_EQ(allocate_budget({3, 3, 3}, 4), (std::vector<int64_t>{2, 1, 1}));  // equal remainders: lowest id
  EXPECT_EQ(allocate_budget({10, 5, 1, 0}, 8), (std::vector<int64_t>{5, 3, 0, 0}));
  EXPECT_EQ(allocate_budget({2, 2}, 10), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(allocate_budget({}, 3), (std::vector<int64_t>{}));
  torch::manual_seed(12);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<int64_t> sizes(1 + trial % 9);
    int64_t sum = 0;
    for (auto& s : sizes) sum += (s = torch::randint(0, 40, {1}).item<int64_t>());
    const int64_t total = sum / 3;
    const std::vector<int64_t> got = allocate_budget(sizes, total);
    EXPECT_EQ(std::accumulate(got.begin(), got.end(), int64_t{0}), total);
    for (size_t g = 0; g < sizes.size(); ++g) EXPECT_LE(std::abs(double(got[g]) - double(total) * sizes[g] / sum), 1.0);
  }
}

SelectionInput clustered_input(const Window& w, const torch::Tensor& clusters, RelationParams rel) {
  SelectionInput in;
  in.u = w.u;
  in.embeddings = w.h;
  in.cluster_ids = clusters;
  in.relation = rel;
  return in;
}

TEST(ClusterGreedySelector, UniformRatioIsPerClusterGreedy) {
  torch::manual_seed(13);
  const int64_t n = 400, k = 9;
  const Window w = random_window(n, 16, false);
  const torch::Tensor clusters = torch::randint(0, k, {n}, torch::kLong);
  const RelationParams rel{1.2, 0.9};
  const Selection sel = ClusterGreedySelector().select(clustered_input(w, clusters, rel), 0.5);
  ASSERT_EQ(int64_t(sel.indices.size()), 200);
  EXPECT_EQ(std::set<int64_t>(sel.indices.begin(), sel.indices.end()).size(), sel.indices.size());
  std::vector<std::vector<int64_t>> members(k), picked(k);
  for (int64_t i = 0; i < n; ++i) members[clusters[i].item<int64_t>()].push_back(i);
  for (int64_t i : sel.indices) picked[clusters[i].item<int64_t>()].push_back(i);
  std::vector<int64_t> sizes;
  for (auto& m : members) sizes.push_back(int64_t(m.size()));
  const std::vector<int64_t> quota = allocate_budget(sizes, 200);
  for (int64_t c = 0; c < k; ++c) {
    EXPECT_EQ(int64_t(picked[c].size()), quota[c]);
    EXPECT_LE(std::abs(double(quota[c]) - 0.5 * double(sizes[c])), 1.0);
    EXPECT_EQ(picked[c], naive_greedy(w, members[c], quota[c], rel)) << "cluster " << c;  // and in greedy order
  }
}

TEST(ClusterGreedySelector, PrefilterMovesBudgetToGoodClusters) {
  torch::manual_seed(14);
  const int64_t n = 1000;
  Window w = random_window(n, 16, false);
  // Cluster 0 is much better (lower u) than cluster 1.
  const torch::Tensor clusters = (torch::arange(n, torch::kLong) % 2);
  w.u = torch::where(clusters.eq(0), w.u - 3, w.u + 3);
  w.uv = testing::as_doubles(w.u);
  const SelectionInput in = clustered_input(w, clusters, {});
  auto count_good = [&](const Selection& s) {
    int64_t good = 0;
    for (int64_t i : s.indices) good += clusters[i].item<int64_t>() == 0;
    return good;
  };
  const Selection uniform = ClusterGreedySelector(BudgetMode::kUniformRatio).select(in, 0.2);
  const Selection prefilter = ClusterGreedySelector(BudgetMode::kInfluencePrefilter, 0.8).select(in, 0.2);
  ASSERT_EQ(uniform.indices.size(), 200u);
  ASSERT_EQ(prefilter.indices.size(), 200u);
  EXPECT_EQ(count_good(uniform), 100);
  EXPECT_EQ(count_good(prefilter), 200);
  // Every prefiltered pick is among the best 250 by u.
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return w.uv[a] < w.uv[b]; });
  const std::set<int64_t> best(order.begin(), order.begin() + 250);
  for (int64_t i : prefilter.indices) EXPECT_TRUE(best.count(i));
}

TEST(ClusterGreedySelector, BatchedTensorPathEqualsHostPath) {
  // The device path (padded batch of tensor ops) run on the CPU against the host loops.
  torch::manual_seed(17);
  for (int trial = 0; trial < 6; ++trial) {
    const int64_t n = 300 + 100 * trial, k = 3 + 4 * trial;
    const Window w = random_window(n, 16, trial % 2 == 1);
    const torch::Tensor clusters = torch::randint(0, k, {n}, torch::kLong);
    const auto aggregate = trial % 3 == 2 ? RelationAggregate::kNearest : RelationAggregate::kMean;
    const SelectionInput in = clustered_input(w, clusters, {0.9 + 0.1 * trial, 1.1, aggregate});
    for (BudgetMode mode : {BudgetMode::kUniformRatio, BudgetMode::kInfluencePrefilter}) {
      const Selection host = ClusterGreedySelector(mode, 0.8, GreedyExecution::kHostThreads).select(in, 0.3);
      const Selection batched = ClusterGreedySelector(mode, 0.8, GreedyExecution::kBatchedTensor).select(in, 0.3);
      EXPECT_EQ(host.indices, batched.indices) << "trial " << trial;
      ASSERT_EQ(host.scores.size(), batched.scores.size());
      for (size_t i = 0; i < host.scores.size(); ++i) EXPECT_NEAR(host.scores[i], batched.scores[i], 1e-9);
    }
  }
}

// The window with u minus its maximum over `candidates` (RelationParams::nonpositive_u, by hand).
Window shifted_by_max(const Window& w, const std::vector<int64_t>& candidates) {
  double top = -std::numeric_limits<double>::infinity();
  for (int64_t i : candidates) top = std::max(top, double(w.u[i].item<float>()));
  Window out = w;
  out.u = w.u - top;
  out.uv = testing::as_doubles(out.u);
  return out;
}

TEST(ClusterGreedySelector, NonpositiveInfluenceIsTheGreedyOnUMinusItsMaximum) {
  // Against the naive definition on a window shifted by hand: per cluster with the uniform ratio
  // (shift over the whole window), and the prefilter's kept rows (shift over those), host and batched.
  const uint64_t seed = testing_seed::fresh();
  SCOPED_TRACE(testing_seed::trace(seed));
  torch::manual_seed(seed);
  for (int trial = 0; trial < 4; ++trial) {
    const int64_t n = 200 + 50 * trial, k = 2 + 3 * trial;
    Window w = random_window(n, 16, trial % 2 == 1);
    w.u = w.u + (trial - 1.5);  // both signs, more or fewer of each
    w.uv = testing::as_doubles(w.u);
    const torch::Tensor clusters = torch::randint(0, k, {n}, torch::kLong);
    const auto aggregate = trial % 2 == 0 ? RelationAggregate::kNearest : RelationAggregate::kMean;
    const RelationParams plain{1.0 + 0.2 * trial, 1.0, aggregate, false};
    RelationParams shifted = plain;
    shifted.nonpositive_u = true;
    const SelectionInput in = clustered_input(w, clusters, shifted);

    std::vector<int64_t> all(n);
    std::iota(all.begin(), all.end(), 0);
    const Window ws = shifted_by_max(w, all);
    const Selection uniform = ClusterGreedySelector(BudgetMode::kUniformRatio).select(in, 0.4);
    std::vector<std::vector<int64_t>> members(k), picked(k);
    for (int64_t i = 0; i < n; ++i) members[clusters[i].item<int64_t>()].push_back(i);
    for (int64_t i : uniform.indices) picked[clusters[i].item<int64_t>()].push_back(i);
    for (int64_t c = 0; c < k; ++c)
      EXPECT_EQ(picked[c], naive_greedy(ws, members[c], int64_t(picked[c].size()), plain)) << "trial " << trial << " cluster " << c;

    // Prefilter: the shift is the maximum over the kept rows, the best ceil(budget / 0.8) by u.
    const int64_t budget = ratio_budget(n, 0.4), keep = int64_t(std::ceil(double(budget) / 0.8));
    std::vector<int64_t> order = all;
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return w.uv[a] < w.uv[b]; });
    const std::vector<int64_t> kept(order.begin(), order.begin() + keep);
    const Window wk = shifted_by_max(w, kept);
    for (GreedyExecution ex : {GreedyExecution::kHostThreads, GreedyExecution::kBatchedTensor}) {
      const Selection got = ClusterGreedySelector(BudgetMode::kInfluencePrefilter, 0.8, ex, true).select(in, 0.4);
      const Selection want = ClusterGreedySelector(BudgetMode::kInfluencePrefilter, 0.8, GreedyExecution::kHostThreads, true)
                                 .select(clustered_input(wk, clusters, plain), 0.4);
      EXPECT_EQ(got.indices, want.indices) << "trial " << trial;
      ASSERT_EQ(got.scores.size(), want.scores.size());
      for (size_t i = 0; i < got.scores.size(); ++i) EXPECT_NEAR(got.scores[i], want.scores[i], 1e-5);
      for (double score : got.scores) EXPECT_LE(score, 1e-6);  // every a_i * u_i <= 0
    }
  }
}

TEST(ClusterGreedySelector, NonpositiveInfluenceKeepsACopyOfAPickOut) {
  // Every u > 0: the rule a_i * u_i then prefers a copy of the first pick (a ~ 0) to a distinct
  // candidate; with u shifted to <= 0 the distinct one wins.
  const uint64_t seed = testing_seed::fresh();
  SCOPED_TRACE(testing_seed::trace(seed));
  torch::manual_seed(seed);
  Window w = random_window(3, 8, false);
  w.h[1].copy_(w.h[0]);   // row 1: a copy of row 0
  w.h[2].copy_(-w.h[0]);  // row 2: far from row 0
  w.hv = testing::as_doubles(w.h);
  w.u = torch::tensor({1.0f, 1.5f, 1.4f});
  w.uv = testing::as_doubles(w.u);
  const torch::Tensor clusters = torch::zeros({3}, torch::kLong);
  const RelationParams plain{1.0, 1.0, RelationAggregate::kNearest, false};
  RelationParams shifted = plain;
  shifted.nonpositive_u = true;
  const auto picks = [&](RelationParams rel) {
    return ClusterGreedySelector().select(clustered_input(w, clusters, rel), 2.0 / 3.0).indices;
  };
  EXPECT_EQ(picks(plain), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(picks(shifted), (std::vector<int64_t>{0, 2}));
}

TEST(BatchedGreedy, PaddingAndQuotasPerCluster) {
  torch::manual_seed(18);
  const Window w = random_window(10, 4, false);
  // Two clusters: rows 0..5 (quota 3) and rows 6..9 (quota 4 = all), padded to width 6.
  const torch::Tensor index = torch::tensor({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0}, torch::kLong);
  const torch::Tensor valid = torch::tensor({1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0}).to(torch::kBool).view({2, 6});
  const torch::Tensor h = w.h.to(torch::kDouble).index_select(0, index).view({2, 6, 4});
  const torch::Tensor u = w.u.to(torch::kDouble).index_select(0, index).view({2, 6});
  const BatchedPicks got = batched_greedy_select(h, u, valid, torch::tensor({3, 4}, torch::kLong), {});
  ASSERT_EQ(got.positions.sizes(), (std::vector<int64_t>{2, 4}));
  std::vector<int64_t> first, second;
  for (int64_t s = 0; s < 4; ++s) {
    if (s < 3) first.push_back(got.positions[0][s].item<int64_t>());
    second.push_back(6 + got.positions[1][s].item<int64_t>());
  }
  EXPECT_EQ(got.positions[0][3].item<int64_t>(), -1);
  EXPECT_EQ(first, naive_greedy(w, {0, 1, 2, 3, 4, 5}, 3, {}));
  EXPECT_EQ(second, naive_greedy(w, {6, 7, 8, 9}, 4, {}));
}

TEST(Selectors, WholeWindowGreedyEqualsNaive) {
  torch::manual_seed(15);
  const Window w = random_window(120, 8, false);
  SelectionInput in;
  in.u = w.u;
  in.embeddings = w.h;
  std::vector<int64_t> all(120);
  std::iota(all.begin(), all.end(), 0);
  EXPECT_EQ(GreedySelector().select(in, 0.25).indices, naive_greedy(w, all, 30, {}));
  // nonpositive_u: the same on u minus its maximum over the window.
  in.relation.nonpositive_u = true;
  EXPECT_EQ(GreedySelector().select(in, 0.25).indices, naive_greedy(shifted_by_max(w, all), all, 30, {}));
}

TEST(Selectors, RandomIsSeededAndUniform) {
  SelectionInput in;
  in.u = torch::zeros({100});
  RandomSelector a(1), b(1), c(2);
  const Selection sa = a.select(in, 0.3);
  EXPECT_EQ(sa.indices.size(), 30u);
  EXPECT_EQ(std::set<int64_t>(sa.indices.begin(), sa.indices.end()).size(), 30u);
  EXPECT_EQ(sa.indices, b.select(in, 0.3).indices);
  EXPECT_NE(sa.indices, c.select(in, 0.3).indices);
  in.window_seed = 1;
  EXPECT_NE(sa.indices, a.select(in, 0.3).indices);
  std::vector<int> hits(100, 0);
  for (uint64_t s = 0; s < 2000; ++s) {
    in.window_seed = s;
    for (int64_t i : a.select(in, 0.3).indices) ++hits[i];
  }
  for (int h : hits) EXPECT_NEAR(h, 600, 120);
}

TEST(Selectors, IndividualIsGumbelTopK) {
  torch::manual_seed(16);
  SelectionInput in;
  in.u = torch::randn({200});
  const Selection s = IndividualSelector(0.5, 3).select(in, 0.2);
  ASSERT_EQ(s.indices.size(), 40u);
  EXPECT_TRUE(std::is_sorted(s.scores.begin(), s.scores.end()));
  EXPECT_EQ(s.indices, IndividualSelector(0.5, 3).select(in, 0.2).indices);
  // Near-zero temperature: plain top-k by lowest u.
  const Selection cold = IndividualSelector(1e-6, 3).select(in, 0.2);
  std::vector<int64_t> order(200);
  std::iota(order.begin(), order.end(), 0);
  const std::vector<double> u = testing::as_doubles(in.u);
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return u[a] < u[b]; });
  EXPECT_EQ(cold.indices, std::vector<int64_t>(order.begin(), order.begin() + 40));
  // Selection frequency of the best row far above the worst one's at T = 0.5.
  int best = 0, worst = 0;
  for (uint64_t seed = 0; seed < 300; ++seed) {
    in.window_seed = seed;
    for (int64_t i : IndividualSelector(0.5, 0).select(in, 0.2).indices) {
      best += i == order.front();
      worst += i == order.back();
    }
  }
  EXPECT_GT(best, 250);
  EXPECT_LT(worst, 10);
}

TEST(Selectors, RejectBadInput) {
  SelectionInput in;
  in.u = torch::zeros({10});
  in.embeddings = torch::zeros({9, 4});
  in.cluster_ids = torch::zeros({10}, torch::kLong);
  EXPECT_THROW(ClusterGreedySelector().select(in, 0.5), Error);
  EXPECT_THROW(ClusterGreedySelector(BudgetMode::kInfluencePrefilter, 0.0), Error);
}

}  // namespace
}  // namespace groupmates
