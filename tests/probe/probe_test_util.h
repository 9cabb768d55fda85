// Helpers shared by the engine tests: a tiny linear model, optimiser-state comparison.
#pragma once

#include <sstream>
#include <string>
#include <limits>
#include <type_traits>
#include <vector>

#include <gtest/gtest.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/adamw.h>
#include <torch/optim/rmsprop.h>
#include <torch/optim/sgd.h>

#include "groupmates/module_probe_target.h"
#include "probe/optimizer_step.h"  // state_key

namespace groupmates::test {

/// y = w . x + b in double; rows of tokens [B, D + 1]: x = tokens[:, :D] / 10, target = tokens[:, D] / 10.
struct LinearNet : torch::nn::Module {
  explicit LinearNet(int64_t d) : d(d) {
    fc = register_module("fc", torch::nn::Linear(d, 1));
    to(torch::kDouble);
  }
  int64_t d;
  torch::nn::Linear fc{nullptr};
};

inline torch::Tensor linear_loss(torch::nn::Module& m, const torch::Tensor& tokens) {
  auto& net = dynamic_cast<LinearNet&>(m);
  const torch::Tensor x = tokens.slice(1, 0, net.d).to(torch::kDouble) / 10.0;
  const torch::Tensor y = tokens.select(1, net.d).to(torch::kDouble) / 10.0;
  const torch::Tensor loss = (net.fc->forward(x).squeeze(1) - y).pow(2).mean();
  // A token >= 100 poisons the batch (for the NaN tests).
  if (tokens.max().item<int64_t>() >= 100) return loss * std::numeric_limits<double>::quiet_NaN();
  return loss;
}

inline void expect_same_tensor(const torch::Tensor& a, const torch::Tensor& b, const std::string& what) {
  ASSERT_EQ(a.defined(), b.defined()) << what;
  if (!a.defined()) return;
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  EXPECT_TRUE(torch::equal(a.cpu(), b.cpu())) << what << " differs";
}

/// Bit-exact comparison of parameters, buffers and optimiser state (AdamW or SGD) of two targets.
inline void expect_same_state(ModuleProbeTarget& a, ModuleProbeTarget& b) {
  auto pa = a.module().named_parameters(), pb = b.module().named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& item : pa) expect_same_tensor(item.value(), pb[item.key()], "parameter " + item.key());
  auto ba = a.module().named_buffers(), bb = b.module().named_buffers();
  for (const auto& item : ba) expect_same_tensor(item.value(), bb[item.key()], "buffer " + item.key());
  auto& ga = a.optimizer().param_groups();
  auto& gb = b.optimizer().param_groups();
  ASSERT_EQ(ga.size(), gb.size());
  for (size_t g = 0; g < ga.size(); ++g) {
    EXPECT_EQ(ga[g].options().get_lr(), gb[g].options().get_lr());
    ASSERT_EQ(ga[g].params().size(), gb[g].params().size());
    for (size_t i = 0; i < ga[g].params().size(); ++i) {
      const auto& sa = a.optimizer().state();
      const auto& sb = b.optimizer().state();
      auto ia = sa.find(state_key(sa, ga[g].params()[i]));
      auto ib = sb.find(state_key(sb, gb[g].params()[i]));
      ASSERT_EQ(ia == sa.end(), ib == sb.end()) << "state presence of param " << i;
      if (ia == sa.end()) continue;
      const std::string what = "state of param " + std::to_string(i);
      if (auto* x = dynamic_cast<torch::optim::AdamWParamState*>(ia->second.get())) {
        auto* y = dynamic_cast<torch::optim::AdamWParamState*>(ib->second.get());
        ASSERT_NE(y, nullptr);
        EXPECT_EQ(x->step(), y->step()) << what;
        expect_same_tensor(x->exp_avg(), y->exp_avg(), what + " exp_avg");
        expect_same_tensor(x->exp_avg_sq(), y->exp_avg_sq(), what + " exp_avg_sq");
      } else if (auto* x = dynamic_cast<torch::optim::SGDParamState*>(ia->second.get())) {
        auto* y = dynamic_cast<torch::optim::SGDParamState*>(ib->second.get());
        ASSERT_NE(y, nullptr);
        expect_same_tensor(x->momentum_buffer(), y->momentum_buffer(), what + " momentum");
      } else {
        ADD_FAILURE() << "unexpected optimizer state type";
      }
    }
  }
}

}  // namespace groupmates::test
