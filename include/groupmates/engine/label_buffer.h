// groupmates/engine/label_buffer.h: the bounded FIFO of labelled rollouts the influence model
// trains on; saved with the loader's state.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include <torch/types.h>

#include "groupmates/engine/oracle_prober.h"

namespace groupmates {

/// A labelled rollout as stored for training the influence model.
struct LabelledRollout {
  torch::Tensor tokens;        ///< int64 [L, R, T] on the CPU (R = rows per step)
  std::vector<double> labels;  ///< [L] raw marginal labels
  RolloutKind kind = RolloutKind::kRandom;
  int64_t probe_step = 0;      ///< trainer step of the snapshot
  torch::Tensor prior;         ///< float [L, R] on the CPU: the rows' prior for u (undefined = none)
};

/// Bounded FIFO buffer of the most recent labelled rollouts. Thread-safe.
class LabelBuffer {
 public:
  explicit LabelBuffer(size_t capacity);

  /// Appends (tokens moved to the CPU, made contiguous); evicts the oldest entries beyond capacity.
  void add(LabelledRollout rollout);
  size_t size() const;
  size_t capacity() const { return capacity_; }
  uint64_t total_added() const;
  uint64_t evicted() const;
  void clear();

  /// Copy of the contents, oldest first (tensors shared, never modified in place).
  std::vector<LabelledRollout> snapshot() const;

  /// Training batch: tokens [G, L, T] (if every sampled entry has R = 1; else [G, L, R, T]) and
  /// raw labels double [G, L], kinds int64 [G], prior float [G, L] (or [G, L, R]; undefined unless every
  /// entry has one). Without replacement when count <= size().
  struct Batch {
    torch::Tensor tokens, labels, kinds, prior;
  };
  /// Throws Error(kInvalidState) if the buffer is empty or the sampled entries differ in shape.
  Batch sample(size_t count, uint64_t seed) const;
  /// Everything, oldest first (same shapes as sample()).
  Batch all() const;

  /// Contents and counters as a byte blob (a torch archive) / restore from it (capacity is kept
  /// from this instance; the newest entries are kept if the blob holds more).
  std::string save() const;
  void load(const std::string& blob);

 private:
  Batch stack(const std::vector<LabelledRollout>& entries) const;

  size_t capacity_;
  mutable std::mutex mutex_;
  std::vector<LabelledRollout> ring_;  // oldest first
  uint64_t total_added_ = 0;
  uint64_t evicted_ = 0;
};


}  // namespace groupmates
