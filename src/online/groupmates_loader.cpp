#include "groupmates/loader.h"

#include <torch/cuda.h>

#include "groupmates/error.h"
#include "online/online_selection.h"

namespace groupmates {

namespace {

BufferAllocator make_allocator(const DeliveryOptions& d) {
  if (!d.pin_memory || !torch::cuda::is_available()) return {};
  return [](size_t bytes, void** data) -> std::shared_ptr<void> {
    auto t = std::make_shared<torch::Tensor>(
        torch::empty({static_cast<int64_t>(bytes)}, torch::TensorOptions().dtype(torch::kUInt8).pinned_memory(true)));
    *data = t->data_ptr();
    return t;
  };
}

// The core reads whole selection windows: its batch is one window of this rank.
LoaderConfig window_config(LoaderConfig c, const SelectionConfig& s) {
  s.validate(c);  // with the loader's rows and prefetch depth: the window memory bound
  c.batch_size = s.window_size;
  return c;
}

}  // namespace

torch::Tensor to_tensor(const HostBatch& batch) {
  auto keep = batch.tokens;  // the deleter holds the pooled buffer until the tensor dies
  return torch::from_blob(
      batch.tokens.get(), {static_cast<int64_t>(batch.batch_size), static_cast<int64_t>(batch.sequence_length)},
      [keep](void*) mutable { keep.reset(); }, torch::TensorOptions().dtype(torch::kInt64));
}

GroupMatesLoader::GroupMatesLoader(LoaderConfig config, DeliveryOptions delivery)
    : delivery_(delivery), batch_size_(config.batch_size),
      core_(std::make_unique<StreamingLoader>(std::move(config), make_allocator(delivery))) {}

GroupMatesLoader::GroupMatesLoader(LoaderConfig config, const LoaderState& state, DeliveryOptions delivery)
    : delivery_(delivery), batch_size_(config.batch_size),
      core_(std::make_unique<StreamingLoader>(std::move(config), state, make_allocator(delivery))) {
  if (!state.extra.empty() && state.extra.count("gm.mode"))
    throw Error(ErrorCode::kInvalidState, "LoaderState.extra.gm.mode",
                "this state was saved by a selecting loader: restore it with the same SelectionConfig and ProbeConfig");
}

GroupMatesLoader::GroupMatesLoader(LoaderConfig config, SelectionConfig selection, ProbeConfig probes,
                                   DeliveryOptions delivery, std::shared_ptr<Collectives> collectives)
    : delivery_(delivery), selection_config_(selection), batch_size_(config.batch_size) {
  probes.validate();
  if (selection.mode == SelectionMode::kNone) {
    core_ = std::make_unique<StreamingLoader>(std::move(config), make_allocator(delivery));
    return;
  }
  const LoaderConfig loader = config;
  core_ = std::make_unique<StreamingLoader>(window_config(std::move(config), selection));
  selection_ = std::make_unique<OnlineSelection>(*core_, loader, selection, probes, nullptr, std::move(collectives));
}

GroupMatesLoader::GroupMatesLoader(LoaderConfig config, SelectionConfig selection, ProbeConfig probes,
                                   const LoaderState& state, DeliveryOptions delivery,
                                   std::shared_ptr<Collectives> collectives)
    : delivery_(delivery), selection_config_(selection), batch_size_(config.batch_size) {
  probes.validate();
  if (selection.mode == SelectionMode::kNone) {
    core_ = std::make_unique<StreamingLoader>(std::move(config), state, make_allocator(delivery));
    return;
  }
  const LoaderConfig loader = config;
  core_ = std::make_unique<StreamingLoader>(window_config(std::move(config), selection), state);
  selection_ = std::make_unique<OnlineSelection>(*core_, loader, selection, probes, &state, std::move(collectives));
}

GroupMatesLoader::~GroupMatesLoader() {
  selection_.reset();  // before the core whose windows it holds
}

std::optional<Batch> GroupMatesLoader::deliver(Batch b) const {
  if (delivery_.device != torch::kCPU) {
    // Asynchronous from pinned memory; the host buffer stays referenced by the batch, so it is not
    // reused while the copy may still be in flight.
    b.host_input_ids = b.input_ids;
    b.input_ids = b.input_ids.to(delivery_.device, /*non_blocking=*/delivery_.pin_memory);
  }
  return b;
}

std::optional<Batch> GroupMatesLoader::next() {
  if (selection_) {
    auto b = selection_->next(batch_size_);
    if (!b) return std::nullopt;
    if (delivery_.pin_memory && torch::cuda::is_available()) b->input_ids = b->input_ids.pin_memory();
    return deliver(std::move(*b));
  }
  auto host = core_->next();
  if (!host) return std::nullopt;
  Batch b;
  b.input_ids = to_tensor(*host);
  b.ids = std::move(host->ids);
  b.index = host->index;
  return deliver(std::move(b));
}

void GroupMatesLoader::set_reference(const torch::Tensor& rows) {
  if (!selection_)
    throw Error(ErrorCode::kInvalidConfig, "GroupMatesLoader::set_reference",
                "a plain loader (SelectionMode::kNone) has no use for reference rows");
  selection_->set_reference(rows);
}

void GroupMatesLoader::on_step(int64_t step, ProbeTarget* target) {
  if (selection_) selection_->on_step(step, target);
}

LoaderState GroupMatesLoader::state() const {
  if (selection_) return selection_->save();
  return core_->state();
}

SelectionStats GroupMatesLoader::selection_stats() const {
  if (selection_) return selection_->stats();
  SelectionStats s;
  const LoaderStats ls = core_->stats();
  s.seen = s.selected = ls.batches * batch_size_;
  return s;
}

}  // namespace groupmates
