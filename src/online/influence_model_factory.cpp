#include "online/influence_model_factory.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Generator.h>

#include <cmath>
#include <mutex>

#include "groupmates/engine/hashed_ngram_encoder.h"
#include "groupmates/engine/torchscript_encoder.h"
#include "groupmates/error.h"
#include "util/permutation.h"

namespace groupmates {

namespace {

// LibTorch's default initialisation of the model's random parameters, drawn from `gen` in the order the
// modules are built (EmbeddingBag: N(0, 1); Linear: weight U(+-1/sqrt(fan_in)) as kaiming_uniform_(a =
// sqrt(5)) computes it, bias U(+-1/sqrt(fan_in))). Same values as building under the global generator
// seeded alike (influence_model_factory_test checks it bit for bit), without reading that generator.
// `hashed_encoder`: the hashed n-gram encoder's table and layers (a TorchScript encoder's weights are the
// user's, not drawn). `head`: also the linear head (drawn last; a zero head, InfluenceModelConfig::zero_head,
// is not drawn). tau, alpha and the prior weight are constants (InfluenceModelConfig).
// `table`: draw the n-gram table too (false when the model shares one drawn before, with `gen` as it stood
// after that draw: the other parameters then get the same values).
void init_parameters(RelationalInfluenceModel& model, at::Generator gen, bool hashed_encoder, bool head,
                     bool table = true) {
  torch::NoGradGuard no_grad;
  const auto params = model.named_parameters();
  const auto linear = [&](const std::string& prefix) {
    torch::Tensor w = params[prefix + ".weight"], b = params[prefix + ".bias"];
    const int64_t fan_in = w.size(1);
    const double gain = std::sqrt(2.0 / (1 + std::pow(std::sqrt(5.0), 2)));  // calculate_gain(kLeakyReLU, sqrt(5))
    const double bound = std::sqrt(3) * (gain / std::sqrt(fan_in));
    w.uniform_(-bound, bound, gen);
    const double bias_bound = 1 / std::sqrt(fan_in);
    b.uniform_(-bias_bound, bias_bound, gen);
  };
  if (hashed_encoder) {
    if (table) params["encoder.table.weight"].normal_(0.0, 1.0, gen);
    linear("encoder.fc1");
    linear("encoder.fc2");
  }
  if (head) linear("head");
}

// Runs f with LibTorch's global CPU generator's state restored afterwards: building modules draws from
// it, and the trainer's stream must not move because a loader was built.
template <typename F>
auto with_generator_restored(F&& f) {
  auto gen = at::detail::getDefaultCPUGenerator();
  torch::Tensor saved;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    saved = gen.get_state();
  }
  auto result = f();
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(saved);
  }
  return result;
}

}  // namespace

namespace {

// The seed of a model's private generator.
uint64_t model_seed(const SelectionConfig& cfg) { return derive_seed(cfg.seed, 0x6d6f64656cULL); }

HashedNgramEncoderConfig hashed_encoder_config(const SelectionConfig& cfg, int64_t pad_id) {
  HashedNgramEncoderConfig ec;
  ec.num_buckets = cfg.encoder_buckets;
  ec.out_dim = cfg.encoder_dim;
  ec.embed_dim = cfg.encoder_bag_dim;
  ec.max_ngram = cfg.encoder_max_ngram;
  ec.seed = cfg.seed;
  ec.pad_id = pad_id;
  return ec;
}

}  // namespace

InfluenceModelFactory::InfluenceModelFactory(const SelectionConfig& config, int64_t pad_id, torch::Device device)
    : config_(config), pad_id_(pad_id) {
  if (config.encoder == EncoderKind::kTorchScript) {
    scripted_ = std::make_shared<TorchScriptEncoder>(config.encoder_path, -1, device, pad_id);
    identity_ = scripted_->identity();
  } else {
    identity_ = HashedNgramEncoder::identity_of(hashed_encoder_config(config, pad_id));
    if (!config.train_ngram_table) {  // drawn once here, as make() would draw it; shared by every model
      const HashedNgramEncoderConfig ec = hashed_encoder_config(config, pad_id);
      at::Generator gen = at::detail::createCPUGenerator(model_seed(config));
      table_ = torch::empty({ec.num_buckets, ec.embed_dim}, torch::kFloat);
      {
        torch::NoGradGuard no_grad;
        table_.normal_(0.0, 1.0, gen);
      }
      after_table_ = gen.get_state();  // not gen.clone(): LibTorch 1.13's Generator::clone leaks the copy
    }
  }
}

std::shared_ptr<RelationalInfluenceModel> InfluenceModelFactory::make() const {
  const SelectionConfig& cfg = config_;
  return with_generator_restored([&] {
    InfluenceModelConfig mc;
    mc.dropout = 0.0;  // refreshes run beside the trainer; dropout would draw from the shared generator
    mc.tau_min = cfg.relation_tau_min;
    mc.tau_init = cfg.relation_tau;
    // A private generator: the initial weights must not depend on what other threads draw meanwhile.
    at::Generator gen = at::detail::createCPUGenerator(model_seed(cfg));
    if (table_.defined()) gen.set_state(after_table_);  // as it stood after drawing the shared table
    if (scripted_) {  // the scripted module's weights are the user's (frozen); only the head is ours
      auto model = std::make_shared<RelationalInfluenceModel>(scripted_->share(), mc);
      init_parameters(*model, gen, /*hashed_encoder=*/false, !mc.zero_head);
      return model;
    }
    auto model = std::make_shared<RelationalInfluenceModel>(
        std::make_shared<HashedNgramEncoder>(hashed_encoder_config(cfg, pad_id_), table_), mc);
    init_parameters(*model, gen, /*hashed_encoder=*/true, !mc.zero_head, /*table=*/!table_.defined());
    if (!cfg.train_ngram_table) {  // a fixed random projection of n-gram counts; imports keep the flag
      int frozen = 0;
      for (auto& item : model->named_parameters())
        if (item.key() == "encoder.table.weight") item.value().set_requires_grad(false), ++frozen;
      if (frozen != 1) throw Error(ErrorCode::kInternal, "make_influence_model", "the encoder has no parameter table.weight");
    }
    return model;
  });
}

std::shared_ptr<RelationalInfluenceModel> make_influence_model(const SelectionConfig& cfg, int64_t pad_id) {
  return InfluenceModelFactory(cfg, pad_id).make();
}

}  // namespace groupmates
