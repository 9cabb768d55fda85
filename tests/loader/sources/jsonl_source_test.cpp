// JsonlSource (plain and zstd JSONL, simdjson + SentencePiece) against the texts written by a
// reference writer on fresh random data; every bad record with both BadInputPolicy values.
#include "sources/jsonl_source.h"

#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>

#include "groupmates/error.h"
#include "loader/reader_test_util.h"
#include "groupmates/tokenizer.h"

namespace groupmates {
namespace {

using rdtest::TempDir;
using rdtest::expect_error;
using rdtest::contains;

// One JSON object line holding `text` in `field`, with other fields around it in random order.
std::string json_line(const std::string& field, const std::string& text, std::mt19937_64& rng) {
  std::vector<std::string> members = {rdtest::json_string(field, rng) + ":" + rdtest::json_string(text, rng),
                                      "\"id\":" + std::to_string(rng() % 100000),
                                      "\"meta\":{\"src\":\"web\",\"score\":[0.5,1e3,null,true]}"};
  std::shuffle(members.begin(), members.end(), rng);
  std::string s = "{";
  for (size_t i = 0; i < members.size(); i++) s += (i ? (rng() % 2 ? ", " : ",") : "") + members[i];
  return s + "}";
}

class JsonlSourceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_dir_ = new TempDir();
    model_ = rdtest::train_spm(model_dir_->path);
    tokenizer_ = Tokenizer::load(model_);
  }
  static void TearDownTestSuite() {
    tokenizer_.reset();
    delete model_dir_;
  }
  SourceConfig config(const std::vector<std::string>& paths, const std::string& field = "text") const {
    SourceConfig c;
    c.name = "web";
    c.format = SourceFormat::kJsonl;
    c.paths = paths;
    c.text_field = field;
    c.tokenizer_model = model_;
    return c;
  }
  static std::vector<uint32_t> encode(const std::string& text) {
    std::vector<uint32_t> ids;
    tokenizer_->encode(text, ids);
    return ids;
  }
  // Writes `texts` as JSONL; returns the file content.
  static std::string write_jsonl(const std::string& path, const std::vector<std::string>& texts, std::mt19937_64& rng,
                                 const std::string& field = "text", bool crlf = false, bool final_newline = true) {
    std::string content;
    for (size_t i = 0; i < texts.size(); i++) {
      content += json_line(field, texts[i], rng);
      if (i + 1 < texts.size() || final_newline) content += crlf ? "\r\n" : "\n";
    }
    rdtest::write_bytes(path, content);
    return content;
  }
  static void expect_documents(const DocumentSource& src, const std::vector<std::string>& texts) {
    ASSERT_EQ(src.num_documents(), texts.size());
    SkipCounters skips;
    for (uint64_t i = 0; i < texts.size(); i++) {
      const Document d = src.read(i, skips);
      ASSERT_FALSE(d.skipped) << src.locate(i);
      const auto want = encode(texts[i]);
      ASSERT_EQ(d.tokens.width, TokenWidth::kU32);
      ASSERT_EQ(d.tokens.size, want.size()) << src.locate(i);
      for (uint64_t t = 0; t < want.size(); t++) ASSERT_EQ(d.tokens.at(t), int64_t{want[t]}) << src.locate(i);
    }
    EXPECT_EQ(skips.total(), 0u) << skips.report();
  }

  static TempDir* model_dir_;
  static std::string model_;
  static std::shared_ptr<Tokenizer> tokenizer_;
};
TempDir* JsonlSourceTest::model_dir_ = nullptr;
std::string JsonlSourceTest::model_;
std::shared_ptr<Tokenizer> JsonlSourceTest::tokenizer_;

TEST_F(JsonlSourceTest, RandomPlainFilesMatchReference) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  TempDir dir;
  std::vector<std::string> paths, all;
  for (int f = 0; f < 4; f++) {
    std::vector<std::string> texts(2 + rng() % 80);  // >= 2: the test reads line 2 of file 1
    for (auto& t : texts) t = rdtest::random_text(rng);
    paths.push_back(dir.file("p" + std::to_string(f) + ".jsonl"));
    // f=1: CRLF; f=2: no final newline; f=3: one record.
    write_jsonl(paths.back(), f == 3 ? std::vector<std::string>{texts[0]} : texts, rng, "text", f == 1, f != 2);
    if (f == 3) texts.resize(1);
    all.insert(all.end(), texts.begin(), texts.end());
  }
  const auto src = open_document_source(config(paths), BadInputPolicy::kFail);
  expect_documents(*src, all);
  // Line numbers are per file and 1-based.
  const auto& js = dynamic_cast<const JsonlSource&>(*src);
  EXPECT_EQ(src->locate(0), paths[0] + ":line 1");
  EXPECT_EQ(src->locate(js.file_lines(0)), paths[1] + ":line 1");
  EXPECT_EQ(src->locate(js.file_lines(0) + 1), paths[1] + ":line 2");
  EXPECT_EQ(src->locate(all.size() - 1), paths[3] + ":line 1");
  std::string text;
  EXPECT_EQ(js.text(0, &text), JsonlSource::Problem::kNone);
  EXPECT_EQ(text, all[0]);
  EXPECT_FALSE(js.compressed(0));
}

TEST_F(JsonlSourceTest, ZstdEqualsPlain) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  TempDir dir;
  std::vector<std::string> texts(200 + rng() % 200);
  for (auto& t : texts) t = rdtest::random_text(rng);
  const std::string content = write_jsonl(dir.file("a.jsonl"), texts, rng);
  rdtest::write_bytes(dir.file("a.jsonl.zst"), rdtest::zstd_compress(content));
  rdtest::write_bytes(dir.file("multi.zst"), rdtest::zstd_compress(content, 5));  // 5 frames, no content size
  const auto plain = open_document_source(config({dir.file("a.jsonl")}), BadInputPolicy::kFail);
  for (const char* name : {"a.jsonl.zst", "multi.zst"}) {
    SCOPED_TRACE(name);
    JsonlSource z(config({dir.file(name)}), BadInputPolicy::kFail);
    EXPECT_TRUE(z.compressed(0));
    EXPECT_LT(z.memory_bytes(), content.size());  // nothing decompressed at open: the line index only
    expect_documents(z, texts);
    EXPECT_GE(z.memory_bytes(), content.size());  // every frame read and cached (64 MiB budget)
    SkipCounters skips;
    for (uint64_t i = 0; i < texts.size(); i++) {
      ASSERT_EQ(z.line(i), dynamic_cast<const JsonlSource&>(*plain).line(i));
      EXPECT_EQ(z.locate(i), dir.file(name) + ":line " + std::to_string(i + 1));
    }
  }
  // A cache budget of ~3 frames over a 60-frame file, read in a random order by 3 threads: every
  // line equals the plain file's, and the cache stays within its budget.
  rdtest::write_bytes(dir.file("many.zst"), rdtest::zstd_compress(content, 60));
  SourceConfig small = config({dir.file("many.zst")});
  small.zstd_cache_bytes = 3 * (content.size() / 60 + 1) + content.size() / 60 / 2;
  JsonlSource bounded(small, BadInputPolicy::kFail);
  const auto& plain_js = dynamic_cast<const JsonlSource&>(*plain);
  std::vector<std::thread> readers;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 3; t++) {
    readers.emplace_back([&, t] {
      std::mt19937_64 r(seed ^ (t + 1));
      for (int k = 0; k < 400; k++) {
        const uint64_t i = r() % texts.size();
        std::string text;
        if (bounded.text(i, &text) != JsonlSource::Problem::kNone || text != texts[i] ||
            bounded.line(i) != plain_js.line(i)) {
          mismatches++;
        }
      }
    });
  }
  for (auto& th : readers) th.join();
  EXPECT_EQ(mismatches.load(), 0);
  const auto cs = bounded.frame_cache_stats();
  EXPECT_LE(cs.peak_bytes, small.zstd_cache_bytes);
  EXPECT_GT(cs.misses, 60u);  // evictions happened: more misses than frames
  // Mixed plain + compressed in one source.
  expect_documents(*open_document_source(config({dir.file("a.jsonl"), dir.file("multi.zst")}), BadInputPolicy::kFail),
                   [&] {
                     auto twice = texts;
                     twice.insert(twice.end(), texts.begin(), texts.end());
                     return twice;
                   }());
}

// Bad records: each (line content, reason key, message part, fix part).
struct BadCase {
  std::string line, reason, message, fix;
};

std::vector<BadCase> bad_cases() {
  return {
      {"{\"text\": \"unterminated}", "invalid_json", "invalid JSON", "fix or remove the line"},
      {"{\"text\": \"ok\", }", "invalid_json", "invalid JSON", "fix or remove the line"},
      {"{\"text\": \"ok\"} trailing", "invalid_json", "invalid JSON", "fix or remove the line"},
      {"[\"text\", 1]", "invalid_json", "not a JSON object", "fix or remove the line"},
      {"{\"text\": \"caf\xC3\x28 bad\"}", "invalid_utf8", "invalid UTF-8 at byte 13", "re-encode"},
      {"{\"text\": \"\xFF\"}", "invalid_utf8", "invalid UTF-8 at byte 10", "re-encode"},
      {"{\"body\": \"no text field\", \"id\": 3}", "missing_field", "no field \"text\"", "set text_field"},
      {"{\"text\": 42}", "missing_field", "is a number, not a string", "set text_field"},
      {"{\"text\": null}", "missing_field", "is null, not a string", "set text_field"},
      {"{\"text\": \"\"}", "empty_text", "empty string", "remove empty documents"},
  };
}

TEST_F(JsonlSourceTest, BadRecordsFailPolicy) {
  std::mt19937_64 rng(1);
  TempDir dir;
  for (const auto& c : bad_cases()) {
    SCOPED_TRACE(c.line);
    const std::string p = dir.file("bad.jsonl");
    rdtest::write_bytes(p, json_line("text", "good one", rng) + "\n" + json_line("text", "good two", rng) + "\n" +
                               c.line + "\n" + json_line("text", "good three", rng) + "\n");
    const auto src = open_document_source(config({p}), BadInputPolicy::kFail);
    ASSERT_EQ(src->num_documents(), 4u);
    SkipCounters skips;
    EXPECT_FALSE(src->read(1, skips).skipped);
    EXPECT_FALSE(src->read(3, skips).skipped);
    const Error e = expect_error([&] { src->read(2, skips); });
    EXPECT_EQ(e.code(), ErrorCode::kCorruptData);
    EXPECT_EQ(e.where(), p + ":line 3");
    EXPECT_TRUE(contains(e.what(), p + ":line 3")) << e.what();
    EXPECT_TRUE(contains(e.what(), c.message)) << e.what();
    EXPECT_TRUE(contains(e.what(), c.fix)) << e.what();
    EXPECT_TRUE(contains(e.what(), "bad_input=skip")) << e.what();
    EXPECT_EQ(skips.total(), 0u);
  }
}

TEST_F(JsonlSourceTest, BadRecordsSkipPolicy) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  TempDir dir;
  // Good records interleaved with every bad case, shuffled; plain and zstd.
  std::vector<std::pair<std::string, std::string>> records;  // (line, reason or "" + text)
  std::vector<std::string> good_texts;
  for (const auto& c : bad_cases()) records.push_back({c.line, c.reason});
  for (int i = 0; i < 30; i++) {
    good_texts.push_back(rdtest::random_text(rng));
    records.push_back({json_line("text", good_texts.back(), rng), "=" + good_texts.back()});
  }
  records.push_back({"   \t", "empty_line"});
  records.push_back({"", "empty_line"});
  std::shuffle(records.begin(), records.end(), rng);
  std::string content;
  for (const auto& r : records) content += r.first + "\n";
  rdtest::write_bytes(dir.file("mixed.jsonl"), content);
  rdtest::write_bytes(dir.file("mixed.jsonl.zst"), rdtest::zstd_compress(content));
  for (const char* name : {"mixed.jsonl", "mixed.jsonl.zst"}) {
    SCOPED_TRACE(name);
    const auto src = open_document_source(config({dir.file(name)}), BadInputPolicy::kSkip);
    ASSERT_EQ(src->num_documents(), records.size());
    SkipCounters skips;
    std::map<std::string, uint64_t> expect;
    for (uint64_t i = 0; i < records.size(); i++) {
      const Document d = src->read(i, skips);
      if (records[i].second[0] == '=') {
        ASSERT_FALSE(d.skipped) << src->locate(i);
        const auto want = encode(records[i].second.substr(1));
        ASSERT_EQ(d.tokens.size, want.size());
        for (uint64_t t = 0; t < want.size(); t++) ASSERT_EQ(d.tokens.at(t), int64_t{want[t]});
      } else {
        EXPECT_TRUE(d.skipped) << src->locate(i) << " " << records[i].first;
        expect["web/" + records[i].second]++;
      }
    }
    EXPECT_EQ(skips.counts(), expect) << skips.report();
    for (const auto& kv : skips.examples()) EXPECT_TRUE(contains(kv.second, dir.file(name) + ":line ")) << kv.second;
  }
}

TEST_F(JsonlSourceTest, BlankLinesAreSkippedUnderBothPolicies) {
  std::mt19937_64 rng(2);
  TempDir dir;
  const std::string p = dir.file("blank.jsonl");
  rdtest::write_bytes(p, json_line("text", "one", rng) + "\n\n  \r\n" + json_line("text", "two", rng) + "\n");
  for (BadInputPolicy policy : {BadInputPolicy::kFail, BadInputPolicy::kSkip}) {
    const auto src = open_document_source(config({p}), policy);
    ASSERT_EQ(src->num_documents(), 4u);  // the final newline adds no line
    SkipCounters skips;
    EXPECT_FALSE(src->read(0, skips).skipped);
    EXPECT_TRUE(src->read(1, skips).skipped);
    EXPECT_TRUE(src->read(2, skips).skipped);
    EXPECT_FALSE(src->read(3, skips).skipped);
    EXPECT_EQ(skips.counts(), (std::map<std::string, uint64_t>{{"web/empty_line", 2}}));
    EXPECT_EQ(skips.examples().at("web/empty_line"), p + ":line 2");
  }
}

TEST_F(JsonlSourceTest, CustomTextField) {
  std::mt19937_64 rng(3);
  TempDir dir;
  const std::vector<std::string> texts = {"the data loader", "reads tokens café"};
  write_jsonl(dir.file("c.jsonl"), texts, rng, "content");
  expect_documents(*open_document_source(config({dir.file("c.jsonl")}, "content"), BadInputPolicy::kFail), texts);
  const auto wrong = open_document_source(config({dir.file("c.jsonl")}), BadInputPolicy::kFail);
  SkipCounters skips;
  const Error e = expect_error([&] { wrong->read(0, skips); });
  EXPECT_TRUE(contains(e.what(), "\"content\"")) << e.what();  // lists the fields it has
}

TEST_F(JsonlSourceTest, FileErrors) {
  TempDir dir;
  std::mt19937_64 rng(4);
  const std::string good = json_line("text", "fine", rng) + "\n";
  rdtest::write_bytes(dir.file("good.jsonl"), good);
  rdtest::write_bytes(dir.file("empty.jsonl"), "");
  rdtest::write_bytes(dir.file("empty.jsonl.zst"), rdtest::zstd_compress(""));
  const std::string z = rdtest::zstd_compress(good + good + good);
  rdtest::write_bytes(dir.file("trunc.jsonl.zst"), z.substr(0, z.size() - 3));
  std::string garbage = z;
  for (size_t i = 4; i < garbage.size(); i++) garbage[i] = static_cast<char>(garbage[i] ^ 0x5A);
  rdtest::write_bytes(dir.file("garbage.jsonl.zst"), garbage);
  rdtest::write_bytes(dir.file("notzstd.jsonl.zst"), good);

  struct Case {
    std::string file;
    ErrorCode code;
    std::string part;
  };
  const std::vector<Case> cases = {
      {"missing.jsonl", ErrorCode::kIo, "No such file"},
      {"empty.jsonl", ErrorCode::kCorruptData, "remove it from the source"},
      {"empty.jsonl.zst", ErrorCode::kCorruptData, "0 bytes"},
      {"trunc.jsonl.zst", ErrorCode::kCorruptData, "zstd"},
      {"garbage.jsonl.zst", ErrorCode::kCorruptData, "zstd"},
      {"notzstd.jsonl.zst", ErrorCode::kCorruptData, "zstd magic"},
  };
  for (const auto& c : cases) {
    for (BadInputPolicy policy : {BadInputPolicy::kFail, BadInputPolicy::kSkip}) {
      const Error e = expect_error([&] { JsonlSource(config({dir.file("good.jsonl"), dir.file(c.file)}), policy); });
      EXPECT_EQ(e.code(), c.code) << e.what();
      EXPECT_TRUE(contains(e.what(), dir.file(c.file))) << e.what();
      EXPECT_TRUE(contains(e.what(), c.part)) << e.what();
    }
  }
  auto no_model = config({dir.file("good.jsonl")});
  no_model.tokenizer_model.clear();
  EXPECT_EQ(expect_error([&] { JsonlSource(no_model, BadInputPolicy::kFail); }).code(), ErrorCode::kInvalidConfig);
  JsonlSource text_only(no_model, BadInputPolicy::kFail, /*load_tokenizer=*/false);  // fine for inspection
  EXPECT_EQ(text_only.num_documents(), 1u);
  auto no_paths = config({});
  EXPECT_EQ(expect_error([&] { JsonlSource(no_paths, BadInputPolicy::kFail); }).code(), ErrorCode::kInvalidConfig);
}

TEST_F(JsonlSourceTest, FingerprintAndConcurrentReads) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  TempDir dir;
  std::vector<std::string> texts(300);
  for (auto& t : texts) t = rdtest::random_text(rng);
  write_jsonl(dir.file("a.jsonl"), texts, rng);
  write_jsonl(dir.file("b.jsonl"), {texts[0]}, rng);
  const auto src = open_document_source(config({dir.file("a.jsonl")}), BadInputPolicy::kFail);
  EXPECT_EQ(src->fingerprint(), open_document_source(config({dir.file("a.jsonl")}), BadInputPolicy::kFail)->fingerprint());
  EXPECT_NE(src->fingerprint(), open_document_source(config({dir.file("b.jsonl")}), BadInputPolicy::kFail)->fingerprint());
  EXPECT_NE(src->fingerprint(),
            open_document_source(config({dir.file("a.jsonl")}, "body"), BadInputPolicy::kFail)->fingerprint());
  std::vector<std::vector<uint32_t>> want;
  for (const auto& t : texts) want.push_back(encode(t));
  EXPECT_EQ(rdtest::concurrent_read_mismatches(*src, texts.size(), 2, 31, [&](uint64_t i) -> const auto& { return want[i]; }),
            0u);
}

}  // namespace
}  // namespace groupmates
