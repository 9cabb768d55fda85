#include "groupmates/loader_state.h"

#include <cinttypes>
#include <sstream>

#include "groupmates/error.h"

namespace groupmates {

namespace {

const char* kMagic = "groupmates-state";
constexpr int kVersion = 1;

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '%' || c == ' ' || c == '\n' || c == '\r' || c == '\t') {
      char buf[4];
      std::snprintf(buf, sizeof(buf), "%%%02X", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out.empty() ? "%" : out;  // "%" alone stands for the empty string
}

std::string unescape(const std::string& s) {
  if (s == "%") return "";
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

[[noreturn]] void bad(const std::string& what) {
  throw Error(ErrorCode::kInvalidState, "LoaderState", what + " (was the state saved by groupmates and passed unchanged?)");
}

}  // namespace

std::string LoaderState::serialize() const {
  std::ostringstream o;
  o << kMagic << " " << kVersion << "\n";
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016" PRIx64, config_fingerprint);
  o << "fingerprint " << hex << "\n";
  o << "global_batch_size " << global_batch_size << "\n";
  o << "batches " << batches << "\n";
  o << "pass " << pass << "\n";
  o << "ended " << (ended ? 1 : 0) << "\n";
  o << "blend";
  for (uint64_t c : blend_counts) o << " " << c;
  o << "\n";
  for (const auto& s : sources) o << "source " << s.epoch << " " << s.position << " " << s.offset << "\n";
  for (const auto& kv : skipped) o << "skipped " << escape(kv.first) << " " << kv.second << "\n";
  for (const auto& kv : extra) o << "extra " << escape(kv.first) << " " << escape(kv.second) << "\n";
  o << "end\n";
  return o.str();
}

LoaderState LoaderState::parse(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line)) bad("empty state");
  {
    std::istringstream head(line);
    std::string magic;
    int version = 0;
    head >> magic >> version;
    if (magic != kMagic) bad("does not start with '" + std::string(kMagic) + "'");
    if (version != kVersion) bad("version " + std::to_string(version) + " is not supported (this build reads version 1)");
  }
  LoaderState s;
  bool seen_end = false;
  int line_no = 1;
  while (std::getline(in, line)) {
    ++line_no;
    std::istringstream f(line);
    std::string key;
    f >> key;
    auto need = [&](bool ok) {
      if (!ok) bad("line " + std::to_string(line_no) + " ('" + key + "') is malformed");
    };
    if (key == "fingerprint") {
      std::string hex;
      f >> hex;
      need(!hex.empty());
      s.config_fingerprint = std::stoull(hex, nullptr, 16);
    } else if (key == "global_batch_size") {
      need(static_cast<bool>(f >> s.global_batch_size));
    } else if (key == "batches") {
      need(static_cast<bool>(f >> s.batches));
    } else if (key == "pass") {
      need(static_cast<bool>(f >> s.pass));
    } else if (key == "ended") {
      int e = 0;
      need(static_cast<bool>(f >> e));
      s.ended = e != 0;
    } else if (key == "blend") {
      uint64_t c;
      while (f >> c) s.blend_counts.push_back(c);
    } else if (key == "source") {
      SourcePosition p;
      need(static_cast<bool>(f >> p.epoch >> p.position >> p.offset));
      s.sources.push_back(p);
    } else if (key == "skipped") {
      std::string k;
      uint64_t n = 0;
      need(static_cast<bool>(f >> k >> n));
      s.skipped[unescape(k)] = n;
    } else if (key == "extra") {
      std::string k, v;
      need(static_cast<bool>(f >> k >> v));
      s.extra[unescape(k)] = unescape(v);
    } else if (key == "end") {
      seen_end = true;
      break;
    } else if (!key.empty()) {
      bad("unknown field '" + key + "' on line " + std::to_string(line_no));
    }
  }
  if (!seen_end) bad("truncated: no 'end' line");
  return s;
}

bool LoaderState::operator==(const LoaderState& o) const {
  if (sources.size() != o.sources.size()) return false;
  for (size_t i = 0; i < sources.size(); ++i)
    if (sources[i].epoch != o.sources[i].epoch || sources[i].position != o.sources[i].position ||
        sources[i].offset != o.sources[i].offset)
      return false;
  return config_fingerprint == o.config_fingerprint && global_batch_size == o.global_batch_size &&
         batches == o.batches && pass == o.pass && ended == o.ended && blend_counts == o.blend_counts &&
         skipped == o.skipped && extra == o.extra;
}

}  // namespace groupmates
