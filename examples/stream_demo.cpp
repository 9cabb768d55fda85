// stream_demo: streams the embedded corpus (Austen, JSONL tokenized with SentencePiece) through
// GroupMatesLoader in plain mode as training batches (inputs, next-token labels, position ids) and
// prints throughput, the masked targets, what was skipped, and a sample.
//
//   stream_demo --corpus data/corpus [--seq-len 256] [--batch 16] [--threads 2] [--epochs 3]
#include <groupmates/error.h>
#include <groupmates/tokenizer.h>
#include <groupmates/loader.h>
#include <groupmates/training_batch.h>

#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <vector>

#include "example_cli.h"
#include "util/stopwatch.h"

int main(int argc, char** argv) {
  std::string corpus = "data/corpus";
  uint32_t seq_len = 256, batch = 16, threads = 2, epochs = 3;
  CLI::App app("streams the Austen corpus through GroupMatesLoader (plain mode)", "stream_demo");
  app.add_option("--corpus", corpus, "holds austen.jsonl and austen.model")->capture_default_str();
  app.add_option("--seq-len", seq_len, "tokens per row (T)")->capture_default_str()->check(example_cli::kPositive);
  app.add_option("--batch", batch, "rows per batch (B)")->capture_default_str()->check(example_cli::kPositive);
  app.add_option("--threads", threads, "loader threads")->capture_default_str();
  app.add_option("--epochs", epochs, "passes over the corpus")->capture_default_str();
  example_cli::parse_or_exit(app, argc, argv);
  try {
    groupmates::LoaderConfig config;
    groupmates::SourceConfig austen;
    austen.name = "austen";
    austen.format = groupmates::SourceFormat::kJsonl;
    austen.paths = {corpus + "/austen.jsonl"};
    austen.tokenizer_model = corpus + "/austen.model";
    config.sources = {austen};
    config.sequence_length = seq_len;
    config.labels = true;  // rows of seq_len + 1 tokens: inputs and their next-token labels
    config.position_ids = true;
    config.batch_size = batch;
    config.num_threads = threads;
    config.epochs = epochs;
    auto tokenizer = groupmates::Tokenizer::load(austen.tokenizer_model);
    config.eos_id = tokenizer->eos_id();
    config.vocab_size = tokenizer->vocab_size();

    const groupmates::util::Stopwatch clock;
    groupmates::GroupMatesLoader loader(config);
    uint64_t batches = 0, tokens = 0, targets = 0, documents = 0;
    torch::Tensor first;
    for (auto& raw : loader) {
      const groupmates::TrainingBatch b = groupmates::training_batch(raw, config);
      if (!first.defined()) first = b.input_ids.clone();
      ++batches;
      tokens += b.input_ids.numel();
      targets += b.loss_mask.sum().item<int64_t>();
      documents += (b.position_ids == 0).sum().item<int64_t>();  // starts of documents (and of rows)
    }
    const double secs = clock.seconds();
    fmt::print("streamed {} batches [{}, {}] = {} tokens in {:.3f} s: {:.2f} M tokens/s ({} threads, {} epochs)\n",
               batches, batch, seq_len, tokens, secs, tokens / secs / 1e6, threads, epochs);
    fmt::print("{} next-token targets ({:.2f}% of the inputs masked), {} document starts (position 0)\n", targets,
               tokens ? 100.0 * (tokens - targets) / tokens : 0.0, documents);
    fmt::print("consumer waited {:.3f} s for data; buffers allocated: {}\n", loader.stats().consumer_wait_seconds,
               loader.stats().buffers_allocated);
    fmt::print("skipped: {}\n", loader.skip_report());
    if (first.defined()) {
      std::vector<uint32_t> ids;
      auto row = first[0];
      for (int64_t i = 0; i < std::min<int64_t>(row.size(0), 80); ++i) ids.push_back(static_cast<uint32_t>(row[i].item<int64_t>()));
      fmt::print("sample (first 80 tokens of the first sequence):\n  {}\n", tokenizer->decode(ids));
    }
    fmt::print("state after the stream:\n{}", loader.state().serialize());
  } catch (const groupmates::Error& e) {
    fmt::print(stderr, "{}\n", e.what());
    return 1;
  }
  return 0;
}
