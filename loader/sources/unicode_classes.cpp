// unicode_classes.cpp: classify_code_point (a 64 Ki-entry table for the BMP, built once from the
// generated ranges; binary search above it) and decode_char.
#include "sources/unicode_classes.h"

#include <algorithm>
#include <array>
#include <memory>

namespace groupmates {
namespace {

struct ClassRange {
  uint32_t first, last;
  uint8_t cls;
};

constexpr ClassRange kRanges[] = {
#include "sources/unicode_classes.inc"
};

bool is_white_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

CharClass classify_slow(uint32_t cp) {
  if (is_white_space(cp)) return CharClass::kSpace;
  if (cp < 0x80) {
    if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return CharClass::kLetter;
    if (cp >= '0' && cp <= '9') return CharClass::kNumber;
    return CharClass::kOther;
  }
  const auto* end = std::end(kRanges);
  const auto* it = std::upper_bound(std::begin(kRanges), end, cp, [](uint32_t v, const ClassRange& r) { return v < r.first; });
  if (it == std::begin(kRanges)) return CharClass::kOther;
  --it;
  return cp <= it->last ? static_cast<CharClass>(it->cls) : CharClass::kOther;
}

const uint8_t* bmp_table() {
  static const std::unique_ptr<uint8_t[]> table = [] {
    std::unique_ptr<uint8_t[]> t(new uint8_t[0x10000]);
    for (uint32_t cp = 0; cp < 0x10000; ++cp) t[cp] = static_cast<uint8_t>(classify_slow(cp));
    return t;
  }();
  return table.get();
}

}  // namespace

CharClass classify_code_point(uint32_t cp) {
  if (cp < 0x10000) return static_cast<CharClass>(bmp_table()[cp]);
  return classify_slow(cp);
}

DecodedChar decode_char(const unsigned char* s, size_t n, size_t i) {
  static const uint8_t* table = bmp_table();
  if (i >= n) return {0, CharClass::kEnd, 0};
  const uint32_t c = s[i];
  if (c < 0x80) return {c, static_cast<CharClass>(table[c]), 1};
  uint32_t len, cp;
  if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
  else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
  else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
  else return {c, CharClass::kOther, 1};
  if (i + len > n) return {c, CharClass::kOther, 1};
  for (uint32_t k = 1; k < len; ++k) {
    const uint32_t b = s[i + k];
    if ((b & 0xC0) != 0x80) return {c, CharClass::kOther, 1};
    cp = (cp << 6) | (b & 0x3F);
  }
  if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF)) {
    return {c, CharClass::kOther, 1};
  }
  return {cp, cp < 0x10000 ? static_cast<CharClass>(table[cp]) : classify_slow(cp), len};
}

}  // namespace groupmates
