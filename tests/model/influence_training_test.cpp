// The influence model learns a known relational model from synthetic rollouts; metrics.
#include <gtest/gtest.h>

#include "common/test_seed.h"

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "groupmates/error.h"
#include "groupmates/engine/hashed_ngram_encoder.h"
#include "groupmates/engine/influence_model.h"
#include "groupmates/engine/influence_trainer.h"
#include "groupmates/engine/metrics.h"
#include "common/engine_test_util.h"
#include "util/stopwatch.h"

namespace groupmates {
namespace {

TEST(Metrics, PearsonAndSpearman) {
  EXPECT_NEAR(pearson({1, 2, 3, 4}, {2, 4, 6, 8}), 1.0, 1e-12);
  EXPECT_NEAR(pearson({1, 2, 3, 4}, {8, 6, 4, 2}), -1.0, 1e-12);
  EXPECT_EQ(pearson({1, 1, 1}, {1, 2, 3}), 0.0);
  EXPECT_EQ(average_ranks({10, 30, 20, 30}), (std::vector<double>{1, 3.5, 2, 3.5}));
  EXPECT_NEAR(spearman({1, 2, 3, 4, 5}, {5, 6, 7, 8, 7}), 8.0 / std::sqrt(95.0), 1e-12);  // scipy: 0.8207826816681233
  EXPECT_NEAR(spearman({1, 2, 3}, {1, 8, 27}), 1.0, 1e-12);
}

// Synthetic pool: each document belongs to a topic (its tokens mostly from the topic's slice of the
// vocabulary); the true relational model uses a unit vector per topic and a value per topic.
struct SyntheticPool {
  static constexpr int64_t kTopics = 8, kLength = 32, kGroup = 4, kDim = 6;
  torch::Tensor topic_vec, topic_value;

  SyntheticPool() {
    topic_vec = testing::random_unit(kTopics, kDim).to(torch::kDouble);
    topic_value = torch::linspace(-1.5, 1.5, kTopics, torch::kDouble);
  }
  // Rollouts of random documents: tokens [G, L, T] and labels [G, L] from the true model (+ noise).
  std::pair<torch::Tensor, torch::Tensor> rollouts(int64_t groups) const {
    const torch::Tensor topic = torch::randint(0, kTopics, {groups, kGroup}, torch::kLong);
    torch::Tensor tokens = torch::randint(0, 300, {groups, kGroup, kLength}, torch::kLong) + topic.unsqueeze(-1) * 300;
    const torch::Tensor noise_tokens = torch::randint(0, 300 * kTopics, {groups, kGroup, kLength}, torch::kLong);
    tokens = torch::where(torch::rand({groups, kGroup, kLength}).lt(0.2), noise_tokens, tokens);
    const torch::Tensor h = topic_vec.index_select(0, topic.flatten()).reshape({groups, kGroup, kDim});
    const torch::Tensor u = topic_value.index_select(0, topic.flatten()).reshape({groups, kGroup});
    const torch::Tensor r = 1.0 - torch::matmul(h, h.transpose(1, 2)) / 0.8;  // alpha 1, tau 0.8
    const torch::Tensor t = torch::arange(kGroup, torch::kDouble);
    const torch::Tensor factor = torch::where(t.eq(0), torch::ones({groups, kGroup}, torch::kDouble),
                                              r.tril(-1).sum(-1) / t.clamp_min(1));
    const torch::Tensor labels = 0.3 * u * factor + 0.01 * torch::randn({groups, kGroup}, torch::kDouble) + 2.0;
    return {tokens, labels};
  }
};

TEST(InfluenceTraining, LearnsAKnownRelationalModel) {
  torch::manual_seed(40);
  const util::Stopwatch clock;
  SyntheticPool pool;
  const auto [train_tokens, train_labels] = pool.rollouts(2048);
  const auto [test_tokens, test_labels] = pool.rollouts(512);

  HashedNgramEncoderConfig enc;
  enc.num_buckets = 4096;
  enc.embed_dim = 32;
  enc.hidden_dim = 64;
  enc.out_dim = 16;
  InfluenceModelConfig head;
  head.dropout = 0.0;
  auto model = std::make_shared<RelationalInfluenceModel>(std::make_shared<HashedNgramEncoder>(enc), head);
  model->fit_label_stats(train_labels);
  InfluenceTrainerConfig opt;
  opt.learning_rate = 1e-2;
  InfluenceTrainer trainer(model, opt);

  const InfluenceEvaluation before = trainer.evaluate(test_tokens, test_labels);
  const int64_t batch = 64;
  for (int epoch = 0; epoch < 6; ++epoch) {
    const torch::Tensor perm = torch::randperm(2048, torch::kLong);
    for (int64_t b = 0; b + batch <= 2048; b += batch) {
      const torch::Tensor idx = perm.slice(0, b, b + batch);
      trainer.step(train_tokens.index_select(0, idx), train_labels.index_select(0, idx));
    }
  }
  const InfluenceEvaluation after = trainer.evaluate(test_tokens, test_labels);
  const double seconds = clock.seconds();
  std::printf("[training] held-out: spearman %.3f -> %.3f, pearson %.3f -> %.3f, mse %.3f -> %.3f; tau %.3f alpha %.3f; %.1f s\n",
              before.spearman, after.spearman, before.pearson, after.pearson, before.mse, after.mse, model->tau(),
              model->alpha(), seconds);
  EXPECT_GT(after.spearman, 0.8);
  EXPECT_LT(after.mse, before.mse);
}

TEST(InfluenceTraining, TauMinKeepsRelationsNonNegative) {
  const uint64_t seed = testing_seed::fresh();
  SCOPED_TRACE(testing_seed::trace(seed));
  torch::manual_seed(seed);
  for (double tau_min : {0.0, 1.0}) {
    InfluenceModelConfig head;
    head.dropout = 0.0;
    head.tau_min = tau_min;
    auto model = std::make_shared<RelationalInfluenceModel>(
        std::make_shared<HashedNgramEncoder>(testing::small_encoder(8)), head);
    const double tau0 = 0.05 + 0.5 * torch::rand({}).item<double>(), alpha0 = -0.1 - torch::rand({}).item<double>();
    {
      torch::NoGradGuard no_grad;
      model->tau_tensor().fill_(tau0);
      model->alpha_tensor().fill_(alpha0);
    }
    InfluenceTrainerConfig opt;
    opt.learning_rate = 1e-9;  // the step itself barely moves them: what moves them is constrain()
    InfluenceTrainer trainer(model, opt);
    const torch::Tensor tokens = torch::randint(0, 100, {4, 3, 12}, torch::kLong);
    trainer.step(tokens, torch::randn({4, 3}));
    if (tau_min == 0) {
      EXPECT_NEAR(model->tau(), tau0, 1e-6);
      EXPECT_NEAR(model->alpha(), alpha0, 1e-6);
      continue;
    }
    EXPECT_DOUBLE_EQ(model->tau(), tau_min);
    EXPECT_DOUBLE_EQ(model->alpha(), 0.0);
    torch::NoGradGuard no_grad;
    model->alpha_tensor().fill_(1.0);
    const torch::Tensor h = testing::random_unit(64, 8);
    EXPECT_GE(model->relation(h, h).min().item<double>(), -1e-6);  // r = 1 - cos >= 0 for unit rows
  }
  EXPECT_THROW(RelationalInfluenceModel(std::make_shared<HashedNgramEncoder>(testing::small_encoder(8)),
                                        InfluenceModelConfig{0.0, 0.5, 1.0, 1.0}),
               Error);  // tau_init below tau_min
}

}  // namespace
}  // namespace groupmates
