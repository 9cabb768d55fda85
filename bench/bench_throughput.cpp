// bench_throughput: tokens/s delivered as [B, T] int64 batches from a flat uint16 token file by
// groupmates (plain mode, shuffled) and by a single tight copy loop doing the same conversion
// (the ceiling). bench_throughput.py runs it next to torch's DataLoader and prints the RESULT line.
//
//   bench_throughput FILE [--batches N] [--threads N] [--prefetch 8] [--batch 16] [--seq-len 1024]
#include <groupmates/loader.h>

#include <torch/torch.h>

#include <fmt/format.h>

#include <cstdio>
#include <fcntl.h>
#include <random>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "example_cli.h"
#include "util/stopwatch.h"

namespace {

using groupmates::util::Stopwatch;

// The ceiling: one thread, random window offsets precomputed, uint16 -> int64 into one buffer.
double ceiling(const std::string& path, uint32_t B, uint32_t T, uint64_t batches, uint64_t seed) {
  const int fd = open(path.c_str(), O_RDONLY);
  struct stat st;
  fstat(fd, &st);
  const auto* tokens = static_cast<const uint16_t*>(mmap(nullptr, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0));
  const uint64_t windows = st.st_size / 2 / T;
  std::mt19937_64 rng(seed);
  std::vector<uint64_t> order(batches * B);
  for (auto& o : order) o = rng() % windows;
  std::vector<int64_t> out(uint64_t{B} * T);
  int64_t checksum = 0;
  const Stopwatch clock;
  for (uint64_t b = 0; b < batches; ++b) {
    for (uint32_t r = 0; r < B; ++r) {
      const uint16_t* in = tokens + order[b * B + r] * T;
      int64_t* o = out.data() + uint64_t{r} * T;
      for (uint32_t i = 0; i < T; ++i) o[i] = in[i];
    }
    checksum += out[b % out.size()];
  }
  const double secs = clock.seconds();
  munmap(const_cast<uint16_t*>(tokens), st.st_size);
  close(fd);
  if (checksum == 42) std::printf(" ");
  return batches * B * T / secs;
}

double plain(const std::string& path, uint32_t B, uint32_t T, uint64_t batches, uint32_t threads, uint32_t prefetch,
             uint64_t seed) {
  groupmates::LoaderConfig config;
  groupmates::SourceConfig s;
  s.format = groupmates::SourceFormat::kTokenFile;
  s.dtype = groupmates::TokenDtype::kUint16;
  s.paths = {path};
  config.sources = {s};
  config.sequence_length = T;
  config.batch_size = B;
  config.num_threads = threads;
  config.prefetch_batches = prefetch;
  config.seed = seed;
  config.epochs = 0;
  groupmates::GroupMatesLoader loader(config);
  int64_t checksum = 0;
  const Stopwatch clock;
  for (uint64_t b = 0; b < batches; ++b) {
    auto batch = loader.next();
    checksum += batch->input_ids.data_ptr<int64_t>()[b % (B * T)];
  }
  const double secs = clock.seconds();
  if (checksum == 42) std::printf(" ");
  return batches * B * T / secs;
}

}  // namespace

int main(int argc, char** argv) {
  std::string path;
  uint64_t batches = 3000;
  uint32_t threads = 2, prefetch = 8, B = 16, T = 1024;
  CLI::App app("tokens/s of groupmates (plain, shuffled) and of a tight copy loop (the ceiling)", "bench_throughput");
  app.add_option("FILE", path, "flat uint16 token file")->required();
  app.add_option("--batches", batches, "batches per pass")->capture_default_str();
  app.add_option("--threads", threads, "loader threads")->capture_default_str();
  app.add_option("--prefetch", prefetch, "batches prefetched")->capture_default_str();
  app.add_option("--batch", B, "rows per batch (B)")->capture_default_str()->check(example_cli::kPositive);
  app.add_option("--seq-len", T, "tokens per row (T)")->capture_default_str()->check(example_cli::kPositive);
  example_cli::parse_or_exit(app, argc, argv);
  torch::set_num_threads(1);
  // Alternate the two, best of 3 each, so that machine noise hits both alike.
  double best_plain = 0, best_ceiling = 0;
  for (int rep = 0; rep < 3; ++rep) {
    best_plain = std::max(best_plain, plain(path, B, T, batches, threads, prefetch, 1000 + rep));
    best_ceiling = std::max(best_ceiling, ceiling(path, B, T, batches, 2000 + rep));
  }
  fmt::print("groupmates_plain_tokens_per_s {:.0f}\n", best_plain);
  fmt::print("ceiling_tokens_per_s {:.0f}\n", best_ceiling);
  return 0;
}
