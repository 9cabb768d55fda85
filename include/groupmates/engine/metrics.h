// groupmates/metrics.h: how the influence approximation is judged (no LibTorch).
#pragma once

#include <vector>

namespace groupmates {

/// Pearson correlation; 0 when either input is constant. Sizes must match.
double pearson(const std::vector<double>& x, const std::vector<double>& y);
/// Ranks 1..n, ties get their average rank.
std::vector<double> average_ranks(const std::vector<double>& x);
/// Spearman correlation: Pearson of the average ranks.
double spearman(const std::vector<double>& x, const std::vector<double>& y);

}  // namespace groupmates
