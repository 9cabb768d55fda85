// Hugging Face tokenizer.json (byte-level BPE) through Tokenizer::load:
//   * exact ids against reference encodings from two independent encoders on npm (gpt-3-encoder,
//     js-tiktoken), committed in tests/data/tokenizer/ by scripts/tokenizer/make-bpe-fixture.mjs;
//   * fresh random strings (seed printed, GM_TEST_SEED replays) against a straightforward
//     reference written here: tokenizer.json read with nlohmann-json, the split regexes run by a
//     small backtracking matcher over their alternatives, and the textbook BPE loop (merge the
//     lowest-rank adjacent pair, leftmost first, until none), over several tokenizer.json variants;
//   * errors naming the unsupported or malformed field; a JSONL source reading with it.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "groupmates/config.h"
#include "groupmates/error.h"
#include "groupmates/tokenizer.h"
#include "loader/reader_test_util.h"
#include "sources/jsonl_source.h"
#include "sources/unicode_classes.h"

namespace groupmates {
namespace {

using json = nlohmann::json;

std::string fixture(const std::string& name) { return std::string(GROUPMATES_SOURCE_DIR) + "/tests/data/tokenizer/" + name; }

json read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return json::parse(in);
}

void write_json(const std::string& path, const json& j) { std::ofstream(path, std::ios::binary) << j.dump(); }

std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) s += static_cast<char>(cp);
  else if (cp < 0x800) { s += static_cast<char>(0xC0 | (cp >> 6)); s += static_cast<char>(0x80 | (cp & 0x3F)); }
  else if (cp < 0x10000) { s += static_cast<char>(0xE0 | (cp >> 12)); s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)); s += static_cast<char>(0x80 | (cp & 0x3F)); }
  else { s += static_cast<char>(0xF0 | (cp >> 18)); s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F)); s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)); s += static_cast<char>(0x80 | (cp & 0x3F)); }
  return s;
}

std::string show(const std::vector<uint32_t>& ids) {
  std::ostringstream o;
  for (size_t i = 0; i < ids.size(); ++i) o << (i ? " " : "") << ids[i];
  return o.str();
}

// ---------------------------------------------------------------------------------------------
// The reference tokenizer.

// GPT-2's bytes_to_unicode, written out again.
std::vector<std::string> byte_alphabet() {
  std::vector<int> bs;
  for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
  for (int b = 0xA1; b <= 0xAC; ++b) bs.push_back(b);
  for (int b = 0xAE; b <= 0xFF; ++b) bs.push_back(b);
  std::vector<std::string> m(256);
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = std::find(bs.begin(), bs.end(), b) != bs.end();
    m[b] = utf8(printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + n++));
  }
  return m;
}

bool white_space(uint32_t cp) {
  static const std::vector<uint32_t> ws = {0x9, 0xA, 0xB, 0xC, 0xD, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004,
                                           0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000};
  return std::find(ws.begin(), ws.end(), cp) != ws.end();
}
// Invalid UTF-8 bytes become one character each, outside Unicode, of class "other".
constexpr uint32_t kInvalidByte = 0x200000;
bool letter(uint32_t cp) { return cp < kInvalidByte && !white_space(cp) && classify_code_point(cp) == CharClass::kLetter; }
bool number(uint32_t cp) { return cp < kInvalidByte && !white_space(cp) && classify_code_point(cp) == CharClass::kNumber; }
bool other(uint32_t cp) { return !white_space(cp) && !letter(cp) && !number(cp); }

struct Chars {
  std::vector<uint32_t> cp;
  std::vector<size_t> off;  // byte offset of each character, plus the end
};
Chars decode(const std::string& s) {
  Chars c;
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    size_t len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    uint32_t cp = len == 1 ? b : len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
    bool ok = len > 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) {
      ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
      cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    }
    const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (ok && (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))) ok = false;
    if (!ok) { len = 1; cp = kInvalidByte + b; }
    c.cp.push_back(cp);
    c.off.push_back(i);
    i += len;
  }
  c.off.push_back(s.size());
  return c;
}

// One alternative of a split regex: a sequence of (character set){min,max}, optionally followed
// by (?!\S). Matched greedily with backtracking, as a regex engine does.
struct Element {
  std::function<bool(uint32_t)> in;
  size_t min, max;
};
struct Alternative {
  std::vector<Element> seq;
  bool not_before_non_space = false;
};
constexpr size_t kMany = ~size_t{0};

long match(const Alternative& a, const std::vector<uint32_t>& cp, size_t e, size_t pos) {
  if (e == a.seq.size()) {
    if (a.not_before_non_space && pos < cp.size() && !white_space(cp[pos])) return -1;
    return static_cast<long>(pos);
  }
  const Element& el = a.seq[e];
  size_t k = 0;
  while (k < el.max && pos + k < cp.size() && el.in(cp[pos + k])) ++k;
  if (k < el.min) return -1;
  for (size_t c = k;; --c) {
    const long r = match(a, cp, e + 1, pos + c);
    if (r >= 0) return r;
    if (c == el.min) return -1;
  }
}

std::vector<Alternative> alternatives(const std::string& kind) {
  auto ch = [](uint32_t c, bool icase) {
    return Element{[c, icase](uint32_t x) { return x == c || (icase && c >= 'a' && c <= 'z' && x == c - 32); }, 1, 1};
  };
  std::vector<Alternative> alts;
  const bool icase = kind != "gpt2";
  for (const char* con : {"s", "t", "re", "ve", "m", "ll", "d"}) {
    Alternative a;
    a.seq.push_back(ch('\'', false));
    for (const char* p = con; *p; ++p) a.seq.push_back(ch(static_cast<uint32_t>(*p), icase));
    alts.push_back(a);
  }
  const Element opt_space{[](uint32_t x) { return x == ' '; }, 0, 1};
  const Element spaces{white_space, 1, kMany};
  if (kind == "gpt2") {
    alts.push_back({{opt_space, {letter, 1, kMany}}});
    alts.push_back({{opt_space, {number, 1, kMany}}});
    alts.push_back({{opt_space, {other, 1, kMany}}});
  } else {
    const auto nl = [](uint32_t x) { return x == '\r' || x == '\n'; };
    alts.push_back({{{[nl](uint32_t x) { return !nl(x) && !letter(x) && !number(x); }, 0, 1}, {letter, 1, kMany}}});
    alts.push_back({{{number, 1, kind == "qwen2" ? size_t{1} : size_t{3}}}});
    alts.push_back({{opt_space, {other, 1, kMany}, {nl, 0, kMany}}});
    alts.push_back({{{white_space, 0, kMany}, {nl, 1, kMany}}});
  }
  Alternative lookahead{{spaces}};
  lookahead.not_before_non_space = true;
  alts.push_back(lookahead);
  alts.push_back({{spaces}});
  return alts;
}

// Pieces of `text` under the regex `kind`: at each position the first alternative that matches.
std::vector<std::string> split(const std::string& kind, const std::string& text) {
  static const std::map<std::string, std::vector<Alternative>> all = {
      {"gpt2", alternatives("gpt2")}, {"llama3", alternatives("llama3")}, {"qwen2", alternatives("qwen2")}};
  const auto& alts = all.at(kind);
  const Chars c = decode(text);
  std::vector<std::string> pieces;
  size_t pos = 0;
  while (pos < c.cp.size()) {
    long end = -1;
    for (const auto& a : alts) {
      end = match(a, c.cp, 0, pos);
      if (end > static_cast<long>(pos)) break;
    }
    if (end <= static_cast<long>(pos)) {
      ADD_FAILURE() << "reference split: no alternative matches at character " << pos;
      return pieces;
    }
    pieces.push_back(text.substr(c.off[pos], c.off[end] - c.off[pos]));
    pos = static_cast<size_t>(end);
  }
  return pieces;
}

class ReferenceBpe {
 public:
  explicit ReferenceBpe(const json& j) : alphabet_(byte_alphabet()) {
    for (const auto& [k, v] : j["model"]["vocab"].items()) vocab_[k] = v.get<uint32_t>();
    size_t r = 0;
    for (const auto& m : j["model"]["merges"]) {
      std::pair<std::string, std::string> p;
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        p = {s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)};
      } else {
        p = {m[0].get<std::string>(), m[1].get<std::string>()};
      }
      rank_.emplace(p, r++);  // a repeated pair keeps its first rank
    }
    ignore_merges_ = j["model"].value("ignore_merges", false);
    for (const auto& a : j["added_tokens"]) added_.emplace_back(a["content"].get<std::string>(), a["id"].get<uint32_t>());
    const json& pre = j["pre_tokenizer"];
    std::vector<json> stages = pre["type"] == "Sequence" ? pre["pretokenizers"].get<std::vector<json>>() : std::vector<json>{pre};
    for (const json& st : stages) {
      if (st["type"] == "ByteLevel") {
        prefix_space_ = st.value("add_prefix_space", false);
        if (st.value("use_regex", true)) splits_.push_back("gpt2");
      } else {
        const std::string re = st["pattern"]["Regex"];
        splits_.push_back(re.rfind("'s|", 0) == 0 ? "gpt2" : re.find("\\p{N}{1,3}") != std::string::npos ? "llama3" : "qwen2");
      }
    }
  }

  std::vector<uint32_t> encode(const std::string& text) const {
    std::vector<uint32_t> out;
    size_t start = 0, i = 0;
    while (i < text.size()) {
      size_t best = 0;
      uint32_t id = 0;
      for (const auto& [content, aid] : added_) {
        if (content.size() > best && text.compare(i, content.size(), content) == 0) { best = content.size(); id = aid; }
      }
      if (best == 0) { ++i; continue; }
      segment(text.substr(start, i - start), out);
      out.push_back(id);
      i += best;
      start = i;
    }
    segment(text.substr(start), out);
    return out;
  }

 private:
  void segment(std::string text, std::vector<uint32_t>& out) const {
    if (text.empty()) return;
    if (prefix_space_ && text[0] != ' ') text = " " + text;
    std::vector<std::string> pieces = {text};
    for (const std::string& kind : splits_) {
      std::vector<std::string> next;
      for (const auto& p : pieces)
        for (auto& q : split(kind, p)) next.push_back(std::move(q));
      pieces = std::move(next);
    }
    for (const auto& p : pieces) bpe(p, out);
  }

  void bpe(const std::string& piece, std::vector<uint32_t>& out) const {
    std::vector<std::string> parts;
    for (unsigned char b : piece) parts.push_back(alphabet_[b]);
    std::string whole;
    for (const auto& p : parts) whole += p;
    if (ignore_merges_ && vocab_.count(whole)) {
      out.push_back(vocab_.at(whole));
      return;
    }
    for (;;) {
      size_t best = kMany, at = 0;
      for (size_t k = 0; k + 1 < parts.size(); ++k) {
        const auto it = rank_.find({parts[k], parts[k + 1]});
        if (it != rank_.end() && it->second < best) { best = it->second; at = k; }
      }
      if (best == kMany) break;
      parts[at] += parts[at + 1];
      parts.erase(parts.begin() + static_cast<long>(at) + 1);
    }
    for (const auto& p : parts) out.push_back(vocab_.at(p));
  }

  std::vector<std::string> alphabet_;
  std::map<std::string, uint32_t> vocab_;
  std::map<std::pair<std::string, std::string>, size_t> rank_;
  std::vector<std::pair<std::string, uint32_t>> added_;
  std::vector<std::string> splits_;
  bool ignore_merges_ = false, prefix_space_ = false;
};

// Random hostile text: fragments, random code points, invalid bytes, long runs, added tokens.
std::string random_text(std::mt19937_64& rng) {
  static const std::vector<std::string> fragments = {
      "'s", "'S", "'ll", "'LL", "'re", "'", " ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\v", "\xC2\xA0", "\xE3\x80\x80", "\xC2\x85",
      "\xEF\xBB\xBF", "the", "The", "THE", "word", "caf\xC3\xA9", "e\xCC\x81", "\xCC\x81", "\xE6\x97\xA5\xE6\x9C\xAC",
      "\xF0\x9F\x98\x80", "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD", "\xE2\x80\x8D", "123", "4", "56789", "\xD9\xA3", "\xC2\xBD", ".", ",",
      "!", "?!", "...", "(", ")", "\"", "\xE2\x80\x94", "-", "_", "#", "$", "0x", "ab", "\xC5\xBF", "\xC4\xB0",
      "<|endoftext|>", "<|endof", "<|fim_prefix|>", "\xFF", "\x80", "\xE6\x97", "\xED\xA0\x80", "\xC0\xAF"};
  std::string s;
  const size_t n = rng() % 60;
  for (size_t k = 0; k < n; ++k) {
    const uint64_t r = rng() % 100;
    if (r < 75) {
      s += fragments[rng() % fragments.size()];
    } else if (r < 95) {
      const uint32_t ranges[][2] = {{0x20, 0x7E}, {0xA0, 0x24F}, {0x300, 0x36F}, {0x370, 0x5FF}, {0x600, 0x6FF}, {0x900, 0x97F},
                                    {0x2000, 0x206F}, {0x3000, 0x30FF}, {0x4E00, 0x4FFF}, {0xAC00, 0xAD00}, {0xFF00, 0xFFEF},
                                    {0x1D400, 0x1D7FF}, {0x1F300, 0x1F6FF}, {0x20000, 0x20100}};
      const auto& g = ranges[rng() % (sizeof ranges / sizeof ranges[0])];
      uint32_t cp = g[0] + static_cast<uint32_t>(rng() % (g[1] - g[0] + 1));
      if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
      s += utf8(cp);
    } else {
      const std::string runs[] = {"a", " ", "=", "\n", "7", "ab", " \n"};
      const std::string& u = runs[rng() % 7];
      for (size_t m = rng() % 150; m > 0; --m) s += u;
    }
  }
  return s;
}

// ---------------------------------------------------------------------------------------------

TEST(ByteLevelBpe, MatchesNpmReferenceEncodings) {
  const json ref = read_json(fixture("reference-encodings.json"));
  const auto gpt2 = Tokenizer::load(fixture("gpt2-4k.tokenizer.json"));
  const auto cl100k = Tokenizer::load(fixture("cl100k-4k.tokenizer.json"));
  size_t compared = 0, cases = 0;
  for (const json& c : ref["cases"]) {
    const std::string text = c["text"];
    for (const auto& [name, tok] : {std::make_pair("gpt2", gpt2), std::make_pair("cl100k", cl100k)}) {
      if (!c.contains(name)) continue;
      const auto want = c[name].get<std::vector<uint32_t>>();
      std::vector<uint32_t> got;
      tok->encode(text, got);
      ASSERT_EQ(show(got), show(want)) << name << ", case " << cases << ": " << json(text).dump();
      EXPECT_EQ(tok->decode(got), text);
      compared += want.size();
    }
    ++cases;
  }
  EXPECT_GT(cases, 200u);
  EXPECT_GT(compared, 30000u);  // not vacuous
  EXPECT_EQ(gpt2->vocab_size(), 50257u);
  EXPECT_EQ(gpt2->eos_id(), 50256);
  EXPECT_EQ(cl100k->eos_id(), 100257);
}

TEST(ByteLevelBpe, RandomTextMatchesReferenceBpe) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (GM_TEST_SEED=" + std::to_string(seed) + " to replay)");
  std::printf("RandomTextMatchesReferenceBpe seed %llu\n", static_cast<unsigned long long>(seed));
  rdtest::TempDir dir;
  // Variants of the two fixtures: every pre-tokenizer shape the reader accepts.
  std::vector<std::pair<std::string, json>> variants;
  const json gpt2 = read_json(fixture("gpt2-4k.tokenizer.json"));
  const json cl100k = read_json(fixture("cl100k-4k.tokenizer.json"));
  variants.emplace_back("gpt2", gpt2);
  variants.emplace_back("cl100k", cl100k);
  json v = gpt2;
  v["pre_tokenizer"]["add_prefix_space"] = true;
  variants.emplace_back("gpt2_prefix_space", v);
  v = gpt2;
  v["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers",
                         {{{"type", "Split"}, {"pattern", {{"Regex", cl100k["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]}}},
                           {"behavior", "Isolated"}, {"invert", false}},
                          {{"type", "ByteLevel"}, {"use_regex", true}}}}};
  variants.emplace_back("gpt2_llama3_then_gpt2_split", v);
  v = cl100k;
  std::string qwen = v["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"];
  qwen.replace(qwen.find("\\p{N}{1,3}"), 10, "\\p{N}");
  v["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = qwen;
  variants.emplace_back("cl100k_qwen2_split", v);
  v = cl100k;
  v["model"]["ignore_merges"] = false;
  variants.emplace_back("cl100k_no_ignore_merges", v);

  std::mt19937_64 rng(seed);
  size_t tokens = 0;
  for (const auto& [name, j] : variants) {
    const std::string path = dir.file(name + ".json");
    write_json(path, j);
    const auto tok = Tokenizer::load(path);
    const ReferenceBpe ref(j);
    for (int i = 0; i < 100; ++i) {
      const std::string text = random_text(rng);
      std::vector<uint32_t> got;
      tok->encode(text, got);
      const auto want = ref.encode(text);
      ASSERT_EQ(show(got), show(want)) << name << ", text " << i << ": " << json(text).dump(-1, ' ', false, json::error_handler_t::replace);
      if (!j["pre_tokenizer"].value("add_prefix_space", false)) ASSERT_EQ(tok->decode(got), text) << name << ", text " << i;
      tokens += got.size();
    }
  }
  EXPECT_GT(tokens, 10000u);
}

TEST(ByteLevelBpe, ThreadsAndLongPiecesAgree) {
  const auto tok = Tokenizer::load(fixture("cl100k-4k.tokenizer.json"));
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) texts.push_back(random_text(rng));
  texts.push_back(std::string(200000, 'a'));  // one piece: the heap merge stays O(n log n)
  std::vector<std::vector<uint32_t>> want(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) tok->encode(texts[i], want[i]);
  EXPECT_EQ(tok->decode(want.back()), texts.back());
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 3; ++round)
        for (size_t i = t; i < texts.size() + t; ++i) {
          std::vector<uint32_t> got;
          tok->encode(texts[i % texts.size()], got);
          if (got != want[i % texts.size()]) mismatches[t]++;
        }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

TEST(ByteLevelBpe, UnsupportedOrMalformedFieldsAreNamed) {
  rdtest::TempDir dir;
  const json base = read_json(fixture("gpt2-4k.tokenizer.json"));
  const json cl = read_json(fixture("cl100k-4k.tokenizer.json"));
  struct Case {
    std::string field;
    std::function<void(json&)> edit;
  };
  const std::vector<Case> cases = {
      {"normalizer", [](json& j) { j["normalizer"] = {{"type", "NFC"}}; }},
      {"truncation", [](json& j) { j["truncation"] = {{"max_length", 512}}; }},
      {"model.type", [](json& j) { j["model"]["type"] = "WordPiece"; }},
      {"model.dropout", [](json& j) { j["model"]["dropout"] = 0.1; }},
      {"model.byte_fallback", [](json& j) { j["model"]["byte_fallback"] = true; }},
      {"model.continuing_subword_prefix", [](json& j) { j["model"]["continuing_subword_prefix"] = "##"; }},
      {"model.merges[7]", [](json& j) { j["model"]["merges"][7] = "Ġt nosuchtoken"; }},
      {"model.merges[3]", [](json& j) { j["model"]["merges"][3] = "abc"; }},
      {"model.vocab", [](json& j) { j["model"]["vocab"].erase("A"); }},
      {"pre_tokenizer.type", [](json& j) { j["pre_tokenizer"] = {{"type", "Metaspace"}}; }},
      {"pre_tokenizer", [](json& j) { j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", json::array()}}; }},
      {"pre_tokenizer.pretokenizers[0].pattern.Regex",
       [&](json& j) {
         j["pre_tokenizer"] = cl["pre_tokenizer"];
         j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+|\\s+";
       }},
      {"pre_tokenizer.pretokenizers[0].behavior",
       [&](json& j) {
         j["pre_tokenizer"] = cl["pre_tokenizer"];
         j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed";
       }},
      {"added_tokens[0].lstrip", [](json& j) { j["added_tokens"][0]["lstrip"] = true; }},
      {"decoder.type", [](json& j) { j["decoder"] = {{"type", "WordPiece"}}; }},
  };
  for (const Case& c : cases) {
    json j = base;
    c.edit(j);
    const std::string path = dir.file("bad.json");
    write_json(path, j);
    const Error e = rdtest::expect_error([&] { Tokenizer::load(path); });
    EXPECT_EQ(e.code(), ErrorCode::kCorruptData) << c.field;
    EXPECT_NE(std::string(e.what()).find("tokenizer.json field " + c.field + ":"), std::string::npos) << e.what();
  }
  rdtest::write_bytes(dir.file("notjson.json"), "{\"model\": ");
  EXPECT_EQ(rdtest::expect_error([&] { Tokenizer::load(dir.file("notjson.json")); }).code(), ErrorCode::kCorruptData);
  EXPECT_EQ(rdtest::expect_error([&] { Tokenizer::load(dir.file("missing.json")); }).code(), ErrorCode::kIo);
}

TEST(ByteLevelBpe, JsonlSourceTokenizesWithTokenizerJson) {
  rdtest::TempDir dir;
  const std::vector<std::string> texts = {"Hello world, it's me.", "日本語 テキスト 😀", "  spaces\n\nand lines  ", "<|endoftext|>x"};
  std::string content;
  for (const auto& t : texts) content += json({{"text", t}}).dump() + "\n";
  rdtest::write_bytes(dir.file("a.jsonl"), content);
  SourceConfig c;
  c.name = "web";
  c.format = SourceFormat::kJsonl;
  c.paths = {dir.file("a.jsonl")};
  c.tokenizer_model = fixture("gpt2-4k.tokenizer.json");
  c.index_cache = false;
  JsonlSource src(c, BadInputPolicy::kFail, true);
  const auto tok = Tokenizer::load(c.tokenizer_model);
  SkipCounters skips;
  for (size_t i = 0; i < texts.size(); ++i) {
    const Document d = src.read(i, skips);
    std::vector<uint32_t> want;
    tok->encode(texts[i], want);
    ASSERT_EQ(d.tokens.size, want.size());
    for (size_t k = 0; k < want.size(); ++k) EXPECT_EQ(d.tokens.at(k), int64_t{want[k]});
  }
  std::vector<uint32_t> eot;
  tok->encode(texts[3], eot);
  EXPECT_EQ(eot.front(), 50256u);  // the added token is matched in the text
}

}  // namespace
}  // namespace groupmates
