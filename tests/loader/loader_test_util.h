// Helpers for the loader tests: temp dirs, reference writers, fresh random seeds.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "groupmates/streaming_loader.h"

namespace gmtest {

/// A fresh directory under $TMPDIR, removed at scope exit.
struct TempDir {
  std::string path;
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base ? base : "/tmp") + "/gm_loader_test_XXXXXX";
    path = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

/// A fresh seed per run, printed so a failure can be replayed (GM_TEST_SEED=... to fix it).
inline uint64_t fresh_seed() {
  if (const char* s = std::getenv("GM_TEST_SEED")) return std::strtoull(s, nullptr, 10);
  return (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
}

template <typename T>
void write_raw(const std::string& path, const std::vector<T>& values) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

/// Reference Megatron writer (MMIDIDX v1, dtype code 8 = uint16 or 4 = int32).
template <typename T>
void write_megatron(const std::string& prefix, const std::vector<std::vector<T>>& docs) {
  const uint8_t code = sizeof(T) == 2 ? 8 : 4;
  std::ofstream bin(prefix + ".bin", std::ios::binary);
  std::vector<int32_t> sizes;
  std::vector<int64_t> pointers;
  int64_t ptr = 0;
  for (const auto& d : docs) {
    bin.write(reinterpret_cast<const char*>(d.data()), d.size() * sizeof(T));
    sizes.push_back(static_cast<int32_t>(d.size()));
    pointers.push_back(ptr);
    ptr += static_cast<int64_t>(d.size() * sizeof(T));
  }
  std::ofstream idx(prefix + ".idx", std::ios::binary);
  idx.write("MMIDIDX\x00\x00", 9);
  const uint64_t version = 1, n = docs.size(), ndocs = docs.size() + 1;
  idx.write(reinterpret_cast<const char*>(&version), 8);
  idx.write(reinterpret_cast<const char*>(&code), 1);
  idx.write(reinterpret_cast<const char*>(&n), 8);
  idx.write(reinterpret_cast<const char*>(&ndocs), 8);
  idx.write(reinterpret_cast<const char*>(sizes.data()), sizes.size() * 4);
  idx.write(reinterpret_cast<const char*>(pointers.data()), pointers.size() * 8);
  for (uint64_t i = 0; i <= n; ++i) {
    const int64_t v = static_cast<int64_t>(i);
    idx.write(reinterpret_cast<const char*>(&v), 8);
  }
}

/// Drains a loader: every batch's rows, flattened, plus ids.
struct Drained {
  std::vector<std::vector<int64_t>> rows;
  std::vector<uint64_t> ids;
};

inline void append(Drained& d, const groupmates::HostBatch& b) {
  for (uint32_t r = 0; r < b.batch_size; ++r) {
    const int64_t* p = b.tokens.get() + uint64_t{r} * b.sequence_length;
    d.rows.emplace_back(p, p + b.sequence_length);
    d.ids.push_back(b.ids[r].hash);
  }
}

inline Drained drain(groupmates::StreamingLoader& loader, uint64_t max_batches = UINT64_MAX) {
  Drained d;
  for (uint64_t i = 0; i < max_batches; ++i) {
    auto b = loader.next();
    if (!b) break;
    append(d, *b);
  }
  return d;
}

}  // namespace gmtest
