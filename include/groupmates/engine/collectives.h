// groupmates/engine/collectives.h: the few collectives the selection engine needs across
// data-parallel ranks, behind one interface: a single-process no-op, and c10d's backend-neutral
// ProcessGroup (the group the user's training job already has: Gloo on CPU, NCCL on CUDA).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <c10/util/intrusive_ptr.h>
#include <torch/types.h>

namespace c10d {
class ProcessGroup;
}

namespace groupmates {

/// Collectives over the data-parallel ranks. Every rank must make the same calls in the same order
/// (from one thread per Collectives object). A call that fails or does not complete within the
/// timeout throws Error(kDistributed) naming the collective, the rank and the timeout: a rank that
/// died or hangs surfaces on the others as an error, never as a wait without end.
class Collectives {
 public:
  virtual ~Collectives() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  /// Every rank's `bytes`, in rank order (lengths may differ between ranks).
  virtual std::vector<std::string> all_gather(const std::string& bytes) = 0;
  /// `root`'s bytes, on every rank.
  virtual std::string broadcast(const std::string& bytes, int root) = 0;
  /// The element-wise sum over the ranks, in place; `t` is a CPU tensor (any dtype c10d sums).
  virtual void all_reduce_sum(torch::Tensor& t) = 0;
};

/// One process: all_gather returns {bytes}, broadcast returns bytes, all_reduce_sum leaves t.
std::shared_ptr<Collectives> local_collectives();

/// Over a c10d ProcessGroup (e.g. torch.distributed's group, passed from Python). Tensors go to the
/// group on `device` (the CPU for Gloo, the rank's CUDA device for NCCL) and come back to the CPU;
/// every wait is bounded by `timeout`.
std::shared_ptr<Collectives> process_group_collectives(
    const c10::intrusive_ptr<c10d::ProcessGroup>& group, std::chrono::milliseconds timeout,
    torch::Device device = torch::kCPU);

}  // namespace groupmates
