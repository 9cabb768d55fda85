// pretokenizer.cpp: the GPT-2 and Llama-3 family split patterns as hand-written matchers.
//
// A regex engine tries the alternatives left to right at the current position and takes the first
// that matches, greedy quantifiers backtracking when a later part fails. Each branch below is one
// alternative (in order), with the backtracking worked out:
//   \s+(?!\S)  over a whitespace run [i, e): the whole run if it ends the text, else the run minus
//              its last character (that one then starts the next piece), else (a run of one before
//              a non-space) no match and \s+ takes the single character.
//   \s*[\r\n]+ over a whitespace run: up to and including the run's last \r or \n, if it has one.
#include "sources/pretokenizer.h"

#include "sources/unicode_classes.h"

namespace groupmates {
namespace {

class Matcher {
 public:
  explicit Matcher(std::string_view text)
      : s_(reinterpret_cast<const unsigned char*>(text.data())), n_(text.size()) {}

  size_t size() const { return n_; }
  DecodedChar at(size_t i) const { return decode_char(s_, n_, i); }

  // End of the run of characters of class `cls` starting at i (i itself if none).
  size_t run(size_t i, CharClass cls) const {
    for (;;) {
      const DecodedChar c = at(i);
      if (c.cls != cls) return i;
      i += c.len;
    }
  }

  // 's|'t|'re|'ve|'m|'ll|'d at i (s_[i] == '\''): the end of the match, or 0.
  size_t contraction(size_t i, bool ignore_case) const {
    auto lower = [&](size_t k) -> int {
      if (k >= n_) return -1;
      const int c = s_[k];
      return ignore_case && c >= 'A' && c <= 'Z' ? c + 32 : c;
    };
    const int a = lower(i + 1);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    const int b = lower(i + 2);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    return 0;
  }

  // The whitespace branches at i (a kSpace character): \s*[\r\n]+ (if with_newline_branch), then
  // \s+(?!\S), then \s+.
  size_t whitespace(size_t i, bool with_newline_branch) const {
    size_t e = i, last = i, after_newline = 0;
    for (;;) {
      const DecodedChar c = at(e);
      if (c.cls != CharClass::kSpace) break;
      last = e;
      e += c.len;
      if (c.cp == '\r' || c.cp == '\n') after_newline = e;
    }
    if (with_newline_branch && after_newline != 0) return after_newline;
    if (e == n_) return e;
    if (last > i) return last;
    return e;
  }

  size_t gpt2(size_t i) const {
    const DecodedChar c0 = at(i);
    if (c0.cp == '\'') {
      if (const size_t e = contraction(i, false)) return e;
    }
    DecodedChar c = c0;
    size_t j = i;
    if (c0.cp == ' ') {  // " ?" then a letter, number or other run
      const DecodedChar c1 = at(i + 1);
      if (c1.cls == CharClass::kLetter || c1.cls == CharClass::kNumber || c1.cls == CharClass::kOther) {
        c = c1;
        j = i + 1;
      }
    }
    if (c.cls != CharClass::kSpace) return run(j + c.len, c.cls);
    return whitespace(i, false);
  }

  size_t llama3(size_t i, int max_digits) const {
    const DecodedChar c0 = at(i);
    if (c0.cp == '\'') {
      if (const size_t e = contraction(i, true)) return e;
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (c0.cls == CharClass::kLetter) return run(i + c0.len, CharClass::kLetter);
    if (c0.cls != CharClass::kNumber && c0.cp != '\r' && c0.cp != '\n') {
      const DecodedChar c1 = at(i + c0.len);
      if (c1.cls == CharClass::kLetter) return run(i + c0.len + c1.len, CharClass::kLetter);
    }
    // \p{N}{1,max}
    if (c0.cls == CharClass::kNumber) {
      size_t e = i + c0.len;
      for (int k = 1; k < max_digits; ++k) {
        const DecodedChar c = at(e);
        if (c.cls != CharClass::kNumber) break;
        e += c.len;
      }
      return e;
    }
    //  ?[^\s\p{L}\p{N}]+[\r\n]*
    size_t j = c0.cls == CharClass::kOther ? i : (c0.cp == ' ' && at(i + 1).cls == CharClass::kOther ? i + 1 : n_ + 1);
    if (j <= n_) {
      size_t e = run(j, CharClass::kOther);
      while (e < n_ && (s_[e] == '\r' || s_[e] == '\n')) ++e;
      return e;
    }
    return whitespace(i, true);
  }

 private:
  const unsigned char* s_;
  size_t n_;
};

}  // namespace

std::optional<SplitPattern> split_pattern_from_regex(std::string_view regex) {
  static const char* const kGpt2[] = {
      R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)",
  };
  static const char* const kLlama3[] = {
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
      R"('(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+)",
      R"(('s|'S|'t|'T|'re|'rE|'Re|'RE|'ve|'vE|'Ve|'VE|'m|'M|'ll|'lL|'Ll|'LL|'d|'D)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
  };
  static const char* const kQwen2[] = {
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
  };
  for (const char* r : kGpt2)
    if (regex == r) return SplitPattern::kGpt2;
  for (const char* r : kLlama3)
    if (regex == r) return SplitPattern::kLlama3;
  for (const char* r : kQwen2)
    if (regex == r) return SplitPattern::kQwen2;
  return std::nullopt;
}

const char* split_pattern_name(SplitPattern p) {
  switch (p) {
    case SplitPattern::kGpt2: return "GPT-2";
    case SplitPattern::kLlama3: return "Llama-3/cl100k";
    case SplitPattern::kQwen2: return "Qwen2";
  }
  return "?";
}

void pretokenize(SplitPattern p, std::string_view text, std::vector<uint32_t>& ends) {
  const Matcher m(text);
  size_t i = 0;
  while (i < m.size()) {
    switch (p) {
      case SplitPattern::kGpt2: i = m.gpt2(i); break;
      case SplitPattern::kLlama3: i = m.llama3(i, 3); break;
      case SplitPattern::kQwen2: i = m.llama3(i, 1); break;
    }
    ends.push_back(static_cast<uint32_t>(i));
  }
}

}  // namespace groupmates
