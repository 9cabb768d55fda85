// ScriptModuleProbeTarget: a TorchScript live model, probed with exact labels from the definitions.
#include <gtest/gtest.h>

#include <random>

#include <torch/optim.h>

#include "groupmates/engine/oracle_prober.h"
#include "groupmates/script_probe_target.h"
#include "common/test_seed.h"

using namespace groupmates;

// Named, so that its helpers (kD, rows_of, ...) do not meet another test file's in a unity build.
namespace script_probe_target_test {
namespace {

constexpr int kD = 4;

torch::jit::Module linear_lm(const std::vector<double>& w) {
  torch::jit::Module m("LinearLm");
  m.register_parameter("w", torch::tensor(w, torch::kDouble).detach().requires_grad_(true), false);
  m.define(R"JIT(
def loss(self, tokens):
    x = tokens.double()
    return ((x.matmul(self.w) - 1.0) ** 2).mean()
)JIT");
  return m;
}

// Mean squared error of rows x against 1 and its gradient, in double, from the definition.
double mse(const std::vector<std::vector<double>>& rows, const std::vector<double>& w, std::vector<double>* grad) {
  double sum = 0;
  if (grad) grad->assign(kD, 0.0);
  for (const auto& x : rows) {
    double dot = 0;
    for (int i = 0; i < kD; ++i) dot += x[i] * w[i];
    sum += (dot - 1) * (dot - 1);
    if (grad)
      for (int i = 0; i < kD; ++i) (*grad)[i] += 2 * (dot - 1) * x[i] / rows.size();
  }
  return sum / rows.size();
}

constexpr double kLr = 0.01;

/// Random weights (from `seed`), the scripted LM over them, its SGD factory (lr kLr) and optimiser;
/// seeds torch's generator with `seed` too.
struct SgdLinearLm {
  std::vector<double> w;
  torch::jit::Module module;
  ScriptModuleProbeTarget::OptimizerFactory factory;
  std::shared_ptr<torch::optim::Optimizer> optimizer;
};

SgdLinearLm sgd_linear_lm(uint64_t seed) {
  torch::manual_seed(seed);
  std::mt19937_64 rng(seed);
  std::vector<double> w(kD);
  for (auto& v : w) v = std::uniform_real_distribution<double>(-0.3, 0.3)(rng);
  ScriptModuleProbeTarget::OptimizerFactory factory =
      [](std::vector<torch::Tensor> params) -> std::shared_ptr<torch::optim::Optimizer> {
    return std::make_shared<torch::optim::SGD>(params, torch::optim::SGDOptions(kLr));
  };
  torch::jit::Module module = linear_lm(w);
  auto optimizer = factory(script_parameters(module));
  return {w, module, factory, optimizer};
}

/// Token rows [N, kD] as doubles.
std::vector<std::vector<double>> rows_of(const torch::Tensor& t) {
  std::vector<std::vector<double>> rows;
  for (int64_t r = 0; r < t.size(0); ++r) {
    std::vector<double> x(kD);
    for (int i = 0; i < kD; ++i) x[i] = static_cast<double>(t[r][i].item<int64_t>());
    rows.push_back(x);
  }
  return rows;
}

}  // namespace

TEST(ScriptModuleProbeTarget, RolloutLabelsEqualHandComputedSgd) {
  const uint64_t seed = testing_seed::fresh();
  SCOPED_TRACE(testing_seed::trace(seed));
  auto [w, module, factory, optimizer] = sgd_linear_lm(seed);
  const torch::Tensor pool = torch::randint(0, 5, {6, kD}, torch::kInt64);
  const torch::Tensor refs = torch::randint(0, 5, {3, kD}, torch::kInt64);
  ModuleProbeTargetConfig config;
  config.grad_clip_norm = 0;
  config.lr_scale = 0.5;
  ScriptModuleProbeTarget live(module, optimizer, factory, {refs}, "loss", config);
  const std::vector<double> before = w;

  OracleProberConfig pc;
  pc.rollout_length = 3;
  pc.lr_scale = config.lr_scale;  // the prober sets the scale of its copies
  OracleProber prober(pc);
  RolloutPlan plan;
  plan.candidates = {4, 0, 2};
  const ProbeResult result = prober.run(live, pool, {plan});
  ASSERT_EQ(result.rollouts.size(), 1u);

  const auto ref_rows = rows_of(refs);
  std::vector<double> cur = w, grad;
  const double r0 = mse(ref_rows, cur, nullptr);
  double prev = 0;
  for (int t = 0; t < 3; ++t) {
    mse(rows_of(pool.index({torch::indexing::Slice(plan.candidates[t], plan.candidates[t] + 1)})), cur, &grad);
    for (int i = 0; i < kD; ++i) cur[i] -= kLr * config.lr_scale * grad[i];
    const double s = mse(ref_rows, cur, nullptr) - r0;
    EXPECT_NEAR(result.rollouts[0].cumulative[t], s, 1e-10) << "step " << t;
    EXPECT_NEAR(result.rollouts[0].labels[t], s - prev, 1e-10) << "step " << t;
    prev = s;
  }
  // The live module was never stepped by the probe.
  const auto live_w = live.module().attr("w").toTensor();
  for (int i = 0; i < kD; ++i) EXPECT_EQ(live_w[i].item<double>(), before[i]);
}

TEST(ScriptModuleProbeTarget, CloneIsIndependentAndCarriesOptimizerState) {
  auto factory = [](std::vector<torch::Tensor> params) -> std::shared_ptr<torch::optim::Optimizer> {
    return std::make_shared<torch::optim::Adam>(params, torch::optim::AdamOptions(0.05));
  };
  torch::jit::Module module = linear_lm({0.1, 0.2, -0.1, 0.0});
  ScriptModuleProbeTarget live(module, factory(script_parameters(module)), factory,
                               {torch::ones({2, kD}, torch::kInt64)});
  const torch::Tensor batch = torch::arange(2 * kD, torch::kInt64).view({2, kD}).remainder(3);
  live.train_step(batch);  // Adam now has moments
  auto copy = live.clone();
  // Same next step on both: identical weights (the moments were copied), and independent storage.
  live.train_step(batch);
  copy->train_step(batch);
  auto& c = static_cast<ScriptModuleProbeTarget&>(*copy);
  EXPECT_TRUE(torch::equal(live.module().attr("w").toTensor(), c.module().attr("w").toTensor()));
  c.train_step(batch);
  EXPECT_FALSE(torch::equal(live.module().attr("w").toTensor(), c.module().attr("w").toTensor()));
  // The reference loss of the stepped live model, against the definition at its current weights
  // (the reference rows are all ones).
  std::vector<double> w_now(kD);
  for (int i = 0; i < kD; ++i) w_now[i] = live.module().attr("w").toTensor()[i].item<double>();
  EXPECT_NEAR(live.reference_loss(), mse({std::vector<double>(kD, 1.0), std::vector<double>(kD, 1.0)}, w_now, nullptr), 1e-12);
}

// First-order labels through a scripted target: reference_gradient() is the reference MSE's gradient
// (two reference batches, averaged as reference_loss() averages them), and s_t = <g, w_t - w_0>.
TEST(ScriptModuleProbeTarget, FirstOrderLabelsEqualHandComputedGradientDot) {
  const uint64_t seed = testing_seed::fresh();
  SCOPED_TRACE(testing_seed::trace(seed));
  auto [w, module, factory, optimizer] = sgd_linear_lm(seed);
  const torch::Tensor pool = torch::randint(0, 5, {6, kD}, torch::kInt64);
  const torch::Tensor ref_a = torch::randint(0, 5, {3, kD}, torch::kInt64), ref_b = torch::randint(0, 5, {2, kD}, torch::kInt64);
  ModuleProbeTargetConfig config;
  config.grad_clip_norm = 0;
  ScriptModuleProbeTarget live(module, optimizer, factory, {ref_a, ref_b}, "loss", config);

  std::vector<double> ga, gb;
  mse(rows_of(ref_a), w, &ga);
  mse(rows_of(ref_b), w, &gb);
  const std::vector<torch::Tensor> g = live.reference_gradient();
  ASSERT_EQ(g.size(), 1u);
  for (int i = 0; i < kD; ++i) EXPECT_NEAR(g[0][i].item<double>(), (ga[i] + gb[i]) / 2, 1e-12) << i;
  // reference_loss is the mean over the reference batches (of different sizes), per the definition.
  EXPECT_NEAR(live.reference_loss(), (mse(rows_of(ref_a), w, nullptr) + mse(rows_of(ref_b), w, nullptr)) / 2, 1e-12);

  OracleProberConfig pc;
  pc.rollout_length = 2;
  pc.lr_scale = 0.5;
  pc.first_order = true;
  RolloutPlan plan;
  plan.candidates = {5, 1};
  const ProbeResult result = OracleProber(pc).run(live, pool, {plan});
  ASSERT_EQ(result.rollouts.size(), 1u);
  std::vector<double> cur = w, grad;
  double prev = 0;
  for (int t = 0; t < 2; ++t) {
    mse(rows_of(pool.index({torch::indexing::Slice(plan.candidates[t], plan.candidates[t] + 1)})), cur, &grad);
    for (int i = 0; i < kD; ++i) cur[i] -= kLr * pc.lr_scale * grad[i];
    double s = 0;
    for (int i = 0; i < kD; ++i) s += (ga[i] + gb[i]) / 2 * (cur[i] - w[i]);
    EXPECT_NEAR(result.rollouts[0].cumulative[t], s, 1e-12) << "step " << t;
    EXPECT_NEAR(result.rollouts[0].labels[t], s - prev, 1e-12) << "step " << t;
    prev = s;
  }
}

}  // namespace script_probe_target_test
