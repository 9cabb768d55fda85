// What a hostile (or unlucky) user does to a running loader or a saved state: a data file
// truncated while mapped, a file replaced by another of the same size, hand-edited states, a huge
// JSONL line, a flat file's short tail. Each must end in a clear error naming the file or field
// (or a counted skip), never a crash or a silently different stream.
#include <gtest/gtest.h>
#include <unistd.h>

#include <random>

#include "groupmates/error.h"
#include "groupmates/streaming_loader.h"
#include "loader/loader_test_util.h"
#include "sources/jsonl_source.h"

using namespace groupmates;
using rdtest::contains;
using rdtest::expect_error;

namespace {

std::vector<uint16_t> random_tokens(std::mt19937_64& rng, uint64_t n) {
  std::vector<uint16_t> t(n);
  for (auto& x : t) x = static_cast<uint16_t>(rng() % 5000);
  return t;
}

LoaderConfig flat(const std::string& path, uint32_t T, uint32_t B, uint64_t seed) {
  LoaderConfig cfg;
  SourceConfig s;
  s.name = "flat";
  s.format = SourceFormat::kTokenFile;
  s.paths = {path};
  cfg.sources = {s};
  cfg.sequence_length = T;
  cfg.batch_size = B;
  cfg.seed = seed;
  cfg.prefetch_batches = 2;
  return cfg;
}

// A state saved after `batches` batches of a fresh loader.
LoaderState state_after(const LoaderConfig& cfg, uint64_t batches) {
  StreamingLoader loader(cfg);
  for (uint64_t i = 0; i < batches; ++i) EXPECT_TRUE(loader.next().has_value());
  return loader.state();
}

// `text` with the first line starting with `key` replaced by `line`.
std::string edit_line(const std::string& text, const std::string& key, const std::string& line) {
  const size_t at = text.find("\n" + key + " ");
  EXPECT_NE(at, std::string::npos) << key;
  const size_t end = text.find('\n', at + 1);
  return text.substr(0, at + 1) + line + text.substr(end);
}

}  // namespace

TEST(HostileInput, FileTruncatedWhileMappedIsAnErrorNamingItNotSigbus) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  rdtest::TempDir dir;
  const std::string path = dir.file("flat.bin");
  gmtest::write_raw(path, random_tokens(rng, 256 * 1024));  // 512 KiB: 128 pages
  StreamingLoader loader(flat(path, 512, 4, seed));
  ASSERT_TRUE(loader.next().has_value());
  ASSERT_EQ(::truncate(path.c_str(), 4096), 0);
  // Batches assembled before the truncation may still come; then an error, never the end or zeros.
  const Error e = expect_error([&] {
    for (int i = 0; i < 1000; ++i)
      if (!loader.next()) break;
  });
  EXPECT_EQ(e.code(), ErrorCode::kIo) << e.what();
  EXPECT_TRUE(contains(e.where(), path)) << e.what();
  EXPECT_TRUE(contains(e.what(), "shrank")) << e.what();
  EXPECT_TRUE(contains(e.what(), "SIGBUS")) << e.what();
}

TEST(HostileInput, FileReplacedBySameSizeOtherTokensIsRefusedOnResumeNamingIt) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  rdtest::TempDir dir;
  const std::string path = dir.file("flat.bin");
  auto tokens = random_tokens(rng, 64 * 1024);
  gmtest::write_raw(path, tokens);
  const LoaderConfig cfg = flat(path, 256, 4, seed);
  const LoaderState saved = LoaderState::parse(state_after(cfg, 3).serialize());
  ASSERT_EQ(saved.files.size(), 1u);
  { StreamingLoader resumed(cfg, saved); }  // unchanged: resumes
  // One token changed in the middle of the file, same size.
  tokens[tokens.size() / 2] ^= 1;
  gmtest::write_raw(path, tokens);
  Error e = expect_error([&] { StreamingLoader resumed(cfg, saved); });
  EXPECT_EQ(e.code(), ErrorCode::kInvalidState) << e.what();
  EXPECT_EQ(e.where(), path) << e.what();
  EXPECT_TRUE(contains(e.what(), "same size but other content")) << e.what();
  EXPECT_TRUE(contains(e.what(), "restore the original file")) << e.what();
  // Other size: named with both sizes.
  tokens.resize(tokens.size() - 256);
  gmtest::write_raw(path, tokens);
  e = expect_error([&] { StreamingLoader resumed(cfg, saved); });
  EXPECT_EQ(e.where(), path) << e.what();
  EXPECT_TRUE(contains(e.what(), std::to_string(tokens.size() * 2) + " bytes but was " +
                                     std::to_string((tokens.size() + 256) * 2))) << e.what();
}

TEST(HostileInput, HandEditedStatesAreRefusedNamingTheField) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  rdtest::TempDir dir;
  const std::string path = dir.file("flat.bin");
  gmtest::write_raw(path, random_tokens(rng, 64 * 1024));
  const LoaderConfig cfg = flat(path, 256, 4, seed);
  const std::string text = state_after(cfg, 2).serialize();
  struct Case {
    std::string edited, field, says;
  };
  const std::vector<Case> parse_cases = {
      {edit_line(text, "batches", "batches -1"), "LoaderState.batches", "not a number"},
      {edit_line(text, "batches", "batches 18446744073709551616"), "LoaderState.batches", "overflows"},
      {edit_line(text, "batches", "batches 2 3"), "LoaderState.batches", "got 2 value(s)"},
      {edit_line(text, "pass", "pass 0x1"), "LoaderState.pass", "digits only"},
      {edit_line(text, "ended", "ended 2"), "LoaderState.ended", "must be 0 or 1"},
      {edit_line(text, "source", "source 0 -5 0"), "LoaderState.sources[0].position", "not a number"},
      {edit_line(text, "fingerprint", "fingerprint xyz"), "LoaderState.config_fingerprint", "not hexadecimal"},
      {text + "batches 7\n", "LoaderState.end", "text after 'end'"},
      {edit_line(text, "batches", "batches 2\nbatches 3"), "LoaderState.batches", "given twice"},
  };
  for (const Case& c : parse_cases) {
    SCOPED_TRACE(c.edited);
    const Error e = expect_error([&] { LoaderState::parse(c.edited); });
    EXPECT_EQ(e.code(), ErrorCode::kInvalidState);
    EXPECT_EQ(e.where(), c.field) << e.what();
    EXPECT_TRUE(contains(e.what(), c.says)) << e.what();
  }
  const std::vector<Case> restore_cases = {
      {edit_line(text, "pass", "pass 5"), "LoaderState.pass", "epochs = 1"},
      {edit_line(text, "batches", "batches 18446744073709551615"), "LoaderState.batches", "the state was edited"},
      {edit_line(text, "samples", "samples 18446744073709551615"), "LoaderState.batches", "the state was edited"},
      {edit_line(text, "source", "source 0 1 0\nsource 0 1 0"), "LoaderState.sources", "2 sources"},
      {edit_line(text, "blend", "blend 3 4"), "LoaderState.blend", "2 counts"},
      {edit_line(text, "source", "source 0 999999 0"), "flat", "past the source's"},
      {edit_line(text, "source", "source 0 1 7"), "LoaderState.sources[0].offset", "always 0"},
  };
  for (const Case& c : restore_cases) {
    SCOPED_TRACE(c.edited);
    const Error e = expect_error([&] { StreamingLoader l(cfg, LoaderState::parse(c.edited)); });
    EXPECT_EQ(e.code(), ErrorCode::kInvalidState);
    EXPECT_EQ(e.where(), c.field) << e.what();
    EXPECT_TRUE(contains(e.what(), c.says)) << e.what();
  }
}

TEST(HostileInput, JsonlLineOverMaxLineBytesIsABadRecordCheckedBeforeParsing) {
  rdtest::TempDir dir;
  const std::string path = dir.file("docs.jsonl");
  const std::string big = "{\"text\": \"" + std::string(5000, 'a') + "\"}";
  rdtest::write_bytes(path, "{\"text\": \"short\"}\n" + big + "\n{\"text\": \"also short\"}\n");
  SourceConfig c;
  c.name = "web";
  c.format = SourceFormat::kJsonl;
  c.paths = {path};
  c.max_line_bytes = 4096;
  JsonlSource src(c, BadInputPolicy::kFail, /*load_tokenizer=*/false);
  std::string text, detail;
  EXPECT_EQ(src.text(0, &text), JsonlSource::Problem::kNone);
  EXPECT_EQ(src.text(1, &text, &detail), JsonlSource::Problem::kLineTooLong);
  EXPECT_TRUE(contains(detail, std::to_string(big.size()) + " bytes, over max_line_bytes = 4096")) << detail;
  EXPECT_STREQ(JsonlSource::problem_key(JsonlSource::Problem::kLineTooLong), "line_too_long");
  c.max_line_bytes = big.size();  // exactly the limit is accepted
  JsonlSource at_limit(c, BadInputPolicy::kFail, false);
  EXPECT_EQ(at_limit.text(1, &text), JsonlSource::Problem::kNone);
  EXPECT_EQ(text.size(), 5000u);
  // Lines over 1 MiB release the thread's parser after use: the text must still come back whole
  // (a parser freed too early once left it dangling).
  std::string huge(3 << 19, 'x');
  for (size_t k = 0; k < huge.size(); k += 97) huge[k] = static_cast<char>('a' + k % 26);
  rdtest::write_bytes(path, "{\"text\": \"" + huge + "\"}\n{\"text\": \"after\"}\n");
  c.max_line_bytes = 2u << 20;
  JsonlSource large(c, BadInputPolicy::kFail, false);
  for (int round = 0; round < 2; ++round) {
    ASSERT_EQ(large.text(0, &text), JsonlSource::Problem::kNone);
    EXPECT_TRUE(text == huge) << "a " << huge.size() << "-byte text came back as " << text.size() << " bytes";
    ASSERT_EQ(large.text(1, &text), JsonlSource::Problem::kNone);
    EXPECT_EQ(text, "after");
  }
  LoaderConfig cfg;
  c.max_line_bytes = 0;
  c.tokenizer_model = "x.model";
  cfg.sources = {c};
  const Error e = expect_error([&] { cfg.validate(); });
  EXPECT_EQ(e.where(), "LoaderConfig.sources[0].max_line_bytes") << e.what();
}

TEST(HostileInput, FlatFileTailShorterThanAWindowIsCountedPerEpoch) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  rdtest::TempDir dir;
  const uint32_t T = 16 + static_cast<uint32_t>(rng() % 64);
  const uint64_t tail1 = 1 + rng() % (T - 1), tail2 = rng() % T;
  const std::string a = dir.file("a.bin"), b = dir.file("b.bin");
  gmtest::write_raw(a, random_tokens(rng, 8 * T + tail1));
  gmtest::write_raw(b, random_tokens(rng, 4 * T + tail2));
  LoaderConfig cfg = flat(a, T, 1, seed);
  cfg.sources[0].paths.push_back(b);
  cfg.sources[0].on_exhausted = OnExhausted::kEnd;
  const uint32_t epochs = 1 + static_cast<uint32_t>(rng() % 3);
  cfg.epochs = epochs;
  StreamingLoader loader(cfg);
  const auto d = gmtest::drain(loader);
  EXPECT_EQ(d.rows.size(), 12u * epochs);
  EXPECT_EQ(loader.skipped().at("flat/epoch_tail_tokens"), (tail1 + tail2) * epochs) << loader.skip_report();
  // A state saved mid-stream carries the count, and resuming does not count an epoch twice.
  const LoaderState mid = state_after(cfg, 12);  // exactly at the end of epoch 0 (tail not yet seen)
  StreamingLoader resumed(cfg, mid);
  gmtest::drain(resumed);
  EXPECT_EQ(resumed.skipped().at("flat/epoch_tail_tokens"), (tail1 + tail2) * epochs);
}
