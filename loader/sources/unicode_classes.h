// unicode_classes.h: the character classes the byte-level BPE pre-tokenizer's regexes use (\p{L},
// \p{N}, \s) and a UTF-8 decoder that never fails. Letters and numbers come from the generated
// table unicode_classes.inc (scripts/tokenizer/gen-unicode-classes.mjs); \s is Unicode White_Space,
// as in Oniguruma (Hugging Face tokenizers) and Rust regex (tiktoken).
#pragma once

#include <cstddef>
#include <cstdint>

namespace groupmates {

enum class CharClass : uint8_t {
  kOther = 0,   ///< [^\s\p{L}\p{N}]
  kLetter = 1,  ///< \p{L}
  kNumber = 2,  ///< \p{N}
  kSpace = 3,   ///< \s (White_Space: U+0009-000D, 0020, 0085, 00A0, 1680, 2000-200A, 2028, 2029, 202F, 205F, 3000)
  kEnd = 4,     ///< past the end of the text (never returned by classify_code_point)
};

/// The class of a code point (any value; surrogates and unassigned ones are kOther).
CharClass classify_code_point(uint32_t cp);

/// One decoded character: code point, class, byte length (0 at the end of the text).
struct DecodedChar {
  uint32_t cp;
  CharClass cls;
  uint32_t len;
};

/// The character starting at byte i of s[0, n). A byte that does not start a valid UTF-8 sequence
/// (stray continuation, overlong, surrogate, truncated) is one character of class kOther and length
/// 1, so any byte string splits into pieces that cover it exactly.
DecodedChar decode_char(const unsigned char* s, size_t n, size_t i);

}  // namespace groupmates
