// The on-disk line index cache: a second open uses it and reads the same lines; a changed data
// file (stale) and a damaged cache file (corrupt) are detected, counted and rebuilt; jobs opening
// the same files at once never read a torn cache and leave no temporary files. Fresh random files;
// lines checked against a hand split of the content.
#include "sources/line_index_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <random>
#include <thread>

#include "groupmates/error.h"
#include "loader/reader_test_util.h"
#include "sources/jsonl_source.h"
#include "sources/mapped_file.h"

namespace groupmates {
namespace {

using rdtest::TempDir;

std::vector<std::string> random_lines(std::mt19937_64& rng, size_t n) {
  std::vector<std::string> out(n);
  for (auto& l : out) l = "{\"text\": " + rdtest::json_string(rdtest::random_text(rng), rng) + "}";
  return out;
}

std::string join(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += l + "\n";
  return s;
}

SourceConfig jsonl_config(const std::vector<std::string>& paths) {
  SourceConfig c;
  c.name = "cached";
  c.format = SourceFormat::kJsonl;
  c.paths = paths;
  return c;
}

// Every line of `src` equals `want` (file after file).
void expect_lines(const JsonlSource& src, const std::vector<std::vector<std::string>>& want) {
  uint64_t i = 0;
  for (const auto& file : want) {
    for (const auto& l : file) ASSERT_EQ(src.line(i++), l) << "record " << i - 1;
  }
  ASSERT_EQ(src.num_documents(), i);
}

size_t count_files(const std::string& dir, const std::string& part) {
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) n += e.path().filename().string().find(part) != std::string::npos;
  return n;
}

TEST(LineIndexCacheTest, HitStaleCorruptRebuilt) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  TempDir dir;
  std::vector<std::vector<std::string>> want = {random_lines(rng, 50 + rng() % 200), random_lines(rng, 50 + rng() % 200)};
  const std::vector<std::string> paths = {dir.file("a.jsonl"), dir.file("b.jsonl.zst")};
  rdtest::write_bytes(paths[0], join(want[0]));
  rdtest::write_bytes(paths[1], rdtest::zstd_compress(join(want[1]), 1 + rng() % 6));
  {
    JsonlSource first(jsonl_config(paths), BadInputPolicy::kFail, false);
    EXPECT_EQ(first.index_cache_counts().built, 2u);
    expect_lines(first, want);
  }
  EXPECT_TRUE(std::filesystem::exists(dir.file(".a.jsonl.gmidx")));
  EXPECT_TRUE(std::filesystem::exists(dir.file(".b.jsonl.zst.gmidx")));
  {
    JsonlSource second(jsonl_config(paths), BadInputPolicy::kFail, false);
    EXPECT_EQ(second.index_cache_counts().hits, 2u);
    EXPECT_EQ(second.index_cache_counts().report(), "");
    expect_lines(second, want);
  }
  // The cached index equals a fresh build, field by field.
  const std::string content1 = join(want[1]);
  IndexCacheOutcome outcome;
  std::string problem;
  MappedFile m(paths[1]);
  const auto loaded = load_line_index(dir.file(".b.jsonl.zst.gmidx"), line_index_key(paths[1], m.sampled_hash(), true), &outcome, &problem);
  ASSERT_TRUE(loaded.has_value()) << problem;
  const LineIndex built = index_zstd_lines(paths[1], uint64_t{1} << 30);
  EXPECT_EQ(loaded->starts, built.starts);
  EXPECT_EQ(loaded->size, built.size);
  EXPECT_EQ(loaded->content_end, built.content_end);
  ASSERT_EQ(loaded->frames.size(), built.frames.size());
  for (size_t k = 0; k < built.frames.size(); k++) {
    EXPECT_EQ(loaded->frames[k].compressed_offset, built.frames[k].compressed_offset);
    EXPECT_EQ(loaded->frames[k].size, built.frames[k].size);
  }
  // Stale: the plain file rewritten with other lines.
  want[0] = random_lines(rng, 30 + rng() % 100);
  rdtest::write_bytes(paths[0], join(want[0]));
  {
    JsonlSource stale(jsonl_config(paths), BadInputPolicy::kFail, false);
    EXPECT_EQ(stale.index_cache_counts().stale, 1u);
    EXPECT_EQ(stale.index_cache_counts().hits, 1u);
    EXPECT_TRUE(rdtest::contains(stale.index_cache_counts().report(), dir.file(".a.jsonl.gmidx"))) << stale.index_cache_counts().report();
    expect_lines(stale, want);
  }
  // Corrupt: one flipped byte (checksum), then a truncated file; each rebuilt, then a hit again.
  const std::string cache = dir.file(".b.jsonl.zst.gmidx");
  const std::string good = rdtest::read_bytes(cache);
  for (int variant = 0; variant < 2; variant++) {
    std::string bad = good;
    if (variant == 0) bad[8 * 11 + rng() % (bad.size() - 8 * 12)] ^= static_cast<char>(1 + rng() % 255);
    else bad.resize(bad.size() - 8 * (1 + rng() % 3));
    rdtest::write_bytes(cache, bad);
    JsonlSource c(jsonl_config(paths), BadInputPolicy::kFail, false);
    EXPECT_EQ(c.index_cache_counts().corrupt, 1u) << "variant " << variant;
    EXPECT_TRUE(rdtest::contains(c.index_cache_counts().report(), "corrupt and rebuilt")) << c.index_cache_counts().report();
    expect_lines(c, want);
    EXPECT_EQ(rdtest::read_bytes(cache), good);
  }
  // index_cache = false: no file read or written.
  std::filesystem::remove(cache);
  SourceConfig off = jsonl_config(paths);
  off.index_cache = false;
  JsonlSource uncached(off, BadInputPolicy::kFail, false);
  expect_lines(uncached, want);
  EXPECT_FALSE(std::filesystem::exists(cache));
}

TEST(LineIndexCacheTest, CacheDirWhenBesideTheDataIsNotWritable) {
  TempDir dir;
  // A directory that does not exist is not writable: the index goes to the cache directory, named
  // by a hash of the absolute path and the file name.
  const std::string p = line_index_cache_path(dir.file("gone/x.jsonl"), dir.file("cache/sub"));
  EXPECT_EQ(std::filesystem::path(p).parent_path().string(), dir.file("cache/sub"));
  EXPECT_TRUE(rdtest::contains(p, "-x.jsonl.gmidx")) << p;
  EXPECT_NE(p, line_index_cache_path(dir.file("gone2/x.jsonl"), dir.file("cache/sub")));
  EXPECT_EQ(line_index_cache_path(dir.file("gone/x.jsonl"), ""), "");
  EXPECT_EQ(line_index_cache_path(dir.file("x.jsonl"), dir.file("cache")), dir.file(".x.jsonl.gmidx"));
}

TEST(LineIndexCacheTest, ConcurrentOpensShareTheCacheSafely) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  TempDir dir;
  std::vector<std::vector<std::string>> want;
  std::vector<std::string> paths;
  for (int f = 0; f < 12; f++) {
    want.push_back(random_lines(rng, 20 + rng() % 80));
    paths.push_back(dir.file("s" + std::to_string(f) + (f % 2 ? ".jsonl.zst" : ".jsonl")));
    rdtest::write_bytes(paths.back(), f % 2 ? rdtest::zstd_compress(join(want.back()), 1 + f % 3) : join(want.back()));
  }
  // 4 "jobs" open the source 6 times each while a fifth deletes and damages cache files.
  std::atomic<uint64_t> corrupt{0}, failures{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> jobs;
  for (int t = 0; t < 4; t++) {
    jobs.emplace_back([&] {
      for (int round = 0; round < 6; round++) {
        try {
          JsonlSource src(jsonl_config(paths), BadInputPolicy::kFail, false);
          corrupt += src.index_cache_counts().corrupt;
          uint64_t i = 0;
          for (const auto& file : want)
            for (const auto& l : file) failures += src.line(i++) != l;
        } catch (const std::exception& e) {
          ADD_FAILURE() << e.what();
          failures++;
        }
      }
    });
  }
  std::thread vandal([&] {
    std::mt19937_64 r(seed + 99);
    while (!stop) {
      std::filesystem::remove(dir.file(".s" + std::to_string(r() % 12) + ".jsonl.gmidx"));
      std::filesystem::remove(dir.file(".s" + std::to_string(r() % 12) + ".jsonl.zst.gmidx"));
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  for (auto& j : jobs) j.join();
  stop = true;
  vandal.join();
  EXPECT_EQ(failures.load(), 0u);
  EXPECT_EQ(corrupt.load(), 0u);  // never a torn file: writes are renamed into place
  EXPECT_EQ(count_files(dir.path, ".tmp."), 0u);
}

}  // namespace
}  // namespace groupmates
