// Collectives over a c10d::ProcessGroup: the backend-neutral process group of torch.distributed
// (Gloo on CPU, NCCL on CUDA devices). Bytes travel as uint8 tensors: lengths first (one int64 per
// rank), then the payloads padded to the longest. Every wait is bounded by the timeout.
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include <cstring>
#include <string>

#include "groupmates/engine/collectives.h"
#include "groupmates/error.h"

namespace groupmates {

namespace {

class ProcessGroupCollectives final : public Collectives {
 public:
  ProcessGroupCollectives(c10::intrusive_ptr<c10d::ProcessGroup> group, std::chrono::milliseconds timeout,
                          torch::Device device)
      : group_(std::move(group)), timeout_(timeout), device_(device) {
    if (!group_) throw Error(ErrorCode::kInvalidConfig, "process_group", "is null: pass an initialised group");
    if (timeout_.count() <= 0)
      throw Error(ErrorCode::kInvalidConfig, "collective_timeout", "must be > 0 (a rank that died would be waited for forever)");
  }

  int rank() const override { return group_->getRank(); }
  int world_size() const override { return group_->getSize(); }

  std::vector<std::string> all_gather(const std::string& bytes) override {
    const int n = world_size();
    torch::Tensor length = torch::tensor({static_cast<int64_t>(bytes.size())}, torch::kInt64);
    std::vector<torch::Tensor> lengths = gather(length, "all_gather (lengths)");
    int64_t longest = 0;
    for (const auto& l : lengths) longest = std::max(longest, l.item<int64_t>());
    torch::Tensor mine = torch::zeros({std::max<int64_t>(longest, 1)}, torch::kUInt8);
    std::memcpy(mine.data_ptr(), bytes.data(), bytes.size());
    std::vector<torch::Tensor> all = gather(mine, "all_gather");
    std::vector<std::string> out(n);
    for (int r = 0; r < n; ++r)
      out[r].assign(static_cast<const char*>(all[r].data_ptr()), static_cast<size_t>(lengths[r].item<int64_t>()));
    return out;
  }

  std::string broadcast(const std::string& bytes, int root) override {
    if (root < 0 || root >= world_size())
      throw Error(ErrorCode::kInvalidConfig, "broadcast.root", "is " + std::to_string(root) + "; must be a rank");
    torch::Tensor length = torch::tensor({static_cast<int64_t>(bytes.size())}, torch::kInt64);
    length = broadcast_tensor(length, root, "broadcast (length)");
    const int64_t n = length.item<int64_t>();
    torch::Tensor data = torch::zeros({std::max<int64_t>(n, 1)}, torch::kUInt8);
    if (rank() == root) std::memcpy(data.data_ptr(), bytes.data(), bytes.size());
    data = broadcast_tensor(data, root, "broadcast");
    return std::string(static_cast<const char*>(data.data_ptr()), static_cast<size_t>(n));
  }

  void all_reduce_sum(torch::Tensor& t) override {
    std::vector<torch::Tensor> ts{t.contiguous().to(device_)};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    opts.timeout = timeout_;
    wait(group_->allreduce(ts, opts), "all_reduce_sum");
    t.copy_(ts[0].to(torch::kCPU).view_as(t));
  }

 private:
  std::vector<torch::Tensor> gather(const torch::Tensor& mine, const char* what) {
    std::vector<torch::Tensor> in{mine.to(device_)};
    std::vector<std::vector<torch::Tensor>> out(1);
    for (int r = 0; r < world_size(); ++r) out[0].push_back(torch::empty_like(in[0]));
    c10d::AllgatherOptions opts;
    opts.timeout = timeout_;
    wait(group_->allgather(out, in, opts), what);
    for (auto& t : out[0]) t = t.to(torch::kCPU);
    return out[0];
  }

  torch::Tensor broadcast_tensor(const torch::Tensor& t, int root, const char* what) {
    std::vector<torch::Tensor> ts{t.to(device_)};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.timeout = timeout_;
    wait(group_->broadcast(ts, opts), what);
    return ts[0].to(torch::kCPU);
  }

  void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) {
    const std::string where = std::string("collective ") + what + " on rank " + std::to_string(rank()) + " of " +
                              std::to_string(world_size());
    const std::string fix = ": a rank died, hangs or made other calls (every rank must call the same collectives "
                            "in the same order); the others stop here instead of waiting forever (timeout " +
                            std::to_string(timeout_.count() / 1000.0) + " s)";
    bool done = false;
    try {
      done = work->wait(timeout_);
    } catch (const std::exception& e) {
      throw Error(ErrorCode::kDistributed, where, std::string("failed: ") + first_line(e.what()) + fix);
    }
    if (!done) throw Error(ErrorCode::kDistributed, where, "did not complete" + fix);
  }

  static std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

  c10::intrusive_ptr<c10d::ProcessGroup> group_;
  std::chrono::milliseconds timeout_;
  torch::Device device_;
};

}  // namespace

std::shared_ptr<Collectives> process_group_collectives(const c10::intrusive_ptr<c10d::ProcessGroup>& group,
                                                       std::chrono::milliseconds timeout, torch::Device device) {
  return std::make_shared<ProcessGroupCollectives>(group, timeout, device);
}

}  // namespace groupmates
