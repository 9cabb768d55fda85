// LineIndex (plain memchr pass, zstd sequential pass) and FrameCache against a straightforward
// reference: lines split by hand, frames found with ZSTD_findFrameCompressedSize, frames
// decompressed one by one; fresh random content, frame counts and cache budgets.
#include "sources/line_index.h"

#include <gtest/gtest.h>
#include <zstd.h>

#include <atomic>
#include <random>
#include <thread>

#include "groupmates/error.h"
#include "loader/reader_test_util.h"
#include "sources/frame_cache.h"

namespace groupmates {
namespace {

using rdtest::TempDir;

// Line byte ranges of `s` by hand: split at '\n', no extra line after a final '\n'.
std::vector<std::pair<uint64_t, uint64_t>> reference_lines(const std::string& s) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  uint64_t b = 0;
  for (uint64_t i = 0; i < s.size(); i++) {
    if (s[i] == '\n') {
      out.push_back({b, i});
      b = i + 1;
    }
  }
  if (b < s.size()) out.push_back({b, s.size()});
  return out;
}

// Random lines (some empty, some long), with or without a final newline.
std::string random_content(std::mt19937_64& rng) {
  std::string s;
  const size_t n = 1 + rng() % 400;
  for (size_t i = 0; i < n; i++) {
    const size_t len = rng() % 8 == 0 ? 0 : rng() % 10 == 0 ? 2000 + rng() % 5000 : rng() % 200;
    for (size_t k = 0; k < len; k++) s += static_cast<char>('a' + rng() % 26);
    if (i + 1 < n || rng() % 2) s += '\n';
  }
  return s;
}

void expect_lines(const LineIndex& ix, const std::string& content) {
  const auto ref = reference_lines(content);
  ASSERT_EQ(ix.size, content.size());
  ASSERT_EQ(ix.starts.size(), ref.size());
  for (size_t k = 0; k < ref.size(); k++) ASSERT_EQ(ix.range(k), ref[k]) << "line " << k;
}

TEST(LineIndexTest, PlainAndZstdAgreeWithReference) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  TempDir dir;
  for (int round = 0; round < 6; round++) {
    const std::string content = random_content(rng);
    const int frames = 1 + static_cast<int>(rng() % 9);
    SCOPED_TRACE("round " + std::to_string(round) + ", frames " + std::to_string(frames));
    expect_lines(index_plain_lines(content.data(), content.size()), content);
    const std::string z = rdtest::zstd_compress(content, frames);
    rdtest::write_bytes(dir.file("a.zst"), z);
    const LineIndex ix = index_zstd_lines(dir.file("a.zst"), uint64_t{1} << 30);
    expect_lines(ix, content);
    // Frames: the compressed boundaries ZSTD_findFrameCompressedSize gives, the decompressed
    // bytes of each frame decompressed alone, contiguous.
    uint64_t off = 0, dec = 0;
    size_t k = 0;
    while (off < z.size()) {
      const size_t n = ZSTD_findFrameCompressedSize(z.data() + off, z.size() - off);
      ASSERT_FALSE(ZSTD_isError(n));
      std::string out(1 << 20, '\0');
      const size_t m = ZSTD_decompress(out.data(), out.size(), z.data() + off, n);
      ASSERT_FALSE(ZSTD_isError(m));
      if (m > 0) {
        ASSERT_LT(k, ix.frames.size());
        EXPECT_EQ(ix.frames[k].compressed_offset, off);
        EXPECT_EQ(ix.frames[k].compressed_size, n);
        EXPECT_EQ(ix.frames[k].offset, dec);
        EXPECT_EQ(ix.frames[k].size, m);
        EXPECT_EQ(out.substr(0, m), content.substr(dec, m));
        EXPECT_EQ(ix.frame_of(dec), k);
        EXPECT_EQ(ix.frame_of(dec + m - 1), k);
        k++;
      }
      off += n;
      dec += m;
    }
    EXPECT_EQ(k, ix.frames.size());
  }
}

TEST(LineIndexTest, FrameOverTheBoundIsRefusedWithTheFix) {
  TempDir dir;
  std::string content;
  for (int i = 0; i < 3000; i++) content += "{\"text\": \"line " + std::to_string(i) + "\"}\n";
  rdtest::write_bytes(dir.file("one.jsonl.zst"), rdtest::zstd_compress(content));
  try {
    index_zstd_lines(dir.file("one.jsonl.zst"), 4096);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig);
    EXPECT_TRUE(rdtest::contains(e.what(), dir.file("one.jsonl.zst") + ":0")) << e.what();
    EXPECT_TRUE(rdtest::contains(e.what(), "groupmates reframe")) << e.what();
    EXPECT_TRUE(rdtest::contains(e.what(), "zstd_cache_bytes")) << e.what();
  }
  EXPECT_EQ(index_zstd_lines(dir.file("one.jsonl.zst"), content.size()).starts.size(), 3000u);
}

TEST(FrameCacheTest, BoundedLruReturnsEveryFrameExactly) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  TempDir dir;
  std::string content;
  while (content.size() < 400000) content += random_content(rng);
  rdtest::write_bytes(dir.file("c.zst"), rdtest::zstd_compress(content, 40));
  const LineIndex ix = index_zstd_lines(dir.file("c.zst"), uint64_t{1} << 30);
  ASSERT_EQ(ix.frames.size(), 40u);
  const uint64_t budget = ix.max_frame_size * 3 + rng() % ix.max_frame_size;
  FrameCache cache(budget);
  // Four threads, random frames; each block equals the content; the cache never exceeds the budget.
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  std::atomic<uint64_t> over{0};
  for (int t = 0; t < 4; t++) {
    threads.emplace_back([&, t] {
      std::mt19937_64 r(seed + t);
      for (int i = 0; i < 300; i++) {
        // Mostly the same few frames (hits), sometimes any frame (misses, evictions).
        const size_t k = r() % 4 ? r() % 3 : r() % ix.frames.size();
        const auto b = cache.get(0, dir.file("c.zst"), ix, k);
        if (*b != content.substr(ix.frames[k].offset, ix.frames[k].size)) wrong++;
        const auto s = cache.stats();
        if (s.bytes > budget) over++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(over.load(), 0u);
  const auto s = cache.stats();
  EXPECT_EQ(s.hits + s.misses, 1200u);
  EXPECT_GT(s.hits, 0u);
  EXPECT_GT(s.misses, 3u);
  EXPECT_LE(s.peak_bytes, budget);
  // A file changed after indexing: the frame no longer decompresses, named with its offset.
  rdtest::write_bytes(dir.file("c.zst"), std::string(100, 'x'));
  FrameCache fresh(budget);
  try {
    fresh.get(0, dir.file("c.zst"), ix, 5);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_TRUE(rdtest::contains(e.what(), dir.file("c.zst") + ":" + std::to_string(ix.frames[5].compressed_offset)))
        << e.what();
    EXPECT_TRUE(rdtest::contains(e.what(), "changed since it was indexed")) << e.what();
  }
}

}  // namespace
}  // namespace groupmates
