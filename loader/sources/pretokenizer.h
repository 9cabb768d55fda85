// pretokenizer.h: the regex splits of byte-level BPE tokenizers, hand-written (std::regex is ~100x
// slower and has no \p{L}): the GPT-2 pattern and the Llama-3 / cl100k family. Each matcher follows
// the regex's leftmost-first alternation and backtracking exactly (see pretokenizer.cpp); the
// character classes are those of unicode_classes.h.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace groupmates {

enum class SplitPattern {
  /// GPT-2 / r50k / RoBERTa (the ByteLevel pre-tokenizer's own regex):
  /// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
  /// Llama 3 / cl100k: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
  /// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  kLlama3,
  /// Qwen2: as kLlama3 with \p{N} (one digit per piece) instead of \p{N}{1,3}.
  kQwen2,
};

/// The pattern a tokenizer.json regex string spells (the known spellings of each, exactly), or
/// nullopt if it is none of them.
std::optional<SplitPattern> split_pattern_from_regex(std::string_view regex);

/// Human-readable name ("GPT-2", ...) for messages.
const char* split_pattern_name(SplitPattern p);

/// Splits text (UTF-8; invalid bytes are single kOther characters) into the pattern's pieces and
/// appends each piece's end offset to `ends`: the pieces are [0, ends[k0]), [ends[k0], ends[k0+1]),
/// ... and cover the text exactly. Appends nothing for an empty text.
void pretokenize(SplitPattern p, std::string_view text, std::vector<uint32_t>& ends);

}  // namespace groupmates
