// `groupmates inspect`: runs the built CLI (GROUPMATES_CLI) on fresh random files and checks its
// counts, problem listings and exit codes (0 clean, 1 problems, 2 usage).
#include <gtest/gtest.h>

#include <random>

#include "loader/reader_test_util.h"
#include "groupmates/tokenizer.h"

namespace groupmates {
namespace {

using rdtest::run_cli;
using rdtest::TempDir;
using rdtest::contains;

class InspectCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_dir_ = new TempDir();
    model_ = rdtest::train_spm(model_dir_->path);
  }
  static void TearDownTestSuite() { delete model_dir_; }
  static TempDir* model_dir_;
  static std::string model_;
};
TempDir* InspectCli::model_dir_ = nullptr;
std::string InspectCli::model_;

TEST_F(InspectCli, UsageAndHelp) {
  auto r = run_cli({"--help"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "usage: groupmates inspect")) << r.output;
  EXPECT_EQ(run_cli({"inspect", "--help"}).exit_code, 0);
  EXPECT_EQ(run_cli({}).exit_code, 2);
  EXPECT_EQ(run_cli({"frobnicate"}).exit_code, 2);
  r = run_cli({"inspect"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.output, "at least one PATH")) << r.output;
  r = run_cli({"inspect", "--dtype", "int7", "x.bin"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.output, "--dtype must be uint16 or uint32")) << r.output;
  EXPECT_EQ(run_cli({"inspect", "--vocab-size", "lots", "x.bin"}).exit_code, 2);
  EXPECT_EQ(run_cli({"inspect", "--bogus", "x.bin"}).exit_code, 2);
  EXPECT_EQ(run_cli({"inspect", "x.bin", "--show"}).exit_code, 2);
}

TEST_F(InspectCli, UnknownFlagsAreUsageErrors) {
  TempDir dir;
  rdtest::write_megatron(dir.file("ds"), 4, {{1, 2, 3}});
  // A good run first, so that a failure below is the flag's doing, not the file's.
  ASSERT_EQ(run_cli({"inspect", "--show=1", dir.file("ds")}).exit_code, 0);
  const std::vector<std::vector<std::string>> bad = {
      {"inspect", "--bogus", dir.file("ds")},
      {"inspect", dir.file("ds"), "--bogus=1"},
      {"inspect", "-x", dir.file("ds")},
      {"inspect", "--vocab", "5", dir.file("ds")},        // a prefix of --vocab-size is not it
      {"inspect", "--tokeniser", "m.model", dir.file("ds")},  // a misspelt flag must not be a PATH
      {"--bogus", "inspect", dir.file("ds")},
      {"inspect", "--show", "-1", dir.file("ds")},        // counts are non-negative
      {"inspect", "--show", "0x10", dir.file("ds")},      // and decimal
      {"inspect", "--window", "0", dir.file("ds")},
      {"inspect", "--text-field=", dir.file("ds")},
  };
  for (const auto& args : bad) {
    std::string line;
    for (const auto& a : args) line += " " + a;
    const auto r = run_cli(args);
    EXPECT_EQ(r.exit_code, 2) << line << "\n" << r.output;
    EXPECT_FALSE(contains(r.output, "total:")) << line << ": nothing is inspected\n" << r.output;
    EXPECT_TRUE(contains(r.output, "usage: groupmates inspect")) << line << "\n" << r.output;
  }
  const auto r = run_cli({"inspect", "--bogus", dir.file("ds")});
  EXPECT_TRUE(contains(r.output, "--bogus")) << "the message names the flag\n" << r.output;
}

TEST_F(InspectCli, MegatronCountsAndRange) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  TempDir dir;
  std::vector<std::vector<int64_t>> docs(1 + rng() % 100);
  uint64_t tokens = 0;
  int64_t lo = INT64_MAX, hi = INT64_MIN;
  for (auto& d : docs) {
    d.resize(1 + rng() % 50);
    for (auto& t : d) {
      t = static_cast<int64_t>(rng() % 1000);
      lo = std::min(lo, t);
      hi = std::max(hi, t);
    }
    tokens += d.size();
  }
  rdtest::write_megatron(dir.file("ds"), 4, docs);
  for (const std::string& path : {dir.file("ds"), dir.file("ds.bin"), dir.file("ds.idx")}) {
    auto r = run_cli({"inspect", "--vocab-size", "1000", path});
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_TRUE(contains(r.output, "format: megatron")) << r.output;
    EXPECT_TRUE(contains(r.output, "dtype int32")) << r.output;
    EXPECT_TRUE(contains(r.output, "documents: " + std::to_string(docs.size()) + "\n")) << r.output;
    EXPECT_TRUE(contains(r.output, "tokens: " + std::to_string(tokens) + "\n")) << r.output;
    EXPECT_TRUE(contains(r.output, "min " + std::to_string(lo) + ", max " + std::to_string(hi))) << r.output;
    EXPECT_TRUE(contains(r.output, "problems: none")) << r.output;
  }
  // Vocabulary too small: out-of-range tokens listed with file and byte offset.
  const auto first_big = [&]() -> std::pair<uint64_t, uint64_t> {  // (doc, token)
    for (uint64_t i = 0; i < docs.size(); i++)
      for (uint64_t k = 0; k < docs[i].size(); k++)
        if (docs[i][k] >= 500) return {i, k};
    return {UINT64_MAX, 0};
  }();
  if (first_big.first != UINT64_MAX) {
    uint64_t byte = 0;
    for (uint64_t i = 0; i < first_big.first; i++) byte += docs[i].size() * 4;
    byte += first_big.second * 4;
    auto r = run_cli({"inspect", "--vocab-size", "500", dir.file("ds")});
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_TRUE(contains(r.output, "out_of_vocab")) << r.output;
    EXPECT_TRUE(contains(r.output, dir.file("ds") + ".bin:byte " + std::to_string(byte) + " (document " +
                                       std::to_string(first_big.first) + ", token " +
                                       std::to_string(first_big.second) + "): token id " +
                                       std::to_string(docs[first_big.first][first_big.second]) + " outside [0, 500)"))
        << r.output;
  }
}

TEST_F(InspectCli, MegatronCorruptions) {
  TempDir dir;
  const std::string p = dir.file("s");
  rdtest::write_megatron(p, 8, {{1, 2, 3}, {4, 5}, {6, 7, 8, 9}});
  // Entry 1 points past the end of the .bin: every document's bounds are checked.
  rdtest::patch_value<int64_t>(p + ".idx", rdtest::idx_pointer_offset(3, 1), 4000);
  auto r = run_cli({"inspect", p});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "problems: 1 (out_of_bounds 1)")) << r.output;
  EXPECT_TRUE(contains(r.output, p + ".bin:byte 4000 (document 1)")) << r.output;
  EXPECT_TRUE(contains(r.output, "documents: 3")) << r.output;
  EXPECT_TRUE(contains(r.output, "tokens: 7")) << r.output;
  // Truncated .idx: an open error is a problem too.
  const std::string idx = rdtest::read_bytes(p + ".idx");
  rdtest::write_bytes(p + ".idx", idx.substr(0, idx.size() - 8));
  r = run_cli({"inspect", p + ".bin"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "truncated or corrupt .idx")) << r.output;
  // A 0-token sequence is legal (the loader skips it and counts it): reported, not a problem.
  rdtest::write_megatron(dir.file("e"), 8, {{1, 2}, {}, {3}});
  r = run_cli({"inspect", dir.file("e")});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "empty documents: 1")) << r.output;
  r = run_cli({"inspect", dir.file("missing.jsonl")});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "No such file")) << r.output;
}

TEST_F(InspectCli, FlatTokenFiles) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  TempDir dir;
  std::vector<uint32_t> toks(1000 + rng() % 1000);
  for (auto& t : toks) t = static_cast<uint32_t>(rng() % 70000);
  for (int i = 0; i < 10; i++) toks[i] %= 50000;  // token 10 is the first one out of [0, 50000)
  toks[10] = 69999;  // the max, so the expected range is known
  toks[11] = 0;
  const uint64_t first_bad = 10;
  rdtest::write_bytes(dir.file("t.u32"), std::string(reinterpret_cast<const char*>(toks.data()), toks.size() * 4));
  auto r = run_cli({"inspect", "--dtype", "uint32", dir.file("t.u32")});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "tokens: " + std::to_string(toks.size()))) << r.output;
  EXPECT_TRUE(contains(r.output, "min 0, max 69999")) << r.output;
  uint64_t bad = 0;
  for (auto t : toks) bad += t >= 50000;
  r = run_cli({"inspect", "--dtype=uint32", "--vocab-size=50000", "--max-listed", "3", dir.file("t.u32")});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "problems: " + std::to_string(bad) + " (out_of_vocab " + std::to_string(bad) + ")"))
      << r.output;
  EXPECT_TRUE(contains(r.output, dir.file("t.u32") + ":byte " + std::to_string(first_bad * 4) + " (token 10): token id 69999"))
      << r.output;
  // Read as uint16, the same bytes are twice as many tokens.
  r = run_cli({"inspect", dir.file("t.u32")});
  EXPECT_TRUE(contains(r.output, "tokens: " + std::to_string(toks.size() * 2))) << r.output;
  rdtest::write_bytes(dir.file("odd.bin"), "abc");
  r = run_cli({"inspect", dir.file("odd.bin")});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "not a multiple of 2")) << r.output;
}

TEST_F(InspectCli, JsonlProblemsAndTokens) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  TempDir dir;
  auto tok = Tokenizer::load(model_);
  std::vector<std::string> texts(20 + rng() % 20);
  std::string content;
  uint64_t tokens = 0;
  for (auto& t : texts) {
    t = rdtest::random_text(rng);
    content += "{\"text\":" + rdtest::json_string(t, rng) + "}\n";
    std::vector<uint32_t> ids;
    tok->encode(t, ids);
    tokens += ids.size();
  }
  rdtest::write_bytes(dir.file("good.jsonl"), content);
  rdtest::write_bytes(dir.file("good.jsonl.zst"), rdtest::zstd_compress(content));
  for (const char* name : {"good.jsonl", "good.jsonl.zst"}) {
    auto r = run_cli({"inspect", "--tokenizer", model_, "--show", "1", dir.file(name)});
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_TRUE(contains(r.output, "documents: " + std::to_string(texts.size()))) << r.output;
    EXPECT_TRUE(contains(r.output, "tokens: " + std::to_string(tokens))) << r.output;
    EXPECT_TRUE(contains(r.output, "problems: none")) << r.output;
    EXPECT_TRUE(contains(r.output, "document 0 (" + dir.file(name) + ":line 1")) << r.output;
  }
  const std::string bad = content + "{\"text\": oops}\n{\"body\": \"x\"}\n{\"text\": \"\xC3\x28\"}\n{\"body\": 1}\n\n";
  rdtest::write_bytes(dir.file("bad.jsonl"), bad);
  auto r = run_cli({"inspect", dir.file("bad.jsonl")});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "problems: 4 (invalid_json 1, invalid_utf8 1, missing_field 2)")) << r.output;
  EXPECT_TRUE(contains(r.output, dir.file("bad.jsonl") + ":line " + std::to_string(texts.size() + 1) + ": invalid JSON"))
      << r.output;
  EXPECT_TRUE(contains(r.output, "blank lines: 1")) << r.output;
  EXPECT_TRUE(contains(r.output, "documents: " + std::to_string(texts.size()))) << r.output;
  r = run_cli({"inspect", "--text-field", "body", dir.file("bad.jsonl")});
  EXPECT_TRUE(contains(r.output, "documents: 1\n")) << r.output;  // only {"body": "x"}
}

TEST_F(InspectCli, DecodesShownDocumentsWithTokenizer) {
  TempDir dir;
  auto tok = Tokenizer::load(model_);
  std::vector<uint32_t> ids;
  tok->encode("the data loader reads tokens", ids);
  std::vector<int64_t> doc(ids.begin(), ids.end());
  rdtest::write_megatron(dir.file("d"), 8, {doc});
  auto r = run_cli({"inspect", "--tokenizer", model_, "--show", "1", dir.file("d")});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "\"the data loader reads tokens\"")) << r.output;
}

}  // namespace
}  // namespace groupmates
