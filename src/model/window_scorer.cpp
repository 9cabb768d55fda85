// WindowScorer: one worker thread scoring windows in order, each with one model version.
#include "groupmates/engine/window_scorer.h"

#include <torch/cuda.h>

#include "groupmates/error.h"
#include "util/background_worker.h"
#include "util/stopwatch.h"

namespace groupmates {

WindowScorer::WindowScorer(std::shared_ptr<ModelRegistry> registry) : registry_(std::move(registry)) {
  if (!registry_) throw Error(ErrorCode::kInvalidConfig, "WindowScorer", "registry is null");
  worker_ = std::make_unique<util::BackgroundWorker>("WindowScorer");
}

WindowScorer::~WindowScorer() = default;  // the worker finishes queued windows, then joins

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
  // An exception while scoring reaches the caller through the future.
  return worker_->submit([version, tokens = std::move(tokens), mask = std::move(mask)] {
    torch::NoGradGuard no_grad;
    const util::Stopwatch clock;
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
    out.seconds = clock.seconds();
    return out;
  });
}

}  // namespace groupmates
