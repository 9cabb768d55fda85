#include "groupmates/loader.h"

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

}  // namespace

torch::Tensor to_tensor(const HostBatch& batch) {
  auto keep = batch.tokens;  // the deleter holds the pooled buffer until the tensor dies
  return torch::from_blob(
      batch.tokens.get(), {static_cast<int64_t>(batch.batch_size), static_cast<int64_t>(batch.sequence_length)},
      [keep](void*) mutable { keep.reset(); }, torch::TensorOptions().dtype(torch::kInt64));
}

GroupMatesLoader::GroupMatesLoader(LoaderConfig config, DeliveryOptions delivery)
    : delivery_(delivery), core_(std::make_unique<StreamingLoader>(std::move(config), make_allocator(delivery))) {}

GroupMatesLoader::GroupMatesLoader(LoaderConfig config, const LoaderState& state, DeliveryOptions delivery)
    : delivery_(delivery),
      core_(std::make_unique<StreamingLoader>(std::move(config), state, make_allocator(delivery))) {}

std::optional<Batch> GroupMatesLoader::next() {
  auto host = core_->next();
  if (!host) return std::nullopt;
  Batch b;
  b.input_ids = to_tensor(*host);
  if (delivery_.device != torch::kCPU) {
    // Asynchronous from pinned memory; the host buffer stays referenced by the batch, so it is not
    // reused while the copy may still be in flight.
    b.host_input_ids = b.input_ids;
    b.input_ids = b.input_ids.to(delivery_.device, /*non_blocking=*/delivery_.pin_memory);
  }
  b.ids = std::move(host->ids);
  b.index = host->index;
  return b;
}

}  // namespace groupmates
