// SeenShingles against a straightforward reference (a list of the last `capacity` sampled keys, scanned):
// overlap shares, forgetting, the sampling's invariance to where a row cuts the text, padding, and state.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <random>

#include "groupmates/error.h"
#include "selection/seen_shingles.h"
#include "selection/selection_test_util.h"

using namespace groupmates;

namespace seen_shingles_test {  // named: the unity build puts several test files in one unit

std::vector<int64_t> shingles_random_row(std::mt19937_64& rng, int64_t width, int64_t vocab) {
  std::vector<int64_t> r(static_cast<size_t>(width));
  for (auto& x : r) x = int64_t(rng() % uint64_t(vocab));
  return r;
}

// The definition: the share of the row's sampled keys found in the last `capacity` keys added.
double shingles_reference_overlap(const SeenShingles& s, const std::deque<uint32_t>& memory, const std::vector<int64_t>& row) {
  std::vector<uint32_t> keys;
  s.sampled(row.data(), int64_t(row.size()), keys);
  if (keys.empty()) return 0.0;
  size_t hit = 0;
  for (uint32_t k : keys) hit += std::find(memory.begin(), memory.end(), k) != memory.end();
  return double(hit) / double(keys.size());
}

}  // namespace seen_shingles_test

using namespace seen_shingles_test;

TEST(SeenShingles, OverlapAndForgettingMatchAReferenceList) {
  const uint64_t seed = seltest::fresh_seed();
  SCOPED_TRACE(seltest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  SeenShinglesConfig c;
  c.shingle_tokens = 2 + int(rng() % 5);
  c.sample_every = 1 + uint32_t(rng() % 4);
  c.capacity = 20 + rng() % 60;  // small: forgetting happens
  c.seed = rng();
  SeenShingles seen(c);
  std::deque<uint32_t> memory;
  std::vector<std::vector<int64_t>> added;
  int partial = 0;  // queries with 0 < overlap < 1: the test sees shares, not only hit or miss
  for (int step = 0; step < 300; ++step) {
    std::vector<int64_t> row;
    if (!added.empty() && rng() % 2 == 0) {  // a row added before, some of its tokens changed
      row = added[rng() % added.size()];
      for (int e = int(rng() % 3); e > 0; --e) row[rng() % row.size()] = int64_t(rng() % 6);
    } else {
      row = shingles_random_row(rng, 8 + int64_t(rng() % 24), 6);  // a small vocabulary: repeats across rows
    }
    const double want = shingles_reference_overlap(seen, memory, row);
    EXPECT_DOUBLE_EQ(seen.overlap(row.data(), int64_t(row.size())), want) << "step " << step;
    partial += want > 0 && want < 1;
    if (rng() % 3 != 0) {
      seen.add(row.data(), int64_t(row.size()));
      std::vector<uint32_t> keys;
      seen.sampled(row.data(), int64_t(row.size()), keys);
      for (uint32_t k : keys) {
        memory.push_back(k);
        if (memory.size() > c.capacity) memory.pop_front();
      }
      added.push_back(row);
    }
    ASSERT_EQ(seen.size(), memory.size());
  }
  EXPECT_GT(partial, 0);
}

TEST(SeenShingles, SamplesTheSameShinglesWhereverARowCutsTheText) {
  const uint64_t seed = seltest::fresh_seed();
  SCOPED_TRACE(seltest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  SeenShinglesConfig c;
  c.seed = rng();
  SeenShingles seen(c);
  const std::vector<int64_t> text = shingles_random_row(rng, 4096, 50000);
  std::vector<uint32_t> whole;
  seen.sampled(text.data(), int64_t(text.size()), whole);
  // About one shingle in sample_every (4,089 shingles, 1/8: mean 511, sd 21).
  EXPECT_GT(whole.size(), 400u);
  EXPECT_LT(whole.size(), 620u);
  // Cut at a random offset: the piece samples exactly the shingles of the whole lying inside it.
  const int64_t at = 100 + int64_t(rng() % 1000), width = 1000;
  std::vector<uint32_t> piece;
  seen.sampled(text.data() + at, width, piece);
  std::vector<uint32_t> inside;
  std::vector<uint32_t> one;
  for (int64_t i = at; i + c.shingle_tokens <= at + width; ++i) {
    one.clear();
    seen.sampled(text.data() + i, c.shingle_tokens, one);
    inside.insert(inside.end(), one.begin(), one.end());
  }
  EXPECT_EQ(piece, inside);
  // A row remembered whole covers its pieces fully; an unrelated row not at all.
  seen.add(text.data(), int64_t(text.size()));
  EXPECT_DOUBLE_EQ(seen.overlap(text.data() + at, width), 1.0);
  const std::vector<int64_t> other = shingles_random_row(rng, 1000, 50000);
  EXPECT_DOUBLE_EQ(seen.overlap(other.data(), 1000), 0.0);
}

TEST(SeenShingles, NoShingleSpansPadding) {
  SeenShinglesConfig c;
  c.shingle_tokens = 3;
  c.sample_every = 1;
  c.pad_id = 0;
  SeenShingles seen(c);
  std::vector<uint32_t> keys;
  const std::vector<int64_t> row = {5, 6, 0, 7, 8, 9, 0, 0, 1, 2};  // only 7 8 9 is a whole shingle
  seen.sampled(row.data(), int64_t(row.size()), keys);
  ASSERT_EQ(keys.size(), 1u);
  std::vector<uint32_t> direct;
  seen.sampled(row.data() + 3, 3, direct);
  EXPECT_EQ(keys, direct);
  EXPECT_DOUBLE_EQ(seen.overlap(row.data(), 2), 0.0) << "a row without shingles overlaps nothing";
}

TEST(SeenShingles, SaveLoadRestoresTheMemoryExactly) {
  const uint64_t seed = seltest::fresh_seed();
  SCOPED_TRACE(seltest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  SeenShinglesConfig c;
  c.shingle_tokens = 3;
  c.sample_every = 2;
  c.capacity = 50;
  SeenShingles a(c), b(c);
  b.load(a.save());  // an empty memory (a state saved before any window was emitted)
  EXPECT_EQ(b.size(), 0u);
  EXPECT_EQ(b.save(), a.save());
  std::vector<std::vector<int64_t>> rows;
  for (int i = 0; i < 40; ++i) rows.push_back(shingles_random_row(rng, 16, 5));
  for (int i = 0; i < 20; ++i) a.add(rows[i].data(), 16);  // past capacity: the ring has wrapped
  b.load(a.save());
  EXPECT_EQ(b.save(), a.save());
  for (int i = 20; i < 40; ++i) {
    EXPECT_DOUBLE_EQ(b.overlap(rows[i].data(), 16), a.overlap(rows[i].data(), 16));
    a.add(rows[i].data(), 16);
    b.add(rows[i].data(), 16);
  }
  EXPECT_EQ(b.save(), a.save());
  // Another setting, a truncated or foreign blob: refused, naming what to fix.
  SeenShinglesConfig other = c;
  other.capacity = 64;
  SeenShingles wrong(other);
  EXPECT_THROW(
      {
        try {
          wrong.load(a.save());
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("seen_"), std::string::npos) << e.what();
          throw;
        }
      },
      Error);
  std::string cut = a.save();
  cut.resize(cut.size() - 3);
  EXPECT_THROW(b.load(cut), Error);
  EXPECT_THROW(b.load("gmimp001"), Error);
}

TEST(SeenShingles, ConfigOutOfRangeNamesTheField) {
  for (int which = 0; which < 3; ++which) {
    SeenShinglesConfig c;
    if (which == 0) c.shingle_tokens = 1;
    if (which == 1) c.sample_every = 0;
    if (which == 2) c.capacity = 0;
    try {
      SeenShingles s(c);
      ADD_FAILURE() << "accepted setting " << which;
    } catch (const Error& e) {
      const std::string field = which == 0 ? "shingle_tokens" : which == 1 ? "sample_every" : "capacity";
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  }
}
