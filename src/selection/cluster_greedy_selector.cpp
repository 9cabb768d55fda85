// ClusterGreedySelector: Group-MATES greedy selection within clusters, solved in parallel.
#include <algorithm>
#include <cmath>
#include <queue>
#include <tuple>
#include <vector>

#include <ATen/Parallel.h>

#include "groupmates/engine/batched_greedy.h"
#include "groupmates/engine/selector.h"
#include "selection/host_window.h"

namespace groupmates {

namespace {

// Clusters with a quota, padded into [C, N] on the embeddings' device and solved in one batch.
std::vector<GreedyPicks> solve_batched(const SelectionInput& input, const std::vector<std::vector<int64_t>>& members,
                                       const std::vector<int64_t>& quota) {
  std::vector<GreedyPicks> picks(members.size());
  std::vector<int64_t> active;
  int64_t width = 0;
  for (size_t c = 0; c < members.size(); ++c)
    if (quota[c] > 0) {
      active.push_back(int64_t(c));
      width = std::max<int64_t>(width, int64_t(members[c].size()));
    }
  if (active.empty()) return picks;
  const int64_t n = int64_t(active.size());
  std::vector<int64_t> index(static_cast<size_t>(n * width), -1);
  std::vector<int64_t> q(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const auto& m = members[active[i]];
    std::copy(m.begin(), m.end(), index.begin() + i * width);
    q[i] = quota[active[i]];
  }
  const torch::Device device = input.embeddings.device();
  const torch::Dtype dtype = device.is_cpu() ? torch::kDouble : torch::kFloat;
  const torch::Tensor idx = torch::from_blob(index.data(), {n, width}, torch::kLong).to(device);
  const torch::Tensor flat = idx.clamp_min(0).flatten();
  const torch::Tensor h = input.embeddings.detach().to(dtype).index_select(0, flat).view({n, width, -1});
  const torch::Tensor u = input.u.detach().to(device, dtype).index_select(0, flat).view({n, width});
  const BatchedPicks got = batched_greedy_select(h, u, idx.ge(0), torch::from_blob(q.data(), {n}, torch::kLong).to(device),
                                                  input.relation);
  const torch::Tensor positions = got.positions.cpu().contiguous();
  const torch::Tensor scores = got.scores.to(torch::kCPU, torch::kDouble).contiguous();
  const int64_t steps = positions.size(1);
  const int64_t* pos = positions.data_ptr<int64_t>();
  const double* sc = scores.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) {
    GreedyPicks& p = picks[active[i]];
    const auto& m = members[active[i]];
    for (int64_t s = 0; s < quota[active[i]] && s < steps; ++s) {
      p.indices.push_back(m[pos[i * steps + s]]);
      p.scores.push_back(sc[i * steps + s]);
    }
  }
  return picks;
}

}  // namespace

ClusterGreedySelector::ClusterGreedySelector(BudgetMode mode, double prefilter_ratio, GreedyExecution execution,
                                             bool merge_budgets)
    : mode_(mode), prefilter_ratio_(prefilter_ratio), execution_(execution), merge_budgets_(merge_budgets) {
  if (!(prefilter_ratio > 0 && prefilter_ratio <= 1))
    throw Error(ErrorCode::kInvalidConfig, "ClusterGreedySelector.prefilter_ratio",
                "got " + std::to_string(prefilter_ratio) + ", allowed (0, 1]");
}

Selection ClusterGreedySelector::select(const SelectionInput& input, double ratio) const {
  const bool batched = execution_ == GreedyExecution::kBatchedTensor ||
                       (execution_ == GreedyExecution::kAuto && input.embeddings.defined() && input.embeddings.is_cuda());
  // u and cluster ids come to the host (small); embeddings only for the host path.
  const HostWindow w = to_host(input, /*need_h=*/!batched, /*need_clusters=*/true);
  const int64_t budget = ratio_budget(w.rows, ratio);
  Selection out;
  if (budget == 0) return out;
  const float* u = w.u.data_ptr<float>();
  const int64_t* cluster = w.clusters.data_ptr<int64_t>();

  // Candidate rows, ascending: the whole window, or its best budget / prefilter_ratio rows by u.
  std::vector<int64_t> rows(w.rows);
  for (int64_t i = 0; i < w.rows; ++i) rows[i] = i;
  if (mode_ == BudgetMode::kInfluencePrefilter) {
    const int64_t keep = std::min<int64_t>(w.rows, static_cast<int64_t>(std::ceil(double(budget) / prefilter_ratio_)));
    auto better = [u](int64_t a, int64_t b) { return u[a] < u[b] || (u[a] == u[b] && a < b); };
    std::nth_element(rows.begin(), rows.begin() + keep, rows.end(), better);
    rows.resize(keep);
    std::sort(rows.begin(), rows.end());
  }

  // RelationParams::nonpositive_u: u - max over the candidates (one shift for all clusters, so the
  // merge below compares like with like).
  std::vector<float> shifted;
  SelectionInput shifted_input;
  const SelectionInput* in = &input;
  if (input.relation.nonpositive_u && !rows.empty()) {
    if (batched) {
      shifted_input = input;
      shifted_input.u = input.u - double(max_u_over(u, rows));
      in = &shifted_input;
    } else {
      shifted = u_minus_max(u, w.rows, rows);
      u = shifted.data();
    }
  }

  // Members of each cluster in row order; k_c by largest remainder so that sum k_c = budget.
  const int64_t clusters = w.clusters.max().item<int64_t>() + 1;
  std::vector<std::vector<int64_t>> members(clusters);
  for (int64_t r : rows) members[cluster[r]].push_back(r);
  std::vector<int64_t> sizes(clusters);
  for (int64_t c = 0; c < clusters; ++c) sizes[c] = static_cast<int64_t>(members[c].size());
  std::vector<int64_t> quota = allocate_budget(sizes, budget);
  if (merge_budgets_)
    for (int64_t c = 0; c < clusters; ++c) quota[c] = std::min(sizes[c], budget);

  std::vector<GreedyPicks> picks(clusters);
  if (batched) {
    picks = solve_batched(*in, members, quota);
  } else {
    const float* h = w.h.data_ptr<float>();
    at::parallel_for(0, clusters, 1, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c)
        picks[c] = greedy_group_select(h, w.dim, u, members[c].data(), sizes[c], quota[c], input.relation);
    });
  }

  // k-way merge by the score of each cluster's next pick; keeps every cluster's greedy order.
  using Head = std::tuple<double, int64_t, size_t>;  // (score, cluster, position)
  std::priority_queue<Head, std::vector<Head>, std::greater<Head>> heads;
  for (int64_t c = 0; c < clusters; ++c)
    if (!picks[c].indices.empty()) heads.emplace(picks[c].scores[0], c, 0);
  out.indices.reserve(budget);
  out.scores.reserve(budget);
  while (!heads.empty() && int64_t(out.indices.size()) < budget) {
    const auto [score, c, pos] = heads.top();
    heads.pop();
    out.indices.push_back(picks[c].indices[pos]);
    out.scores.push_back(score);
    if (pos + 1 < picks[c].indices.size()) heads.emplace(picks[c].scores[pos + 1], c, pos + 1);
  }
  return out;
}

}  // namespace groupmates
