#include "groupmates/loader_state.h"

#include <cinttypes>
#include <sstream>
#include <vector>

#include "groupmates/error.h"

namespace groupmates {

namespace {

const char* kMagic = "groupmates-state";
constexpr int kVersion = 2;  // 2: content fingerprints (no paths), `samples`, the source of each file

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '%' || c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f') {
      char buf[4];
      std::snprintf(buf, sizeof(buf), "%%%02X", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out.empty() ? "%" : out;  // "%" alone stands for the empty string
}

[[noreturn]] void bad(const std::string& what) {
  throw Error(ErrorCode::kInvalidState, "LoaderState", what + " (was the state saved by groupmates and passed unchanged?)");
}

[[noreturn]] void bad_field(int line_no, const std::string& field, const std::string& what) {
  throw Error(ErrorCode::kInvalidState, "LoaderState." + field,
              "line " + std::to_string(line_no) + ": " + what + " (was the state saved by groupmates and passed unchanged?)");
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Inverse of escape(); `field`/`line_no` name a bad escape.
std::string unescape(const std::string& s, int line_no, const std::string& field) {
  if (s == "%") return "";
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    const int hi = i + 2 < s.size() ? hex_digit(s[i + 1]) : -1, lo = i + 2 < s.size() ? hex_digit(s[i + 2]) : -1;
    if (hi < 0 || lo < 0) bad_field(line_no, field, "bad escape at character " + std::to_string(i) + " (expected %XX)");
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

// The whitespace-separated words of a line.
std::vector<std::string> words(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

// A decimal uint64: digits only (no sign), no overflow.
uint64_t parse_u64(const std::string& w, int line_no, const std::string& field) {
  if (w.empty() || w.size() > 20) bad_field(line_no, field, "'" + w.substr(0, 32) + "' is not a number in 0..2^64-1");
  uint64_t v = 0;
  for (char c : w) {
    if (c < '0' || c > '9') bad_field(line_no, field, "'" + w.substr(0, 32) + "' is not a number in 0..2^64-1 (digits only)");
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) bad_field(line_no, field, "'" + w + "' overflows 64 bits");
    v = v * 10 + d;
  }
  return v;
}

uint64_t parse_hex64(const std::string& w, int line_no, const std::string& field) {
  if (w.empty() || w.size() > 16) bad_field(line_no, field, "'" + w.substr(0, 32) + "' is not 1..16 hex digits");
  uint64_t v = 0;
  for (char c : w) {
    const int d = hex_digit(c);
    if (d < 0) bad_field(line_no, field, "'" + w.substr(0, 32) + "' is not hexadecimal");
    v = v * 16 + static_cast<uint64_t>(d);
  }
  return v;
}

}  // namespace

std::string LoaderState::serialize() const {
  std::ostringstream o;
  // A state parsed from version 1 text is written as version 1 again (its fingerprint covers paths,
  // and a version 2 header would have it checked as a content fingerprint); all else as version 2.
  const bool v1 = version == 1;
  o << kMagic << " " << (v1 ? 1 : kVersion) << "\n";
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016" PRIx64, config_fingerprint);
  o << "fingerprint " << hex << "\n";
  o << "global_batch_size " << global_batch_size << "\n";
  o << "batches " << batches << "\n";
  if (!v1) o << "samples " << samples << "\n";
  o << "pass " << pass << "\n";
  o << "ended " << (ended ? 1 : 0) << "\n";
  o << "blend";
  for (uint64_t c : blend_counts) o << " " << c;
  o << "\n";
  for (const auto& s : sources) o << "source " << s.epoch << " " << s.position << " " << s.offset << "\n";
  for (const auto& kv : skipped) o << "skipped " << escape(kv.first) << " " << kv.second << "\n";
  for (const auto& kv : extra) o << "extra " << escape(kv.first) << " " << escape(kv.second) << "\n";
  for (const auto& f : files) {
    std::snprintf(hex, sizeof(hex), "%016" PRIx64, f.content_hash);
    o << "file ";
    if (!v1) o << f.source << " ";
    o << f.size << " " << hex << " " << escape(f.path) << "\n";
  }
  o << "end\n";
  return o.str();
}

LoaderState LoaderState::parse(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line)) bad("empty state");
  LoaderState s;
  {
    const auto w = words(line);
    if (w.empty() || w[0] != kMagic) bad("does not start with '" + std::string(kMagic) + "'");
    if (w.size() != 2 || (w[1] != "1" && w[1] != std::to_string(kVersion)))
      bad("version " + (w.size() > 1 ? w[1].substr(0, 32) : std::string("(none)")) +
          " is not supported (this build reads versions 1 and 2; a newer groupmates wrote it: restore it with that version)");
    s.version = w[1] == "1" ? 1 : kVersion;
  }
  bool seen_samples = false;
  bool seen_end = false;
  int line_no = 1;
  std::map<std::string, int> seen;  // scalar field -> line it was first on
  while (std::getline(in, line)) {
    ++line_no;
    const auto w = words(line);
    if (seen_end) {
      if (!w.empty())
        bad_field(line_no, "end", "text after 'end' ('" + w[0].substr(0, 32) + "'): the state was edited or two states were concatenated");
      continue;
    }
    if (w.empty()) continue;
    const std::string& key = w[0];
    auto arity = [&](size_t n, const char* form) {
      if (w.size() != n + 1)
        bad_field(line_no, key, "expected '" + key + " " + form + "', got " + std::to_string(w.size() - 1) + " value(s)");
    };
    auto once = [&]() {
      if (!seen.emplace(key, line_no).second) bad_field(line_no, key, "given twice (first on line " + std::to_string(seen[key]) + ")");
    };
    if (key == "fingerprint") {
      arity(1, "HEX"), once();
      s.config_fingerprint = parse_hex64(w[1], line_no, "config_fingerprint");
    } else if (key == "global_batch_size") {
      arity(1, "N"), once();
      s.global_batch_size = parse_u64(w[1], line_no, key);
    } else if (key == "batches") {
      arity(1, "N"), once();
      s.batches = parse_u64(w[1], line_no, key);
    } else if (key == "samples" && s.version >= 2) {
      arity(1, "N"), once();
      s.samples = parse_u64(w[1], line_no, key);
      seen_samples = true;
    } else if (key == "pass") {
      arity(1, "N"), once();
      s.pass = parse_u64(w[1], line_no, key);
    } else if (key == "ended") {
      arity(1, "0|1"), once();
      if (w[1] != "0" && w[1] != "1") bad_field(line_no, key, "is '" + w[1].substr(0, 32) + "'; must be 0 or 1");
      s.ended = w[1] == "1";
    } else if (key == "blend") {
      once();
      for (size_t k = 1; k < w.size(); ++k) s.blend_counts.push_back(parse_u64(w[k], line_no, "blend[" + std::to_string(k - 1) + "]"));
    } else if (key == "source") {
      arity(3, "EPOCH POSITION OFFSET");
      const std::string f = "sources[" + std::to_string(s.sources.size()) + "]";
      SourcePosition p;
      p.epoch = parse_u64(w[1], line_no, f + ".epoch");
      p.position = parse_u64(w[2], line_no, f + ".position");
      p.offset = parse_u64(w[3], line_no, f + ".offset");
      s.sources.push_back(p);
    } else if (key == "skipped") {
      arity(2, "KEY N");
      s.skipped[unescape(w[1], line_no, "skipped")] = parse_u64(w[2], line_no, "skipped");
    } else if (key == "extra") {
      arity(2, "KEY VALUE");
      s.extra[unescape(w[1], line_no, "extra")] = unescape(w[2], line_no, "extra");
    } else if (key == "file") {
      const size_t at = s.version >= 2 ? 2 : 1;  // version 1: no source index
      arity(at + 2, s.version >= 2 ? "SOURCE SIZE HEX PATH" : "SIZE HEX PATH");
      const std::string f = "files[" + std::to_string(s.files.size()) + "]";
      DataFileFingerprint d;
      if (s.version >= 2) {
        const uint64_t source = parse_u64(w[1], line_no, f + ".source");
        if (source > UINT32_MAX) bad_field(line_no, f + ".source", "is " + w[1] + "; must be a source index");
        d.source = static_cast<uint32_t>(source);
      }
      d.size = parse_u64(w[at], line_no, f + ".size");
      d.content_hash = parse_hex64(w[at + 1], line_no, f + ".content_hash");
      d.path = unescape(w[at + 2], line_no, f + ".path");
      s.files.push_back(std::move(d));
    } else if (key == "end") {
      arity(0, "");
      seen_end = true;
    } else {
      bad("unknown field '" + key.substr(0, 32) + "' on line " + std::to_string(line_no));
    }
  }
  if (!seen_end) bad("truncated: no 'end' line");
  if (!seen_samples) {  // version 1: every batch had the global batch size of the save
    if (s.version >= 2) bad("no 'samples' line (version 2 states have one)");
    if (s.global_batch_size > 0 && s.batches > UINT64_MAX / s.global_batch_size)
      bad("batches * global_batch_size overflows 64 bits: the state was edited");
    s.samples = s.batches * s.global_batch_size;
  }
  return s;
}

bool LoaderState::operator==(const LoaderState& o) const {
  if (sources.size() != o.sources.size()) return false;
  for (size_t i = 0; i < sources.size(); ++i)
    if (sources[i].epoch != o.sources[i].epoch || sources[i].position != o.sources[i].position ||
        sources[i].offset != o.sources[i].offset)
      return false;
  return version == o.version && config_fingerprint == o.config_fingerprint && global_batch_size == o.global_batch_size &&
         batches == o.batches && samples == o.samples && pass == o.pass && ended == o.ended && blend_counts == o.blend_counts &&
         skipped == o.skipped && extra == o.extra && files == o.files;
}

}  // namespace groupmates
