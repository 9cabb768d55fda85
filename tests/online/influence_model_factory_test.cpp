// make_influence_model: the initial weights are LibTorch's default initialisation drawn from the seed
// (checked bit for bit against building under the seeded global generator, the straightforward way),
// do not depend on what other threads draw from the global generator meanwhile (they did: a loader
// built while another loader's probe ran got other initial weights), and leave that generator as it was.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <atomic>
#include <thread>

#include "common/test_seed.h"
#include "groupmates/engine/hashed_ngram_encoder.h"
#include "online/influence_model_factory.h"
#include "util/permutation.h"

using namespace groupmates;

namespace {

SelectionConfig random_config(uint64_t seed) {
  std::mt19937_64 rng(seed);
  SelectionConfig c;
  c.seed = rng();
  c.encoder_buckets = 64 + int64_t(rng() % 2000);
  c.encoder_dim = 1 + int64_t(rng() % 40);
  c.encoder_bag_dim = 1 + int64_t(rng() % 70);
  c.encoder_max_ngram = 1 + int(rng() % 3);
  c.relation_tau = 1.0 + double(rng() % 400) / 100.0;
  return c;
}

// The reference: built under the global generator seeded from config.seed (what the factory did before).
std::shared_ptr<RelationalInfluenceModel> reference_model(const SelectionConfig& cfg, int64_t pad_id) {
  torch::manual_seed(derive_seed(cfg.seed, 0x6d6f64656cULL));
  HashedNgramEncoderConfig ec;
  ec.num_buckets = cfg.encoder_buckets;
  ec.out_dim = cfg.encoder_dim;
  ec.embed_dim = cfg.encoder_bag_dim;
  ec.max_ngram = cfg.encoder_max_ngram;
  ec.seed = cfg.seed;
  ec.pad_id = pad_id;
  InfluenceModelConfig mc;
  mc.dropout = 0.0;
  mc.tau_min = cfg.relation_tau_min;
  mc.tau_init = cfg.relation_tau;
  return std::make_shared<RelationalInfluenceModel>(std::make_shared<HashedNgramEncoder>(ec), mc);
}

void expect_same_parameters(RelationalInfluenceModel& a, RelationalInfluenceModel& b) {
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& item : pa) {
    ASSERT_TRUE(pb.contains(item.key())) << item.key();
    EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key() << " differs";
  }
}

}  // namespace

TEST(InfluenceModelFactory, InitialWeightsAreTheDefaultInitialisationDrawnFromTheSeed) {
  const uint64_t seed = testing_seed::fresh();
  SCOPED_TRACE(testing_seed::trace(seed));
  for (uint64_t k = 0; k < 4; ++k) {
    const SelectionConfig cfg = random_config(seed + k);
    auto got = make_influence_model(cfg, -1);
    auto want = reference_model(cfg, -1);
    expect_same_parameters(*got, *want);
    EXPECT_DOUBLE_EQ(got->tau(), double(float(cfg.relation_tau))) << "tau starts at SelectionConfig.relation_tau";
    EXPECT_FALSE(torch::equal(got->named_parameters()["encoder.fc1.weight"],
                              make_influence_model(random_config(seed + k + 100), -1)->named_parameters()["encoder.fc1.weight"]))
        << "another seed, other weights";
  }
}

TEST(InfluenceModelFactory, LeavesTheGlobalGeneratorWhereItWas) {
  const uint64_t seed = testing_seed::fresh();
  SCOPED_TRACE(testing_seed::trace(seed));
  torch::manual_seed(seed);
  const torch::Tensor want = torch::rand({8});
  torch::manual_seed(seed);
  make_influence_model(random_config(seed), -1);
  EXPECT_TRUE(torch::equal(torch::rand({8}), want));
}

TEST(InfluenceModelFactory, OtherThreadsDrawingMeanwhileChangeNothing) {
  const uint64_t seed = testing_seed::fresh();
  SCOPED_TRACE(testing_seed::trace(seed));
  SelectionConfig cfg = random_config(seed);
  cfg.encoder_buckets = 4096;  // long enough to build that the other thread's draws land inside
  cfg.encoder_bag_dim = 64;
  const std::string want = make_influence_model(cfg, -1)->export_weights();
  std::atomic<bool> stop{false};
  std::thread other([&] {  // e.g. another loader's probe cloning its live model
    while (!stop.load()) torch::rand({64});
  });
  int differing = 0;
  for (int i = 0; i < 30; ++i) differing += make_influence_model(cfg, -1)->export_weights() != want;
  stop.store(true);
  other.join();
  EXPECT_EQ(differing, 0) << "of 30 models built while another thread drew from the global generator";
}

// The frozen n-gram table is drawn once per factory and shared by the models it makes (one ~17 MB copy
// per loader instead of one per model); every model still equals the straightforward build bit for bit,
// and a trained table (train_ngram_table) stays each model's own.
TEST(InfluenceModelFactory, ModelsOfOneFactoryShareOneFrozenTableAndEqualTheReference) {
  const uint64_t seed = testing_seed::fresh();
  SCOPED_TRACE(testing_seed::trace(seed));
  for (bool trained : {false, true}) {
    SelectionConfig cfg = random_config(seed);
    cfg.train_ngram_table = trained;
    const InfluenceModelFactory factory(cfg, -1);
    std::vector<std::shared_ptr<RelationalInfluenceModel>> models;
    for (int i = 0; i < 3; ++i) models.push_back(factory.make());
    auto want = reference_model(cfg, -1);
    for (auto& m : models) {
      expect_same_parameters(*m, *want);
      const torch::Tensor t = m->named_parameters()["encoder.table.weight"];
      EXPECT_EQ(t.requires_grad(), trained);
      const bool shared = t.data_ptr() == models[0]->named_parameters()["encoder.table.weight"].data_ptr();
      if (m != models[0]) EXPECT_EQ(shared, !trained) << (trained ? "a trained table is shared" : "a frozen table is copied");
    }
  }
}

// Importing weights never writes into a shared frozen table: equal bytes are skipped (the table stays
// shared), other bytes give the importing model a table of its own; the other models keep the factory's.
TEST(InfluenceModelFactory, ImportingNeverWritesIntoTheSharedTable) {
  const uint64_t seed = testing_seed::fresh();
  SCOPED_TRACE(testing_seed::trace(seed));
  const SelectionConfig cfg = random_config(seed);
  const InfluenceModelFactory factory(cfg, -1);
  auto a = factory.make(), b = factory.make();
  const auto table = [](RelationalInfluenceModel& m) { return m.named_parameters()["encoder.table.weight"]; };
  const torch::Tensor original = table(*b).clone();

  a->import_weights(b->export_weights());  // the same table: no copy, still shared
  EXPECT_EQ(table(*a).data_ptr(), table(*b).data_ptr());

  auto other = make_influence_model(cfg, -1);  // the same identity, another table (e.g. weights edited)
  {
    torch::NoGradGuard no_grad;
    table(*other).add_(torch::randn(table(*other).sizes(), at::detail::createCPUGenerator(seed)));
  }
  a->import_weights(other->export_weights());
  EXPECT_TRUE(torch::equal(table(*a), table(*other))) << "the imported table is the model's";
  EXPECT_NE(table(*a).data_ptr(), table(*b).data_ptr());
  EXPECT_TRUE(torch::equal(table(*b), original)) << "the import wrote into the table other models share";
  EXPECT_FALSE(table(*a).requires_grad());
  EXPECT_TRUE(torch::equal(factory.make()->named_parameters()["encoder.table.weight"], original));
}
