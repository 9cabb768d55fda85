// fuzz_util.h: what the harnesses share: the fuzz input written to a file (the parsers read
// files through mmap), in /dev/shm when it exists.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

namespace fuzz {

/// A per-process scratch path with `suffix` (e.g. ".idx").
inline std::string scratch(const std::string& suffix) {
  const char* base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  return std::string(base) + "/gm_fuzz_" + std::to_string(::getpid()) + suffix;
}

/// Keeps a value computed from what a parser returned (so its reads stay and ASan checks them) without
/// a branch on it: a harness always returns 0 (libFuzzer takes any other value as "reject this input").
inline void keep(uint64_t value) {
  static volatile uint64_t sink;
  sink = value;
}

inline void write_file(const std::string& path, const uint8_t* data, size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
}

}  // namespace fuzz
