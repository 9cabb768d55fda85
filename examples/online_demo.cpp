// online_demo: the main job (`make demo`). Trains the same small GPT (groupmates::TinyGpt, LibTorch,
// CPU) twice with the same seed and the same budget of trainer steps on a small pool of MIXED
// usefulness (data/pool-demo, built by `scripts/prepare-pool.sh --variant demo`: Austen novels
// in-domain, Linux kernel docs, Python code, spam, Debian changelogs, near-duplicate families), whose
// target is held-out Jane Austen (Emma chapters 1-21, never in the pool):
//   * random:      GroupMatesLoader's random selection (half of each window, seeded);
//   * Group-MATES: the library's DEFAULT selection and probe settings (default refresh mode, default
//                  probe budget), the probes' reference rows passed with loader.set_reference().
// It prints the held-out reference loss as it goes (evaluation time is left out of every wall clock
// figure) and ends with a table: final loss, what each run trained on, the tokens, compute (FLOPs,
// selection included) and wall clock to reach random's final loss, where the trainer waited on the
// loader, the probe work its own thread did (probe slices), and the probes' share of compute against the
// budget. The last line is
//   RESULT demo_wall_ratio_vs_random=<w> demo_trainer_wait_share=<f> demo_probe_share=<p> demo_trainer_probe_slice_share=<x>
//
//   online_demo --data data/pool-demo [--steps 600] [--batch 8] [--seq-len 128] [--eval-every 30]
//               [--seed 0] [--d-model 128] [--layers 2]
//
// The training loop is the few lines a trainer adds (see run()):
//   GroupMatesLoader loader(config, selection, probes);
//   loader.set_reference(probe_rows);                // the text selection should help
//   for (int64_t step = 0; step < steps; ++step) {
//     auto batch = loader.next();
//     target->train_step(batch->input_ids);         // AdamW step, gradient norm clipped at 1
//     loader.on_step(step, target.get());           // snapshots the live model when a probe is due; runs a
//                                                    // slice of the probe in flight (a few one-row steps)
//   }
#include <groupmates/error.h>
#include <groupmates/tokenizer.h>
#include <groupmates/loader.h>
#include <groupmates/module_probe_target.h>
#include <groupmates/selection_config.h>
#include "tiny_gpt/tiny_gpt.h"

#include <fmt/format.h>
#include <simdjson.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "example_cli.h"
#include "tiny_gpt_training.h"
#include "util/stopwatch.h"


namespace {

using groupmates::util::Stopwatch;
using tiny_gpt_training::mean_loss;

struct Settings : tiny_gpt_training::TrainingSettings {
  Settings() { eval_every = 30; }
  std::string data = "data/pool-demo";
};

constexpr int kSmooth = 3;  // curves are smoothed alike: the mean of the last 3 evaluations

/// One evaluation: trainer steps, tokens trained on, reference loss, wall seconds of the run so far
/// without the evaluations (and with them: a probe thread, if one is configured, keeps working while the
/// trainer evaluates), FLOPs so far (training + selection overhead).
struct Point {
  int64_t step;
  double tokens, loss, seconds, flops, seconds_with_evals;
};

struct RunResult {
  std::string name;
  std::vector<Point> curve;
  double seconds = 0;                  // wall clock of the run, evaluations excluded
  double eval_seconds = 0;             // the evaluations' own time (left out of every wall clock figure)
  double next_seconds = 0, on_step_seconds = 0;  // the trainer's time inside the loader's calls
  double train_flops = 0;              // 3 F x tokens trained on
  std::map<std::string, double> rows_by_kind;
  groupmates::SelectionStats stats;
};

struct Data {
  groupmates::LoaderConfig config;
  std::vector<torch::Tensor> probe_batches, eval_batches;
  torch::Tensor probe_rows;            // the same rows as probe_batches, [R, T]: set_reference()
  std::vector<std::string> kinds;      // the pool's ground truth per document (line), for the report only
  int64_t vocab = 0;
};

/// One-line progress bar, redrawn in place with \r.
void draw_bar(const std::string& name, int64_t step, int64_t steps, double ref, double seconds, const std::string& extra) {
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(kWidth * step / std::max<int64_t>(steps, 1));
  std::string bar(filled, '#');
  bar.resize(kWidth, '.');
  fmt::print(stderr, "\r  {:<12} [{}] {:4}/{} steps  ref loss {:.4f}  {:5.1f} s{}\033[K", name, bar, step, steps, ref,
             seconds, extra);
  std::fflush(stderr);
}

RunResult run(const std::string& name, groupmates::SelectionMode mode, const Settings& s, const Data& data) {
  const bool probing = mode != groupmates::SelectionMode::kRandom;
  RunResult r;
  r.name = name;
  const groupmates::TinyGptConfig mc =
      groupmates::tiny_gpt_config(data.vocab, s.seq_len, s.d_model, s.layers, s.heads, s.seed);
  auto model = std::make_shared<groupmates::TinyGpt>(mc);
  // The live model + optimiser as a probe target: used for the real steps AND snapshotted by probes,
  // so probes step with exactly the trainer's optimiser, learning rate and clipping.
  const auto target = tiny_gpt_training::tiny_gpt_target(mc, model, s.lr, s.weight_decay, data.probe_batches);
  const double flops_per_token = target->forward_flops_per_token();

  groupmates::SelectionConfig selection;  // library defaults
  selection.mode = mode;
  selection.seed = s.seed;
  groupmates::ProbeConfig probes;  // library defaults (probe budget, interval, rollouts)

  double eval_seconds = 0, ref = 0;
  const Stopwatch run_clock;
  groupmates::GroupMatesLoader loader(data.config, selection, probes);
  if (probing) loader.set_reference(data.probe_rows);
  auto evaluate = [&](int64_t step) {
    const Stopwatch eval_clock;
    const double seconds_with_evals = run_clock.seconds();
    const double tokens = static_cast<double>(step) * s.batch * s.seq_len;
    const double flops = 3.0 * flops_per_token * tokens + loader.selection_stats().cost.overhead_flops();
    ref = mean_loss(*model, data.eval_batches);
    r.curve.push_back({step, tokens, ref, seconds_with_evals - eval_seconds, flops, seconds_with_evals});
    eval_seconds += eval_clock.seconds();
  };
  auto extra = [&]() -> std::string {
    if (!probing) return "";
    const auto st = loader.selection_stats();
    return fmt::format("  probes {}  model v{}", st.probes.probes_completed, st.model_version);
  };

  evaluate(0);
  fmt::print(stderr, "  {:<12} step {:4}  reference loss {:.4f}\n", name, 0, ref);
  for (int64_t step = 0; step < s.steps; ++step) {
    Stopwatch clock;
    auto batch = loader.next();
    r.next_seconds += clock.seconds();
    if (!batch) throw groupmates::Error(groupmates::ErrorCode::kInternal, "online_demo", "the endless stream ended");
    target->train_step(batch->input_ids);
    clock.restart();
    loader.on_step(step, probing ? target.get() : nullptr);
    r.on_step_seconds += clock.seconds();

    for (const auto& id : batch->ids)  // the report only: what the run trained on, by ground-truth kind
      r.rows_by_kind[id.document < data.kinds.size() ? data.kinds[id.document] : "?"] += 1;
    const bool eval = (step + 1) % s.eval_every == 0 || step + 1 == s.steps;
    if (eval) {
      evaluate(step + 1);
      fmt::print(stderr, "\r  {:<12} step {:4}  reference loss {:.4f}  ({:.1f} s)\033[K\n", name,
                   static_cast<long long>(step + 1), ref, r.curve.back().seconds);
    }
    if (eval || step % 5 == 4) draw_bar(name, step + 1, s.steps, ref, run_clock.seconds() - eval_seconds, extra());
  }
  r.seconds = run_clock.seconds() - eval_seconds;
  r.eval_seconds = eval_seconds;
  fmt::print(stderr, "\n");
  // Outside the clock: wait for a probe still in flight (state() waits for it and its refresh), so
  // that its FLOPs are counted too.
  if (probing) (void)loader.state();
  r.stats = loader.selection_stats();
  r.train_flops = 3.0 * flops_per_token * r.curve.back().tokens;
  return r;
}

// ---- Figures (as bench/bench_efficiency.py: every curve smoothed alike) ----

std::vector<Point> smoothed(const std::vector<Point>& curve) {
  std::vector<Point> out;
  for (size_t i = 0; i < curve.size(); ++i) {
    const size_t first = i + 1 >= kSmooth ? i + 1 - kSmooth : 0;
    double sum = 0;
    for (size_t j = first; j <= i; ++j) sum += curve[j].loss;
    out.push_back(curve[i]);
    out.back().loss = sum / static_cast<double>(i - first + 1);
  }
  return out;
}

double final_loss(const std::vector<Point>& curve) { return smoothed(curve).back().loss; }

/// Tokens, wall seconds or FLOPs (`field`) at which the smoothed curve first reaches `target`
/// (linear interpolation between evaluations); infinity if it never does.
double cost_to_reach(const std::vector<Point>& curve, double target, double Point::*field) {
  const auto sm = smoothed(curve);
  for (size_t i = 0; i < sm.size(); ++i) {
    if (sm[i].loss > target) continue;
    if (i == 0 || sm[i - 1].loss == sm[i].loss) return sm[i].*field;
    const double a = sm[i - 1].*field, b = sm[i].*field;
    return a + (b - a) * (sm[i - 1].loss - target) / (sm[i - 1].loss - sm[i].loss);
  }
  return INFINITY;
}

/// The "kind" field of every line of the pool (ground truth; only reported, never used to select).
std::vector<std::string> document_kinds(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw groupmates::Error(groupmates::ErrorCode::kIo, path, "cannot open the pool");
  simdjson::dom::parser parser;
  std::vector<std::string> kinds;
  std::string line;
  while (std::getline(in, line)) {
    simdjson::dom::element doc;
    std::string_view kind;
    if (parser.parse(line).get(doc) || doc["kind"].get_string().get(kind)) kind = "?";
    kinds.emplace_back(kind);
  }
  return kinds;
}

/// v in the fmt format `f` ("{:.1f}"), or "not reached" if it is not finite.
std::string figure(const char* f, double v) {
  if (!std::isfinite(v)) return "not reached";
  return fmt::format(fmt::runtime(f), v);
}

void row(const std::string& label, const std::string& a, const std::string& b) {
  fmt::print("| {:<44} | {:>16} | {:>16} |\n", label, a, b);
}

std::string pct(double v) { return figure("{:.1f}%", 100 * v); }

void report(const Settings& s, const RunResult& rnd, const RunResult& grp, double total_seconds) {
  fmt::print("\nreference loss (held-out Emma) every {} steps:\n  {:<10}", s.eval_every, "step");
  for (const auto& p : rnd.curve) fmt::print(" {:6}", p.step);
  for (const auto* r : {&rnd, &grp}) {
    fmt::print("\n  {:<10}", r->name);
    for (const auto& p : r->curve) fmt::print(" {:6.3f}", p.loss);
  }
  fmt::print("\n\n");

  const double target = final_loss(rnd.curve);
  const Point& budget = rnd.curve.back();
  row("", rnd.name, grp.name);
  fmt::print("|{:-<46}|{:-<18}|{:-<18}|\n", "", "", "");
  row("final reference loss (mean of last 3 evals)", figure("{:.4f}", target), figure("{:.4f}", final_loss(grp.curve)));
  for (const auto* kinds : {"in_domain", "near_dup", "off_domain", "noisy"}) {
    auto share = [&](const RunResult& r) {
      double all = 0;
      for (const auto& [k, n] : r.rows_by_kind) all += n;
      const auto it = r.rows_by_kind.find(kinds);
      return pct(it == r.rows_by_kind.end() ? 0.0 : it->second / all);
    };
    row(std::string("trained on ") + kinds + (std::string(kinds) == "near_dup" ? " (Austen copies)" : ""), share(rnd),
        share(grp));
  }
  row("to reach random's final loss:", "", "");
  auto reach = [&](const RunResult& r, double Point::*field, const char* f, double scale) {
    const double v = cost_to_reach(r.curve, target, field);
    return figure(f, v / scale) + figure(" ({:.2f}x)", v / (budget.*field));
  };
  row("  tokens", reach(rnd, &Point::tokens, "{:.0f}", 1), reach(grp, &Point::tokens, "{:.0f}", 1));
  row("  compute, GFLOPs (selection included)", reach(rnd, &Point::flops, "{:.0f}", 1e9), reach(grp, &Point::flops, "{:.0f}", 1e9));
  row("  wall clock, s (evaluations excluded)", reach(rnd, &Point::seconds, "{:.1f}", 1), reach(grp, &Point::seconds, "{:.1f}", 1));
  row("  wall clock, s (evaluations included)", reach(rnd, &Point::seconds_with_evals, "{:.1f}", 1),
      reach(grp, &Point::seconds_with_evals, "{:.1f}", 1));
  row("wall clock of the whole run, s", figure("{:.1f}", rnd.seconds), figure("{:.1f}", grp.seconds));
  row("  per trainer step, ms", figure("{:.0f}", 1e3 * rnd.seconds / s.steps), figure("{:.0f}", 1e3 * grp.seconds / s.steps));
  row("  probes + refreshes (any thread), s", figure("{:.1f}", rnd.stats.probes.probe_seconds),
      figure("{:.1f}", grp.stats.probes.probe_seconds));
  row("  evaluations (left out), s", figure("{:.1f}", rnd.eval_seconds), figure("{:.1f}", grp.eval_seconds));
  auto waits = [](const RunResult& r) {
    const auto& c = r.stats.cost;
    // The probe work on_step does itself (slices, ProbeConfig::trainer_thread_rollouts) is not waiting: its own row.
    const double in_loader = r.next_seconds + r.on_step_seconds - c.probe_slice_seconds;
    const double named = c.wait_scoring_seconds + c.wait_refresh_seconds + c.wait_probe_seconds + c.snapshot_seconds +
                         c.selection_seconds;
    return std::vector<double>{in_loader / r.seconds,         c.wait_scoring_seconds / r.seconds,
                               c.wait_refresh_seconds / r.seconds, c.wait_probe_seconds / r.seconds,
                               c.snapshot_seconds / r.seconds, c.selection_seconds / r.seconds,
                               std::max(0.0, in_loader - named) / r.seconds, c.probe_slice_seconds / r.seconds};
  };
  const auto wr = waits(rnd), wg = waits(grp);
  const char* causes[] = {"trainer waited on the loader (share of wall)", "  window scoring", "  due refresh",
                          "  probe hand-off", "  snapshot of the live model", "  selecting (trainer's thread)",
                          "  other (reading windows, batch copies)",
                          "trainer ran probe slices + refreshes (share)"};
  for (size_t i = 0; i < wr.size(); ++i) row(causes[i], figure("{:.2f}%", 100 * wr[i]), figure("{:.2f}%", 100 * wg[i]));
  auto overhead = [](const RunResult& r, double v) { return r.train_flops > 0 ? pct(v / r.train_flops) : "-"; };
  row("selection overhead, share of training FLOPs:", "", "");
  row("  probes", overhead(rnd, rnd.stats.cost.probe_flops), overhead(grp, grp.stats.cost.probe_flops));
  row("  influence-model refreshes", overhead(rnd, rnd.stats.cost.refresh_flops), overhead(grp, grp.stats.cost.refresh_flops));
  row("  scoring (encoder, importance, k-means)", overhead(rnd, rnd.stats.cost.scoring_flops),
      overhead(grp, grp.stats.cost.scoring_flops));
  const groupmates::ProbeConfig pd;
  row("probe FLOPs / training FLOPs (budget)", "-", figure("{:.3f}", grp.stats.cost.probe_flops / grp.train_flops) +
                                                       figure(" ({:.2f})", pd.budget));

  const auto& st = grp.stats;
  const auto& p = st.probes;
  fmt::print("\nGroup-MATES: {} probes completed ({} skipped for the budget, {} while one ran, {} failed), "
             "{} rollouts kept, {:.2f} s per rollout; {} refreshes ({} failed), model v{}, importance prior "
             "weight {:.2f}; {} of {} windows in warm-up; held-out Spearman of the last refresh {:.3f} (whole learned "
             "head {:.3f}, prior-only model {:.3f}; share of its head a published learned model carries now {:.2f}); {} of the {} rows "
             "trained on were replays of its best rows (replay_share \"auto\": 0.5)\n",
             p.probes_completed, st.probes_skipped_budget, p.probes_skipped_busy, p.probes_failed, p.rollouts_kept,
             p.seconds_per_rollout, st.refreshes, st.refreshes_failed, st.model_version, st.prior_weight,
             st.warmup_windows, st.windows, st.last_heldout_spearman, st.last_heldout_spearman_unshrunk,
             st.last_heldout_spearman_prior, st.head_share, st.replayed, st.selected);
  fmt::print("total {:.1f} s (both runs, evaluations and set-up included)\n", total_seconds);

  const double w = cost_to_reach(grp.curve, target, &Point::seconds) / budget.seconds;
  const double f = wg[0];
  const double probe_share = grp.stats.cost.probe_flops / grp.train_flops;
  fmt::print("RESULT demo_wall_ratio_vs_random={} demo_trainer_wait_share={:.4f} demo_probe_share={:.4f} "
             "demo_trainer_probe_slice_share={:.4f}\n",
             std::isfinite(w) ? fmt::format("{:.3f}", w) : "inf", f, probe_share, wg.back());
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  CLI::App app("the same TinyGpt trained twice on the demo pool: random vs Group-MATES selection", "online_demo");
  app.add_option("--data", s.data,
                 "holds pool.jsonl, reference.jsonl and tokenizer.model (scripts/prepare-pool.sh --variant demo)")
      ->capture_default_str();
  tiny_gpt_training::add_training_options(app, s);
  example_cli::parse_or_exit(app, argc, argv);
  try {
    const Stopwatch all_clock;
    Data data;
    groupmates::SourceConfig pool;
    pool.name = "pool";
    pool.format = groupmates::SourceFormat::kJsonl;
    pool.paths = {s.data + "/pool.jsonl"};
    pool.tokenizer_model = s.data + "/tokenizer.model";
    auto tokenizer = groupmates::Tokenizer::load(pool.tokenizer_model);
    data.vocab = tokenizer->vocab_size();
    data.config.sources = {pool};
    data.config.sequence_length = s.seq_len;
    data.config.batch_size = s.batch;
    data.config.seed = s.seed;
    data.config.epochs = 0;  // endless: the budget is trainer steps
    data.config.eos_id = tokenizer->eos_id();
    data.config.vocab_size = tokenizer->vocab_size();
    data.kinds = document_kinds(s.data + "/pool.jsonl");

    // The held-out reference set (Emma), tokenized once: two disjoint, evenly spaced subsets of rows,
    // one for the probes and set_reference() (what selection optimises), one for the loss printed here.
    const auto reference = tiny_gpt_training::load_reference(s.data + "/reference.jsonl", *tokenizer, s.seq_len,
                                                             s.probe_ref_rows, s.eval_rows);
    const int64_t n = reference.rows;
    const auto& split = reference.split;
    data.probe_batches = reference.probe_batches;
    data.eval_batches = reference.eval_batches;
    data.probe_rows = torch::cat(data.probe_batches);

    std::map<std::string, int64_t> docs_by_kind;
    for (const auto& k : data.kinds) docs_by_kind[k] += 1;
    std::string kinds;
    for (const auto& [k, c] : docs_by_kind) kinds += (kinds.empty() ? "" : ", ") + k + " " + std::to_string(c);
    const groupmates::TinyGpt sizing(
        groupmates::tiny_gpt_config(data.vocab, s.seq_len, s.d_model, s.layers, s.heads, s.seed));
    const groupmates::SelectionConfig sd;
    const groupmates::ProbeConfig pd;
    fmt::print("online_demo: TinyGpt d_model {} x {} layers ({} parameters; FLOPs: forward 2 x parameters per token, "
               "training 3 x forward), vocab {} ({}/tokenizer.model), T {}, B {}, {} trainer steps ({} tokens) per run, "
               "AdamW lr {:g}, seed {}, torch threads {}\n",
               s.d_model, s.layers, sizing.num_parameters(), data.vocab, s.data, s.seq_len, s.batch, s.steps,
               s.steps * s.batch * s.seq_len, s.lr, s.seed, torch::get_num_threads());
    fmt::print("  pool: {}/pool.jsonl, {} documents ({}; ground truth, only reported)\n", s.data, data.kinds.size(), kinds);
    fmt::print("  reference: {}/reference.jsonl (held-out Emma), {} rows of {} tokens: {} for the probes and "
               "set_reference(), {} for the reported loss\n",
               s.data, n, s.seq_len, split.probe.size(), split.eval.size());
    fmt::print("  Group-MATES with the library defaults: window {}, ratio {:.2f}, {} clusters, refresh {}; probes every "
               "{} steps within a budget of {:.2f} x the training FLOPs, rollouts of {} steps\n",
               sd.window_size, sd.ratio, sd.clusters,
               sd.refresh_mode == groupmates::RefreshMode::kWhenReady ? "when ready" : "at step", pd.interval_steps,
               pd.budget, pd.rollout_length);
    std::fflush(stdout);

    const RunResult rnd = run("random", groupmates::SelectionMode::kRandom, s, data);
    const RunResult grp = run("Group-MATES", groupmates::SelectionMode::kGroup, s, data);
    report(s, rnd, grp, all_clock.seconds());
  } catch (const std::exception& e) {
    fmt::print(stderr, "\nonline_demo: {}\n", e.what());
    return 1;
  }
  return 0;
}
