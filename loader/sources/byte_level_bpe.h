// byte_level_bpe.h: a Hugging Face tokenizer.json byte-level BPE tokenizer (GPT-2, Llama 3, Qwen2
// style), LibTorch-free. Reads the subset those models use and refuses everything else with an
// error naming the tokenizer.json field:
//   normalizer      null
//   pre_tokenizer   ByteLevel (use_regex: the GPT-2 regex; add_prefix_space), or a Sequence of
//                   Split (a known regex: GPT-2, Llama-3/cl100k, Qwen2; behavior Isolated, invert
//                   false) and ByteLevel
//   model           BPE with vocab and merges ("a b" strings or [a, b] pairs); ignore_merges;
//                   no dropout, byte_fallback, continuing_subword_prefix or end_of_word_suffix
//   added_tokens    matched in the text first (leftmost, longest), as tokenizers' encode() does;
//                   lstrip / rstrip / single_word must be false
//   decoder         null or ByteLevel;  truncation, padding: null
//   post_processor  not applied: ids equal tokenizers' encode(text, add_special_tokens=False),
//                   as the SentencePiece path adds no BOS either.
// encode() is thread-safe; each thread keeps a bounded cache of recently merged pieces.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sources/pretokenizer.h"

namespace groupmates {

class ByteLevelBpe {
 public:
  /// Reads a tokenizer.json. Throws Error(kIo) if unreadable, Error(kCorruptData) naming the field
  /// if it is not valid or uses a feature listed as unsupported above.
  static std::unique_ptr<ByteLevelBpe> load(const std::string& path);
  ~ByteLevelBpe();

  /// Appends the ids of `text` (UTF-8; invalid bytes are encoded as their byte tokens) to out.
  void encode(std::string_view text, std::vector<uint32_t>& out) const;
  /// The bytes of ids, concatenated (added tokens as their content). Throws Error(kOutOfVocab).
  std::string decode(const std::vector<uint32_t>& ids) const;
  /// 1 + the largest id of the vocabulary and the added tokens.
  uint32_t vocab_size() const { return static_cast<uint32_t>(id_bytes_.size()); }
  /// The id of the first added token named <|endoftext|>, <|end_of_text|> or </s>, else -1.
  int32_t eos_id() const { return eos_id_; }

 private:
  struct MergeSlot {
    uint64_t key;  // (left << 32 | right) + 1; 0 = empty
    uint32_t rank;
    uint32_t id;
  };
  struct AddedToken {
    std::string content;
    uint32_t id;
  };
  ByteLevelBpe() = default;
  void add_merge(uint32_t left, uint32_t right, uint32_t rank, uint32_t id);
  const MergeSlot* find_merge(uint32_t left, uint32_t right) const;
  void encode_segment(std::string_view text, std::vector<uint32_t>& out) const;
  void encode_piece(std::string_view piece, std::vector<uint32_t>& out) const;
  void merge_piece(std::string_view piece, std::vector<uint32_t>& out) const;

  std::string path_;
  std::vector<SplitPattern> splits_;  // applied in order: each splits the pieces of the previous
  bool add_prefix_space_ = false;
  bool ignore_merges_ = false;
  std::array<uint32_t, 256> byte_ids_{};
  std::vector<MergeSlot> merges_;     // open addressing, power-of-two size
  uint64_t merge_mask_ = 0;
  std::unordered_map<std::string, uint32_t> vocab_;  // raw bytes -> id (for ignore_merges)
  std::vector<std::string> id_bytes_;                // id -> raw bytes (decode)
  std::vector<bool> id_known_;
  std::vector<AddedToken> added_;                    // longest first
  std::array<bool, 256> added_first_byte_{};
  int32_t eos_id_ = -1;
  uint64_t instance_ = 0;  // distinguishes tokenizers in the per-thread cache
};

}  // namespace groupmates
