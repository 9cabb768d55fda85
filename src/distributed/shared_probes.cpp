#include "groupmates/engine/shared_probes.h"

#include <torch/csrc/jit/serialization/pickle.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>

#include "groupmates/error.h"

namespace groupmates {

std::string serialize_rollouts(const std::vector<LabelledRollout>& rollouts) {
  c10::impl::GenericList list(c10::AnyType::get());
  for (const auto& r : rollouts) {
    list.push_back(c10::ivalue::Tuple::create(
        {r.tokens.contiguous(), torch::tensor(r.labels, torch::kFloat64), static_cast<int64_t>(r.kind), r.probe_step,
         r.prior.defined() ? c10::IValue(r.prior.contiguous()) : c10::IValue()}));
  }
  const std::vector<char> bytes = torch::jit::pickle_save(list);
  return std::string(bytes.begin(), bytes.end());
}

std::vector<LabelledRollout> deserialize_rollouts(const std::string& bytes) {
  const c10::IValue v = torch::jit::pickle_load(std::vector<char>(bytes.begin(), bytes.end()));
  std::vector<LabelledRollout> out;
  for (const c10::IValue& item : v.toListRef()) {
    const auto& t = item.toTupleRef().elements();
    LabelledRollout r;
    r.tokens = t[0].toTensor();
    const torch::Tensor labels = t[1].toTensor();
    r.labels.assign(labels.data_ptr<double>(), labels.data_ptr<double>() + labels.numel());
    r.kind = static_cast<RolloutKind>(t[2].toInt());
    r.probe_step = t[3].toInt();
    if (!t[4].isNone()) r.prior = t[4].toTensor();
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<LabelledRollout> all_gather_rollouts(Collectives& collectives, const std::vector<LabelledRollout>& mine) {
  std::vector<LabelledRollout> out;
  for (const std::string& bytes : collectives.all_gather(serialize_rollouts(mine))) {
    std::vector<LabelledRollout> theirs = deserialize_rollouts(bytes);
    for (auto& r : theirs) out.push_back(std::move(r));
  }
  return out;
}

std::vector<uint64_t> hashes_of_ranks(Collectives& collectives, const std::string& bytes) {
  const uint64_t h = XXH3_64bits(bytes.data(), bytes.size());
  std::vector<uint64_t> out;
  for (const std::string& b : collectives.all_gather(std::string(reinterpret_cast<const char*>(&h), sizeof(h)))) {
    uint64_t v = 0;
    std::memcpy(&v, b.data(), std::min(b.size(), sizeof(v)));
    out.push_back(v);
  }
  return out;
}

std::string share_weights(Collectives& collectives, const std::string& weights, int root) {
  std::string shared = collectives.broadcast(weights, root);
  const std::vector<uint64_t> hashes = hashes_of_ranks(collectives, shared);
  for (size_t r = 1; r < hashes.size(); ++r)
    if (hashes[r] != hashes[0])
      throw Error(ErrorCode::kDistributed, "share_weights",
                  "rank " + std::to_string(r) + " holds other influence-model weights than rank 0 after the broadcast");
  return shared;
}

void all_reduce_cluster_sums(Collectives& collectives, torch::Tensor& sums, torch::Tensor& counts) {
  if (sums.dim() != 2 || counts.dim() != 1 || sums.size(0) != counts.size(0))
    throw Error(ErrorCode::kInvalidConfig, "all_reduce_cluster_sums", "expected sums [K, D] and counts [K]");
  collectives.all_reduce_sum(sums);
  collectives.all_reduce_sum(counts);
}

}  // namespace groupmates
