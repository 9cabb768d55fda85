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

#include <cstdio>
#include <memory>
#include <string>

int main(int argc, char** argv) {
  std::string path = "tiny_sentence_encoder.pt";
  int64_t dim = 64, rows = 256, length = 128, clusters = 8;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "torchscript_encoder_demo: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--dim") dim = std::stoll(value());
    else if (a == "--window") rows = std::stoll(value());
    else if (a == "--seq-len") length = std::stoll(value());
    else if (a == "--clusters") clusters = std::stoll(value());
    else if (a.rfind("--", 0) == 0) {
      std::fprintf(stderr, "usage: torchscript_encoder_demo FILE.pt [--dim 64] [--window 256] [--seq-len 128] [--clusters 8]\n");
      return 2;
    } else path = a;
  }
  try {
    using namespace groupmates;
    const torch::Device device = default_device();
    // Every version the registry builds wraps the same frozen scripted encoder.
    auto factory = [&] { return std::make_shared<RelationalInfluenceModel>(std::make_shared<TorchScriptEncoder>(path, dim, device)); };
    torch::manual_seed(0);
    auto registry = std::make_shared<ModelRegistry>(factory, device);
    const uint64_t version = registry->publish(factory()->export_weights());
    std::printf("loaded %s as a TorchScriptEncoder (D = %lld) on %s; model version %llu\n", path.c_str(),
                (long long)dim, device.str().c_str(), (unsigned long long)version);

    // A window of candidates: random token ids, the second half of the rows padded after 3/4 of T.
    const torch::Tensor tokens = torch::randint(0, 50257, {rows, length}, torch::kLong);
    torch::Tensor mask = torch::ones({rows, length}, torch::kBool);
    mask.slice(0, rows / 2).slice(1, 3 * length / 4).fill_(false);

    WindowScorer scorer(registry);
    const ScoredWindow scored = scorer.score(tokens, mask).get();
    const torch::Tensor norms = scored.embeddings.norm(2, 1).cpu();
    std::printf("embeddings [%lld, %lld], L2 norms min %.6f max %.6f (unit rows)\n", (long long)scored.embeddings.size(0),
                (long long)scored.embeddings.size(1), norms.min().item<double>(), norms.max().item<double>());
    std::printf("u [%lld]: mean %.4f std %.4f; alpha %.3f tau %.3f; scored by version %llu\n", (long long)scored.u.size(0),
                scored.u.mean().item<double>(), scored.u.std().item<double>(), scored.alpha, scored.tau,
                (unsigned long long)scored.version);

    SphericalKMeansConfig kc;
    kc.num_clusters = clusters;
    SphericalKMeans kmeans(kc, device);
    const torch::Tensor ids = kmeans.update(scored.embeddings);
    const Selection selection = ClusterGreedySelector().select(
        SelectionInput{scored.u, scored.embeddings, ids, {scored.alpha, scored.tau}, 0}, 0.5);
    std::printf("cluster sizes:");
    const torch::Tensor sizes = torch::bincount(ids.cpu(), {}, clusters);
    for (int64_t c = 0; c < clusters; ++c) std::printf(" %lld", (long long)sizes[c].item<int64_t>());
    std::printf("\nselected %zu of %lld rows; best first:", selection.indices.size(), (long long)rows);
    for (size_t i = 0; i < selection.indices.size() && i < 8; ++i) std::printf(" %lld", (long long)selection.indices[i]);
    std::printf(" ...\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "torchscript_encoder_demo: %s\n", e.what());
    return 1;
  }
  return 0;
}
