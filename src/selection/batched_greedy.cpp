// Batched greedy group selection with tensor ops (device-generic).
#include "groupmates/engine/batched_greedy.h"

#include <limits>

#include "groupmates/error.h"

namespace groupmates {

BatchedPicks batched_greedy_select(const torch::Tensor& h, const torch::Tensor& u, const torch::Tensor& valid,
                                   const torch::Tensor& quota, RelationParams relation) {
  if (h.dim() != 3 || u.dim() != 2 || valid.sizes() != u.sizes() || h.size(0) != u.size(0) || h.size(1) != u.size(1))
    throw Error(ErrorCode::kInvalidConfig, "batched_greedy_select", "need h [C, N, D], u and valid [C, N], quota [C]");
  const int64_t clusters = h.size(0), members = h.size(1), dim = h.size(2);
  const int64_t steps = clusters == 0 ? 0 : quota.max().item<int64_t>();
  const auto long_options = torch::TensorOptions(h.device()).dtype(torch::kLong);
  BatchedPicks out{torch::full({clusters, steps}, -1, long_options), torch::zeros({clusters, steps}, h.options())};
  if (steps == 0 || members == 0) return out;

  const torch::Tensor uu = u.to(h.scalar_type());
  const torch::Tensor q = quota.to(h.device(), torch::kLong);
  torch::Tensor taken = valid.to(h.device(), torch::kBool).logical_not();
  torch::Tensor a = torch::zeros_like(uu);
  const double inf = std::numeric_limits<double>::infinity();
  for (int64_t s = 0; s < steps; ++s) {
    const torch::Tensor value = (s == 0 ? uu : a * uu).masked_fill(taken, inf);
    const torch::Tensor pick = value.argmin(1, /*keepdim=*/true);  // [C, 1]; first minimum on ties
    const torch::Tensor active = q.gt(s).unsqueeze(1);              // [C, 1]
    out.positions.slice(1, s, s + 1).copy_(torch::where(active, pick, torch::full_like(pick, -1)));
    out.scores.slice(1, s, s + 1).copy_(torch::where(active, value.gather(1, pick), torch::zeros_like(uu.slice(1, 0, 1))));
    taken = taken.logical_or(torch::zeros_like(taken).scatter_(1, pick, active));
    if (s + 1 == steps) break;
    // a_i <- (s a_i + r_i,new) / (s + 1) (kNearest: min(a_i, r_i,new)), r = alpha * (1 - h_i . h_new / tau).
    const torch::Tensor newest = h.gather(1, pick.unsqueeze(2).expand({clusters, 1, dim}));  // [C, 1, D]
    const torch::Tensor r = relation.alpha * (1.0 - torch::bmm(h, newest.transpose(1, 2)).squeeze(2) / relation.tau);
    if (s == 0) a = r;
    else if (relation.aggregate == RelationAggregate::kNearest) a = torch::minimum(a, r);
    else a = a * (double(s) / double(s + 1)) + r / double(s + 1);
  }
  return out;
}

}  // namespace groupmates
