// Greedy group selection (ALGORITHM.md section 4) and budget splitting, on raw arrays.
#include "groupmates/engine/greedy_group.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace groupmates {

namespace {

double dot(const float* a, const float* b, int64_t dim) {
  double s = 0;
  for (int64_t d = 0; d < dim; ++d) s += double(a[d]) * double(b[d]);
  return s;
}

}  // namespace

GreedyPicks greedy_group_select(const float* h, int64_t dim, const float* u, const int64_t* members,
                                int64_t n, int64_t k, RelationParams relation) {
  GreedyPicks picks;
  k = std::clamp<int64_t>(k, 0, n);
  if (k == 0) return picks;
  picks.indices.reserve(k);
  picks.scores.reserve(k);

  std::vector<double> a(n, 0.0);
  std::vector<char> taken(n, 0);
  const double inv_tau = 1.0 / relation.tau;
  const bool nearest = relation.aggregate == RelationAggregate::kNearest;

  // First pick: argmin u (first listed on ties).
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (u[members[i]] < u[members[best]]) best = i;
  for (int64_t picked = 1;; ++picked) {
    const int64_t row = members[best];
    taken[best] = 1;
    picks.indices.push_back(row);
    picks.scores.push_back(picked == 1 ? double(u[row]) : a[best] * double(u[row]));
    if (picked == k) break;

    // a_i <- ((n - 1) a_i + r_i,new) / n (kNearest: min(a_i, r_i,new)), then argmin a_i * u_i.
    const float* hn = h + row * dim;
    const double keep = double(picked - 1) / double(picked), add = 1.0 / double(picked);
    double best_value = std::numeric_limits<double>::infinity();
    best = -1;
    for (int64_t i = 0; i < n; ++i) {
      if (taken[i]) continue;
      const int64_t ri = members[i];
      const double r = relation.alpha * (1.0 - dot(h + ri * dim, hn, dim) * inv_tau);
      a[i] = picked == 1 ? r : nearest ? std::min(a[i], r) : keep * a[i] + add * r;
      const double value = a[i] * double(u[ri]);
      if (best < 0 || value < best_value) {
        best_value = value;
        best = i;
      }
    }
  }
  return picks;
}

int64_t ratio_budget(int64_t n, double ratio) {
  const double want = std::floor(ratio * double(n) + 0.5);
  return std::clamp<int64_t>(static_cast<int64_t>(want), 0, n);
}

std::vector<int64_t> allocate_budget(const std::vector<int64_t>& sizes, int64_t total) {
  const int64_t groups = static_cast<int64_t>(sizes.size());
  std::vector<int64_t> out(groups, 0);
  const int64_t sum = std::accumulate(sizes.begin(), sizes.end(), int64_t{0});
  if (sum <= 0 || total <= 0) return out;
  total = std::min(total, sum);
  std::vector<std::pair<double, int64_t>> remainders;  // (-fraction, group): sorts largest first, then lowest id
  int64_t given = 0;
  for (int64_t g = 0; g < groups; ++g) {
    const double exact = double(total) * double(sizes[g]) / double(sum);
    out[g] = std::min<int64_t>(sizes[g], static_cast<int64_t>(std::floor(exact)));
    given += out[g];
    remainders.emplace_back(-(exact - double(out[g])), g);
  }
  std::sort(remainders.begin(), remainders.end());
  for (size_t i = 0; given < total; i = (i + 1) % remainders.size()) {
    const int64_t g = remainders[i].second;
    if (out[g] < sizes[g]) {
      ++out[g];
      ++given;
    }
  }
  return out;
}

}  // namespace groupmates
