// Resume that survives moved data and a changed global batch size.
//   * Data files are identified by content (size + sampled XXH3), never by path: a state restores
//     on a copy of the data in another directory, and on shards renamed so that they sort in
//     another order (read in the saved order); a file changed under the state is named.
//   * Version 1 states (fingerprint over paths) still restore, checked against the old formula.
//   * Another global batch size on resume (batch-size ramp-up, other ranks) continues at the same
//     sample position: the concatenated stream equals the uninterrupted stream of samples.
// Every test draws a fresh seed (printed; GM_TEST_SEED replays it).
#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include "groupmates/error.h"
#include "groupmates/streaming_loader.h"
#include "loader/loader_test_util.h"
#include "sources/mapped_file.h"

using namespace groupmates;
using rdtest::contains;
using rdtest::expect_error;
namespace fs = std::filesystem;

// Named, so that its helpers do not meet hostile_input_test.cpp's in a unity build.
namespace resume_test {
namespace {

std::vector<uint16_t> random_tokens(std::mt19937_64& rng, uint64_t n) {
  std::vector<uint16_t> t(n);
  for (auto& x : t) x = static_cast<uint16_t>(rng() % 5000);
  return t;
}

// Under `dir`: tok/ with `files` flat token files of random lengths, meg/ with two Megatron prefixes.
void write_data(const std::string& dir, std::mt19937_64& rng, int files) {
  fs::create_directories(dir + "/tok");
  fs::create_directories(dir + "/meg");
  for (int f = 0; f < files; ++f)
    gmtest::write_raw(dir + "/tok/shard-" + std::to_string(f) + ".bin", random_tokens(rng, 2048 + rng() % 6000));
  for (int p = 0; p < 2; ++p) {
    std::vector<std::vector<uint16_t>> docs(20 + rng() % 30);
    for (auto& d : docs) d = random_tokens(rng, 1 + rng() % 300);
    gmtest::write_megatron(dir + "/meg/part-" + std::to_string(p), docs);
  }
}

LoaderConfig config_of(const std::string& dir, uint64_t seed, uint32_t batch, uint32_t epochs = 1) {
  LoaderConfig cfg;
  SourceConfig tok;
  tok.name = "tok";
  tok.format = SourceFormat::kTokenFile;
  tok.paths = {dir + "/tok"};  // a directory: its files, sorted by name
  tok.weight = 0.6;
  SourceConfig meg;
  meg.name = "meg";
  meg.format = SourceFormat::kMegatron;
  meg.paths = {dir + "/meg/*.idx"};
  meg.weight = 0.4;
  meg.on_exhausted = OnExhausted::kRecycle;
  cfg.sources = {tok, meg};
  cfg.sequence_length = 64;
  cfg.batch_size = batch;
  cfg.seed = seed;
  cfg.epochs = epochs;
  cfg.prefetch_batches = 3;
  cfg.num_threads = 2;
  return cfg;
}

// The candidate ids of the whole stream of `cfg` (its batch size), or of the rest after `state`.
std::vector<uint64_t> stream_ids(const LoaderConfig& cfg, const LoaderState* state = nullptr, uint64_t max_batches = UINT64_MAX) {
  std::unique_ptr<StreamingLoader> l = state ? std::make_unique<StreamingLoader>(cfg, *state) : std::make_unique<StreamingLoader>(cfg);
  return gmtest::drain(*l, max_batches).ids;
}

// Renames dir/tok's shards so that their sorted order is reversed (contents unchanged).
void rename_reversed(const std::string& dir, int files) {
  for (int f = 0; f < files; ++f)
    fs::rename(dir + "/tok/shard-" + std::to_string(f) + ".bin", dir + "/tok/tmp-" + std::to_string(f) + ".bin");
  for (int f = 0; f < files; ++f)
    fs::rename(dir + "/tok/tmp-" + std::to_string(f) + ".bin", dir + "/tok/x" + std::to_string(1000 - f) + ".bin");
}

}  // namespace

TEST(ResumeMovedData, CopiedMovedAndRenamedDataResumesExactly) {
  const uint64_t seed = gmtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  rdtest::TempDir tmp;
  const std::string a = tmp.file("a"), b = tmp.file("b"), c = tmp.file("c");
  const int files = 3 + static_cast<int>(rng() % 4);
  write_data(a, rng, files);
  const uint32_t batch = 2 + rng() % 5;
  const std::vector<uint64_t> whole = stream_ids(config_of(a, seed, batch));
  ASSERT_GT(whole.size(), 8u * batch);
  const uint64_t k = 1 + rng() % (whole.size() / batch - 2);
  SCOPED_TRACE("files " + std::to_string(files) + ", batch " + std::to_string(batch) + ", saved after " + std::to_string(k));
  std::string saved;
  {
    StreamingLoader l(config_of(a, seed, batch));
    gmtest::drain(l, k);
    saved = l.state().serialize();
  }
  const std::vector<uint64_t> rest(whole.begin() + k * batch, whole.end());
  // Copied to another directory: the same content fingerprint, the same rest of the stream.
  fs::copy(a, b, fs::copy_options::recursive);
  EXPECT_EQ(StreamingLoader(config_of(b, seed, batch)).config_fingerprint(),
            StreamingLoader(config_of(a, seed, batch)).config_fingerprint());
  const LoaderState parsed = LoaderState::parse(saved);
  EXPECT_EQ(stream_ids(config_of(b, seed, batch), &parsed), rest);
  // Moved (the original gone) and the shards renamed so that they sort in reverse: matched by
  // content, read in the saved order.
  fs::rename(a, c);
  rename_reversed(c, files);
  EXPECT_NE(StreamingLoader(config_of(c, seed, batch)).config_fingerprint(),
            StreamingLoader(config_of(b, seed, batch)).config_fingerprint())
      << "a fresh run reads the renamed shards in their new order";
  StreamingLoader resumed(config_of(c, seed, batch), LoaderState::parse(saved));
  const std::string after_resume = resumed.state().serialize();
  EXPECT_EQ(gmtest::drain(resumed).ids, rest);
  // Its state is again exact and restorable on the renamed data.
  const LoaderState again = LoaderState::parse(after_resume);
  EXPECT_EQ(stream_ids(config_of(c, seed, batch), &again), rest);
}

TEST(ResumeMovedData, AFileChangedUnderTheStateIsNamedWithWhatChanged) {
  const uint64_t seed = gmtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  rdtest::TempDir tmp;
  const std::string a = tmp.file("a"), b = tmp.file("b");
  const int files = 3 + static_cast<int>(rng() % 3);
  write_data(a, rng, files);
  const LoaderConfig cfg = config_of(a, seed, 4);
  std::string saved;
  {
    StreamingLoader l(cfg);
    gmtest::drain(l, 2);
    saved = l.state().serialize();
  }
  fs::copy(a, b, fs::copy_options::recursive);
  rename_reversed(b, files);  // moved and renamed as well: the error still names the right file
  const int victim = static_cast<int>(rng() % files);
  const std::string path = b + "/tok/x" + std::to_string(1000 - victim) + ".bin";
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  // One token changed at a sampled block (the first byte), same size.
  std::string edited = bytes;
  edited[0] = static_cast<char>(edited[0] ^ 1);
  rdtest::write_bytes(path, edited);
  Error e = expect_error([&] { StreamingLoader l(config_of(b, seed, 4), LoaderState::parse(saved)); });
  EXPECT_EQ(e.code(), ErrorCode::kInvalidState) << e.what();
  EXPECT_EQ(e.where(), path) << e.what();
  EXPECT_TRUE(contains(e.what(), "same size but other content")) << e.what();
  EXPECT_TRUE(contains(e.what(), "then at " + a + "/tok/shard-" + std::to_string(victim) + ".bin")) << e.what();
  // Another size.
  rdtest::write_bytes(path, bytes.substr(0, bytes.size() - 2));
  e = expect_error([&] { StreamingLoader l(config_of(b, seed, 4), LoaderState::parse(saved)); });
  EXPECT_EQ(e.where(), path) << e.what();
  EXPECT_TRUE(contains(e.what(), std::to_string(bytes.size() - 2) + " bytes but was " + std::to_string(bytes.size()))) << e.what();
  // A file removed: the count, named by source.
  fs::remove(path);
  e = expect_error([&] { StreamingLoader l(config_of(b, seed, 4), LoaderState::parse(saved)); });
  EXPECT_TRUE(contains(e.what(), "reads " + std::to_string(files - 1) + " data file(s) here but read " + std::to_string(files)))
      << e.what();
}

// The fingerprint of version 1 states, written out from the old code: paths and content per file,
// mixed as the loader mixes its sources.
uint64_t version1_fingerprint(const LoaderConfig& cfg, const std::vector<std::string>& tok_files) {
  std::string fp = "tokenfile\n" + std::to_string(cfg.row_length()) + "\n2\n";
  for (const auto& p : tok_files) {
    MappedFile m(p);
    fp += p;
    fp += '\0';
    fp += std::to_string(m.size()) + " " + std::to_string(m.sampled_hash()) + "\n";
  }
  uint64_t h = XXH3_64bits_withSeed(&cfg.seed, sizeof(cfg.seed), 0x67726f7570ULL);
  auto mix = [&h](uint64_t v) { h = XXH3_64bits_withSeed(&v, sizeof(v), h); };
  mix(cfg.row_length());
  mix(cfg.shuffle);
  mix(static_cast<uint64_t>(cfg.packing));
  mix(static_cast<uint64_t>(cfg.eos_id));
  mix(static_cast<uint64_t>(cfg.pad_id));
  mix(XXH3_64bits(fp.data(), fp.size()));
  mix(XXH3_64bits(cfg.sources[0].name.data(), cfg.sources[0].name.size()));
  uint64_t wbits;
  std::memcpy(&wbits, &cfg.sources[0].weight, sizeof(wbits));
  mix(wbits);
  mix(static_cast<uint64_t>(cfg.sources[0].on_exhausted));
  return h;
}

TEST(ResumeMovedData, Version1StatesStillRestoreAtTheirPaths) {
  const uint64_t seed = gmtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  rdtest::TempDir tmp;
  const std::string a = tmp.file("a"), b = tmp.file("b");
  write_data(a, rng, 2);
  LoaderConfig cfg = config_of(a, seed, 3);
  cfg.sources.resize(1);  // the token files alone
  const std::vector<std::string> files = {a + "/tok/shard-0.bin", a + "/tok/shard-1.bin"};
  cfg.sources[0].paths = files;
  const std::vector<uint64_t> whole = stream_ids(cfg);
  StreamingLoader l(cfg);
  gmtest::drain(l, 2);
  const LoaderState v2 = l.state();
  // The same position written as version 1 wrote it.
  std::string v1 = "groupmates-state 1\n";
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(version1_fingerprint(cfg, files)));
  v1 += std::string("fingerprint ") + hex + "\nglobal_batch_size 3\nbatches 2\npass 0\nended 0\nblend";
  for (uint64_t c : v2.blend_counts) v1 += " " + std::to_string(c);
  v1 += "\n";
  for (const auto& s : v2.sources) v1 += "source " + std::to_string(s.epoch) + " " + std::to_string(s.position) + " " + std::to_string(s.offset) + "\n";
  for (const auto& f : v2.files) {
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(f.content_hash));
    v1 += "file " + std::to_string(f.size) + " " + hex + " " + f.path + "\n";
  }
  v1 += "end\n";
  const LoaderState parsed = LoaderState::parse(v1);
  EXPECT_EQ(parsed.version, 1u);
  EXPECT_EQ(parsed.samples, 6u);
  EXPECT_EQ(stream_ids(cfg, &parsed), std::vector<uint64_t>(whole.begin() + 6, whole.end()));
  {
    // Right after the resume its state is the version 1 text again; after a batch, a version 2 state.
    StreamingLoader r(cfg, parsed);
    EXPECT_EQ(r.state().serialize().rfind("groupmates-state 1\n", 0), 0u);
    const LoaderState again = LoaderState::parse(r.state().serialize());
    EXPECT_EQ(stream_ids(cfg, &again), std::vector<uint64_t>(whole.begin() + 6, whole.end()));
    ASSERT_TRUE(r.next().has_value());
    EXPECT_EQ(r.state().version, 2u);
    const LoaderState v2_after = LoaderState::parse(r.state().serialize());
    EXPECT_EQ(stream_ids(cfg, &v2_after), std::vector<uint64_t>(whole.begin() + 9, whole.end()));
  }
  // Moved: a version 1 state cannot follow (it named paths); the error says how to proceed.
  fs::copy(a, b, fs::copy_options::recursive);
  LoaderConfig moved = cfg;
  moved.sources[0].paths = {b + "/tok/shard-0.bin", b + "/tok/shard-1.bin"};
  const Error e = expect_error([&] { StreamingLoader r(moved, parsed); });
  EXPECT_EQ(e.code(), ErrorCode::kInvalidState) << e.what();
  EXPECT_TRUE(contains(e.what(), "version 1")) << e.what();
  EXPECT_TRUE(contains(e.what(), "save a new state")) << e.what();
}

// Batch-size ramp-up: a run whose global batch size changes at random save points (and ranks, in
// the last stage) emits exactly the uninterrupted stream of samples (the batch-size-1 stream).
TEST(ResumeBatchSize, ChangedGlobalBatchSizeContinuesAtTheSameSample) {
  const uint64_t seed = gmtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  rdtest::TempDir tmp;
  write_data(tmp.path, rng, 3);
  const uint32_t epochs = 1 + rng() % 2;
  const std::vector<uint64_t> reference = stream_ids(config_of(tmp.path, seed, 1, epochs));
  std::vector<uint64_t> got;
  std::unique_ptr<LoaderState> state;
  uint32_t last_global = 1;
  const int stages = 2 + static_cast<int>(rng() % 4);
  for (int stage = 0; stage < stages; ++stage) {
    const bool last = stage + 1 == stages;
    const uint32_t world = last ? 1 + rng() % 3 : 1, batch = 1 + rng() % 9;
    last_global = batch * world;
    const uint64_t batches = last ? UINT64_MAX : 1 + rng() % 12;
    SCOPED_TRACE("stage " + std::to_string(stage) + ": batch " + std::to_string(batch) + " x " + std::to_string(world) +
                 " ranks, " + std::to_string(batches) + " batches");
    std::vector<gmtest::Drained> ranks(world);
    std::string saved;
    for (uint32_t r = 0; r < world; ++r) {
      LoaderConfig c = config_of(tmp.path, seed, batch, epochs);
      c.world_size = world;
      c.rank = r;
      auto l = state ? std::make_unique<StreamingLoader>(c, *state) : std::make_unique<StreamingLoader>(c);
      ranks[r] = gmtest::drain(*l, batches);
      if (r == 0) saved = l->state().serialize();
    }
    for (size_t g = 0; g * batch < ranks[0].ids.size(); ++g)
      for (uint32_t r = 0; r < world; ++r)
        for (uint32_t i = 0; i < batch; ++i) got.push_back(ranks[r].ids.at(g * batch + i));
    state = std::make_unique<LoaderState>(LoaderState::parse(saved));
    EXPECT_EQ(state->samples, got.size());
    EXPECT_EQ(state->global_batch_size, last_global);
    if (state->ended) break;
  }
  ASSERT_LE(got.size(), reference.size());
  EXPECT_TRUE(std::equal(got.begin(), got.end(), reference.begin())) << "a sample repeated or skipped";
  EXPECT_LT(reference.size() - got.size(), last_global) << "only the final partial global batch is dropped";
}

}  // namespace resume_test
