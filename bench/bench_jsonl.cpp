// bench_jsonl: JSONL at scale, LibTorch-free (`make bench-jsonl`). Writes (once) a corpus of
// --shards .jsonl.zst shards holding --mib MiB of JSONL in all (documents are random slices of the
// --text corpus, each shard in --frame-kib frames cut at line ends, as `groupmates reframe` writes
// them), then runs the streaming loader over every shard in fresh child processes:
//   cold: no line index cached (each shard is decompressed once to index it), and
//   warm: second start, indexes from the on-disk cache (page cache warm);
// each child reports its start-up (construction to first batch), its peak RSS above what the
// process held before opening the loader, and tokens per CPU-second while reading --batches
// shuffled batches. The default children use the loader's default shuffle (LoaderConfig::
// shuffle_block = kShuffleBlockAuto: for .jsonl.zst a local shuffle, blocks of the documents of one
// zstd frame, spans of a quarter of the frames the zstd cache holds, so a frame is decompressed about
// once); the "global" children set shuffle_block = 0 (one global permutation of the documents of all
// shards: one frame decompressed per document unless cached). Baseline: SentencePiece's own encoder
// (the tokenizer the loader calls) on the same documents' text, on --threads threads as the loader's
// workers run (two busy cores run slower per core than one), tokens per CPU-second summed over them.
// After one cold child, --rounds rounds of (baseline, default warm child, global warm child): each
// ratio over its own round's baseline (the machine's speed drifts over a run), the median reported.
//
// RESULT jsonl_vs_spm_encode=<median over rounds of the default loader's tokens/cpu-s over SentencePiece's>
// jsonl_peak_rss_vs_bound=<peak RSS growth / --bound-mib> startup_1000_shards_s=<warm start-up, median>
// (+ the cold start-up, the global shuffle's ratio jsonl_vs_spm_encode_global=, corpus size). Fails if the
// default (local) shuffle's zstd frame cache hit rate is not above the global one's.
//
//   bench_jsonl --tokenizer M.model --text CORPUS.jsonl [--dir D] [--shards 1000] [--mib 1024]
//               [--frame-kib 64] [--budget-mib 32] [--bound-mib 128] [--batches 800] [--threads 2]
//               [--rounds 5] [--shuffle-block B (-1: auto)] [--shuffle-span N (256)]
//               [--hf-tokenizer T.json]  (informative: that tokenizer.json's encoder on the baseline's text,
//                                         hf_tokens_per_cpu_s= in the RESULT line)
#include "groupmates/streaming_loader.h"

#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "groupmates/tokenizer.h"
#include "sources/jsonl_source.h"

namespace fs = std::filesystem;
namespace gm = groupmates;

extern char** environ;

namespace {

struct Args {
  std::string dir = "build/bench-jsonl-corpus", tokenizer, text, child, hf_tokenizer;
  uint64_t shards = 1000, mib = 1024, frame_kib = 64, budget_mib = 32, bound_mib = 128, batches = 800, threads = 2;
  int64_t shuffle_block = -1;  // the default children's LoaderConfig::shuffle_block (-1: kShuffleBlockAuto, the default)
  uint64_t shuffle_span = 256;  // LoaderConfig::shuffle_span (auto: at most)
  uint64_t rounds = 5;
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double cpu_s() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec * 1e-6;
}

// VmRSS / VmHWM of this process, bytes.
uint64_t status_kib(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) return std::strtoull(line.c_str() + std::strlen(key), nullptr, 10) * 1024;
  }
  return 0;
}

std::string json_escape(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') { o += '\\'; o += static_cast<char>(c); }
    else if (c == '\n') o += "\\n";
    else if (c < 0x20) { char b[8]; std::snprintf(b, sizeof b, "\\u%04x", c); o += b; }
    else o += static_cast<char>(c);
  }
  return o + "\"";
}

std::vector<std::string> shard_paths(const Args& a) {
  std::vector<std::string> p;
  for (uint64_t s = 0; s < a.shards; s++) {
    char name[32];
    std::snprintf(name, sizeof name, "shard-%05llu.jsonl.zst", static_cast<unsigned long long>(s));
    p.push_back((fs::path(a.dir) / name).string());
  }
  return p;
}

// Writes the corpus unless a marker says it is there with these parameters.
void make_corpus(const Args& a) {
  const std::string marker = (fs::path(a.dir) / "CORPUS").string();
  const std::string params = std::to_string(a.shards) + " " + std::to_string(a.mib) + " " + std::to_string(a.frame_kib) + "\n";
  {
    std::ifstream in(marker);
    std::stringstream ss;
    ss << in.rdbuf();
    if (ss.str() == params) return;
  }
  fs::create_directories(a.dir);
  // Source text: the "text" fields of --text joined (a simple scan: the corpus is our own JSONL).
  gm::SourceConfig sc;
  sc.format = gm::SourceFormat::kJsonl;
  sc.paths = {a.text};
  sc.index_cache = false;
  gm::JsonlSource src(sc, gm::BadInputPolicy::kSkip, false);
  std::string pool;
  for (uint64_t i = 0; i < src.num_documents(); i++) {
    std::string t;
    if (src.text(i, &t) == gm::JsonlSource::Problem::kNone) pool += t + "\n";
  }
  std::mt19937_64 rng(20261202);
  const uint64_t shard_bytes = (a.mib << 20) / a.shards;
  ZSTD_CCtx* cc = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 1);
  ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 1);
  const double t0 = now_s();
  uint64_t total = 0, compressed = 0;
  for (const std::string& path : shard_paths(a)) {
    std::string out, frame, z;
    uint64_t bytes = 0;
    auto flush = [&] {
      z.resize(ZSTD_compressBound(frame.size()));
      z.resize(ZSTD_compress2(cc, z.data(), z.size(), frame.data(), frame.size()));
      out += z;
      frame.clear();
    };
    while (bytes < shard_bytes) {
      const size_t len = 200 + rng() % 3800;
      size_t b = rng() % (pool.size() - len);
      while (b > 0 && pool[b - 1] != ' ' && pool[b - 1] != '\n') b--;
      const std::string line = "{\"id\": " + std::to_string(rng() % 1000000000) + ", \"text\": " + json_escape(pool.substr(b, len)) + "}\n";
      frame += line;
      bytes += line.size();
      if (frame.size() >= (a.frame_kib << 10)) flush();
    }
    if (!frame.empty()) flush();
    std::ofstream(path, std::ios::binary).write(out.data(), static_cast<std::streamsize>(out.size()));
    total += bytes;
    compressed += out.size();
  }
  ZSTD_freeCCtx(cc);
  std::ofstream(marker) << params;
  std::printf("corpus: %llu shards, %.1f MiB of JSONL, %.1f MiB compressed, written in %.1f s\n",
              static_cast<unsigned long long>(a.shards), total / 1048576.0, compressed / 1048576.0, now_s() - t0);
}

// The child: opens the loader over every shard, reads, prints one "CHILD k=v ..." line.
int child(const Args& a) {
  const uint64_t base = status_kib("VmRSS:");
  gm::LoaderConfig c;
  gm::SourceConfig s;
  s.name = "web";
  s.format = gm::SourceFormat::kJsonl;
  s.paths = shard_paths(a);
  s.tokenizer_model = a.tokenizer;
  s.zstd_cache_bytes = a.budget_mib << 20;
  c.sources = {s};
  c.sequence_length = 1024;
  c.batch_size = 8;
  c.num_threads = static_cast<uint32_t>(a.threads);
  c.eos_id = 2;
  c.seed = 7;
  c.shuffle_block = a.shuffle_block < 0 ? gm::kShuffleBlockAuto : static_cast<uint32_t>(a.shuffle_block);
  c.shuffle_span = static_cast<uint32_t>(a.shuffle_span);
  c.rank = 0;
  c.world_size = 1;
  c.check_rank_environment = false;
  const double t0 = now_s();
  gm::StreamingLoader loader(c);
  const double opened = now_s() - t0;
  auto first = loader.next();
  const double startup = now_s() - t0;
  const double c0 = cpu_s(), w0 = now_s();
  uint64_t batches = 0;
  int64_t checksum = 0;
  while (batches < a.batches) {
    auto b = loader.next();
    if (!b) break;
    checksum += b->tokens.get()[batches % 8192];
    batches++;
  }
  const double cpu = cpu_s() - c0, wall = now_s() - w0;
  const gm::LoaderStats st = loader.stats();
  const double reads = double(st.zstd_frame_cache_hits + st.zstd_frame_cache_misses);
  std::printf("CHILD frame_hit_rate=%.4f block=%u span=%u ", reads > 0 ? double(st.zstd_frame_cache_hits) / reads : 0.0,
              loader.local_shuffles().at(0).first, loader.local_shuffles().at(0).second);
  std::printf("open_s=%.4f startup_s=%.4f rss_base=%llu rss_peak=%llu tokens=%llu cpu_s=%.4f wall_s=%.4f checksum=%lld first=%d\n",
              opened, startup, static_cast<unsigned long long>(base), static_cast<unsigned long long>(status_kib("VmHWM:")),
              static_cast<unsigned long long>(batches * 8 * 1024), cpu, wall, static_cast<long long>(checksum), first ? 1 : 0);
  return 0;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// Runs this binary as a child reading the corpus with LoaderConfig::shuffle_block `block` (-1: auto).
std::map<std::string, double> run_child(const Args& a, const char* mode, int64_t block) {
  const std::string self = fs::read_symlink("/proc/self/exe").string();  // popen runs a shell
  std::vector<std::string> args = {self, "--child", mode, "--dir", a.dir, "--tokenizer", a.tokenizer, "--text", a.text,
                                   "--shards", std::to_string(a.shards), "--mib", std::to_string(a.mib), "--frame-kib",
                                   std::to_string(a.frame_kib), "--budget-mib", std::to_string(a.budget_mib), "--batches",
                                   std::to_string(a.batches), "--threads", std::to_string(a.threads),
                                   "--shuffle-block", std::to_string(block), "--shuffle-span", std::to_string(a.shuffle_span)};
  std::string cmd;
  for (const auto& s : args) cmd += "'" + s + "' ";
  FILE* p = popen(cmd.c_str(), "r");
  std::map<std::string, double> r;
  char buf[4096];
  while (p && std::fgets(buf, sizeof buf, p)) {
    std::string line(buf);
    if (line.rfind("CHILD ", 0) != 0) { std::fputs(buf, stdout); continue; }
    std::istringstream in(line.substr(6));
    std::string kv;
    while (in >> kv) r[kv.substr(0, kv.find('='))] = std::atof(kv.c_str() + kv.find('=') + 1);
  }
  if (!p || pclose(p) != 0 || r.empty()) {
    std::fprintf(stderr, "bench_jsonl: the %s child failed\n", mode);
    std::exit(1);
  }
  return r;
}

// The text of the first shards' documents (the baselines' input).
std::vector<std::string> baseline_texts(const Args& a) {
  gm::SourceConfig sc;
  sc.format = gm::SourceFormat::kJsonl;
  const auto all = shard_paths(a);
  sc.paths.assign(all.begin(), all.begin() + std::min<size_t>(all.size(), 8));
  sc.zstd_cache_bytes = a.budget_mib << 20;
  gm::JsonlSource src(sc, gm::BadInputPolicy::kSkip, false);
  std::vector<std::string> texts;
  for (uint64_t i = 0; i < src.num_documents(); i++) {
    std::string t;
    if (src.text(i, &t) == gm::JsonlSource::Problem::kNone) texts.push_back(std::move(t));
  }
  return texts;
}

// A tokenizer's own encode() over `texts` on this thread: tokens per CPU-second (+ 1 per document,
// the EOS the loader appends). `what` names it in the printed line.
double encode_tokens_per_cpu_s(const std::string& what, const std::string& tokenizer, const std::vector<std::string>& texts,
                               uint64_t threads) {
  const auto tok = gm::Tokenizer::load(tokenizer);
  // As many threads as the loader's workers, each encoding every threads-th text (the same load on the
  // cores as the loader's: one busy core runs faster than two); CPU time summed over the threads.
  std::vector<uint64_t> tokens(threads, 0), bytes(threads, 0);
  std::vector<double> cpu(threads, 0);
  std::vector<std::thread> pool;
  for (uint64_t k = 0; k < threads; ++k) {
    pool.emplace_back([&, k] {
      std::vector<uint32_t> ids;
      timespec t0, t1;
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
      for (size_t i = k; i < texts.size(); i += threads) {
        ids.clear();
        tok->encode(texts[i], ids);
        tokens[k] += ids.size() + 1;  // + the EOS the loader appends
        bytes[k] += texts[i].size();
      }
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
      cpu[k] = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    });
  }
  for (auto& t : pool) t.join();
  const double all_tokens = std::accumulate(tokens.begin(), tokens.end(), 0.0);
  const double all_bytes = std::accumulate(bytes.begin(), bytes.end(), 0.0);
  const double all_cpu = std::accumulate(cpu.begin(), cpu.end(), 0.0);
  std::printf("%s (%llu threads): %zu documents, %.1f MiB, %.0f tokens, %.2f CPU-s: %.0f tokens/cpu-s, %.2f MiB/cpu-s\n",
              what.c_str(), static_cast<unsigned long long>(threads), texts.size(), all_bytes / 1048576.0, all_tokens, all_cpu,
              all_tokens / all_cpu, all_bytes / 1048576.0 / all_cpu);
  return all_tokens / all_cpu;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--dir") a.dir = v;
    else if (k == "--tokenizer") a.tokenizer = v;
    else if (k == "--text") a.text = v;
    else if (k == "--hf-tokenizer") a.hf_tokenizer = v;
    else if (k == "--child") a.child = v;
    else if (k == "--shards") a.shards = std::stoull(v);
    else if (k == "--mib") a.mib = std::stoull(v);
    else if (k == "--frame-kib") a.frame_kib = std::stoull(v);
    else if (k == "--budget-mib") a.budget_mib = std::stoull(v);
    else if (k == "--bound-mib") a.bound_mib = std::stoull(v);
    else if (k == "--batches") a.batches = std::stoull(v);
    else if (k == "--threads") a.threads = std::stoull(v);
    else if (k == "--shuffle-block") a.shuffle_block = std::stoll(v);
    else if (k == "--shuffle-span") a.shuffle_span = std::stoull(v);
    else if (k == "--rounds") a.rounds = std::max<uint64_t>(1, std::stoull(v));
    else { std::fprintf(stderr, "bench_jsonl: unknown option %s\n", k.c_str()); return 2; }
  }
  if (a.tokenizer.empty() || a.text.empty()) {
    std::fprintf(stderr, "usage: bench_jsonl --tokenizer M.model --text CORPUS.jsonl [--dir D] [--shards N] [--mib N] ...\n");
    return 2;
  }
  try {
    if (!a.child.empty()) return child(a);
    make_corpus(a);
    for (const auto& e : fs::directory_iterator(a.dir)) {
      if (e.path().extension() == ".gmidx") fs::remove(e.path());  // cold: nothing cached
    }
    const auto texts = baseline_texts(a);
    const auto cold = run_child(a, "cold", a.shuffle_block);
    // Rounds of (baseline, default loader, global shuffle), each loader figure over its own round's
    // baseline: the machine's speed drifts over a run, much less within a round.
    std::vector<std::map<std::string, double>> warm, global;
    std::vector<double> x, xg, spm;
    for (uint64_t r = 0; r < a.rounds; ++r) {
      spm.push_back(encode_tokens_per_cpu_s("round " + std::to_string(r + 1) + " baseline: SentencePiece encode", a.tokenizer, texts, a.threads));
      warm.push_back(run_child(a, "warm", a.shuffle_block));
      global.push_back(run_child(a, "global", 0));
      x.push_back(warm.back().at("tokens") / warm.back().at("cpu_s") / spm.back());
      xg.push_back(global.back().at("tokens") / global.back().at("cpu_s") / spm.back());
      std::printf("round %llu: default %.0f tokens/cpu-s (x %.3f, frame hit rate %.2f), global shuffle %.0f (%.3f, hit rate %.2f)\n",
                  static_cast<unsigned long long>(r + 1), warm.back().at("tokens") / warm.back().at("cpu_s"), x.back(),
                  warm.back().at("frame_hit_rate"), global.back().at("tokens") / global.back().at("cpu_s"), xg.back(),
                  global.back().at("frame_hit_rate"));
    }
    // Informative: the tokenizer.json (byte-level BPE) encoder on the same text.
    const double hf = a.hf_tokenizer.empty() ? 0.0 : encode_tokens_per_cpu_s("tokenizer.json encode (" + a.hf_tokenizer + ")", a.hf_tokenizer, texts, a.threads);
    const uint64_t bound = a.bound_mib << 20;
    auto show = [](const char* what, const std::map<std::string, double>& m) {
      std::printf("%s: open %.3f s, first batch %.3f s; peak RSS %.1f MiB above %.1f MiB before open; %.0f tokens in %.2f CPU-s "
                  "(%.2f s wall): %.0f tokens/cpu-s; zstd frame cache hit rate %.2f; shuffle_block %.0f, shuffle_span %.0f\n",
                  what, m.at("open_s"), m.at("startup_s"), (m.at("rss_peak") - m.at("rss_base")) / 1048576.0, m.at("rss_base") / 1048576.0,
                  m.at("tokens"), m.at("cpu_s"), m.at("wall_s"), m.at("tokens") / m.at("cpu_s"), m.at("frame_hit_rate"), m.at("block"), m.at("span"));
    };
    show("cold start (default shuffle)", cold);
    show("warm start, last round (default shuffle)", warm.back());
    show("warm start, last round (global shuffle)", global.back());
    double peak = cold.at("rss_peak") - cold.at("rss_base");
    std::vector<double> startup;
    for (size_t r = 0; r < warm.size(); ++r) {
      peak = std::max({peak, warm[r].at("rss_peak") - warm[r].at("rss_base"), global[r].at("rss_peak") - global[r].at("rss_base")});
      startup.push_back(warm[r].at("startup_s"));
      if ((warm[r].at("block") > 0 && warm[r].at("frame_hit_rate") <= global[r].at("frame_hit_rate")) ||
          (a.shuffle_block < 0 && warm[r].at("block") == 0)) {
        std::fprintf(stderr, "bench_jsonl: the default shuffle (shuffle_block %.0f) has a frame cache hit rate %.3f, not above "
                     "the global one's %.3f (the default must choose a local shuffle for these .jsonl.zst shards)\n",
                     warm[r].at("block"), warm[r].at("frame_hit_rate"), global[r].at("frame_hit_rate"));
        return 1;
      }
    }
    std::printf("memory bound %llu MiB per process (zstd_cache_bytes %llu MiB); corpus %llu MiB of JSONL = %.1fx the bound\n",
                static_cast<unsigned long long>(a.bound_mib), static_cast<unsigned long long>(a.budget_mib),
                static_cast<unsigned long long>(a.mib), static_cast<double>(a.mib) / a.bound_mib);
    std::printf("baseline %.0f-%.0f tokens/cpu-s over %zu rounds; x median %.3f (%.3f-%.3f), global shuffle %.3f (%.3f-%.3f)\n",
                *std::min_element(spm.begin(), spm.end()), *std::max_element(spm.begin(), spm.end()), spm.size(), median(x),
                *std::min_element(x.begin(), x.end()), *std::max_element(x.begin(), x.end()), median(xg),
                *std::min_element(xg.begin(), xg.end()), *std::max_element(xg.begin(), xg.end()));
    std::printf("RESULT jsonl_vs_spm_encode=%.3f jsonl_peak_rss_vs_bound=%.3f startup_1000_shards_s=%.3f cold_startup_s=%.3f "
                "jsonl_vs_spm_encode_global=%.3f rounds=%zu shards=%llu corpus_mib=%llu peak_rss_mib=%.1f hf_tokens_per_cpu_s=%.0f\n",
                median(x), peak / bound, median(startup), cold.at("startup_s"), median(xg), x.size(),
                static_cast<unsigned long long>(a.shards), static_cast<unsigned long long>(a.mib), peak / 1048576.0, hf);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_jsonl: %s\n", e.what());
    return 1;
  }
  return 0;
}
