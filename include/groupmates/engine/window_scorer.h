// groupmates/window_scorer.h: asynchronous scoring of candidate windows by one model version.
//
// score() takes the registry's current version at call time (the window boundary) and queues the
// window to the scorer's own thread, so scoring overlaps with reading the next window. Windows are
// scored in submission order; every result carries the one version that produced all of it.
#pragma once

#include <cstdint>
#include <future>
#include <memory>

#include <torch/types.h>

#include "groupmates/engine/model_registry.h"

namespace groupmates {

namespace util {
class BackgroundWorker;
}

/// Embeddings and individual influence of one window, tagged with the model version.
struct ScoredWindow {
  torch::Tensor embeddings;  ///< float [W, D], unit rows, on the registry's device
  torch::Tensor u;           ///< float [W]: predicted individual influence (lower is better)
  uint64_t version = 0;      ///< the model version that produced both tensors
  double alpha = 1.0;        ///< that version's relationship parameters (for the selectors)
  double tau = 1.0;
  double prior_weight = 0;   ///< that version's gamma (weight of a per-row prior added to u by the caller)
  double seconds = 0;        ///< wall time spent scoring on the scorer thread
  double flops = 0;          ///< approximate: rows x (Encoder::flops_per_row + 2 D for the head)
};

/// A single worker thread (util::BackgroundWorker) that scores windows in order with the version
/// current at submission.
class WindowScorer {
 public:
  explicit WindowScorer(std::shared_ptr<ModelRegistry> registry);
  ~WindowScorer();  ///< finishes queued windows, then joins
  WindowScorer(const WindowScorer&) = delete;
  WindowScorer& operator=(const WindowScorer&) = delete;

  /// tokens: int64 [W, T] on the host (mask optional, bool [W, T]). Throws Error(kInvalidState)
  /// if no version is published yet (the loader selects randomly until then).
  std::future<ScoredWindow> score(torch::Tensor tokens, torch::Tensor mask = {});

 private:
  std::shared_ptr<ModelRegistry> registry_;
  std::unique_ptr<util::BackgroundWorker> worker_;  // destroyed first: drains, then joins
};

}  // namespace groupmates
