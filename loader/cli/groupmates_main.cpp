// groupmates: command-line tool. `groupmates inspect PATH...` validates data files before a run;
// `groupmates reframe IN OUT` rewrites a JSONL file as small zstd frames (random access).
//
// Exit codes: 0 no problem found, 1 problems found (or a file cannot be opened), 2 usage error.
#include <algorithm>
#include <cstdio>
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
#include "sources/zstd_reframe.h"
#include "groupmates/tokenizer.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

namespace gm = groupmates;

namespace {

constexpr const char* kUsage =
    "usage: groupmates inspect [options] PATH...\n"
    "       groupmates reframe [--frame-bytes N] [--level L] IN OUT\n"
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
    "reframe: rewrites IN (.jsonl or .jsonl.zst) as OUT, zstd frames of ~N decompressed bytes cut\n"
    "at line ends (default 65536, level 3), so the loader can read any line by decompressing one\n"
    "small frame (a file written by `zstd` is one frame: it must fit the source's zstd_cache_bytes)\n"
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

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
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

gm::SourceConfig source_config(gm::SourceFormat format, const std::string& path) {
  gm::SourceConfig cfg;
  cfg.name = "inspect";
  cfg.format = format;
  cfg.paths = {path};
  return cfg;
}

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
  gm::MegatronSource src(source_config(gm::SourceFormat::kMegatron, prefix), gm::BadInputPolicy::kSkip);
  fmt::print("  format: megatron ({0}.idx + {0}.bin), dtype {1}, {2} sequences, {3} document indices, .bin {4} bytes\n",
             prefix, gm::megatron_dtype_name(src.dtype_code(0)), src.file_documents(0),
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
    fmt::print("  empty documents: {} (0 tokens; skipped and counted as empty_document unless eos_id is set)\n", empty);
  }
  for (const auto& l : show_lines) fmt::print("{}\n", l);
}

void inspect_token_file(const std::string& path, const Options& o, uint64_t vocab, const gm::Tokenizer* tok,
                        Report& r) {
  gm::MappedFile map(path, gm::MappedFile::Advice::kSequential);
  const bool wide = o.dtype == gm::TokenDtype::kUint32;
  const uint64_t w = wide ? 4 : 2;
  fmt::print("  format: flat token file, dtype {}, {} bytes\n", wide ? "uint32" : "uint16", map.size());
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
  fmt::print("  windows of {} tokens: {} (tail {} tokens)\n", win, all.size / win, all.size % win);
  for (uint64_t k = 0; k < o.show && k * win < all.size; k++) {
    const gm::TokenView v = all.slice(k * win, std::min(win, all.size - k * win));
    fmt::print("  window {} (token {}): {}\n", k, k * win, show_ids(v, tok));
  }
}

void inspect_jsonl(const std::string& path, const Options& o, uint64_t vocab, const gm::Tokenizer* tok,
                   Report& r) {
  gm::SourceConfig cfg = source_config(gm::SourceFormat::kJsonl, path);
  cfg.text_field = o.text_field;
  cfg.tokenizer_model = o.tokenizer_model;
  gm::JsonlSource src(cfg, gm::BadInputPolicy::kSkip, /*load_tokenizer=*/false);
  fmt::print("  format: jsonl{}, {} lines, text field \"{}\", private memory {:.1f} MiB{}\n",
             src.compressed(0) ? " (zstd)" : "", src.num_documents(), o.text_field,
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
  if (blank != 0) fmt::print("  blank lines: {} (skipped and counted as empty_line by the loader)\n", blank);
  for (const auto& l : show_lines) fmt::print("{}\n", l);
}

int inspect(const Options& o) {
  std::shared_ptr<gm::Tokenizer> tok;
  if (!o.tokenizer_model.empty()) {
    try {
      tok = gm::Tokenizer::load(o.tokenizer_model);
    } catch (const gm::Error& e) {
      fmt::print(stderr, "groupmates inspect: cannot load --tokenizer: {}\n", e.what());
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
    fmt::print("{}\n", path);
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
    if (counted_docs) fmt::print("  documents: {}\n", r.documents);
    if (f != Format::kJsonl || tok) fmt::print("  tokens: {}\n", r.tokens);
    if (r.tokens > 0) {
      fmt::print("  token ids: min {}, max {} ({})\n", r.min_id, r.max_id,
                 vocab != 0 ? fmt::format("vocab size {}", vocab) : "vocab size not checked: give --vocab-size or --tokenizer");
    }
    if (r.problems == 0) {
      fmt::print("  problems: none\n");
    } else {
      std::vector<std::string> counts;
      for (const auto& kv : r.problem_counts) counts.push_back(fmt::format("{} {}", kv.first, kv.second));
      fmt::print("  problems: {} ({})\n", r.problems, fmt::join(counts, ", "));
      for (const auto& l : r.listed) fmt::print("    {}\n", l);
      if (r.problems > r.listed.size()) fmt::print("    ... {} more\n", r.problems - r.listed.size());
    }
    std::fflush(stdout);
    total_docs += r.documents;
    total_tokens += r.tokens;
    total_problems += r.problems;
  }
  fmt::print("total: {} path(s), {} documents, {} tokens, {} problem(s)\n", o.paths.size(), total_docs, total_tokens,
             total_problems);
  return total_problems == 0 ? 0 : 1;
}

// A non-negative decimal integer (no sign, no 0x or octal, as the help says N).
const CLI::Validator kCount(
    [](std::string& v) {
      return !v.empty() && v.find_first_not_of("0123456789") == std::string::npos
                 ? std::string()
                 : "needs a non-negative integer, got '" + v + "'";
    },
    "N");

// The flags of `groupmates inspect` onto `o`.
void add_inspect_options(CLI::App& inspect, Options& o, std::string& dtype) {
  inspect.add_option("--dtype", dtype)->check(CLI::Validator(
      [](std::string& v) {
        return v == "uint16" || v == "uint32" ? std::string() : "--dtype must be uint16 or uint32, got '" + v + "'";
      },
      "uint16|uint32"));
  inspect.add_option("--vocab-size", o.vocab_size)->check(kCount);
  inspect.add_option("--tokenizer", o.tokenizer_model);
  inspect.add_option("--text-field", o.text_field)->check(CLI::Validator(
      [](std::string& v) { return v.empty() ? std::string("--text-field must not be empty") : std::string(); }, "F"));
  inspect.add_option("--show", o.show)->check(kCount);
  inspect.add_option("--window", o.window)->check(kCount)->check(CLI::Validator(
      [](std::string& v) { return v.find_first_not_of('0') == std::string::npos ? "--window must be > 0" : ""; }, ""));
  inspect.add_option("--max-listed", o.max_listed)->check(kCount);
  inspect.add_option("PATH", o.paths);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fmt::print(stderr, "{}", kUsage);
    return 2;
  }
  // Help is kUsage (CLI11's own help flags are off); CLI11 parses and rejects what is unknown.
  CLI::App app("groupmates: validates data files before a run", "groupmates");
  app.set_help_flag();
  bool help = false;
  app.add_flag("-h,--help", help);
  CLI::App* help_cmd = app.add_subcommand("help");
  CLI::App* inspect_cmd = app.add_subcommand("inspect");
  inspect_cmd->set_help_flag();
  bool inspect_help = false;
  inspect_cmd->add_flag("-h,--help", inspect_help);
  CLI::App* reframe_cmd = app.add_subcommand("reframe");
  reframe_cmd->set_help_flag();
  bool reframe_help = false;
  reframe_cmd->add_flag("-h,--help", reframe_help);
  uint64_t frame_bytes = gm::kDefaultReframeBytes;
  int level = 3;
  std::string reframe_in, reframe_out;
  reframe_cmd->add_option("--frame-bytes", frame_bytes);
  reframe_cmd->add_option("--level", level);
  reframe_cmd->add_option("IN", reframe_in);  // required, checked after --help
  reframe_cmd->add_option("OUT", reframe_out);
  app.require_subcommand(0, 1);
  Options o;
  std::string dtype = "uint16";
  add_inspect_options(*inspect_cmd, o, dtype);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const std::string what = inspect_cmd->parsed() ? "groupmates inspect" : reframe_cmd->parsed() ? "groupmates reframe" : "groupmates";
    fmt::print(stderr, "{}: {}\n\n{}", what, e.what(), kUsage);
    return 2;
  }
  if (help || help_cmd->parsed() || inspect_help || reframe_help) {
    fmt::print("{}", kUsage);
    return 0;
  }
  if (reframe_cmd->parsed()) {
    if (reframe_in.empty() || reframe_out.empty()) {
      fmt::print(stderr, "groupmates reframe: needs IN and OUT\n\n{}", kUsage);
      return 2;
    }
    try {
      const gm::ReframeResult r = gm::reframe_jsonl_zstd(reframe_in, reframe_out, frame_bytes, level);
      fmt::print("{}: {} frames, {} bytes of JSONL, {} -> {} bytes on disk\n", reframe_out, r.frames, r.decompressed_bytes,
                 r.input_bytes, r.output_bytes);
      return 0;
    } catch (const std::exception& e) {
      fmt::print(stderr, "groupmates reframe: {}\n", e.what());
      return 1;
    }
  }
  if (!inspect_cmd->parsed()) {  // options without a command
    fmt::print(stderr, "groupmates: no command\n\n{}", kUsage);
    return 2;
  }
  if (o.paths.empty()) {
    fmt::print(stderr, "groupmates inspect: inspect needs at least one PATH\n\n{}", kUsage);
    return 2;
  }
  o.dtype = dtype == "uint32" ? gm::TokenDtype::kUint32 : gm::TokenDtype::kUint16;
  try {
    return inspect(o);
  } catch (const std::exception& e) {
    fmt::print(stderr, "groupmates inspect: {}\n", e.what());
    return 1;
  }
}
