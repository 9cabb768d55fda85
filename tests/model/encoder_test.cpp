// HashedNgramEncoder (hashing, fused kernel vs EmbeddingBag, masks) and TorchScriptEncoder.
#include <gtest/gtest.h>

#include "common/test_seed.h"

#include <filesystem>
#include <random>
#include <set>

#include <torch/script.h>

#include "groupmates/error.h"
#include "groupmates/engine/hashed_ngram_encoder.h"
#include "groupmates/engine/torchscript_encoder.h"
#include "common/engine_test_util.h"

namespace groupmates {
namespace {

TEST(HashedNgramEncoder, HashProducesEveryNgramBucketInRange) {
  HashedNgramEncoder enc(testing::small_encoder());
  const torch::Tensor tokens = torch::randint(0, 50000, {5, 17}, torch::kLong);
  const NgramBags bags = enc.hash(tokens);
  const int64_t per_row = 17 + 16 + 15;
  ASSERT_EQ(bags.indices.numel(), 5 * per_row);
  EXPECT_TRUE(torch::equal(bags.offsets, torch::arange(5, torch::kLong) * per_row));
  EXPECT_GE(bags.indices.min().item<int64_t>(), 0);
  EXPECT_LT(bags.indices.max().item<int64_t>(), 512);
  // Row 2's first three n-grams, in order: unigram, bigram, trigram at t = 0.
  const int64_t* t = tokens[2].contiguous().data_ptr<int64_t>();
  EXPECT_EQ(bags.indices[2 * per_row].item<int64_t>(), enc.bucket(t, 1));
  EXPECT_EQ(bags.indices[2 * per_row + 1].item<int64_t>(), enc.bucket(t, 2));
  EXPECT_EQ(bags.indices[2 * per_row + 2].item<int64_t>(), enc.bucket(t, 3));
  // Deterministic and seed-dependent.
  EXPECT_TRUE(torch::equal(enc.hash(tokens).indices, bags.indices));
  HashedNgramEncoderConfig other = testing::small_encoder();
  other.seed = 7;
  EXPECT_FALSE(torch::equal(HashedNgramEncoder(other).hash(tokens).indices, bags.indices));
}

TEST(HashedNgramEncoder, BucketsSpreadUniformly) {
  HashedNgramEncoderConfig c = testing::small_encoder();
  c.num_buckets = 64;
  HashedNgramEncoder enc(c);
  const torch::Tensor tokens = torch::arange(64 * 1000, torch::kLong).reshape({64, 1000});
  const torch::Tensor counts = torch::bincount(enc.hash(tokens).indices, {}, 64).to(torch::kDouble);
  const double expected = counts.sum().item<double>() / 64;
  EXPECT_LT((counts - expected).abs().max().item<double>(), 0.05 * expected);
}

TEST(HashedNgramEncoder, FusedKernelEqualsEmbeddingBag) {
  const uint64_t seed = testing_seed::fresh();
  SCOPED_TRACE(testing_seed::trace(seed));
  torch::manual_seed(seed);
  for (int64_t dim : {16, 48, 64, 128, 256}) {  // the unrolled widths and the generic loop
    for (int max_ngram : {1, 2, 3}) {
      HashedNgramEncoderConfig config = testing::small_encoder();
      config.embed_dim = dim;
      config.max_ngram = max_ngram;
      HashedNgramEncoder enc(config);
      const torch::Tensor tokens = torch::randint(0, 3000, {9, 301}, torch::kLong);
      const torch::Tensor mask = torch::rand({9, 301}).gt(0.2);
      for (const torch::Tensor& m : {torch::Tensor(), mask}) {
        const torch::Tensor slow = enc.bag_embed(tokens, m);  // grad mode on: hash() + EmbeddingBag
        ASSERT_TRUE(slow.requires_grad());
        torch::Tensor fast;
        {
          torch::NoGradGuard no_grad;
          fast = enc.bag_embed(tokens, m);
        }
        EXPECT_TRUE(torch::allclose(fast, slow.detach(), 1e-5, 1e-6)) << "dim " << dim << " max_ngram " << max_ngram;
      }
    }
  }
}

TEST(HashedNgramEncoder, MaskDropsNgramsTouchingPadding) {
  HashedNgramEncoder enc(testing::small_encoder());
  torch::Tensor tokens = torch::randint(0, 3000, {2, 10}, torch::kLong);
  torch::Tensor mask = torch::ones({2, 10}, torch::kBool);
  mask[0].slice(0, 6).fill_(false);
  const NgramBags bags = enc.hash(tokens, mask);
  EXPECT_EQ(bags.offsets[1].item<int64_t>(), 6 + 5 + 4);
  // A masked row encodes like its unpadded prefix; padding values do not matter.
  torch::NoGradGuard no_grad;
  const torch::Tensor prefix = enc.encode(tokens[0].slice(0, 0, 6).unsqueeze(0));
  tokens[0].slice(0, 6).fill_(12345);
  EXPECT_TRUE(torch::allclose(enc.encode(tokens, mask)[0], prefix[0], 1e-5, 1e-6));
}

TEST(HashedNgramEncoder, PadIdMasksPaddingWhenNoMaskIsGiven) {
  HashedNgramEncoderConfig c = testing::small_encoder();
  c.pad_id = 0;
  HashedNgramEncoder enc(c);
  torch::Tensor tokens = torch::randint(1, 3000, {3, 12}, torch::kLong);
  const int64_t lengths[3] = {12, 7, 1};  // real tokens per row; the rest is padding
  for (int r = 0; r < 3; ++r) tokens[r].slice(0, lengths[r]).fill_(0);
  torch::NoGradGuard no_grad;
  const torch::Tensor h = enc.encode(tokens);
  for (int r = 0; r < 3; ++r) {  // each padded row encodes like its unpadded prefix
    const torch::Tensor prefix = enc.encode(tokens[r].slice(0, 0, lengths[r]).unsqueeze(0));
    EXPECT_TRUE(torch::allclose(h[r], prefix[0], 1e-5, 1e-6)) << "row " << r;
  }
  // An explicit mask wins over pad_id.
  const torch::Tensor all = torch::ones({3, 12}, torch::kBool);
  c.pad_id = -1;
  HashedNgramEncoder unmasked(c);
  auto from = enc.named_parameters();
  for (auto& item : unmasked.named_parameters()) item.value().copy_(from[item.key()]);
  EXPECT_TRUE(torch::allclose(enc.encode(tokens, all), unmasked.encode(tokens), 1e-5, 1e-6));
  EXPECT_FALSE(torch::allclose(enc.encode(tokens, all)[1], h[1], 1e-3, 1e-3));
}

TEST(HashedNgramEncoder, EncodesToUnitRows) {
  HashedNgramEncoder enc(testing::small_encoder(12));
  const torch::Tensor h = enc.encode(torch::randint(0, 3000, {7, 33}, torch::kLong));
  ASSERT_EQ(h.sizes(), (std::vector<int64_t>{7, 12}));
  EXPECT_TRUE(torch::allclose(h.norm(2, 1), torch::ones({7}), 1e-5, 1e-5));
  EXPECT_THROW(HashedNgramEncoder(HashedNgramEncoderConfig{0}), Error);
}

TEST(TorchScriptEncoder, RunsAScriptedModuleFile) {
  // A scripted "sentence encoder" built here, saved, and loaded back through the encoder.
  torch::jit::Module m("ToyEncoder");
  m.define(R"JIT(
def forward(self, ids, mask):
    x = ids.float() * mask.float()
    return (torch.stack([x.sum(1), mask.sum(1).float(), torch.ones_like(x[:, 0])], 1), x)
)JIT");
  const std::string path = (std::filesystem::temp_directory_path() / "groupmates_toy_encoder.pt").string();
  m.save(path);
  TorchScriptEncoder enc(path, 3);
  std::filesystem::remove(path);
  const torch::Tensor ids = torch::tensor({{3, 4, 0}, {1, 1, 1}}, torch::kLong);
  const torch::Tensor mask = torch::tensor({{1, 1, 0}, {1, 1, 1}}, torch::kLong);
  const torch::Tensor h = enc.encode(ids, mask);
  torch::Tensor want = torch::tensor({{7.0f, 2.0f, 1.0f}, {3.0f, 3.0f, 1.0f}});
  want = want / want.norm(2, 1, true);
  EXPECT_TRUE(torch::allclose(h, want, 1e-6, 1e-6));
  EXPECT_THROW(TorchScriptEncoder("/nonexistent/encoder.pt", 3), Error);
}

}  // namespace
}  // namespace groupmates
