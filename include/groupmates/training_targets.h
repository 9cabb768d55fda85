// groupmates/training_targets.h: labels, loss mask, position ids and document boundaries of the
// rows a loader with LoaderConfig::labels streams. No LibTorch here (training_batch.h wraps it).
//
// With labels, each row holds T + 1 tokens x[0..T] (T = sequence_length): the inputs are x[0..T-1]
// and the label of input t is x[t + 1], the next token, as in nanoGPT and Megatron's GPTDataset.
// A label is kIgnoreIndex (-100, PyTorch's cross_entropy default) and its loss mask 0 where there
// is no target:
//   * padding (PackingMode::kDocumentAligned): a row's first eos_id ends its document, the rest of
//     the row is padding; the EOS itself is a target, nothing after it is (pad_id may be a real id);
//   * across documents (mask_across_documents): where the input is eos_id, the next token starts
//     another document (Megatron's eod_mask_loss).
// Documents within a row are the runs ending with eos_id (for kTokenFile, the EOS tokens your data
// holds); padding is a run of its own. position_ids count from 0 at the start of each run (and of
// each row); document_ids number the runs of a row 0, 1, ... (-1 on padding); cu_seqlens are the
// start offsets of all runs in the flattened [B * T] batch followed by B * T (flash-attention's
// varlen layout). The rows do not overlap: one token in T + 1 is a label only.
#pragma once

#include <cstdint>
#include <vector>

#include "groupmates/config.h"

namespace groupmates {

/// The label of a position without a target (torch.nn.functional.cross_entropy's ignore_index).
constexpr int64_t kIgnoreIndex = -100;

/// Where compute_training_targets() writes; every array is [batch_size, sequence_length]
/// row-major. `labels` and `loss_mask` are required, the others optional (null: not computed).
struct TargetBuffers {
  int64_t* labels = nullptr;
  float* loss_mask = nullptr;
  int64_t* position_ids = nullptr;
  int64_t* document_ids = nullptr;
  std::vector<int32_t>* cu_seqlens = nullptr;  ///< cleared, then the offsets (runs + 1 entries)
  int64_t* max_seqlen = nullptr;               ///< the longest run
};

/// Targets of `batch_size` rows of config.row_length() tokens each, `row_stride` tokens apart
/// (row_length() for a packed batch). Throws Error(kInvalidConfig) if config.labels is false.
void compute_training_targets(const int64_t* rows, uint32_t batch_size, uint64_t row_stride, const LoaderConfig& config,
                              const TargetBuffers& out);

}  // namespace groupmates
