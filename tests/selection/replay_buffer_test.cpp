// ReplayBuffer against a straightforward reference (every row offered, stably sorted by score, the first
// `capacity` kept), its exact state, and refusals of hostile or mismatched blobs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <set>

#include "groupmates/error.h"
#include "selection/replay_buffer.h"
#include "selection/selection_test_util.h"

using namespace groupmates;

namespace replay_buffer_test {  // named: the unity build puts several test files in one unit

struct Offered {
  double score;
  uint64_t order;
  std::vector<int64_t> tokens;
};

}  // namespace replay_buffer_test

using namespace replay_buffer_test;

TEST(ReplayBuffer, KeepsTheBestRowsLikeAStableSort) {
  const uint64_t seed = seltest::fresh_seed();
  SCOPED_TRACE(seltest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  const uint64_t capacity = 1 + rng() % 40;
  ReplayBuffer buffer(capacity);
  std::vector<Offered> all;
  for (uint64_t i = 0; i < 300; ++i) {
    // Scores on a coarse grid (ties happen), now and then not finite (never kept).
    double score = double(int64_t(rng() % 41) - 20) / 4.0;
    if (rng() % 50 == 0) score = rng() % 2 ? std::nan("") : INFINITY;
    std::vector<int64_t> row(1 + rng() % 6);
    for (auto& t : row) t = int64_t(rng() % 1000);
    CandidateId id;
    id.hash = i;
    id.source = uint32_t(rng() % 3);
    id.document = rng();
    id.offset = i * 7;
    buffer.offer(score, id, row.data(), int64_t(row.size()));
    if (std::isfinite(score)) all.push_back({score, i, row});
    std::vector<Offered> want = all;
    std::stable_sort(want.begin(), want.end(), [](const Offered& a, const Offered& b) { return a.score < b.score; });
    if (want.size() > capacity) want.resize(capacity);
    ASSERT_EQ(buffer.size(), want.size()) << "after offer " << i;
    for (uint64_t k = 0; k < want.size(); ++k) {
      ASSERT_EQ(buffer.at(k).id.hash, want[k].order) << "rank " << k << " after offer " << i;
      ASSERT_EQ(buffer.at(k).tokens, want[k].tokens);
      ASSERT_EQ(buffer.at(k).score, want[k].score);
    }
  }
}

TEST(ReplayBuffer, SaveLoadIsExactAndRefusesBadBlobs) {
  const uint64_t seed = seltest::fresh_seed();
  SCOPED_TRACE(seltest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  ReplayBuffer a(16), b(16);
  b.load(a.save());  // an empty buffer
  EXPECT_EQ(b.size(), 0u);
  for (int i = 0; i < 40; ++i) {
    std::vector<int64_t> row(8);
    for (auto& t : row) t = int64_t(rng() % 50000);
    CandidateId id;
    id.hash = rng();
    id.source = uint32_t(rng() % 4);
    id.document = rng() % 1000;
    id.offset = rng() % 100000;
    a.offer(double(rng() % 1000) / 100.0, id, row.data(), 8);
  }
  b.load(a.save());
  EXPECT_EQ(b.save(), a.save());
  for (uint64_t k = 0; k < a.size(); ++k) {
    EXPECT_EQ(b.at(k).id.document, a.at(k).id.document);
    EXPECT_EQ(b.at(k).id.source, a.at(k).id.source);
    EXPECT_EQ(b.at(k).tokens, a.at(k).tokens);
  }
  ReplayBuffer other(17);
  try {
    other.load(a.save());
    ADD_FAILURE() << "a buffer of another capacity was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("replay_rows"), std::string::npos) << e.what();
  }
  const std::string good = a.save();
  for (size_t cut : {size_t{3}, size_t{8}, size_t{20}, good.size() / 2, good.size() - 1})
    EXPECT_THROW(b.load(good.substr(0, cut)), Error) << "cut at " << cut;
  EXPECT_THROW(b.load(good + "x"), Error);
  std::string huge_width = good;  // the first row's width field claims more tokens than the blob holds
  const size_t width_at = 8 + 16 + 6 * 8;  // magic, capacity, count; score, hash, source, document, offset, replays
  const uint64_t w = uint64_t(1) << 61;
  huge_width.replace(width_at, 8, reinterpret_cast<const char*>(&w), 8);
  EXPECT_THROW(b.load(huge_width), Error);
  EXPECT_THROW(ReplayBuffer(0), Error);
  EXPECT_THROW(ReplayBuffer(65537), Error);
}

TEST(ReplayBuffer, TakeCountsReplaysAndDropsARowAtMaxReplays) {
  const uint64_t seed = seltest::fresh_seed();
  SCOPED_TRACE(seltest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  const uint64_t cap = 1 + rng() % 3;
  ReplayBuffer buffer(8, cap);
  std::vector<Offered> ref;  // the reference: sorted by score, each with its replay count
  std::vector<uint64_t> counts;
  uint64_t order = 0;
  for (int step = 0; step < 400; ++step) {
    if (rng() % 2 == 0 || ref.empty()) {
      const double score = double(rng() % 20);
      const std::vector<int64_t> row = {int64_t(order)};
      CandidateId id;
      id.hash = order;
      buffer.offer(score, id, row.data(), 1);
      if (ref.size() < 8 || score < ref.back().score) {
        auto at = std::upper_bound(ref.begin(), ref.end(), score, [](double s, const Offered& e) { return s < e.score; });
        counts.insert(counts.begin() + (at - ref.begin()), 0);
        ref.insert(at, Offered{score, order, row});
        if (ref.size() > 8) ref.pop_back(), counts.pop_back();
      }
      ++order;
    } else {
      const uint64_t i = rng() % ref.size();
      const ReplayEntry e = buffer.take(i);
      ASSERT_EQ(e.id.hash, ref[i].order) << "step " << step;
      ASSERT_EQ(e.replays, counts[i] + 1);
      if (++counts[i] >= cap) ref.erase(ref.begin() + int64_t(i)), counts.erase(counts.begin() + int64_t(i));
    }
    ASSERT_EQ(buffer.size(), ref.size()) << "step " << step;
    for (size_t k = 0; k < ref.size(); ++k) ASSERT_EQ(buffer.at(k).replays, counts[k]);
  }
  ReplayBuffer back(8, cap);
  back.load(buffer.save());
  EXPECT_EQ(back.save(), buffer.save());
  ReplayBuffer lower(8, 1);  // a saved count at or above max_replays is refused
  if (std::any_of(counts.begin(), counts.end(), [](uint64_t c) { return c >= 1; }))
    EXPECT_THROW(lower.load(buffer.save()), Error);
  EXPECT_THROW(ReplayBuffer(8, 0), Error);
}

namespace replay_buffer_test {

/// The relatives rule written plainly: sets of sampled shingles, every kept row compared with the offered one.
struct ReferenceRelatives {
  struct Row {
    double score;
    uint64_t order;
    std::set<uint32_t> keys;
  };
  uint64_t capacity;
  double overlap;
  std::vector<Row> kept;  // ascending by score, ties in the order offered
  uint64_t dropped = 0;

  void offer(double score, uint64_t order, const std::vector<uint32_t>& sampled) {
    if (!std::isfinite(score)) return;
    if (kept.size() >= capacity && !(score < kept.back().score)) return;
    const std::set<uint32_t> keys(sampled.begin(), sampled.end());
    std::vector<size_t> related;
    for (size_t i = 0; i < kept.size() && !keys.empty(); ++i) {
      size_t common = 0;
      for (uint32_t k : keys) common += kept[i].keys.count(k);
      if (double(common) / double(keys.size()) >= overlap) related.push_back(i);
    }
    for (size_t i : related)
      if (kept[i].score <= score) {
        dropped += 1;
        return;
      }
    for (auto i = related.rbegin(); i != related.rend(); ++i) kept.erase(kept.begin() + int64_t(*i));
    dropped += related.size();
    Row r{score, order, keys};
    const auto at = std::upper_bound(kept.begin(), kept.end(), score, [](double s, const Row& e) { return s < e.score; });
    kept.insert(at, r);
    if (kept.size() > capacity) kept.pop_back();
  }
};

}  // namespace replay_buffer_test

// Rows of a few families (a base row with a token or two changed) among fresh rows: the buffer matches the plain
// rule above, never holds two rows of one family, and a restored buffer (shingles recomputed) goes on the same.
TEST(ReplayBuffer, RelativesKeepOneRowOfAFamily) {
  const uint64_t seed = seltest::fresh_seed();
  SCOPED_TRACE(seltest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  const int64_t width = 48;
  ReplayRelatives relatives;
  relatives.overlap = 0.5;
  relatives.shingles.shingle_tokens = 4;
  relatives.shingles.sample_every = 1;  // every shingle: a family row always shares >= 37 of its 45
  relatives.shingles.seed = rng();
  const SeenShingles shingler(relatives.shingles);
  const uint64_t capacity = 4 + rng() % 12;
  ReplayBuffer buffer(capacity, UINT64_MAX, relatives);
  ReferenceRelatives ref{capacity, relatives.overlap, {}, 0};
  std::vector<std::vector<int64_t>> bases(6, std::vector<int64_t>(width));
  for (auto& b : bases)
    for (auto& t : b) t = int64_t(rng() % 100000);
  std::vector<int> family_of;  // by order offered; -1 = a fresh row
  std::vector<std::vector<int64_t>> rows;
  const auto offer = [&](ReplayBuffer& into, bool to_reference, uint64_t order) {
    const int family = rng() % 3 ? int(rng() % bases.size()) : -1;
    std::vector<int64_t> row(width);
    if (family >= 0) {
      row = bases[size_t(family)];
      row[rng() % width] = int64_t(rng() % 100000);  // a near-duplicate: at most 4 of 45 shingles change
    } else {
      for (auto& t : row) t = int64_t(rng() % 100000);
    }
    // On a coarse grid (ties happen) that drifts down, so that new rows keep entering a full buffer.
    double score = double(int64_t(rng() % 41) - 20) / 4.0 - 0.25 * double(order / 10);
    if (rng() % 60 == 0) score = std::nan("");
    CandidateId id;
    id.hash = order;
    const uint64_t left_out = into.offer(score, id, row.data(), width);
    if (to_reference) {
      const uint64_t before = ref.dropped;
      std::vector<uint32_t> keys;
      shingler.sampled(row.data(), width, keys);
      ref.offer(score, order, keys);
      EXPECT_EQ(left_out, ref.dropped - before) << "offer " << order;
      family_of.push_back(family);
      rows.push_back(row);
    }
  };
  for (int i = 0; i < 300; ++i) {
    offer(buffer, true, uint64_t(i));
    ASSERT_EQ(buffer.size(), ref.kept.size()) << "after offer " << i;
    std::set<int> families;
    for (uint64_t k = 0; k < buffer.size(); ++k) {
      ASSERT_EQ(buffer.at(k).id.hash, ref.kept[k].order) << "rank " << k << " after offer " << i;
      ASSERT_EQ(buffer.at(k).tokens, rows[buffer.at(k).id.hash]);
      const int f = family_of[buffer.at(k).id.hash];
      if (f >= 0) ASSERT_TRUE(families.insert(f).second) << "two rows of family " << f << " after offer " << i;
    }
  }
  EXPECT_GT(ref.dropped, 0u);
  // Restored from its blob (no shingles in it), a buffer goes on as the original does.
  ReplayBuffer back(capacity, UINT64_MAX, relatives);
  back.load(buffer.save());
  EXPECT_EQ(back.save(), buffer.save());
  const uint64_t state = rng();
  for (int i = 0; i < 100; ++i) {
    rng.seed(state + uint64_t(i));
    offer(buffer, false, 1000 + uint64_t(i));
    rng.seed(state + uint64_t(i));
    offer(back, false, 1000 + uint64_t(i));
    ASSERT_EQ(back.save(), buffer.save()) << "offer " << i << " after the restore";
  }
  // Off (overlap 0): the family rows compete as any rows do.
  ReplayBuffer plain(capacity);
  for (size_t i = 0; i < rows.size(); ++i) {
    CandidateId id;
    EXPECT_EQ(plain.offer(-double(i), id, rows[i].data(), width), 0u);
  }
  EXPECT_EQ(plain.size(), std::min<uint64_t>(capacity, rows.size()));
  ReplayRelatives bad;
  bad.overlap = 1.5;
  EXPECT_THROW(ReplayBuffer(8, 4, bad), Error);
}
