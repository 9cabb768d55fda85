// A ProbeTarget around another, for tests that slow down, hold or hang a probe's optimiser steps.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include <torch/types.h>

#include "groupmates/probe_target.h"

namespace gmtest {

using groupmates::ProbeTarget;

/// Forwards every call to `inner`, except that train_step() first runs `before_step` (a sleep, a
/// gate). A clone wraps a clone of the inner target with the same hook.
class WrappedTarget : public ProbeTarget {
 public:
  WrappedTarget(std::shared_ptr<ProbeTarget> inner, std::function<void()> before_step)
      : inner_(std::move(inner)), before_step_(std::move(before_step)) {}
  std::unique_ptr<ProbeTarget> clone() const override {
    return std::make_unique<WrappedTarget>(std::shared_ptr<ProbeTarget>(inner_->clone()), before_step_);
  }
  double train_step(const torch::Tensor& tokens) override {
    before_step_();
    return inner_->train_step(tokens);
  }
  double reference_loss() override { return inner_->reference_loss(); }
  void set_lr_scale(double s) override { inner_->set_lr_scale(s); }
  double lr_scale() const override { return inner_->lr_scale(); }
  torch::Device device() const override { return inner_->device(); }
  double forward_flops_per_token() const override { return inner_->forward_flops_per_token(); }
  int64_t reference_tokens() const override { return inner_->reference_tokens(); }
  std::vector<torch::Tensor> weights() const override { return inner_->weights(); }
  std::vector<torch::Tensor> reference_gradient() override { return inner_->reference_gradient(); }
  ProbeTarget& inner() { return *inner_; }

 private:
  std::shared_ptr<ProbeTarget> inner_;
  std::function<void()> before_step_;
};

/// Shared by a HangingTarget and its clones: the first optimiser step that any clone takes waits
/// until release(); clones_alive counts the clones not yet destroyed (so a test can wait for an
/// abandoned probe's thread to let its snapshot go before the test ends).
struct HangSwitch {
  HangSwitch() : gate(open.get_future().share()) {}
  void release() { open.set_value(); }
  /// Whether every clone was destroyed within `seconds`.
  bool clones_gone_within(double seconds) const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (clones_alive.load() > 0) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }
  std::promise<void> open;
  std::shared_future<void> gate;
  std::atomic<bool> armed{true};
  std::atomic<int> clones_alive{0};
};

/// A target whose clones (the probes' snapshots) hang at the first probe step until the switch is
/// released (30 s at most): a probe that hangs. The live target itself never waits.
class HangingTarget : public ProbeTarget {
 public:
  HangingTarget(std::shared_ptr<ProbeTarget> inner, std::shared_ptr<HangSwitch> hang, bool is_clone = false)
      : inner_(std::move(inner)), hang_(std::move(hang)), is_clone_(is_clone) {}
  ~HangingTarget() override {
    if (is_clone_) hang_->clones_alive.fetch_sub(1);
  }
  std::unique_ptr<ProbeTarget> clone() const override {
    hang_->clones_alive.fetch_add(1);
    return std::make_unique<HangingTarget>(std::shared_ptr<ProbeTarget>(inner_->clone()), hang_, true);
  }
  double train_step(const torch::Tensor& tokens) override {
    // Bounded, so a timeout that does not work fails the test's timing checks instead of hanging it.
    if (is_clone_ && hang_->armed.exchange(false)) hang_->gate.wait_for(std::chrono::seconds(30));
    return inner_->train_step(tokens);
  }
  double reference_loss() override { return inner_->reference_loss(); }
  void set_lr_scale(double s) override { inner_->set_lr_scale(s); }
  double lr_scale() const override { return inner_->lr_scale(); }
  torch::Device device() const override { return inner_->device(); }
  double forward_flops_per_token() const override { return inner_->forward_flops_per_token(); }
  int64_t reference_tokens() const override { return inner_->reference_tokens(); }
  std::vector<torch::Tensor> weights() const override { return inner_->weights(); }
  std::vector<torch::Tensor> reference_gradient() override { return inner_->reference_gradient(); }

 private:
  std::shared_ptr<ProbeTarget> inner_;
  std::shared_ptr<HangSwitch> hang_;
  bool is_clone_;
};

/// Every optimiser step first sleeps `seconds` (the probe thread's work, for timing tests).
inline WrappedTarget slow_target(std::shared_ptr<ProbeTarget> inner, double seconds) {
  return WrappedTarget(std::move(inner), [seconds] { std::this_thread::sleep_for(std::chrono::duration<double>(seconds)); });
}

/// Every optimiser step first waits until `gate` opens (to hold a probe in flight).
inline WrappedTarget gated_target(std::shared_ptr<ProbeTarget> inner, std::shared_future<void> gate) {
  return WrappedTarget(std::move(inner), [gate] { gate.wait(); });
}

}  // namespace gmtest
