// bench_startup: start-up over many small files, and what the content fingerprint costs of it
// (LibTorch-free, `make bench-startup`). Writes (once) --files flat uint16 token files of
// --file-kib KiB each under --dir, then --runs times, page cache warm:
//   open:     StreamingLoader construction over the directory (expand, map, fingerprint each file:
//             its size and an XXH3 of 17 sampled 4 KiB blocks, the whole file below 68 KiB),
//   resume:   construction from a saved state (each saved file matched by content),
//   first:    construction to the first batch,
//   hash:     the sampled hashes alone (map + sampled_content_hash per file): the fingerprint's cost.
// Medians and ranges over the runs. RESULT startup_files=<n> open_s=<median> resume_s=<median>
// first_batch_s=<median> hash_share=<hash / open>.
//
//   bench_startup [--dir D] [--files 1000] [--file-kib 16] [--runs 7]
#include "groupmates/streaming_loader.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "sources/mapped_file.h"

using namespace groupmates;
namespace fs = std::filesystem;

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Summary {
  double median, lo, hi;
};

Summary summary(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "build/bench-startup-files";
  int files = 1000, file_kib = 16, runs = 7;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--dir") dir = argv[i + 1];
    else if (a == "--files") files = std::atoi(argv[i + 1]);
    else if (a == "--file-kib") file_kib = std::atoi(argv[i + 1]);
    else if (a == "--runs") runs = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  const std::string data = dir + "/" + std::to_string(files) + "x" + std::to_string(file_kib) + "k";
  if (!fs::exists(data + "/.complete")) {
    fs::create_directories(data);
    std::mt19937_64 rng(7);
    std::vector<uint16_t> tokens(size_t(file_kib) * 512);
    for (int f = 0; f < files; ++f) {
      for (auto& t : tokens) t = static_cast<uint16_t>(rng() % 50000);
      char name[32];
      std::snprintf(name, sizeof name, "/shard-%05d.bin", f);
      std::ofstream(data + name, std::ios::binary).write(reinterpret_cast<const char*>(tokens.data()), tokens.size() * 2);
    }
    std::ofstream(data + "/.complete") << "ok\n";
  }
  LoaderConfig cfg;
  SourceConfig s;
  s.format = SourceFormat::kTokenFile;
  s.paths = {data};
  cfg.sources = {s};
  cfg.sequence_length = 256;
  cfg.batch_size = 8;
  cfg.num_threads = 2;
  std::vector<std::string> paths;
  for (const auto& e : fs::directory_iterator(data))
    if (e.path().filename().string()[0] != '.') paths.push_back(e.path().string());
  std::vector<double> open_s, resume_s, first_s, hash_s;
  LoaderState saved;
  for (int r = 0; r < runs + 1; ++r) {  // run 0 warms the page cache, not counted
    double t0 = now();
    {
      StreamingLoader l(cfg);
      const double t1 = now();
      l.next();
      const double t2 = now();
      saved = l.state();
      if (r > 0) open_s.push_back(t1 - t0), first_s.push_back(t2 - t0);
    }
    t0 = now();
    { StreamingLoader l(cfg, saved); }
    if (r > 0) resume_s.push_back(now() - t0);
    t0 = now();
    uint64_t x = 0;
    for (const auto& p : paths) x ^= MappedFile(p).sampled_hash();
    if (r > 0) hash_s.push_back(now() - t0);
    if (x == 42) std::printf(" ");
  }
  const Summary o = summary(open_s), rs = summary(resume_s), f = summary(first_s), h = summary(hash_s);
  std::printf("%d files of %d KiB, %d runs (warm page cache), median [range]:\n", files, file_kib, runs);
  std::printf("  open (construct)      %.4f s [%.4f, %.4f]\n", o.median, o.lo, o.hi);
  std::printf("  resume (from a state) %.4f s [%.4f, %.4f]\n", rs.median, rs.lo, rs.hi);
  std::printf("  to the first batch    %.4f s [%.4f, %.4f]\n", f.median, f.lo, f.hi);
  std::printf("  sampled hashes alone  %.4f s [%.4f, %.4f]\n", h.median, h.lo, h.hi);
  std::printf("RESULT startup_files=%d open_s=%.4f resume_s=%.4f first_batch_s=%.4f hash_share=%.3f\n", files, o.median,
              rs.median, f.median, h.median / o.median);
  return 0;
}
