// OracleProber, ModuleProbeTarget and ProbeScheduler: exact rollouts, clone independence,
// NaN discards, asynchronous probes that never touch the trainer.
#include <atomic>
#include <cmath>
#include <cstdio>
#include <chrono>
#include <future>
#include <thread>
#include <memory>
#include <vector>

#include <random>

#include <gtest/gtest.h>

#include <optional>

#include "common/wrapped_target.h"
#include "probe_test_util.h"
#include "groupmates/error.h"
#include "groupmates/probe_target.h"
#include "groupmates/module_probe_target.h"
#include "groupmates/engine/oracle_prober.h"
#include "groupmates/engine/rollout_policy.h"
#include "groupmates/engine/label_buffer.h"
#include "groupmates/engine/probe_scheduler.h"
#include "groupmates/engine/metrics.h"
#include "common/test_seed.h"
#include "tiny_gpt/tiny_gpt.h"

#if defined(__linux__)
#include <cerrno>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace groupmates {
namespace {

using test::expect_same_state;
using test::LinearNet;

constexpr int64_t kD = 3;
constexpr double kLr = 0.05, kMomentum = 0.9, kClip = 1.0;

std::shared_ptr<ModuleProbeTarget> make_linear_target(const std::vector<double>& w, double b) {
  auto net = std::make_shared<LinearNet>(kD);
  {
    torch::NoGradGuard no_grad;
    net->fc->weight.copy_(torch::tensor(w, torch::kDouble).view({1, kD}));
    net->fc->bias.fill_(b);
  }
  auto opt_factory = [](torch::nn::Module& m) -> std::shared_ptr<torch::optim::Optimizer> {
    return std::make_shared<torch::optim::SGD>(m.parameters(), torch::optim::SGDOptions(kLr).momentum(kMomentum));
  };
  auto optimizer = opt_factory(*net);
  std::vector<torch::Tensor> refs = {torch::tensor({{3, 1, 4, 9}, {2, 7, 1, 8}}, torch::kInt64),
                                     torch::tensor({{5, 5, 5, 2}}, torch::kInt64)};
  ModuleProbeTargetConfig config;
  config.grad_clip_norm = kClip;
  return std::make_shared<ModuleProbeTarget>(
      net, optimizer, [] { return std::make_shared<LinearNet>(kD); }, opt_factory, test::linear_loss, refs, config);
}

torch::Tensor linear_pool() {
  return torch::tensor({{1, 2, 3, 4},
                        {9, 0, 4, 1},
                        {4, 4, 1, 19},
                        {0, 7, 3, 2},
                        {8, 1, 9, 12},
                        {2, 2, 2, 2},
                        {6, 3, 0, 15}},
                       torch::kInt64);
}

/// The same model, optimiser and clipping, computed in double straight from the definitions.
struct HandModel {
  std::vector<double> w;
  double b;
  std::vector<double> buf;  // momentum buffer over (w, b); empty before the first step
  int clipped = 0;

  static double target_of(const std::vector<int64_t>& row) { return row[kD] / 10.0; }
  double predict(const std::vector<int64_t>& row) const {
    double p = b;
    for (int64_t i = 0; i < kD; ++i) p += w[i] * (row[i] / 10.0);
    return p;
  }
  double loss(const std::vector<std::vector<int64_t>>& rows) const {
    double s = 0;
    for (const auto& r : rows) s += std::pow(predict(r) - target_of(r), 2);
    return s / rows.size();
  }
  void step(const std::vector<std::vector<int64_t>>& rows, double lr) {
    std::vector<double> g(kD + 1, 0.0);
    for (const auto& r : rows) {
      const double e = 2.0 * (predict(r) - target_of(r)) / rows.size();
      for (int64_t i = 0; i < kD; ++i) g[i] += e * (r[i] / 10.0);
      g[kD] += e;
    }
    double norm = 0;
    for (double x : g) norm += x * x;
    norm = std::sqrt(norm);
    const double coef = kClip / (norm + 1e-6);  // torch::nn::utils::clip_grad_norm_
    if (coef < 1) {
      ++clipped;
      for (double& x : g) x *= coef;
    }
    if (buf.empty())
      buf = g;
    else
      for (size_t i = 0; i < g.size(); ++i) buf[i] = kMomentum * buf[i] + g[i];
    for (int64_t i = 0; i < kD; ++i) w[i] -= lr * buf[i];
    b -= lr * buf[kD];
  }
};

std::vector<std::vector<int64_t>> rows_of(const torch::Tensor& t) {
  std::vector<std::vector<int64_t>> out;
  for (int64_t i = 0; i < t.size(0); ++i) {
    const torch::Tensor r = t[i].contiguous();
    out.emplace_back(r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel());
  }
  return out;
}

double hand_reference(const HandModel& m) {
  const double a = m.loss({{3, 1, 4, 9}, {2, 7, 1, 8}}), c = m.loss({{5, 5, 5, 2}});
  return (a + c) / 2;
}

/// d hand_reference / d (w, b), written out: the mean of the two batches' mean-row gradients.
std::vector<double> hand_reference_gradient(const HandModel& m) {
  std::vector<double> g(kD + 1, 0.0);
  for (const std::vector<std::vector<int64_t>>& batch :
       {std::vector<std::vector<int64_t>>{{3, 1, 4, 9}, {2, 7, 1, 8}}, std::vector<std::vector<int64_t>>{{5, 5, 5, 2}}})
    for (const auto& r : batch) {
      const double e = 2.0 * (m.predict(r) - HandModel::target_of(r)) / double(batch.size()) / 2.0;
      for (int64_t i = 0; i < kD; ++i) g[i] += e * (r[i] / 10.0);
      g[kD] += e;
    }
  return g;
}

/// The linear target and its hand model after the same two real training steps (so the optimiser has
/// momentum state to copy).
struct WarmedLinear {
  std::shared_ptr<ModuleProbeTarget> live;
  torch::Tensor pool;
  HandModel hand;
};

WarmedLinear warmed_linear() {
  const std::vector<double> w0 = {0.3, -0.2, 0.5};
  const double b0 = 0.1;
  WarmedLinear w{make_linear_target(w0, b0), linear_pool(), HandModel{w0, b0, {}, 0}};
  for (int64_t r : {0, 1}) {
    w.live->train_step(w.pool.slice(0, r, r + 1));
    w.hand.step(rows_of(w.pool.slice(0, r, r + 1)), kLr);
  }
  return w;
}

void check_rollout_against_hand(int64_t rows_per_step, double lr_scale) {
  auto [live, pool, hand] = warmed_linear();
  const std::string before = live->state_blob();

  OracleProberConfig config;
  config.rollout_length = 3;
  config.rows_per_step = rows_per_step;
  config.lr_scale = lr_scale;
  OracleProber prober(config);
  RolloutPlan plan;
  plan.candidates = rows_per_step == 1 ? std::vector<int64_t>{2, 4, 3} : std::vector<int64_t>{2, 4, 3, 6, 5, 0};
  const ProbeResult result = prober.run(*live, pool, {plan});
  ASSERT_EQ(result.rollouts.size(), 1u);
  EXPECT_EQ(result.discarded, 0);
  const Rollout& rollout = result.rollouts[0];

  const double r0 = hand_reference(hand);
  EXPECT_NEAR(rollout.reference_before, r0, 1e-13);
  double previous = 0;
  for (int64_t t = 0; t < 3; ++t) {
    std::vector<std::vector<int64_t>> batch;
    for (int64_t k = 0; k < rows_per_step; ++k)
      batch.push_back(rows_of(pool.slice(0, plan.candidates[t * rows_per_step + k],
                                         plan.candidates[t * rows_per_step + k] + 1))[0]);
    hand.step(batch, kLr * lr_scale);
    const double s = hand_reference(hand) - r0;
    EXPECT_NEAR(rollout.cumulative[t], s, 1e-12) << "s_" << t + 1;
    EXPECT_NEAR(rollout.labels[t], s - previous, 1e-12) << "y_" << t + 1;
    previous = s;
  }
  EXPECT_GT(hand.clipped, 0) << "the case should exercise gradient clipping";
  EXPECT_EQ(live->state_blob(), before) << "the prober changed the live model";
}

TEST(OracleProber, MatchesHandComputedRollout) { check_rollout_against_hand(1, 1.0); }

// First-order labels: s_t = <g, theta_t - theta_0>, g the reference gradient at theta_0, against the
// same hand model (the steps are real; only the evaluation is replaced).
TEST(OracleProber, FirstOrderLabelsMatchHandComputedGradientDot) {
  auto [live, pool, hand] = warmed_linear();
  const std::string before = live->state_blob();
  std::vector<torch::Tensor> grads_before;
  for (const auto& p : live->module().parameters()) grads_before.push_back(p.grad().clone());
  OracleProberConfig config;
  config.rollout_length = 3;
  config.lr_scale = 0.5;
  config.first_order = true;
  OracleProber prober(config);
  RolloutPlan plan;
  plan.candidates = {2, 4, 3};
  const ProbeResult result = prober.run(*live, pool, {plan});
  ASSERT_EQ(result.rollouts.size(), 1u);
  const Rollout& rollout = result.rollouts[0];
  EXPECT_NEAR(rollout.reference_before, hand_reference(hand), 1e-13);
  const std::vector<double> g = hand_reference_gradient(hand);
  const std::vector<double> w_start = hand.w;
  const double b_start = hand.b;
  double previous = 0;
  for (int64_t t = 0; t < 3; ++t) {
    hand.step(rows_of(pool.slice(0, plan.candidates[t], plan.candidates[t] + 1)), kLr * 0.5);
    double s = g[kD] * (hand.b - b_start);
    for (int64_t i = 0; i < kD; ++i) s += g[i] * (hand.w[i] - w_start[i]);
    EXPECT_NEAR(rollout.cumulative[t], s, 1e-12) << "s_" << t + 1;
    EXPECT_NEAR(rollout.labels[t], s - previous, 1e-12) << "y_" << t + 1;
    previous = s;
  }
  EXPECT_EQ(live->state_blob(), before) << "the reference gradient or the prober changed the live model";
  size_t i = 0;
  for (const auto& p : live->module().parameters())
    EXPECT_TRUE(torch::equal(p.grad(), grads_before[i++])) << "reference_gradient() wrote into .grad";
}

TEST(OracleProber, FirstOrderNeedsTheTargetsGradient) {
  // A target that gives no weights() / reference_gradient() (the interface's defaults) is refused by name.
  auto inner = make_linear_target({0.3, -0.2, 0.5}, 0.1);
  struct NoGradient : gmtest::WrappedTarget {
    using gmtest::WrappedTarget::WrappedTarget;
    std::vector<torch::Tensor> weights() const override { return {}; }
  };
  NoGradient target(inner, [] {});
  OracleProberConfig config;
  config.rollout_length = 1;
  config.first_order = true;
  RolloutPlan plan;
  plan.candidates = {2};
  try {
    OracleProber(config).run(target, linear_pool(), {plan});
    ADD_FAILURE() << "expected Error(kInvalidConfig)";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig);
    EXPECT_NE(std::string(e.what()).find("first_order_labels"), std::string::npos) << e.what();
  }
  Rollout out;  // run_rollout without the gradient
  EXPECT_THROW(OracleProber(config).run_rollout(*inner, linear_pool(), plan, 0.0, out), Error);
}

TEST(OracleProber, MatchesHandComputedRolloutWithBatchesAndScaledStep) { check_rollout_against_hand(2, 0.5); }

TEST(OracleProber, RejectsBadPlans) {
  auto live = make_linear_target({0, 0, 0}, 0);
  OracleProberConfig config;
  config.rollout_length = 2;
  OracleProber prober(config);
  RolloutPlan short_plan{{1}, RolloutKind::kRandom};
  EXPECT_THROW(prober.run(*live, linear_pool(), {short_plan}), Error);
  RolloutPlan outside{{1, 99}, RolloutKind::kRandom};
  EXPECT_THROW(prober.run(*live, linear_pool(), {outside}), Error);
}

TEST(OracleProber, DiscardsAndCountsNanRollouts) {
  auto live = make_linear_target({0.3, -0.2, 0.5}, 0.1);
  torch::Tensor pool = linear_pool();
  pool[3][0].fill_(100);  // poisons row 3: its loss is NaN
  const std::string before = live->state_blob();
  OracleProberConfig config;
  config.rollout_length = 2;
  OracleProber prober(config);
  std::vector<RolloutPlan> plans = {{{0, 1}, RolloutKind::kRandom},
                                    {{3, 1}, RolloutKind::kRandom},
                                    {{2, 4}, RolloutKind::kNeighbour},
                                    {{5, 3}, RolloutKind::kNeighbour}};
  const ProbeResult result = prober.run(*live, pool, plans);
  EXPECT_EQ(result.attempted, 4);
  EXPECT_EQ(result.discarded, 2);
  ASSERT_EQ(result.rollouts.size(), 2u);
  EXPECT_EQ(result.rollouts[0].candidates, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(result.rollouts[1].candidates, (std::vector<int64_t>{2, 4}));
  for (const auto& r : result.rollouts)
    for (double y : r.labels) EXPECT_TRUE(std::isfinite(y));
  EXPECT_EQ(live->state_blob(), before);

  // Through the scheduler: counted, never put into the buffer.
  auto buffer = std::make_shared<LabelBuffer>(100);
  ProbeSchedulerConfig sc;
  sc.interval_steps = 10;
  sc.prober = config;
  sc.random_rollouts = 0;
  sc.neighbour_rollouts = 6;
  ProbeScheduler scheduler(sc, buffer);
  ProbeContext context;
  context.cluster_ids = torch::tensor({0, 0, 1, 0, 1, 0, 1}, torch::kInt64);  // row 3 in cluster 0
  ASSERT_TRUE(scheduler.maybe_probe(0, *live, pool, context));
  scheduler.wait_idle();
  const ProbeStats stats = scheduler.stats();
  EXPECT_EQ(stats.probes_completed, 1);
  EXPECT_EQ(stats.rollouts_kept + stats.rollouts_discarded, 6);
  EXPECT_GT(stats.rollouts_discarded, 0);
  EXPECT_EQ(static_cast<int64_t>(buffer->size()), stats.rollouts_kept);
  for (const auto& e : buffer->snapshot()) {
    EXPECT_LT(e.tokens.max().item<int64_t>(), 100);
    for (double y : e.labels) EXPECT_TRUE(std::isfinite(y));
  }
  EXPECT_EQ(live->state_blob(), before);
}

TEST(OracleProber, NonFiniteSnapshotDiscardsEverything) {
  auto live = make_linear_target({std::nan(""), 0, 0}, 0);
  OracleProberConfig config;
  config.rollout_length = 1;
  OracleProber prober(config);
  const ProbeResult result = prober.run(*live, linear_pool(), {{{0}, RolloutKind::kRandom}, {{1}, RolloutKind::kRandom}});
  EXPECT_TRUE(result.rollouts.empty());
  EXPECT_EQ(result.discarded, 2);
}

TEST(OracleProber, CostBoundedByMaxRollouts) {
  auto live = make_linear_target({0.3, -0.2, 0.5}, 0.1);
  OracleProberConfig config;
  config.rollout_length = 2;
  config.max_rollouts = 3;
  OracleProber prober(config);
  const auto plans = random_rollouts(7, 5, 2, 1, 1);
  const ProbeResult result = prober.run(*live, linear_pool(), plans);
  EXPECT_EQ(result.attempted, 3);
  EXPECT_EQ(result.skipped, 2);
  EXPECT_EQ(result.rollouts.size(), 3u);
  EXPECT_GT(result.seconds_per_rollout(), 0);
}

// ---- TinyGpt targets (AdamW) ----

TinyGptConfig small_gpt() { return tiny_gpt_config(40, 16, 32, 1, 2, 7); }

const ModuleProbeTarget::OptimizerFactory adamw = adamw_factory(3e-3, 0.1);

std::shared_ptr<ModuleProbeTarget> make_gpt_target(ModuleProbeTarget::OptimizerFactory opt_factory = adamw) {
  const TinyGptConfig config = small_gpt();
  auto factory = [config] { return std::make_shared<TinyGpt>(config); };
  auto module = factory();
  auto optimizer = opt_factory(*module);
  torch::Tensor refs = torch::arange(64, torch::kInt64).remainder(40).view({4, 16});
  return std::make_shared<ModuleProbeTarget>(module, optimizer, factory, opt_factory, tiny_gpt_loss,
                                             std::vector<torch::Tensor>{refs});
}

torch::Tensor gpt_pool(int64_t n, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::randint(0, 40, {n, 16}, gen, torch::kInt64);
}

// First-order labels rank candidates as the real evaluation after the step does (AdamW, a TinyGpt
// trained a few steps on fresh random data): the approximation is what makes them cheap, so the test
// checks its quality, and the sign (a flipped sign would give a Spearman near -1).
TEST(OracleProber, FirstOrderLabelsRankLikeEvaluatedSteps) {
  const uint64_t seed = testing_seed::fresh();
  SCOPED_TRACE(testing_seed::trace(seed));
  torch::manual_seed(seed);
  auto live = make_gpt_target();
  const torch::Tensor data = gpt_pool(16, seed + 1), pool = gpt_pool(24, seed + 2);
  for (int64_t s = 0; s < 8; ++s) live->train_step(data.slice(0, 2 * s, 2 * s + 2));
  std::vector<RolloutPlan> plans(24);
  for (int64_t i = 0; i < 24; ++i) plans[i].candidates = {i};
  OracleProberConfig config;
  config.rollout_length = 1;
  config.lr_scale = 0.3;
  config.max_rollouts = 24;
  const ProbeResult evaluated = OracleProber(config).run(*live, pool, plans);
  config.first_order = true;
  const ProbeResult first_order = OracleProber(config).run(*live, pool, plans);
  ASSERT_EQ(evaluated.rollouts.size(), 24u);
  ASSERT_EQ(first_order.rollouts.size(), 24u);
  std::vector<double> a, b;
  for (int64_t i = 0; i < 24; ++i) {
    a.push_back(evaluated.rollouts[i].labels[0]);
    b.push_back(first_order.rollouts[i].labels[0]);
  }
  const double rho = spearman(a, b);
  std::printf("first-order vs evaluated labels: Spearman %.4f over 24 candidates\n", rho);
  EXPECT_GT(rho, 0.9);
}

TEST(ModuleProbeTarget, CloneIsDeepAndIndependent) {
  auto live = make_gpt_target();
  const torch::Tensor pool = gpt_pool(8, 1);
  live->train_step(pool.slice(0, 0, 2));
  live->train_step(pool.slice(0, 2, 4));
  std::unique_ptr<ProbeTarget> copy_base = live->clone();
  auto* copy = dynamic_cast<ModuleProbeTarget*>(copy_base.get());
  ASSERT_NE(copy, nullptr);
  expect_same_state(*live, *copy);  // weights AND optimiser state copied
  EXPECT_EQ(live->reference_loss(), copy->reference_loss());
  // No shared storage.
  auto pl = live->module().parameters(), pc = copy->module().parameters();
  for (size_t i = 0; i < pl.size(); ++i) EXPECT_NE(pl[i].data_ptr(), pc[i].data_ptr());

  const std::string live_before = live->state_blob();
  copy->train_step(pool.slice(0, 4, 6));
  EXPECT_EQ(live->state_blob(), live_before) << "stepping the clone changed the original";
  const std::string copy_before = copy->state_blob();
  live->train_step(pool.slice(0, 6, 8));
  EXPECT_EQ(copy->state_blob(), copy_before) << "stepping the original changed the clone";

  // The same step from the same state gives the same result on the original and a clone.
  auto twin = live->clone();
  auto* twin_target = dynamic_cast<ModuleProbeTarget*>(twin.get());
  live->train_step(pool.slice(0, 0, 4));
  twin_target->train_step(pool.slice(0, 0, 4));
  expect_same_state(*live, *twin_target);
}

TEST(ModuleProbeTarget, CloneOfAnOptimizerWithoutADirectCopyUsesArchives) {
  // AdamW/Adam/SGD state is copied tensor by tensor; any other optimiser (here RMSprop) through
  // archives: both deep, both exact.
  auto live = make_gpt_target([](torch::nn::Module& m) -> std::shared_ptr<torch::optim::Optimizer> {
    return std::make_shared<torch::optim::RMSprop>(m.parameters(), torch::optim::RMSpropOptions(1e-3).momentum(0.9));
  });
  const torch::Tensor pool = gpt_pool(8, 2);
  live->train_step(pool.slice(0, 0, 4));
  auto copy = live->clone();
  auto* c = dynamic_cast<ModuleProbeTarget*>(copy.get());
  ASSERT_NE(c, nullptr);
  auto same_weights = [&] {
    const auto a = live->module().parameters(), b = c->module().parameters();
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_NE(a[i].data_ptr(), b[i].data_ptr());
      EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
    }
  };
  same_weights();
  // The same step on both: equal weights after it only if the RMSprop state (square averages,
  // momentum) was copied exactly too.
  live->train_step(pool.slice(0, 4, 8));
  c->train_step(pool.slice(0, 4, 8));
  same_weights();
}

// OracleProber::run steps one scratch copy reset in place (ProbeTarget::reset_from) for every rollout: its labels
// are those of a fresh clone() per rollout, the straightforward way, bit for bit, on a TinyGpt + AdamW trained on
// fresh random rows; the reset copy equals a clone in weights and optimiser state; an optimiser without a direct
// copy (RMSprop) is not reset in place, and its rollouts still match fresh clones.
TEST(ModuleProbeTarget, ResetFromMakesTheScratchCopyAFreshCloneAgain) {
  const uint64_t seed = testing_seed::fresh();
  SCOPED_TRACE(testing_seed::trace(seed));
  torch::manual_seed(seed);
  const auto rmsprop = [](torch::nn::Module& m) -> std::shared_ptr<torch::optim::Optimizer> {
    return std::make_shared<torch::optim::RMSprop>(m.parameters(), torch::optim::RMSpropOptions(1e-3).momentum(0.9));
  };
  for (const bool direct : {true, false}) {
    SCOPED_TRACE(direct ? "AdamW" : "RMSprop");
    auto live = direct ? make_gpt_target() : make_gpt_target(rmsprop);
    const torch::Tensor data = gpt_pool(12, seed + 1), pool = gpt_pool(10, seed + 2);
    for (int64_t s = 0; s < 6; ++s) live->train_step(data.slice(0, 2 * s, 2 * s + 2));
    for (const bool first_order : {false, true}) {
      OracleProberConfig config;
      config.rollout_length = first_order ? 1 : 2;
      config.lr_scale = 0.3;
      config.first_order = first_order;
      config.max_rollouts = 64;
      std::vector<RolloutPlan> plans(5);
      for (int64_t i = 0; i < 5; ++i)
        for (int64_t t = 0; t < config.rollout_length; ++t) plans[i].candidates.push_back((3 * i + t) % 10);
      const OracleProber prober(config);
      const ProbeResult reused = prober.run(*live, pool, plans);
      ASSERT_EQ(reused.rollouts.size(), plans.size());
      // The reference: a fresh clone for each rollout, stepped by hand.
      const std::optional<ReferenceGradient> g =
          first_order ? std::optional<ReferenceGradient>(ReferenceGradient::of(*live)) : std::nullopt;
      const double r0 = live->reference_loss();
      for (size_t i = 0; i < plans.size(); ++i) {
        auto fresh = live->clone();
        fresh->set_lr_scale(0.3);
        double previous = 0;
        for (int64_t t = 0; t < config.rollout_length; ++t) {
          fresh->train_step(pool.index_select(0, torch::tensor(std::vector<int64_t>{plans[i].candidates[t]})));
          const double s = first_order ? g->dot_change(fresh->weights()) : fresh->reference_loss() - r0;
          EXPECT_EQ(reused.rollouts[i].labels[t], s - previous) << "rollout " << i << " step " << t;
          previous = s;
        }
      }
    }
    // In place: a changed copy is the live target's equal again (AdamW), or reset_from says it cannot (RMSprop).
    auto copy = live->clone();
    copy->train_step(pool.slice(0, 0, 3));
    copy->set_lr_scale(0.5);
    ASSERT_EQ(copy->reset_from(*live), direct);
    if (direct) {
      auto* c = dynamic_cast<ModuleProbeTarget*>(copy.get());
      expect_same_state(*live, *c);  // weights, buffers, lr and every optimiser state tensor
      for (const auto& p : c->module().parameters()) EXPECT_FALSE(p.grad().defined()) << "a gradient left over";
      const auto& want = static_cast<const torch::optim::AdamWOptions&>(live->optimizer().param_groups()[0].options());
      const auto& got = static_cast<const torch::optim::AdamWOptions&>(c->optimizer().param_groups()[0].options());
      EXPECT_EQ(got.betas(), want.betas());
      EXPECT_EQ(got.eps(), want.eps());
      EXPECT_EQ(got.weight_decay(), want.weight_decay());
      EXPECT_EQ(c->lr_scale(), live->lr_scale());
      const auto a = live->module().parameters(), b = c->module().parameters();
      for (size_t i = 0; i < a.size(); ++i) EXPECT_NE(a[i].data_ptr(), b[i].data_ptr()) << "storage shared";
    }
  }
}

TEST(ProbeScheduler, AsyncProbeLeavesTrainerBitExactAndSeesTheSnapshot) {
  auto live = make_gpt_target();
  auto twin = make_gpt_target();  // trained identically, never probed
  const torch::Tensor data = gpt_pool(32, 2);
  const torch::Tensor pool = gpt_pool(12, 3);
  for (int64_t s = 0; s < 3; ++s) {
    live->train_step(data.slice(0, 2 * s, 2 * s + 2));
    twin->train_step(data.slice(0, 2 * s, 2 * s + 2));
  }
  std::unique_ptr<ProbeTarget> snapshot_copy = twin->clone();  // what the probe should see

  auto buffer = std::make_shared<LabelBuffer>(64);
  ProbeSchedulerConfig sc;
  sc.interval_steps = 100;
  sc.first_step = 3;
  sc.prober.rollout_length = 3;
  sc.random_rollouts = 4;
  sc.neighbour_rollouts = 0;
  ProbeScheduler scheduler(sc, buffer);
  std::vector<Rollout> seen;
  scheduler.set_callback([&seen](int64_t step, const ProbeResult& r) { seen = r.rollouts; });
  EXPECT_FALSE(scheduler.maybe_probe(2, *live, pool));  // not due
  ASSERT_TRUE(scheduler.maybe_probe(3, *live, pool));
  // The trainer keeps stepping while the probe runs.
  for (int64_t s = 3; s < 10; ++s) {
    live->train_step(data.slice(0, 2 * s, 2 * s + 2));
    twin->train_step(data.slice(0, 2 * s, 2 * s + 2));
  }
  scheduler.wait_idle();
  expect_same_state(*live, *twin);

  const ProbeStats stats = scheduler.stats();
  EXPECT_EQ(stats.probes_completed, 1);
  EXPECT_EQ(stats.rollouts_kept, 4);
  EXPECT_EQ(buffer->size(), 4u);
  ASSERT_EQ(seen.size(), 4u);
  // The labels are those of the weights at the snapshot.
  OracleProber prober(sc.prober);
  const double r0 = snapshot_copy->reference_loss();
  for (const auto& r : seen) {
    Rollout again;
    ASSERT_TRUE(prober.run_rollout(*snapshot_copy, pool, {r.candidates, r.kind}, r0, again));
    for (size_t t = 0; t < r.labels.size(); ++t) EXPECT_NEAR(again.labels[t], r.labels[t], 1e-7);
  }
  const auto entries = buffer->snapshot();
  EXPECT_EQ(entries[0].probe_step, 3);
  EXPECT_EQ(entries[0].tokens.sizes(), (std::vector<int64_t>{3, 1, 16}));
  EXPECT_GT(stats.probe_seconds, 0);
  EXPECT_GT(stats.seconds_per_rollout, 0);
}

#if defined(__linux__)
// ProbeSchedulerConfig::nice (ProbeConfig::nice) applies to the probe's own thread: its optimiser steps
// see the raised nice value; the caller's thread keeps its own.
TEST(ProbeScheduler, ProbeThreadRunsAtItsNiceValue) {
  const auto own_nice = [] {
    errno = 0;
    return ::getpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)));
  };
  const int caller_nice = own_nice();
  if (caller_nice > 15) GTEST_SKIP() << "the test process already runs at nice " << caller_nice;
  std::atomic<int> seen_nice{-100};
  auto inner = make_gpt_target();
  gmtest::WrappedTarget live(inner, [&] { seen_nice = own_nice(); });
  ProbeSchedulerConfig sc;
  sc.interval_steps = 1;
  sc.prober.rollout_length = 1;
  sc.random_rollouts = 2;
  sc.neighbour_rollouts = 0;
  sc.nice = 3;
  ProbeScheduler scheduler(sc, std::make_shared<LabelBuffer>(16));
  ASSERT_TRUE(scheduler.maybe_probe(0, live, gpt_pool(6, 6)));
  scheduler.wait_idle();
  EXPECT_EQ(seen_nice.load(), caller_nice + 3);
  EXPECT_EQ(own_nice(), caller_nice) << "the caller's thread changed priority";
}
#endif

TEST(ProbeScheduler, IdleTrainerUnchangedBitExact) {
  auto live = make_gpt_target();
  live->train_step(gpt_pool(2, 5));
  const std::string before = live->state_blob();
  auto buffer = std::make_shared<LabelBuffer>(16);
  ProbeSchedulerConfig sc;
  sc.interval_steps = 1;
  sc.prober.rollout_length = 2;
  sc.random_rollouts = 3;
  ProbeScheduler scheduler(sc, buffer);
  ProbeContext context;
  context.embeddings = torch::randn({10, 4});
  ASSERT_TRUE(scheduler.maybe_probe(0, *live, gpt_pool(10, 6), context));
  scheduler.wait_idle();
  EXPECT_EQ(live->state_blob(), before);
  EXPECT_EQ(scheduler.stats().rollouts_kept, 3 + sc.neighbour_rollouts);
}

TEST(OracleProber, CostBoundedByMaxSeconds) {
  auto target = gmtest::slow_target(make_linear_target({0.3, -0.2, 0.5}, 0.1), 0.03);
  OracleProberConfig config;
  config.rollout_length = 1;
  config.max_seconds = 0.1;
  OracleProber prober(config);
  const ProbeResult result = prober.run(target, linear_pool(), random_rollouts(7, 20, 1, 1, 2));
  EXPECT_GE(result.attempted, 1);
  EXPECT_LE(result.attempted, 5);  // ~0.1 s / 0.03 s, rounded up
  EXPECT_EQ(result.attempted + result.skipped, 20);
  EXPECT_LT(result.seconds, 0.5);
}

TEST(ProbeScheduler, DueProbeWhileBusyIsSkippedAndCounted) {
  std::promise<void> open;
  auto target = gmtest::gated_target(make_linear_target({0.3, -0.2, 0.5}, 0.1), open.get_future().share());
  auto buffer = std::make_shared<LabelBuffer>(16);
  ProbeSchedulerConfig sc;
  sc.interval_steps = 2;
  sc.prober.rollout_length = 2;
  sc.random_rollouts = 2;
  ProbeScheduler scheduler(sc, buffer);
  ASSERT_TRUE(scheduler.maybe_probe(0, target, linear_pool()));
  EXPECT_TRUE(scheduler.busy());
  EXPECT_FALSE(scheduler.maybe_probe(1, target, linear_pool()));  // not due
  EXPECT_FALSE(scheduler.maybe_probe(2, target, linear_pool()));  // due but busy: skipped
  EXPECT_FALSE(scheduler.maybe_probe(4, target, linear_pool()));
  open.set_value();
  scheduler.wait_idle();
  ProbeStats stats = scheduler.stats();
  EXPECT_EQ(stats.probes_started, 1);
  EXPECT_EQ(stats.probes_skipped_busy, 2);
  EXPECT_EQ(stats.rollouts_kept, 2);
  EXPECT_TRUE(scheduler.maybe_probe(6, target, linear_pool()));
  scheduler.wait_idle();
  stats = scheduler.stats();
  EXPECT_EQ(stats.probes_completed, 2);
  EXPECT_EQ(buffer->size(), 4u);
  EXPECT_GE(stats.probe_share, 0.0);
  EXPECT_LE(stats.probe_share, 1.0);
}

TEST(ProbeScheduler, FailedProbeIsReportedNotThrown) {
  auto live = make_linear_target({0.3, -0.2, 0.5}, 0.1);
  auto buffer = std::make_shared<LabelBuffer>(16);
  ProbeSchedulerConfig sc;
  sc.prober.rollout_length = 5;
  sc.random_rollouts = 1;
  ProbeScheduler scheduler(sc, buffer);
  ASSERT_TRUE(scheduler.maybe_probe(0, *live, linear_pool().slice(0, 0, 3)));  // 3 rows < 5 per rollout
  scheduler.wait_idle();
  EXPECT_EQ(scheduler.stats().probes_failed, 1);
  EXPECT_NE(scheduler.last_error().find("distinct rows"), std::string::npos) << scheduler.last_error();
}

TEST(ProbeScheduler, HungProbeIsAbandonedAfterItsTimeout) {
  auto hang = std::make_shared<gmtest::HangSwitch>();
  gmtest::HangingTarget target(make_linear_target({0.3, -0.2, 0.5}, 0.1), hang);
  auto buffer = std::make_shared<LabelBuffer>(16);
  std::atomic<int> callbacks{0};
  ProbeSchedulerConfig sc;
  sc.interval_steps = 2;
  sc.prober.rollout_length = 2;
  sc.random_rollouts = 2;
  sc.timeout_seconds = 0.3;
  {
    ProbeScheduler scheduler(sc, buffer);
    scheduler.set_callback([&callbacks](int64_t, const ProbeResult&) { ++callbacks; });
    const auto started = std::chrono::steady_clock::now();
    ASSERT_TRUE(scheduler.maybe_probe(0, target, linear_pool()));  // its first step hangs
    EXPECT_TRUE(scheduler.busy());
    EXPECT_FALSE(scheduler.maybe_probe(2, target, linear_pool())) << "busy before the timeout: skipped";
    scheduler.wait_idle();  // returns at the timeout, the probe abandoned
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    EXPECT_GE(waited, 0.3);
    EXPECT_LT(waited, 10.0);
    EXPECT_FALSE(scheduler.busy());
    ProbeStats st = scheduler.stats();
    EXPECT_EQ(st.probes_timed_out, 1);
    EXPECT_EQ(st.probes_failed, 0);
    EXPECT_EQ(st.probes_completed, 0);
    EXPECT_EQ(st.probes_skipped_busy, 1);
    EXPECT_NE(scheduler.last_error().find("step 0 was still running after ProbeConfig.timeout_seconds"),
              std::string::npos) << scheduler.last_error();
    // The loop goes on: the next due probe runs on a thread of its own while the hung one still hangs.
    ASSERT_TRUE(scheduler.maybe_probe(4, target, linear_pool()));
    scheduler.wait_idle();
    st = scheduler.stats();
    EXPECT_EQ(st.probes_completed, 1);
    EXPECT_EQ(st.probes_started, 2);
    EXPECT_EQ(callbacks.load(), 1);
    EXPECT_EQ(buffer->size(), 2u);
    EXPECT_GE(hang->clones_alive.load(), 1) << "the abandoned probe's snapshot (and its rollout's copy), on its hung thread";
  }  // the scheduler is gone; the hung thread still holds what it needs
  hang->release();
  EXPECT_TRUE(hang->clones_gone_within(60)) << "the abandoned thread finishes and frees its snapshot";
  EXPECT_EQ(callbacks.load(), 1) << "an abandoned probe's rollouts are dropped: no callback";
  EXPECT_EQ(buffer->size(), 2u) << "and nothing added to the buffer";
}

TEST(ProbeScheduler, DestructorReturnsAtTheTimeoutOfAHungProbe) {
  auto hang = std::make_shared<gmtest::HangSwitch>();
  gmtest::HangingTarget target(make_linear_target({0.3, -0.2, 0.5}, 0.1), hang);
  ProbeSchedulerConfig sc;
  sc.prober.rollout_length = 2;
  sc.random_rollouts = 2;
  sc.timeout_seconds = 0.3;
  const auto started = std::chrono::steady_clock::now();
  {
    ProbeScheduler scheduler(sc, std::make_shared<LabelBuffer>(16));
    ASSERT_TRUE(scheduler.maybe_probe(0, target, linear_pool()));
  }
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_GE(took, 0.3);
  EXPECT_LT(took, 10.0) << "shutdown is bounded by the timeout";
  hang->release();
  EXPECT_TRUE(hang->clones_gone_within(60));
}

// ProbeRun: a probe run a slice at a time gives what one OracleProber::run gives, bit for bit, whatever the slice
// size; its first slice measures R_0 (and the reference gradient) and runs no rollout.
TEST(OracleProber, ProbeRunInSlicesEqualsOneRun) {
  const uint64_t seed = testing_seed::fresh();
  SCOPED_TRACE(testing_seed::trace(seed));
  torch::manual_seed(seed);
  std::mt19937_64 rng(seed);
  auto live = make_gpt_target();
  const torch::Tensor data = gpt_pool(8, 2);
  for (int64_t s = 0; s < 4; ++s) live->train_step(data.slice(0, 2 * s, 2 * s + 2));
  const torch::Tensor pool = gpt_pool(10, rng());
  for (bool first_order : {true, false}) {
    OracleProberConfig config;
    config.rollout_length = 1 + static_cast<int64_t>(rng() % 2);
    config.first_order = first_order;
    config.max_rollouts = 5;  // of 7 planned: 2 skipped
    const OracleProber prober(config);
    const auto plans = random_rollouts(10, 7, config.rollout_length, 1, rng());
    const ProbeResult whole = prober.run(*live, pool, plans);
    ASSERT_EQ(whole.attempted, 5);
    for (int64_t slice : {1, 2, 3, 100}) {
      SCOPED_TRACE("first_order " + std::to_string(first_order) + ", slices of " + std::to_string(slice));
      ProbeRun run(prober, *live, pool, plans);
      EXPECT_FALSE(run.done());
      EXPECT_FALSE(run.advance(slice));
      EXPECT_EQ(run.result().attempted, 0) << "the first slice measures R_0 only";
      EXPECT_EQ(run.result().reference_before, whole.reference_before);
      int64_t calls = 1;
      for (bool done = false; !done;) {
        done = run.advance(slice);
        ++calls;
        EXPECT_EQ(run.result().attempted, std::min<int64_t>(5, (calls - 1) * slice)) << "at most a slice a call";
      }
      EXPECT_LE(calls, 2 + (5 + slice - 1) / slice) << "the skipped plans take no slice of their own";
      const ProbeResult& r = run.result();
      EXPECT_EQ(r.attempted, whole.attempted);
      EXPECT_EQ(r.skipped, whole.skipped);
      EXPECT_EQ(r.discarded, whole.discarded);
      ASSERT_EQ(r.rollouts.size(), whole.rollouts.size());
      for (size_t i = 0; i < r.rollouts.size(); ++i) {
        EXPECT_EQ(r.rollouts[i].candidates, whole.rollouts[i].candidates);
        EXPECT_EQ(r.rollouts[i].labels, whole.rollouts[i].labels) << "rollout " << i;
      }
      EXPECT_TRUE(run.advance(slice)) << "done stays done";
    }
  }
}

// ProbeSchedulerConfig::trainer_thread_rollouts: no probe thread. maybe_probe takes the snapshot only; each advance()
// runs a slice on the caller's thread while the trainer steps between slices; the last slice fills the buffer and
// calls the callback there. The labels are those a probe thread gives for the same snapshot, bit for bit, and a
// probe due while one is in flight is skipped and counted, as with a thread.
TEST(ProbeScheduler, SlicesRunOnTheTrainersThreadAndLabelTheSnapshot) {
  const uint64_t seed = testing_seed::fresh();
  SCOPED_TRACE(testing_seed::trace(seed));
  torch::manual_seed(seed);
  std::mt19937_64 rng(seed);
  auto live = make_gpt_target();
  auto twin = make_gpt_target();
  const torch::Tensor data = gpt_pool(40, rng()), pool = gpt_pool(12, rng());
  for (int64_t s = 0; s < 3; ++s) {
    live->train_step(data.slice(0, 2 * s, 2 * s + 2));
    twin->train_step(data.slice(0, 2 * s, 2 * s + 2));
  }
  ProbeSchedulerConfig sc;
  sc.interval_steps = 2;
  sc.first_step = 3;
  sc.prober.rollout_length = 1;
  sc.prober.first_order = (rng() & 1) != 0;
  sc.random_rollouts = 5;
  sc.neighbour_rollouts = 0;
  sc.seed = rng();
  SCOPED_TRACE(sc.prober.first_order ? "first-order labels" : "evaluated labels");
  auto threaded_buffer = std::make_shared<LabelBuffer>(64);
  {
    ProbeScheduler threaded(sc, threaded_buffer);
    ASSERT_TRUE(threaded.maybe_probe(3, *twin, pool));
    threaded.wait_idle();
  }
  ASSERT_EQ(threaded_buffer->size(), 5u);

  sc.trainer_thread_rollouts = 2;
  auto buffer = std::make_shared<LabelBuffer>(64);
  ProbeScheduler sliced(sc, buffer);
  int callbacks = 0;
  std::thread::id callback_thread;
  sliced.set_callback([&](int64_t, const ProbeResult&) {
    ++callbacks;
    callback_thread = std::this_thread::get_id();
  });
  ASSERT_TRUE(sliced.maybe_probe(3, *live, pool));
  EXPECT_TRUE(sliced.busy());
  int64_t advances = 0;
  for (int64_t s = 4; sliced.busy(); ++s) {
    ASSERT_LT(s, 20) << "the probe never finished";
    live->train_step(data.slice(0, 2 * s, 2 * s + 2));  // the trainer moves on between slices
    if (s == 5) {
      EXPECT_FALSE(sliced.maybe_probe(s, *live, pool)) << "due while one is in flight: skipped";
    }
    EXPECT_EQ(buffer->size(), 0u) << "nothing reaches the buffer before the last slice";
    sliced.advance();
    ++advances;
  }
  EXPECT_EQ(advances, 1 + 3) << "R_0 and the gradient, then 5 rollouts in slices of 2";
  EXPECT_EQ(callbacks, 1);
  EXPECT_EQ(callback_thread, std::this_thread::get_id());
  const ProbeStats stats = sliced.stats();
  EXPECT_EQ(stats.probes_started, 1);
  EXPECT_EQ(stats.probes_completed, 1);
  EXPECT_EQ(stats.probes_skipped_busy, 1);
  EXPECT_EQ(stats.rollouts_kept, 5);
  EXPECT_GT(stats.probe_seconds, 0);
  const auto want = threaded_buffer->snapshot(), got = buffer->snapshot();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].labels, want[i].labels) << "rollout " << i;
    EXPECT_TRUE(torch::equal(got[i].tokens, want[i].tokens)) << "rollout " << i;
    EXPECT_EQ(got[i].probe_step, 3);
  }
  sliced.advance();  // idle: nothing to do
  EXPECT_EQ(callbacks, 1);
}

// In slices, wait_idle() runs what is left of the probe on the calling thread, also when that thread is in no-grad
// mode (a probe step needs autograd); the destructor drops a probe in flight (its callback never runs); a probe whose
// plans cannot be drawn is reported as failed, not thrown.
TEST(ProbeScheduler, SlicedProbeFinishesOnWaitIdleAndIsDroppedOnDestruction) {
  auto live = make_linear_target({0.3, -0.2, 0.5}, 0.1);
  ProbeSchedulerConfig sc;
  sc.prober.rollout_length = 2;
  sc.random_rollouts = 3;
  sc.trainer_thread_rollouts = 1;
  auto buffer = std::make_shared<LabelBuffer>(16);
  int callbacks = 0;
  {
    ProbeScheduler scheduler(sc, buffer);
    scheduler.set_callback([&](int64_t, const ProbeResult&) { ++callbacks; });
    ASSERT_TRUE(scheduler.maybe_probe(0, *live, linear_pool()));
    EXPECT_TRUE(scheduler.advance());
    {
      const torch::NoGradGuard no_grad;  // e.g. a state() saved inside an evaluation block
      scheduler.wait_idle();
      EXPECT_FALSE(torch::GradMode::is_enabled()) << "the caller's mode is restored";
    }
    EXPECT_FALSE(scheduler.busy());
    EXPECT_EQ(callbacks, 1);
    EXPECT_EQ(scheduler.stats().probes_failed, 0) << scheduler.last_error();
    EXPECT_EQ(buffer->size(), 3u);
    ASSERT_TRUE(scheduler.maybe_probe(0, *live, linear_pool()));
    scheduler.advance();
    scheduler.advance();
  }
  EXPECT_EQ(callbacks, 1) << "the probe in flight at destruction is dropped, not finished";
  EXPECT_EQ(buffer->size(), 3u);

  sc.prober.rollout_length = 5;
  ProbeScheduler scheduler(sc, std::make_shared<LabelBuffer>(16));
  EXPECT_TRUE(scheduler.maybe_probe(0, *live, linear_pool().slice(0, 0, 3)));  // 3 rows < 5 per rollout
  EXPECT_TRUE(scheduler.busy()) << "the plans are drawn by the first slice";
  EXPECT_TRUE(scheduler.advance());
  EXPECT_FALSE(scheduler.busy());
  EXPECT_FALSE(scheduler.advance()) << "nothing in flight";
  EXPECT_EQ(scheduler.stats().probes_failed, 1);
  EXPECT_NE(scheduler.last_error().find("distinct rows"), std::string::npos) << scheduler.last_error();
}

}  // namespace
}  // namespace groupmates
