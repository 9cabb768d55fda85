// SelectionConfig::replay_share: a fixed share of the emitted rows is drawn again from the best rows emitted
// before; the window's own picks come out in the same order, only later. Exact resume with it on:
// FullStateResumeReproducesTheEmittedStream.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <tuple>

#include "online/online_test_util.h"

using namespace gmonline;

namespace replay_test {  // named: the unity build puts several test files in one unit

class ReplayTest : public OnlineFixture {};

struct Row {
  uint64_t id;
  float u;
  int64_t cluster;
  torch::Tensor tokens;
};

struct ReplayRun {
  std::vector<Row> rows;  // in emitted order
  SelectionStats stats;
};

ReplayRun emit_rows(const std::string& path, uint64_t seed, double share, int batches, uint32_t max_repeats) {
  SelectionConfig s = selection_config(seed);
  s.replay_share = share;
  s.replay_rows = 16;
  s.replay_max_repeats = max_repeats;
  s.replay_relative_overlap = 0;  // every row competes by u alone (the relatives rule: replay_buffer_test)
  ProbeConfig p;
  p.interval_steps = 0;  // the importance prior scores every window
  GroupMatesLoader loader(loader_config(path, seed), s, p);
  loader.set_reference(reference_rows());
  ReplayRun r;
  for (int i = 0; i < batches; ++i) {
    auto b = loader.next();
    EXPECT_TRUE(b.has_value());
    if (!b) break;
    for (int64_t k = 0; k < b->input_ids.size(0); ++k)
      r.rows.push_back({b->ids[size_t(k)].hash, b->influence[k].item<float>(), b->cluster[k].item<int64_t>(),
                        b->input_ids[k].clone()});
  }
  r.stats = loader.selection_stats();
  return r;
}

}  // namespace replay_test

using namespace replay_test;

TEST_F(ReplayTest, AShareOfRowsIsDrawnFromTheBestEmittedBefore) {
  const double share = 0.25;
  const ReplayRun off = emit_rows(path, seed, 0.0, 40, 1), on = emit_rows(path, seed, share, 40, UINT32_MAX);
  ASSERT_EQ(on.rows.size(), 160u);
  // The fresh rows with replay on are the stream without it, in the same order (the picks only come later).
  std::vector<const Row*> fresh;
  for (const Row& r : on.rows)
    if (r.cluster >= 0) fresh.push_back(&r);
  ASSERT_LT(fresh.size(), on.rows.size()) << "nothing was replayed";
  for (size_t i = 0; i < fresh.size(); ++i) {
    ASSERT_EQ(fresh[i]->id, off.rows[i].id) << "fresh row " << i;
    EXPECT_TRUE(torch::equal(fresh[i]->tokens, off.rows[i].tokens));
  }
  // Replays fall on the fixed pattern of slots once the buffer holds a quarter of its 16 rows (after the first
  // window: 32 candidates, 16 picks), and each repeats a row emitted earlier, with the u it was selected by,
  // among the 16 best of the windows emitted before it.
  uint64_t expected = 0;
  std::map<uint64_t, float> emitted;  // fresh row id -> u
  for (size_t j = 0; j < on.rows.size(); ++j) {
    const Row& r = on.rows[j];
    const bool slot = std::floor(double(j + 1) * share) > std::floor(double(j) * share);
    if (r.cluster < 0) {
      EXPECT_TRUE(slot) << "row " << j << " replayed off the pattern";
      ASSERT_EQ(emitted.count(r.id), 1u) << "row " << j << " replays a row never emitted";
      EXPECT_EQ(r.u, emitted[r.id]) << "row " << j;
      int better = 0;  // rows emitted before with a strictly lower u
      for (const auto& [id, u] : emitted) better += u < r.u;
      EXPECT_LT(better, 16 + 16) << "row " << j << " is not among the best: " << better << " were better";
      ++expected;
    } else {
      emitted[r.id] = r.u;
      if (j >= 16) EXPECT_FALSE(slot) << "slot " << j << " should have been a replay";
    }
  }
  EXPECT_EQ(on.stats.replayed, expected);
  EXPECT_EQ(on.stats.selected, 160u) << "replayed rows count as emitted";
  EXPECT_EQ(off.stats.replayed, 0u);
}

TEST_F(ReplayTest, NoRowIsReplayedMoreThanMaxRepeats) {
  // 16 rows in the buffer, a quarter of 240 rows replayed: without the cap the best rows come back many times.
  for (const uint32_t cap : {1u, 2u}) {
    SCOPED_TRACE("replay_max_repeats " + std::to_string(cap));
    const ReplayRun on = emit_rows(path, seed, 0.25, 60, cap);
    std::map<uint64_t, uint32_t> times;
    for (const Row& r : on.rows)
      if (r.cluster < 0) times[r.id] += 1;
    ASSERT_FALSE(times.empty());
    for (const auto& [id, n] : times) EXPECT_LE(n, cap) << "row " << id;
    // Every slot of the pattern after the first window (16 picks) is a replay: (240 - 16) / 4.
    EXPECT_EQ(on.stats.replayed, (240u - 16u) / 4u) << "the buffer ran dry";
  }
}

// The share is part of the stream: a state resumes only under the share it was saved with ("auto" takes it from
// the state), and a state saved before the share was recorded (no gm.replay_share; then the default was 0) only
// without replay.
TEST_F(ReplayTest, AStateIsRefusedUnderAnotherShare) {
  ProbeConfig p;
  p.interval_steps = 0;
  const auto saved_with = [&](double share) {
    SelectionConfig s = selection_config(seed);
    s.replay_share = share;
    s.replay_rows = 16;
    GroupMatesLoader loader(loader_config(path, seed), s, p);
    loader.set_reference(reference_rows());
    for (int i = 0; i < 12; ++i) EXPECT_TRUE(loader.next().has_value());
    return loader.state();
  };
  const auto refusal = [&](const LoaderState& state, double share) -> std::string {
    SelectionConfig s = selection_config(seed);
    s.replay_share = share;
    s.replay_rows = 16;
    try {
      GroupMatesLoader resumed(loader_config(path, seed), s, p, state);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidState) << e.what();
      return e.what();
    }
    return "";
  };
  const LoaderState automatic = saved_with(kReplayShareAuto), off = saved_with(0.0), other = saved_with(0.3);
  EXPECT_EQ(automatic.extra.at("gm.replay_share"), "0.5") << "auto resolves to the mode's share (kGroup)";
  EXPECT_EQ(other.extra.at("gm.replay_share"), "0.3") << "the shortest text that reads back as the share";
  EXPECT_EQ(refusal(other, 0.3), "");
  EXPECT_EQ(refusal(automatic, 0.5), "") << "auto and its value are the same stream";
  EXPECT_EQ(refusal(off, 0.0), "");
  // "auto" resumes a state under the share it was saved with, whatever the mode's default.
  EXPECT_EQ(refusal(off, kReplayShareAuto), "");
  EXPECT_EQ(refusal(other, kReplayShareAuto), "");
  EXPECT_EQ(refusal(automatic, kReplayShareAuto), "");
  for (const auto& [state, share] : {std::pair{automatic, 0.25}, {automatic, 0.0}, {off, 0.5}, {other, 0.5}}) {
    const std::string e = refusal(state, share);
    EXPECT_NE(e.find("gm.replay_share"), std::string::npos) << e;
    EXPECT_NE(e.find("set SelectionConfig.replay_share = " + state.extra.at("gm.replay_share")), std::string::npos) << e;
  }
  LoaderState legacy = off;  // saved before the key existed
  legacy.extra.erase("gm.replay_share");
  EXPECT_EQ(refusal(legacy, 0.0), "");
  EXPECT_EQ(refusal(legacy, kReplayShareAuto), "") << "auto takes the default of then, 0";
  EXPECT_NE(refusal(legacy, 0.5).find("replay_share = 0 (or \"auto\""), std::string::npos)
      << "no buffer: saved without replay (a loader with replay always saves its buffer)";
  LoaderState legacy_replay = automatic;  // saved by a run that set replay_share itself: its buffer tells
  legacy_replay.extra.erase("gm.replay_share");
  ASSERT_EQ(legacy_replay.extra.count("gm.replay"), 1u);
  EXPECT_EQ(refusal(legacy_replay, 0.5), "");
  const std::string unknown = refusal(legacy_replay, kReplayShareAuto);
  EXPECT_NE(unknown.find("\"auto\" cannot recover: set SelectionConfig.replay_share = the share of the saved run"),
            std::string::npos) << unknown;
  EXPECT_NE(refusal(legacy_replay, 0.0).find("holds a replay buffer"), std::string::npos);
  LoaderState garbled = automatic;
  garbled.extra["gm.replay_share"] = "half";
  EXPECT_NE(refusal(garbled, 0.5).find("'half' is not a replay share"), std::string::npos);
  EXPECT_NE(refusal(garbled, kReplayShareAuto).find("'half' is not a replay share"), std::string::npos);
  garbled.extra["gm.replay_share"] = "0.95";
  EXPECT_NE(refusal(garbled, kReplayShareAuto).find("'0.95' is not a replay share in [0, 0.9]"), std::string::npos);
}

// The replay buffer's relatives are part of the stream too: a state records the overlap and shingle length its buffer
// applied ("0" in the modes without relations) and resumes only under them; a state saved before they were recorded
// holding a buffer was filled without relatives.
TEST_F(ReplayTest, AStateIsRefusedUnderOtherRelatives) {
  ProbeConfig p;
  p.interval_steps = 0;
  struct Setting {
    double overlap = 0.5;
    SelectionMode mode = SelectionMode::kGroup;
    uint32_t shingle_tokens = 8;
    bool relations = true;
    double share = 0.25;
  };
  const auto config = [&](const Setting& x) {
    SelectionConfig s = selection_config(seed);
    s.mode = x.mode;
    s.replay_share = x.share;
    s.replay_rows = 16;
    s.replay_relative_overlap = x.overlap;
    s.seen_shingle_tokens = x.shingle_tokens;
    s.relations = x.relations;
    return s;
  };
  const auto saved_with = [&](const Setting& x) {
    GroupMatesLoader loader(loader_config(path, seed), config(x), p);
    loader.set_reference(reference_rows());
    for (int i = 0; i < 12; ++i) EXPECT_TRUE(loader.next().has_value());
    return loader.state();
  };
  const auto refusal = [&](const LoaderState& state, const Setting& x) -> std::string {
    try {
      GroupMatesLoader resumed(loader_config(path, seed), config(x), p, state);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidState) << e.what();
      return e.what();
    }
    return "";
  };
  const Setting half, off{0.0}, importance{0.5, SelectionMode::kImportance}, no_clusters{0.3, SelectionMode::kGroupNoClusters};
  const LoaderState with_half = saved_with(half), with_off = saved_with(off), with_importance = saved_with(importance),
                    with_no_clusters = saved_with(no_clusters);
  EXPECT_EQ(with_half.extra.at("gm.replay_relative_overlap"), "0.5,8") << "the overlap and the shingle length";
  EXPECT_EQ(with_off.extra.at("gm.replay_relative_overlap"), "0");
  EXPECT_EQ(with_importance.extra.at("gm.replay_relative_overlap"), "0") << "no relations, no relatives";
  EXPECT_EQ(with_no_clusters.extra.at("gm.replay_relative_overlap"), "0.3,8");
  EXPECT_EQ(refusal(with_half, half), "");
  EXPECT_EQ(refusal(with_off, off), "");
  EXPECT_EQ(refusal(with_no_clusters, no_clusters), "");
  EXPECT_EQ(refusal(with_importance, Setting{0.3, SelectionMode::kImportance}), "") << "the setting does not apply there";
  EXPECT_EQ(refusal(with_off, Setting{0.5, SelectionMode::kGroup, 8, false}), "") << "relations off: no relatives";
  const std::string want_half = "set SelectionConfig.replay_relative_overlap = 0.5 and seen_shingle_tokens = 8, with "
                                "mode group (or group_no_clusters) and relations on";
  for (const auto& [state, x, want] :
       {std::tuple{with_half, off, want_half}, {with_half, Setting{0.3}, want_half}, {with_half, Setting{0.5, SelectionMode::kGroup, 16}, want_half},
        {with_half, Setting{0.5, SelectionMode::kGroup, 8, false}, want_half},
        {with_off, half, std::string("set SelectionConfig.replay_relative_overlap = 0 to resume")}}) {
    const std::string e = refusal(state, x);
    EXPECT_NE(e.find("gm.replay_relative_overlap"), std::string::npos) << e;
    EXPECT_NE(e.find(want), std::string::npos) << e;
  }
  // Saved before the key existed: a buffer then was filled without relatives.
  LoaderState legacy = with_half;
  legacy.extra.erase("gm.replay_relative_overlap");
  ASSERT_FALSE(legacy.extra.at("gm.replay").empty());
  EXPECT_EQ(refusal(legacy, off), "");
  EXPECT_NE(refusal(legacy, half).find("saved before the replay buffer's relatives were recorded"), std::string::npos);
  LoaderState legacy_no_buffer = saved_with(Setting{0.5, SelectionMode::kGroup, 8, true, 0.0});
  EXPECT_EQ(legacy_no_buffer.extra.at("gm.replay_relative_overlap"), "0") << "no buffer, no relatives";
  legacy_no_buffer.extra.erase("gm.replay_relative_overlap");
  EXPECT_EQ(refusal(legacy_no_buffer, Setting{0.5, SelectionMode::kGroup, 8, true, 0.0}), "");
  LoaderState garbled = with_half;
  garbled.extra["gm.replay_relative_overlap"] = "half,8";
  EXPECT_NE(refusal(garbled, half).find("'half,8' is not"), std::string::npos);
  garbled.extra["gm.replay_relative_overlap"] = "0.5,";
  EXPECT_NE(refusal(garbled, half).find("'0.5,' is not"), std::string::npos);
}

// Near-duplicates for certain (rows drawn from a dozen patterns, a token changed now and then): the buffer keeps one
// row of a family, and a run resumed from a state (the relatives recomputed from the saved rows' tokens) emits what
// the uninterrupted run emits.
TEST_F(ReplayTest, RelativesResumeExactly) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<uint16_t>> patterns(12, std::vector<uint16_t>(kT));
  for (auto& p : patterns)
    for (auto& t : p) t = uint16_t(rng() % kVocab);
  std::vector<uint16_t> toks;
  for (int r = 0; r < 2000; ++r) {
    std::vector<uint16_t> row = patterns[rng() % patterns.size()];
    if (rng() % 2) row[rng() % kT] = uint16_t(rng() % kVocab);
    toks.insert(toks.end(), row.begin(), row.end());
  }
  const std::string families = dir.file("families.bin");
  gmtest::write_raw(families, toks);
  SelectionConfig s = selection_config(seed);
  s.replay_share = 0.25;
  s.replay_rows = 16;
  s.replay_relative_overlap = 0.5;
  s.seen_shingle_tokens = 4;
  ProbeConfig p;
  p.interval_steps = 0;
  const int total = 40, k = 5 + int(rng() % 30);
  SCOPED_TRACE("resume after batch " + std::to_string(k));
  std::vector<torch::Tensor> original;
  std::string saved;
  {
    GroupMatesLoader loader(loader_config(families, seed), s, p);
    loader.set_reference(reference_rows());
    for (int i = 0; i < total; ++i) {
      auto b = loader.next();
      ASSERT_TRUE(b.has_value());
      original.push_back(b->input_ids.clone());
      if (i == k) saved = loader.state().serialize();
    }
    EXPECT_GT(loader.selection_stats().replayed, 0u);
    EXPECT_GT(loader.selection_stats().replay_relatives, 0u) << "no row met a relative in the buffer";
  }
  GroupMatesLoader resumed(loader_config(families, seed), s, p, LoaderState::parse(saved));
  EXPECT_EQ(resumed.state().serialize(), saved) << "the state right after a resume is the saved state";
  for (int i = k + 1; i < total; ++i) {
    auto b = resumed.next();
    ASSERT_TRUE(b.has_value());
    EXPECT_TRUE(torch::equal(b->input_ids, original[size_t(i)])) << "batch " << i;
  }
}
