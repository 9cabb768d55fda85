// bench_select: tokens/s through the selection engine on CPU, for windows of W candidate
// sequences of T tokens, with the loader's default encoder (HashedNgramEncoder as SelectionConfig's
// defaults build it; --encoder torchscript: a TorchScript module, SelectionConfig::encoder) and the
// Group-MATES selector,
// measured in the same run as the plain loader on the same data.
//
// Data: a flat uint16 token file, streamed by groupmates::StreamingLoader (batch = one window of
// W sequences of T tokens, shuffled, 2 worker threads, the same seed for every pass, so every pass
// sees the same windows in the same order; the file is read once first, so every pass finds it in
// the page cache). Reuses data/bench/tokens_u16_1g.bin (written by
// `make bench-throughput`) when present, else writes data/bench/tokens_u16_256m.bin once (uniform
// ids < 50,257 like bench_throughput.py; temp file + rename, so a concurrent run never reads half).
//
//   plain:  loader.next() only (the plain loader's rate: the baseline of select_vs_plain)
//   stages: loader window -> int64 [W, T] tensor (zero copy) -> hash + bag sum -> MLP + head ->
//           online k-means -> per-cluster greedy selection, one after the other, each timed
//           (a TorchScript encoder: its forward + normalisation + head in one stage)
//   select: end to end, pipelined as in use: the WindowScorer thread embeds + scores window w
//           while this thread takes window w + 1 from the loader, then clusters and selects w
//
//   bench_select [--windows 10] [--window 4096] [--seq-len 1024] [--clusters 64] [--ratio 0.5]
//                [--threads N (intra-op)] [--loader-threads 2] [--file PATH] [--data-dir data/bench]
//                [--encoder hashed_ngram|torchscript] [--encoder-path FILE.pt]
// --encoder torchscript without --encoder-path writes (once) DATA_DIR/mean_pool_encoder.pt: token
// embedding [50257, 64] -> mean over the row -> Linear(64, 64), scripted here (no Python needed);
// any module file of the encoder contract (include/groupmates/engine/torchscript_encoder.h) runs too,
// e.g. examples/export_torchscript_encoder.py's attention encoder.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include <torch/script.h>

#include <groupmates/engine/hashed_ngram_encoder.h>
#include <groupmates/engine/torchscript_encoder.h>
#include <groupmates/selection_config.h>
#include <groupmates/engine/influence_model.h>
#include <groupmates/engine/model_registry.h>
#include <groupmates/engine/selector.h>
#include <groupmates/engine/spherical_kmeans.h>
#include <groupmates/streaming_loader.h>
#include <groupmates/engine/window_scorer.h>

#include <fmt/format.h>

#include "example_cli.h"
#include "util/stopwatch.h"

namespace {

using namespace groupmates;
namespace fs = std::filesystem;

double (&now)() = util::monotonic_seconds;

constexpr uint64_t kReuseBytes = uint64_t{1} << 30;   // bench-throughput's file
constexpr uint64_t kOwnBytes = uint64_t{256} << 20;  // ours, when that one is absent

// The token file: bench-throughput's 1 GiB file if complete, else a 256 MiB one written once.
std::string token_file(const fs::path& dir) {
  const fs::path reuse = dir / "tokens_u16_1g.bin";
  std::error_code ec;
  if (fs::exists(reuse, ec) && fs::file_size(reuse, ec) == kReuseBytes) return reuse.string();
  const fs::path own = dir / "tokens_u16_256m.bin";
  if (fs::exists(own, ec) && fs::file_size(own, ec) == kOwnBytes) return own.string();
  fs::create_directories(dir);
  const fs::path tmp = dir / ("tokens_u16_256m.bin.tmp." + std::to_string(::getpid()));
  fmt::print("writing {} ({} MiB of uniform uint16 ids < 50257)\n", own.string(), kOwnBytes >> 20);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    std::mt19937_64 rng(0);
    std::vector<uint16_t> chunk(1 << 20);
    for (uint64_t done = 0; done < kOwnBytes; done += chunk.size() * 2) {
      for (auto& t : chunk) t = uint16_t((rng() >> 32) % 50257);
      out.write(reinterpret_cast<const char*>(chunk.data()), std::streamsize(chunk.size() * 2));
    }
    if (!out) throw std::runtime_error("cannot write " + tmp.string());
  }
  fs::rename(tmp, own);  // atomic
  return own.string();
}

// Reads the file once so that every timed pass finds it in the page cache (else the first pass
// would time the disk, the later ones memory).
double warm_page_cache(const std::string& path) {
  const util::Stopwatch clock;
  std::ifstream in(path, std::ios::binary);
  std::vector<char> buffer(8 << 20);
  while (in.read(buffer.data(), std::streamsize(buffer.size())) || in.gcount() > 0) {
  }
  return clock.seconds();
}

LoaderConfig loader_config(const std::string& path, uint32_t rows, uint32_t length, uint32_t threads) {
  LoaderConfig config;
  SourceConfig s;
  s.name = "bench";
  s.format = SourceFormat::kTokenFile;
  s.dtype = TokenDtype::kUint16;
  s.paths = {path};
  config.sources = {s};
  config.sequence_length = length;
  config.batch_size = rows;  // one batch = one window of candidates
  config.shuffle = true;
  config.seed = 7;           // the same windows, in the same order, for every pass
  config.epochs = 0;         // endless: never runs dry however many windows are asked for
  config.num_threads = threads;
  return config;
}

// Zero-copy int64 [W, T] view of a loader batch; the tensor keeps the pooled buffer alive.
torch::Tensor window_tensor(const HostBatch& batch) {
  auto keep = batch.tokens;
  return torch::from_blob(batch.tokens.get(), {int64_t(batch.batch_size), int64_t(batch.sequence_length)},
                          [keep](void*) mutable { keep.reset(); }, torch::TensorOptions().dtype(torch::kLong));
}

HostBatch next_window(StreamingLoader& loader) {
  std::optional<HostBatch> b = loader.next();
  if (!b) throw std::runtime_error("the loader ran dry");
  return std::move(*b);
}

// The plain loader alone: seconds per window over windows 1..n-1 (window 0 warms up the workers).
double plain_pass(const LoaderConfig& config, int64_t windows, int64_t& checksum) {
  StreamingLoader loader(config);
  double start = 0;
  for (int64_t w = 0; w < windows; ++w) {
    if (w == 1) start = now();
    const HostBatch b = next_window(loader);
    checksum += b.tokens.get()[(w * 7919) % (int64_t(b.batch_size) * b.sequence_length)];
  }
  return (now() - start) / double(windows - 1);
}

// A mean-pooled embedding + linear encoder as a TorchScript file, written once (temp file + rename).
std::string mean_pool_encoder_file(const fs::path& dir) {
  const fs::path path = dir / "mean_pool_encoder.pt";
  if (fs::exists(path)) return path.string();
  fs::create_directories(dir);
  torch::manual_seed(0);
  torch::jit::Module m("MeanPoolEncoder");
  m.register_parameter("table", torch::randn({50257, 64}), false);
  m.register_parameter("proj", torch::randn({64, 64}) / 8.0, false);
  m.define(R"JIT(
def forward(self, ids, mask):
    x = torch.embedding(self.table, ids)
    weight = mask.float().unsqueeze(-1)
    return torch.matmul((x * weight).sum(1) / weight.sum(1).clamp_min(1.0), self.proj)
)JIT");
  const fs::path tmp = dir / ("mean_pool_encoder.pt.tmp." + std::to_string(::getpid()));
  m.save(tmp.string());
  fs::rename(tmp, path);
  fmt::print("wrote {} (embedding 50257 x 64, mean over the row, 64 x 64 projection)\n", path.string());
  return path.string();
}

}  // namespace

int main(int argc, char** argv) {
  int64_t windows = 10, rows = 4096, length = 1024, clusters = 64;
  uint32_t loader_threads = 2;
  int intra_op_threads = 0;  // 0: LibTorch's default
  double ratio = 0.5;
  std::string file, data_dir = "data/bench", encoder_kind = "hashed_ngram", encoder_path;
  CLI::App app("tokens/s through the selection engine, against the plain loader on the same data", "bench_select");
  app.add_option("--windows", windows, "windows per pass (the first is warm-up; at least 2)")->capture_default_str();
  app.add_option("--window", rows, "candidate sequences per window (W)")->capture_default_str()->check(example_cli::kPositive);
  app.add_option("--seq-len", length, "tokens per sequence (T)")->capture_default_str()->check(example_cli::kPositive);
  app.add_option("--clusters", clusters, "k-means clusters per window")->capture_default_str()->check(example_cli::kPositive);
  app.add_option("--ratio", ratio, "share of each window selected")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  app.add_option("--threads", intra_op_threads, "intra-op threads (at::set_num_threads)")->check(example_cli::kPositive);
  app.add_option("--loader-threads", loader_threads, "StreamingLoader threads")->capture_default_str();
  app.add_option("--file", file, "flat uint16 token file (default: one in --data-dir, written if missing)");
  app.add_option("--data-dir", data_dir, "where the default token file is")->capture_default_str();
  app.add_option("--encoder", encoder_kind, "SelectionConfig::encoder")->capture_default_str()
      ->check(CLI::IsMember({"hashed_ngram", "torchscript"}));
  app.add_option("--encoder-path", encoder_path, "--encoder torchscript: the module file (default: a mean-pool encoder written in --data-dir)");
  example_cli::parse_or_exit(app, argc, argv);
  const bool scripted = encoder_kind == "torchscript";
  if (scripted && encoder_path.empty()) encoder_path = mean_pool_encoder_file(data_dir);
  if (intra_op_threads > 0) at::set_num_threads(intra_op_threads);
  windows = std::max<int64_t>(windows, 2);
  if (file.empty()) file = token_file(data_dir);
  int worker_threads = 0;  // intra-op threads seen from a fresh thread like the WindowScorer's
  std::thread([&] { worker_threads = at::get_num_threads(); }).join();
  const torch::Device device = default_device();
  fmt::print("bench_select: {} windows of {} x {} tokens from {} (StreamingLoader, shuffled, {} threads), "
             "{} clusters, ratio {:.2f}, device {}, {} intra-op threads ({} in a new thread); "
             "the first window of each pass is warm-up\n",
             windows, rows, length, file, loader_threads, clusters, ratio, device.str(), at::get_num_threads(),
             worker_threads);
  fmt::print("read {} once into the page cache: {:.1f} s\n", file, warm_page_cache(file));
  const LoaderConfig config = loader_config(file, uint32_t(rows), uint32_t(length), loader_threads);
  const int64_t per_window = rows * length;
  int64_t checksum = 0;

  // Untrained default model, published as version 1 (weights do not change the cost).
  std::shared_ptr<TorchScriptEncoder> module;  // loaded once, shared by every model (as the loader does)
  if (scripted) {
    module = std::make_shared<TorchScriptEncoder>(encoder_path, -1, device);
    fmt::print("encoder: TorchScript {} (D = {}, {})\n", encoder_path, module->dim(), module->identity());
  } else {
    fmt::print("encoder: hashed n-gram (SelectionConfig defaults)\n");
  }
  torch::manual_seed(0);
  auto factory = [module]() -> std::shared_ptr<RelationalInfluenceModel> {  // what GroupMatesLoader builds
    if (module) return std::make_shared<RelationalInfluenceModel>(module->share());
    const SelectionConfig defaults;
    HashedNgramEncoderConfig ec;
    ec.num_buckets = defaults.encoder_buckets;
    ec.embed_dim = defaults.encoder_bag_dim;
    ec.out_dim = defaults.encoder_dim;
    ec.max_ngram = defaults.encoder_max_ngram;
    return std::make_shared<RelationalInfluenceModel>(std::make_shared<HashedNgramEncoder>(ec));
  };
  auto registry = std::make_shared<ModelRegistry>(factory, device);
  registry->publish(factory()->export_weights());
  auto model = registry->current()->model;
  auto* hashed = dynamic_cast<HashedNgramEncoder*>(&model->encoder());
  const ClusterGreedySelector selector;
  const ClusterGreedySelector batched(BudgetMode::kUniformRatio, 0.8, GreedyExecution::kBatchedTensor);
  SphericalKMeansConfig kc;
  kc.num_clusters = clusters;

  // 1) Plain loader on the data.
  const double plain_before = plain_pass(config, windows, checksum);

  // 2) Stages one after the other, timed separately, on windows from the same loader stream.
  {
    StreamingLoader loader(config);
    SphericalKMeans kmeans(kc, device);
    double hash_only = 0, batched_select = 0, wait = 0, convert = 0, bag = 0, project = 0, cluster = 0, select = 0,
           seed_s = 0;
    for (int64_t w = 0; w < windows; ++w) {
      torch::NoGradGuard no_grad;
      const double t = now();
      const HostBatch b = next_window(loader);
      const double t0 = now();
      const torch::Tensor tokens = window_tensor(b);
      const double t1 = now();
      const torch::Tensor bags = hashed ? hashed->bag_embed(tokens) : torch::Tensor();
      const double t2 = now();
      const torch::Tensor h = hashed ? hashed->project(bags) : model->embed(tokens);
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
        const double c = now();  // hashing alone, into an index tensor (after the timed stages: it evicts caches)
        if (hashed) hashed->hash(tokens);
        hash_only += now() - c;
      }
      if (w == 0) {
        seed_s = t4 - t3;
        continue;
      }
      wait += t0 - t;
      convert += t1 - t0;
      bag += t2 - t1;
      project += t3 - t2;
      cluster += t4 - t3;
      select += t5 - t4;
    }
    const double n = double(windows - 1), tokens = double(per_window);
    fmt::print("stage                        ms/window   tokens/s\n");
    auto row = [&](const char* name, double s) { fmt::print("{:<27} {:>10.1f} {:>10.3g}\n", name, 1e3 * s / n, tokens * n / s); };
    row("loader.next() wait", wait);
    row("to tensor (zero copy)", convert);
    if (hashed) {
      row("hash + bag sum", bag);
      row(" (hash only, to indices)", hash_only);
      row("mlp + head", project);
    } else {
      row("TorchScript encoder + head", project);
    }
    row("k-means update", cluster);
    row("greedy select", select);
    row(" (batched tensor path)", batched_select);
    row("sum of stages", wait + convert + bag + project + cluster + select);
    fmt::print("(first window: k-means++ seeding + Lloyd {:.1f} ms, not counted)\n", 1e3 * seed_s);
  }

  // 3) End to end, pipelined: the WindowScorer scores window w while this thread takes w + 1 from
  //    the loader, then clusters and selects w.
  double e2e_s = 0;
  {
    StreamingLoader loader(config);
    SphericalKMeans kmeans(kc, device);
    WindowScorer scorer(registry);
    std::future<ScoredWindow> pending = scorer.score(window_tensor(next_window(loader)));
    double start = 0;
    for (int64_t w = 0; w < windows; ++w) {
      if (w == 1) start = now();  // after the warm-up window (k-means seeding)
      std::future<ScoredWindow> next;
      if (w + 1 < windows) next = scorer.score(window_tensor(next_window(loader)));
      const ScoredWindow scored = pending.get();
      torch::NoGradGuard no_grad;
      const torch::Tensor ids = kmeans.update(scored.embeddings);
      SelectionInput in{scored.u, scored.embeddings, ids, {scored.alpha, scored.tau}, uint64_t(w)};
      checksum += selector.select(in, ratio).indices.front();
      pending = std::move(next);
    }
    e2e_s = (now() - start) / double(windows - 1);
  }

  // 4) Plain again, so that machine noise (shared cores) hits both sides; the faster pass counts.
  const double plain_after = plain_pass(config, windows, checksum);
  const double plain_s = std::min(plain_before, plain_after);
  const double plain_tps = double(per_window) / plain_s;
  const double select_tps = double(per_window) / e2e_s;
  fmt::print("plain loader (StreamingLoader alone): {:.1f} ms/window (passes: {:.1f}, {:.1f}), {:.0f} candidates/s, {:.3g} tokens/s\n",
             1e3 * plain_s, 1e3 * plain_before, 1e3 * plain_after, double(rows) / plain_s, plain_tps);
  fmt::print("select, end to end (loader + embed + score + cluster + select, pipelined): {:.1f} ms/window, {:.0f} candidates/s, {:.3g} tokens/s\n",
             1e3 * e2e_s, double(rows) / e2e_s, select_tps);
  if (checksum == 42) fmt::print(" \n");
  fmt::print("RESULT select_tokens_per_s={:.0f} select_vs_plain={:.3f} encoder={}\n", select_tps, select_tps / plain_tps,
             encoder_kind);
  return 0;
}
