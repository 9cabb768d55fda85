// TorchScriptEncoder as the influence model's encoder: the scores of a model over a scripted module
// equal the module's own output put through the head (reference: plain tensor ops on its weights);
// D comes from the probe forward; bad files and modules give errors naming the file and the fault;
// weights saved with one encoder are refused by a model with another.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "common/scripted_encoder.h"
#include "common/test_seed.h"
#include "common/thrown_error.h"
#include "groupmates/engine/hashed_ngram_encoder.h"
#include "groupmates/engine/influence_model.h"
#include "groupmates/engine/model_registry.h"
#include "groupmates/engine/torchscript_encoder.h"
#include "groupmates/engine/window_scorer.h"
#include "groupmates/error.h"

namespace groupmates {
namespace {

namespace fs = std::filesystem;
using testing_errors::error_of;
using testing_scripted::mean_pool_reference;
using testing_scripted::write_mean_pool_encoder;
using testing_scripted::write_module;

struct TempFiles {
  fs::path dir = fs::temp_directory_path() / ("gm_ts_encoder_" + std::to_string(::getpid()) + "_" +
                                              std::to_string(std::random_device{}()));
  TempFiles() { fs::create_directories(dir); }
  ~TempFiles() { fs::remove_all(dir); }
  std::string file(const std::string& name) const { return (dir / name).string(); }
};

TEST(TorchScriptEncoderModel, ScoresEqualTheModuleOutputThroughTheHead) {
  const uint64_t seed = testing_seed::fresh();
  SCOPED_TRACE(testing_seed::trace(seed));
  std::mt19937_64 rng(seed);
  TempFiles tmp;
  const int64_t vocab = 40, width = 6, dim = 3 + int64_t(rng() % 8), rows = 9, length = 5 + int64_t(rng() % 12);
  const auto weights = write_mean_pool_encoder(tmp.file("enc.pt"), vocab, width, dim, seed);
  torch::manual_seed(seed + 1);
  const torch::Tensor ids = torch::randint(0, vocab, {rows, length}, torch::kLong);
  torch::Tensor mask = torch::rand({rows, length}).lt(0.7);
  mask.select(1, 0).fill_(true);  // at least one real token per row

  // D is read from the probe forward.
  auto encoder = std::make_shared<TorchScriptEncoder>(tmp.file("enc.pt"));
  ASSERT_EQ(encoder->dim(), dim);
  auto model = std::make_shared<RelationalInfluenceModel>(encoder);
  model->eval();  // no dropout on h (InfluenceModelConfig::dropout)
  {
    torch::NoGradGuard no_grad;
    model->head()->weight.copy_(torch::randn({1, dim}));
    model->head()->bias.copy_(torch::randn({1}));
  }
  torch::Tensor want_h = mean_pool_reference(weights, ids, mask);
  want_h = want_h / want_h.norm(2, 1, true);
  const torch::Tensor want_u =
      torch::matmul(want_h, model->head()->weight.detach().t()).squeeze(1) + model->head()->bias.detach();

  // Direct: embed + individual.
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(model->embed(ids, mask), want_h, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(model->individual(model->embed(ids, mask)), want_u, 1e-5, 1e-5));

  // Through the WindowScorer thread with models built by a registry sharing the loaded module.
  auto registry = std::make_shared<ModelRegistry>(
      [encoder] { return std::make_shared<RelationalInfluenceModel>(encoder->share()); }, torch::kCPU);
  registry->publish(model->export_weights());
  WindowScorer scorer(registry);
  const ScoredWindow scored = scorer.score(ids, mask).get();
  EXPECT_TRUE(torch::allclose(scored.embeddings, want_h, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(scored.u, want_u, 1e-5, 1e-5));

  // Without a mask, a pad id masks its tokens; a forward(ids) module counts every token.
  TorchScriptEncoder padded(tmp.file("enc.pt"), dim, torch::kCPU, /*pad_id=*/ids[0][length - 1].item<int64_t>());
  const torch::Tensor pad_mask = ids.ne(ids[0][length - 1]);
  torch::Tensor want_pad = mean_pool_reference(weights, ids, pad_mask);
  want_pad = want_pad / want_pad.norm(2, 1, true);
  const torch::Tensor got_pad = padded.encode(ids);
  for (int64_t r = 0; r < rows; ++r)  // rows of padding only have no defined mean
    if (pad_mask[r].any().item<bool>()) EXPECT_TRUE(torch::allclose(got_pad[r], want_pad[r], 1e-5, 1e-6)) << "row " << r;
  const auto plain = write_mean_pool_encoder(tmp.file("plain.pt"), vocab, width, dim, seed + 2, /*with_mask=*/false);
  torch::Tensor want_plain = mean_pool_reference(plain, ids, {});
  want_plain = want_plain / want_plain.norm(2, 1, true);
  EXPECT_TRUE(torch::allclose(TorchScriptEncoder(tmp.file("plain.pt")).encode(ids, mask), want_plain, 1e-5, 1e-6));
}

TEST(TorchScriptEncoderModel, BadFilesAndModulesAreClearErrorsNamingTheFile) {
  TempFiles tmp;
  // Missing file.
  const std::string missing = tmp.file("missing.pt");
  std::string msg = error_of([&] { TorchScriptEncoder e(missing); }, ErrorCode::kIo);
  EXPECT_NE(msg.find(missing), std::string::npos) << msg;
  EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;
  // Not TorchScript.
  const std::string junk = tmp.file("junk.pt");
  std::ofstream(junk) << "this is not a zip archive\n";
  msg = error_of([&] { TorchScriptEncoder e(junk); }, ErrorCode::kIo);
  EXPECT_NE(msg.find(junk), std::string::npos) << msg;
  EXPECT_NE(msg.find("not a TorchScript module"), std::string::npos) << msg;
  // Modules breaking the contract: the file and what is wrong.
  const struct {
    const char* name;
    const char* body;
    const char* says;
  } cases[] = {
      {"one_dim.pt", "def forward(self, ids, mask):\n    return ids.float().sum(1)\n", "returned shape [2]"},
      {"more_rows.pt", "def forward(self, ids, mask):\n    return torch.zeros([ids.size(0) + 1, 4])\n", "returned shape [3, 4]"},
      {"integers.pt", "def forward(self, ids, mask):\n    return ids * 2\n", "dtype Long"},
      {"nan.pt", "def forward(self, ids, mask):\n    return ids.float() * float('nan')\n", "NaN or Inf"},
      {"inf.pt", "def forward(self, ids, mask):\n    return ids.float() / 0.0\n", "NaN or Inf"},
      {"three_args.pt", "def forward(self, ids, mask, extra):\n    return ids.float()\n", "forward takes 3 arguments"},
      {"no_tensor.pt", "def forward(self, ids, mask):\n    return 3\n", "forward returned Int"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = tmp.file(c.name);
    write_module(path, c.body);
    msg = error_of([&] { TorchScriptEncoder e(path); }, ErrorCode::kInvalidConfig);
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.says), std::string::npos) << msg;
  }
  // An expected D the module does not give; later windows checked too (a [W, T] output passes the probe's T = 8).
  write_mean_pool_encoder(tmp.file("d4.pt"), 20, 3, 4, 1);
  msg = error_of([&] { TorchScriptEncoder e(tmp.file("d4.pt"), 5); }, ErrorCode::kInvalidConfig);
  EXPECT_NE(msg.find("width 4, expected 5"), std::string::npos) << msg;
  write_module(tmp.file("per_token.pt"), "def forward(self, ids, mask):\n    return ids.float()\n");
  TorchScriptEncoder per_token(tmp.file("per_token.pt"));
  EXPECT_EQ(per_token.dim(), 8);
  msg = error_of([&] { per_token.encode(torch::ones({3, 9}, torch::kLong)); }, ErrorCode::kInvalidConfig);
  EXPECT_NE(msg.find("returned shape [3, 9]"), std::string::npos) << msg;
}

TEST(TorchScriptEncoderModel, FlopsPerRowCountsEveryParameterButTheLookupTables) {
  const uint64_t seed = testing_seed::fresh();
  SCOPED_TRACE(testing_seed::trace(seed));
  std::mt19937_64 rng(seed);
  TempFiles tmp;
  const int64_t vocab = 20 + int64_t(rng() % 200), width = 1 + int64_t(rng() % 40), dim = 1 + int64_t(rng() % 40);
  const int64_t tokens = 1 + int64_t(rng() % 2048);
  // The table is read by torch.embedding only: the projection alone counts, 2 per weight per token.
  write_mean_pool_encoder(tmp.file("pool.pt"), vocab, width, dim, seed);
  TorchScriptEncoder pool(tmp.file("pool.pt"));
  EXPECT_DOUBLE_EQ(pool.flops_per_row(tokens), 2.0 * double(tokens * width * dim));
  EXPECT_DOUBLE_EQ(pool.share()->flops_per_row(tokens), pool.flops_per_row(tokens));
  // Submodules (as nn.Embedding and nn.Linear script): the lookup's table found through the calls.
  torch::jit::Module emb("Emb"), lin("Lin"), top("Top");
  emb.register_parameter("weight", torch::randn({vocab, width}), false);
  emb.define("def forward(self, ids):\n    return torch.embedding(self.weight, ids)\n");
  lin.register_parameter("weight", torch::randn({width, dim}), false);
  lin.register_parameter("bias", torch::randn({dim}), false);
  lin.define("def forward(self, x):\n    return torch.matmul(x, self.weight) + self.bias\n");
  top.register_module("emb", emb);
  top.register_module("lin", lin);
  top.define("def forward(self, ids, mask):\n    return self.lin.forward(self.emb.forward(ids).mean(1))\n");
  top.save(tmp.file("nested.pt"));
  EXPECT_DOUBLE_EQ(TorchScriptEncoder(tmp.file("nested.pt")).flops_per_row(tokens), 2.0 * double(tokens * (width * dim + dim)));
  // A parameter used in a matmul counts, whatever its shape; a module without parameters costs nothing.
  torch::jit::Module dense("Dense");
  dense.register_parameter("w", torch::randn({8, dim}), false);
  dense.define("def forward(self, ids, mask):\n    return torch.matmul(ids.float(), self.w)\n");
  dense.save(tmp.file("dense.pt"));
  EXPECT_DOUBLE_EQ(TorchScriptEncoder(tmp.file("dense.pt")).flops_per_row(tokens), 2.0 * double(tokens * 8 * dim));
  write_module(tmp.file("none.pt"), "def forward(self, ids, mask):\n    return ids.float()\n");
  EXPECT_EQ(TorchScriptEncoder(tmp.file("none.pt")).flops_per_row(tokens), 0.0);
}

TEST(TorchScriptEncoderModel, WeightsOfAnotherEncoderAreRefused) {
  const uint64_t seed = testing_seed::fresh();
  SCOPED_TRACE(testing_seed::trace(seed));
  TempFiles tmp;
  write_mean_pool_encoder(tmp.file("a.pt"), 30, 4, 8, seed);
  write_mean_pool_encoder(tmp.file("a_again.pt"), 30, 4, 8, seed);  // same weights, another file
  write_mean_pool_encoder(tmp.file("b.pt"), 30, 4, 8, seed + 1);    // same shapes, other weights
  auto scripted = [&](const std::string& name) {
    return std::make_shared<RelationalInfluenceModel>(std::make_shared<TorchScriptEncoder>(tmp.file(name)));
  };
  HashedNgramEncoderConfig hc;
  hc.num_buckets = 64;
  hc.embed_dim = 8;
  hc.hidden_dim = 8;
  hc.out_dim = 8;
  auto hashed = [&](uint64_t hash_seed) {
    HashedNgramEncoderConfig c = hc;
    c.seed = hash_seed;
    return std::make_shared<RelationalInfluenceModel>(std::make_shared<HashedNgramEncoder>(c));
  };
  const auto a = scripted("a.pt");
  {
    torch::NoGradGuard no_grad;
    a->head()->weight.copy_(torch::randn({1, 8}));
  }
  const std::string blob = a->export_weights();
  // The same module (another path): accepted, bit for bit.
  const auto same = scripted("a_again.pt");
  same->import_weights(blob);
  EXPECT_TRUE(torch::equal(same->head()->weight, a->head()->weight));
  // Another module, the hashed encoder, a hashed encoder with another hash seed: refused.
  std::string msg = error_of([&] { scripted("b.pt")->import_weights(blob); }, ErrorCode::kInvalidState);
  EXPECT_NE(msg.find("saved with the encoder torchscript("), std::string::npos) << msg;
  error_of([&] { hashed(0)->import_weights(blob); }, ErrorCode::kInvalidState);
  error_of([&] { a->import_weights(hashed(0)->export_weights()); }, ErrorCode::kInvalidState);
  error_of([&] { hashed(1)->import_weights(hashed(0)->export_weights()); }, ErrorCode::kInvalidState);
  hashed(0)->import_weights(hashed(0)->export_weights());
}

}  // namespace
}  // namespace groupmates
