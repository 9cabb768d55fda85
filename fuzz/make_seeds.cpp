// make_seeds OUT_DIR [CORPUS_DIR]: writes a seed corpus per harness, OUT_DIR/<harness>/, from real
// small files of each format made by the library's own writers and readers (a Megatron index, flat
// token files, JSONL lines of the Austen corpus when given, their zstd compression, states saved by
// a StreamingLoader, base64 blobs). Nothing here is committed: the build writes it.
#include <sys/stat.h>
#include <zstd.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "groupmates/streaming_loader.h"
#include "online/blob_text.h"
#include "sources/line_index.h"
#include "sources/line_index_cache.h"

namespace {

std::string g_out;

void put(const std::string& harness, const std::string& name, const std::string& bytes) {
  ::mkdir((g_out + "/" + harness).c_str(), 0755);
  std::ofstream(g_out + "/" + harness + "/" + name, std::ios::binary) << bytes;
}

template <typename T>
std::string raw(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// MMIDIDX v1 of documents with these token counts (dtype code 8 = uint16, 4 = int32).
std::string megatron_idx(const std::vector<int32_t>& sizes, uint8_t code) {
  const int64_t width = code == 8 ? 2 : 4;
  std::vector<int64_t> pointers;
  int64_t p = 0;
  for (int32_t s : sizes) pointers.push_back(p), p += s * width;
  std::string idx("MMIDIDX\x00\x00", 9);
  const uint64_t version = 1, n = sizes.size(), ndocs = sizes.size() + 1;
  idx += raw(std::vector<uint64_t>{version});
  idx += static_cast<char>(code);
  idx += raw(std::vector<uint64_t>{n, ndocs});
  idx += raw(sizes) + raw(pointers);
  std::vector<int64_t> doc_idx;
  for (uint64_t i = 0; i <= n; ++i) doc_idx.push_back(static_cast<int64_t>(i));
  return idx + raw(doc_idx);
}

std::string zstd(const std::string& in, int frames) {
  std::string out;
  const size_t step = (in.size() + frames - 1) / frames;
  for (size_t at = 0; at < in.size(); at += step) {
    const size_t n = std::min(step, in.size() - at);
    std::string buf(ZSTD_compressBound(n), '\0');
    buf.resize(ZSTD_compress(buf.data(), buf.size(), in.data() + at, n, 3));
    out += buf;
  }
  return out;
}

std::vector<std::string> jsonl_files(const std::string& corpus) {
  std::vector<std::string> lines;
  std::ifstream in(corpus + "/austen.jsonl");
  std::string line;
  while (lines.size() < 400 && std::getline(in, line))
    if (line.size() < 1500) lines.push_back(line);
  if (lines.empty()) lines = {"{\"text\": \"It is a truth universally acknowledged.\"}", "{\"text\": \"\\u00e9t\\u00e9\"}"};
  lines.push_back("{\"content\": \"other field\", \"text\": 3}");
  lines.push_back("");
  lines.push_back("not json");
  std::vector<std::string> files;
  for (size_t f = 0; f < 6; ++f) {
    std::string file;
    for (size_t i = f; i < lines.size() && file.size() < 3000; i += 6 + f) file += lines[i] + (i % 5 == 0 ? "\r\n" : "\n");
    files.push_back(file);
  }
  return files;
}

std::string saved_state(const std::string& dir, uint64_t seed, int sources, int batches) {
  std::mt19937_64 rng(seed);
  groupmates::LoaderConfig cfg;
  for (int s = 0; s < sources; ++s) {
    std::vector<uint16_t> toks(64 * (3 + rng() % 5) + rng() % 64);
    for (auto& t : toks) t = static_cast<uint16_t>(rng() % 1000);
    const std::string path = dir + "/state_src" + std::to_string(s) + ".bin";
    std::ofstream(path, std::ios::binary) << raw(toks);
    groupmates::SourceConfig sc;
    sc.name = "src " + std::to_string(s);  // a space: escaped in the state
    sc.paths = {path};
    sc.weight = 1.0 + s;
    sc.on_exhausted = s == 0 ? groupmates::OnExhausted::kEnd : groupmates::OnExhausted::kRecycle;
    cfg.sources.push_back(sc);
  }
  cfg.sequence_length = 64;
  cfg.batch_size = 2;
  cfg.seed = seed;
  cfg.epochs = 2;
  groupmates::StreamingLoader loader(cfg);
  for (int b = 0; b < batches; ++b)
    if (!loader.next()) break;
  groupmates::LoaderState st = loader.state();
  st.extra["gm.blob"] = groupmates::blob_to_text(std::string("\x00\x01\xff binary", 10));
  return st.serialize();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: make_seeds OUT_DIR [CORPUS_DIR]\n");
    return 2;
  }
  g_out = argv[1];
  ::mkdir(g_out.c_str(), 0755);
  const std::string corpus = argc > 2 ? argv[2] : "";
  std::mt19937_64 rng(1);
  put("fuzz_megatron_idx", "one", megatron_idx({100}, 8));
  put("fuzz_megatron_idx", "five", megatron_idx({1, 0, 300, 7, 20}, 8));
  put("fuzz_megatron_idx", "int32", megatron_idx({10, 200, 3}, 4));
  put("fuzz_megatron_idx", "past_bin", megatron_idx({1000, 2000}, 8));
  for (int k = 0; k < 4; ++k) {
    std::string f;
    f += static_cast<char>(k & 1);
    f += static_cast<char>(k == 3 ? 0 : 8 << k);
    for (int i = 0; i < 100 + 37 * k; ++i) f += static_cast<char>(rng());
    put("fuzz_token_file", "flat" + std::to_string(k), f);
  }
  const auto files = jsonl_files(corpus);
  for (size_t f = 0; f < files.size(); ++f) {
    put("fuzz_jsonl", "austen" + std::to_string(f), std::string(1, static_cast<char>(f * 3 + 5)) + files[f]);
    put("fuzz_zstd", "austen" + std::to_string(f), zstd(files[f], 1 + static_cast<int>(f % 3)));
    // Cached line indexes of the same files, plain and zstd (their key is read back by the harness).
    ::mkdir((g_out + "/fuzz_line_index_cache").c_str(), 0755);
    const std::string zpath = g_out + "/.index_data.zst";
    std::ofstream(zpath, std::ios::binary) << zstd(files[f], 1 + static_cast<int>(f % 3));
    std::string problem;
    const auto plain = groupmates::index_plain_lines(files[f].data(), files[f].size());
    groupmates::save_line_index(g_out + "/fuzz_line_index_cache/plain" + std::to_string(f),
                                {files[f].size(), 7, 42, false}, plain, &problem);
    groupmates::save_line_index(g_out + "/fuzz_line_index_cache/zstd" + std::to_string(f), {1u << 20, 7, 42, true},
                                groupmates::index_zstd_lines(zpath, 1u << 30), &problem);
  }
  const std::string dir = g_out + "/.state_data";
  ::mkdir(dir.c_str(), 0755);
  put("fuzz_loader_state", "one_source", saved_state(dir, 1, 1, 2));
  put("fuzz_loader_state", "two_sources", saved_state(dir, 2, 2, 5));
  put("fuzz_loader_state", "ended", saved_state(dir, 3, 1, 1000));
  for (int k = 0; k < 4; ++k) {
    std::string b;
    for (int i = 0; i < 3 * k + k % 3; ++i) b += static_cast<char>(rng());
    put("fuzz_blob_text", "blob" + std::to_string(k), groupmates::blob_to_text(b));
  }
  std::printf("make_seeds: wrote seed corpora under %s\n", g_out.c_str());
  return 0;
}
