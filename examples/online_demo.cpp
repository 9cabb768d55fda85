// online_demo: the main job. Trains a small GPT (groupmates::TinyGpt, LibTorch, CPU) on the embedded
// corpus (Austen, JSONL tokenized by the loader with SentencePiece) twice with the same seed and
// the same budget of trainer steps: once on GroupMatesLoader's random selection, once on
// Group-MATES selection, which probes the live model every few steps (ModuleProbeTarget around
// the TinyGpt + AdamW), refreshes its influence model from the probes and selects groups of the
// candidates it predicts lower the reference loss (held-out Emma) most. Prints the reference
// loss as it goes and a table at the end.
//
//   online_demo --corpus data/corpus [--steps 600] [--batch 8] [--seq-len 128] [--eval-every 50] [--seed 0]
//
// The training loop is the few lines a trainer adds (see run()):
//   GroupMatesLoader loader(config, selection, probes);
//   for (int64_t step = 0; step < steps; ++step) {
//     auto batch = loader.next();
//     target->train_step(batch->input_ids);      // AdamW step, gradient norm clipped at 1
//     loader.on_step(step, &target);            // snapshots the live model when a probe is due
//   }
#include <groupmates/error.h>
#include <groupmates/loader.h>
#include <groupmates/probe.h>
#include <groupmates/selection_config.h>
#include <groupmates/tiny_gpt.h>

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <unistd.h>
#include <vector>

#include "tokenizer.h"
#include "tiny_gpt_training.h"

namespace {

using tiny_gpt_training::batches_of;
using tiny_gpt_training::mean_loss;
using tiny_gpt_training::reference_rows;

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Settings {
  std::string corpus = "data/corpus";
  int64_t steps = 600;
  uint32_t batch = 8;
  uint32_t seq_len = 128;
  int64_t eval_every = 50;
  int64_t eval_rows = 96;
  int64_t probe_ref_rows = 16;
  int64_t d_model = 128;
  int64_t layers = 2;
  int64_t heads = 4;
  double lr = 1e-3;
  uint64_t seed = 0;
};

/// One-line progress bar, redrawn in place with \r.
void draw_bar(const char* name, int64_t step, int64_t steps, double ref, double seconds, const std::string& extra) {
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(kWidth * step / std::max<int64_t>(steps, 1));
  std::string bar(filled, '#');
  bar.resize(kWidth, '.');
  std::fprintf(stderr, "\r  %-12s [%s] %4lld/%lld steps  ref loss %.4f  %5.1f s%s\033[K", name, bar.c_str(),
               static_cast<long long>(step), static_cast<long long>(steps), ref, seconds, extra.c_str());
  std::fflush(stderr);
}

struct RunResult {
  std::string name;
  double tokens = 0;
  double ref_first = 0, ref_final = 0;
  std::vector<double> curve;  // reference loss at step 0, eval_every, ...
  double seconds = 0, wait_seconds = 0, on_step_seconds = 0;
  groupmates::SelectionStats stats;
};

struct Data {
  groupmates::LoaderConfig config;
  std::vector<torch::Tensor> probe_batches, eval_batches;
  int64_t vocab = 0;
};

RunResult run(const char* name, groupmates::SelectionMode mode, bool probing, const Settings& s, const Data& data) {
  RunResult r;
  r.name = name;
  const groupmates::TinyGptConfig mc =
      tiny_gpt_training::tiny_gpt_config(data.vocab, s.seq_len, s.d_model, s.layers, s.heads, s.seed);
  auto model = std::make_shared<groupmates::TinyGpt>(mc);
  // The live model + optimiser as a probe target: used for the real steps AND snapshotted by probes,
  // so probes step with exactly the trainer's optimiser, learning rate and clipping.
  const auto target = tiny_gpt_training::tiny_gpt_target(mc, model, s.lr, 0.1, data.probe_batches);

  groupmates::SelectionConfig selection;  // library defaults
  selection.mode = mode;
  selection.seed = s.seed;
  groupmates::ProbeConfig probes;  // library defaults
  groupmates::LoaderConfig config = data.config;
  config.seed = s.seed;

  const auto t0 = Clock::now();
  groupmates::GroupMatesLoader loader(config, selection, probes);
  double ref = mean_loss(*model, data.eval_batches);
  r.ref_first = ref;
  r.curve.push_back(ref);
  std::fprintf(stderr, "  %-12s step %4d  reference loss %.4f\n", name, 0, ref);
  auto extra = [&]() -> std::string {
    if (!probing) return "";
    const auto st = loader.selection_stats();
    char buf[96];
    std::snprintf(buf, sizeof buf, "  probes %lld  model v%llu", static_cast<long long>(st.probes.probes_completed),
                  static_cast<unsigned long long>(st.model_version));
    return buf;
  };
  draw_bar(name, 0, s.steps, ref, 0, extra());
  for (int64_t step = 0; step < s.steps; ++step) {
    auto t = Clock::now();
    auto batch = loader.next();
    r.wait_seconds += since(t);
    if (!batch) throw groupmates::Error(groupmates::ErrorCode::kInternal, "online_demo", "the endless stream ended");
    target->train_step(batch->input_ids);
    r.tokens += static_cast<double>(batch->input_ids.numel());
    t = Clock::now();
    loader.on_step(step, probing ? target.get() : nullptr);
    r.on_step_seconds += since(t);
    const bool eval = (step + 1) % s.eval_every == 0 || step + 1 == s.steps;
    if (eval) {
      ref = mean_loss(*model, data.eval_batches);
      r.curve.push_back(ref);
      std::fprintf(stderr, "\r  %-12s step %4lld  reference loss %.4f  (%.1f s)\033[K\n", name,
                   static_cast<long long>(step + 1), ref, since(t0));
    }
    if (eval || step % 5 == 4) draw_bar(name, step + 1, s.steps, ref, since(t0), extra());
  }
  r.seconds = since(t0);
  r.ref_final = ref;
  r.stats = loader.selection_stats();
  std::fprintf(stderr, "\n");
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "online_demo: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--corpus") s.corpus = value();
    else if (a == "--steps") s.steps = std::stoll(value());
    else if (a == "--batch") s.batch = std::stoul(value());
    else if (a == "--seq-len") s.seq_len = std::stoul(value());
    else if (a == "--eval-every") s.eval_every = std::stoll(value());
    else if (a == "--seed") s.seed = std::stoull(value());
    else if (a == "--d-model") s.d_model = std::stoll(value());
    else if (a == "--layers") s.layers = std::stoll(value());
    else {
      std::fprintf(stderr,
                   "usage: online_demo [--corpus DIR] [--steps N] [--batch B] [--seq-len T] [--eval-every N] [--seed S]\n"
                   "                   [--d-model D] [--layers L]\n");
      return 2;
    }
  }
  if (s.steps < 1 || s.eval_every < 1 || s.batch < 1 || s.seq_len < 2) {
    std::fprintf(stderr, "online_demo: sizes must be positive\n");
    return 2;
  }
  try {
    const auto t_all = Clock::now();
    Data data;
    groupmates::SourceConfig austen;
    austen.name = "austen";
    austen.format = groupmates::SourceFormat::kJsonl;
    austen.paths = {s.corpus + "/austen.jsonl"};
    austen.tokenizer_model = s.corpus + "/austen.model";
    auto tokenizer = groupmates::Tokenizer::load(austen.tokenizer_model);
    data.vocab = tokenizer->vocab_size();
    data.config.sources = {austen};
    data.config.sequence_length = s.seq_len;
    data.config.batch_size = s.batch;
    data.config.epochs = 0;  // endless: the budget is trainer steps
    data.config.eos_id = tokenizer->eos_id();
    data.config.vocab_size = tokenizer->vocab_size();

    // The held-out reference set (Emma), tokenized once: two disjoint, evenly spaced subsets of rows,
    // one for the probes (what selection optimises), one for the reference loss printed here.
    const auto rows = reference_rows(s.corpus + "/austen_heldout.jsonl", *tokenizer, s.seq_len);
    const int64_t n = static_cast<int64_t>(rows.size());
    if (n <= s.probe_ref_rows) throw groupmates::Error(groupmates::ErrorCode::kInvalidConfig, "online_demo", "reference set too small");
    const auto split = tiny_gpt_training::split_reference(n, s.probe_ref_rows, s.eval_rows);
    const std::vector<size_t>& probe_idx = split.probe;
    const std::vector<size_t>& eval_idx = split.eval;
    data.probe_batches = batches_of(rows, probe_idx, 16);
    data.eval_batches = batches_of(rows, eval_idx, 32);

    const groupmates::SelectionConfig sd;
    const groupmates::ProbeConfig pd;
    std::printf("online_demo: TinyGpt d_model %lld x %lld layers, vocab %lld (austen.model), T %u, B %u, %lld trainer steps "
                "(%lld tokens) per run, AdamW lr %g, seed %llu, torch threads %d\n",
                static_cast<long long>(s.d_model), static_cast<long long>(s.layers), static_cast<long long>(data.vocab),
                s.seq_len, s.batch, static_cast<long long>(s.steps),
                static_cast<long long>(s.steps * s.batch * s.seq_len), s.lr, static_cast<unsigned long long>(s.seed),
                torch::get_num_threads());
    std::printf("  reference: %s/austen_heldout.jsonl, %lld rows of %u tokens: %zu for probes, %zu for the reported loss\n",
                s.corpus.c_str(), static_cast<long long>(n), s.seq_len, probe_idx.size(), eval_idx.size());
    std::printf("  selection (library defaults): window %u, ratio %.2f, %u clusters; probes every %u steps, "
                "rollouts of %u steps, %u random + %u neighbour + %u bootstrap pairs, lr scale %.2f\n",
                sd.window_size, sd.ratio, sd.clusters, pd.interval_steps, pd.rollout_length, pd.random_rollouts,
                pd.neighbour_rollouts, pd.bootstrap_pairs, pd.lr_scale);
    std::fflush(stdout);

    std::vector<RunResult> results;
    results.push_back(run("random", groupmates::SelectionMode::kRandom, false, s, data));
    results.push_back(run("Group-MATES", groupmates::SelectionMode::kGroup, true, s, data));

    const auto& rnd = results[0];
    const auto& grp = results[1];
    std::printf("\nreference loss every %lld steps (held-out Emma):\n  %-8s", static_cast<long long>(s.eval_every), "step");
    for (size_t i = 0; i < rnd.curve.size(); ++i)
      std::printf(" %7lld", static_cast<long long>(std::min<int64_t>(static_cast<int64_t>(i) * s.eval_every, s.steps)));
    for (const auto& r : results) {
      std::printf("\n  %-8s", r.name == "random" ? "random" : "GroupMATES");
      for (double v : r.curve) std::printf(" %7.4f", v);
    }
    std::printf("\n\n");
    std::printf("| %-28s | %12s | %12s |\n", "", "random", "Group-MATES");
    std::printf("|%s|%s|%s|\n", std::string(30, '-').c_str(), std::string(14, '-').c_str(), std::string(14, '-').c_str());
    std::printf("| %-28s | %12.0f | %12.0f |\n", "tokens seen", rnd.tokens, grp.tokens);
    std::printf("| %-28s | %12.4f | %12.4f |\n", "reference loss (start)", rnd.ref_first, grp.ref_first);
    std::printf("| %-28s | %12.4f | %12.4f |\n", "reference loss (end)", rnd.ref_final, grp.ref_final);
    std::printf("| %-28s | %12.1f | %12.1f |\n", "wall clock (s)", rnd.seconds, grp.seconds);
    std::printf("| %-28s | %11.2f%% | %11.2f%% |\n", "trainer waited on loader", 100 * rnd.wait_seconds / rnd.seconds,
                100 * grp.wait_seconds / grp.seconds);
    std::printf("| %-28s | %11.2f%% | %11.2f%% |\n", "probes (probe thread)", 100 * rnd.stats.probes.probe_share,
                100 * grp.stats.probes.probe_share);
    std::printf("| %-28s | %11.2f%% | %11.2f%% |\n", "probe snapshots (trainer)", 100 * rnd.stats.probes.snapshot_share,
                100 * grp.stats.probes.snapshot_share);
    const auto& p = grp.stats.probes;
    std::printf("\nGroup-MATES: %lld probes completed (%lld skipped while one ran, %lld failed), %lld rollouts kept, "
                "%lld discarded (NaN/inf), %.2f s per rollout; %llu model refreshes (%.1f s training), model v%llu; "
                "%llu of %llu windows in warm-up; held-out Spearman of the last refresh %.3f\n",
                static_cast<long long>(p.probes_completed), static_cast<long long>(p.probes_skipped_busy),
                static_cast<long long>(p.probes_failed), static_cast<long long>(p.rollouts_kept),
                static_cast<long long>(p.rollouts_discarded), p.seconds_per_rollout,
                static_cast<unsigned long long>(grp.stats.refreshes), grp.stats.refresh_seconds,
                static_cast<unsigned long long>(grp.stats.model_version),
                static_cast<unsigned long long>(grp.stats.warmup_windows), static_cast<unsigned long long>(grp.stats.windows),
                grp.stats.last_heldout_spearman);
    std::printf("reference loss: Group-MATES %.4f vs random %.4f (%+.4f) after the same %lld tokens; total %.1f s\n",
                grp.ref_final, rnd.ref_final, grp.ref_final - rnd.ref_final, static_cast<long long>(rnd.tokens),
                since(t_all));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nonline_demo: %s\n", e.what());
    return 1;
  }
  return 0;
}
