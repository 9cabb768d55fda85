// SelectionConfig::seen_discount: rows selected in an earlier window count as picks, so in the next
// epoch the rows emitted in the first fall back behind the ones it left out; off, the same prior picks
// them again. The state holds the memory (FullStateResumeReproducesTheEmittedStream covers resume).
#include <gtest/gtest.h>

#include <cstdio>
#include <set>

#include "online/online_test_util.h"

using namespace gmonline;

namespace seen_discount_test {  // named: the unity build puts several test files in one unit

constexpr int64_t kWidth = 64;
constexpr int kRows = 128;  // one epoch: 4 windows of 32, 64 rows emitted

class SeenDiscountTest : public OnlineFixture {};

// Distinct random rows of kWidth tokens (a repeated 8-token run across rows is a 64^-8 chance).
std::string write_distinct_rows(const gmtest::TempDir& dir, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint16_t> toks(size_t(kRows) * kWidth);
  for (auto& t : toks) t = static_cast<uint16_t>(rng() % kVocab);
  const std::string path = dir.file("rows.bin");
  gmtest::write_raw(path, toks);
  return path;
}

struct Epochs {
  std::vector<std::set<uint64_t>> picked;  // ids emitted per epoch
  uint64_t discounted = 0;
};

Epochs run_two_epochs(const std::string& path, uint64_t seed, double discount) {
  LoaderConfig c = loader_config(path, seed);
  c.sequence_length = kWidth;
  c.batch_size = 16;
  SelectionConfig s = selection_config(seed);
  s.seen_discount = discount;
  s.replay_share = 0;  // what each epoch picks, not rows emitted again from the replay buffer
  ProbeConfig p;
  p.interval_steps = 0;  // no probes: the importance prior alone scores, the same way in both epochs
  GroupMatesLoader loader(c, s, p);
  std::mt19937_64 rng(seed ^ 0x5151);
  torch::Tensor ref = torch::empty({8, kWidth}, torch::kInt64);
  for (int64_t i = 0; i < ref.numel(); ++i) ref.view({-1})[i] = int64_t(rng() % (kVocab / 2));  // a skewed reference
  loader.set_reference(ref);
  Epochs e;
  e.picked.resize(2);
  for (int batch = 0; batch < 8; ++batch) {  // 2 epochs of 4 windows x 16 rows
    auto b = loader.next();
    EXPECT_TRUE(b.has_value());
    if (!b) break;
    for (const auto& id : b->ids) e.picked[batch / 4].insert(id.hash);
  }
  e.discounted = loader.selection_stats().seen_discounted;
  return e;
}

size_t common_ids(const std::set<uint64_t>& a, const std::set<uint64_t>& b) {
  size_t n = 0;
  for (uint64_t x : a) n += b.count(x);
  return n;
}

}  // namespace seen_discount_test

using namespace seen_discount_test;

TEST_F(SeenDiscountTest, RowsSelectedInTheFirstEpochFallBackInTheSecond) {
  const std::string rows = write_distinct_rows(dir, seed);
  const Epochs off = run_two_epochs(rows, seed, 0.0), on = run_two_epochs(rows, seed, 1.0);
  ASSERT_EQ(on.picked[0], off.picked[0]) << "the first epoch has nothing remembered: the same picks";
  ASSERT_EQ(on.picked[0].size(), 64u);
  const size_t again_off = common_ids(off.picked[0], off.picked[1]), again_on = common_ids(on.picked[0], on.picked[1]);
  std::printf("rows of epoch 1 emitted again in epoch 2: %zu of 64 without the discount, %zu with it\n", again_off, again_on);
  // Off, the prior prefers the same rows again; on, every row emitted before scores as the window's worst, so
  // a window takes one only when fewer than 16 of its 32 rows are new.
  EXPECT_GT(again_off, 40u) << "without the discount the prior picks mostly the same rows again";
  EXPECT_LT(again_on, 16u) << "with it the rows left out in the first epoch come first";
  EXPECT_EQ(off.discounted, 0u);
  // Every row of the second epoch emitted in the first is discounted, unless none of its 57 shingles was sampled
  // ((7/8)^57 = 5e-4 a row: 8 such rows of 64 is beyond any seed's reach).
  EXPECT_GE(on.discounted, 56u) << "rows of the second epoch emitted in the first were not discounted";
}
