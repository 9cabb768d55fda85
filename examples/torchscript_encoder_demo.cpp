// torchscript_encoder_demo: plug a scripted sentence encoder (exported from Python) into the
// relational influence model, score one window of candidate sequences and select half of it.
//
//   /usr/bin/python3 examples/export_torchscript_encoder.py --out tiny_sentence_encoder.pt
//   build/examples/torchscript_encoder_demo tiny_sentence_encoder.pt [--dim 64] [--window 256] [--seq-len 128]
//
// The encoder is frozen (only the model's head, tau and alpha would train on top of it); here the
// head is untrained, so the scores show the plumbing, not a useful ranking.
#include <groupmates/error.h>
#include <groupmates/engine/influence_model.h>
#include <groupmates/engine/model_registry.h>
#include <groupmates/engine/selector.h>
#include <groupmates/engine/spherical_kmeans.h>
#include <groupmates/engine/torchscript_encoder.h>
#include <groupmates/engine/window_scorer.h>

#include <fmt/format.h>

#include <memory>
#include <string>

#include "example_cli.h"

int main(int argc, char** argv) {
  std::string path = "tiny_sentence_encoder.pt";
  int64_t dim = 64, rows = 256, length = 128, clusters = 8;
  CLI::App app("a scripted sentence encoder in the relational influence model: score one window, select half",
               "torchscript_encoder_demo");
  app.add_option("FILE.pt", path, "TorchScript encoder (examples/export_torchscript_encoder.py)")->capture_default_str();
  app.add_option("--dim", dim, "the encoder's output dimension D")->capture_default_str()->check(example_cli::kPositive);
  app.add_option("--window", rows, "candidate rows per window")->capture_default_str()->check(example_cli::kPositive);
  app.add_option("--seq-len", length, "tokens per row")->capture_default_str()->check(example_cli::kPositive);
  app.add_option("--clusters", clusters, "k-means clusters")->capture_default_str()->check(example_cli::kPositive);
  example_cli::parse_or_exit(app, argc, argv);
  try {
    using namespace groupmates;
    const torch::Device device = default_device();
    // Every version the registry builds wraps the same frozen scripted encoder.
    auto factory = [&] { return std::make_shared<RelationalInfluenceModel>(std::make_shared<TorchScriptEncoder>(path, dim, device)); };
    torch::manual_seed(0);
    auto registry = std::make_shared<ModelRegistry>(factory, device);
    const uint64_t version = registry->publish(factory()->export_weights());
    fmt::print("loaded {} as a TorchScriptEncoder (D = {}) on {}; model version {}\n", path, dim, device.str(), version);

    // A window of candidates: random token ids, the second half of the rows padded after 3/4 of T.
    const torch::Tensor tokens = torch::randint(0, 50257, {rows, length}, torch::kLong);
    torch::Tensor mask = torch::ones({rows, length}, torch::kBool);
    mask.slice(0, rows / 2).slice(1, 3 * length / 4).fill_(false);

    WindowScorer scorer(registry);
    const ScoredWindow scored = scorer.score(tokens, mask).get();
    const torch::Tensor norms = scored.embeddings.norm(2, 1).cpu();
    fmt::print("embeddings [{}, {}], L2 norms min {:.6f} max {:.6f} (unit rows)\n", scored.embeddings.size(0),
               scored.embeddings.size(1), norms.min().item<double>(), norms.max().item<double>());
    fmt::print("u [{}]: mean {:.4f} std {:.4f}; alpha {:.3f} tau {:.3f}; scored by version {}\n", scored.u.size(0),
               scored.u.mean().item<double>(), scored.u.std().item<double>(), scored.alpha, scored.tau, scored.version);

    SphericalKMeansConfig kc;
    kc.num_clusters = clusters;
    SphericalKMeans kmeans(kc, device);
    const torch::Tensor ids = kmeans.update(scored.embeddings);
    const Selection selection = ClusterGreedySelector().select(
        SelectionInput{scored.u, scored.embeddings, ids, {scored.alpha, scored.tau}, 0}, 0.5);
    fmt::print("cluster sizes:");
    const torch::Tensor sizes = torch::bincount(ids.cpu(), {}, clusters);
    for (int64_t c = 0; c < clusters; ++c) fmt::print(" {}", sizes[c].item<int64_t>());
    fmt::print("\nselected {} of {} rows; best first:", selection.indices.size(), rows);
    for (size_t i = 0; i < selection.indices.size() && i < 8; ++i) fmt::print(" {}", selection.indices[i]);
    fmt::print(" ...\n");
  } catch (const std::exception& e) {
    fmt::print(stderr, "torchscript_encoder_demo: {}\n", e.what());
    return 1;
  }
  return 0;
}
