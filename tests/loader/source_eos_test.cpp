// SourceConfig::append_eos: a source whose documents already end with EOS (Megatron data built
// with --append-eod) gets none appended, beside sources that do; fresh random documents.
#include <gtest/gtest.h>

#include <random>

#include "groupmates/streaming_loader.h"
#include "loader/loader_test_util.h"

using namespace groupmates;

namespace {

constexpr uint16_t kEos = 7;

LoaderConfig config_for(const std::vector<SourceConfig>& sources, uint64_t seed, PackingMode packing) {
  LoaderConfig c;
  c.sources = sources;
  c.sequence_length = 16;
  c.batch_size = 2;
  c.eos_id = kEos;
  c.seed = seed;
  c.packing = packing;
  return c;
}

SourceConfig megatron(const std::string& prefix, const std::string& name, bool append_eos) {
  SourceConfig s;
  s.name = name;
  s.format = SourceFormat::kMegatron;
  s.paths = {prefix};
  s.append_eos = append_eos;
  return s;
}

}  // namespace

TEST(SourceEos, DocumentsWithTheirOwnEosEqualDocumentsGivenOne) {
  const uint64_t seed = gmtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  gmtest::TempDir dir;
  std::vector<std::vector<uint16_t>> raw, ended;
  for (int i = 0; i < 50; ++i) {
    std::vector<uint16_t> d(1 + rng() % 30);
    for (auto& t : d) t = static_cast<uint16_t>(10 + rng() % 90);
    raw.push_back(d);
    d.push_back(kEos);
    ended.push_back(d);
  }
  gmtest::write_megatron(dir.file("raw"), raw);
  gmtest::write_megatron(dir.file("ended"), ended);
  for (PackingMode packing : {PackingMode::kPacked, PackingMode::kDocumentAligned}) {
    StreamingLoader appended(config_for({megatron(dir.file("raw"), "s", true)}, seed, packing));
    StreamingLoader own(config_for({megatron(dir.file("ended"), "s", false)}, seed, packing));
    const auto want = gmtest::drain(appended), got = gmtest::drain(own);
    ASSERT_FALSE(want.rows.empty());
    EXPECT_EQ(got.rows, want.rows);
    // with append_eos (the default) the pre-ended documents would end twice
    StreamingLoader twice(config_for({megatron(dir.file("ended"), "s", true)}, seed, packing));
    EXPECT_NE(gmtest::drain(twice).rows, want.rows);
  }
  // Blended: every document of either source ends with exactly one EOS (checked inside each row: rows
  // are shuffled, so one row's last token and the next row's first are not neighbours in the stream).
  StreamingLoader blend(config_for({megatron(dir.file("raw"), "a", true), megatron(dir.file("ended"), "b", false)},
                                   seed, PackingMode::kPacked));
  const auto rows = gmtest::drain(blend).rows;
  ASSERT_GT(rows.size(), 10u);
  for (size_t r = 0; r < rows.size(); ++r)
    for (size_t i = 1; i < rows[r].size(); ++i)
      EXPECT_FALSE(rows[r][i] == kEos && rows[r][i - 1] == kEos) << "row " << r << ", at " << i;
}
