// groupmates/loader.h: GroupMatesLoader, the loader a training loop iterates.
//
//   groupmates::GroupMatesLoader loader(config);
//   for (auto& batch : loader) {            // batch.input_ids: [B, T] int64 tensor
//     auto loss = model->forward(batch.input_ids.to(device)); ...
//   }
//   torch::save(...); std::string saved = loader.state().serialize();
//
// Tensors are zero-copy views of the loader's pooled buffers (returned to the pool when the last
// tensor referencing them dies), optionally in pinned memory and already moved to a device.
#pragma once

#include <torch/torch.h>

#include <iterator>
#include <memory>
#include <optional>

#include "groupmates/candidate_id.h"
#include "groupmates/config.h"
#include "groupmates/loader_state.h"
#include "groupmates/streaming_loader.h"

namespace groupmates {

/// Where batches are delivered.
struct DeliveryOptions {
  torch::Device device = torch::kCPU;  ///< move each batch here (non-blocking from pinned memory on CUDA)
  bool pin_memory = false;             ///< allocate host buffers pinned (only when CUDA is available)
};

/// One batch for the trainer.
struct Batch {
  torch::Tensor input_ids;       ///< [B, T] int64 on DeliveryOptions::device
  std::vector<CandidateId> ids;  ///< one per row
  uint64_t index = 0;            ///< global batch index
  torch::Tensor host_input_ids;  ///< the pooled host buffer behind a device copy (kept alive with the batch)
};

class GroupMatesLoader {
 public:
  /// Starts streaming; throws Error for a bad config or file.
  explicit GroupMatesLoader(LoaderConfig config, DeliveryOptions delivery = {});
  /// Continues exactly from a saved state.
  GroupMatesLoader(LoaderConfig config, const LoaderState& state, DeliveryOptions delivery = {});

  /// The next batch, or nullopt at the end of the stream.
  std::optional<Batch> next();
  /// The state after the last batch returned (serialize() it next to the model checkpoint).
  LoaderState state() const { return core_->state(); }
  /// What was skipped so far, by source and reason.
  std::string skip_report() const { return core_->skip_report(); }
  LoaderStats stats() const { return core_->stats(); }

  /// Input iterator over batches, in the manner of torch::data loaders.
  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    using pointer = Batch*;
    using reference = Batch&;
    Iterator() = default;
    explicit Iterator(GroupMatesLoader* loader) : loader_(loader) { ++*this; }
    Batch& operator*() { return *current_; }
    Batch* operator->() { return &*current_; }
    Iterator& operator++() {
      current_ = loader_->next();
      if (!current_) loader_ = nullptr;
      return *this;
    }
    bool operator==(const Iterator& o) const { return loader_ == o.loader_; }
    bool operator!=(const Iterator& o) const { return !(*this == o); }

   private:
    GroupMatesLoader* loader_ = nullptr;
    std::optional<Batch> current_;
  };
  Iterator begin() { return Iterator(this); }
  Iterator end() { return Iterator(); }

 private:
  DeliveryOptions delivery_;
  std::unique_ptr<StreamingLoader> core_;
};

/// Wraps a HostBatch's buffer in a [B, T] int64 tensor without copying.
torch::Tensor to_tensor(const HostBatch& batch);

}  // namespace groupmates
