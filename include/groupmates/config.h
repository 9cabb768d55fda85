// groupmates/config.h: what to read and how to stream it. No LibTorch here.
//
// One struct per concern, validated up front: validate() throws groupmates::Error
// (kInvalidConfig) naming the field, its value and the allowed range.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace groupmates {

/// On-disk formats a source can read.
enum class SourceFormat {
  kTokenFile,  ///< flat little-endian token ids, no header (nanoGPT / OLMo style); memory-mapped
  kMegatron,   ///< Megatron-LM indexed dataset: PREFIX.bin + PREFIX.idx (MMIDIDX version 1)
  kJsonl,      ///< one JSON object per line (.jsonl, or .jsonl.zst); text tokenized with SentencePiece
};

/// Integer width of a kTokenFile source.
enum class TokenDtype { kUint16, kUint32 };

/// What a source does when it runs out within a pass over the blend.
enum class OnExhausted {
  kEnd,      ///< the pass ends (the default; with one source, a pass is one epoch)
  kRecycle,  ///< the source reshuffles and starts again; the pass goes on
};

/// What to do with a bad record (invalid JSON line, invalid UTF-8, missing text field, empty document).
enum class BadInputPolicy {
  kFail,  ///< throw Error naming the file and line/offset (the default)
  kSkip,  ///< skip the record and count it in SkipCounters
};

/// One data source: a set of files of one format, blended with the others by weight.
/// SourceConfig::eos_id: the source appends LoaderConfig::eos_id.
inline constexpr int64_t kLoaderEosId = -2;
/// LoaderConfig::shuffle_block: choose per source (a local shuffle for .jsonl.zst, global otherwise).
inline constexpr uint32_t kShuffleBlockAuto = 0xFFFFFFFFu;

struct SourceConfig {
  std::string name;                    ///< label used in ids, logs and counters; defaults to "source<i>"
  SourceFormat format = SourceFormat::kTokenFile;
  std::vector<std::string> paths;      ///< files (kTokenFile, kJsonl) or prefixes without .bin/.idx (kMegatron)
  TokenDtype dtype = TokenDtype::kUint16;  ///< kTokenFile only
  double weight = 1.0;                 ///< blend weight, > 0; weights are normalised over sources
  OnExhausted on_exhausted = OnExhausted::kEnd;
  std::string text_field = "text";     ///< kJsonl: the string field holding the document
  std::string tokenizer_model;         ///< kJsonl: a SentencePiece .model file, or a Hugging Face tokenizer.json (byte-level BPE;
                                       ///< a path ending in ".json"; see tokenizer.h)
  /// Documents sources (kMegatron, kJsonl): append LoaderConfig::eos_id after each document. false:
  /// the documents already end with it (Megatron data built with --append-eod), none is added.
  bool append_eos = true;
  /// Documents sources, with append_eos: the id appended after each of this source's documents.
  /// kLoaderEosId: LoaderConfig::eos_id; -1: none (documents run together). A source tokenized
  /// with another EOS than the loader's (e.g. raw JSONL beside Megatron data) sets its own.
  int64_t eos_id = kLoaderEosId;
  uint64_t max_line_bytes = 4u << 20;  ///< kJsonl: a longer line is a bad record ("line_too_long", by bad_input):
                                       ///< parsing + tokenizing one line takes ~70x its size in memory
  /// kJsonl, .zst files: decompressed zstd frames kept in memory (LRU, per source). A line is read by
  /// decompressing its frame whole, so every frame must fit: a bigger frame is an error at open
  /// (recompress with `groupmates reframe`, 64 KiB frames). Memory in use: this plus one frame per
  /// reading thread, plus the line index (8 bytes per line). Under LoaderConfig::kShuffleBlockAuto (the
  /// default) it also sets the local shuffle's span, so the stream: a state resumes with the same value.
  uint64_t zstd_cache_bytes = 64u << 20;
  /// kJsonl: keep each file's line index on disk (a second open reads no data but 17 sampled pages),
  /// keyed by the file's size, mtime and sampled content hash; a stale or corrupt one is reported on
  /// stderr and rebuilt. Written as `.NAME.gmidx` beside the file when its directory is writable,
  /// else in index_cache_dir; atomic (temporary file + rename), so concurrent jobs can share it.
  bool index_cache = true;
  std::string index_cache_dir;  ///< kJsonl: where indexes go when a file's directory is not writable ("" = nowhere)
};

/// How documents become fixed-length candidate sequences.
enum class PackingMode {
  kPacked,           ///< documents concatenated with eos_id between them, cut every sequence_length tokens
  kDocumentAligned,  ///< every window starts at a document start; a short tail is padded with pad_id
};

/// LoaderConfig::rank / world_size: take the value from the environment (torchrun's RANK and
/// WORLD_SIZE, else rank 0 of 1); see include/groupmates/rank_environment.h for the precedence.
inline constexpr uint32_t kFromEnvironment = 0xFFFFFFFFu;

/// The streaming loader: sources, shapes, shuffling, sharding, threads, memory.
struct LoaderConfig {
  std::vector<SourceConfig> sources;
  uint32_t sequence_length = 1024;     ///< T: tokens per candidate sequence
  uint32_t batch_size = 16;            ///< B: sequences per batch on this rank
  uint32_t rank = kFromEnvironment;       ///< data-parallel rank; kFromEnvironment: RANK, else 0
  uint32_t world_size = kFromEnvironment; ///< ranks; global batch = batch_size * world_size; kFromEnvironment: WORLD_SIZE, else 1
  bool check_rank_environment = true;  ///< an explicit rank/world_size must agree with RANK/WORLD_SIZE when set;
                                       ///< false: the environment is not read (e.g. an evaluation loader every rank reads whole)
  uint32_t reader_count = 1;           ///< processes splitting this rank's batches (e.g. DataLoader workers; set by the
                                       ///< Python package): this one returns only the rank's global batches g with
  uint32_t reader_index = 0;           ///< g % reader_count == reader_index, and plans the others without reading them
  uint64_t seed = 0;
  bool shuffle = true;
  uint32_t shuffle_block = kShuffleBlockAuto;  ///< Megatron/JSONL, with shuffle: 0 = one global permutation of
                                       ///< documents; B > 0 = a local shuffle: blocks of B consecutive documents permuted,
                                       ///< the documents of every shuffle_span blocks in a row mixed (reads stay near each
                                       ///< other: a .jsonl.zst frame is decompressed about once, not once per document);
                                       ///< kShuffleBlockAuto (default): per source, a local shuffle for .jsonl.zst (B = its
                                       ///< documents per zstd frame, span at most a quarter of the frames zstd_cache_bytes
                                       ///< holds), the global permutation for the others (StreamingLoader::local_shuffles();
                                       ///< the choice is in the state's fingerprint: resume with the same zstd_cache_bytes)
  uint32_t shuffle_span = 256;         ///< blocks whose documents are mixed together (shuffle_block > 0; with auto, at most)
  uint32_t epochs = 1;                 ///< passes over the blend; 0 = endless
  PackingMode packing = PackingMode::kPacked;
  int64_t eos_id = -1;                 ///< separator between packed documents; -1 = none (kTokenFile ignores it)
  int64_t pad_id = 0;                  ///< kDocumentAligned padding
  uint64_t vocab_size = 0;             ///< token ids must be < vocab_size; 0 = not checked
  BadInputPolicy bad_input = BadInputPolicy::kFail;
  uint32_t num_threads = 2;            ///< worker threads reading / tokenizing / assembling batches
  uint32_t prefetch_batches = 4;       ///< batches prepared ahead of the consumer (bounds memory)
  uint32_t tokenize_ahead = 256;       ///< kJsonl: documents tokenized ahead of packing

  // Training targets (include/groupmates/training_targets.h; docs/TRAINING_BATCHES.md).
  bool labels = false;                 ///< rows read sequence_length + 1 tokens: T inputs, T next-token labels
  bool mask_across_documents = false;  ///< labels: no target where the input is eos_id (the next document's start)
  bool position_ids = false;           ///< labels: position ids restarting at 0 after each eos_id
  bool document_boundaries = false;    ///< labels: a document index per position and cu_seqlens offsets

  /// Tokens each row of the stream holds: sequence_length, plus the last label with `labels`.
  uint32_t row_length() const { return sequence_length + (labels ? 1u : 0u); }

  /// Throws Error(kInvalidConfig) naming the first bad field.
  void validate() const;
};

}  // namespace groupmates
