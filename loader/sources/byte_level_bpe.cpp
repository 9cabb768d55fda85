// byte_level_bpe.cpp: tokenizer.json reading (simdjson) and byte-level BPE encoding.
//
// Encoding, as Hugging Face tokenizers does it: added tokens are cut out of the text first; each
// remaining segment gets the optional prefix space, is split by the pre-tokenizer's regexes
// (pretokenizer.h), and each piece's bytes are merged: starting from one symbol per byte, the
// adjacent pair with the lowest merge rank (leftmost among equals) is merged until no pair has a
// merge (a heap of candidate pairs over a linked list of symbols, O(n log n) in the piece length,
// so a 1 MB run without spaces is fine). With ignore_merges a piece that is itself in the
// vocabulary is one token. Pieces up to 64 bytes are cached per thread.
#include "sources/byte_level_bpe.h"

#include <simdjson.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <optional>

#include "groupmates/error.h"
#include "sources/unicode_classes.h"

namespace groupmates {
namespace {

namespace dom = simdjson::dom;

constexpr size_t kMaxCachedPiece = 64;
constexpr size_t kCacheSlots = size_t{1} << 15;       // power of two
constexpr size_t kCacheMaxEntries = kCacheSlots / 2;  // then the cache starts over
constexpr size_t kMaxSplitStages = 4;

// GPT-2's bytes_to_unicode(): byte b is written in vocab and merges as the character byte_char[b].
struct ByteAlphabet {
  uint32_t byte_char[256];
  int16_t char_byte[512];  // -1: not in the alphabet
  ByteAlphabet() {
    std::fill(std::begin(char_byte), std::end(char_byte), int16_t{-1});
    bool printable[256] = {};
    for (int b = '!'; b <= '~'; ++b) printable[b] = true;
    for (int b = 0xA1; b <= 0xAC; ++b) printable[b] = true;
    for (int b = 0xAE; b <= 0xFF; ++b) printable[b] = true;
    uint32_t extra = 0;
    for (int b = 0; b < 256; ++b) {
      byte_char[b] = printable[b] ? static_cast<uint32_t>(b) : 256 + extra++;
      char_byte[byte_char[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteAlphabet& alphabet() {
  static const ByteAlphabet a;
  return a;
}

// A vocab/merges string in the byte alphabet -> the raw bytes, or nullopt if a character is not in
// the alphabet (such an entry can never be produced from text).
std::optional<std::string> alphabet_to_bytes(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0; i < s.size();) {
    const DecodedChar c = decode_char(p, s.size(), i);
    if (c.len == 1 && c.cp >= 0x80) return std::nullopt;  // invalid UTF-8
    if (c.cp >= 512 || alphabet().char_byte[c.cp] < 0) return std::nullopt;
    out.push_back(static_cast<char>(alphabet().char_byte[c.cp]));
    i += c.len;
  }
  return out;
}

std::string type_name(const dom::element& e) {
  switch (e.type()) {
    case dom::element_type::ARRAY: return "an array";
    case dom::element_type::OBJECT: {
      std::string_view t;
      if (!e.get_object().at_key("type").get_string().get(t)) return "an object of type \"" + std::string(t) + "\"";
      return "an object";
    }
    case dom::element_type::STRING: return "a string";
    case dom::element_type::BOOL: return "a boolean";
    case dom::element_type::NULL_VALUE: return "null";
    default: return "a number";
  }
}

// Field access with errors naming the tokenizer.json field.
class Reader {
 public:
  explicit Reader(std::string path) : path_(std::move(path)) {}

  [[noreturn]] void bad(const std::string& field, const std::string& what) const {
    throw Error(ErrorCode::kCorruptData, path_,
                "tokenizer.json field " + field + ": " + what +
                    " (groupmates reads byte-level BPE tokenizers: GPT-2, Llama 3, Qwen2 style; see README, Tokenizers)");
  }
  std::optional<dom::element> get(dom::object o, const char* key) const {
    dom::element e;
    if (o.at_key(key).get(e)) return std::nullopt;
    return e;
  }
  bool null_or_missing(dom::object o, const char* key) const {
    const auto e = get(o, key);
    return !e || e->is_null();
  }
  dom::object object(dom::object o, const char* key, const std::string& field) const {
    const auto e = get(o, key);
    if (!e) bad(field, "is missing");
    dom::object r;
    if (e->get_object().get(r)) bad(field, "is " + type_name(*e) + ", expected an object");
    return r;
  }
  dom::array array(dom::object o, const char* key, const std::string& field) const {
    const auto e = get(o, key);
    if (!e) bad(field, "is missing");
    dom::array r;
    if (e->get_array().get(r)) bad(field, "is " + type_name(*e) + ", expected an array");
    return r;
  }
  std::string_view string(dom::element e, const std::string& field) const {
    std::string_view s;
    if (e.get_string().get(s)) bad(field, "is " + type_name(e) + ", expected a string");
    return s;
  }
  std::string_view string(dom::object o, const char* key, const std::string& field) const {
    const auto e = get(o, key);
    if (!e) bad(field, "is missing");
    return string(*e, field);
  }
  bool boolean(dom::object o, const char* key, const std::string& field, bool dflt) const {
    const auto e = get(o, key);
    if (!e || e->is_null()) return dflt;
    bool b;
    if (e->get_bool().get(b)) bad(field, "is " + type_name(*e) + ", expected true or false");
    return b;
  }
  uint32_t id(dom::element e, const std::string& field) const {
    uint64_t v;
    if (e.get_uint64().get(v) || v >= (uint64_t{1} << 31)) bad(field, "is " + type_name(e) + ", expected a token id in [0, 2^31)");
    return static_cast<uint32_t>(v);
  }
  // A field that must be absent, null, false or "" (a feature this reader does not implement).
  void require_unset(dom::object o, const char* key, const std::string& field) const {
    const auto e = get(o, key);
    if (!e || e->is_null()) return;
    bool b;
    if (!e->get_bool().get(b) && !b) return;
    std::string_view s;
    if (!e->get_string().get(s) && s.empty()) return;
    bad(field, "is set (" + type_name(*e) + "); this feature is not supported: only null / false / \"\" is");
  }

 private:
  std::string path_;
};

struct PieceCache {
  struct Slot {
    uint64_t hash = 0;  // 0: empty
    uint32_t key_off, key_len, ids_off, ids_len;
  };
  uint64_t owner = 0;
  size_t entries = 0;
  std::vector<Slot> slots;
  std::string keys;
  std::vector<uint32_t> ids;

  void reset(uint64_t new_owner) {
    owner = new_owner;
    entries = 0;
    slots.assign(kCacheSlots, Slot());
    keys.clear();
    ids.clear();
  }
};

PieceCache& thread_cache(uint64_t owner) {
  thread_local PieceCache cache;
  if (cache.owner != owner) cache.reset(owner);
  return cache;
}

struct Symbol {
  uint32_t id;
  int32_t prev, next;
  bool alive;
};
struct Candidate {
  uint32_t rank, pos, id;
  // std heap is a max-heap: "less" means a later merge (higher rank, then further right).
  bool operator<(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

std::atomic<uint64_t> next_instance{1};

}  // namespace

ByteLevelBpe::~ByteLevelBpe() = default;

std::unique_ptr<ByteLevelBpe> ByteLevelBpe::load(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    throw Error(ErrorCode::kIo, path, std::string("cannot open tokenizer.json: ") + std::strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) throw Error(ErrorCode::kIo, path, "cannot open tokenizer.json: is a directory");
  simdjson::padded_string json;
  if (simdjson::padded_string::load(path).get(json)) {
    throw Error(ErrorCode::kIo, path, std::string("cannot read tokenizer.json: ") + std::strerror(errno));
  }
  dom::parser parser;
  dom::element root;
  if (const auto err = parser.parse(json).get(root)) {
    throw Error(ErrorCode::kCorruptData, path, std::string("not valid JSON: ") + simdjson::error_message(err) +
                                                  " (a Hugging Face tokenizer.json was expected)");
  }
  const Reader r(path);
  dom::object top;
  if (root.get_object().get(top)) r.bad("(top level)", "is " + type_name(root) + ", expected an object");

  std::unique_ptr<ByteLevelBpe> t(new ByteLevelBpe());
  t->path_ = path;
  t->instance_ = next_instance.fetch_add(1);
  for (const char* key : {"normalizer", "truncation", "padding"}) {
    if (!r.null_or_missing(top, key)) {
      r.bad(key, "is " + type_name(*r.get(top, key)) + "; only null is supported (no normalizer; no truncation or padding of documents)");
    }
  }
  if (!r.null_or_missing(top, "decoder")) {
    const dom::object d = r.object(top, "decoder", "decoder");
    const std::string_view type = r.string(d, "type", "decoder.type");
    if (type != "ByteLevel") r.bad("decoder.type", "is \"" + std::string(type) + "\"; only ByteLevel (or null) is supported");
  }

  // Pre-tokenizer: the split stages and exactly one ByteLevel.
  int byte_level_seen = 0;
  auto read_stage = [&](dom::object p, const std::string& field, bool first) {
    const std::string_view type = r.string(p, "type", field + ".type");
    if (type == "ByteLevel") {
      ++byte_level_seen;
      const bool aps = r.boolean(p, "add_prefix_space", field + ".add_prefix_space", false);
      if (aps && !first) r.bad(field + ".add_prefix_space", "is true on a ByteLevel after a Split; supported only on the first stage");
      t->add_prefix_space_ = t->add_prefix_space_ || aps;
      if (r.boolean(p, "use_regex", field + ".use_regex", true)) t->splits_.push_back(SplitPattern::kGpt2);
    } else if (type == "Split") {
      const dom::object pat = r.object(p, "pattern", field + ".pattern");
      const auto re = r.get(pat, "Regex");
      if (!re) r.bad(field + ".pattern", "has no \"Regex\"; only Regex patterns are supported");
      const std::string_view regex = r.string(*re, field + ".pattern.Regex");
      const auto sp = split_pattern_from_regex(regex);
      if (!sp) {
        r.bad(field + ".pattern.Regex", "is \"" + std::string(regex) +
                                           "\", not one of the supported split regexes (GPT-2, Llama-3/cl100k, Qwen2, spelled as in "
                                           "their tokenizer.json)");
      }
      const std::string_view behavior = r.string(p, "behavior", field + ".behavior");
      if (behavior != "Isolated") r.bad(field + ".behavior", "is \"" + std::string(behavior) + "\"; only Isolated is supported");
      if (r.boolean(p, "invert", field + ".invert", false)) r.bad(field + ".invert", "is true; only false is supported");
      t->splits_.push_back(*sp);
    } else {
      r.bad(field + ".type", "is \"" + std::string(type) + "\"; supported: ByteLevel, Split, or a Sequence of them");
    }
  };
  {
    const dom::object pre = r.object(top, "pre_tokenizer", "pre_tokenizer");
    const std::string_view type = r.string(pre, "type", "pre_tokenizer.type");
    if (type == "Sequence") {
      size_t k = 0;
      for (dom::element e : r.array(pre, "pretokenizers", "pre_tokenizer.pretokenizers")) {
        const std::string f = "pre_tokenizer.pretokenizers[" + std::to_string(k) + "]";
        dom::object o;
        if (e.get_object().get(o)) r.bad(f, "is " + type_name(e) + ", expected an object");
        read_stage(o, f, k == 0);
        ++k;
      }
    } else {
      read_stage(pre, "pre_tokenizer", true);
    }
    if (byte_level_seen != 1) {
      r.bad("pre_tokenizer", "has " + std::to_string(byte_level_seen) + " ByteLevel pre-tokenizers; a byte-level BPE needs exactly one");
    }
    if (t->splits_.size() > kMaxSplitStages) r.bad("pre_tokenizer", "has more than 4 regex splits");
  }

  // Model.
  const dom::object model = r.object(top, "model", "model");
  const std::string_view mtype = r.string(model, "type", "model.type");
  if (mtype != "BPE") r.bad("model.type", "is \"" + std::string(mtype) + "\"; only BPE is supported");
  r.require_unset(model, "dropout", "model.dropout");
  r.require_unset(model, "byte_fallback", "model.byte_fallback");
  r.require_unset(model, "continuing_subword_prefix", "model.continuing_subword_prefix");
  r.require_unset(model, "end_of_word_suffix", "model.end_of_word_suffix");
  t->ignore_merges_ = r.boolean(model, "ignore_merges", "model.ignore_merges", false);

  std::unordered_map<std::string, uint32_t> by_alphabet;  // vocab as written
  uint32_t max_id = 0;
  auto remember = [&](uint32_t id, std::string bytes) {
    if (id >= t->id_bytes_.size()) {
      t->id_bytes_.resize(id + 1);
      t->id_known_.resize(id + 1, false);
    }
    t->id_bytes_[id] = std::move(bytes);
    t->id_known_[id] = true;
    max_id = std::max(max_id, id);
  };
  for (auto kv : r.object(model, "vocab", "model.vocab")) {
    const std::string key(kv.key);
    const uint32_t id = r.id(kv.value, "model.vocab[\"" + key + "\"]");
    by_alphabet.emplace(key, id);
    auto bytes = alphabet_to_bytes(key);
    if (bytes) {
      t->vocab_.emplace(*bytes, id);
      remember(id, std::move(*bytes));
    } else {
      remember(id, key);  // never produced by merges; decodes as written
    }
  }
  for (int b = 0; b < 256; ++b) {
    std::string s;
    const uint32_t c = alphabet().byte_char[b];
    if (c < 0x80) s.push_back(static_cast<char>(c));
    else { s.push_back(static_cast<char>(0xC0 | (c >> 6))); s.push_back(static_cast<char>(0x80 | (c & 0x3F))); }
    const auto it = by_alphabet.find(s);
    if (it == by_alphabet.end()) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", b);
      r.bad("model.vocab", std::string("has no token for byte ") + hex + " (written \"" + s + "\"): not a byte-level vocabulary");
    }
    t->byte_ids_[b] = it->second;
  }
  {
    const dom::array merges = r.array(model, "merges", "model.merges");
    size_t n = 0;
    for (dom::element e : merges) { (void)e; ++n; }
    size_t cap = 16;
    while (cap < 2 * n + 16) cap <<= 1;
    t->merges_.assign(cap, MergeSlot{0, 0, 0});
    t->merge_mask_ = cap - 1;
    uint32_t rank = 0;
    for (dom::element e : merges) {
      const std::string f = "model.merges[" + std::to_string(rank) + "]";
      std::string left, right;
      std::string_view s;
      dom::array pair;
      if (!e.get_string().get(s)) {
        const size_t sp = s.find(' ');
        if (sp == std::string_view::npos || s.find(' ', sp + 1) != std::string_view::npos) {
          r.bad(f, "is \"" + std::string(s) + "\", expected two tokens separated by one space");
        }
        left = std::string(s.substr(0, sp));
        right = std::string(s.substr(sp + 1));
      } else if (!e.get_array().get(pair) && pair.size() == 2) {
        left = std::string(r.string(pair.at(0).value_unsafe(), f + "[0]"));
        right = std::string(r.string(pair.at(1).value_unsafe(), f + "[1]"));
      } else {
        r.bad(f, "is " + type_name(e) + ", expected \"a b\" or [\"a\", \"b\"]");
      }
      auto find = [&](const std::string& tok) {
        const auto it = by_alphabet.find(tok);
        if (it == by_alphabet.end()) r.bad(f, "names \"" + tok + "\", which is not in model.vocab");
        return it->second;
      };
      const uint32_t a = find(left), b = find(right), m = find(left + right);
      if (!t->find_merge(a, b)) t->add_merge(a, b, rank, m);  // the first (lowest-rank) duplicate wins
      ++rank;
    }
  }

  // Added tokens.
  if (!r.null_or_missing(top, "added_tokens")) {
    size_t k = 0;
    for (dom::element e : r.array(top, "added_tokens", "added_tokens")) {
      const std::string f = "added_tokens[" + std::to_string(k++) + "]";
      dom::object o;
      if (e.get_object().get(o)) r.bad(f, "is " + type_name(e) + ", expected an object");
      const auto ide = r.get(o, "id");
      if (!ide) r.bad(f + ".id", "is missing");
      const uint32_t id = r.id(*ide, f + ".id");
      const std::string content(r.string(o, "content", f + ".content"));
      if (content.empty()) r.bad(f + ".content", "is empty");
      for (const char* flag : {"single_word", "lstrip", "rstrip"}) {
        if (r.boolean(o, flag, f + "." + flag, false)) r.bad(f + "." + flag, "is true; only false is supported");
      }
      remember(id, content);
      t->added_.push_back({content, id});
      t->added_first_byte_[static_cast<unsigned char>(content[0])] = true;
    }
    std::stable_sort(t->added_.begin(), t->added_.end(),
                     [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
    for (const char* name : {"<|endoftext|>", "<|end_of_text|>", "</s>"}) {
      for (const AddedToken& a : t->added_) {
        if (t->eos_id_ < 0 && a.content == name) t->eos_id_ = static_cast<int32_t>(a.id);
      }
    }
  }
  (void)max_id;
  return t;
}

void ByteLevelBpe::add_merge(uint32_t left, uint32_t right, uint32_t rank, uint32_t id) {
  const uint64_t key = ((uint64_t{left} << 32) | right) + 1;
  uint64_t i = XXH3_64bits(&key, sizeof key) & merge_mask_;
  while (merges_[i].key != 0) i = (i + 1) & merge_mask_;
  merges_[i] = MergeSlot{key, rank, id};
}

const ByteLevelBpe::MergeSlot* ByteLevelBpe::find_merge(uint32_t left, uint32_t right) const {
  const uint64_t key = ((uint64_t{left} << 32) | right) + 1;
  uint64_t i = XXH3_64bits(&key, sizeof key) & merge_mask_;
  for (;;) {
    const MergeSlot& s = merges_[i];
    if (s.key == key) return &s;
    if (s.key == 0) return nullptr;
    i = (i + 1) & merge_mask_;
  }
}

void ByteLevelBpe::encode(std::string_view text, std::vector<uint32_t>& out) const {
  if (added_.empty()) {
    encode_segment(text, out);
    return;
  }
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (!added_first_byte_[static_cast<unsigned char>(text[i])]) continue;
    for (const AddedToken& a : added_) {  // longest first
      if (text.compare(i, a.content.size(), a.content) == 0) {
        encode_segment(text.substr(start, i - start), out);
        out.push_back(a.id);
        i += a.content.size();
        start = i;
        --i;
        break;
      }
    }
  }
  encode_segment(text.substr(start), out);
}

void ByteLevelBpe::encode_segment(std::string_view text, std::vector<uint32_t>& out) const {
  if (text.empty()) return;
  thread_local std::string prefixed;
  if (add_prefix_space_ && text[0] != ' ') {
    prefixed.assign(1, ' ');
    prefixed.append(text);
    text = prefixed;
  }
  thread_local std::vector<uint32_t> ends[kMaxSplitStages];
  // Depth-first over the split stages: stage k splits each piece of stage k - 1.
  struct Splitter {
    const ByteLevelBpe& bpe;
    std::vector<uint32_t>& out;
    void run(std::string_view piece, size_t stage) {
      if (stage >= bpe.splits_.size() || stage >= kMaxSplitStages) {  // load() allows at most kMaxSplitStages
        bpe.encode_piece(piece, out);
        return;
      }
      std::vector<uint32_t>& e = ends[stage];
      e.clear();
      pretokenize(bpe.splits_[stage], piece, e);
      uint32_t b = 0;
      for (size_t k = 0; k < e.size(); ++k) {  // e is not touched again at this stage by deeper calls
        run(piece.substr(b, e[k] - b), stage + 1);
        b = e[k];
      }
    }
  };
  Splitter{*this, out}.run(text, 0);
}

void ByteLevelBpe::encode_piece(std::string_view piece, std::vector<uint32_t>& out) const {
  if (piece.size() == 1) {
    out.push_back(byte_ids_[static_cast<unsigned char>(piece[0])]);
    return;
  }
  if (ignore_merges_) {
    thread_local std::string key;
    key.assign(piece);
    const auto it = vocab_.find(key);
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (piece.size() > kMaxCachedPiece) {
    merge_piece(piece, out);
    return;
  }
  PieceCache& c = thread_cache(instance_);
  const uint64_t h = XXH3_64bits(piece.data(), piece.size()) | 1;
  const size_t mask = kCacheSlots - 1;
  size_t i = h & mask;
  for (;; i = (i + 1) & mask) {
    const PieceCache::Slot& s = c.slots[i];
    if (s.hash == 0) break;
    if (s.hash == h && s.key_len == piece.size() && std::memcmp(c.keys.data() + s.key_off, piece.data(), piece.size()) == 0) {
      out.insert(out.end(), c.ids.begin() + s.ids_off, c.ids.begin() + s.ids_off + s.ids_len);
      return;
    }
  }
  const size_t before = out.size();
  merge_piece(piece, out);
  if (c.entries >= kCacheMaxEntries) {
    c.reset(instance_);
    i = h & mask;
    while (c.slots[i].hash != 0) i = (i + 1) & mask;
  }
  PieceCache::Slot& s = c.slots[i];
  s.hash = h;
  s.key_off = static_cast<uint32_t>(c.keys.size());
  s.key_len = static_cast<uint32_t>(piece.size());
  s.ids_off = static_cast<uint32_t>(c.ids.size());
  s.ids_len = static_cast<uint32_t>(out.size() - before);
  c.keys.append(piece);
  c.ids.insert(c.ids.end(), out.begin() + before, out.end());
  ++c.entries;
}

void ByteLevelBpe::merge_piece(std::string_view piece, std::vector<uint32_t>& out) const {
  thread_local std::vector<Symbol> sym;
  thread_local std::vector<Candidate> heap;
  const size_t n = piece.size();
  sym.resize(n);
  heap.clear();
  for (size_t k = 0; k < n; ++k) {
    sym[k] = Symbol{byte_ids_[static_cast<unsigned char>(piece[k])], static_cast<int32_t>(k) - 1,
                    k + 1 < n ? static_cast<int32_t>(k + 1) : -1, true};
  }
  for (size_t k = 0; k + 1 < n; ++k) {
    if (const MergeSlot* m = find_merge(sym[k].id, sym[k + 1].id)) heap.push_back({m->rank, static_cast<uint32_t>(k), m->id});
  }
  std::make_heap(heap.begin(), heap.end());
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& s = sym[top.pos];
    if (!s.alive || s.next < 0) continue;
    const int32_t r = s.next;
    const MergeSlot* m = find_merge(s.id, sym[r].id);
    if (m == nullptr || m->id != top.id || m->rank != top.rank) continue;  // stale: the pair changed
    s.id = top.id;
    s.next = sym[r].next;
    sym[r].alive = false;
    if (s.next >= 0) sym[s.next].prev = static_cast<int32_t>(top.pos);
    if (s.prev >= 0) {
      if (const MergeSlot* pm = find_merge(sym[s.prev].id, s.id)) {
        heap.push_back({pm->rank, static_cast<uint32_t>(s.prev), pm->id});
        std::push_heap(heap.begin(), heap.end());
      }
    }
    if (s.next >= 0) {
      if (const MergeSlot* nm = find_merge(s.id, sym[s.next].id)) {
        heap.push_back({nm->rank, top.pos, nm->id});
        std::push_heap(heap.begin(), heap.end());
      }
    }
  }
  for (int32_t k = 0; k >= 0; k = sym[k].next) out.push_back(sym[k].id);
}

std::string ByteLevelBpe::decode(const std::vector<uint32_t>& ids) const {
  std::string text;
  for (size_t i = 0; i < ids.size(); ++i) {
    const uint32_t id = ids[i];
    if (id >= id_bytes_.size() || !id_known_[id]) {
      throw Error(ErrorCode::kOutOfVocab, path_,
                  "decode: token id " + std::to_string(id) + " at position " + std::to_string(i) + " is not in the vocabulary");
    }
    text += id_bytes_[id];
  }
  return text;
}

}  // namespace groupmates
