// SelectionConfig.encoder: the settings are validated (naming the field), a selecting loader over a
// TorchScript encoder resumes its stream exactly (also from a copy of the module at another path),
// and a state saved with one encoder is refused by a loader with another (other module weights, the
// hashed n-gram encoder, or the other way round), naming LoaderState.extra.gm.encoder. The factory's
// models over a TorchScript module neither depend on nor move LibTorch's global generator.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "common/scripted_encoder.h"
#include "common/thrown_error.h"
#include "groupmates/error.h"
#include "groupmates/selection_config.h"
#include "online/influence_model_factory.h"
#include "online_test_util.h"

using namespace gmonline;
using testing_errors::where_of;

class SelectionEncoderTest : public OnlineFixture {};

// Like the hashed encoder's (influence_model_factory_test): a model over the loaded module is the same
// whatever other threads draw from the global generator meanwhile, and building it leaves that generator
// where it was; the scripted module's weights are the file's (its output unchanged through the model).
TEST_F(SelectionEncoderTest, TorchScriptModelsIgnoreAndKeepTheGlobalGenerator) {
  const auto weights = testing_scripted::write_mean_pool_encoder(dir.file("a.pt"), kVocab, 8, 12, seed);
  SelectionConfig cfg = selection_config(seed);
  cfg.encoder = EncoderKind::kTorchScript;
  cfg.encoder_path = dir.file("a.pt");
  const InfluenceModelFactory factory(cfg, -1);
  torch::manual_seed(seed);
  const torch::Tensor want_draws = torch::rand({8});
  torch::manual_seed(seed);
  const auto first = factory.make();
  EXPECT_TRUE(torch::equal(torch::rand({8}), want_draws)) << "building the model moved the global generator";
  const std::string want = first->export_weights();
  std::atomic<bool> stop{false};
  std::thread other([&] {  // e.g. another loader's probe cloning its live model
    while (!stop.load()) torch::rand({64});
  });
  int differing = 0;
  for (int i = 0; i < 30; ++i) differing += factory.make()->export_weights() != want;
  stop.store(true);
  other.join();
  EXPECT_EQ(differing, 0) << "of 30 models built while another thread drew from the global generator";
  const torch::Tensor ids = torch::randint(0, kVocab, {5, int64_t(kT)}, torch::kLong);
  torch::Tensor want_h = testing_scripted::mean_pool_reference(weights, ids, {});
  want_h = want_h / want_h.norm(2, 1, true);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(first->embed(ids), want_h, 1e-5, 1e-6));
}

TEST_F(SelectionEncoderTest, TorchScriptStreamResumesAndAnotherEncoderIsRefused) {
  using testing_scripted::write_mean_pool_encoder;
  write_mean_pool_encoder(dir.file("a.pt"), kVocab, 8, 12, seed);
  write_mean_pool_encoder(dir.file("a_copy.pt"), kVocab, 8, 12, seed);
  write_mean_pool_encoder(dir.file("b.pt"), kVocab, 8, 12, seed + 1);
  SelectionConfig scripted = selection_config(seed);
  scripted.encoder = EncoderKind::kTorchScript;
  scripted.encoder_path = dir.file("a.pt");

  // Validation names the field.
  SelectionConfig bad = scripted;
  bad.encoder_path = "";
  EXPECT_EQ(where_of([&] { bad.validate(); }, ErrorCode::kInvalidConfig), "SelectionConfig.encoder_path");
  bad.encoder_path = dir.file("missing.pt");
  EXPECT_EQ(where_of([&] { bad.validate(); }, ErrorCode::kInvalidConfig), "SelectionConfig.encoder_path");
  bad = selection_config(seed);
  bad.encoder_path = dir.file("a.pt");  // a path the hashed encoder would ignore
  EXPECT_EQ(where_of([&] { bad.validate(); }, ErrorCode::kInvalidConfig), "SelectionConfig.encoder_path");

  // A run with refreshes, saved after step k, resumed from a copy of the module at another path.
  const int64_t total = 20, k = 9;
  std::string saved;
  Emitted original;
  std::unique_ptr<ProbeTarget> live_at_k;
  {
    GroupMatesLoader loader(loader_config(path, seed), scripted, probe_config());
    auto live = make_live_model(seed);
    original = train(loader, *live, 0, k + 1);
    saved = loader.state().serialize();
    live_at_k = live->clone();
    const Emitted rest = train(loader, *live, k + 1, total);
    original.inputs.insert(original.inputs.end(), rest.inputs.begin(), rest.inputs.end());
    original.versions.insert(original.versions.end(), rest.versions.begin(), rest.versions.end());
  }
  EXPECT_GT(original.versions.back(), 1u) << "a refreshed model selected (its weights are in the state)";
  EXPECT_EQ(LoaderState::parse(saved).extra.at("gm.encoder").rfind("torchscript(weights_xxh3=", 0), 0u);
  SelectionConfig copy = scripted;
  copy.encoder_path = dir.file("a_copy.pt");
  {
    GroupMatesLoader resumed(loader_config(path, seed), copy, probe_config(), LoaderState::parse(saved));
    const Emitted rest = train(resumed, *live_at_k, k + 1, total);
    ASSERT_EQ(rest.inputs.size(), size_t(total - k - 1));
    for (size_t i = 0; i < rest.inputs.size(); ++i) {
      EXPECT_TRUE(torch::equal(rest.inputs[i], original.inputs[k + 1 + i])) << "batch " << k + 1 + i;
      EXPECT_EQ(rest.versions[i], original.versions[k + 1 + i]) << "batch " << k + 1 + i;
    }
  }

  // Another module (same shapes), the hashed encoder: refused, naming the key.
  SelectionConfig other = scripted;
  other.encoder_path = dir.file("b.pt");
  EXPECT_EQ(where_of([&] { GroupMatesLoader l(loader_config(path, seed), other, probe_config(), LoaderState::parse(saved)); },
                     ErrorCode::kInvalidState),
            "LoaderState.extra.gm.encoder");
  EXPECT_EQ(where_of([&] {
              GroupMatesLoader l(loader_config(path, seed), selection_config(seed), probe_config(), LoaderState::parse(saved));
            }, ErrorCode::kInvalidState),
            "LoaderState.extra.gm.encoder");
  // And a hashed n-gram state (other hash seed, or a TorchScript loader) is refused too.
  std::string hashed_state;
  {
    GroupMatesLoader loader(loader_config(path, seed), selection_config(seed), ProbeConfig{});
    loader.next();
    hashed_state = loader.state().serialize();
  }
  EXPECT_EQ(where_of([&] { GroupMatesLoader l(loader_config(path, seed), scripted, ProbeConfig{}, LoaderState::parse(hashed_state)); },
                     ErrorCode::kInvalidState),
            "LoaderState.extra.gm.encoder");
  SelectionConfig wider = selection_config(seed);
  wider.encoder_max_ngram = 3;  // another encoder of the same tensor shapes
  EXPECT_EQ(where_of([&] { GroupMatesLoader l(loader_config(path, seed), wider, ProbeConfig{}, LoaderState::parse(hashed_state)); },
                     ErrorCode::kInvalidState),
            "LoaderState.extra.gm.encoder");
}
