// Tokenizer (SentencePiece through the dlopen()ed shim) against the sentencepiece CLI tools.
//
// Trains a small model with `spm_train` on generated text in a fresh mkdtemp() directory, then
// checks Tokenizer::encode against `spm_encode --output_format=id` line by line.
#include "groupmates/tokenizer.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "groupmates/error.h"

namespace groupmates {
namespace {

namespace fs = std::filesystem;

std::string make_temp_dir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/gm_tokenizer_test.XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) return {};
  return buf.data();
}

int run_shell(const std::string& cmd) { return std::system(cmd.c_str()); }

// Random-ish prose: Zipf-like word choice from a generated lexicon, punctuation, digits, some
// non-ASCII (accents, dashes, quotes, CJK) so normalisation and unknown characters are exercised.
std::vector<std::string> make_lines(uint32_t seed, size_t n) {
  std::mt19937 rng(seed);
  const std::string letters = "etaoinshrdlcumwfgypbvkjxqz";
  const std::vector<std::string> extras = {"é", "ñ", "ü", "—", "“", "”", "’", "日本", "ß", "€"};
  std::vector<std::string> lexicon;
  for (int i = 0; i < 800; ++i) {
    std::string w;
    int len = 1 + static_cast<int>(rng() % 9);
    for (int j = 0; j < len; ++j) w += letters[std::min<size_t>(rng() % 26, rng() % 26)];
    if (rng() % 25 == 0) w += extras[rng() % extras.size()];
    if (rng() % 10 == 0) w[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(w[0])));
    lexicon.push_back(w);
  }
  std::vector<std::string> lines;
  for (size_t i = 0; i < n; ++i) {
    std::string line;
    int words = 1 + static_cast<int>(rng() % 25);
    for (int k = 0; k < words; ++k) {
      if (k) line += (rng() % 30 == 0) ? "  " : " ";
      size_t idx = std::min<size_t>({rng() % lexicon.size(), rng() % lexicon.size(), rng() % lexicon.size()});
      line += lexicon[idx];
      if (rng() % 12 == 0) line += ",";
      if (rng() % 40 == 0) line += " " + std::to_string(rng() % 10000);
    }
    line += (rng() % 5 == 0) ? "?" : ".";
    if (rng() % 50 == 0) line = "  " + line + " ";
    lines.push_back(line);
  }
  return lines;
}

void write_lines(const std::string& path, const std::vector<std::string>& lines) {
  std::ofstream f(path, std::ios::binary);
  for (const auto& l : lines) f << l << '\n';
}

std::vector<uint32_t> parse_ids(const std::string& line) {
  std::vector<uint32_t> ids;
  std::istringstream in(line);
  uint32_t id;
  while (in >> id) ids.push_back(id);
  return ids;
}

class TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = make_temp_dir();
    ASSERT_FALSE(dir_.empty()) << "mkdtemp failed";
    write_lines(dir_ + "/train.txt", make_lines(12345, 4000));
    const std::string cmd = "spm_train --input=" + dir_ + "/train.txt --model_prefix=" + dir_ +
                            "/m --vocab_size=500 --model_type=unigram --character_coverage=0.9995"
                            " --pad_id=0 --unk_id=1 --bos_id=2 --eos_id=3 --num_threads=1 --minloglevel=2 > " +
                            dir_ + "/train.log 2>&1";
    ASSERT_EQ(run_shell(cmd), 0) << "spm_train failed (is the `sentencepiece` package installed?): " << cmd;
    model_ = dir_ + "/m.model";
    // Held-out lines from another seed, plus edge cases.
    lines_ = make_lines(777, 600);
    lines_.push_back("");
    lines_.push_back(" ");
    lines_.push_back("x");
    lines_.push_back("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz");
    lines_.push_back("Unseen characters: Ωμέγα, 🙂, ✓ and tabs\tinside.");
    write_lines(dir_ + "/test.txt", lines_);
    ASSERT_EQ(run_shell("spm_encode --model=" + model_ + " --output_format=id < " + dir_ + "/test.txt > " + dir_ +
                        "/test.ids"),
              0);
    std::ifstream ids(dir_ + "/test.ids");
    std::string line;
    while (std::getline(ids, line)) expected_.push_back(parse_ids(line));
    ASSERT_EQ(expected_.size(), lines_.size());
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  static std::string dir_, model_;
  static std::vector<std::string> lines_;
  static std::vector<std::vector<uint32_t>> expected_;
};
std::string TokenizerTest::dir_;
std::string TokenizerTest::model_;
std::vector<std::string> TokenizerTest::lines_;
std::vector<std::vector<uint32_t>> TokenizerTest::expected_;

TEST_F(TokenizerTest, MatchesSpmEncodeCli) {
  auto tok = Tokenizer::load(model_);
  EXPECT_EQ(tok->vocab_size(), 500u);
  EXPECT_EQ(tok->eos_id(), 3);
  size_t total = 0;
  for (size_t i = 0; i < lines_.size(); ++i) {
    std::vector<uint32_t> ids;
    tok->encode(lines_[i], ids);
    ASSERT_EQ(ids, expected_[i]) << "line " << i << ": \"" << lines_[i] << "\"";
    total += ids.size();
  }
  EXPECT_GT(total, lines_.size() * 5);  // the comparison is not vacuous
  EXPECT_FALSE(Tokenizer::shim_path().empty());
}

TEST_F(TokenizerTest, EncodeAppends) {
  auto tok = Tokenizer::load(model_);
  std::vector<uint32_t> out = {42};
  tok->encode(lines_[0], out);
  ASSERT_EQ(out.size(), expected_[0].size() + 1);
  EXPECT_EQ(out[0], 42u);
  EXPECT_TRUE(std::equal(expected_[0].begin(), expected_[0].end(), out.begin() + 1));
}

TEST_F(TokenizerTest, DecodeRoundTripsAndChecksRange) {
  auto tok = Tokenizer::load(model_);
  const std::string text = "the quick brown fox";  // lower-case ASCII: no unknowns, normalised already
  std::vector<uint32_t> ids;
  tok->encode(text, ids);
  EXPECT_EQ(tok->decode(ids), text);
  try {
    tok->decode({5, 500});
    FAIL() << "expected an out-of-vocab error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kOutOfVocab);
    EXPECT_NE(std::string(e.what()).find("500"), std::string::npos) << e.what();
  }
}

TEST_F(TokenizerTest, ConcurrentEncodeEqualsSerial) {
  auto tok = Tokenizer::load(model_);
  std::vector<std::vector<uint32_t>> serial(lines_.size());
  for (size_t i = 0; i < lines_.size(); ++i) tok->encode(lines_[i], serial[i]);
  constexpr int kThreads = 4;
  constexpr int kRounds = 5;
  std::vector<std::vector<std::vector<uint32_t>>> got(kThreads, std::vector<std::vector<uint32_t>>(lines_.size()));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRounds; ++r) {
        // Each thread walks the lines from a different start so they overlap on the same model.
        for (size_t k = 0; k < lines_.size(); ++k) {
          size_t i = (k + static_cast<size_t>(t) * lines_.size() / kThreads) % lines_.size();
          std::vector<uint32_t> ids;
          tok->encode(lines_[i], ids);
          if (r == 0) got[t][i] = std::move(ids);
          else if (ids != got[t][i]) got[t][i].clear();  // would show up as a mismatch below
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) {
    for (size_t i = 0; i < lines_.size(); ++i) ASSERT_EQ(got[t][i], serial[i]) << "thread " << t << " line " << i;
  }
}

TEST_F(TokenizerTest, MissingModelNamesPath) {
  const std::string path = dir_ + "/no_such.model";
  try {
    Tokenizer::load(path);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kIo);
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  try {
    Tokenizer::load(dir_);
    FAIL() << "expected an error for a directory";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kIo);
    EXPECT_NE(std::string(e.what()).find(dir_), std::string::npos) << e.what();
  }
}

TEST_F(TokenizerTest, NonModelFileNamesPath) {
  for (const std::string path : {dir_ + "/train.txt", dir_ + "/m.vocab"}) {
    try {
      Tokenizer::load(path);
      FAIL() << "expected an error for " << path;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kCorruptData) << e.what();
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
  const std::string empty = dir_ + "/empty.model";
  std::ofstream(empty).close();
  EXPECT_THROW(Tokenizer::load(empty), Error);
}

// A wrong GROUPMATES_SPM_SHIM must fail with a message naming the model, the shim path and the
// fix. The shim is loaded once per process, so this runs in a fresh re-executed child
// ("threadsafe" death-test style) where nothing has loaded it yet.
TEST(TokenizerShimDeathTest, BadShimOverrideIsExplained) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        setenv("GROUPMATES_SPM_SHIM", "/nonexistent/dir/libgroupmates_spm.so", 1);
        // Any readable regular file passes the model-file check; the shim is needed next.
        const std::string model = "/proc/self/exe";
        try {
          Tokenizer::load(model);
          std::fprintf(stderr, "no error\n");
          _exit(1);
        } catch (const Error& e) {
          std::string m = e.what();
          std::fprintf(stderr, "%s\n", e.what());
          bool ok = e.code() == ErrorCode::kInternal && m.find(model) != std::string::npos &&
                    m.find("/nonexistent/dir/libgroupmates_spm.so") != std::string::npos &&
                    m.find("GROUPMATES_SPM_SHIM") != std::string::npos;
          _exit(ok ? 0 : 2);
        }
      },
      ::testing::ExitedWithCode(0), "GROUPMATES_SPM_SHIM");
}

}  // namespace
}  // namespace groupmates
