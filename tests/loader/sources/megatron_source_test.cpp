// MegatronSource (MMIDIDX .idx + .bin) against a reference writer on fresh random data, every
// corrupt input with both BadInputPolicy values, and a 10M-entry index that must open fast.
#include "sources/megatron_source.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <thread>

#include "groupmates/error.h"
#include "loader/reader_test_util.h"
#include "util/stopwatch.h"

namespace groupmates {
namespace {

using rdtest::TempDir;
using rdtest::expect_error;
using rdtest::contains;

SourceConfig megatron_config(const std::vector<std::string>& prefixes) {
  SourceConfig c;
  c.name = "meg";
  c.format = SourceFormat::kMegatron;
  c.paths = prefixes;
  return c;
}

// Random token value representable in dtype `code`.
int64_t random_token(std::mt19937_64& rng, uint8_t code) {
  switch (code) {
    case 1: return static_cast<int64_t>(rng() % 256);
    case 3: return static_cast<int64_t>(static_cast<int16_t>(rng()));
    case 4: return static_cast<int64_t>(static_cast<int32_t>(rng()));
    case 5: return static_cast<int64_t>(rng());
    default: return static_cast<int64_t>(rng() % 65536);
  }
}

std::vector<std::vector<int64_t>> random_docs(std::mt19937_64& rng, uint8_t code, size_t n) {
  std::vector<std::vector<int64_t>> docs(n);
  for (auto& d : docs) {
    d.resize(1 + rng() % (rng() % 8 == 0 ? 3000 : 200));
    for (auto& t : d) t = random_token(rng, code);
  }
  return docs;
}

// A 3-document uint16 dataset: {1,2,3}, {4,5}, {6,7,8,9}.
void write_small(const std::string& prefix) {
  rdtest::write_megatron(prefix, 8, {{1, 2, 3}, {4, 5}, {6, 7, 8, 9}});
}

TEST(MegatronSource, RandomDatasetsMatchReference) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  TempDir dir;
  const uint8_t codes[] = {1, 3, 4, 5, 8};
  std::vector<std::string> prefixes;
  std::vector<std::vector<std::vector<int64_t>>> all;
  std::vector<std::vector<int64_t>> pointers;
  for (int f = 0; f < 5; f++) {
    const uint8_t code = codes[(f + rng()) % 5];
    all.push_back(random_docs(rng, code, 1 + rng() % 150));
    prefixes.push_back(dir.file("ds" + std::to_string(f)));
    pointers.push_back(rdtest::write_megatron(prefixes.back(), code, all.back()));
  }
  // Paths may also be given as PREFIX.bin / PREFIX.idx.
  auto cfg = megatron_config(prefixes);
  cfg.paths[1] += ".bin";
  cfg.paths[2] += ".idx";
  for (BadInputPolicy policy : {BadInputPolicy::kFail, BadInputPolicy::kSkip}) {
    const auto src = open_document_source(cfg, policy);
    uint64_t total = 0;
    for (const auto& a : all) total += a.size();
    ASSERT_EQ(src->num_documents(), total);
    SkipCounters skips;
    uint64_t i = 0;
    for (size_t f = 0; f < all.size(); f++) {
      for (size_t j = 0; j < all[f].size(); j++, i++) {
        const Document d = src->read(i, skips);
        ASSERT_FALSE(d.skipped);
        const auto& want = all[f][j];
        ASSERT_EQ(d.tokens.size, want.size()) << "file " << f << " doc " << j;
        for (size_t t = 0; t < want.size(); t++) {
          ASSERT_EQ(d.tokens.at(t), want[t]) << "file " << f << " doc " << j << " token " << t;
        }
        const std::string loc = src->locate(i);
        ASSERT_TRUE(contains(loc, prefixes[f] + ".bin:byte " + std::to_string(pointers[f][j]))) << loc;
      }
    }
    EXPECT_EQ(skips.total(), 0u);
  }
}

TEST(MegatronSource, DtypesAndAccessors) {
  TempDir dir;
  const std::pair<uint8_t, TokenWidth> cases[] = {{1, TokenWidth::kU8}, {3, TokenWidth::kI16}, {4, TokenWidth::kI32},
                                                  {5, TokenWidth::kI64}, {8, TokenWidth::kU16}};
  for (const auto& c : cases) {
    const std::string p = dir.file("d" + std::to_string(c.first));
    rdtest::write_megatron(p, c.first, {{1, 2}, {3}});
    MegatronSource src(megatron_config({p}), BadInputPolicy::kFail);
    EXPECT_EQ(src.width(0), c.second);
    EXPECT_EQ(src.dtype_code(0), c.first);
    EXPECT_EQ(src.file_documents(0), 2u);
    EXPECT_EQ(src.file_document_index_count(0), 3u);
    SkipCounters skips;
    EXPECT_EQ(src.read(1, skips).tokens.at(0), 3);
  }
}

TEST(MegatronSource, TenMillionEntryIndexOpensFast) {
  // Sparse .idx (ftruncate: no 200 MB written), real values only where the test reads.
  TempDir dir;
  const uint64_t n = 10'000'000, d = n + 1;
  const std::string prefix = dir.file("big");
  {
    std::string header("MMIDIDX\0\0", 9);
    const uint64_t version = 1;
    const uint8_t code = 8;
    header.append(reinterpret_cast<const char*>(&version), 8);
    header.append(reinterpret_cast<const char*>(&code), 1);
    header.append(reinterpret_cast<const char*>(&n), 8);
    header.append(reinterpret_cast<const char*>(&d), 8);
    rdtest::write_bytes(prefix + ".idx", header);
    const int fd = ::open((prefix + ".idx").c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(rdtest::kIdxHeader + 12 * n + 8 * d)), 0);
    ::close(fd);
  }
  rdtest::patch_value<int32_t>(prefix + ".idx", rdtest::idx_size_offset(0), 3);
  rdtest::patch_value<int64_t>(prefix + ".idx", rdtest::idx_pointer_offset(n, 0), 0);
  rdtest::patch_value<int32_t>(prefix + ".idx", rdtest::idx_size_offset(n - 1), 2);
  rdtest::patch_value<int64_t>(prefix + ".idx", rdtest::idx_pointer_offset(n, n - 1), 6);
  rdtest::patch_value<int64_t>(prefix + ".idx", rdtest::kIdxHeader + 12 * n + 8 * (d - 1), static_cast<int64_t>(n));
  const uint16_t bin[5] = {11, 12, 13, 14, 15};
  rdtest::write_bytes(prefix + ".bin", std::string(reinterpret_cast<const char*>(bin), sizeof bin));

  const util::Stopwatch clock;
  const auto src = open_document_source(megatron_config({prefix}), BadInputPolicy::kSkip);
  const double seconds = clock.seconds();
  std::printf("[ info ] open() of a 10M-entry .idx took %.3f ms\n", seconds * 1e3);
  RecordProperty("open_10M_ms", std::to_string(seconds * 1e3));
  EXPECT_LT(seconds, 1.0);  // coarse guard: opening must not walk the arrays
  ASSERT_EQ(src->num_documents(), n);
  SkipCounters skips;
  const Document first = src->read(0, skips), last = src->read(n - 1, skips);
  ASSERT_EQ(first.tokens.size, 3u);
  EXPECT_EQ(first.tokens.at(0), 11);
  EXPECT_EQ(first.tokens.at(2), 13);
  ASSERT_EQ(last.tokens.size, 2u);
  EXPECT_EQ(last.tokens.at(0), 14);
  EXPECT_EQ(last.tokens.at(1), 15);
  const Document middle = src->read(n / 2, skips);  // size 0 in the sparse middle: an empty view
  EXPECT_FALSE(middle.skipped);
  EXPECT_EQ(middle.tokens.size, 0u);
  EXPECT_EQ(skips.total(), 0u);
}

TEST(MegatronSource, MissingFiles) {
  TempDir dir;
  Error e = expect_error([&] { MegatronSource(megatron_config({dir.file("nope")}), BadInputPolicy::kFail); });
  EXPECT_EQ(e.code(), ErrorCode::kIo);
  EXPECT_TRUE(contains(e.what(), dir.file("nope.idx"))) << e.what();
  write_small(dir.file("s"));
  ::unlink(dir.file("s.bin").c_str());
  e = expect_error([&] { MegatronSource(megatron_config({dir.file("s")}), BadInputPolicy::kFail); });
  EXPECT_EQ(e.code(), ErrorCode::kIo);
  EXPECT_TRUE(contains(e.what(), dir.file("s.bin"))) << e.what();
  e = expect_error([&] { MegatronSource(megatron_config({}), BadInputPolicy::kFail); });
  EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig);
}

TEST(MegatronSource, TruncatedOrOversizedIdx) {
  TempDir dir;
  const std::string p = dir.file("s");
  write_small(p);
  const std::string idx = rdtest::read_bytes(p + ".idx");
  // 34 + 3*12 + 4*8 = 102 bytes.
  ASSERT_EQ(idx.size(), 102u);
  for (size_t keep : {size_t{101}, size_t{60}, size_t{40}, size_t{20}, size_t{0}}) {
    rdtest::write_bytes(p + ".idx", idx.substr(0, keep));
    const Error e = expect_error([&] { MegatronSource(megatron_config({p}), BadInputPolicy::kSkip); });
    EXPECT_EQ(e.code(), ErrorCode::kCorruptData) << e.what();
    EXPECT_TRUE(contains(e.what(), p + ".idx")) << e.what();
    EXPECT_TRUE(contains(e.what(), "truncated or corrupt .idx, regenerate it")) << e.what();
    if (keep >= 34) {
      EXPECT_TRUE(contains(e.what(), "exactly 102 bytes")) << e.what();
      EXPECT_TRUE(contains(e.what(), "size is " + std::to_string(keep))) << e.what();
    }
  }
  rdtest::write_bytes(p + ".idx", idx + "xx");
  const Error e = expect_error([&] { MegatronSource(megatron_config({p}), BadInputPolicy::kFail); });
  EXPECT_TRUE(contains(e.what(), "size is 104 bytes")) << e.what();
}

TEST(MegatronSource, BadHeader) {
  TempDir dir;
  const std::string p = dir.file("s");
  struct Case {
    uint64_t offset;
    std::string bytes;
    std::string expect;
  };
  const uint64_t v2 = 2;
  const std::vector<Case> cases = {
      {0, "XXIDIDX", "bad magic"},
      {7, std::string("\x01", 1), "bad magic"},
      {9, std::string(reinterpret_cast<const char*>(&v2), 8), "version 2"},
      {17, std::string("\x06", 1), "float64"},
      {17, std::string("\x07", 1), "float32"},
      {17, std::string("\x02", 1), "int8"},
      {17, std::string("\x63", 1), "code 99"},
  };
  for (const auto& c : cases) {
    write_small(p);
    rdtest::patch_bytes(p + ".idx", c.offset, c.bytes.data(), c.bytes.size());
    for (BadInputPolicy policy : {BadInputPolicy::kFail, BadInputPolicy::kSkip}) {
      const Error e = expect_error([&] { MegatronSource(megatron_config({p}), policy); });
      EXPECT_EQ(e.code(), ErrorCode::kCorruptData) << e.what();
      EXPECT_TRUE(contains(e.what(), p + ".idx")) << e.what();
      EXPECT_TRUE(contains(e.what(), c.expect)) << e.what();
    }
  }
}

TEST(MegatronSource, TruncatedBinFailsAtOpen) {
  TempDir dir;
  const std::string p = dir.file("s");
  write_small(p);  // 9 uint16 tokens = 18 bytes
  const std::string bin = rdtest::read_bytes(p + ".bin");
  rdtest::write_bytes(p + ".bin", bin.substr(0, 15));
  for (BadInputPolicy policy : {BadInputPolicy::kFail, BadInputPolicy::kSkip}) {
    const Error e = expect_error([&] { MegatronSource(megatron_config({p}), policy); });
    EXPECT_EQ(e.code(), ErrorCode::kCorruptData);
    EXPECT_TRUE(contains(e.what(), p + ".bin")) << e.what();
    EXPECT_TRUE(contains(e.what(), "ends at byte 18")) << e.what();
  }
}

TEST(MegatronSource, EmptyIndex) {
  TempDir dir;
  const std::string p = dir.file("s");
  rdtest::write_megatron(p, 8, {});
  const Error e = expect_error([&] { MegatronSource(megatron_config({p}), BadInputPolicy::kSkip); });
  EXPECT_EQ(e.code(), ErrorCode::kCorruptData);
  EXPECT_TRUE(contains(e.what(), p + ".idx")) << e.what();
  EXPECT_TRUE(contains(e.what(), "no documents")) << e.what();
  EXPECT_TRUE(contains(e.what(), "remove this prefix")) << e.what();
}

// Corrupts entry 1 of the small dataset, then reads with both policies.
void check_bad_entry(const std::string& what, int32_t size, int64_t pointer, const std::string& reason,
                     const std::string& message_part) {
  SCOPED_TRACE(what);
  TempDir dir;
  const std::string p = dir.file("s");
  write_small(p);
  rdtest::patch_value<int32_t>(p + ".idx", rdtest::idx_size_offset(1), size);
  rdtest::patch_value<int64_t>(p + ".idx", rdtest::idx_pointer_offset(3, 1), pointer);
  {
    MegatronSource src(megatron_config({p}), BadInputPolicy::kFail);
    SkipCounters skips;
    EXPECT_EQ(src.read(0, skips).tokens.size, 3u);
    EXPECT_EQ(src.read(2, skips).tokens.size, 4u);
    const Error e = expect_error([&] { src.read(1, skips); });
    EXPECT_EQ(e.code(), ErrorCode::kCorruptData);
    EXPECT_TRUE(contains(e.what(), p + ".bin:byte " + std::to_string(pointer))) << e.what();
    EXPECT_TRUE(contains(e.what(), "document 1")) << e.what();
    EXPECT_TRUE(contains(e.what(), message_part)) << e.what();
    EXPECT_TRUE(contains(e.what(), "bad_input=skip")) << e.what();
    EXPECT_EQ(skips.total(), 0u);
    std::string r;
    EXPECT_FALSE(src.check(1, &r).empty());
    EXPECT_EQ(r, reason);
  }
  {
    MegatronSource src(megatron_config({p}), BadInputPolicy::kSkip);
    SkipCounters skips;
    EXPECT_TRUE(src.read(1, skips).skipped);
    EXPECT_FALSE(src.read(2, skips).skipped);
    EXPECT_EQ(skips.counts(), (std::map<std::string, uint64_t>{{"meg/" + reason, 1}}));
    EXPECT_TRUE(contains(skips.examples().at("meg/" + reason), p + ".bin")) << skips.report();
  }
}

TEST(MegatronSource, BadEntriesAtReadTime) {
  check_bad_entry("pointer beyond the end of the .bin", 2, 1000, "out_of_bounds", "has only 18 bytes");
  check_bad_entry("size runs past the end", 100, 6, "out_of_bounds", "has only 18 bytes");
  check_bad_entry("negative size", -5, 6, "corrupt_index", "negative size -5");
  check_bad_entry("negative pointer", 2, -8, "corrupt_index", "negative byte offset");
  check_bad_entry("misaligned pointer", 2, 7, "corrupt_index", "not a multiple of the token width");
}

TEST(MegatronSource, EmptySequenceIsAnEmptyView) {
  TempDir dir;
  const std::string p = dir.file("s");
  rdtest::write_megatron(p, 8, {{1, 2, 3}, {}, {6, 7}});
  for (BadInputPolicy policy : {BadInputPolicy::kFail, BadInputPolicy::kSkip}) {
    MegatronSource src(megatron_config({p}), policy);
    SkipCounters skips;
    const Document d = src.read(1, skips);
    EXPECT_FALSE(d.skipped);
    EXPECT_EQ(d.tokens.size, 0u);
    EXPECT_EQ(src.read(2, skips).tokens.at(1), 7);
    EXPECT_EQ(skips.total(), 0u);
    EXPECT_TRUE(src.check(1).empty());
  }
}

TEST(MegatronSource, FingerprintAndConcurrentReads) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  TempDir dir;
  const auto docs = random_docs(rng, 4, 400);
  rdtest::write_megatron(dir.file("a"), 4, docs);
  rdtest::write_megatron(dir.file("b"), 4, random_docs(rng, 4, 401));
  const auto a = open_document_source(megatron_config({dir.file("a")}), BadInputPolicy::kFail);
  EXPECT_EQ(a->fingerprint(), open_document_source(megatron_config({dir.file("a")}), BadInputPolicy::kFail)->fingerprint());
  EXPECT_NE(a->fingerprint(), open_document_source(megatron_config({dir.file("b")}), BadInputPolicy::kFail)->fingerprint());
  EXPECT_NE(a->fingerprint(),
            open_document_source(megatron_config({dir.file("a"), dir.file("b")}), BadInputPolicy::kFail)->fingerprint());
  EXPECT_EQ(rdtest::concurrent_read_mismatches(*a, docs.size(), 4, 1, [&](uint64_t i) -> const auto& { return docs[i]; }),
            0u);
}

TEST(MegatronSource, TokenFileFormatIsNotADocumentSource) {
  SourceConfig c;
  c.format = SourceFormat::kTokenFile;
  c.paths = {"x.bin"};
  const Error e = expect_error([&] { open_document_source(c, BadInputPolicy::kFail); });
  EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig);
}

}  // namespace
}  // namespace groupmates
