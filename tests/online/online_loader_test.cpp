// GroupMatesLoader with selection and probes of a live TinyGpt: warm-up, the switch to the
// refreshed model, per-window budgets, and full-state resume that reproduces the emitted stream.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>

#include "groupmates/error.h"
#include <torch/torch.h>

#include "groupmates/loader.h"
#include "groupmates/module_probe_target.h"
#include "tiny_gpt/tiny_gpt.h"
#include "model/weights_format.h"
#include "online/blob_text.h"
#include "online/influence_model_factory.h"
#include "online_test_util.h"

using namespace groupmates;

using namespace gmonline;

class OnlineLoaderTest : public OnlineFixture {};

TEST_F(OnlineLoaderTest, EachWindowEmitsItsBudgetOfDistinctCandidates) {
  // No probes: warm-up all along (random selection), but windows, budgets and ids are real.
  GroupMatesLoader loader(loader_config(path, seed), selection_config(seed), ProbeConfig{});
  StreamingLoader plain([&] {
    LoaderConfig c = loader_config(path, seed);
    c.batch_size = 32;  // one window per batch
    return c;
  }());
  for (int w = 0; w < 5; ++w) {
    const auto window = plain.next();
    std::set<uint64_t> in_window;
    for (const auto& id : window->ids) in_window.insert(id.hash);
    std::set<uint64_t> emitted;
    for (int b = 0; b < 4; ++b) {  // 16 of 32 = 4 batches of 4
      auto batch = loader.next();
      ASSERT_TRUE(batch);
      EXPECT_EQ(batch->input_ids.sizes(), (std::vector<int64_t>{4, kT}));
      EXPECT_EQ(batch->model_version, 1u);
      EXPECT_TRUE(torch::isnan(batch->influence).all().item<bool>()) << "warm-up rows carry no prediction";
      for (const auto& id : batch->ids) {
        EXPECT_TRUE(in_window.count(id.hash)) << "window " << w;
        emitted.insert(id.hash);
      }
    }
    EXPECT_EQ(emitted.size(), 16u) << "window " << w;
  }
  const SelectionStats s = loader.selection_stats();
  EXPECT_EQ(s.windows, 5u);
  EXPECT_EQ(s.warmup_windows, 5u);
  EXPECT_EQ(s.selected, 80u);
}

TEST_F(OnlineLoaderTest, RefreshEndsWarmUpAtTheRuleDefinedStep) {
  GroupMatesLoader loader(loader_config(path, seed), selection_config(seed), probe_config());
  auto live = make_live_model(seed);
  const Emitted e = train(loader, *live, 0, 40);
  const SelectionStats s = loader.selection_stats();
  EXPECT_GE(s.probes.probes_completed, 3);
  EXPECT_GE(s.refreshes, 3u);
  EXPECT_GT(s.warmup_windows, 0u);
  EXPECT_LT(s.warmup_windows, s.windows);
  // The first probe is at step 2 (effective at 5): batches before step 5 are warm-up (version 1).
  for (int i = 0; i < 5; ++i) EXPECT_EQ(e.versions[i], 1u) << "batch " << i;
  EXPECT_GT(e.versions.back(), 1u);
  EXPECT_EQ(s.probes.probes_skipped_busy, 0) << "due probes wait, they are never skipped";
  // Queue depths (bench/soak.py samples them; as of the current window): the probes' rollouts are held, within the
  // buffer's bound; the current version's weights are kept; the replay buffer (replay_share "auto": 0.5 here)
  // holds rows, at most replay_rows.
  EXPECT_GE(s.label_buffer_rollouts, 4u) << "a probe's rollouts";
  EXPECT_LE(s.label_buffer_rollouts, SelectionConfig{}.label_buffer_rollouts);
  EXPECT_GE(s.versions_held, 1u);
  EXPECT_LE(s.refreshes_pending, 2u);
  EXPECT_GT(s.replay_rows, 0u);
  EXPECT_LE(s.replay_rows, SelectionConfig{}.replay_rows);
}

TEST_F(OnlineLoaderTest, FullStateResumeReproducesTheEmittedStream) {
  const int64_t total = 36;
  std::mt19937_64 rng(seed);
  const int64_t k = 4 + static_cast<int64_t>(rng() % 26);
  SCOPED_TRACE("resume after step " + std::to_string(k));
  // With the gate, its record of held-out checks resumes too; with reference feedback, the importance
  // prior (reference rows set) and the feedback rows due at the next window.
  // With seen_discount, the memory of the rows selected before the current window; with replay_share, the
  // replay buffer (a resume inside a window continues the pattern of replay slots; with relatives:
  // ReplayTest.RelativesResumeExactly).
  for (const int variant : {0, 1, 2, 3, 4}) {
    const bool gate = variant >= 1, feedback = variant == 2, seen = variant == 3, replay = variant == 4;
    SCOPED_TRACE(replay ? "gate on, replay_share" : seen ? "gate on, seen_discount" : feedback ? "gate on, reference feedback" : gate ? "refresh gate on" : "refresh gate off");
    SelectionConfig sel = selection_config(seed);
    sel.refresh_gate = gate;
    if (feedback) sel.reference_feedback = 0.5;
    if (seen) sel.seen_discount = 1.0;
    if (replay) sel.replay_share = 0.25, sel.replay_rows = 8;
    const torch::Tensor reference = reference_rows();
    std::string saved;
    std::unique_ptr<ProbeTarget> live_at_k;
    Emitted original;
    std::string final_importance;
    {
      GroupMatesLoader loader(loader_config(path, seed), sel, probe_config());
      if (feedback || seen || replay) loader.set_reference(reference);
      auto live = make_live_model(seed);
      Emitted a = train(loader, *live, 0, k + 1);
      saved = loader.state().serialize();
      EXPECT_EQ(loader.state().extra.count("gm.seen"), seen ? 1u : 0u);
      live_at_k = live->clone();
      Emitted b = train(loader, *live, k + 1, total);
      original = a;
      original.ids.insert(original.ids.end(), b.ids.begin(), b.ids.end());
      original.inputs.insert(original.inputs.end(), b.inputs.begin(), b.inputs.end());
      original.versions.insert(original.versions.end(), b.versions.begin(), b.versions.end());
      final_importance = loader.state().extra.at("gm.importance");
      if (seen) EXPECT_GT(loader.selection_stats().seen_discounted, 0u) << "the memory never discounted a row";
      if (replay) EXPECT_GT(loader.selection_stats().replayed, 0u) << "nothing was replayed";
    }
    if (feedback)  // the estimator's state with feedback counts (format gmimp002) once a refresh applied
      EXPECT_EQ(text_to_blob(final_importance, "gm.importance").substr(0, 8), "gmimp002");
    GroupMatesLoader resumed(loader_config(path, seed), sel, probe_config(), LoaderState::parse(saved));
    EXPECT_EQ(resumed.state().serialize(), saved) << "the state right after a resume is the saved state";
    const Emitted rest = train(resumed, *live_at_k, k + 1, total);
    ASSERT_EQ(rest.inputs.size(), static_cast<size_t>(total - k - 1));
    for (size_t i = 0; i < rest.inputs.size(); ++i) {
      EXPECT_TRUE(torch::equal(rest.inputs[i], original.inputs[k + 1 + i])) << "batch " << k + 1 + i;
      EXPECT_EQ(rest.versions[i], original.versions[k + 1 + i]) << "batch " << k + 1 + i;
    }
    EXPECT_TRUE(std::equal(rest.ids.begin(), rest.ids.end(), original.ids.begin() + (k + 1) * 4));
  }
}

TEST_F(OnlineLoaderTest, DocumentAlignedPaddingNeverReachesTheEmbeddings) {
  // Megatron documents of 3..40 tokens (ids 1..60, by topic), document-aligned rows padded with
  // 62 in one run and 63 in the other; the live model leaves padding out of its loss. Padding
  // masked out of the influence model's embeddings, both runs select and predict the same; a
  // padding n-gram in the bags would make the two values hash differently.
  std::mt19937_64 rng(seed);
  std::vector<std::vector<uint16_t>> docs(400);
  for (auto& d : docs) {
    const int topic = static_cast<int>(rng() % 4);
    d.resize(3 + rng() % 38);
    for (auto& t : d) t = static_cast<uint16_t>(1 + topic * 15 + rng() % (topic == 0 ? 2 : 15));
  }
  const std::string prefix = dir.file("docs");
  gmtest::write_megatron(prefix, docs);
  auto run = [&](int64_t pad) {
    LoaderConfig c = loader_config(prefix, seed);
    c.sources[0].format = SourceFormat::kMegatron;
    c.packing = PackingMode::kDocumentAligned;
    c.eos_id = 61;
    c.pad_id = pad;
    GroupMatesLoader loader(c, selection_config(seed), probe_config());
    auto live = make_live_model(seed, pad);
    return train(loader, *live, 0, 30);
  };
  const Emitted a = run(62), b = run(63);
  EXPECT_EQ(a.ids, b.ids);
  ASSERT_EQ(a.influence.size(), b.influence.size());
  int64_t predicted = 0, padded = 0;
  for (size_t i = 0; i < a.influence.size(); ++i) {
    EXPECT_TRUE(torch::allclose(a.influence[i], b.influence[i], 1e-5, 1e-6, /*equal_nan=*/true)) << "batch " << i;
    predicted += torch::isfinite(a.influence[i]).sum().item<int64_t>();
    padded += a.inputs[i].eq(62).any(1).sum().item<int64_t>();
  }
  EXPECT_GT(predicted, 20) << "rows scored by a refreshed model";
  EXPECT_GT(padded, 20) << "padded rows";
}

TEST_F(OnlineLoaderTest, StateOfAnotherModeOrRankIsRefused) {
  std::string saved;
  {
    GroupMatesLoader loader(loader_config(path, seed), selection_config(seed), ProbeConfig{});
    loader.next();
    saved = loader.state().serialize();
  }
  SelectionConfig other = selection_config(seed);
  other.mode = SelectionMode::kIndividual;
  EXPECT_THROW(GroupMatesLoader(loader_config(path, seed), other, ProbeConfig{}, LoaderState::parse(saved)), Error);
  EXPECT_THROW(GroupMatesLoader(loader_config(path, seed), LoaderState::parse(saved)), Error);
  LoaderConfig two = loader_config(path, seed);
  two.world_size = 2;
  two.batch_size = 2;
  try {
    GroupMatesLoader l(two, selection_config(seed), ProbeConfig{}, LoaderState::parse(saved));
    FAIL() << "a per-rank selection state must not restore on another world size";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidState);
  }
}

TEST_F(OnlineLoaderTest, EndToEndOnTheEmbeddedCorpus) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define GM_UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define GM_UNDER_SANITIZER 1
#endif
#endif
#ifdef GM_UNDER_SANITIZER
  GTEST_SKIP() << "SentencePiece beside LibTorch needs dlopen(RTLD_DEEPBIND), which the sanitizer runtimes refuse "
                  "(loader/sources/tokenizer.cpp); loader_tests test the tokenizer under the sanitizers, the Release "
                  "build this test";
#endif
  const char* corpus = std::getenv("GROUPMATES_CORPUS");
  if (corpus == nullptr) GTEST_SKIP() << "GROUPMATES_CORPUS not set (make test sets it after `make corpus`)";
  LoaderConfig c;
  SourceConfig s;
  s.format = SourceFormat::kJsonl;
  s.paths = {std::string(corpus) + "/austen.jsonl"};
  s.tokenizer_model = std::string(corpus) + "/austen.model";
  c.sources = {s};
  c.sequence_length = 32;
  c.batch_size = 4;
  c.eos_id = 3;
  c.epochs = 0;
  SelectionConfig sel = selection_config(seed);
  sel.window_size = 64;
  sel.encoder_buckets = 4096;
  ProbeConfig probes = probe_config();
  const TinyGptConfig g = tiny_gpt_config(4096, 32, 32, 1, 2);
  auto factory = [g] { return std::make_shared<TinyGpt>(g); };
  auto opt_factory = adamw_factory(1e-3);
  auto module = factory();
  GroupMatesLoader loader(c, sel, probes);
  // Reference batches: the first rows the plain stream gives (a smoke test, not a held-out set).
  ModuleProbeTarget live(module, opt_factory(*module), factory, opt_factory, tiny_gpt_loss,
                         {loader.next()->input_ids.clone()});
  const Emitted e = train(loader, live, 0, 30);
  EXPECT_EQ(e.inputs.size(), 30u);
  const SelectionStats st = loader.selection_stats();
  EXPECT_GE(st.refreshes, 2u);
  EXPECT_EQ(st.probes.rollouts_discarded, 0);
  // A smoke run: 3 refreshes on ~12 held-out labels each give any Spearman in [-1, 1] (0.63 to -0.63 over six
  // seeds); the figure's definition is checked in refresh_gate_test (InfluenceRefresherHeldout), here its range.
  EXPECT_GE(st.last_heldout_spearman, -1.0);
  EXPECT_LE(st.last_heldout_spearman, 1.0);
  EXPECT_GE(st.last_heldout_spearman_scaled, -1.0);
  EXPECT_LE(st.last_heldout_spearman_scaled, 1.0);
}

namespace gmlegacy {

// `blob` (groupmates' weights format) as the torch archive groupmates wrote before 2026-12-05.
std::string as_torch_archive(const std::string& blob, const SelectionConfig& cfg) {
  auto m = make_influence_model(cfg, -1);
  m->import_weights(blob);
  torch::serialize::OutputArchive archive;
  m->save(archive);
  archive.write("encoder_identity", c10::IValue(m->encoder().identity()));
  std::ostringstream out;
  archive.save_to(out);
  return out.str();
}

}  // namespace gmlegacy

// A state saved before groupmates wrote its own weights format holds torch archives: refused unless trusted
// (LibTorch's reader may abort on a damaged one), then resumed onto the same stream and saved converted.
TEST_F(OnlineLoaderTest, AStateWithTorchArchiveWeightsResumesOnlyWhenTrustedAndIsSavedConverted) {
  const SelectionConfig sel = selection_config(seed);
  LoaderState saved;
  {
    GroupMatesLoader loader(loader_config(path, seed), sel, probe_config());
    auto live = make_live_model(seed);
    train(loader, *live, 0, 14);
    saved = loader.state();
  }
  LoaderState legacy = saved;  // as saved before the weights format (and before deltas: every blob whole)
  int converted = 0;
  const std::string first = text_to_blob(saved.extra.at("gm.first_blob"), "gm.first_blob");
  ASSERT_EQ(saved.extra.at("gm.pending"), "0") << "a pending refresh's weights would need converting too";
  for (const char* key : {"gm.first_blob", "gm.second_blob", "gm.trainer"}) {
    auto it = legacy.extra.find(key);
    if (it == legacy.extra.end() || it->second.empty()) continue;
    std::string blob = text_to_blob(it->second, key);
    if (is_weights_delta(blob)) blob = apply_weights_delta(blob, first, key);
    it->second = blob_to_text(gmlegacy::as_torch_archive(blob, sel));
    ++converted;
  }
  ASSERT_GE(converted, 2);
  ASSERT_EQ(::unsetenv("GROUPMATES_TRUST_TORCH_ARCHIVE"), 0);
  try {
    GroupMatesLoader refused(loader_config(path, seed), sel, probe_config(), legacy);
    FAIL() << "torch archives were read without GROUPMATES_TRUST_TORCH_ARCHIVE=1";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("GROUPMATES_TRUST_TORCH_ARCHIVE=1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("LoaderState.extra.gm."), std::string::npos) << e.what();
  }
  ASSERT_EQ(::setenv("GROUPMATES_TRUST_TORCH_ARCHIVE", "1", 1), 0);
  GroupMatesLoader trusted(loader_config(path, seed), sel, probe_config(), legacy);
  ASSERT_EQ(::unsetenv("GROUPMATES_TRUST_TORCH_ARCHIVE"), 0);
  GroupMatesLoader reference(loader_config(path, seed), sel, probe_config(), saved);
  for (int i = 0; i < 3; ++i) {
    auto a = trusted.next(), b = reference.next();
    ASSERT_TRUE(a && b);
    EXPECT_TRUE(torch::equal(a->input_ids, b->input_ids)) << "batch " << i << " after the resume";
  }
  const LoaderState again = trusted.state();
  for (const char* key : {"gm.first_blob", "gm.second_blob", "gm.trainer"}) {
    auto it = again.extra.find(key);
    if (it == again.extra.end() || it->second.empty()) continue;
    const std::string blob = text_to_blob(it->second, key);
    EXPECT_TRUE(blob.compare(0, 8, "GMWEIGHT") == 0 || (std::string(key) != "gm.first_blob" && is_weights_delta(blob)))
        << key << " was saved unconverted";
  }
}
