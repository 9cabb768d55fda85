// groupmates: command-line tool. `groupmates inspect PATH...` validates data files before a run.
//
// Exit codes: 0 no problem found, 1 problems found (or a file cannot be opened), 2 usage error.
#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "groupmates/config.h"
#include "groupmates/error.h"
#include "sources/jsonl_source.h"
#include "sources/mapped_file.h"
#include "sources/megatron_source.h"
#include "groupmates/tokenizer.h"

namespace gm = groupmates;

namespace {

constexpr const char* kUsage =
    "usage: groupmates inspect [options] PATH...\n"
    "       groupmates --help\n"
    "\n"
    "inspect: validates data files and prints what they hold (documents, tokens, id range,\n"
    "problems, first documents). The format is detected from each PATH:\n"
    "  PREFIX.bin / PREFIX.idx / PREFIX  Megatron-LM indexed dataset, if PREFIX.idx exists\n"
    "  *.jsonl, *.jsonl.zst, *.zst       JSONL, one JSON object per line (zstd-compressed or not)\n"
    "  anything else                     flat little-endian token file (see --dtype)\n"
    "\n"
    "options:\n"
    "  --dtype uint16|uint32   token width of flat token files (default uint16)\n"
    "  --vocab-size N          report token ids outside [0, N) (default: the tokenizer's vocab size)\n"
    "  --tokenizer MODEL       SentencePiece .model: tokenizes JSONL text, decodes shown documents\n"
    "  --text-field F          JSONL field holding the text (default \"text\")\n"
    "  --show N                print the first N documents (flat files: windows) (default 3)\n"
    "  --window N              tokens per shown window of a flat token file (default 32)\n"
    "  --max-listed N          problems listed in detail per path (default 10)\n"
    "  -h, --help              this help\n"
    "\n"
    "exit status: 0 no problem, 1 problems found, 2 usage error\n";

struct Options {
  gm::TokenDtype dtype = gm::TokenDtype::kUint16;
  uint64_t vocab_size = 0;
  std::string tokenizer_model;
  std::string text_field = "text";
  uint64_t show = 3;
  uint64_t window = 32;
  uint64_t max_listed = 10;
  std::vector<std::string> paths;
};

struct UsageError {
  std::string message;
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

uint64_t parse_count(const std::string& flag, const std::string& value) {
  if (value.empty() || value[0] == '-') throw UsageError{flag + " needs a non-negative integer, got '" + value + "'"};
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(value.c_str(), &end, 10);
  if (errno != 0 || end == value.c_str() || *end != '\0') {
    throw UsageError{flag + " needs a non-negative integer, got '" + value + "'"};
  }
  return v;
}

// Per-path findings.
struct Report {
  uint64_t documents = 0;
  uint64_t tokens = 0;
  int64_t min_id = std::numeric_limits<int64_t>::max();
  int64_t max_id = std::numeric_limits<int64_t>::min();
  uint64_t problems = 0;
  std::map<std::string, uint64_t> problem_counts;  // kind -> count
  std::vector<std::string> listed;                 // first few problems in detail
  uint64_t max_listed = 10;

  void problem(const std::string& kind, const std::string& detail, uint64_t n = 1) {
    problems += n;
    problem_counts[kind] += n;
    if (listed.size() < max_listed) listed.push_back(detail);
  }
};

// Scans ids: min/max, negative and >= vocab ids as problems. `where(k)` locates token k.
template <typename T, typename Where>
void scan_tokens(const T* p, uint64_t n, uint64_t vocab, Report& r, Where where) {
  int64_t lo = r.min_id, hi = r.max_id;
  uint64_t bad = 0;
  for (uint64_t k = 0; k < n; k++) {
    const int64_t id = static_cast<int64_t>(p[k]);
    lo = std::min(lo, id);
    hi = std::max(hi, id);
    if (id < 0 || (vocab != 0 && static_cast<uint64_t>(id) >= vocab)) {
      if (r.listed.size() < r.max_listed) {
        r.problem("out_of_vocab", where(k) + ": token id " + std::to_string(id) +
                                      (vocab != 0 ? " outside [0, " + std::to_string(vocab) + ")" : " is negative"));
      } else {
        bad++;  // counted without building a message
      }
    }
  }
  if (bad != 0) {
    r.problems += bad;
    r.problem_counts["out_of_vocab"] += bad;
  }
  r.min_id = lo;
  r.max_id = hi;
  r.tokens += n;
}

template <typename Where>
void scan_view(const gm::TokenView& v, uint64_t vocab, Report& r, Where where) {
  switch (v.width) {
    case gm::TokenWidth::kU8: scan_tokens(static_cast<const uint8_t*>(v.data), v.size, vocab, r, where); break;
    case gm::TokenWidth::kU16: scan_tokens(static_cast<const uint16_t*>(v.data), v.size, vocab, r, where); break;
    case gm::TokenWidth::kI16: scan_tokens(static_cast<const int16_t*>(v.data), v.size, vocab, r, where); break;
    case gm::TokenWidth::kU32: scan_tokens(static_cast<const uint32_t*>(v.data), v.size, vocab, r, where); break;
    case gm::TokenWidth::kI32: scan_tokens(static_cast<const int32_t*>(v.data), v.size, vocab, r, where); break;
    case gm::TokenWidth::kI64: scan_tokens(static_cast<const int64_t*>(v.data), v.size, vocab, r, where); break;
  }
}

std::string printable(const std::string& s, size_t max_chars = 240) {
  std::string out;
  for (size_t i = 0; i < s.size() && out.size() < max_chars; i++) {
    const char c = s[i];
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (c == '"') out += "\\\"";
    else out += c;
  }
  if (out.size() >= max_chars) {
    // Do not cut a UTF-8 sequence in half.
    while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0x80) out.pop_back();
    if (!out.empty() && (static_cast<unsigned char>(out.back()) & 0x80)) out.pop_back();
    out += "...";
  }
  return out;
}

// "[1, 2, 3, ...]" of the first few ids, plus the decoded text when a tokenizer is given.
std::string show_ids(const gm::TokenView& v, const gm::Tokenizer* tok) {
  std::string s = "[";
  const uint64_t n = std::min<uint64_t>(v.size, 16);
  for (uint64_t k = 0; k < n; k++) s += (k ? ", " : "") + std::to_string(v.at(k));
  if (v.size > n) s += ", ...";
  s += "]";
  if (tok != nullptr) {
    std::vector<uint32_t> ids;
    const uint64_t m = std::min<uint64_t>(v.size, 512);
    for (uint64_t k = 0; k < m; k++) {
      const int64_t id = v.at(k);
      if (id < 0 || static_cast<uint64_t>(id) >= tok->vocab_size()) return s + " (not decoded: id " + std::to_string(id) + " outside the tokenizer's vocabulary)";
      ids.push_back(static_cast<uint32_t>(id));
    }
    try {
      s += " \"" + printable(tok->decode(ids)) + "\"";
    } catch (const std::exception& e) {
      s += std::string(" (not decoded: ") + e.what() + ")";
    }
  }
  return s;
}

enum class Format { kMegatron, kJsonl, kTokenFile };

Format detect(const std::string& path, std::string* prefix) {
  if (ends_with(path, ".jsonl") || ends_with(path, ".zst")) return Format::kJsonl;
  std::string p = path;
  if (ends_with(path, ".bin") || ends_with(path, ".idx")) p = path.substr(0, path.size() - 4);
  if (gm::file_exists(p + ".idx") || ends_with(path, ".idx")) {
    *prefix = p;
    return Format::kMegatron;
  }
  return Format::kTokenFile;
}

void inspect_megatron(const std::string& prefix, const Options& o, uint64_t vocab, const gm::Tokenizer* tok,
                      Report& r) {
  gm::SourceConfig cfg;
  cfg.name = "inspect";
  cfg.format = gm::SourceFormat::kMegatron;
  cfg.paths = {prefix};
  gm::MegatronSource src(cfg, gm::BadInputPolicy::kSkip);
  std::printf("  format: megatron (%s.idx + %s.bin), dtype %s, %" PRIu64 " sequences, %" PRIu64
              " document indices, .bin %" PRIu64 " bytes\n",
              prefix.c_str(), prefix.c_str(), gm::megatron_dtype_name(src.dtype_code(0)), src.file_documents(0),
              src.file_document_index_count(0), src.bin_size(0));
  gm::SkipCounters skips;
  uint64_t shown = 0, empty = 0;
  r.documents = src.num_documents();
  std::vector<std::string> show_lines;
  const uint64_t w = gm::token_width_bytes(src.width(0));
  for (uint64_t i = 0; i < src.num_documents(); i++) {
    std::string reason;
    const std::string what = src.check(i, &reason);
    if (!what.empty()) {
      r.problem(reason, src.locate(i) + ": " + what);
      continue;
    }
    const gm::Document d = src.read(i, skips);
    if (d.tokens.size == 0) empty++;
    const int64_t base = src.entry(i).pointer;
    scan_view(d.tokens, vocab, r, [&](uint64_t k) {
      return src.prefix(0) + ".bin:byte " + std::to_string(base + static_cast<int64_t>(k * w)) + " (document " +
             std::to_string(i) + ", token " + std::to_string(k) + ")";
    });
    if (shown < o.show) {
      show_lines.push_back("  document " + std::to_string(i) + " (" + std::to_string(d.tokens.size) +
                           " tokens): " + show_ids(d.tokens, tok));
      shown++;
    }
  }
  if (empty != 0) {
    std::printf("  empty documents: %" PRIu64 " (0 tokens; skipped and counted as empty_document unless eos_id is set)\n",
                empty);
  }
  for (const auto& l : show_lines) std::printf("%s\n", l.c_str());
}

void inspect_token_file(const std::string& path, const Options& o, uint64_t vocab, const gm::Tokenizer* tok,
                        Report& r) {
  gm::MappedFile map(path, gm::MappedFile::Advice::kSequential);
  const bool wide = o.dtype == gm::TokenDtype::kUint32;
  const uint64_t w = wide ? 4 : 2;
  std::printf("  format: flat token file, dtype %s, %" PRIu64 " bytes\n", wide ? "uint32" : "uint16", map.size());
  if (map.empty()) {
    r.problem("empty_file", path + ": file is empty (0 tokens); remove it from the source");
    return;
  }
  if (map.size() % w != 0) {
    r.problem("bad_size", path + ": size " + std::to_string(map.size()) + " is not a multiple of " +
                              std::to_string(w) + " bytes; wrong --dtype or truncated file");
    return;
  }
  gm::TokenView all;
  all.data = map.data();
  all.size = map.size() / w;
  all.width = wide ? gm::TokenWidth::kU32 : gm::TokenWidth::kU16;
  scan_view(all, vocab, r, [&](uint64_t k) {
    return path + ":byte " + std::to_string(k * w) + " (token " + std::to_string(k) + ")";
  });
  const uint64_t win = std::max<uint64_t>(o.window, 1);
  std::printf("  windows of %" PRIu64 " tokens: %" PRIu64 " (tail %" PRIu64 " tokens)\n", win, all.size / win,
              all.size % win);
  for (uint64_t k = 0; k < o.show && k * win < all.size; k++) {
    const gm::TokenView v = all.slice(k * win, std::min(win, all.size - k * win));
    std::printf("  window %" PRIu64 " (token %" PRIu64 "): %s\n", k, k * win, show_ids(v, tok).c_str());
  }
}

void inspect_jsonl(const std::string& path, const Options& o, uint64_t vocab, const gm::Tokenizer* tok,
                   Report& r) {
  gm::SourceConfig cfg;
  cfg.name = "inspect";
  cfg.format = gm::SourceFormat::kJsonl;
  cfg.paths = {path};
  cfg.text_field = o.text_field;
  cfg.tokenizer_model = o.tokenizer_model;
  gm::JsonlSource src(cfg, gm::BadInputPolicy::kSkip, /*load_tokenizer=*/false);
  std::printf("  format: jsonl%s, %" PRIu64 " lines, text field \"%s\", private memory %.1f MiB%s\n",
              src.compressed(0) ? " (zstd, decompressed in memory)" : "", src.num_documents(), o.text_field.c_str(),
              static_cast<double>(src.memory_bytes()) / (1 << 20), tok ? "" : "; no --tokenizer: tokens not counted");
  uint64_t blank = 0, shown = 0;
  std::string text, detail;
  std::vector<uint32_t> ids;
  std::vector<std::string> show_lines;
  for (uint64_t i = 0; i < src.num_documents(); i++) {
    const auto p = src.text(i, &text, &detail);
    if (p == gm::JsonlSource::Problem::kEmptyLine) {
      blank++;
      continue;
    }
    if (p != gm::JsonlSource::Problem::kNone) {
      r.problem(gm::JsonlSource::problem_key(p), src.locate(i) + ": " + detail);
      continue;
    }
    r.documents++;
    if (tok != nullptr) {
      ids.clear();
      tok->encode(text, ids);
      if (ids.empty()) {
        r.problem("empty_text", src.locate(i) + ": text tokenizes to 0 tokens");
        continue;
      }
      gm::TokenView v;
      v.data = ids.data();
      v.size = ids.size();
      v.width = gm::TokenWidth::kU32;
      scan_view(v, vocab, r, [&](uint64_t k) { return src.locate(i) + " (token " + std::to_string(k) + ")"; });
    }
    if (shown < o.show) {
      std::string line = "  document " + std::to_string(i) + " (" + src.locate(i) + ", " +
                         std::to_string(text.size()) + " bytes";
      if (tok != nullptr) line += ", " + std::to_string(ids.size()) + " tokens";
      line += "): \"" + printable(text) + "\"";
      show_lines.push_back(line);
      shown++;
    }
  }
  if (blank != 0) std::printf("  blank lines: %" PRIu64 " (skipped and counted as empty_line by the loader)\n", blank);
  for (const auto& l : show_lines) std::printf("%s\n", l.c_str());
}

int inspect(const Options& o) {
  std::shared_ptr<gm::Tokenizer> tok;
  if (!o.tokenizer_model.empty()) {
    try {
      tok = gm::Tokenizer::load(o.tokenizer_model);
    } catch (const gm::Error& e) {
      std::fprintf(stderr, "groupmates inspect: cannot load --tokenizer: %s\n", e.what());
      return 2;
    }
  }
  const uint64_t vocab = o.vocab_size != 0 ? o.vocab_size : (tok ? tok->vocab_size() : 0);
  uint64_t total_docs = 0, total_tokens = 0, total_problems = 0;
  for (const std::string& path : o.paths) {
    Report r;
    r.max_listed = o.max_listed;
    std::string prefix;
    const Format f = detect(path, &prefix);
    std::printf("%s\n", path.c_str());
    std::fflush(stdout);
    bool counted_docs = true;
    try {
      switch (f) {
        case Format::kMegatron: inspect_megatron(prefix, o, vocab, tok.get(), r); break;
        case Format::kJsonl: inspect_jsonl(path, o, vocab, tok.get(), r); break;
        case Format::kTokenFile:
          inspect_token_file(path, o, vocab, tok.get(), r);
          counted_docs = false;
          break;
      }
    } catch (const gm::Error& e) {
      r.problem(gm::error_code_name(e.code()), e.what());
    }
    if (counted_docs) std::printf("  documents: %" PRIu64 "\n", r.documents);
    if (f != Format::kJsonl || tok) std::printf("  tokens: %" PRIu64 "\n", r.tokens);
    if (r.tokens > 0) {
      std::printf("  token ids: min %" PRId64 ", max %" PRId64, r.min_id, r.max_id);
      if (vocab != 0) std::printf(" (vocab size %" PRIu64 ")", vocab);
      else std::printf(" (vocab size not checked: give --vocab-size or --tokenizer)");
      std::printf("\n");
    }
    if (r.problems == 0) {
      std::printf("  problems: none\n");
    } else {
      std::printf("  problems: %" PRIu64 " (", r.problems);
      bool first = true;
      for (const auto& kv : r.problem_counts) {
        std::printf("%s%s %" PRIu64, first ? "" : ", ", kv.first.c_str(), kv.second);
        first = false;
      }
      std::printf(")\n");
      for (const auto& l : r.listed) std::printf("    %s\n", l.c_str());
      if (r.problems > r.listed.size()) {
        std::printf("    ... %" PRIu64 " more\n", r.problems - r.listed.size());
      }
    }
    std::fflush(stdout);
    total_docs += r.documents;
    total_tokens += r.tokens;
    total_problems += r.problems;
  }
  std::printf("total: %zu path(s), %" PRIu64 " documents, %" PRIu64 " tokens, %" PRIu64 " problem(s)\n",
              o.paths.size(), total_docs, total_tokens, total_problems);
  return total_problems == 0 ? 0 : 1;
}

Options parse_inspect(int argc, char** argv) {
  Options o;
  for (int i = 2; i < argc; i++) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      const size_t eq = a.find('=');
      if (a.rfind("--", 0) == 0 && eq != std::string::npos) return a.substr(eq + 1);
      if (i + 1 >= argc) throw UsageError{a + " needs a value"};
      return argv[++i];
    };
    const std::string name = a.substr(0, a.find('='));
    if (a == "-h" || a == "--help") {
      throw UsageError{""};
    } else if (name == "--dtype") {
      const std::string v = value();
      if (v == "uint16") o.dtype = gm::TokenDtype::kUint16;
      else if (v == "uint32") o.dtype = gm::TokenDtype::kUint32;
      else throw UsageError{"--dtype must be uint16 or uint32, got '" + v + "'"};
    } else if (name == "--vocab-size") {
      o.vocab_size = parse_count(name, value());
    } else if (name == "--tokenizer") {
      o.tokenizer_model = value();
    } else if (name == "--text-field") {
      o.text_field = value();
      if (o.text_field.empty()) throw UsageError{"--text-field must not be empty"};
    } else if (name == "--show") {
      o.show = parse_count(name, value());
    } else if (name == "--window") {
      o.window = parse_count(name, value());
      if (o.window == 0) throw UsageError{"--window must be > 0"};
    } else if (name == "--max-listed") {
      o.max_listed = parse_count(name, value());
    } else if (a == "--") {
      for (i++; i < argc; i++) o.paths.push_back(argv[i]);
    } else if (a.size() > 1 && a[0] == '-') {
      throw UsageError{"unknown option '" + a + "'"};
    } else {
      o.paths.push_back(a);
    }
  }
  if (o.paths.empty()) throw UsageError{"inspect needs at least one PATH"};
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "%s", kUsage);
    return 2;
  }
  const std::string cmd = argv[1];
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    std::printf("%s", kUsage);
    return 0;
  }
  if (cmd != "inspect") {
    std::fprintf(stderr, "groupmates: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
    return 2;
  }
  Options o;
  try {
    o = parse_inspect(argc, argv);
  } catch (const UsageError& e) {
    if (e.message.empty()) {
      std::printf("%s", kUsage);
      return 0;
    }
    std::fprintf(stderr, "groupmates inspect: %s\n\n%s", e.message.c_str(), kUsage);
    return 2;
  }
  try {
    return inspect(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "groupmates inspect: %s\n", e.what());
    return 1;
  }
}
