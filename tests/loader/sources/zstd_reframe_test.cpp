// reframe_jsonl_zstd / `groupmates reframe`: the output decompresses to the input's exact bytes,
// every frame but the last ends at a line end and holds ~frame_bytes, and the JSONL source reads
// it with a cache of a few frames.
#include "sources/zstd_reframe.h"

#include <gtest/gtest.h>
#include <zstd.h>

#include <unistd.h>

#include <filesystem>
#include <random>

#include "groupmates/error.h"
#include "loader/reader_test_util.h"
#include "sources/jsonl_source.h"
#include "sources/line_index.h"

namespace groupmates {
namespace {

using rdtest::TempDir;

TEST(ZstdReframeTest, SameBytesInSmallFramesCutAtLineEnds) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  TempDir dir;
  std::string content;
  while (content.size() < 300000) {
    std::string text = rdtest::random_text(rng, rng() % 20 == 0 ? 3000 : 60);
    content += "{\"text\": " + rdtest::json_string(text, rng) + "}\n";
  }
  if (rng() % 2) content.pop_back();  // no final newline
  const uint64_t frame_bytes = 4096 + rng() % 40000;
  rdtest::write_bytes(dir.file("in.jsonl"), content);
  rdtest::write_bytes(dir.file("in.jsonl.zst"), rdtest::zstd_compress(content));
  for (const char* in : {"in.jsonl", "in.jsonl.zst"}) {
    SCOPED_TRACE(in);
    const ReframeResult r = reframe_jsonl_zstd(dir.file(in), dir.file("out.jsonl.zst"), frame_bytes, 1 + rng() % 5);
    EXPECT_EQ(r.decompressed_bytes, content.size());
    const std::string z = rdtest::read_bytes(dir.file("out.jsonl.zst"));
    EXPECT_EQ(r.output_bytes, z.size());
    // Frame by frame, by hand.
    std::string back;
    uint64_t off = 0, frames = 0;
    while (off < z.size()) {
      const size_t n = ZSTD_findFrameCompressedSize(z.data() + off, z.size() - off);
      ASSERT_FALSE(ZSTD_isError(n));
      const unsigned long long declared = ZSTD_getFrameContentSize(z.data() + off, n);
      ASSERT_NE(declared, ZSTD_CONTENTSIZE_UNKNOWN);
      std::string part(declared, '\0');
      ASSERT_EQ(ZSTD_decompress(part.data(), part.size(), z.data() + off, n), declared);
      off += n;
      frames++;
      back += part;
      if (off < z.size()) {
        EXPECT_EQ(part.back(), '\n');
        // At least frame_bytes unless the frame's last line is longer (a line is never cut).
        if (part.size() < frame_bytes) ADD_FAILURE() << "frame " << frames << " of " << part.size() << " bytes";
        const size_t prev_nl = part.rfind('\n', part.size() - 2);
        EXPECT_LT(prev_nl == std::string::npos ? 0 : prev_nl + 1, frame_bytes) << "frame " << frames << " is longer than needed";
      }
    }
    EXPECT_EQ(frames, r.frames);
    ASSERT_EQ(back, content);
    EXPECT_FALSE(std::filesystem::exists(dir.file("out.jsonl.zst.tmp." + std::to_string(::getpid()))));
    // The source reads it with a budget of ~4 frames.
    SourceConfig c;
    c.name = "re";
    c.format = SourceFormat::kJsonl;
    c.paths = {dir.file("out.jsonl.zst")};
    c.zstd_cache_bytes = std::max<uint64_t>(65536, 4 * (frame_bytes + 6000));
    JsonlSource src(c, BadInputPolicy::kFail, /*load_tokenizer=*/false);
    const LineIndex plain = index_plain_lines(content.data(), content.size());
    ASSERT_EQ(src.num_documents(), plain.starts.size());
    for (int k = 0; k < 300; k++) {
      const uint64_t i = rng() % plain.starts.size();
      const auto [b, e] = plain.range(i);
      ASSERT_EQ(src.line(i), content.substr(b, e - b)) << "line " << i;
    }
  }
  // The CLI: same output; a missing input names the file, exit 1.
  auto r = rdtest::run_cli({"reframe", "--frame-bytes", std::to_string(frame_bytes), dir.file("in.jsonl"), dir.file("cli.jsonl.zst")});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(rdtest::contains(r.output, "frames")) << r.output;
  EXPECT_EQ(index_zstd_lines(dir.file("cli.jsonl.zst"), 1 << 20).starts.size(), index_plain_lines(content.data(), content.size()).starts.size());
  r = rdtest::run_cli({"reframe", dir.file("missing.jsonl"), dir.file("x.zst")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(rdtest::contains(r.output, dir.file("missing.jsonl"))) << r.output;
  r = rdtest::run_cli({"reframe", dir.file("in.jsonl")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(rdtest::contains(r.output, "needs IN and OUT")) << r.output;
  // --help prints the usage and succeeds, before IN and OUT are checked.
  r = rdtest::run_cli({"reframe", "--help"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(rdtest::contains(r.output, "groupmates reframe [--frame-bytes N]")) << r.output;
}

}  // namespace
}  // namespace groupmates
