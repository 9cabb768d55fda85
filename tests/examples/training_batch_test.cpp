// training_batch() over a GroupMatesLoader with LoaderConfig::labels (plain and selecting), and
// TinyGpt's loss on (input_ids, labels), on fresh random data (seed printed; GM_TEST_SEED replays).
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/types.h>

#include "groupmates/training_batch.h"
#include "tiny_gpt/tiny_gpt.h"

namespace groupmates {
namespace {

uint64_t fresh_seed() {
  if (const char* s = std::getenv("GM_TEST_SEED")) return std::strtoull(s, nullptr, 10);
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd();
}

struct TokenFile {
  std::string path;
  explicit TokenFile(uint64_t seed, int64_t eos) {
    path = (std::filesystem::temp_directory_path() / ("gm_training_batch_" + std::to_string(getpid()) + "_" +
                                                     std::to_string(seed) + ".bin")).string();
    std::mt19937_64 rng(seed);
    std::vector<uint16_t> tokens(20000);
    for (auto& t : tokens) t = static_cast<uint16_t>(rng() % 9 == 0 ? eos : 1 + rng() % 99);
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(tokens.data()), tokens.size() * 2);
  }
  ~TokenFile() { std::filesystem::remove(path); }
};

LoaderConfig labelled_config(const std::string& path, uint64_t seed) {
  LoaderConfig c;
  c.sources.resize(1);
  c.sources[0].paths = {path};
  c.sequence_length = 24;
  c.batch_size = 4;
  c.eos_id = 0;
  c.seed = seed;
  c.labels = c.position_ids = c.document_boundaries = true;
  return c;
}

void expect_consistent(const TrainingBatch& b, const LoaderConfig& c) {
  const int64_t T = c.sequence_length, B = b.input_ids.size(0);
  const torch::Tensor rows = b.raw.input_ids;
  ASSERT_EQ(rows.sizes(), (std::vector<int64_t>{B, T + 1}));
  EXPECT_TRUE(torch::equal(b.input_ids, rows.slice(1, 0, T)));
  EXPECT_TRUE(torch::equal(b.labels, rows.slice(1, 1, T + 1)));  // packed, no mask across documents
  EXPECT_TRUE(torch::equal(b.loss_mask, torch::ones({B, T})));
  // a document starts at position 0: at a row start or right after an EOS input
  const torch::Tensor after_eos = torch::cat({torch::ones({B, 1}, torch::kBool), rows.slice(1, 0, T - 1) == c.eos_id}, 1);
  EXPECT_TRUE(torch::equal(b.position_ids == 0, after_eos));
  EXPECT_EQ(b.cu_seqlens.dtype(), torch::kInt32);
  EXPECT_EQ(b.cu_seqlens.size(0), after_eos.sum().item<int64_t>() + 1);
  EXPECT_EQ(b.cu_seqlens[-1].item<int64_t>(), B * T);
  EXPECT_EQ(b.max_seqlen, (b.cu_seqlens.slice(0, 1) - b.cu_seqlens.slice(0, 0, -1)).max().item<int64_t>());
  EXPECT_TRUE(torch::equal(b.document_ids.select(1, 0), torch::zeros({B}, torch::kInt64)));
}

TEST(TrainingBatch, SplitsLabelledRowsOfThePlainAndTheSelectingLoader) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (GM_TEST_SEED=" + std::to_string(seed) + " to replay)");
  TokenFile file(seed, 0);
  const LoaderConfig c = labelled_config(file.path, seed);
  GroupMatesLoader plain(c);
  int batches = 0;
  while (auto raw = plain.next()) {
    expect_consistent(training_batch(*raw, c), c);
    ++batches;
  }
  EXPECT_EQ(batches, 20000 / 25 / 4);
  SelectionConfig selection;
  selection.mode = SelectionMode::kRandom;
  selection.window_size = 16;
  GroupMatesLoader selecting(c, selection, ProbeConfig{});
  auto raw = selecting.next();
  ASSERT_TRUE(raw.has_value());
  expect_consistent(training_batch(*raw, c), c);
  LoaderConfig other = c;
  other.sequence_length = 20;
  EXPECT_THROW(training_batch(*raw, other), Error);  // not the loader's config
}

TEST(TrainingBatch, TinyGptLossIgnoresMaskedLabels) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (GM_TEST_SEED=" + std::to_string(seed) + " to replay)");
  torch::manual_seed(seed);
  TinyGpt model(tiny_gpt_config(40, 16, 32, 2, 4, seed));
  const torch::Tensor rows = torch::randint(0, 40, {3, 17}, torch::kInt64);
  const torch::Tensor x = rows.slice(1, 0, 16), y = rows.slice(1, 1, 17);
  EXPECT_TRUE(torch::allclose(model.loss(rows), model.loss(x, y)));
  torch::Tensor labels = y.clone();
  labels.slice(1, 10).fill_(kIgnoreIndex);
  const torch::Tensor logp = torch::log_softmax(model.forward(x), -1);
  const torch::Tensor want = -logp.slice(1, 0, 10).gather(2, y.slice(1, 0, 10).unsqueeze(2)).mean();
  EXPECT_TRUE(torch::allclose(model.loss(x, labels), want, 1e-5, 1e-6));
}

}  // namespace
}  // namespace groupmates
