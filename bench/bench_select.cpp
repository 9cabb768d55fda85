// bench_select: tokens/s through the selection engine on CPU, for windows of W candidate
// sequences of T tokens, with the default encoder (HashedNgramEncoder) and the Group-MATES selector:
// uint16 tokens -> int64 [W, T] -> embed + score (async WindowScorer) -> online k-means -> per-cluster
// greedy selection. Prints per-stage timings, then the end-to-end pipelined rate.
//
// "plain" is, for now, a tight single-threaded uint16 -> int64 [W, T] conversion of the same data
// (what a plain loader must at least do); the lead will swap in the real plain loader on the same data.
//
//   bench_select [--windows 5] [--window 4096] [--seq-len 1024] [--clusters 64] [--ratio 0.5] [--threads N]
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <groupmates/hashed_ngram_encoder.h>
#include <groupmates/influence_model.h>
#include <groupmates/model_registry.h>
#include <groupmates/selection.h>
#include <groupmates/spherical_kmeans.h>
#include <groupmates/window_scorer.h>

namespace {

using namespace groupmates;

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Zipf(1.1)-distributed token ids over a GPT-2-sized vocabulary: realistic reuse of frequent n-grams.
std::vector<uint16_t> zipf_tokens(size_t count, uint64_t seed) {
  const int vocab = 50257;
  std::vector<double> cdf(vocab);
  double total = 0;
  for (int i = 0; i < vocab; ++i) cdf[i] = (total += 1.0 / std::pow(i + 1.0, 1.1));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uni(0, total);
  std::vector<uint16_t> out(count);
  for (auto& t : out) t = uint16_t(std::lower_bound(cdf.begin(), cdf.end(), uni(rng)) - cdf.begin());
  return out;
}

// The plain baseline: one tight loop converting the window to the int64 [W, T] tensor.
torch::Tensor to_int64(const uint16_t* data, int64_t rows, int64_t length) {
  torch::Tensor out = torch::empty({rows, length}, torch::kLong);
  int64_t* o = out.data_ptr<int64_t>();
  const int64_t n = rows * length;
  for (int64_t i = 0; i < n; ++i) o[i] = data[i];
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t windows = 5, rows = 4096, length = 1024, clusters = 64;
  double ratio = 0.5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--windows") windows = std::stoll(argv[i + 1]);
    else if (a == "--window") rows = std::stoll(argv[i + 1]);
    else if (a == "--seq-len") length = std::stoll(argv[i + 1]);
    else if (a == "--clusters") clusters = std::stoll(argv[i + 1]);
    else if (a == "--ratio") ratio = std::stod(argv[i + 1]);
    else if (a == "--threads") at::set_num_threads(std::stoi(argv[i + 1]));
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  windows = std::max<int64_t>(windows, 2);
  int worker_threads = 0;  // intra-op threads seen from a fresh thread like the WindowScorer's
  std::thread([&] { worker_threads = at::get_num_threads(); }).join();  // the first one is warm-up (k-means seeding)
  const torch::Device device = default_device();
  std::printf("bench_select: %lld windows of %lld x %lld tokens, %lld clusters, ratio %.2f, device %s, %d intra-op threads (%d in a new thread)\n",
              (long long)windows, (long long)rows, (long long)length, (long long)clusters, ratio,
              device.str().c_str(), at::get_num_threads(), worker_threads);

  const int64_t per_window = rows * length;
  const std::vector<uint16_t> data = zipf_tokens(size_t(per_window) * 2, 1);
  auto window_data = [&](int64_t w) { return data.data() + (w % 2) * per_window; };

  // Untrained default model, published as version 1 (weights do not change the cost).
  torch::manual_seed(0);
  auto factory = [] { return std::make_shared<RelationalInfluenceModel>(std::make_shared<HashedNgramEncoder>()); };
  auto registry = std::make_shared<ModelRegistry>(factory, device);
  registry->publish(factory()->export_weights());
  auto model = registry->current()->model;
  auto& encoder = dynamic_cast<HashedNgramEncoder&>(model->encoder());
  const ClusterGreedySelector selector;
  const ClusterGreedySelector batched(BudgetMode::kUniformRatio, 0.8, GreedyExecution::kBatchedTensor);

  // 1) Plain: the conversion alone.
  double t0 = now();
  int64_t checksum = 0;
  for (int64_t w = 0; w < windows; ++w) checksum += to_int64(window_data(w), rows, length)[w][0].item<int64_t>();
  const double plain_s = (now() - t0) / double(windows);
  const double plain_tps = double(per_window) / plain_s;

  // 2) Stages one after the other, timed separately.
  SphericalKMeansConfig kc;
  kc.num_clusters = clusters;
  {
    SphericalKMeans kmeans(kc, device);
    double hash_only = 0, batched_select = 0, convert = 0, bag = 0, project = 0, cluster = 0, select = 0, seed_s = 0;
    for (int64_t w = 0; w < windows; ++w) {
      torch::NoGradGuard no_grad;
      double t = now();
      const torch::Tensor tokens = to_int64(window_data(w), rows, length);
      const double t1 = now();
      const torch::Tensor bags = encoder.bag_embed(tokens);
      const double t2 = now();
      const torch::Tensor h = encoder.project(bags);
      const torch::Tensor u = model->individual(h);
      const double t3 = now();
      const torch::Tensor ids = kmeans.update(h);
      const double t4 = now();
      SelectionInput in{u, h, ids, {model->alpha(), model->tau()}, uint64_t(w)};
      const Selection sel = selector.select(in, ratio);
      const double t5 = now();
      checksum += sel.indices.front();
      if (w > 0) {  // the device path (padded tensor batch), timed here on the CPU for reference
        const double a = now();
        checksum += batched.select(in, ratio).indices.front();
        batched_select += now() - a;
        const double b = now();  // hashing alone, into an index tensor (after the timed stages: it evicts caches)
        encoder.hash(tokens);
        hash_only += now() - b;
      }
      if (w == 0) {
        seed_s = t4 - t3;
        continue;
      }
      convert += t1 - t;
      bag += t2 - t1;
      project += t3 - t2;
      cluster += t4 - t3;
      select += t5 - t4;
    }
    const double n = double(windows - 1), tokens = double(per_window);
    std::printf("stage               ms/window   tokens/s\n");
    auto row = [&](const char* name, double s) { std::printf("%-18s %10.1f %10.3g\n", name, 1e3 * s / n, tokens * n / s); };
    row("convert u16->i64", convert);
    row("hash + bag sum", bag);
    row(" (hash only, to indices)", hash_only);
    row("mlp + head", project);
    row("k-means update", cluster);
    row("greedy select", select);
    row(" (batched tensor path)", batched_select);
    row("sum of stages", convert + bag + project + cluster + select);
    std::printf("(first window: k-means++ seeding + Lloyd %.1f ms, not counted)\n", 1e3 * seed_s);
  }

  // 3) End to end, pipelined: the WindowScorer scores window w while this thread converts w + 1,
  //    then clusters and selects w.
  SphericalKMeans kmeans(kc, device);
  WindowScorer scorer(registry);
  std::future<ScoredWindow> pending = scorer.score(to_int64(window_data(0), rows, length));
  double start = 0;
  for (int64_t w = 0; w < windows; ++w) {
    if (w == 1) start = now();  // after the warm-up window
    std::future<ScoredWindow> next;
    if (w + 1 < windows) next = scorer.score(to_int64(window_data(w + 1), rows, length));
    const ScoredWindow scored = pending.get();
    torch::NoGradGuard no_grad;
    const torch::Tensor ids = kmeans.update(scored.embeddings);
    SelectionInput in{scored.u, scored.embeddings, ids, {scored.alpha, scored.tau}, uint64_t(w)};
    checksum += selector.select(in, ratio).indices.front();
    pending = std::move(next);
  }
  const double e2e_s = (now() - start) / double(windows - 1);
  const double select_tps = double(per_window) / e2e_s;
  std::printf("end to end (pipelined): %.1f ms/window, %.0f candidates/s, %.3g tokens/s\n", 1e3 * e2e_s,
              double(rows) / e2e_s, select_tps);
  std::printf("plain (u16->i64 copy loop, stand-in for the plain loader): %.3g tokens/s\n", plain_tps);
  if (checksum == 42) std::printf(" \n");
  std::printf("RESULT select_tokens_per_s=%.0f select_vs_plain=%.3f\n", select_tps, select_tps / plain_tps);
  return 0;
}
