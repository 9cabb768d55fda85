#include "groupmates/config.h"

#include <string>
#include <utility>

#include "groupmates/error.h"

namespace groupmates {

namespace {
[[noreturn]] void bad(const std::string& field, const std::string& what) {
  throw Error(ErrorCode::kInvalidConfig, "LoaderConfig." + field, what);
}
}  // namespace

void LoaderConfig::validate() const {
  if (sources.empty()) bad("sources", "no source given: add at least one SourceConfig");
  bool any_end = false;
  for (size_t i = 0; i < sources.size(); ++i) {
    const SourceConfig& s = sources[i];
    const std::string f = "sources[" + std::to_string(i) + "]";
    if (s.paths.empty()) bad(f + ".paths", "no file given");
    if (!(s.weight > 0) || s.weight > 1e12) bad(f + ".weight", "is " + std::to_string(s.weight) + "; must be > 0");
    if (s.format == SourceFormat::kJsonl && s.tokenizer_model.empty())
      bad(f + ".tokenizer_model", "a JSONL source needs a tokenizer: a SentencePiece .model file or a Hugging Face tokenizer.json (a path ending in .json)");
    if (s.format == SourceFormat::kJsonl && s.text_field.empty()) bad(f + ".text_field", "is empty");
    if (s.max_line_bytes < 1 || s.max_line_bytes > (uint64_t{1} << 32))
      bad(f + ".max_line_bytes", "is " + std::to_string(s.max_line_bytes) + "; allowed 1..4294967296 (a line costs ~70x its size in memory)");
    if (s.eos_id < kLoaderEosId)
      bad(f + ".eos_id", "is " + std::to_string(s.eos_id) + "; use -2 (kLoaderEosId: the loader's eos_id), -1 (none) or a token id");
    if (s.eos_id >= 0 && vocab_size > 0 && s.eos_id >= static_cast<int64_t>(vocab_size))
      bad(f + ".eos_id", "is " + std::to_string(s.eos_id) + ", outside the vocabulary [0, " + std::to_string(vocab_size) + ")");
    if (s.eos_id != kLoaderEosId && s.eos_id != eos_id && (mask_across_documents || position_ids || document_boundaries))
      bad(f + ".eos_id", "is " + std::to_string(s.eos_id) + " but mask_across_documents / position_ids / document_boundaries find "
                         "documents by LoaderConfig.eos_id (" + std::to_string(eos_id) + "): leave it at -2 (the loader's) or turn those off");
    if (s.zstd_cache_bytes < (uint64_t{1} << 16))
      bad(f + ".zstd_cache_bytes", "is " + std::to_string(s.zstd_cache_bytes) + "; at least 65536 (every zstd frame must fit: 64 MiB by default)");
    if (s.on_exhausted == OnExhausted::kEnd) any_end = true;
    for (size_t j = 0; j < i; ++j)
      if (!s.name.empty() && s.name == sources[j].name) bad(f + ".name", "'" + s.name + "' is used twice");
  }
  if (epochs > 0 && !any_end)
    bad("epochs", "is " + std::to_string(epochs) +
                      " but every source recycles, so a pass never ends: set epochs = 0 for an endless stream, "
                      "or on_exhausted = kEnd on one source");
  if (sequence_length < 1 || sequence_length > (1u << 24)) bad("sequence_length", "is " + std::to_string(sequence_length) + "; allowed 1..16777216");
  if (batch_size < 1 || batch_size > (1u << 20)) bad("batch_size", "is " + std::to_string(batch_size) + "; allowed 1..1048576");
  // kFromEnvironment is resolved by resolve_ranks() (rank_environment.h) when a loader starts.
  if (world_size < 1) bad("world_size", "is 0; must be >= 1");
  if (rank != kFromEnvironment && world_size != kFromEnvironment && rank >= world_size)
    bad("rank", "is " + std::to_string(rank) + "; must be < world_size (" + std::to_string(world_size) + ")");
  if (reader_count < 1 || reader_count > 65536) bad("reader_count", "is " + std::to_string(reader_count) + "; allowed 1..65536");
  if (reader_index >= reader_count)
    bad("reader_index", "is " + std::to_string(reader_index) + "; must be < reader_count (" + std::to_string(reader_count) + ")");
  if (num_threads < 1 || num_threads > 256) bad("num_threads", "is " + std::to_string(num_threads) + "; allowed 1..256");
  if (prefetch_batches < 1 || prefetch_batches > 4096) bad("prefetch_batches", "is " + std::to_string(prefetch_batches) + "; allowed 1..4096");
  if (shuffle_block > (1u << 24) && shuffle_block != kShuffleBlockAuto)
    bad("shuffle_block", "is " + std::to_string(shuffle_block) + "; allowed 0..16777216 documents, or kShuffleBlockAuto");
  if (shuffle_span < 1 || shuffle_span > (1u << 24)) bad("shuffle_span", "is " + std::to_string(shuffle_span) + "; allowed 1..16777216 blocks");
  if (tokenize_ahead < 1 || tokenize_ahead > (1u << 20)) bad("tokenize_ahead", "is " + std::to_string(tokenize_ahead) + "; allowed 1..1048576");
  if (vocab_size > 0 && eos_id >= static_cast<int64_t>(vocab_size))
    bad("eos_id", "is " + std::to_string(eos_id) + ", outside the vocabulary [0, " + std::to_string(vocab_size) + ")");
  if (vocab_size > 0 && packing == PackingMode::kDocumentAligned && (pad_id < 0 || pad_id >= static_cast<int64_t>(vocab_size)))
    bad("pad_id", "is " + std::to_string(pad_id) + ", outside the vocabulary [0, " + std::to_string(vocab_size) + ")");
  if (eos_id < -1) bad("eos_id", "is " + std::to_string(eos_id) + "; use -1 for no separator");
  if (labels && sequence_length >= (1u << 24)) bad("sequence_length", "is " + std::to_string(sequence_length) + "; with labels (T + 1 tokens per row) allowed 1..16777215");
  for (const auto& [name, on] : {std::pair{"mask_across_documents", mask_across_documents}, std::pair{"position_ids", position_ids},
                                 std::pair{"document_boundaries", document_boundaries}}) {
    if (on && !labels) bad(name, "is true but labels is false: it describes the inputs of a labelled row; set labels = true");
    if (on && eos_id < 0)
      bad(name, "is true but eos_id is -1: documents are told apart by eos_id in the rows; set eos_id to the id ending your documents");
  }
  if (labels && packing == PackingMode::kDocumentAligned && eos_id < 0)
    bad("labels", "with packing = kDocumentAligned needs eos_id >= 0: padding is what follows a row's EOS "
                  "(pad_id may be a real token); set eos_id");
}

}  // namespace groupmates
