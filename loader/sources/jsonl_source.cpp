// JSONL documents: plain (mmap) or zstd (decompressed in memory), parsed with simdjson and
// tokenized (SentencePiece or tokenizer.json: groupmates/tokenizer.h). Also open_document_source(), the kMegatron / kJsonl dispatcher.
#include "sources/jsonl_source.h"

#include <simdjson.h>
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <set>

#include "groupmates/error.h"
#include "sources/line_index.h"
#include "sources/line_index_cache.h"
#include "sources/mapped_file.h"
#include "sources/megatron_source.h"
#include "groupmates/tokenizer.h"

namespace groupmates {
namespace {

constexpr const char* kSkipHint = "or set bad_input=skip to skip and count such records";

bool ends_with(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

bool is_blank(std::string_view s) {
  for (char c : s) {
    if (c != ' ' && c != '\t' && c != '\r' && c != '\f' && c != '\v') return false;
  }
  return true;
}

// Byte offset of the first invalid UTF-8 sequence in s (s is known to be invalid), for messages.
size_t first_invalid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    size_t len;
    uint32_t cp;
    if (c < 0x80) { i++; continue; }
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else return i;
    if (i + len > n) return i;
    for (size_t k = 1; k < len; k++) {
      if ((p[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return i;
    }
    i += len;
  }
  return n;
}

const char* json_type_name(simdjson::dom::element_type t) {
  using T = simdjson::dom::element_type;
  switch (t) {
    case T::ARRAY: return "an array";
    case T::OBJECT: return "an object";
    case T::INT64: case T::UINT64: case T::DOUBLE: return "a number";
    case T::STRING: return "a string";
    case T::BOOL: return "a boolean";
    case T::NULL_VALUE: return "null";
  }
  return "not a string";
}

// One parser and one padded copy buffer per thread: the line may end at the end of the map,
// where simdjson's read-ahead padding is not available.
simdjson::dom::parser& thread_parser() {
  thread_local simdjson::dom::parser parser;
  return parser;
}
std::vector<char>& thread_padded() {
  thread_local std::vector<char> padded;
  return padded;
}

// After a line over 1 MiB is used up: frees this thread's parser and buffer, so a thread keeps no
// high-water mark of the largest line it ever parsed.
void release_large_line_buffers(size_t line_bytes) {
  if (line_bytes <= (size_t{1} << 20)) return;
  thread_parser() = simdjson::dom::parser();
  std::vector<char>().swap(thread_padded());
}

}  // namespace

struct JsonlSource::File {
  std::string path;
  uint32_t number = 0;              // index in files_
  uint64_t disk_size = 0;
  bool compressed = false;
  std::unique_ptr<MappedFile> map;  // plain files
  LineIndex index;                  // line starts (decompressed coordinates) and zstd frames
};

// The bytes of one line: a view into a plain file's map, into a cached frame, or into `joined`
// (a line across zstd frames); `owner` keeps a frame alive while the view is used.
struct JsonlSource::LineBytes {
  std::string_view bytes;
  FrameCache::Block owner;
  std::string joined;
};

const char* JsonlSource::problem_key(Problem p) {
  switch (p) {
    case Problem::kNone: return "";
    case Problem::kEmptyLine: return "empty_line";
    case Problem::kInvalidJson: return "invalid_json";
    case Problem::kInvalidUtf8: return "invalid_utf8";
    case Problem::kMissingField: return "missing_field";
    case Problem::kEmptyText: return "empty_text";
    case Problem::kLineTooLong: return "line_too_long";
  }
  return "unknown";
}

JsonlSource::JsonlSource(const SourceConfig& config, BadInputPolicy policy, bool load_tokenizer)
    : source_name_(config.name.empty() ? "jsonl" : config.name), text_field_(config.text_field), max_line_bytes_(config.max_line_bytes), policy_(policy) {
  if (config.paths.empty()) {
    throw Error(ErrorCode::kInvalidConfig, "", "source '" + source_name_ + "': paths is empty; list .jsonl / .jsonl.zst files");
  }
  if (text_field_.empty()) {
    throw Error(ErrorCode::kInvalidConfig, "", "source '" + source_name_ + "': text_field is empty; set it to the JSON field holding the text");
  }
  if (load_tokenizer) {
    if (config.tokenizer_model.empty()) {
      throw Error(ErrorCode::kInvalidConfig, "",
                  "source '" + source_name_ + "': tokenizer_model is empty; a JSONL source needs a SentencePiece .model file or a tokenizer.json");
    }
    tokenizer_ = Tokenizer::load(config.tokenizer_model);
    tokenizer_model_ = config.tokenizer_model;
  }
  cache_ = std::make_unique<FrameCache>(config.zstd_cache_bytes);
  std::string fp = "jsonl\n" + text_field_ + "\n", legacy = fp;  // fp by content; legacy (version 1) with paths
  first_line_.push_back(0);
  for (const std::string& path : config.paths) {
    auto f = std::make_unique<File>();
    f->path = path;
    auto map = std::make_unique<MappedFile>(path, MappedFile::Advice::kSequential);
    f->disk_size = map->size();
    const uint64_t content_hash = map->sampled_hash();  // of the file on disk (compressed or not)
    if (map->empty()) {
      throw Error(ErrorCode::kCorruptData, path, "file is empty (0 records); remove it from the source's paths");
    }
    static const unsigned char kZstdMagic[4] = {0x28, 0xB5, 0x2F, 0xFD};
    const bool has_magic = map->size() >= 4 && std::memcmp(map->data(), kZstdMagic, 4) == 0;
    if (ends_with(path, ".zst") && !has_magic) {
      throw Error(ErrorCode::kCorruptData, path,
                  "name ends in .zst but the file does not start with the zstd magic bytes; recompress it with zstd or rename it");
    }
    f->number = static_cast<uint32_t>(files_.size());
    f->compressed = has_magic;
    if (has_magic) map.reset();
    // The line index: from the cache when valid for the file's content, else built (and cached).
    const LineIndexKey key = line_index_key(path, content_hash, has_magic);
    const std::string cache_path = config.index_cache ? line_index_cache_path(path, config.index_cache_dir) : "";
    std::optional<LineIndex> cached;
    IndexCacheOutcome outcome = IndexCacheOutcome::kNoCache;
    std::string problem;
    if (!cache_path.empty()) cached = load_line_index(cache_path, key, &outcome, &problem);
    if (cached) {
      f->index = std::move(*cached);
      if (has_magic) check_frames_fit(path, f->index, cache_->budget_bytes());
    } else if (has_magic) {
      f->index = index_zstd_lines(path, cache_->budget_bytes());
    } else {
      map->advise(MappedFile::Advice::kSequential);
      f->index = index_plain_lines(map->data(), map->size());
    }
    if (!cached && !cache_path.empty() && f->index.size > 0 && !save_line_index(cache_path, key, f->index, &problem)) {
      outcome = IndexCacheOutcome::kNoCache;  // could not be written: reported below
    }
    index_cache_.count(outcome, cache_path.empty() ? path : cache_path, problem);
    if (map) {
      map->advise(MappedFile::Advice::kRandom);  // documents are then read in shuffled order
      f->map = std::move(map);
    }
    if (f->index.size == 0) {
      throw Error(ErrorCode::kCorruptData, path, "file decompresses to 0 bytes (0 records); remove it from the source's paths");
    }
    const std::string content = std::to_string(f->disk_size) + " " + std::to_string(f->index.size) + " " +
                                std::to_string(f->index.starts.size()) + " " + std::to_string(content_hash) + "\n";
    fp += content;
    legacy += path;
    legacy += '\0';
    legacy += content;
    data_files_.push_back({path, f->disk_size, content_hash});
    first_line_.push_back(first_line_.back() + f->index.starts.size());
    files_.push_back(std::move(f));
  }
  fingerprint_ = XXH3_64bits(fp.data(), fp.size());
  path_fingerprint_ = XXH3_64bits(legacy.data(), legacy.size());
  if (config.index_cache) {
    const std::string report = index_cache_.report();
    if (!report.empty()) std::fprintf(stderr, "groupmates: source '%s': %s\n", source_name_.c_str(), report.c_str());
  }
}

JsonlSource::~JsonlSource() = default;

uint64_t JsonlSource::num_documents() const { return first_line_.back(); }

std::pair<const JsonlSource::File*, uint64_t> JsonlSource::find(uint64_t i) const {
  if (i >= num_documents()) {
    throw Error(ErrorCode::kInternal, "",
                "record " + std::to_string(i) + " out of range (" + std::to_string(num_documents()) + " records)");
  }
  const auto it = std::upper_bound(first_line_.begin(), first_line_.end(), i);
  const size_t f = static_cast<size_t>(it - first_line_.begin() - 1);
  return {files_[f].get(), i - first_line_[f]};
}

JsonlSource::LineBytes JsonlSource::bytes(uint64_t i) const {
  const auto fk = find(i);
  const File& f = *fk.first;
  auto [b, e] = f.index.range(fk.second);
  LineBytes out;
  if (!f.compressed) {
    out.bytes = std::string_view(f.map->data() + b, e - b);
  } else if (e > b) {
    size_t k = f.index.frame_of(b);
    const ZstdFrame& first = f.index.frames[k];
    if (e <= first.offset + first.size) {
      out.owner = cache_->get(f.number, f.path, f.index, k);
      out.bytes = std::string_view(out.owner->data() + (b - first.offset), e - b);
    } else {  // the line crosses frames
      out.joined.reserve(e - b);
      for (uint64_t pos = b; pos < e; k++) {
        const ZstdFrame& fr = f.index.frames[k];
        const FrameCache::Block blk = cache_->get(f.number, f.path, f.index, k);
        const uint64_t end = std::min(e, fr.offset + fr.size);
        out.joined.append(blk->data() + (pos - fr.offset), end - pos);
        pos = end;
      }
      out.bytes = out.joined;
    }
  }
  if (!out.bytes.empty() && out.bytes.back() == '\r') out.bytes.remove_suffix(1);
  return out;
}

std::string JsonlSource::line(uint64_t i) const {
  const LineBytes b = bytes(i);
  return std::string(b.bytes);
}

std::string JsonlSource::locate(uint64_t i) const {
  const auto fk = find(i);
  return fk.first->path + ":line " + std::to_string(fk.second + 1);
}

JsonlSource::Problem JsonlSource::parse(std::string_view raw, std::string_view* text, std::string* detail) const {
  auto say = [&](Problem p, const std::string& what) {
    if (detail != nullptr) *detail = what;
    return p;
  };
  if (raw.size() > max_line_bytes_) {
    return say(Problem::kLineTooLong, "the line is " + std::to_string(raw.size()) + " bytes, over max_line_bytes = " +
                                          std::to_string(max_line_bytes_) + " (one line costs ~70x its size in memory)");
  }
  if (is_blank(raw)) return say(Problem::kEmptyLine, "blank line");
  if (!simdjson::validate_utf8(raw.data(), raw.size())) {
    return say(Problem::kInvalidUtf8,
               "invalid UTF-8 at byte " + std::to_string(first_invalid_utf8(raw)) + " of the line");
  }
  // The per-thread parser and padded copy: the text found points into the parser, valid until
  // this thread's next parse or release_large_line_buffers().
  simdjson::dom::parser& parser = thread_parser();
  std::vector<char>& padded = thread_padded();
  if (padded.size() < raw.size() + simdjson::SIMDJSON_PADDING) padded.resize(raw.size() + simdjson::SIMDJSON_PADDING);
  std::memcpy(padded.data(), raw.data(), raw.size());
  std::memset(padded.data() + raw.size(), 0, simdjson::SIMDJSON_PADDING);
  simdjson::dom::element root;
  auto err = parser.parse(padded.data(), raw.size(), false).get(root);
  if (err) return say(Problem::kInvalidJson, std::string("invalid JSON: ") + simdjson::error_message(err));
  if (!root.is_object()) {
    return say(Problem::kInvalidJson, std::string("the line is ") + json_type_name(root.type()) + ", not a JSON object");
  }
  simdjson::dom::element field;
  err = root.get_object().at_key(text_field_).get(field);
  if (err) {
    std::string keys;
    int n = 0;
    for (auto kv : root.get_object()) {
      if (n++ == 8) { keys += ", ..."; break; }
      if (!keys.empty()) keys += ", ";
      keys += "\"" + std::string(kv.key) + "\"";
    }
    return say(Problem::kMissingField, "no field \"" + text_field_ + "\" in the object (its fields: " +
                                           (keys.empty() ? std::string("none") : keys) + ")");
  }
  std::string_view s;
  if (field.get_string().get(s)) {
    return say(Problem::kMissingField,
               "field \"" + text_field_ + "\" is " + json_type_name(field.type()) + ", not a string");
  }
  if (s.empty()) return say(Problem::kEmptyText, "field \"" + text_field_ + "\" is an empty string");
  *text = s;
  return Problem::kNone;
}

JsonlSource::Problem JsonlSource::text(uint64_t i, std::string* text, std::string* detail) const {
  std::string_view s;
  const LineBytes raw = bytes(i);
  const Problem p = parse(raw.bytes, &s, detail);
  if (p == Problem::kNone && text != nullptr) text->assign(s.data(), s.size());
  release_large_line_buffers(raw.bytes.size());
  return p;
}

Document JsonlSource::read(uint64_t i, SkipCounters& skips) const {
  if (!tokenizer_) {
    throw Error(ErrorCode::kInternal, locate(i), "JsonlSource opened without a tokenizer cannot read() documents");
  }
  std::string_view s;
  std::string detail;
  LineBytes raw = bytes(i);
  Problem p = parse(raw.bytes, &s, &detail);
  std::shared_ptr<std::vector<uint32_t>> tokens = token_buffers_.take();  // a recycled vector: no malloc per document
  tokens->clear();
  if (p == Problem::kNone) {
    tokens->reserve(s.size() / 3 + 16);  // ~4 bytes a token in English, 1 a character in 3-byte scripts
    try {
      tokenizer_->encode(s, *tokens);
    } catch (const std::exception& e) {  // never a bad record (bad_input = skip does not skip it): the tokenizer failed
      const auto* ours = dynamic_cast<const Error*>(&e);
      throw Error(ours ? ours->code() : ErrorCode::kInternal, locate(i),
                  "the tokenizer (" + tokenizer_model_ + ") failed on this line: " + e.what() +
                      " (the loader stops here; fix the line or the tokenizer and resume from the last saved state)");
    }
    if (tokens->empty()) {
      p = Problem::kEmptyText;
      detail = "field \"" + text_field_ + "\" tokenizes to 0 tokens";
    }
  }
  release_large_line_buffers(raw.bytes.size());
  raw = LineBytes();
  Document doc;
  if (p != Problem::kNone) {
    if (p == Problem::kEmptyLine || policy_ == BadInputPolicy::kSkip) {
      skips.add(source_name_, problem_key(p), locate(i));
      doc.skipped = true;
      return doc;
    }
    std::string fix;
    switch (p) {
      case Problem::kInvalidJson: fix = "fix or remove the line, "; break;
      case Problem::kInvalidUtf8: fix = "re-encode the file as UTF-8, "; break;
      case Problem::kMissingField: fix = "set text_field to the field holding the document text, "; break;
      case Problem::kEmptyText: fix = "remove empty documents, "; break;
      case Problem::kLineTooLong: fix = "split the document or raise max_line_bytes, "; break;
      default: break;
    }
    throw Error(ErrorCode::kCorruptData, locate(i), detail + "; " + fix + kSkipHint);
  }
  doc.tokens.data = tokens->data();
  doc.tokens.size = tokens->size();
  doc.tokens.width = TokenWidth::kU32;
  doc.tokens.owner = std::move(tokens);
  return doc;
}

uint64_t JsonlSource::fingerprint() const { return fingerprint_; }
uint64_t JsonlSource::path_fingerprint() const { return path_fingerprint_; }
std::vector<DataFileFingerprint> JsonlSource::data_files() const { return data_files_; }
uint32_t JsonlSource::num_files() const { return static_cast<uint32_t>(files_.size()); }
const std::string& JsonlSource::path(uint32_t f) const { return files_.at(f)->path; }
uint64_t JsonlSource::file_lines(uint32_t f) const { return files_.at(f)->index.starts.size(); }
bool JsonlSource::compressed(uint32_t f) const { return files_.at(f)->compressed; }
const std::shared_ptr<Tokenizer>& JsonlSource::tokenizer() const { return tokenizer_; }

uint64_t JsonlSource::memory_bytes() const {
  uint64_t total = cache_->stats().bytes;
  for (const auto& f : files_) total += f->index.memory_bytes();
  return total;
}

FrameCache::Stats JsonlSource::frame_cache_stats() const { return cache_->stats(); }

LocalShuffle JsonlSource::auto_shuffle(uint32_t max_span) const {
  uint64_t lines = 0, frames = 0, bytes = 0;
  for (const auto& f : files_) {
    if (!f->compressed) continue;
    lines += f->index.starts.size();
    frames += f->index.frames.size();
    bytes += f->index.size;
  }
  const uint64_t block = frames == 0 ? 0 : (lines + frames / 2) / frames;
  if (block < 2) return {};
  LocalShuffle s;
  s.block = static_cast<uint32_t>(std::min<uint64_t>(block, uint64_t{1} << 24));
  const uint64_t frame_bytes = std::max<uint64_t>(1, bytes / frames);
  const uint64_t span = cache_->budget_bytes() / frame_bytes / 4;
  s.span = static_cast<uint32_t>(std::clamp<uint64_t>(span, 1, std::max<uint32_t>(1, max_span)));
  // Said once per process and source (a loader is rebuilt every epoch, resume and worker); not when
  // the whole source fits the cache (one block per frame is then as good as any order it could hold).
  static std::mutex said_mu;
  static std::set<std::string> said;
  bool say = span < 8 && s.span < max_span && bytes > cache_->budget_bytes();
  if (say) {
    std::lock_guard<std::mutex> lock(said_mu);
    say = said.insert(source_name_).second;
  }
  if (say) {
    std::fprintf(stderr,
                 "groupmates: source '%s': its zstd frames hold %.1f MiB of text each (%llu documents), so the default "
                 "local shuffle mixes only %u frame(s) at a time (a quarter of the %llu the frame cache holds): rewrite "
                 "the files as small frames (`groupmates reframe IN OUT`, 64 KiB), raise zstd_cache_bytes, or set "
                 "shuffle_block = 0 (one global permutation; then every document read decompresses its whole frame)\n",
                 source_name_.c_str(), frame_bytes / 1048576.0, static_cast<unsigned long long>(block), s.span,
                 static_cast<unsigned long long>(cache_->budget_bytes() / frame_bytes));
  }
  return s;
}

SourceCacheStats JsonlSource::cache_stats() const {
  SourceCacheStats s;
  s.line_index_hits = index_cache_.hits;
  s.line_index_misses = index_cache_.built + index_cache_.stale + index_cache_.corrupt + index_cache_.uncached;
  const FrameCache::Stats f = cache_->stats();
  s.frame_hits = f.hits;
  s.frame_misses = f.misses;
  s.frame_bytes = f.bytes;
  return s;
}
const IndexCacheCounts& JsonlSource::index_cache_counts() const { return index_cache_; }

std::unique_ptr<DocumentSource> open_document_source(const SourceConfig& config, BadInputPolicy policy) {
  switch (config.format) {
    case SourceFormat::kMegatron: return std::make_unique<MegatronSource>(config, policy);
    case SourceFormat::kJsonl: return std::make_unique<JsonlSource>(config, policy);
    case SourceFormat::kTokenFile: break;
  }
  throw Error(ErrorCode::kInvalidConfig, "",
              "source '" + config.name + "': format token_file is read as windows (TokenFileSource), not documents");
}

}  // namespace groupmates
