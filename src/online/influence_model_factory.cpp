#include "online/influence_model_factory.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Generator.h>

#include <mutex>

#include "groupmates/engine/hashed_ngram_encoder.h"
#include "groupmates/error.h"
#include "util/permutation.h"

namespace groupmates {

namespace {

// Runs f with LibTorch's global CPU generator seeded by `seed`, then restores the generator.
template <typename F>
auto with_seeded_generator(uint64_t seed, F&& f) {
  auto gen = at::detail::getDefaultCPUGenerator();
  torch::Tensor saved;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    saved = gen.get_state();
    gen.set_current_seed(seed);
  }
  auto result = f();
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(saved);
  }
  return result;
}

}  // namespace

std::shared_ptr<RelationalInfluenceModel> make_influence_model(const SelectionConfig& cfg, int64_t pad_id) {
  return with_seeded_generator(derive_seed(cfg.seed, 0x6d6f64656cULL), [&] {
    HashedNgramEncoderConfig ec;
    ec.num_buckets = cfg.encoder_buckets;
    ec.out_dim = cfg.encoder_dim;
    ec.embed_dim = cfg.encoder_bag_dim;
    ec.max_ngram = cfg.encoder_max_ngram;
    ec.seed = cfg.seed;
    ec.pad_id = pad_id;
    InfluenceModelConfig mc;
    mc.dropout = 0.0;  // refreshes run beside the trainer; dropout would draw from the shared generator
    mc.tau_min = cfg.relation_tau_min;
    auto model = std::make_shared<RelationalInfluenceModel>(std::make_shared<HashedNgramEncoder>(ec), mc);
    if (!cfg.train_ngram_table) {  // a fixed random projection of n-gram counts; imports keep the flag
      int frozen = 0;
      for (auto& item : model->named_parameters())
        if (item.key() == "encoder.table.weight") item.value().set_requires_grad(false), ++frozen;
      if (frozen != 1) throw Error(ErrorCode::kInternal, "make_influence_model", "the encoder has no parameter table.weight");
    }
    return model;
  });
}

}  // namespace groupmates
