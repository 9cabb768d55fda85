#include "groupmates/training_targets.h"

#include <algorithm>
#include <climits>
#include <string>

#include "groupmates/error.h"

namespace groupmates {

void compute_training_targets(const int64_t* rows, uint32_t batch_size, uint64_t row_stride, const LoaderConfig& config,
                              const TargetBuffers& out) {
  if (!config.labels)
    throw Error(ErrorCode::kInvalidConfig, "LoaderConfig.labels",
                "is false: rows hold no label token; set labels = true to stream rows of sequence_length + 1 tokens");
  if (out.labels == nullptr || out.loss_mask == nullptr)
    throw Error(ErrorCode::kInvalidConfig, "TargetBuffers", "labels and loss_mask are required");
  const uint64_t T = config.sequence_length;
  const int64_t eos = config.eos_id;
  const bool aligned = config.packing == PackingMode::kDocumentAligned;
  if (out.cu_seqlens && uint64_t{batch_size} * T > uint64_t{INT32_MAX})
    throw Error(ErrorCode::kInvalidConfig, "LoaderConfig.document_boundaries",
                "cu_seqlens are int32 offsets but batch_size * sequence_length = " + std::to_string(uint64_t{batch_size} * T) +
                    " exceeds 2^31 - 1; use smaller batches");
  if (out.cu_seqlens) out.cu_seqlens->assign(1, 0);
  int64_t longest = 0;
  for (uint64_t r = 0; r < batch_size; ++r) {
    const int64_t* x = rows + r * row_stride;
    // Real tokens: x[0, end); the rest of an aligned row after its first EOS is padding.
    uint64_t end = T + 1;
    if (aligned && eos >= 0) {
      const int64_t* e = std::find(x, x + T + 1, eos);
      if (e != x + T + 1) end = static_cast<uint64_t>(e - x) + 1;
    }
    uint64_t run_start = 0;
    int64_t doc = 0;
    for (uint64_t t = 0; t < T; ++t) {
      const uint64_t i = r * T + t;
      if (t == end) {  // the first padding position starts a run of its own
        if (out.cu_seqlens) out.cu_seqlens->push_back(static_cast<int32_t>(i));
        longest = std::max<int64_t>(longest, static_cast<int64_t>(t - run_start));
        run_start = t;
      }
      const bool padding = t >= end;
      const bool target = t + 1 < end && !(config.mask_across_documents && eos >= 0 && x[t] == eos);
      out.labels[i] = target ? x[t + 1] : kIgnoreIndex;
      out.loss_mask[i] = target ? 1.0f : 0.0f;
      if (out.position_ids) out.position_ids[i] = static_cast<int64_t>(t - run_start);
      if (out.document_ids) out.document_ids[i] = padding ? -1 : doc;
      // An EOS input ends its document: the next position starts the next one.
      if (!padding && eos >= 0 && x[t] == eos && t + 1 < T && t + 1 != end) {
        if (out.cu_seqlens) out.cu_seqlens->push_back(static_cast<int32_t>(i + 1));
        longest = std::max<int64_t>(longest, static_cast<int64_t>(t + 1 - run_start));
        run_start = t + 1;
        ++doc;
      }
    }
    longest = std::max<int64_t>(longest, static_cast<int64_t>(T - run_start));
    if (out.cu_seqlens) out.cu_seqlens->push_back(static_cast<int32_t>((r + 1) * T));
  }
  if (out.max_seqlen) *out.max_seqlen = longest;
}

}  // namespace groupmates
