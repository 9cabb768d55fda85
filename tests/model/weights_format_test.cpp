// Saved influence-model weights (src/model/weights_format): what write_weights() writes against a
// straightforward reference writer, every damage and malformation refused as the format defines it on fresh
// random weights (seed printed), real model files damaged at random refused naming the path, the input that
// aborted LibTorch's reader refused without LibTorch reading it, and imports that change nothing when refused.
#include "model/weights_format.h"

#include <gtest/gtest.h>

#include <xxhash.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <torch/serialize/output-archive.h>

#include "common/engine_test_util.h"
#include "common/test_seed.h"
#include "groupmates/engine/influence_model.h"
#include "groupmates/error.h"

namespace groupmates {
namespace weightsformat {

// The format as weights_format.h describes it, written plainly (little-endian fields, strings length-prefixed).
struct RefWriter {
  std::string out;
  RefWriter& u(uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out += static_cast<char>(v >> (8 * i));
    return *this;
  }
  RefWriter& s(const std::string& v) {
    u(v.size(), 4);
    out += v;
    return *this;
  }
  RefWriter& tensor(const std::string& name, const std::string& dtype, const std::vector<uint64_t>& shape,
                    const std::string& bytes) {
    s(name).s(dtype).u(shape.size(), 4);
    for (uint64_t d : shape) u(d, 8);
    u(bytes.size(), 8);
    out += bytes;
    return *this;
  }
  std::string framed() const {
    std::string f = "GMWEIGHT";
    RefWriter h;
    h.u(out.size(), 8).u(XXH3_64bits(out.data(), out.size()), 8);
    return f + h.out + out;
  }
};

std::string random_bytes(std::mt19937_64& rng, size_t n) {
  std::string b(n, '\0');
  for (auto& c : b) c = static_cast<char>(rng());
  return b;
}

// Random weights: the saved parts (bytes owned by `store`) and the same written by the reference writer.
SavedWeights random_weights(std::mt19937_64& rng, std::vector<std::string>& store, std::string* reference) {
  static const char* dtypes[] = {"float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool"};
  SavedWeights w;
  w.encoder_identity = "hashed_ngram(" + std::to_string(rng() % 1000) + ")";
  RefWriter ref;
  ref.u(2, 4).s(w.encoder_identity);
  const size_t n = rng() % 6;
  ref.u(n, 4);
  store.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    SavedTensor t;
    t.name = "m" + std::to_string(i) + "." + std::string(1 + rng() % 8, static_cast<char>('a' + rng() % 26));
    t.dtype = dtypes[rng() % 10];
    std::vector<uint64_t> dims;
    uint64_t numel = 1;
    for (size_t d = 0, rank = rng() % 4; d < rank; ++d) dims.push_back(rng() % 5), numel *= dims.back();
    t.shape.assign(dims.begin(), dims.end());
    store.push_back(random_bytes(rng, numel * element_size(t.dtype)));
    t.bytes = store.back();
    ref.tensor(t.name, t.dtype, dims, store.back());
    w.tensors.push_back(t);
  }
  *reference = ref.framed();
  return w;
}

// The frame's verdict on `blob` by the format's definition ("" = the frame is sound).
std::string frame_problem(const std::string& blob) {
  if (blob.size() < 8 || blob.compare(0, 8, "GMWEIGHT") != 0) return "not influence-model weights";
  if (blob.size() < 24) return "header";
  uint64_t size = 0, sum = 0;
  for (int i = 0; i < 8; ++i) size |= uint64_t(static_cast<unsigned char>(blob[8 + i])) << (8 * i);
  for (int i = 0; i < 8; ++i) sum |= uint64_t(static_cast<unsigned char>(blob[16 + i])) << (8 * i);
  if (size != blob.size() - 24) return "payload bytes";
  if (XXH3_64bits(blob.data() + 24, blob.size() - 24) != sum) return "corrupted";
  return "";
}

Error error_of(const std::string& blob) {
  try {
    read_weights(blob, "weights.gmw");
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "accepted";
  return Error(ErrorCode::kInternal, "", "");
}

TEST(WeightsFormat, WritesWhatTheReferenceWritesReadsItBackAndRefusesEveryDamageAsDefined) {
  const uint64_t seed = testing_seed::fresh();
  SCOPED_TRACE(testing_seed::trace(seed));
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<std::string> store;
    std::string reference;
    const SavedWeights w = random_weights(rng, store, &reference);
    const std::string blob = write_weights(w);
    ASSERT_EQ(blob, reference) << "trial " << trial;
    const SavedWeights back = read_weights(blob, "weights.gmw");
    ASSERT_EQ(back.encoder_identity, w.encoder_identity);
    ASSERT_EQ(back.tensors.size(), w.tensors.size());
    for (size_t i = 0; i < w.tensors.size(); ++i) {
      EXPECT_EQ(back.tensors[i].name, w.tensors[i].name);
      EXPECT_EQ(back.tensors[i].dtype, w.tensors[i].dtype);
      EXPECT_EQ(back.tensors[i].shape, w.tensors[i].shape);
      EXPECT_EQ(back.tensors[i].bytes, w.tensors[i].bytes);
    }
    // One flipped bit, a truncation, bytes appended: the frame refuses each (never the payload's parser).
    std::string flipped = blob;
    const size_t at = rng() % flipped.size();
    flipped[at] = static_cast<char>(flipped[at] ^ (1 << (rng() % 8)));
    const std::string cut = blob.substr(0, rng() % blob.size());
    const std::string longer = blob + random_bytes(rng, 1 + rng() % 16);
    for (const std::string* bad : std::initializer_list<const std::string*>{&flipped, &cut, &longer}) {
      const std::string problem = frame_problem(*bad);
      ASSERT_NE(problem, "");
      const Error e = error_of(*bad);
      EXPECT_EQ(e.code(), ErrorCode::kCorruptData) << e.what();
      EXPECT_EQ(e.where(), "weights.gmw") << e.what();
      EXPECT_NE(std::string(e.what()).find(problem), std::string::npos) << "expected '" << problem << "': " << e.what();
    }
  }
}

// Payloads whose checksum matches but whose content is malformed (written on purpose): each names what is wrong.
TEST(WeightsFormat, MalformedPayloadsBehindAMatchingChecksumNameTheField) {
  const std::string four(4, '\x01');
  const auto one = [&](const std::string& name, const std::string& dtype, const std::vector<uint64_t>& shape,
                       const std::string& bytes) {
    RefWriter w;
    w.u(2, 4).s("id").u(1, 4).tensor(name, dtype, shape, bytes);
    return w;
  };
  struct Case {
    std::string blob, expected;
  };
  RefWriter repeated;
  repeated.u(2, 4).s("id").u(2, 4).tensor("a", "uint8", {4}, four).tensor("a", "uint8", {4}, four);
  RefWriter version;
  version.u(3, 4).s("id").u(0, 4);
  RefWriter rank9;
  rank9.u(2, 4).s("id").u(1, 4).s("a").s("uint8").u(9, 4);
  RefWriter huge;
  huge.u(2, 4).s("id").u(1, 4).s("a").s("float64").u(2, 4).u(uint64_t{1} << 40, 8).u(uint64_t{1} << 40, 8).u(0, 8);
  RefWriter missing = one("a", "uint8", {4}, four);
  missing.out.resize(missing.out.size() - 1);  // the last element's byte
  RefWriter trailing = one("a", "uint8", {4}, four);
  trailing.out += "x";
  RefWriter count;
  count.u(2, 4).s("id").u(3, 4).tensor("a", "uint8", {4}, four);
  const std::vector<Case> cases = {
      {one("a", "complex64", {4}, four).framed(), "unknown dtype 'complex64'"},
      {one("a", "float32", {2}, four).framed(), "4 bytes for 2 float32 elements"},
      {one("", "uint8", {4}, four).framed(), "name '' is empty or repeated"},
      {repeated.framed(), "name 'a' is empty or repeated"},
      {version.framed(), "format version 3"},
      {rank9.framed(), "rank 9"},
      {huge.framed(), "is too large"},
      {missing.framed(), "elements needs 4 bytes, 3 remain"},
      {trailing.framed(), "1 bytes after the last tensor"},
      {count.framed(), "tensor 1 name length needs 4 bytes"},
  };
  for (const Case& c : cases) {
    const Error e = error_of(c.blob);
    EXPECT_EQ(e.code(), ErrorCode::kCorruptData) << e.what();
    EXPECT_NE(std::string(e.what()).find(c.expected), std::string::npos) << "expected '" << c.expected << "': " << e.what();
  }
}

// The delta of weights against a base (weights_delta.h's format written plainly): a tensor list in the blob's order,
// 1 = taken from the base; then the framed weights of the others.
std::string reference_delta(const SavedWeights& w, const std::string& base_blob, const SavedWeights& base) {
  RefWriter list;
  SavedWeights own;
  own.encoder_identity = w.encoder_identity;
  for (const SavedTensor& t : w.tensors) {
    bool shared = false;
    for (const SavedTensor& b : base.tensors)
      shared = shared || (b.name == t.name && b.dtype == t.dtype && b.shape == t.shape && b.bytes == t.bytes);
    list.s(t.name).u(shared ? 1 : 0, 1);
    if (!shared) own.tensors.push_back(t);
  }
  uint64_t base_sum = 0;
  for (int i = 0; i < 8; ++i) base_sum |= uint64_t(static_cast<unsigned char>(base_blob[16 + i])) << (8 * i);
  RefWriter payload;
  payload.u(1, 4).u(base_sum, 8).u(w.tensors.size(), 4);
  payload.out += list.out + write_weights(own);
  RefWriter h;
  h.u(payload.out.size(), 8).u(XXH3_64bits(payload.out.data(), payload.out.size()), 8);
  return "GMWDELTA" + h.out + payload.out;
}

Error delta_error_of(const std::string& delta, const std::string& base) {
  try {
    apply_weights_delta(delta, base, "gm.trainer");
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "accepted";
  return Error(ErrorCode::kInternal, "", "");
}

// Weights that share some tensors with a base (the frozen n-gram table with the other versions of a model): the
// delta is what the format defines, restores the blob byte for byte against the same base, and is refused
// (naming the origin) against another base, damaged, or malformed behind a matching checksum.
TEST(WeightsFormat, DeltasAgainstABaseRestoreTheBlobByteForByteAndAreRefusedOtherwise) {
  const uint64_t seed = testing_seed::fresh();
  SCOPED_TRACE(testing_seed::trace(seed));
  std::mt19937_64 rng(seed);
  int shared_trials = 0;
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<std::string> store, store2, store3;
    std::string ignored;
    const SavedWeights base = random_weights(rng, store, &ignored);
    const std::string base_blob = write_weights(base);
    // Another model's weights: each base tensor kept, changed (same shape) or dropped; a tensor of its own; shuffled.
    SavedWeights w;
    w.encoder_identity = base.encoder_identity;
    store2.reserve(base.tensors.size() + 1);
    for (const SavedTensor& t : base.tensors) {
      const int what = static_cast<int>(rng() % 3);
      if (what == 2) continue;
      SavedTensor c = t;
      if (what == 1 && !t.bytes.empty()) {
        store2.push_back(std::string(t.bytes));
        store2.back()[rng() % store2.back().size()] ^= 1;
        c.bytes = store2.back();
      }
      w.tensors.push_back(c);
    }
    if (rng() % 2) {
      store2.push_back(random_bytes(rng, 12));
      w.tensors.push_back(SavedTensor{"own.extra", "float32", {3}, store2.back()});
    }
    std::shuffle(w.tensors.begin(), w.tensors.end(), rng);
    const std::string blob = write_weights(w);
    const std::string delta = weights_delta(blob, base_blob);
    const std::string expected = reference_delta(w, base_blob, base);
    bool any_shared = false;  // some tensor of w is in the base unchanged
    for (const SavedTensor& t : w.tensors)
      for (const SavedTensor& b : base.tensors)
        any_shared = any_shared || (b.name == t.name && b.bytes == t.bytes && b.dtype == t.dtype && b.shape == t.shape);
    if (!any_shared) {
      EXPECT_EQ(delta, "") << "trial " << trial << ": nothing shared, yet a delta";
      continue;
    }
    ++shared_trials;
    ASSERT_EQ(delta, expected) << "trial " << trial;
    ASSERT_TRUE(is_weights_delta(delta));
    EXPECT_FALSE(is_weights_delta(blob));
    ASSERT_EQ(apply_weights_delta(delta, base_blob, "gm.trainer"), blob) << "trial " << trial;
    // Against other weights than its base: refused, naming the key.
    const SavedWeights other = random_weights(rng, store3, &ignored);
    const std::string other_blob = write_weights(other);
    if (other_blob != base_blob) {
      const Error e = delta_error_of(delta, other_blob);
      EXPECT_EQ(e.code(), ErrorCode::kCorruptData) << e.what();
      EXPECT_NE(std::string(e.what()).find("gm.trainer"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("mixed from different states"), std::string::npos) << e.what();
    }
    // A flipped bit, a truncation: the frame refuses both.
    std::string flipped = delta;
    const size_t at = rng() % flipped.size();
    flipped[at] = static_cast<char>(flipped[at] ^ (1 << (rng() % 8)));
    const std::string cut = delta.substr(0, rng() % delta.size());
    for (const std::string* bad : std::initializer_list<const std::string*>{&flipped, &cut}) {
      const Error e = delta_error_of(*bad, base_blob);
      EXPECT_EQ(e.code(), ErrorCode::kCorruptData) << e.what();
      EXPECT_EQ(e.where(), "gm.trainer") << e.what();
    }
  }
  EXPECT_GT(shared_trials, 50);
  // Not weights: no delta (the caller stores the bytes as they are).
  EXPECT_EQ(weights_delta("not weights", "GMWEIGHT"), "");
}

// Deltas whose checksum matches but whose list does not fit the tensors (written on purpose): each named.
TEST(WeightsFormat, MalformedDeltasBehindAMatchingChecksumNameTheProblem) {
  const std::string four(4, '\x01');
  SavedWeights base;
  base.encoder_identity = "id";
  base.tensors.push_back(SavedTensor{"a", "uint8", {4}, four});
  const std::string base_blob = write_weights(base);
  uint64_t base_sum = 0;
  for (int i = 0; i < 8; ++i) base_sum |= uint64_t(static_cast<unsigned char>(base_blob[16 + i])) << (8 * i);
  SavedWeights own;
  own.encoder_identity = "id";
  own.tensors.push_back(SavedTensor{"b", "uint8", {4}, four});
  const std::string own_blob = write_weights(own);
  const auto framed = [](const RefWriter& p) {
    RefWriter h;
    h.u(p.out.size(), 8).u(XXH3_64bits(p.out.data(), p.out.size()), 8);
    return "GMWDELTA" + h.out + p.out;
  };
  const auto delta = [&](uint64_t version, std::vector<std::pair<std::string, int>> list, const std::string& rest) {
    RefWriter p;
    p.u(version, 4).u(base_sum, 8).u(list.size(), 4);
    for (const auto& [name, source] : list) p.s(name).u(source, 1);
    p.out += rest;
    return framed(p);
  };
  struct Case {
    std::string blob, expected;
  };
  const std::vector<Case> cases = {
      {delta(1, {{"a", 1}, {"b", 0}}, own_blob), ""},  // well formed
      {delta(2, {{"a", 1}}, own_blob), "delta of format version 2"},
      {delta(1, {{"a", 1}, {"b", 0}, {"c", 0}}, own_blob), "'c' is listed as its own, but the delta does not hold it"},
      {delta(1, {{"c", 1}, {"b", 0}}, own_blob), "'c' is listed from the base, which does not hold it"},
      {delta(1, {{"a", 1}, {"c", 0}}, own_blob), "'c' is listed as its own, but the delta does not hold it"},
      {delta(1, {{"a", 1}}, own_blob), "1 of its own tensors are not in its tensor list"},
      {delta(1, {{"a", 2}, {"b", 0}}, own_blob), "source 2, not 0 or 1"},
      {delta(1, {{"a", 1}, {"a", 1}}, own_blob), "name 'a' is empty or repeated"},
      {delta(1, {{"a", 1}, {"b", 0}}, own_blob.substr(0, 30)), "its own tensors"},
  };
  for (const Case& c : cases) {
    if (c.expected.empty()) {
      SavedWeights both = base;
      both.tensors.push_back(own.tensors[0]);
      EXPECT_EQ(apply_weights_delta(c.blob, base_blob, "gm.trainer"), write_weights(both));
      continue;
    }
    const Error e = delta_error_of(c.blob, base_blob);
    EXPECT_EQ(e.code(), ErrorCode::kCorruptData) << e.what();
    EXPECT_NE(std::string(e.what()).find(c.expected), std::string::npos) << "expected '" << c.expected << "': " << e.what();
  }
}

// Real weights, damaged the way disks and copies damage files: refused naming the file.
TEST(WeightsFormat, DamagedModelFilesAreRefusedNamingThePathAndChangeNothing) {
  const uint64_t seed = testing_seed::fresh();
  SCOPED_TRACE(testing_seed::trace(seed));
  std::mt19937_64 rng(seed);
  torch::manual_seed(seed);
  const std::string good = testing::small_model()->export_weights();
  const std::string path = (std::filesystem::temp_directory_path() / ("gm_weights_" + std::to_string(seed))).string();
  auto b = testing::small_model();
  const std::string before = b->export_weights();
  for (int trial = 0; trial < 40; ++trial) {
    std::string bad = good;
    if (trial % 2 == 0) {
      const size_t at = rng() % bad.size();
      bad[at] = static_cast<char>(bad[at] ^ (1 << (rng() % 8)));
    } else {
      bad.resize(rng() % bad.size());
    }
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bad;
    try {
      b->load_file(path);
      ADD_FAILURE() << "trial " << trial << ": damaged weights were loaded";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kCorruptData) << e.what();
      EXPECT_EQ(e.where(), path) << e.what();
    }
  }
  std::filesystem::remove(path);
  EXPECT_EQ(b->export_weights(), before) << "a refused import changed the model";
}

// The input on which LibTorch's reader aborts the process (a torch archive, the format before): refused without
// LibTorch reading it, naming the way to read trusted old weights. (With GROUPMATES_TRUST_TORCH_ARCHIVE=1 this
// input would end the test binary: not run.)
TEST(WeightsFormat, TheArchiveThatAbortedLibTorchIsRefusedUnread) {
  const std::string path = std::string(GROUPMATES_SOURCE_DIR) + "/tests/data/model/torch_reader_crash.pt";
  ASSERT_TRUE(std::filesystem::exists(path));
  ASSERT_EQ(::unsetenv("GROUPMATES_TRUST_TORCH_ARCHIVE"), 0);
  auto b = testing::small_model();
  try {
    b->load_file(path);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidState) << e.what();
    EXPECT_EQ(e.where(), path) << e.what();
    EXPECT_NE(std::string(e.what()).find("GROUPMATES_TRUST_TORCH_ARCHIVE=1"), std::string::npos) << e.what();
  }
}

// Weights saved before this format (a torch archive with the encoder's identity) load when trusted, then save in
// the checked format.
TEST(WeightsFormat, TrustedTorchArchivesFromBeforeStillLoad) {
  torch::manual_seed(5);
  auto a = testing::small_model();
  {
    torch::NoGradGuard no_grad;
    a->tau_tensor().fill_(0.61);
  }
  torch::serialize::OutputArchive archive;
  a->save(archive);
  archive.write("encoder_identity", c10::IValue(a->encoder().identity()));
  std::ostringstream out;
  archive.save_to(out);
  const std::string bare = out.str();
  ASSERT_TRUE(is_torch_archive(bare));
  torch::manual_seed(6);
  auto b = testing::small_model();
  ASSERT_EQ(::unsetenv("GROUPMATES_TRUST_TORCH_ARCHIVE"), 0);
  EXPECT_THROW(b->import_weights(bare), Error);
  ASSERT_EQ(::setenv("GROUPMATES_TRUST_TORCH_ARCHIVE", "1", 1), 0);
  b->import_weights(bare);
  ASSERT_EQ(::unsetenv("GROUPMATES_TRUST_TORCH_ARCHIVE"), 0);
  EXPECT_EQ(b->export_weights(), a->export_weights());
  EXPECT_EQ(b->export_weights().compare(0, 8, "GMWEIGHT"), 0);
}

TEST(WeightsFormat, NanWeightsOrAnotherArchitectureAreRefusedNamingTheTensorAndChangeNothing) {
  auto a = testing::small_model();
  {
    torch::NoGradGuard no_grad;
    a->head()->weight[0][1] = std::nan("");
  }
  auto b = testing::small_model();
  const std::string before = b->export_weights();
  try {
    b->import_weights(a->export_weights(), "diverged.gmw");
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCorruptData) << e.what();
    EXPECT_EQ(e.where(), "diverged.gmw");
    EXPECT_NE(std::string(e.what()).find("'head.weight'"), std::string::npos) << e.what();
  }
  EXPECT_EQ(b->export_weights(), before);
  try {
    b->import_weights(testing::small_model(16)->export_weights(), "wide.gmw");
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidState) << e.what();
    EXPECT_NE(std::string(e.what()).find("this model's encoder is"), std::string::npos) << e.what();
  }
  EXPECT_EQ(b->export_weights(), before);
}

}  // namespace weightsformat
}  // namespace groupmates
