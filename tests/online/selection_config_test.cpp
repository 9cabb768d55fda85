// SelectionConfig's window memory bound: the estimate follows its documented formula, a window over
// the bound is refused when the loader starts (naming the field, the estimate and the fix), the
// largest window the message names fits, and raising max_window_memory_bytes allows a bigger one.
#include <gtest/gtest.h>

#include <limits>
#include <utility>
#include <random>

#include "common/thrown_error.h"
#include "groupmates/error.h"
#include "groupmates/selection_config.h"
#include "online_test_util.h"

using namespace gmonline;

namespace {

// The README's formula, written out.
double expected_bytes(const SelectionConfig& s, const LoaderConfig& c) {
  const double row = double(c.sequence_length + (c.labels ? 1 : 0));
  return double(s.window_size) * (row * 8.0 * (c.prefetch_batches + 4.0) +
                                  4.0 * (2.0 * s.encoder_bag_dim + 4.0 * s.encoder_dim + 2.0 * s.clusters + 64.0));
}

}  // namespace

TEST(SelectionConfigTest, WindowMemoryFollowsItsFormulaAndOverTheBoundIsRefusedWithTheFix) {
  const uint64_t seed = gmtest::fresh_seed();
  SCOPED_TRACE("GM_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 200; ++i) {
    SelectionConfig s;
    LoaderConfig c;
    s.window_size = 2 + uint32_t(rng() % (1u << 20));
    s.encoder_bag_dim = 2 + int64_t(rng() % 4095);
    s.encoder_dim = 2 + int64_t(rng() % 4095);
    s.clusters = 1 + uint32_t(rng() % 64);
    c.sequence_length = 1 + uint32_t(rng() % 32768);
    c.labels = rng() % 2;
    c.prefetch_batches = 1 + uint32_t(rng() % 64);
    const double want = expected_bytes(s, c);
    EXPECT_NEAR(double(s.window_memory_bytes(c)), want, 1.0 + want * 1e-12) << i;
  }
  // (one test with the next part: each ctest entry pays LibTorch's start-up)
  SelectionConfig s;
  s.mode = SelectionMode::kGroup;
  s.window_size = 1u << 20;
  LoaderConfig c;
  c.sequence_length = 1024;
  c.labels = true;
  std::string message;
  try {
    s.validate(c);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig);
    EXPECT_EQ(e.where(), "SelectionConfig.window_size");
    message = e.what();
  }
  ASSERT_FALSE(message.empty()) << "2^20 windows of 1025 tokens (67 GiB by the estimate) were accepted";
  const uint64_t per_row = uint64_t(expected_bytes(s, c)) >> 20;
  const uint64_t fits = (uint64_t{4} << 30) / per_row;
  EXPECT_NE(message.find("need an estimated 67.3"), std::string::npos) << message;
  EXPECT_NE(message.find("max_window_memory_bytes = 4.00 GiB"), std::string::npos) << message;
  EXPECT_NE(message.find("Use window_size <= " + std::to_string(fits) + " "), std::string::npos) << message;
  EXPECT_NE(message.find("prefetch_batches"), std::string::npos) << message;
  EXPECT_NE(message.find("raise max_window_memory_bytes to allow it"), std::string::npos) << message;
  // The largest window the message names fits; one more does not.
  s.window_size = uint32_t(fits);
  EXPECT_NO_THROW(s.validate(c));
  s.window_size = uint32_t(fits + 1);
  EXPECT_THROW(s.validate(c), Error);
  // Asked for explicitly, a bigger window is allowed.
  s.window_size = 1u << 20;
  s.max_window_memory_bytes = uint64_t{100} << 30;
  EXPECT_NO_THROW(s.validate(c));
  // The default window with the default loader is far below the bound.
  EXPECT_LT(SelectionConfig{}.window_memory_bytes(LoaderConfig{}), uint64_t{64} << 20);
}

TEST(SelectionConfigTest, GroupMatesLoaderChecksTheBoundWithItsLoaderConfig) {
  gmtest::TempDir dir;
  const std::string path = write_tokens(dir, 1);
  LoaderConfig c = loader_config(path, 1);
  SelectionConfig s = selection_config(1);
  s.max_window_memory_bytes = s.window_memory_bytes(c) - 1;  // just below this loader's estimate
  EXPECT_THROW(GroupMatesLoader(c, s, ProbeConfig{}), Error);
  s.max_window_memory_bytes += 1;
  GroupMatesLoader loader(c, s, ProbeConfig{});
  EXPECT_TRUE(loader.next().has_value());
}

TEST(SelectionConfigTest, RelationTauIsValidatedNamingTheField) {
  using testing_errors::where_of;
  SelectionConfig s;
  EXPECT_NO_THROW(s.validate());
  for (double bad : {0.0, -1.0, std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()}) {
    s.relation_tau = bad;
    EXPECT_EQ(where_of([&] { s.validate(); }, ErrorCode::kInvalidConfig), "SelectionConfig.relation_tau") << bad;
  }
  s.relation_tau = 0.5;  // below the default tau_min 1: r_ij could turn negative
  EXPECT_EQ(where_of([&] { s.validate(); }, ErrorCode::kInvalidConfig), "SelectionConfig.relation_tau_min");
  s.relation_tau_min = 0.5;
  EXPECT_NO_THROW(s.validate());
  s.relation_tau = 3.0;
  s.relation_tau_min = 1.0;
  EXPECT_NO_THROW(s.validate());
  s.relation_tau_min = 3.5;
  EXPECT_EQ(where_of([&] { s.validate(); }, ErrorCode::kInvalidConfig), "SelectionConfig.relation_tau_min");
}

TEST(SelectionConfigTest, ReplayFieldsAreValidatedNamingTheField) {
  using testing_errors::where_of;
  SelectionConfig s;
  EXPECT_EQ(s.replay_share, kReplayShareAuto) << "the mode's default (docs/SELECTION.md)";
  EXPECT_NO_THROW(s.validate());
  // auto: half the rows replayed where rows are ranked, none for the plain loader and the random baseline.
  const std::pair<SelectionMode, double> modes[] = {
      {SelectionMode::kNone, 0.0},  {SelectionMode::kRandom, 0.0}, {SelectionMode::kIndividual, 0.5},
      {SelectionMode::kGroup, 0.5}, {SelectionMode::kGroupNoClusters, 0.5}, {SelectionMode::kImportance, 0.5}};
  for (const auto& [mode, share] : modes) {
    s.mode = mode;
    EXPECT_EQ(s.effective_replay_share(), share) << int(mode);
    EXPECT_EQ(s.effective_replay_share(true), 0.0) << "auto on ranks sharing one model: " << int(mode);
    s.replay_share = 0.25;  // an explicit share is taken as given in every mode
    EXPECT_EQ(s.effective_replay_share(), 0.25) << int(mode);
    EXPECT_EQ(s.effective_replay_share(true), 0.25) << int(mode);
    s.replay_share = kReplayShareAuto;
  }
  for (double bad : {-0.1, -1.5, 0.95, std::numeric_limits<double>::quiet_NaN()}) {
    s.replay_share = bad;
    EXPECT_EQ(where_of([&] { s.validate(); }, ErrorCode::kInvalidConfig), "SelectionConfig.replay_share") << bad;
  }
  s.replay_share = 0.9;
  EXPECT_NO_THROW(s.validate());
  for (uint32_t bad : {0u, 65537u}) {
    s.replay_rows = bad;
    EXPECT_EQ(where_of([&] { s.validate(); }, ErrorCode::kInvalidConfig), "SelectionConfig.replay_rows") << bad;
  }
  s.replay_rows = 65536;
  s.replay_max_repeats = 0;
  EXPECT_EQ(where_of([&] { s.validate(); }, ErrorCode::kInvalidConfig), "SelectionConfig.replay_max_repeats");
  s.replay_max_repeats = 1;
  EXPECT_NO_THROW(s.validate());
}

TEST(SelectionConfigTest, SeenFieldsAreValidatedNamingTheField) {
  using testing_errors::where_of;
  SelectionConfig s;
  EXPECT_EQ(s.seen_discount, 0.0) << "off: it made the tuning pools' final loss worse (docs/SELECTION.md)";
  for (double bad : {-0.1, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
    s.seen_discount = bad;
    EXPECT_EQ(where_of([&] { s.validate(); }, ErrorCode::kInvalidConfig), "SelectionConfig.seen_discount") << bad;
  }
  s.seen_discount = 1.0;
  EXPECT_NO_THROW(s.validate());
  for (uint32_t bad : {0u, 1u, 65u}) {
    s.seen_shingle_tokens = bad;
    EXPECT_EQ(where_of([&] { s.validate(); }, ErrorCode::kInvalidConfig), "SelectionConfig.seen_shingle_tokens") << bad;
  }
  s.seen_shingle_tokens = 64;
  EXPECT_NO_THROW(s.validate());
  for (uint64_t bad : {uint64_t{0}, (uint64_t{1} << 24) + 1}) {
    s.seen_memory_shingles = bad;
    EXPECT_EQ(where_of([&] { s.validate(); }, ErrorCode::kInvalidConfig), "SelectionConfig.seen_memory_shingles") << bad;
  }
}

TEST(SelectionConfigTest, RefreshGateFieldsAreValidatedNamingTheField) {
  using testing_errors::where_of;
  SelectionConfig s;
  EXPECT_EQ(s.refresh_gate_margin, 1.0) << "the default chosen on the two tuning pools";
  EXPECT_EQ(s.refresh_gate_top_share, 0.0) << "off: the gate compares Spearman";
  for (double bad : {-0.1, 1.1, std::numeric_limits<double>::quiet_NaN()}) {
    s.refresh_gate_top_share = bad;
    EXPECT_EQ(where_of([&] { s.validate(); }, ErrorCode::kInvalidConfig), "SelectionConfig.refresh_gate_top_share") << bad;
  }
  s.refresh_gate_top_share = 1.0;
  EXPECT_NO_THROW(s.validate());
  for (double bad : {-1.0, std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()}) {
    s.refresh_gate_margin = bad;
    EXPECT_EQ(where_of([&] { s.validate(); }, ErrorCode::kInvalidConfig), "SelectionConfig.refresh_gate_margin") << bad;
  }
}

TEST(SelectionConfigTest, HeadShareStartIsValidatedNamingTheField) {
  using testing_errors::where_of;
  SelectionConfig s;
  EXPECT_TRUE(s.refresh_head_shrinkage);
  EXPECT_EQ(s.refresh_head_share_start, 0.0) << "the default chosen on the two tuning pools";
  for (double bad : {-0.1, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
    s.refresh_head_share_start = bad;
    EXPECT_EQ(where_of([&] { s.validate(); }, ErrorCode::kInvalidConfig), "SelectionConfig.refresh_head_share_start") << bad;
  }
  for (double ok : {0.0, 0.3, 1.0}) {
    s.refresh_head_share_start = ok;
    EXPECT_NO_THROW(s.validate()) << ok;
  }
}

TEST(SelectionConfigTest, HeapReleaseIntervalIsValidatedNamingTheField) {
  using testing_errors::where_of;
  SelectionConfig s;
  EXPECT_EQ(s.heap_release_interval_seconds, 10.0);
  for (double bad : {-1.0, std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()}) {
    s.heap_release_interval_seconds = bad;
    EXPECT_EQ(where_of([&] { s.validate(); }, ErrorCode::kInvalidConfig), "SelectionConfig.heap_release_interval_seconds")
        << bad;
  }
  for (double good : {0.0, 1e-3, 1e9}) {
    s.heap_release_interval_seconds = good;
    EXPECT_NO_THROW(s.validate()) << good;
  }
}

TEST(SelectionConfigTest, ProbeNiceIsValidatedNamingTheField) {
  using testing_errors::where_of;
  ProbeConfig p;
  EXPECT_EQ(p.nice, 0) << "the probe thread at the trainer's priority by default";
  EXPECT_TRUE(p.first_order_labels);
  for (int bad : {-1, 20, 100}) {
    p.nice = bad;
    EXPECT_EQ(where_of([&] { p.validate(); }, ErrorCode::kInvalidConfig), "ProbeConfig.nice") << bad;
  }
  for (int good : {0, 7, 19}) {
    p.nice = good;
    EXPECT_NO_THROW(p.validate()) << good;
  }
}
