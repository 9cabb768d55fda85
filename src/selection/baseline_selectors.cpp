// Baseline selectors: relational greedy without clusters, random, and MATES individual (Gumbel-top-k).
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "groupmates/engine/selector.h"
#include "selection/host_window.h"

namespace groupmates {

Selection GreedySelector::select(const SelectionInput& input, double ratio) const {
  const HostWindow w = to_host(input, /*need_h=*/true, /*need_clusters=*/false);
  std::vector<int64_t> all(w.rows);
  for (int64_t i = 0; i < w.rows; ++i) all[i] = i;
  const float* u = w.u.data_ptr<float>();
  std::vector<float> shifted;  // RelationParams::nonpositive_u: u - its maximum over the window
  if (input.relation.nonpositive_u && w.rows > 0) {
    shifted = u_minus_max(u, w.rows, all);
    u = shifted.data();
  }
  GreedyPicks picks =
      greedy_group_select(w.h.data_ptr<float>(), w.dim, u, all.data(), w.rows, ratio_budget(w.rows, ratio), input.relation);
  return {std::move(picks.indices), std::move(picks.scores)};
}

Selection RandomSelector::select(const SelectionInput& input, double ratio) const {
  const HostWindow w = to_host(input, /*need_h=*/false, /*need_clusters=*/false);
  const int64_t budget = ratio_budget(w.rows, ratio);
  std::mt19937_64 rng(mix_seed(seed_, input.window_seed));
  std::vector<int64_t> order(w.rows);
  for (int64_t i = 0; i < w.rows; ++i) order[i] = i;
  Selection out;
  for (int64_t i = 0; i < budget; ++i) {  // partial Fisher-Yates
    const uint64_t span = uint64_t(w.rows - i);
    const int64_t j = i + static_cast<int64_t>((static_cast<unsigned __int128>(rng()) * span) >> 64);
    std::swap(order[i], order[j]);
    out.indices.push_back(order[i]);
    out.scores.push_back(double(i));
  }
  return out;
}

Selection IndividualSelector::select(const SelectionInput& input, double ratio) const {
  const HostWindow w = to_host(input, /*need_h=*/false, /*need_clusters=*/false);
  const int64_t budget = ratio_budget(w.rows, ratio);
  const float* u = w.u.data_ptr<float>();
  std::mt19937_64 rng(mix_seed(seed_, input.window_seed));
  // Score = -(key) with key = -u/T + Gumbel noise, so lower is better like every other selector.
  std::vector<double> score(w.rows);
  for (int64_t i = 0; i < w.rows; ++i) {
    const double uniform = (double(rng() >> 11) + 0.5) * 0x1.0p-53;  // in (0, 1)
    const double gumbel = -std::log(-std::log(uniform));
    score[i] = temperature_ > 0 ? -(-double(u[i]) / temperature_ + gumbel) : double(u[i]);  // T = 0: top-k by u
  }
  std::vector<int64_t> order(w.rows);
  for (int64_t i = 0; i < w.rows; ++i) order[i] = i;
  auto better = [&](int64_t a, int64_t b) { return score[a] < score[b] || (score[a] == score[b] && a < b); };
  std::partial_sort(order.begin(), order.begin() + budget, order.end(), better);
  Selection out;
  for (int64_t i = 0; i < budget; ++i) {
    out.indices.push_back(order[i]);
    out.scores.push_back(score[order[i]]);
  }
  return out;
}

}  // namespace groupmates
