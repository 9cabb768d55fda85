// Helpers for the format-reader tests (token files, Megatron, JSONL, inspect CLI): temp dirs,
// fresh seeds, reference writers, a small SentencePiece model, running the CLI.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <memory>
#include <future>
#include <chrono>
#include <sstream>
#include <string>
#include <atomic>
#include <thread>
#include <vector>

#include "groupmates/error.h"
#include "sources/document_source.h"

namespace rdtest {

/// The groupmates::Error that fn() throws (a test failure, and a placeholder, if it throws none).
template <typename Fn>
groupmates::Error expect_error(Fn fn) {
  try {
    fn();
  } catch (const groupmates::Error& e) {
    return e;
  }
  ADD_FAILURE() << "no groupmates::Error thrown";
  return groupmates::Error(groupmates::ErrorCode::kInternal, "", "none");
}

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

/// A fresh mkdtemp() directory under $TMPDIR (or /tmp), removed at scope exit.
struct TempDir {
  std::string path;
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/gm_reader_test.XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed: " << std::strerror(errno);
    path = buf.data();
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return path + "/" + name; }
};

/// A fresh seed per run (GM_TEST_SEED=... replays one); print it with SCOPED_TRACE.
inline uint64_t fresh_seed() {
  if (const char* s = std::getenv("GM_TEST_SEED")) return std::strtoull(s, nullptr, 10);
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd();
}

/// Runs fn() on its own thread and waits at most `seconds`: a hang is reported and ends the test
/// binary at once (a hung thread cannot be abandoned safely, and waiting for ctest's timeout would
/// hide which test hung).
template <typename Fn>
void within_deadline(double seconds, const std::string& what, Fn fn) {
  auto done = std::make_shared<std::promise<void>>();
  auto finished = done->get_future();
  std::thread([done, fn]() mutable {
    try {
      fn();
      done->set_value();
    } catch (...) {
      done->set_exception(std::current_exception());
    }
  }).detach();
  if (finished.wait_for(std::chrono::duration<double>(seconds)) != std::future_status::ready) {
    std::fprintf(stderr, "FAILED: %s did not finish within its deadline of %.0f s (hang)\n", what.c_str(), seconds);
    std::fflush(stderr);
    std::_Exit(3);
  }
  finished.get();  // rethrows what fn threw
}

inline std::string seed_trace(uint64_t seed) { return "seed " + std::to_string(seed) + " (GM_TEST_SEED=" + std::to_string(seed) + " to replay)"; }

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << "cannot write " << path;
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

/// Overwrites `n` bytes at `offset` of an existing file.
inline void patch_bytes(const std::string& path, uint64_t offset, const void* data, size_t n) {
  std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
  ASSERT_TRUE(f.good()) << "cannot patch " << path;
}

template <typename T>
void patch_value(const std::string& path, uint64_t offset, T value) {
  patch_bytes(path, offset, &value, sizeof value);
}

/// Megatron dtype code -> bytes per token.
inline uint32_t megatron_width(uint8_t code) {
  switch (code) {
    case 1: case 2: return 1;
    case 3: case 8: return 2;
    case 4: case 7: return 4;
    default: return 8;
  }
}

/// Byte offsets inside an MMIDIDX .idx with N sequences.
constexpr uint64_t kIdxHeader = 34;
inline uint64_t idx_size_offset(uint64_t j) { return kIdxHeader + 4 * j; }
inline uint64_t idx_pointer_offset(uint64_t n, uint64_t j) { return kIdxHeader + 4 * n + 8 * j; }

/// Reference Megatron writer, straight from the format description: documents of int64 values
/// stored with dtype `code` (1 uint8, 3 int16, 4 int32, 5 int64, 8 uint16). Returns the pointers.
inline std::vector<int64_t> write_megatron(const std::string& prefix, uint8_t code,
                                           const std::vector<std::vector<int64_t>>& docs) {
  const uint32_t w = megatron_width(code);
  std::string bin;
  std::vector<int32_t> sizes;
  std::vector<int64_t> pointers;
  for (const auto& d : docs) {
    pointers.push_back(static_cast<int64_t>(bin.size()));
    sizes.push_back(static_cast<int32_t>(d.size()));
    for (int64_t v : d) {
      char b[8];
      std::memcpy(b, &v, 8);  // little-endian: the low `w` bytes are the narrow value
      bin.append(b, w);
    }
  }
  write_bytes(prefix + ".bin", bin);
  std::string idx("MMIDIDX\0\0", 9);
  auto put = [&idx](const void* p, size_t n) { idx.append(static_cast<const char*>(p), n); };
  const uint64_t version = 1, n = docs.size(), d = docs.size() + 1;
  put(&version, 8);
  put(&code, 1);
  put(&n, 8);
  put(&d, 8);
  put(sizes.data(), sizes.size() * 4);
  put(pointers.data(), pointers.size() * 8);
  for (uint64_t i = 0; i <= n; i++) {
    const int64_t v = static_cast<int64_t>(i);
    put(&v, 8);
  }
  write_bytes(prefix + ".idx", idx);
  return pointers;
}

/// zstd-compresses `data` into one frame (content size recorded) or, with `frames` > 1, into
/// several frames written without content size (as a streaming compressor would).
inline std::string zstd_compress(const std::string& data, int frames = 1) {
  std::string out;
  const size_t step = frames > 1 ? data.size() / frames + 1 : data.size();
  for (size_t off = 0; off < data.size() || (off == 0 && data.empty()); off += step) {
    const size_t n = std::min(step, data.size() - off);
    if (frames > 1) {
      ZSTD_CCtx* c = ZSTD_createCCtx();
      std::string buf(ZSTD_compressBound(n), '\0');
      ZSTD_inBuffer in{data.data() + off, n, 0};
      ZSTD_outBuffer o{buf.data(), buf.size(), 0};
      size_t r;
      do {
        r = ZSTD_compressStream2(c, &o, &in, ZSTD_e_end);
      } while (r != 0 && !ZSTD_isError(r));
      ZSTD_freeCCtx(c);
      out.append(buf.data(), o.pos);
    } else {
      std::string buf(ZSTD_compressBound(n), '\0');
      const size_t r = ZSTD_compress(buf.data(), buf.size(), data.data() + off, n, 3);
      out.append(buf.data(), r);
    }
    if (data.empty()) break;
  }
  return out;
}

/// JSON string literal of `s` (valid UTF-8). Randomly writes some ASCII as \u00XX escapes and
/// non-ASCII as \uXXXX (with surrogate pairs) so the parser's unescaping is exercised.
inline std::string json_string(const std::string& s, std::mt19937_64& rng) {
  std::string o = "\"";
  char buf[16];
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (c == '"') o += "\\\"";
      else if (c == '\\') o += "\\\\";
      else if (c == '\n') o += "\\n";
      else if (c == '\t') o += "\\t";
      else if (c < 0x20 || rng() % 16 == 0) {
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        o += buf;
      } else {
        o += static_cast<char>(c);
      }
      i++;
      continue;
    }
    const size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
    if (rng() % 3 == 0) {
      uint32_t cp = len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
      for (size_t k = 1; k < len; k++) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
      if (cp >= 0x10000) {
        cp -= 0x10000;
        std::snprintf(buf, sizeof buf, "\\u%04X\\u%04X", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
      } else {
        std::snprintf(buf, sizeof buf, "\\u%04x", cp);
      }
      o += buf;
    } else {
      o.append(s, i, len);
    }
    i += len;
  }
  return o + "\"";
}

/// Random prose-like UTF-8 text: words, punctuation, quotes, backslashes, newlines, non-ASCII.
inline std::string random_text(std::mt19937_64& rng, size_t max_words = 40) {
  static const std::vector<std::string> words = {
      "the", "data", "loader", "reads", "tokens", "from", "files", "and", "packs", "them", "into", "batches",
      "model", "training", "café", "naïve", "日本語", "über", "—", "“quoted”", "\"q\"", "back\\slash", "tab\there",
      "emoji🙂", "x", "1234", "a,b", "end.", "new\nline", "Ωμέγα"};
  std::string s;
  const size_t n = 1 + rng() % max_words;
  for (size_t i = 0; i < n; i++) {
    if (i) s += ' ';
    if (rng() % 2 == 0) {
      s += words[rng() % words.size()];
    } else {  // a random lowercase word, skewed to frequent letters
      static const char letters[] = "etaoinshrdlcumwfgypbvkjxqz";
      const size_t len = 1 + rng() % 8;
      for (size_t k = 0; k < len; k++) s += letters[std::min(rng() % 26, rng() % 26)];
    }
  }
  return s;
}

/// Trains a small SentencePiece model with the spm_train CLI in `dir`; returns the .model path.
inline std::string train_spm(const std::string& dir, int vocab_size = 200) {
  std::mt19937_64 rng(42);
  std::ofstream f(dir + "/spm_train.txt", std::ios::binary);
  for (int i = 0; i < 1500; i++) {
    std::string t = random_text(rng, 30);
    for (char& c : t) if (c == '\n') c = ' ';
    f << t << '\n';
  }
  f.close();
  const std::string cmd = "spm_train --input=" + dir + "/spm_train.txt --model_prefix=" + dir +
                          "/spm --vocab_size=" + std::to_string(vocab_size) +
                          " --model_type=unigram --character_coverage=1.0 --pad_id=0 --unk_id=1 --bos_id=2"
                          " --eos_id=3 --num_threads=1 --hard_vocab_limit=false --minloglevel=2 > " + dir + "/spm_train.log 2>&1";
  const int rc = std::system(cmd.c_str());
  EXPECT_EQ(rc, 0) << "spm_train failed (is the sentencepiece package installed?): " << cmd << "\n"
                   << read_bytes(dir + "/spm_train.log");
  return dir + "/spm.model";
}

/// Shell-quotes one argument.
inline std::string sh_quote(const std::string& s) {
  std::string o = "'";
  for (char c : s) {
    if (c == '\'') o += "'\\''";
    else o += c;
  }
  return o + "'";
}

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

/// Runs the groupmates CLI with `args` (already split), capturing stdout+stderr.
inline CommandResult run_cli(const std::vector<std::string>& args) {
  std::string cmd = sh_quote(GROUPMATES_CLI);
  for (const auto& a : args) cmd += " " + sh_quote(a);
  cmd += " 2>&1";
  CommandResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

/// Reads documents of `src` from 4 threads at once, `passes` x `n` reads each, thread t in the order
/// (k * 7919 + t * stride) % n; returns how many reads gave other tokens than `want(i)` (any range
/// with size() and operator[]), or were skipped.
template <typename Want>
uint64_t concurrent_read_mismatches(const groupmates::DocumentSource& src, uint64_t n, uint64_t passes, uint64_t stride,
                                    Want want) {
  std::atomic<uint64_t> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++) {
    threads.emplace_back([&, t] {
      groupmates::SkipCounters skips;
      for (uint64_t k = 0; k < passes * n; k++) {
        const uint64_t i = (k * 7919 + static_cast<uint64_t>(t) * stride) % n;
        const groupmates::Document d = src.read(i, skips);
        const auto& w = want(i);
        bool ok = !d.skipped && d.tokens.size == w.size();
        for (uint64_t j = 0; ok && j < d.tokens.size; j++) ok = d.tokens.at(j) == static_cast<int64_t>(w[j]);
        if (!ok) mismatches++;
      }
    });
  }
  for (auto& th : threads) th.join();
  return mismatches.load();
}

}  // namespace rdtest
