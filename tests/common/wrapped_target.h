// A ProbeTarget around another, for tests that slow down or hold a probe's optimiser steps.
#pragma once

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <thread>

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
  ProbeTarget& inner() { return *inner_; }

 private:
  std::shared_ptr<ProbeTarget> inner_;
  std::function<void()> before_step_;
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
