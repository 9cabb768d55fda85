// Shared by examples/online_demo.cpp and bench/bench_efficiency.cpp: the training settings and
// their flags, the held-out reference set (JSONL -> token rows -> disjoint probe / evaluation
// subsets), the TinyGpt + AdamW probe target used for the real training steps, and the reference loss.
#pragma once

#include <groupmates/config.h>
#include <groupmates/error.h>
#include <groupmates/tokenizer.h>
#include <groupmates/module_probe_target.h>
#include "tiny_gpt/tiny_gpt.h"

#include <simdjson.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "example_cli.h"



namespace tiny_gpt_training {

/// One training run's settings (the defaults of both programs but eval_every, which each sets).
struct TrainingSettings {
  int64_t steps = 600;
  uint32_t batch = 8;
  uint32_t seq_len = 128;
  int64_t eval_every = 40;
  int64_t eval_rows = 128;
  int64_t probe_ref_rows = 16;
  int64_t d_model = 128;
  int64_t layers = 2;
  int64_t heads = 4;
  double lr = 1e-3;
  double weight_decay = 0.1;
  uint64_t seed = 0;
};

/// The flags both programs take: --steps --batch --seq-len --eval-every --seed --d-model --layers
/// (sizes checked positive, --seq-len >= 2).
inline void add_training_options(CLI::App& app, TrainingSettings& s) {
  app.add_option("--steps", s.steps, "trainer steps per run (the budget)")->capture_default_str()->check(example_cli::kPositive);
  app.add_option("--batch", s.batch, "rows per batch (B)")->capture_default_str()->check(example_cli::kPositive);
  app.add_option("--seq-len", s.seq_len, "tokens per row (T)")->capture_default_str()->check(CLI::Range(2u, 1u << 30));
  app.add_option("--eval-every", s.eval_every, "steps between evaluations")->capture_default_str()->check(example_cli::kPositive);
  app.add_option("--seed", s.seed, "model, loader and selection seed")->capture_default_str();
  app.add_option("--d-model", s.d_model, "TinyGpt width")->capture_default_str()->check(example_cli::kPositive);
  app.add_option("--layers", s.layers, "TinyGpt layers")->capture_default_str()->check(example_cli::kPositive);
}

/// The "text" of every non-blank line of a JSONL file, tokenized, eos after each document,
/// concatenated and cut into rows of `t` tokens (the tail shorter than t is dropped).
inline std::vector<std::vector<int64_t>> reference_rows(const std::string& path, const groupmates::Tokenizer& tok,
                                                        uint32_t t) {
  std::ifstream in(path);
  if (!in) throw groupmates::Error(groupmates::ErrorCode::kIo, path, "cannot open the reference set");
  simdjson::dom::parser parser;
  std::vector<uint32_t> ids;
  std::string line;
  uint64_t lineno = 0;
  const int32_t eos = tok.eos_id();
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    simdjson::dom::element doc;
    std::string_view text;
    if (parser.parse(line).get(doc) || doc["text"].get_string().get(text))
      throw groupmates::Error(groupmates::ErrorCode::kCorruptData, path + ":line " + std::to_string(lineno),
                              "not a JSON object with a string field \"text\"");
    tok.encode(text, ids);
    if (eos >= 0) ids.push_back(static_cast<uint32_t>(eos));
  }
  std::vector<std::vector<int64_t>> rows;
  for (size_t i = 0; i + t <= ids.size(); i += t) rows.emplace_back(ids.begin() + i, ids.begin() + i + t);
  return rows;
}

/// Rows `which` stacked into tensors of at most `per_batch` rows.
inline std::vector<torch::Tensor> batches_of(const std::vector<std::vector<int64_t>>& rows,
                                             const std::vector<size_t>& which, size_t per_batch) {
  std::vector<torch::Tensor> out;
  for (size_t i = 0; i < which.size(); i += per_batch) {
    const size_t n = std::min(per_batch, which.size() - i);
    const int64_t t = static_cast<int64_t>(rows[which[i]].size());
    auto b = torch::empty({static_cast<int64_t>(n), t}, torch::kInt64);
    for (size_t r = 0; r < n; ++r) std::copy(rows[which[i + r]].begin(), rows[which[i + r]].end(), b[r].data_ptr<int64_t>());
    out.push_back(b);
  }
  return out;
}

/// Indices of `n` reference rows split into two disjoint, evenly spaced subsets: `probe_rows` rows
/// for the probes (what selection optimises) and up to `eval_rows` of the others for evaluation.
/// The caller checks n > probe_rows.
struct ReferenceSplit {
  std::vector<size_t> probe, eval;
};
inline ReferenceSplit split_reference(int64_t n, int64_t probe_rows, int64_t eval_rows) {
  ReferenceSplit split;
  std::vector<size_t> rest;
  std::vector<bool> is_probe(n, false);
  for (int64_t i = 0; i < probe_rows; ++i) is_probe[static_cast<size_t>(i * n / probe_rows)] = true;
  for (int64_t i = 0; i < n; ++i) (is_probe[i] ? split.probe : rest).push_back(static_cast<size_t>(i));
  const int64_t e = std::min<int64_t>(eval_rows, static_cast<int64_t>(rest.size()));
  for (int64_t i = 0; i < e; ++i) split.eval.push_back(rest[static_cast<size_t>(i * static_cast<int64_t>(rest.size()) / e)]);
  return split;
}

/// The reference set of `path` as rows of `t` tokens, split as split_reference() does and batched
/// (probe rows 16, evaluation rows 32 to a batch). Throws Error(kInvalidConfig) if it holds no more
/// than `probe_rows` rows.
struct ReferenceSet {
  int64_t rows = 0;  ///< rows of t tokens in the file
  ReferenceSplit split;
  std::vector<torch::Tensor> probe_batches, eval_batches;
};
inline ReferenceSet load_reference(const std::string& path, const groupmates::Tokenizer& tok, uint32_t t,
                                   int64_t probe_rows, int64_t eval_rows) {
  const auto rows = reference_rows(path, tok, t);
  ReferenceSet ref;
  ref.rows = static_cast<int64_t>(rows.size());
  if (ref.rows <= probe_rows)
    throw groupmates::Error(groupmates::ErrorCode::kInvalidConfig, path,
                            "reference set too small: " + std::to_string(ref.rows) + " rows of " + std::to_string(t) +
                                " tokens");
  ref.split = split_reference(ref.rows, probe_rows, eval_rows);
  ref.probe_batches = batches_of(rows, ref.split.probe, 16);
  ref.eval_batches = batches_of(rows, ref.split.eval, 32);
  return ref;
}

/// Mean per-row loss of the model over `batches`, without gradients, in eval mode (the
/// training/eval mode is restored afterwards).
inline double mean_loss(groupmates::TinyGpt& model, const std::vector<torch::Tensor>& batches) {
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  double sum = 0;
  int64_t rows = 0;
  for (const auto& b : batches) {
    sum += model.loss(b).item<double>() * b.size(0);
    rows += b.size(0);
  }
  model.train(was_training);
  return sum / static_cast<double>(rows);
}

/// The live TinyGpt `model` (built from `mc`) with a fresh AdamW (lr, betas 0.9/0.95, weight_decay)
/// as a probe target: used for the real steps AND snapshotted by probes, so probes step with
/// exactly the trainer's optimiser, learning rate and clipping.
inline std::unique_ptr<groupmates::ModuleProbeTarget> tiny_gpt_target(
    const groupmates::TinyGptConfig& mc, const std::shared_ptr<groupmates::TinyGpt>& model, double lr,
    double weight_decay, std::vector<torch::Tensor> probe_batches, const groupmates::ModuleProbeTargetConfig& tc = {}) {
  auto make_optimizer = [lr, weight_decay](torch::nn::Module& m) -> std::shared_ptr<torch::optim::Optimizer> {
    return std::make_shared<torch::optim::AdamW>(
        m.parameters(), torch::optim::AdamWOptions(lr).betas({0.9, 0.95}).weight_decay(weight_decay));
  };
  auto optimizer = make_optimizer(*model);
  return std::make_unique<groupmates::ModuleProbeTarget>(
      model, optimizer,
      [mc]() -> groupmates::ModuleProbeTarget::ModulePtr { return std::make_shared<groupmates::TinyGpt>(mc); },
      make_optimizer, groupmates::tiny_gpt_loss, std::move(probe_batches), tc);
}

// The benchmarks' candidate pool: one endless JSONL source read with the pool's tokenizer, bad
// records skipped (and counted), seeded shuffle; rows of seq_len tokens, batches of `batch`.
inline groupmates::LoaderConfig pool_loader_config(const std::string& pool_path, const std::string& tokenizer_path,
                                                   const groupmates::Tokenizer& tok, uint32_t seq_len,
                                                   uint32_t batch, uint64_t seed, uint32_t threads) {
  groupmates::LoaderConfig config;
  groupmates::SourceConfig pool;
  pool.name = "pool";
  pool.format = groupmates::SourceFormat::kJsonl;
  pool.paths = {pool_path};
  pool.tokenizer_model = tokenizer_path;
  config.sources = {pool};
  config.sequence_length = seq_len;
  config.batch_size = batch;
  config.seed = seed;
  config.epochs = 0;
  config.eos_id = tok.eos_id();
  config.vocab_size = tok.vocab_size();
  config.bad_input = groupmates::BadInputPolicy::kSkip;
  config.num_threads = threads;
  return config;
}

}  // namespace tiny_gpt_training
