// groupmates/loader.h: GroupMatesLoader, the loader a training loop iterates.
//
//   groupmates::GroupMatesLoader loader(config, selection, probes);
//   for (int64_t step = 0; auto batch = loader.next(); ++step) {   // batch->input_ids: [B, T] int64
//     train_step(batch->input_ids);
//     loader.on_step(step, &live_model);   // probes the live model when one is due
//   }
//   std::string saved = loader.state().serialize();   // the WHOLE loader, next to the model checkpoint
//
// Plain mode (SelectionMode::kNone) streams every candidate. Selection modes read windows of
// `window_size` candidates, score them asynchronously with the current influence-model version,
// cluster and select `ratio` of each window, and emit the selection in predicted-best order.
// Until the first refreshed model exists, selection is random (warm-up). Tensors are zero-copy
// views of the loader's pooled buffers in plain mode, optionally pinned and already on a device.
#pragma once

#include <torch/types.h>

#include <iterator>
#include <memory>
#include <optional>

#include "groupmates/candidate_id.h"
#include "groupmates/config.h"
#include "groupmates/loader_state.h"
#include "groupmates/probe_target.h"
#include "groupmates/selection_config.h"
#include "groupmates/selection_stats.h"
#include "groupmates/streaming_loader.h"

namespace groupmates {

class Collectives;  // groupmates/engine/collectives.h


class OnlineSelection;

/// Where batches are delivered.
struct DeliveryOptions {
  torch::Device device = torch::kCPU;  ///< move each batch here (non-blocking from pinned memory on CUDA)
  bool pin_memory = false;             ///< allocate host buffers pinned (only when CUDA is available)
};

/// One batch for the trainer.
struct Batch {
  torch::Tensor input_ids;       ///< [B, T] int64 on DeliveryOptions::device
  std::vector<CandidateId> ids;  ///< one per row
  uint64_t index = 0;            ///< batch index on this rank
  torch::Tensor host_input_ids;  ///< the pooled host buffer behind a device copy (kept alive with the batch)
  /// Selection modes: predicted individual influence u of each row (float [B]; NaN in warm-up),
  /// its cluster (int64 [B]; -1 when not clustered) and the model version that scored it (0 = none).
  torch::Tensor influence;
  torch::Tensor cluster;
  uint64_t model_version = 0;
};

class GroupMatesLoader {
 public:
  /// Plain mode; throws Error for a bad config or file.
  explicit GroupMatesLoader(LoaderConfig config, DeliveryOptions delivery = {});
  /// Continues exactly from a saved state (plain mode).
  GroupMatesLoader(LoaderConfig config, const LoaderState& state, DeliveryOptions delivery = {});
  /// Selection (and probes, when on_step gets a target). `collectives`: the data-parallel ranks
  /// (e.g. process_group_collectives over the job's c10d group) sharing probes, one influence model
  /// and the centroids; null or one rank: this process alone. With more than one rank every rank
  /// must call next(), on_step() and state() in the same order (README: Running on many ranks).
  GroupMatesLoader(LoaderConfig config, SelectionConfig selection, ProbeConfig probes, DeliveryOptions delivery = {},
                   std::shared_ptr<Collectives> collectives = nullptr);
  /// Continues exactly from a saved state of a selecting loader with the same configs.
  GroupMatesLoader(LoaderConfig config, SelectionConfig selection, ProbeConfig probes, const LoaderState& state,
                   DeliveryOptions delivery = {}, std::shared_ptr<Collectives> collectives = nullptr);
  ~GroupMatesLoader();

  /// Reference rows (int64 [R, T]): the text selection should help, e.g. the probes' reference
  /// batches. Required by SelectionMode::kImportance; with SelectionConfig::importance_prior it is also
  /// the prior of u in the model-based modes. Call before the first next(); calling again replaces it.
  void set_reference(const torch::Tensor& rows);
  /// The next batch, or nullopt at the end of the stream.
  std::optional<Batch> next();
  /// Tells the loader the trainer finished `step`. When a probe is due and `target` is given, the
  /// target is snapshotted here (weights + optimizer state) and probed on the probe thread.
  void on_step(int64_t step, ProbeTarget* target = nullptr);
  /// The state after the last batch returned. In selection modes it waits for an in-flight probe
  /// and refresh first, and includes the centroids, model versions and label buffer.
  LoaderState state() const;
  /// What was skipped so far, by source and reason.
  std::string skip_report() const { return core_->skip_report(); }
  LoaderStats stats() const { return core_->stats(); }
  SelectionStats selection_stats() const;
  /// The selection config as given (replay_share may be kReplayShareAuto; the share in effect is in state()'s
  /// "gm.replay_share").
  const SelectionConfig& selection_config() const { return selection_config_; }

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
  std::optional<Batch> deliver(Batch b) const;

  DeliveryOptions delivery_;
  SelectionConfig selection_config_;
  uint32_t batch_size_ = 0;
  std::unique_ptr<StreamingLoader> core_;
  std::unique_ptr<OnlineSelection> selection_;
};

/// Wraps a HostBatch's buffer in a [B, T] int64 tensor without copying.
torch::Tensor to_tensor(const HostBatch& batch);

}  // namespace groupmates
