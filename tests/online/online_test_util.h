// online_test_util.h: a small topic-structured token file, configs and a live TinyGpt for the
// online-loop tests (GroupMatesLoader with selection and probes).
#pragma once

#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <torch/torch.h>

#include "groupmates/loader.h"
#include "groupmates/module_probe_target.h"
#include "tiny_gpt/tiny_gpt.h"
#include "loader/loader_test_util.h"

namespace gmonline {

using namespace groupmates;

constexpr int64_t kVocab = 64;
constexpr uint32_t kT = 16;

// Token rows with structure: a few "topics" (token ranges), so clusters and influence are real.
inline std::string write_tokens(const gmtest::TempDir& dir, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint16_t> toks;
  for (int w = 0; w < 2000; ++w) {
    const int topic = static_cast<int>(rng() % 4);
    for (uint32_t i = 0; i < kT; ++i) toks.push_back(static_cast<uint16_t>(topic * 16 + rng() % (topic == 0 ? 2 : 16)));
  }
  const std::string path = dir.file("tokens.bin");
  gmtest::write_raw(path, toks);
  return path;
}

inline LoaderConfig loader_config(const std::string& path, uint64_t seed) {
  LoaderConfig c;
  SourceConfig s;
  s.paths = {path};
  c.sources = {s};
  c.sequence_length = kT;
  c.batch_size = 4;
  c.seed = seed;
  c.epochs = 0;
  c.vocab_size = kVocab;
  return c;
}

inline SelectionConfig selection_config(uint64_t seed) {
  SelectionConfig s;
  s.mode = SelectionMode::kGroup;
  s.window_size = 32;
  s.ratio = 0.5;
  s.clusters = 4;
  s.encoder_buckets = 512;
  s.encoder_dim = 16;
  s.refresh_train_steps = 5;
  s.refresh_batch_rollouts = 4;
  s.seed = seed;
  s.refresh_mode = RefreshMode::kAtStep;  // these tests check the timing-free stream (refresh_modes_test: the other)
  s.refresh_gate = false;  // they check refresh mechanics: every refresh publishes (refresh_gate_test: the gate)
  return s;
}

inline ProbeConfig probe_config() {
  ProbeConfig p;
  p.interval_steps = 6;
  p.first_step = 2;
  p.rollout_length = 3;
  p.random_rollouts = 2;
  p.neighbour_rollouts = 2;
  p.bootstrap_pairs = 1;
  p.pool_rows = 32;
  p.effect_delay_steps = 3;
  p.budget = 0;  // every due probe runs all its rollouts (refresh_modes_test checks the budget)
  return p;
}

inline std::unique_ptr<ProbeTarget> make_live_model(uint64_t seed, int64_t ignore_id = -1) {
  TinyGptConfig g = tiny_gpt_config(kVocab, kT, 32, 1, 2, seed);
  g.ignore_id = ignore_id;
  auto factory = [g] { return std::make_shared<TinyGpt>(g); };
  auto opt_factory = adamw_factory(3e-3);
  auto module = factory();
  auto optimizer = opt_factory(*module);
  std::vector<torch::Tensor> refs = {torch::arange(int64_t{4} * kT, torch::kInt64).remainder(2).view({4, int64_t{kT}})};
  return std::make_unique<ModuleProbeTarget>(module, optimizer, factory, opt_factory, tiny_gpt_loss, refs);
}

struct Emitted {
  std::vector<uint64_t> ids;
  std::vector<torch::Tensor> inputs;
  std::vector<uint64_t> versions;
  std::vector<torch::Tensor> influence;
};

// Trains the live model on what the loader emits, steps [from, to); returns what was emitted.
inline Emitted train(GroupMatesLoader& loader, ProbeTarget& live, int64_t from, int64_t to) {
  Emitted e;
  for (int64_t step = from; step < to; ++step) {
    auto b = loader.next();
    if (!b) break;
    for (const auto& id : b->ids) e.ids.push_back(id.hash);
    e.inputs.push_back(b->input_ids.clone());
    e.versions.push_back(b->model_version);
    e.influence.push_back(b->influence.clone());
    live.train_step(b->input_ids);
    loader.on_step(step, &live);
  }
  return e;
}

/// Reference rows like make_live_model's reference batches: tokens 0 and 1 only (topic 0 of write_tokens).
inline torch::Tensor reference_rows() { return torch::arange(int64_t{4} * kT, torch::kInt64).remainder(2).view({4, int64_t{kT}}); }

/// A fresh seed (printed, replayable with GM_TEST_SEED), its topic token file, one intra-op thread.
class OnlineFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    seed = gmtest::fresh_seed() % 100000;
    trace = std::make_unique<testing::ScopedTrace>(__FILE__, __LINE__, "GM_TEST_SEED=" + std::to_string(seed));
    path = write_tokens(dir, seed);
    torch::set_num_threads(1);
  }
  gmtest::TempDir dir;
  uint64_t seed = 0;
  std::string path;
  std::unique_ptr<testing::ScopedTrace> trace;
};

}  // namespace gmonline
