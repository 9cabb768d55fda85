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
#include "reader_test_util.h"

namespace gmtest {

// Temp dirs and fresh seeds are the reader tests' (one definition for the loader tests).
using rdtest::TempDir;
using rdtest::fresh_seed;

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
