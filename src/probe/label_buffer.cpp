// LabelBuffer: bounded FIFO of labelled rollouts, sampling for training, save/load (probe.h).
#include <algorithm>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include "groupmates/error.h"
#include "groupmates/engine/oracle_prober.h"
#include "groupmates/engine/label_buffer.h"
#include "util/seed.h"

namespace groupmates {
namespace {

constexpr int64_t kFormatVersion = 1;

using util::splitmix64;

}  // namespace

LabelBuffer::LabelBuffer(size_t capacity) : capacity_(capacity) {
  if (capacity_ == 0) throw Error(ErrorCode::kInvalidConfig, "LabelBuffer", "capacity must be >= 1");
}

void LabelBuffer::add(LabelledRollout rollout) {
  if (!rollout.tokens.defined() || rollout.tokens.dim() != 3)
    throw Error(ErrorCode::kInvalidConfig, "LabelBuffer::add", "tokens must be int64 [L, R, T]");
  if (static_cast<int64_t>(rollout.labels.size()) != rollout.tokens.size(0))
    throw Error(ErrorCode::kInvalidConfig, "LabelBuffer::add", "one label per step (tokens.size(0)) is required");
  rollout.tokens = rollout.tokens.to(torch::kCPU, torch::kInt64).contiguous();
  if (rollout.prior.defined()) {
    rollout.prior = rollout.prior.to(torch::kCPU, torch::kFloat).contiguous();
    if (rollout.prior.numel() != rollout.tokens.size(0) * rollout.tokens.size(1))
      throw Error(ErrorCode::kInvalidConfig, "LabelBuffer::add", "prior must have one value per row [L, R]");
    rollout.prior = rollout.prior.view({rollout.tokens.size(0), rollout.tokens.size(1)});
  }
  std::lock_guard<std::mutex> lock(mutex_);
  ring_.push_back(std::move(rollout));
  ++total_added_;
  if (ring_.size() > capacity_) {
    const size_t drop = ring_.size() - capacity_;
    ring_.erase(ring_.begin(), ring_.begin() + static_cast<std::ptrdiff_t>(drop));
    evicted_ += drop;
  }
}

size_t LabelBuffer::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return ring_.size();
}

uint64_t LabelBuffer::total_added() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return total_added_;
}

uint64_t LabelBuffer::evicted() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return evicted_;
}

void LabelBuffer::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  evicted_ += ring_.size();
  ring_.clear();
}

std::vector<LabelledRollout> LabelBuffer::snapshot() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return ring_;
}

LabelBuffer::Batch LabelBuffer::stack(const std::vector<LabelledRollout>& entries) const {
  if (entries.empty()) throw Error(ErrorCode::kInvalidState, "LabelBuffer", "the buffer is empty");
  const auto shape = entries.front().tokens.sizes().vec();
  std::vector<torch::Tensor> tokens, labels, priors;
  std::vector<int64_t> kinds;
  for (const auto& e : entries) {
    if (e.prior.defined()) priors.push_back(e.prior);
    if (e.tokens.sizes().vec() != shape)
      throw Error(ErrorCode::kInvalidState, "LabelBuffer",
                  "rollouts of different shapes (rollout length, rows per step or sequence length) cannot be stacked");
    tokens.push_back(e.tokens);
    labels.push_back(torch::tensor(e.labels, torch::TensorOptions().dtype(torch::kDouble)));
    kinds.push_back(static_cast<int64_t>(e.kind));
  }
  Batch batch;
  batch.tokens = torch::stack(tokens);  // [G, L, R, T]
  if (shape[1] == 1) batch.tokens = batch.tokens.squeeze(2);
  batch.labels = torch::stack(labels);
  batch.kinds = torch::tensor(kinds, torch::TensorOptions().dtype(torch::kInt64));
  if (priors.size() == entries.size()) {
    batch.prior = torch::stack(priors);  // [G, L, R]
    if (shape[1] == 1) batch.prior = batch.prior.squeeze(2);
  }
  return batch;
}

LabelBuffer::Batch LabelBuffer::sample(size_t count, uint64_t seed) const {
  std::vector<LabelledRollout> entries = snapshot();
  if (entries.empty()) throw Error(ErrorCode::kInvalidState, "LabelBuffer::sample", "the buffer is empty");
  std::vector<LabelledRollout> picked;
  picked.reserve(count);
  uint64_t state = splitmix64(seed);
  const size_t n = entries.size();
  if (count <= n) {  // without replacement: partial Fisher-Yates over positions
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), size_t{0});
    for (size_t i = 0; i < count; ++i) {
      state = splitmix64(state);
      std::swap(order[i], order[i + state % (n - i)]);
      picked.push_back(entries[order[i]]);
    }
  } else {
    for (size_t i = 0; i < count; ++i) {
      state = splitmix64(state);
      picked.push_back(entries[state % n]);
    }
  }
  return stack(picked);
}

LabelBuffer::Batch LabelBuffer::all() const { return stack(snapshot()); }

std::string LabelBuffer::save() const {
  std::lock_guard<std::mutex> lock(mutex_);
  torch::serialize::OutputArchive archive;
  archive.write("meta", torch::tensor({kFormatVersion, static_cast<int64_t>(ring_.size()),
                                       static_cast<int64_t>(total_added_), static_cast<int64_t>(evicted_)}));
  for (size_t i = 0; i < ring_.size(); ++i) {
    const auto& e = ring_[i];
    const std::string k = std::to_string(i);
    archive.write("tokens_" + k, e.tokens);
    archive.write("labels_" + k, torch::tensor(e.labels, torch::TensorOptions().dtype(torch::kDouble)));
    archive.write("info_" + k, torch::tensor({static_cast<int64_t>(e.kind), e.probe_step}));
    if (e.prior.defined()) archive.write("prior_" + k, e.prior);
  }
  std::ostringstream out;
  archive.save_to(out);
  return out.str();
}

void LabelBuffer::load(const std::string& blob) {
  const char* where = "LabelBuffer::load";
  std::vector<LabelledRollout> entries;
  int64_t total = 0, evicted = 0;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(blob.data(), blob.size(), torch::kCPU);
    torch::Tensor meta;
    archive.read("meta", meta);
    if (meta.numel() != 4 || meta[0].item<int64_t>() != kFormatVersion)
      throw Error(ErrorCode::kInvalidState, where, "not a label buffer blob of format version 1");
    const int64_t count = meta[1].item<int64_t>();
    total = meta[2].item<int64_t>();
    evicted = meta[3].item<int64_t>();
    for (int64_t i = 0; i < count; ++i) {
      const std::string k = std::to_string(i);
      torch::Tensor tokens, labels, info;
      archive.read("tokens_" + k, tokens);
      archive.read("labels_" + k, labels);
      archive.read("info_" + k, info);
      if (tokens.dim() != 3 || labels.dim() != 1 || labels.size(0) != tokens.size(0) || info.numel() != 2)
        throw Error(ErrorCode::kInvalidState, where, "entry " + k + " is malformed");
      LabelledRollout e;
      e.tokens = tokens.to(torch::kInt64).contiguous();
      const torch::Tensor l = labels.to(torch::kDouble).contiguous();
      e.labels.assign(l.data_ptr<double>(), l.data_ptr<double>() + l.numel());
      const int64_t kind = info[0].item<int64_t>();
      if (kind < 0 || kind >= kNumRolloutKinds) throw Error(ErrorCode::kInvalidState, where, "bad rollout kind");
      e.kind = static_cast<RolloutKind>(kind);
      e.probe_step = info[1].item<int64_t>();
      torch::Tensor prior;
      if (archive.try_read("prior_" + k, prior)) {
        if (prior.numel() != e.tokens.size(0) * e.tokens.size(1))
          throw Error(ErrorCode::kInvalidState, where, "entry " + k + "'s prior has " + std::to_string(prior.numel()) + " values");
        e.prior = prior.to(torch::kFloat).contiguous().view({e.tokens.size(0), e.tokens.size(1)});
      }
      entries.push_back(std::move(e));
    }
  } catch (const c10::Error& e) {
    throw Error(ErrorCode::kInvalidState, where, std::string("corrupt label buffer blob: ") + e.what_without_backtrace());
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (entries.size() > capacity_) {
    const size_t drop = entries.size() - capacity_;
    entries.erase(entries.begin(), entries.begin() + static_cast<std::ptrdiff_t>(drop));
    evicted += static_cast<int64_t>(drop);
  }
  ring_ = std::move(entries);
  total_added_ = static_cast<uint64_t>(total);
  evicted_ = static_cast<uint64_t>(evicted);
}

}  // namespace groupmates
