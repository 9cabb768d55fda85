// WindowScorer: one worker thread scoring windows in order, each with one model version.
#include "groupmates/engine/window_scorer.h"

#include <chrono>

#include <torch/cuda.h>

#include "groupmates/error.h"

namespace groupmates {

WindowScorer::WindowScorer(std::shared_ptr<ModelRegistry> registry) : registry_(std::move(registry)) {
  if (!registry_) throw Error(ErrorCode::kInvalidConfig, "WindowScorer", "registry is null");
  worker_ = std::thread([this] { run(); });
}

WindowScorer::~WindowScorer() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

std::future<ScoredWindow> WindowScorer::score(torch::Tensor tokens, torch::Tensor mask) {
  std::shared_ptr<const ModelVersion> version = registry_->current();  // fixed here, at the window boundary
  if (!version)
    throw Error(ErrorCode::kInvalidState, "WindowScorer::score",
                "no model version published yet (select randomly until the first publish())");
  if (torch::cuda::is_available() && registry_->device().is_cuda()) {
    // Page-locked host memory lets the device copy run asynchronously.
    tokens = tokens.pin_memory();
    if (mask.defined()) mask = mask.pin_memory();
  }
  auto promise = std::make_shared<std::promise<ScoredWindow>>();
  std::future<ScoredWindow> result = promise->get_future();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    jobs_.push_back([version, tokens = std::move(tokens), mask = std::move(mask), promise] {
      try {
        torch::NoGradGuard no_grad;
        const auto t0 = std::chrono::steady_clock::now();
        RelationalInfluenceModel& model = *version->model;
        ScoredWindow out;
        out.embeddings = model.embed(tokens, mask);
        out.u = model.individual(out.embeddings);
        out.version = version->version;
        out.alpha = model.alpha();
        out.tau = model.tau();
        out.prior_weight = model.prior_weight();
        out.flops = double(tokens.size(0)) *
                    (model.encoder().flops_per_row(tokens.size(1)) + 2.0 * double(model.encoder().dim()));
        out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        promise->set_value(std::move(out));
      } catch (...) {
        promise->set_exception(std::current_exception());
      }
    });
  }
  cv_.notify_one();
  return result;
}

void WindowScorer::run() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping, and every queued window is done
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

}  // namespace groupmates
