// The checksummed frame of saved influence-model weights (src/model/weights_envelope) against a
// straightforward account of what each damage must give, on fresh random payloads (seed printed), and
// real weights damaged at random: refused with an error naming the file before LibTorch reads them.
#include "model/weights_envelope.h"

#include <gtest/gtest.h>

#include <xxhash.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "common/engine_test_util.h"
#include "common/test_seed.h"
#include "groupmates/engine/influence_model.h"
#include "groupmates/error.h"

namespace groupmates {
namespace weightsframe {

std::string random_bytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// What unwrap_weights must say about `blob`, by the format's definition: "" = accepted (and `verified`).
std::string expected_problem(const std::string& blob, bool* verified) {
  *verified = false;
  if (blob.size() < 8 || blob.compare(0, 8, "GMWEIGHT") != 0)
    return blob.size() >= 4 && blob.compare(0, 4, std::string("PK\3\4", 4)) == 0 ? "" : "not influence-model weights";
  if (blob.size() < 24) return "header";
  uint64_t size = 0, sum = 0;
  for (int i = 0; i < 8; ++i) size |= uint64_t(static_cast<unsigned char>(blob[8 + i])) << (8 * i);
  for (int i = 0; i < 8; ++i) sum |= uint64_t(static_cast<unsigned char>(blob[16 + i])) << (8 * i);
  if (size != blob.size() - 24) return "payload bytes";
  if (XXH3_64bits(blob.data() + 24, blob.size() - 24) != sum) return "corrupted";
  *verified = true;
  return "";
}

void expect_as_defined(const std::string& blob, const std::string& what) {
  bool verified = false;
  const std::string problem = expected_problem(blob, &verified);
  try {
    const UnwrappedWeights u = unwrap_weights(blob, "weights.gmw");
    EXPECT_EQ(problem, "") << what << ": accepted";
    EXPECT_EQ(u.verified, verified) << what;
    EXPECT_EQ(std::string(u.archive), verified ? blob.substr(24) : blob) << what;
  } catch (const Error& e) {
    EXPECT_NE(problem, "") << what << ": refused: " << e.what();
    EXPECT_EQ(e.code(), ErrorCode::kCorruptData) << e.what();
    EXPECT_EQ(e.where(), "weights.gmw") << e.what();
    EXPECT_NE(std::string(e.what()).find(problem), std::string::npos) << what << ": " << e.what();
  }
}

TEST(WeightsEnvelope, RoundTripsAndEveryDamageIsRefusedAsDefined) {
  const uint64_t seed = testing_seed::fresh();
  SCOPED_TRACE(testing_seed::trace(seed));
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 200; ++trial) {
    const std::string payload = random_bytes(rng, rng() % 3 == 0 ? rng() % 8 : rng() % 2000);
    const std::string blob = wrap_weights(payload);
    ASSERT_EQ(blob.size(), payload.size() + 24);
    const UnwrappedWeights u = unwrap_weights(blob, "weights.gmw");
    EXPECT_TRUE(u.verified);
    EXPECT_EQ(std::string(u.archive), payload);
    // One flipped bit anywhere, a truncation, bytes appended, a bare payload.
    std::string flipped = blob;
    const size_t at = rng() % flipped.size();
    flipped[at] = static_cast<char>(flipped[at] ^ (1 << (rng() % 8)));
    expect_as_defined(flipped, "bit flipped at " + std::to_string(at));
    expect_as_defined(blob.substr(0, rng() % blob.size()), "truncated");
    expect_as_defined(blob + random_bytes(rng, 1 + rng() % 16), "appended");
    expect_as_defined(payload, "bare payload");
    expect_as_defined(std::string("PK\3\4", 4) + payload, "bare archive");
  }
}

// Real weights, damaged the way disks and copies damage files: never reach LibTorch, name the file.
TEST(WeightsEnvelope, DamagedModelFilesAreRefusedNamingThePath) {
  const uint64_t seed = testing_seed::fresh();
  SCOPED_TRACE(testing_seed::trace(seed));
  std::mt19937_64 rng(seed);
  torch::manual_seed(seed);
  auto a = testing::small_model();
  const std::string good = a->export_weights();
  const std::string path = (std::filesystem::temp_directory_path() / ("gm_weights_" + std::to_string(seed))).string();
  for (int trial = 0; trial < 40; ++trial) {
    std::string bad = good;
    if (trial % 2 == 0) {
      const size_t at = 24 + rng() % (bad.size() - 24);
      bad[at] = static_cast<char>(bad[at] ^ (1 << (rng() % 8)));
    } else {
      bad.resize(24 + rng() % (bad.size() - 24));
    }
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bad;
    auto b = testing::small_model();
    try {
      b->load_file(path);
      ADD_FAILURE() << "trial " << trial << ": damaged weights were loaded";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kCorruptData) << e.what();
      EXPECT_EQ(e.where(), path) << e.what();
    }
  }
  std::filesystem::remove(path);
}

// The input on which LibTorch's reader aborts the process (a bare archive: loading it bare would end this test
// binary), framed as it would be had it been damaged after saving (its header's checksum is another's): refused.
TEST(WeightsEnvelope, TheArchiveThatCrashedLibTorchIsRefusedWhenFramed) {
  std::ifstream in(std::string(GROUPMATES_SOURCE_DIR) + "/tests/data/model/torch_reader_crash.pt", std::ios::binary);
  ASSERT_TRUE(in) << "tests/data/model/torch_reader_crash.pt is missing";
  const std::string crash((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_EQ(crash.compare(0, 4, std::string("PK\3\4", 4)), 0);
  std::string framed = wrap_weights(crash);
  framed[16] = static_cast<char>(framed[16] ^ 1);
  auto b = testing::small_model();
  try {
    b->import_weights(framed, "crash.gmw");
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCorruptData) << e.what();
    EXPECT_NE(std::string(e.what()).find("corrupted"), std::string::npos) << e.what();
  }
}

TEST(WeightsEnvelope, BareArchivesSavedBeforeTheFrameStillLoad) {
  torch::manual_seed(5);
  auto a = testing::small_model();
  {
    torch::NoGradGuard no_grad;
    a->tau_tensor().fill_(0.61);
  }
  const std::string framed = a->export_weights();
  const std::string bare = framed.substr(24);
  ASSERT_EQ(bare.compare(0, 4, std::string("PK\3\4", 4)), 0);
  torch::manual_seed(6);
  auto b = testing::small_model();
  b->import_weights(bare);
  EXPECT_EQ(b->export_weights(), framed);
}

TEST(WeightsEnvelope, WeightsHoldingNanAreRefusedNamingTheTensor) {
  auto a = testing::small_model();
  {
    torch::NoGradGuard no_grad;
    a->head()->weight[0][1] = std::nan("");
  }
  auto b = testing::small_model();
  try {
    b->import_weights(a->export_weights(), "diverged.gmw");
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCorruptData) << e.what();
    EXPECT_EQ(e.where(), "diverged.gmw");
    EXPECT_NE(std::string(e.what()).find("'head.weight'"), std::string::npos) << e.what();
  }
}

}  // namespace weightsframe
}  // namespace groupmates
