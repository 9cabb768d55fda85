// bag_sum.h: the inner loop of HashedNgramEncoder's fused bag kernel, summing rows of a float
// table into an accumulator, built for AVX-512, AVX2 and the baseline ISA (picked at run time).
#pragma once

#include <cstdint>
#include <vector>

namespace groupmates::detail {

/// acc[0, dim) += table[rows[i] * dim + (0, dim)] for i = 0 .. n-1. Every element is summed in
/// the order of `rows` (one float addition per row, no reassociation), so every variant gives
/// the same bits.
using AddRowsFn = void (*)(const float* table, int64_t dim, const uint32_t* rows, int64_t n, float* acc);

struct AddRowsKernel {
  const char* isa;  ///< "avx512f", "avx2" or "baseline"
  AddRowsFn fn;
};

/// The variants this CPU runs, fastest first; the fused kernel uses the first.
const std::vector<AddRowsKernel>& add_rows_kernels();

}  // namespace groupmates::detail
