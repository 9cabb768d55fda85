// Injected faults of the readers (loader/util/fault_hooks.h): a reader that throws mid-file and a tokenizer
// that throws. Each must end the stream with an Error naming the file and document, after exactly the
// batches an uninterrupted run gives before it (never a wrong or partial batch), without a hang; and a
// state saved before the fault must resume, once the fault is gone, onto the uninterrupted run's rest.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <random>
#include <stdexcept>

#include "groupmates/error.h"
#include "groupmates/streaming_loader.h"
#include "loader/loader_test_util.h"
#include "util/fault_hooks.h"

using namespace groupmates;
using rdtest::contains;

namespace readfaults {

/// A fresh seed, printed at once (a failure on the deadline's thread is not given the test's SCOPED_TRACE).
uint64_t announced_seed() {
  const uint64_t seed = rdtest::fresh_seed();
  std::printf("%s\n", rdtest::seed_trace(seed).c_str());
  return seed;
}

/// Clears both hooks when the test ends (also when an assertion fails).
struct HookGuard {
  ~HookGuard() {
    fault_hooks::before_document_read = nullptr;
    fault_hooks::before_tokenize = nullptr;
  }
};

/// The batches a loader gives (flattened rows) and the state after each.
struct Run {
  gmtest::Drained batches;
  std::vector<LoaderState> states;  ///< states[i]: after i batches (states[0]: before any)
  uint64_t count = 0;
};

/// Drains `loader` (at most `max` batches) and returns the Error it ends with, if any.
std::optional<Error> drain(StreamingLoader& loader, Run& run, uint64_t max = UINT64_MAX) {
  run.states.push_back(loader.state());
  try {
    while (run.count < max) {
      auto b = loader.next();
      if (!b) break;
      gmtest::append(run.batches, *b);
      run.states.push_back(loader.state());
      ++run.count;
    }
  } catch (const Error& e) {
    return e;
  }
  return std::nullopt;
}

/// What a faulted run must show: an Error naming `where`, the injected message, after a prefix of `full`;
/// next() again gives the error again; the loader is destroyed without a hang. Returns the batches it gave.
uint64_t expect_faulted_prefix(const LoaderConfig& cfg, const Run& full, const std::string& where,
                               const std::string& injected) {
  uint64_t given = 0;
  rdtest::within_deadline(60, "a loader after a reader fault (next, next again, destruction)", [&] {
    StreamingLoader loader(cfg);
    Run run;
    const std::optional<Error> e = drain(loader, run);
    ASSERT_TRUE(e.has_value()) << "the fault was injected but the stream ended without an error";
    EXPECT_TRUE(contains(e->where(), where)) << e->what();
    EXPECT_TRUE(contains(e->what(), injected)) << e->what();
    EXPECT_TRUE(contains(e->what(), "resume from the last saved state")) << e->what();
    // At most the uninterrupted run's batches: a fault in the dropped final partial batch or the epoch's tail comes
    // where the stream would have ended.
    ASSERT_LE(run.count, full.count);
    for (size_t i = 0; i < run.batches.rows.size(); ++i)
      ASSERT_EQ(run.batches.rows[i], full.batches.rows[i]) << "row " << i << " before the fault differs";
    EXPECT_THROW(loader.next(), Error) << "the failed loader must keep failing, not hang or end";
    given = run.count;
  });
  return given;
}

/// A fresh loader restored from full.states[k], without the fault, gives full's batches k.. exactly.
void expect_resume_matches(const LoaderConfig& cfg, const Run& full, uint64_t k) {
  StreamingLoader loader(cfg, full.states[k]);
  Run rest;
  ASSERT_FALSE(drain(loader, rest).has_value());
  const size_t rows_per_batch = full.batches.rows.size() / full.count;
  ASSERT_EQ(rest.batches.rows.size(), full.batches.rows.size() - k * rows_per_batch);
  for (size_t i = 0; i < rest.batches.rows.size(); ++i)
    ASSERT_EQ(rest.batches.rows[i], full.batches.rows[k * rows_per_batch + i]) << "resumed row " << i;
}

}  // namespace readfaults

TEST(ReadFaults, AReaderThrowingMidFileEndsTheStreamWithAnErrorNamingTheDocument) {
  const uint64_t seed = readfaults::announced_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  readfaults::HookGuard guard;
  rdtest::TempDir dir;
  std::vector<std::vector<uint16_t>> docs(200);
  for (auto& d : docs) {
    d.resize(5 + rng() % 60);
    for (auto& t : d) t = static_cast<uint16_t>(rng() % 5000);
  }
  const std::string prefix = dir.file("meg");
  gmtest::write_megatron(prefix, docs);
  LoaderConfig cfg;
  SourceConfig s;
  s.name = "meg";
  s.format = SourceFormat::kMegatron;
  s.paths = {prefix + ".idx"};
  cfg.sources = {s};
  cfg.sequence_length = 32;
  cfg.batch_size = 4;
  cfg.seed = seed;
  cfg.eos_id = 0;
  readfaults::Run full;
  {
    StreamingLoader loader(cfg);
    ASSERT_FALSE(readfaults::drain(loader, full).has_value());
  }
  ASSERT_GT(full.count, 20u);
  // One document fails on every read (an I/O error that does not go away on retry).
  const uint64_t bad = rng() % docs.size();
  std::atomic<uint64_t> calls{0};
  fault_hooks::before_document_read = [&](const std::string& source, uint64_t document) {
    EXPECT_EQ(source, "meg");
    ++calls;
    if (document == bad) throw std::runtime_error("injected: EIO on the data disk");
  };
  uint64_t pointer = 0;
  for (uint64_t i = 0; i < bad; ++i) pointer += docs[i].size() * sizeof(uint16_t);
  const std::string where = prefix + ".bin:byte " + std::to_string(pointer) + " (document " + std::to_string(bad) + ")";
  const uint64_t given = readfaults::expect_faulted_prefix(cfg, full, where, "injected: EIO on the data disk");
  EXPECT_GT(calls.load(), 0u);
  // The fault is fixed: the last state saved before it resumes onto the uninterrupted stream.
  fault_hooks::before_document_read = nullptr;
  readfaults::expect_resume_matches(cfg, full, given);
}

TEST(ReadFaults, ATokenizerThrowingEndsTheStreamWithAnErrorNamingTheLineEvenUnderSkip) {
  const uint64_t seed = readfaults::announced_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  readfaults::HookGuard guard;
  rdtest::TempDir dir;
  const std::string model = rdtest::train_spm(dir.path);
  const std::string path = dir.file("docs.jsonl");
  const uint64_t lines = 150, bad = rng() % lines;
  {
    std::ofstream f(path, std::ios::binary);
    for (uint64_t i = 0; i < lines; ++i)
      f << "{\"text\": " << rdtest::json_string(rdtest::random_text(rng, 30) + (i == bad ? " qqfaultqq" : ""), rng)
        << "}\n";
  }
  for (const BadInputPolicy policy : {BadInputPolicy::kFail, BadInputPolicy::kSkip}) {
    SCOPED_TRACE(policy == BadInputPolicy::kFail ? "bad_input = fail" : "bad_input = skip");
    LoaderConfig cfg;
    SourceConfig s;
    s.name = "text";
    s.format = SourceFormat::kJsonl;
    s.paths = {path};
    s.tokenizer_model = model;
    cfg.sources = {s};
    cfg.sequence_length = 16;
    cfg.batch_size = 2;
    cfg.seed = seed;
    cfg.eos_id = 3;
    cfg.bad_input = policy;
    fault_hooks::before_tokenize = nullptr;
    readfaults::Run full;
    {
      StreamingLoader loader(cfg);
      ASSERT_FALSE(readfaults::drain(loader, full).has_value());
    }
    fault_hooks::before_tokenize = [](std::string_view text) {
      if (text.find("qqfaultqq") != std::string_view::npos) throw std::runtime_error("injected tokenizer failure");
    };
    const uint64_t given = readfaults::expect_faulted_prefix(cfg, full, path + ":line " + std::to_string(bad + 1),
                                                             "injected tokenizer failure");
    fault_hooks::before_tokenize = nullptr;
    readfaults::expect_resume_matches(cfg, full, given);
  }
}
