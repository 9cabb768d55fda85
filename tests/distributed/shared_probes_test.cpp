// The shared-probe pieces in one process: the rollout split, the exchange format, the local
// collectives (the multi-process side: tests/python/test_distributed.py over Gloo).
#include "groupmates/engine/shared_probes.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <set>

#include "groupmates/error.h"

using namespace groupmates;

TEST(SharedProbes, RolloutsOfRanksAreDisjointAndCoverEveryRollout) {
  for (int world : {1, 2, 3, 4, 7}) {
    for (size_t n : {size_t{0}, size_t{1}, size_t{5}, size_t{28}}) {
      std::multiset<size_t> all;
      for (int r = 0; r < world; ++r) {
        const std::vector<size_t> mine = rollouts_of_rank(n, r, world);
        EXPECT_LE(mine.size(), n / world + 1);
        EXPECT_GE(mine.size(), n / world);
        for (size_t i : mine) {
          EXPECT_EQ(i % world, size_t(r));
          all.insert(i);
        }
      }
      EXPECT_EQ(all.size(), n);
      EXPECT_EQ(std::set<size_t>(all.begin(), all.end()).size(), n);
    }
  }
  EXPECT_THROW(rollouts_of_rank(4, 2, 2), Error);
}

TEST(SharedProbes, RolloutsSurviveTheExchangeFormatBitForBit) {
  const uint64_t seed = std::getenv("GM_TEST_SEED") ? std::stoull(std::getenv("GM_TEST_SEED")) : std::random_device{}();
  SCOPED_TRACE("GM_TEST_SEED=" + std::to_string(seed));
  torch::manual_seed(seed);
  std::mt19937_64 rng(seed);
  std::vector<LabelledRollout> rollouts;
  for (int i = 0; i < 5; ++i) {
    LabelledRollout r;
    r.tokens = torch::randint(0, 50000, {3, 2, 16}, torch::kInt64);
    r.labels = {std::uniform_real_distribution<double>(-1, 1)(rng), -0.0, 1e-300};
    r.kind = static_cast<RolloutKind>(i % 3);
    r.probe_step = static_cast<int64_t>(rng() % 100000);
    if (i % 2 == 0) r.prior = torch::randn({3, 2});
    rollouts.push_back(r);
  }
  const std::vector<LabelledRollout> back = deserialize_rollouts(serialize_rollouts(rollouts));
  ASSERT_EQ(back.size(), rollouts.size());
  for (size_t i = 0; i < back.size(); ++i) {
    EXPECT_TRUE(torch::equal(back[i].tokens, rollouts[i].tokens));
    EXPECT_EQ(back[i].labels, rollouts[i].labels);
    EXPECT_EQ(back[i].kind, rollouts[i].kind);
    EXPECT_EQ(back[i].probe_step, rollouts[i].probe_step);
    EXPECT_EQ(back[i].prior.defined(), rollouts[i].prior.defined());
    if (back[i].prior.defined()) EXPECT_TRUE(torch::equal(back[i].prior, rollouts[i].prior));
  }
  EXPECT_TRUE(deserialize_rollouts(serialize_rollouts({})).empty());
}

TEST(SharedProbes, LocalCollectivesAreTheIdentity) {
  auto c = local_collectives();
  EXPECT_EQ(c->rank(), 0);
  EXPECT_EQ(c->world_size(), 1);
  EXPECT_EQ(c->all_gather("abc"), std::vector<std::string>{"abc"});
  EXPECT_EQ(c->broadcast("xyz", 0), "xyz");
  EXPECT_EQ(share_weights(*c, "weights"), "weights");
  torch::Tensor sums = torch::randn({4, 3}, torch::kFloat64), counts = torch::ones({4}, torch::kFloat64);
  const torch::Tensor before = sums.clone();
  all_reduce_cluster_sums(*c, sums, counts);
  EXPECT_TRUE(torch::equal(sums, before));
  LabelledRollout r;
  r.tokens = torch::arange(6).reshape({1, 2, 3});
  r.labels = {0.5};
  const auto all = all_gather_rollouts(*c, {r});
  ASSERT_EQ(all.size(), 1u);
  EXPECT_TRUE(torch::equal(all[0].tokens, r.tokens));
}
