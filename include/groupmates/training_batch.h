// groupmates/training_batch.h: a Batch of a loader with LoaderConfig::labels, split into what a
// training step takes (semantics in training_targets.h; docs/TRAINING_BATCHES.md).
//
//   config.labels = true;                               // rows read sequence_length + 1 tokens
//   groupmates::GroupMatesLoader loader(config);
//   while (auto raw = loader.next()) {
//     auto b = groupmates::training_batch(*raw, config);  // input_ids, labels [B, T]
//     auto loss = torch::nn::functional::cross_entropy(model(b.input_ids).flatten(0, 1), b.labels.flatten());
//   }
#pragma once

#include <torch/types.h>

#include <vector>

#include "groupmates/error.h"
#include "groupmates/loader.h"
#include "groupmates/training_targets.h"

namespace groupmates {

/// One training step's tensors, on the device of the loader's batches.
struct TrainingBatch {
  torch::Tensor input_ids;     ///< [B, T] int64: the first T tokens of each row (a view, row stride T + 1)
  torch::Tensor labels;        ///< [B, T] int64: the next token, kIgnoreIndex (-100) where there is no target
  torch::Tensor loss_mask;     ///< [B, T] float: 1 where labels has a target, else 0
  torch::Tensor position_ids;  ///< [B, T] int64, restarting after each EOS (LoaderConfig::position_ids), else undefined
  torch::Tensor document_ids;  ///< [B, T] int64, runs of a row 0, 1, ..., -1 on padding (document_boundaries)
  torch::Tensor cu_seqlens;    ///< [runs + 1] int32 offsets into the flattened batch (document_boundaries)
  int64_t max_seqlen = 0;      ///< longest run (document_boundaries)
  Batch raw;                   ///< the loader's batch: rows of T + 1 tokens, ids, index, selection fields
};

/// Splits a batch of a loader with `config.labels` (the same config) into inputs and targets.
/// Targets are computed on the host from the pooled buffer and moved to the batch's device.
inline TrainingBatch training_batch(Batch batch, const LoaderConfig& config) {
  const int64_t T = config.sequence_length;
  if (!config.labels)
    throw Error(ErrorCode::kInvalidConfig, "LoaderConfig.labels", "is false: set labels = true to get training batches");
  if (batch.input_ids.dim() != 2 || batch.input_ids.size(1) != T + 1)
    throw Error(ErrorCode::kInvalidConfig, "training_batch",
                "expected rows of sequence_length + 1 = " + std::to_string(T + 1) + " tokens, got shape " +
                    c10::str(batch.input_ids.sizes()) + ": pass the config the loader was built with");
  const torch::Tensor host = (batch.host_input_ids.defined() ? batch.host_input_ids : batch.input_ids)
                                 .to(torch::kCPU).contiguous();
  const int64_t B = host.size(0);
  const auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  TrainingBatch out;
  out.labels = torch::empty({B, T}, i64);
  out.loss_mask = torch::empty({B, T}, torch::TensorOptions().dtype(torch::kFloat32));
  TargetBuffers buffers;
  buffers.labels = out.labels.data_ptr<int64_t>();
  buffers.loss_mask = out.loss_mask.data_ptr<float>();
  if (config.position_ids) {
    out.position_ids = torch::empty({B, T}, i64);
    buffers.position_ids = out.position_ids.data_ptr<int64_t>();
  }
  std::vector<int32_t> cu;
  if (config.document_boundaries) {
    out.document_ids = torch::empty({B, T}, i64);
    buffers.document_ids = out.document_ids.data_ptr<int64_t>();
    buffers.cu_seqlens = &cu;
    buffers.max_seqlen = &out.max_seqlen;
  }
  compute_training_targets(host.data_ptr<int64_t>(), static_cast<uint32_t>(B), static_cast<uint64_t>(T + 1), config,
                           buffers);
  const torch::Device device = batch.input_ids.device();
  const bool move = device != torch::Device(torch::kCPU);
  auto place = [&](torch::Tensor t) { return move && t.defined() ? t.to(device, /*non_blocking=*/true) : t; };
  out.labels = place(out.labels);
  out.loss_mask = place(out.loss_mask);
  out.position_ids = place(out.position_ids);
  out.document_ids = place(out.document_ids);
  if (config.document_boundaries)
    out.cu_seqlens = place(torch::from_blob(cu.data(), {static_cast<int64_t>(cu.size())},
                                            torch::TensorOptions().dtype(torch::kInt32)).clone());
  out.input_ids = batch.input_ids.narrow(1, 0, T);
  out.raw = std::move(batch);
  return out;
}

}  // namespace groupmates
