// SourceConfig::append_eos: a source whose documents already end with EOS (Megatron data built
// with --append-eod) gets none appended, beside sources that do; SourceConfig::eos_id: a source
// appends its own id; fresh random documents.
#include <gtest/gtest.h>

#include <random>

#include "groupmates/error.h"
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

TEST(SourceEos, ASourceAppendsItsOwnEosId) {
  const uint64_t seed = gmtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  gmtest::TempDir dir;
  constexpr uint16_t kOwn = 5;
  std::vector<std::vector<uint16_t>> raw, ended_own;
  for (int i = 0; i < 60; ++i) {
    std::vector<uint16_t> d(1 + rng() % 30);
    for (auto& t : d) t = static_cast<uint16_t>(10 + rng() % 90);
    raw.push_back(d);
    d.push_back(kOwn);
    ended_own.push_back(d);
  }
  gmtest::write_megatron(dir.file("raw"), raw);
  gmtest::write_megatron(dir.file("ended"), ended_own);
  for (PackingMode packing : {PackingMode::kPacked, PackingMode::kDocumentAligned}) {
    // eos_id = kOwn appended equals documents that end with kOwn and get nothing appended.
    SourceConfig own = megatron(dir.file("raw"), "s", true);
    own.eos_id = kOwn;
    StreamingLoader appended(config_for({own}, seed, packing));
    StreamingLoader reference(config_for({megatron(dir.file("ended"), "s", false)}, seed, packing));
    const auto got = gmtest::drain(appended), want = gmtest::drain(reference);
    ASSERT_FALSE(want.rows.empty());
    EXPECT_EQ(got.rows, want.rows);
    // The loader's id is not used by that source.
    for (const auto& row : got.rows)
      for (int64_t t : row) EXPECT_NE(t, kEos);
    // -1: no separator at all (documents run together).
    own.eos_id = -1;
    StreamingLoader none(config_for({own}, seed, packing));
    for (const auto& row : gmtest::drain(none).rows)
      for (int64_t t : row) EXPECT_TRUE(t >= 10 || (packing == PackingMode::kDocumentAligned && t == 0)) << t;
  }
  // Invalid values and the conflict with labels' document features are named.
  SourceConfig bad = megatron(dir.file("raw"), "s", true);
  bad.eos_id = -3;
  EXPECT_THROW(config_for({bad}, seed, PackingMode::kPacked).validate(), Error);
  bad.eos_id = kOwn;
  LoaderConfig with_labels = config_for({bad}, seed, PackingMode::kPacked);
  with_labels.labels = true;
  with_labels.position_ids = true;
  try {
    with_labels.validate();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sources[0].eos_id"), std::string::npos) << e.what();
  }
}
