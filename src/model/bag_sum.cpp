// bag_sum.cpp: acc += table rows, with the accumulator held in vector registers (one tile of
// columns at a time), for AVX-512, AVX2 and the baseline ISA.
//
// The loops the compiler would vectorise from `acc[d] += row[d]` are not what it emits for wide
// rows: for rows of 256 floats GCC 12 at -O3 unrolls over two rows and adds one float at a time
// (addss), which made the bag sum compute-bound. Here every tile of columns stays in registers
// while all rows are added, so each row costs one load + one add per vector.
#include "model/bag_sum.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(GROUPMATES_NO_SIMD)
#define GM_BAG_SUM_X86 1
#include <immintrin.h>
#endif

namespace groupmates::detail {

namespace {

// Baseline: tiles of 16 columns in a local array (the compiler keeps it in SSE registers).
void add_rows_baseline(const float* table, int64_t dim, const uint32_t* rows, int64_t n, float* acc) {
  constexpr int64_t kTile = 16;
  int64_t d0 = 0;
  for (; d0 + kTile <= dim; d0 += kTile) {
    float local[kTile];
    for (int64_t d = 0; d < kTile; ++d) local[d] = acc[d0 + d];
    for (int64_t i = 0; i < n; ++i) {
      const float* row = table + int64_t(rows[i]) * dim + d0;
      for (int64_t d = 0; d < kTile; ++d) local[d] += row[d];
    }
    for (int64_t d = 0; d < kTile; ++d) acc[d0 + d] = local[d];
  }
  for (int64_t d = d0; d < dim; ++d) {
    float s = acc[d];
    for (int64_t i = 0; i < n; ++i) s += table[int64_t(rows[i]) * dim + d];
    acc[d] = s;
  }
}

#ifdef GM_BAG_SUM_X86

// AVX-512: up to 16 vectors of 16 floats (256 columns) per tile; the tile's last vector is
// loaded and stored under `last` (the columns left at the end of a row).
template <int kVectors>
__attribute__((target("avx512f"))) void tile_avx512(const float* table, int64_t dim, const uint32_t* rows, int64_t n,
                                                     float* acc, __mmask16 last) {
  __m512 a[kVectors];
#pragma GCC unroll 16
  for (int k = 0; k + 1 < kVectors; ++k) a[k] = _mm512_loadu_ps(acc + 16 * k);
  a[kVectors - 1] = _mm512_maskz_loadu_ps(last, acc + 16 * (kVectors - 1));
  for (int64_t i = 0; i < n; ++i) {
    const float* row = table + int64_t(rows[i]) * dim;
#pragma GCC unroll 16
    for (int k = 0; k + 1 < kVectors; ++k) a[k] = _mm512_add_ps(a[k], _mm512_loadu_ps(row + 16 * k));
    a[kVectors - 1] = _mm512_add_ps(a[kVectors - 1], _mm512_maskz_loadu_ps(last, row + 16 * (kVectors - 1)));
  }
#pragma GCC unroll 16
  for (int k = 0; k + 1 < kVectors; ++k) _mm512_storeu_ps(acc + 16 * k, a[k]);
  _mm512_mask_storeu_ps(acc + 16 * (kVectors - 1), last, a[kVectors - 1]);
}

__attribute__((target("avx512f"))) void add_rows_avx512(const float* table, int64_t dim, const uint32_t* rows,
                                                         int64_t n, float* acc) {
  for (int64_t d0 = 0; d0 < dim; d0 += 256) {
    const int64_t width = dim - d0 < 256 ? dim - d0 : 256;
    const int vectors = int((width + 15) / 16);
    const __mmask16 last = width % 16 ? __mmask16((1u << (width % 16)) - 1) : __mmask16(0xFFFF);
    const float* t = table + d0;
    float* a = acc + d0;
    switch (vectors) {
#define GM_TILE(k) \
  case k: tile_avx512<k>(t, dim, rows, n, a, last); break;
      GM_TILE(1) GM_TILE(2) GM_TILE(3) GM_TILE(4) GM_TILE(5) GM_TILE(6) GM_TILE(7) GM_TILE(8)
      GM_TILE(9) GM_TILE(10) GM_TILE(11) GM_TILE(12) GM_TILE(13) GM_TILE(14) GM_TILE(15) GM_TILE(16)
#undef GM_TILE
    }
  }
}

// AVX2: up to 8 vectors of 8 floats (64 columns) per tile; the columns left after the last full
// vector go through the baseline loop.
template <int kVectors>
__attribute__((target("avx2"))) void tile_avx2(const float* table, int64_t dim, const uint32_t* rows, int64_t n,
                                                float* acc) {
  __m256 a[kVectors];
#pragma GCC unroll 8
  for (int k = 0; k < kVectors; ++k) a[k] = _mm256_loadu_ps(acc + 8 * k);
  for (int64_t i = 0; i < n; ++i) {
    const float* row = table + int64_t(rows[i]) * dim;
#pragma GCC unroll 8
    for (int k = 0; k < kVectors; ++k) a[k] = _mm256_add_ps(a[k], _mm256_loadu_ps(row + 8 * k));
  }
#pragma GCC unroll 8
  for (int k = 0; k < kVectors; ++k) _mm256_storeu_ps(acc + 8 * k, a[k]);
}

__attribute__((target("avx2"))) void add_rows_avx2(const float* table, int64_t dim, const uint32_t* rows, int64_t n,
                                                    float* acc) {
  int64_t d0 = 0;
  for (; d0 + 8 <= dim; d0 += 64) {
    const int vectors = int((dim - d0) / 8 < 8 ? (dim - d0) / 8 : 8);
    const float* t = table + d0;
    float* a = acc + d0;
    switch (vectors) {
#define GM_TILE(k) \
  case k: tile_avx2<k>(t, dim, rows, n, a); break;
      GM_TILE(1) GM_TILE(2) GM_TILE(3) GM_TILE(4) GM_TILE(5) GM_TILE(6) GM_TILE(7) GM_TILE(8)
#undef GM_TILE
    }
    if (vectors < 8) {
      d0 += 8 * vectors;
      break;
    }
  }
  for (int64_t d = d0; d < dim; ++d) {
    float s = acc[d];
    for (int64_t i = 0; i < n; ++i) s += table[int64_t(rows[i]) * dim + d];
    acc[d] = s;
  }
}

#endif  // GM_BAG_SUM_X86

std::vector<AddRowsKernel> detect() {
  std::vector<AddRowsKernel> kernels;
#ifdef GM_BAG_SUM_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) kernels.push_back({"avx512f", add_rows_avx512});
  if (__builtin_cpu_supports("avx2")) kernels.push_back({"avx2", add_rows_avx2});
#endif
  kernels.push_back({"baseline", add_rows_baseline});
  return kernels;
}

}  // namespace

const std::vector<AddRowsKernel>& add_rows_kernels() {
  static const std::vector<AddRowsKernel> kernels = detect();
  return kernels;
}

}  // namespace groupmates::detail
