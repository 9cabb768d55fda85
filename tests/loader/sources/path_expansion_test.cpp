// expand_paths: globs and directories against a reference listing (fresh random file names,
// sorted bytewise by hand); errors name the entry and the field; a loader given a directory or a
// glob streams exactly what it streams from the explicit sorted list.
#include "sources/path_expansion.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <random>
#include <set>

#include "groupmates/error.h"
#include "groupmates/streaming_loader.h"
#include "loader/loader_test_util.h"
#include "loader/reader_test_util.h"

namespace groupmates {
namespace {

using rdtest::TempDir;

std::string random_name(std::mt19937_64& rng) {
  static const char kChars[] = "abcXYZ019_-";
  std::string s;
  const size_t n = 1 + rng() % 8;
  for (size_t k = 0; k < n; k++) s += kChars[rng() % (sizeof kChars - 1)];
  return s;
}

TEST(PathExpansionTest, GlobsAndDirectoriesMatchTheReference) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  TempDir dir;
  std::filesystem::create_directories(dir.file("sub.jsonl"));  // a directory named like data: never a match
  std::set<std::string> jsonl, zst, other;
  for (int k = 0; k < 30; k++) {
    const std::string base = random_name(rng);
    switch (rng() % 4) {
      case 0: jsonl.insert(base + ".jsonl"); break;
      case 1: zst.insert(base + ".jsonl.zst"); break;
      default: other.insert(base + (rng() % 2 ? ".txt" : ".bin")); break;
    }
  }
  jsonl.insert("z.jsonl");  // at least one of each
  zst.insert("z.jsonl.zst");
  for (const auto* set : {&jsonl, &zst, &other})
    for (const auto& n : *set) rdtest::write_bytes(dir.file(n), "{}\n");
  // Never matched: hidden files (the line index cache), temporary files.
  for (const char* n : {".z.jsonl.gmidx", ".hidden.jsonl", "y.jsonl.tmp.123.ab", "y.jsonl.zst.tmp.9"}) rdtest::write_bytes(dir.file(n), "x");
  auto sorted_paths = [&](std::vector<std::string> names) {
    for (auto& n : names) n = dir.file(n);
    std::sort(names.begin(), names.end());
    return names;
  };
  std::vector<std::string> all_data(jsonl.begin(), jsonl.end());
  all_data.insert(all_data.end(), zst.begin(), zst.end());
  // A directory: its JSONL files, sorted bytewise.
  EXPECT_EQ(expand_paths({dir.path}, SourceFormat::kJsonl, "f"), sorted_paths(all_data));
  // Globs in entry order; a literal entry kept as written.
  std::vector<std::string> want = sorted_paths({zst.begin(), zst.end()});
  want.push_back("literal.jsonl");
  const auto js = sorted_paths({jsonl.begin(), jsonl.end()});
  want.insert(want.end(), js.begin(), js.end());
  EXPECT_EQ(expand_paths({dir.file("*.zst"), "literal.jsonl", dir.file("*.jsonl")}, SourceFormat::kJsonl, "f"), want);
  // A token-file directory takes every (visible, non-temporary) regular file.
  std::vector<std::string> every(all_data);
  every.insert(every.end(), other.begin(), other.end());
  EXPECT_EQ(expand_paths({dir.path + "/"}, SourceFormat::kTokenFile, "f").size(), every.size());
  // Errors name the entry and the field.
  const Error e1 = rdtest::expect_error([&] { expand_paths({dir.file("*.parquet")}, SourceFormat::kJsonl, "sources[2].paths"); });
  EXPECT_EQ(e1.code(), ErrorCode::kInvalidConfig);
  EXPECT_TRUE(rdtest::contains(e1.what(), dir.file("*.parquet"))) << e1.what();
  EXPECT_TRUE(rdtest::contains(e1.what(), "sources[2].paths")) << e1.what();
  EXPECT_TRUE(rdtest::contains(e1.what(), "matches no file")) << e1.what();
  std::filesystem::create_directories(dir.file("empty"));
  const Error e2 = rdtest::expect_error([&] { expand_paths({dir.file("empty")}, SourceFormat::kJsonl, "sources[0].paths"); });
  EXPECT_TRUE(rdtest::contains(e2.what(), dir.file("empty"))) << e2.what();
  EXPECT_TRUE(rdtest::contains(e2.what(), "no .jsonl")) << e2.what();
}

TEST(PathExpansionTest, MegatronPrefixesFromDirectoriesAndGlobs) {
  TempDir dir;
  for (const char* p : {"b_text_document", "a_text_document"}) {
    rdtest::write_bytes(dir.file(std::string(p) + ".bin"), "x");
    rdtest::write_bytes(dir.file(std::string(p) + ".idx"), "x");
  }
  const std::vector<std::string> want = {dir.file("a_text_document"), dir.file("b_text_document")};
  EXPECT_EQ(expand_paths({dir.path}, SourceFormat::kMegatron, "f"), want);
  EXPECT_EQ(expand_paths({dir.file("*.idx")}, SourceFormat::kMegatron, "f"), want);
  EXPECT_EQ(expand_paths({dir.file("*_document.*")}, SourceFormat::kMegatron, "f"), want);  // .bin + .idx: once each
}

TEST(PathExpansionTest, LoaderStreamsTheSameFromADirectoryAGlobAndTheList) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  TempDir dir;
  std::vector<std::string> names;
  for (int f = 0; f < 5; f++) {
    std::vector<uint16_t> toks(64 * (3 + rng() % 5));
    for (auto& t : toks) t = static_cast<uint16_t>(rng() % 1000);
    names.push_back(dir.file("part-" + std::to_string(rng() % 100000) + ".bin"));
    gmtest::write_raw(names.back(), toks);
  }
  std::sort(names.begin(), names.end());
  auto run = [&](const std::vector<std::string>& paths) {
    LoaderConfig c;
    SourceConfig s;
    s.format = SourceFormat::kTokenFile;
    s.paths = paths;
    c.sources = {s};
    c.sequence_length = 64;
    c.batch_size = 2;
    c.seed = seed;
    c.rank = 0;
    c.world_size = 1;
    c.check_rank_environment = false;
    StreamingLoader loader(c);
    return gmtest::drain(loader).rows;
  };
  const auto listed = run(names);
  ASSERT_FALSE(listed.empty());
  EXPECT_EQ(run({dir.path}), listed);
  EXPECT_EQ(run({dir.file("part-*.bin")}), listed);
  const Error e = rdtest::expect_error([&] { run({dir.file("nothing-*.bin")}); });
  EXPECT_TRUE(rdtest::contains(e.what(), "sources[0].paths")) << e.what();
}

}  // namespace
}  // namespace groupmates
