// thread_collectives.h: Collectives between threads of one process (tests only): each call deposits
// this rank's bytes, waits for every rank, reads them all; all_reduce_sum adds the ranks' tensors
// in rank order (the same result on every rank).
#pragma once

#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "groupmates/engine/collectives.h"

namespace groupmates_test {

/// What the ranks of one group share.
struct ThreadGroup {
  explicit ThreadGroup(int n) : world(n), slots(n) {}
  int world;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> slots;
  int arrived = 0;
  uint64_t generation = 0;
  /// Waits until every rank arrived at this barrier.
  void barrier() {
    std::unique_lock<std::mutex> lock(mu);
    const uint64_t g = generation;
    if (++arrived == world) {
      arrived = 0;
      ++generation;
      cv.notify_all();
    } else {
      cv.wait(lock, [&] { return generation != g; });
    }
  }
};

class ThreadCollectives final : public groupmates::Collectives {
 public:
  ThreadCollectives(std::shared_ptr<ThreadGroup> group, int rank) : group_(std::move(group)), rank_(rank) {}
  int rank() const override { return rank_; }
  int world_size() const override { return group_->world; }
  std::vector<std::string> all_gather(const std::string& bytes) override {
    {
      std::lock_guard<std::mutex> lock(group_->mu);
      group_->slots[rank_] = bytes;
    }
    group_->barrier();
    std::vector<std::string> out;
    {
      std::lock_guard<std::mutex> lock(group_->mu);
      out = group_->slots;
    }
    group_->barrier();  // nobody overwrites a slot before every rank read it
    return out;
  }
  std::string broadcast(const std::string& bytes, int root) override { return all_gather(bytes).at(root); }
  void all_reduce_sum(torch::Tensor& t) override {
    const torch::Tensor c = t.contiguous();
    const auto all = all_gather(std::string(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size()));
    torch::Tensor sum = torch::zeros_like(c);
    for (const std::string& b : all) {
      torch::Tensor r = torch::empty_like(c);
      std::memcpy(r.data_ptr(), b.data(), b.size());
      sum += r;
    }
    t.copy_(sum);
  }

 private:
  std::shared_ptr<ThreadGroup> group_;
  int rank_;
};

}  // namespace groupmates_test
