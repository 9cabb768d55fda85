// TinyGpt: deterministic init, learning, and (disabled by default) speed and probe-cost reports.
#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include <gtest/gtest.h>
#include <torch/optim/adamw.h>
#include <torch/types.h>

#include "groupmates/module_probe_target.h"
#include "groupmates/engine/oracle_prober.h"
#include "groupmates/engine/rollout_policy.h"
#include "tiny_gpt/tiny_gpt.h"
#include "util/stopwatch.h"

namespace groupmates {
namespace {

TinyGptConfig small_config(int64_t vocab, int64_t context, int64_t d_model, int64_t heads, uint64_t seed) {
  return tiny_gpt_config(vocab, context, d_model, TinyGptConfig().n_layers, heads, seed);
}

TEST(TinyGpt, DeterministicInitFromSeed) {
  TinyGptConfig c = small_config(50, 16, 32, 4, 3);
  TinyGpt a(c), b(c);
  c.seed = 4;
  TinyGpt other(c);
  auto pa = a.parameters(), pb = b.parameters(), po = other.parameters();
  bool any_diff = false;
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(torch::equal(pa[i], pb[i]));
    any_diff |= !torch::equal(pa[i], po[i]);
  }
  EXPECT_TRUE(any_diff);
  const torch::Tensor tokens = torch::arange(32, torch::kInt64).remainder(50).view({2, 16});
  EXPECT_EQ(a.forward(tokens).sizes(), (std::vector<int64_t>{2, 16, 50}));
  EXPECT_NEAR(a.loss(tokens).item<double>(), std::log(50.0), 0.2);  // near-uniform at init
  // Causal: changing a later token never changes earlier logits.
  torch::Tensor changed = tokens.clone();
  changed[0][10].fill_(7);
  EXPECT_TRUE(torch::allclose(a.forward(tokens).slice(1, 0, 10), a.forward(changed).slice(1, 0, 10)));
  EXPECT_THROW(a.forward(torch::zeros({1, 17}, torch::kInt64)), std::exception);
}

TEST(TinyGpt, IgnoreIdLeavesPaddingTargetsOutOfTheMean) {
  TinyGptConfig c = small_config(40, 12, 16, 2, 5);
  c.ignore_id = 0;
  TinyGpt model(c);
  torch::Tensor tokens = torch::randint(1, 40, {3, 12}, torch::kLong);
  tokens[1].slice(0, 8).fill_(0);
  tokens[2].slice(0, 3).fill_(0);
  // Reference: the mean of -log p(target) over the targets that are not padding.
  torch::NoGradGuard no_grad;
  const torch::Tensor logp = torch::log_softmax(model.forward(tokens.slice(1, 0, 11)), -1);
  double sum = 0;
  int64_t n = 0;
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t t = 0; t < 11; ++t) {
      const int64_t y = tokens[b][t + 1].item<int64_t>();
      if (y == 0) continue;
      sum -= logp[b][t][y].item<double>();
      ++n;
    }
  EXPECT_EQ(n, 11 + 7 + 2);
  EXPECT_NEAR(model.loss(tokens).item<double>(), sum / n, 1e-5);
  c.ignore_id = -1;  // every target counts
  TinyGpt all(c);
  const torch::Tensor y = tokens.slice(1, 1, 12).reshape({-1});
  const double full = -logp.reshape({-1, 40}).gather(1, y.unsqueeze(1)).mean().item<double>();
  EXPECT_NEAR(all.loss(tokens).item<double>(), full, 1e-5);
}

TEST(TinyGpt, LossDecreasesOnRepetitiveSequence) {
  const TinyGptConfig c = tiny_gpt_config(64, 32, 64, 2, 4);
  auto model = std::make_shared<TinyGpt>(c);
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(3e-3));
  const torch::Tensor tokens = torch::arange(4 * 32, torch::kInt64).remainder(8).view({4, 32});  // 0..7 repeated
  const double first = model->loss(tokens).item<double>();
  double last = first;
  for (int step = 0; step < 30; ++step) {
    opt.zero_grad();
    torch::Tensor loss = model->loss(tokens);
    loss.backward();
    opt.step();
    last = loss.item<double>();
  }
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
}

// Speed of TinyGpt training on this machine: run with --gtest_also_run_disabled_tests.
TEST(TinyGpt, DISABLED_SpeedReport) {
  for (int64_t vocab : {256, 4096}) {
    for (auto bt : std::vector<std::pair<int64_t, int64_t>>{{8, 128}, {16, 128}, {8, 256}}) {
      TinyGptConfig c;
      c.vocab_size = vocab;
      c.context = bt.second;
      auto model = std::make_shared<TinyGpt>(c);
      torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(1e-3));
      auto gen = at::detail::createCPUGenerator(1);
      const torch::Tensor tokens = torch::randint(0, vocab, {bt.first, bt.second}, gen, torch::kInt64);
      auto step = [&] {
        opt.zero_grad();
        torch::Tensor loss = model->loss(tokens);
        loss.backward();
        opt.step();
      };
      for (int i = 0; i < 3; ++i) step();
      const util::Stopwatch clock;
      int n = 0;
      while (clock.seconds() < 4.0) step(), ++n;
      const double s = clock.seconds();
      std::printf("TinyGpt V=%lld d=128 L=2 H=4 params=%lld B=%lld T=%lld: %.1f train steps/s (%d steps, threads=%d)\n",
                  static_cast<long long>(vocab), static_cast<long long>(model->num_parameters()),
                  static_cast<long long>(bt.first), static_cast<long long>(bt.second), n / s, n,
                  at::get_num_threads());
    }
  }
}

// Cost of one probe at L = 10 and label statistics per rollout kind on a TinyGpt: run with
// --gtest_also_run_disabled_tests.
TEST(OracleProber, DISABLED_CostAndLabelStatsReport) {
  TinyGptConfig c;
  c.vocab_size = 256;
  c.context = 128;
  auto factory = [c] { return std::make_shared<TinyGpt>(c); };
  auto opt_factory = adamw_factory(1e-3);
  auto module = factory();
  auto optimizer = opt_factory(*module);
  // A pool of 8 "documents" (each a distinct repeating pattern) x 8 noisy variants; the
  // reference set is patterns 0-1.
  auto gen = at::detail::createCPUGenerator(2);
  std::vector<torch::Tensor> rows;
  std::vector<int64_t> clusters;
  for (int64_t d = 0; d < 8; ++d) {
    const torch::Tensor base = torch::randint(0, 256, {16}, gen, torch::kInt64);
    for (int64_t v = 0; v < 8; ++v) {
      torch::Tensor row = base.repeat({8}).clone();
      const torch::Tensor noise = torch::randint(0, 256, {128}, gen, torch::kInt64);
      const torch::Tensor keep = torch::rand({128}, gen) < 0.9;
      rows.push_back(torch::where(keep, row, noise));
      clusters.push_back(d);
    }
  }
  const torch::Tensor pool = torch::stack(rows);
  const torch::Tensor refs = torch::stack({rows[0], rows[1], rows[8], rows[9]});
  ModuleProbeTarget live(module, optimizer, factory, opt_factory, tiny_gpt_loss, {refs});
  for (int i = 0; i < 20; ++i) live.train_step(pool.index_select(0, torch::randint(0, 64, {8}, gen, torch::kInt64)));

  {
    const util::Stopwatch clock;
    for (int i = 0; i < 10; ++i) live.clone();
    std::printf("ModuleProbeTarget::clone (TinyGpt V=256 d=128 L=2 + AdamW state): %.1f ms\n",
                clock.seconds() * 100.0);
  }
  OracleProberConfig pc;
  pc.rollout_length = 10;
  pc.lr_scale = 1.0;
  OracleProber prober(pc);
  std::vector<RolloutPlan> plans = random_rollouts(64, 6, 10, 1, 1);
  for (auto& p : cluster_neighbour_rollouts(torch::tensor(clusters, torch::kInt64), 6, 10, 1, 2)) plans.push_back(p);
  const ProbeResult result = prober.run(live, pool, plans);
  std::printf("TinyGpt V=256 d=128 L=2, ref batch [4,128]: %lld rollouts of L=10 in %.2f s = %.3f s/rollout "
              "(%lld discarded)\n",
              static_cast<long long>(result.attempted), result.seconds, result.seconds_per_rollout(),
              static_cast<long long>(result.discarded));
  std::printf("%s", format_label_stats(summarise_labels(result.rollouts)).c_str());
}

}  // namespace
}  // namespace groupmates
