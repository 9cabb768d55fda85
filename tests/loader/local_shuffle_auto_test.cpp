// LoaderConfig::shuffle_block = kShuffleBlockAuto (the default): a .jsonl.zst source gets a local
// shuffle with blocks of its documents per zstd frame and spans of a quarter of the frames its cache
// holds; plain JSONL and Megatron sources keep the global permutation. Checked on fresh random texts
// against the frame count read off the compressed file and against explicit shuffle_block configs
// (whose permutation streaming_loader_test checks against a reference), with states across the change.
#include <gtest/gtest.h>
#include <zstd.h>

#include <algorithm>
#include <filesystem>
#include <random>
#include <utility>

#include "groupmates/error.h"
#include "groupmates/streaming_loader.h"
#include "loader/loader_test_util.h"

namespace groupmates {
namespace {

using Shuffles = std::vector<std::pair<uint32_t, uint32_t>>;

class AutoShuffleTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_dir_ = new rdtest::TempDir();
    model_ = rdtest::train_spm(model_dir_->path);
  }
  static void TearDownTestSuite() { delete model_dir_; }

  void SetUp() override {
    seed = rdtest::fresh_seed();
    std::mt19937_64 rng(seed);
    docs = 300 + rng() % 200;
    for (uint64_t i = 0; i < docs; ++i) content += "{\"text\": " + rdtest::json_string(rdtest::random_text(rng), rng) + "}\n";
    rdtest::write_bytes(dir.file("a.jsonl"), content);
    const std::string z = rdtest::zstd_compress(content, 40 + static_cast<int>(rng() % 40));
    rdtest::write_bytes(dir.file("a.jsonl.zst"), z);
    for (size_t off = 0; off < z.size(); ++frames) {  // the frames as written, counted independently
      const size_t n = ZSTD_findFrameCompressedSize(z.data() + off, z.size() - off);
      ASSERT_FALSE(ZSTD_isError(n));
      off += n;
    }
  }

  LoaderConfig config(const std::string& file) const {
    SourceConfig s;
    s.name = "web";
    s.format = SourceFormat::kJsonl;
    s.paths = {dir.file(file)};
    s.tokenizer_model = model_;
    s.zstd_cache_bytes = kCache;
    s.index_cache = false;
    LoaderConfig c;
    c.sources = {s};
    c.sequence_length = 16;
    c.batch_size = 2;
    c.eos_id = 1;
    c.seed = seed;
    c.epochs = 2;
    c.num_threads = 2;
    c.rank = 0;
    c.world_size = 1;
    c.check_rank_environment = false;
    return c;
  }
  static std::vector<std::vector<int64_t>> rows(const LoaderConfig& c) {
    StreamingLoader l(c);
    return gmtest::drain(l).rows;
  }

  // The span auto should choose: a quarter of the mean frames the cache holds, at least 1.
  uint32_t expected_span() const { return static_cast<uint32_t>(std::max<uint64_t>(1, kCache / (content.size() / frames) / 4)); }

  static constexpr uint64_t kCache = 65536;  // the smallest zstd_cache_bytes allowed
  static rdtest::TempDir* model_dir_;
  static std::string model_;
  uint64_t seed = 0, docs = 0, frames = 0;
  std::string content;
  rdtest::TempDir dir;
};
rdtest::TempDir* AutoShuffleTest::model_dir_ = nullptr;
std::string AutoShuffleTest::model_;

TEST_F(AutoShuffleTest, ZstdJsonlGetsBlocksOfOneFramesDocuments) {
  SCOPED_TRACE(rdtest::seed_trace(seed) + ", " + std::to_string(docs) + " documents in " + std::to_string(frames) + " frames");
  const LoaderConfig cfg = config("a.jsonl.zst");
  ASSERT_EQ(cfg.shuffle_block, kShuffleBlockAuto);  // the default
  const uint32_t block = static_cast<uint32_t>((docs + frames / 2) / frames);
  const uint32_t span = expected_span();
  ASSERT_GT(span, 2u);
  EXPECT_EQ(StreamingLoader(cfg).local_shuffles(), (Shuffles{{block, span}}));
  LoaderConfig explicit_cfg = cfg;
  explicit_cfg.shuffle_block = block;
  explicit_cfg.shuffle_span = span;
  const auto got = rows(cfg);
  ASSERT_GT(got.size(), 20u);
  EXPECT_EQ(got, rows(explicit_cfg)) << "auto must be the local shuffle it reports";
  LoaderConfig global = cfg;
  global.shuffle_block = 0;
  EXPECT_EQ(StreamingLoader(global).local_shuffles(), (Shuffles{{0, 0}}));
  EXPECT_NE(got, rows(global));
  // shuffle_span caps the span; no shuffle means none.
  LoaderConfig capped = cfg;
  capped.shuffle_span = 2;
  EXPECT_EQ(StreamingLoader(capped).local_shuffles(), (Shuffles{{block, 2}}));
  LoaderConfig ordered = cfg;
  ordered.shuffle = false;
  EXPECT_EQ(StreamingLoader(ordered).local_shuffles(), (Shuffles{{0, 0}}));
}

TEST_F(AutoShuffleTest, PlainJsonlAndMegatronKeepTheGlobalPermutation) {
  SCOPED_TRACE(rdtest::seed_trace(seed));
  const LoaderConfig cfg = config("a.jsonl");
  EXPECT_EQ(StreamingLoader(cfg).local_shuffles(), (Shuffles{{0, 0}}));
  LoaderConfig global = cfg;
  global.shuffle_block = 0;
  EXPECT_EQ(rows(cfg), rows(global));
  LoaderConfig set = cfg;  // an explicit block applies to any document source
  set.shuffle_block = 5;
  EXPECT_EQ(StreamingLoader(set).local_shuffles(), (Shuffles{{5, 256}}));
  std::vector<std::vector<uint16_t>> mdocs(50, std::vector<uint16_t>(7, 3));
  gmtest::write_megatron(dir.file("m"), mdocs);
  LoaderConfig m = cfg;
  m.sources[0].format = SourceFormat::kMegatron;
  m.sources[0].paths = {dir.file("m")};
  EXPECT_EQ(StreamingLoader(m).local_shuffles(), (Shuffles{{0, 0}}));
}

TEST_F(AutoShuffleTest, StatesAcrossTheDefault) {
  SCOPED_TRACE(rdtest::seed_trace(seed));
  for (const char* file : {"a.jsonl.zst", "a.jsonl"}) {
    SCOPED_TRACE(file);
    const LoaderConfig cfg = config(file);
    LoaderConfig global = cfg;
    global.shuffle_block = 0;
    std::string saved_global, saved_auto;
    gmtest::Drained head;
    {
      StreamingLoader g(global), a(cfg);
      for (int i = 0; i < 5; ++i) {
        ASSERT_TRUE(g.next().has_value());
        gmtest::append(head, *a.next());
      }
      saved_global = g.state().serialize();
      saved_auto = a.state().serialize();
    }
    // Under auto a state resumes exactly.
    StreamingLoader resumed(cfg, LoaderState::parse(saved_auto));
    auto all = head.rows;
    const auto rest = gmtest::drain(resumed).rows;
    all.insert(all.end(), rest.begin(), rest.end());
    EXPECT_EQ(all, rows(cfg));
    if (std::string(file) == "a.jsonl") {
      // Global either way: a state saved with shuffle_block = 0 (the old default) restores under auto
      // and continues that stream exactly.
      StreamingLoader ok(cfg, LoaderState::parse(saved_global));
      auto resumed_rows = head.rows;
      const auto tail = gmtest::drain(ok).rows;
      resumed_rows.insert(resumed_rows.end(), tail.begin(), tail.end());
      EXPECT_EQ(resumed_rows, rows(global));
    } else {
      // A local shuffle was chosen: the old default's state is refused, and the message says the fix.
      const Error e = rdtest::expect_error([&] { StreamingLoader bad(cfg, LoaderState::parse(saved_global)); });
      EXPECT_EQ(e.code(), ErrorCode::kInvalidState);
      EXPECT_TRUE(rdtest::contains(e.what(), "restores with shuffle_block = 0")) << e.what();
      StreamingLoader old(global, LoaderState::parse(saved_global));
      EXPECT_TRUE(old.next().has_value());
      // Another cache budget gives other spans: the auto state is refused, naming the knob.
      LoaderConfig bigger = cfg;
      bigger.sources[0].zstd_cache_bytes = 4 * kCache;
      const Error e2 = rdtest::expect_error([&] { StreamingLoader bad(bigger, LoaderState::parse(saved_auto)); });
      EXPECT_TRUE(rdtest::contains(e2.what(), "keep zstd_cache_bytes as saved")) << e2.what();
    }
  }
}

TEST_F(AutoShuffleTest, FewLinesPerFrameStayGlobalAndBigFramesAreReported) {
  SCOPED_TRACE(rdtest::seed_trace(seed));
  // About a line per frame: blocks of 1 would only be a slower global permutation.
  rdtest::write_bytes(dir.file("tiny.jsonl.zst"), rdtest::zstd_compress(content, static_cast<int>(docs)));
  EXPECT_EQ(StreamingLoader(config("tiny.jsonl.zst")).local_shuffles(), (Shuffles{{0, 0}}));
  // One frame per file (as `zstd` writes), six files, a cache of 4 such frames: spans of 1, said on
  // stderr once per process and source (a loader is rebuilt every epoch, resume and worker); nothing
  // said when the whole source fits the cache.
  const std::string frame = rdtest::zstd_compress(content);
  LoaderConfig one = config("a.jsonl.zst");
  one.sources[0].name = "big-frames-" + std::to_string(seed);
  one.sources[0].paths.clear();
  for (int f = 0; f < 6; ++f) {
    rdtest::write_bytes(dir.file("one" + std::to_string(f) + ".jsonl.zst"), frame);
    one.sources[0].paths.push_back(dir.file("one" + std::to_string(f) + ".jsonl.zst"));
  }
  one.sources[0].zstd_cache_bytes = std::max<uint64_t>(kCache, 4 * content.size());
  testing::internal::CaptureStderr();
  const Shuffles got = StreamingLoader(one).local_shuffles();
  const Shuffles again = StreamingLoader(one).local_shuffles();
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(got, (Shuffles{{static_cast<uint32_t>(docs), 1}}));
  EXPECT_EQ(again, got);
  EXPECT_TRUE(rdtest::contains(err, "groupmates reframe") && rdtest::contains(err, "mixes only 1 frame")) << err;
  EXPECT_EQ(err.find("mixes only"), err.rfind("mixes only")) << "said more than once: " << err;
  LoaderConfig fits = one;
  fits.sources[0].name = "fits-" + std::to_string(seed);
  fits.sources[0].paths.resize(1);
  testing::internal::CaptureStderr();
  EXPECT_EQ(StreamingLoader(fits).local_shuffles(), (Shuffles{{static_cast<uint32_t>(docs), 1}}));
  const std::string quiet = testing::internal::GetCapturedStderr();
  EXPECT_FALSE(rdtest::contains(quiet, "mixes only")) << quiet;
}

TEST_F(AutoShuffleTest, SeveralSourcesAndFilesMatchedByContentAfterARename) {
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed ^ 0x5eed);
  std::string other;
  for (uint64_t i = 0; i < docs; ++i) other += "{\"text\": " + rdtest::json_string(rdtest::random_text(rng), rng) + "}\n";
  rdtest::write_bytes(dir.file("b.jsonl.zst"), rdtest::zstd_compress(other, 50));
  LoaderConfig cfg = config("a.jsonl.zst");
  cfg.sources[0].paths = {dir.file("a.jsonl.zst"), dir.file("b.jsonl.zst")};
  SourceConfig plain = cfg.sources[0];
  plain.name = "plain";
  plain.paths = {dir.file("a.jsonl")};
  cfg.sources.push_back(plain);
  const Shuffles chosen = StreamingLoader(cfg).local_shuffles();
  ASSERT_EQ(chosen.size(), 2u);
  EXPECT_GE(chosen[0].first, 2u);
  EXPECT_EQ(chosen[1], (std::pair<uint32_t, uint32_t>{0, 0}));
  const auto full = rows(cfg);
  gmtest::Drained head;
  std::string saved;
  {
    StreamingLoader a(cfg);
    for (int i = 0; i < 7; ++i) gmtest::append(head, *a.next());
    saved = a.state().serialize();
  }
  // The two shards swap names: matched by content, read in the saved order, the same choice.
  std::filesystem::rename(dir.file("a.jsonl.zst"), dir.file("tmp.zst"));
  std::filesystem::rename(dir.file("b.jsonl.zst"), dir.file("a.jsonl.zst"));
  std::filesystem::rename(dir.file("tmp.zst"), dir.file("b.jsonl.zst"));
  testing::internal::CaptureStderr();
  StreamingLoader b(cfg, LoaderState::parse(saved));
  (void)testing::internal::GetCapturedStderr();
  auto all = head.rows;
  const auto rest = gmtest::drain(b).rows;
  all.insert(all.end(), rest.begin(), rest.end());
  EXPECT_EQ(all, full);
  EXPECT_EQ(b.local_shuffles(), chosen);
}

TEST(AutoShuffleConfig, ValidatesAutoAndRange) {
  LoaderConfig c;
  SourceConfig s;
  s.paths = {"x"};
  c.sources = {s};
  c.shuffle_block = kShuffleBlockAuto;
  EXPECT_NO_THROW(c.validate());
  c.shuffle_block = (1u << 24) + 1;
  EXPECT_THROW(c.validate(), Error);
}

}  // namespace
}  // namespace groupmates
