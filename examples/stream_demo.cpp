// stream_demo: streams the embedded corpus (Austen, JSONL tokenized with SentencePiece) through
// GroupMatesLoader in plain mode and prints throughput, what was skipped, and a sample.
//
//   stream_demo --corpus data/corpus [--seq-len 256] [--batch 16] [--threads 2] [--epochs 3]
#include <groupmates/error.h>
#include <groupmates/tokenizer.h>
#include <groupmates/loader.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>



int main(int argc, char** argv) {
  std::string corpus = "data/corpus";
  uint32_t seq_len = 256, batch = 16, threads = 2, epochs = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "stream_demo: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--corpus") corpus = value();
    else if (a == "--seq-len") seq_len = std::stoul(value());
    else if (a == "--batch") batch = std::stoul(value());
    else if (a == "--threads") threads = std::stoul(value());
    else if (a == "--epochs") epochs = std::stoul(value());
    else {
      std::fprintf(stderr, "usage: stream_demo [--corpus DIR] [--seq-len T] [--batch B] [--threads N] [--epochs E]\n");
      return 2;
    }
  }
  try {
    groupmates::LoaderConfig config;
    groupmates::SourceConfig austen;
    austen.name = "austen";
    austen.format = groupmates::SourceFormat::kJsonl;
    austen.paths = {corpus + "/austen.jsonl"};
    austen.tokenizer_model = corpus + "/austen.model";
    config.sources = {austen};
    config.sequence_length = seq_len;
    config.batch_size = batch;
    config.num_threads = threads;
    config.epochs = epochs;
    auto tokenizer = groupmates::Tokenizer::load(austen.tokenizer_model);
    config.eos_id = tokenizer->eos_id();
    config.vocab_size = tokenizer->vocab_size();

    const auto t0 = std::chrono::steady_clock::now();
    groupmates::GroupMatesLoader loader(config);
    uint64_t batches = 0, tokens = 0;
    torch::Tensor first;
    for (auto& b : loader) {
      if (!first.defined()) first = b.input_ids.clone();
      ++batches;
      tokens += b.input_ids.numel();
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("streamed %llu batches [%u, %u] = %llu tokens in %.3f s: %.2f M tokens/s (%u threads, %u epochs)\n",
                static_cast<unsigned long long>(batches), batch, seq_len, static_cast<unsigned long long>(tokens), secs,
                tokens / secs / 1e6, threads, epochs);
    std::printf("consumer waited %.3f s for data; buffers allocated: %llu\n", loader.stats().consumer_wait_seconds,
                static_cast<unsigned long long>(loader.stats().buffers_allocated));
    std::printf("skipped: %s\n", loader.skip_report().c_str());
    if (first.defined()) {
      std::vector<uint32_t> ids;
      auto row = first[0];
      for (int64_t i = 0; i < std::min<int64_t>(row.size(0), 80); ++i) ids.push_back(static_cast<uint32_t>(row[i].item<int64_t>()));
      std::printf("sample (first 80 tokens of the first sequence):\n  %s\n", tokenizer->decode(ids).c_str());
    }
    std::printf("state after the stream:\n%s", loader.state().serialize().c_str());
  } catch (const groupmates::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
