// bench_efficiency: ONE training run of the data-efficiency benchmark (issue 5). The driver
// bench/bench_efficiency.py (`make bench-efficiency`) builds the data, runs this binary once per
// method and seed, and computes the figures; this program only trains and measures.
//
//   bench_efficiency --pool POOL.jsonl --reference REF.jsonl --tokenizer M.model --method METHOD
//                    --seed S --out RUN.json [settings...]
//
// METHOD: random (SelectionMode::kRandom), importance (kImportance: DSIR-style, no probes),
// individual (kIndividual, MATES, Gumbel T = 0.5), individual_topk (kIndividual, T = 0: top-k by u),
// group (kGroup, Group-MATES), and the ablations group_no_relations (SelectionConfig::relations =
// false), group_no_clusters (kGroupNoClusters), group_no_prior (importance_prior = false),
// group_no_probes (ProbeConfig::interval_steps = 0: the prior and the relational greedy only),
// group_no_gate (SelectionConfig::refresh_gate = false: every refreshed model is published); plain
// (kNone: every candidate of --pool; the driver's oracle mix passes a pool of in-domain documents
// only). The model-based methods get oracle probes of the live model (ModuleProbeTarget around the
// TinyGpt + AdamW, loader.on_step(step, &target)); every selecting method gets the probes' reference
// rows through set_reference() (the importance estimator and prior).
//
// Cost: each curve point carries the wall seconds of the run so far without the benchmark's own
// evaluations, and the FLOPs so far: 3 F per trained token (F = the target's forward FLOPs per token,
// 2 x its parameters) plus the loader's selection overhead (SelectionCost: probes, refresh, scoring).
//
// The reference set is tokenized once (groupmates::Tokenizer), packed into rows of T tokens with
// eos between documents, and split into two disjoint, evenly spaced subsets: --probe-ref-rows rows
// are the probes' reference loss (what selection optimises), --eval-rows other rows are the
// reported reference loss (what the benchmark measures).
//
// SelectionConfig and ProbeConfig are the library's defaults except mode and seed.
#include <groupmates/error.h>
#include <groupmates/tokenizer.h>
#include <groupmates/loader.h>
#include <groupmates/module_probe_target.h>
#include <groupmates/selection_config.h>
#include "tiny_gpt/tiny_gpt.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
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
using Json = nlohmann::ordered_json;

struct Options : tiny_gpt_training::TrainingSettings {
  std::string pool, reference, tokenizer, method, out;
  uint32_t loader_threads = 2;
  int torch_threads = 0;
  std::string log_path;
  uint32_t clusters = 0;  // 0 = SelectionConfig's default
  double probe_budget = -1;  // < 0 = ProbeConfig's default
  int64_t rollout_length = 0;  // 0 = ProbeConfig's default
  int first_order = -1;        // -1 = ProbeConfig's default
  int probe_nice = -1;         // -1 = ProbeConfig's default
  int trainer_thread_rollouts = -1;  // -1 = ProbeConfig's default
  int merge_budgets = -1;      // -1 = SelectionConfig's default
  std::string refresh_mode;  // "" = SelectionConfig's default; when_ready | at_step
  double reference_feedback = -1;  // < 0 = SelectionConfig's default
  int64_t refresh_steps = -1;      // < 0 = SelectionConfig's default
  double refresh_lr = -1;          // < 0 = SelectionConfig's default
  int64_t random_rollouts = -1;    // < 0 = ProbeConfig's default
  int64_t neighbour_rollouts = -1; // < 0 = ProbeConfig's default
  double prefilter_ratio = -1;     // <= 0 = SelectionConfig's default
  int nonpositive = -1;            // -1 = SelectionConfig's default
  double relation_tau = -1;        // <= 0 = SelectionConfig's default
  double seen_discount = -1;       // < 0 = SelectionConfig's default
  double replay_relative_overlap = -1;  // < 0 = SelectionConfig's default
  int seen_shingle_tokens = 0;     // 0 = SelectionConfig's default
  double replay_share = -1;        // < 0 = SelectionConfig's default
  int replay_rows = 0;             // 0 = SelectionConfig's default
  int replay_max_repeats = 0;      // 0 = SelectionConfig's default
  double gate_margin = -1;         // < 0 = SelectionConfig's default
  double gate_top_share = -1;      // < 0 = SelectionConfig's default
  int head_shrinkage = -1;         // < 0 = SelectionConfig's default
  double head_share_start = -1;    // < 0 = SelectionConfig's default
  std::string encoder = "hashed_ngram";  // SelectionConfig::encoder: hashed_ngram | torchscript
  std::string encoder_path;              // torchscript: the module file
  bool aligned = false;  // --packing aligned: every candidate starts at a document start (pad id 0, not trained on)
  bool quiet = false;
};

const std::vector<std::string> kMethods = {"random", "importance", "individual", "individual_topk", "group",
                                           "group_no_relations", "group_no_clusters", "group_no_prior", "group_no_probes",
                                           "group_no_gate", "plain"};

Options parse(int argc, char** argv) {
  Options o;
  CLI::App app("one training run of the data-efficiency benchmark (bench/bench_efficiency.py drives it)",
               "bench_efficiency");
  app.add_option("--pool", o.pool, "candidate pool JSONL")->required();
  app.add_option("--reference", o.reference, "held-out reference set JSONL")->required();
  app.add_option("--tokenizer", o.tokenizer, "SentencePiece model of both")->required();
  app.add_option("--method", o.method, "selection method")->required()->check(CLI::IsMember(kMethods));
  app.add_option("--out", o.out, "the run's JSON")->required();
  tiny_gpt_training::add_training_options(app, o);
  app.add_option("--eval-rows", o.eval_rows, "reference rows of the reported loss")->capture_default_str()->check(example_cli::kPositive);
  app.add_option("--probe-ref-rows", o.probe_ref_rows, "reference rows of the probes")->capture_default_str()->check(example_cli::kPositive);
  app.add_option("--heads", o.heads, "TinyGpt attention heads")->capture_default_str()->check(example_cli::kPositive);
  app.add_option("--lr", o.lr, "AdamW learning rate")->capture_default_str();
  app.add_option("--weight-decay", o.weight_decay, "AdamW weight decay")->capture_default_str();
  app.add_option("--loader-threads", o.loader_threads, "loader threads")->capture_default_str();
  app.add_option("--torch-threads", o.torch_threads, "intra-op threads (0: LibTorch's default)")->capture_default_str();
  app.add_option("--log", o.log_path, "JSONL selection log");
  std::string packing = "packed";
  app.add_option("--packing", packing, "packed, or aligned (pad id 0)")->capture_default_str()
      ->check(CLI::IsMember({"packed", "aligned"}));
  app.add_option("--clusters", o.clusters, "k-means clusters per window (0: the library's default)");
  app.add_option("--probe-budget", o.probe_budget, "ProbeConfig.budget (< 0: the library's default)");
  app.add_option("--refresh-mode", o.refresh_mode, "SelectionConfig.refresh_mode (default: the library's)")
      ->check(CLI::IsMember({"when_ready", "at_step"}));
  app.add_option("--reference-feedback", o.reference_feedback,
                 "SelectionConfig.reference_feedback (< 0: the library's default)");
  app.add_option("--refresh-steps", o.refresh_steps, "SelectionConfig.refresh_train_steps (< 0: the library's default)");
  app.add_option("--refresh-lr", o.refresh_lr, "SelectionConfig.refresh_learning_rate (< 0: the library's default)");
  app.add_option("--random-rollouts", o.random_rollouts, "ProbeConfig.random_rollouts (< 0: the library's default)");
  app.add_option("--neighbour-rollouts", o.neighbour_rollouts, "ProbeConfig.neighbour_rollouts (< 0: the library's default)");
  app.add_option("--prefilter-ratio", o.prefilter_ratio, "SelectionConfig.prefilter_ratio (<= 0: the library's default)");
  app.add_option("--nonpositive-influence", o.nonpositive, "SelectionConfig.nonpositive_influence 0|1 (default: the library's)")
      ->check(CLI::IsMember({0, 1}));
  app.add_option("--refresh-gate-margin", o.gate_margin, "SelectionConfig.refresh_gate_margin (< 0: the library's default)");
  app.add_option("--refresh-gate-top-share", o.gate_top_share,
                 "SelectionConfig.refresh_gate_top_share (< 0: the library's default)");
  app.add_option("--head-shrinkage", o.head_shrinkage, "SelectionConfig.refresh_head_shrinkage 0|1 (default: the library's)")
      ->check(CLI::IsMember({0, 1}));
  app.add_option("--head-share-start", o.head_share_start,
                 "SelectionConfig.refresh_head_share_start (< 0: the library's default)");
  app.add_option("--relation-tau", o.relation_tau, "SelectionConfig.relation_tau (<= 0: the library's default)");
  app.add_option("--seen-discount", o.seen_discount, "SelectionConfig.seen_discount (< 0: the library's default)");
  app.add_option("--replay-relative-overlap", o.replay_relative_overlap,
                 "SelectionConfig.replay_relative_overlap (< 0: the library's default)");
  app.add_option("--replay-share", o.replay_share, "SelectionConfig.replay_share (< 0: the library's default)");
  app.add_option("--replay-rows", o.replay_rows, "SelectionConfig.replay_rows (0: the library's default)");
  app.add_option("--replay-max-repeats", o.replay_max_repeats, "SelectionConfig.replay_max_repeats (0: the library's default)");
  app.add_option("--seen-shingle-tokens", o.seen_shingle_tokens, "SelectionConfig.seen_shingle_tokens (0: the library's default)");
  app.add_option("--rollout-length", o.rollout_length, "ProbeConfig.rollout_length (0: the library's default)");
  app.add_option("--first-order-labels", o.first_order, "ProbeConfig.first_order_labels 0 or 1 (-1: the library's default)");
  app.add_option("--probe-nice", o.probe_nice, "ProbeConfig.nice (-1: the library's default)");
  app.add_option("--trainer-thread-rollouts", o.trainer_thread_rollouts,
                 "ProbeConfig.trainer_thread_rollouts (-1: the library's default; 0: a probe thread)");
  app.add_option("--merge-cluster-budgets", o.merge_budgets, "SelectionConfig.merge_cluster_budgets 0|1 (default: the library's)")
      ->check(CLI::IsMember({0, 1}));
  app.add_option("--encoder", o.encoder, "SelectionConfig.encoder")->capture_default_str()
      ->check(CLI::IsMember({"hashed_ngram", "torchscript"}));
  app.add_option("--encoder-path", o.encoder_path, "--encoder torchscript: the module file (SelectionConfig.encoder_path)");
  app.add_flag("--quiet", o.quiet, "no progress on stderr");
  example_cli::parse_or_exit(app, argc, argv);
  o.aligned = packing == "aligned";
  return o;
}

/// A measured figure as the run files store it: 6 significant digits, null if not finite.
Json num(double v) {
  if (!std::isfinite(v)) return nullptr;
  return std::stod(fmt::format("{:.6g}", v));
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  try {
    if (o.torch_threads > 0) torch::set_num_threads(o.torch_threads);
    const Stopwatch setup_clock;
    auto tokenizer = groupmates::Tokenizer::load(o.tokenizer);

    // Reference rows: disjoint, evenly spaced probe and evaluation subsets.
    const auto reference =
        tiny_gpt_training::load_reference(o.reference, *tokenizer, o.seq_len, o.probe_ref_rows, o.eval_rows);
    const int64_t n = reference.rows;
    const std::vector<size_t>& probe_idx = reference.split.probe;
    const std::vector<size_t>& eval_idx = reference.split.eval;
    const auto& probe_batches = reference.probe_batches;
    const auto& eval_batches = reference.eval_batches;

    // Model + optimiser; the probe target wraps the live pair and is used for the real steps too.
    groupmates::TinyGptConfig mc =
        groupmates::tiny_gpt_config(tokenizer->vocab_size(), o.seq_len, o.d_model, o.layers, o.heads, o.seed);
    const int64_t pad_id = 0;  // the pool tokenizer's --pad_id (bench_efficiency.py)
    if (o.aligned) mc.ignore_id = pad_id;
    auto model = std::make_shared<groupmates::TinyGpt>(mc);
    groupmates::ModuleProbeTargetConfig tc;
    tc.grad_clip_norm = 1.0;
    const auto target = tiny_gpt_training::tiny_gpt_target(mc, model, o.lr, o.weight_decay, probe_batches, tc);

    // Loader: the pool, endless (the budget is trainer steps), library defaults for selection/probes.
    groupmates::LoaderConfig config = tiny_gpt_training::pool_loader_config(
        o.pool, o.tokenizer, *tokenizer, o.seq_len, o.batch, o.seed, o.loader_threads);
    if (o.aligned) {
      config.packing = groupmates::PackingMode::kDocumentAligned;
      config.pad_id = pad_id;
    }

    groupmates::SelectionConfig selection;
    groupmates::ProbeConfig probes;
    const bool probing = o.method != "random" && o.method != "importance" && o.method != "plain";
    using Mode = groupmates::SelectionMode;
    selection.mode = o.method == "random"                ? Mode::kRandom
                     : o.method == "importance"          ? Mode::kImportance
                     : o.method.rfind("individual", 0) == 0 ? Mode::kIndividual
                     : o.method == "group_no_clusters"   ? Mode::kGroupNoClusters
                     : o.method.rfind("group", 0) == 0   ? Mode::kGroup
                                                         : Mode::kNone;
    if (o.method == "individual_topk") selection.temperature = 0;
    if (o.method == "group_no_relations") selection.relations = false;
    if (o.method == "group_no_prior") selection.importance_prior = false;
    if (o.method == "group_no_probes") probes.interval_steps = 0;
    if (o.method == "group_no_gate") selection.refresh_gate = false;
    if (o.probe_budget >= 0) probes.budget = o.probe_budget;
    if (o.rollout_length > 0) probes.rollout_length = static_cast<uint32_t>(o.rollout_length);
    if (o.first_order >= 0) probes.first_order_labels = o.first_order != 0;
    if (o.probe_nice >= 0) probes.nice = o.probe_nice;
    if (o.trainer_thread_rollouts >= 0) probes.trainer_thread_rollouts = uint32_t(o.trainer_thread_rollouts);
    if (o.merge_budgets >= 0) selection.merge_cluster_budgets = o.merge_budgets != 0;
    if (o.reference_feedback >= 0) selection.reference_feedback = o.reference_feedback;
    if (o.refresh_steps >= 0) selection.refresh_train_steps = static_cast<uint32_t>(o.refresh_steps);
    if (o.refresh_lr >= 0) selection.refresh_learning_rate = o.refresh_lr;
    if (o.random_rollouts >= 0) probes.random_rollouts = static_cast<uint32_t>(o.random_rollouts);
    if (o.neighbour_rollouts >= 0) probes.neighbour_rollouts = static_cast<uint32_t>(o.neighbour_rollouts);
    if (o.prefilter_ratio > 0) selection.prefilter_ratio = o.prefilter_ratio;
    if (o.nonpositive >= 0) selection.nonpositive_influence = o.nonpositive != 0;
    if (o.relation_tau > 0) selection.relation_tau = o.relation_tau;
    if (o.seen_discount >= 0) selection.seen_discount = o.seen_discount;
    if (o.replay_relative_overlap >= 0) selection.replay_relative_overlap = o.replay_relative_overlap;
    if (o.replay_share >= 0) selection.replay_share = o.replay_share;
    if (o.replay_rows > 0) selection.replay_rows = uint32_t(o.replay_rows);
    if (o.replay_max_repeats > 0) selection.replay_max_repeats = uint32_t(o.replay_max_repeats);
    if (o.seen_shingle_tokens > 0) selection.seen_shingle_tokens = uint32_t(o.seen_shingle_tokens);
    if (o.gate_margin >= 0) selection.refresh_gate_margin = o.gate_margin;
    if (o.gate_top_share >= 0) selection.refresh_gate_top_share = o.gate_top_share;
    if (o.head_shrinkage >= 0) selection.refresh_head_shrinkage = o.head_shrinkage != 0;
    if (o.head_share_start >= 0) selection.refresh_head_share_start = o.head_share_start;
    if (!o.refresh_mode.empty())
      selection.refresh_mode = o.refresh_mode == "at_step" ? groupmates::RefreshMode::kAtStep : groupmates::RefreshMode::kWhenReady;
    selection.seed = o.seed;
    if (o.clusters > 0) selection.clusters = o.clusters;
    selection.log_path = o.log_path;
    if (o.encoder == "torchscript") {
      selection.encoder = groupmates::EncoderKind::kTorchScript;
      selection.encoder_path = o.encoder_path;
    }
    const double setup_seconds = setup_clock.seconds();

    if (!o.quiet)
      fmt::print(stderr,
                 "[{} seed {}] vocab {}, T {}, B {}, steps {}, d_model {} x {} layers ({} params), "
                 "reference rows {} (probe {}, eval {})\n",
                 o.method, o.seed, mc.vocab_size, o.seq_len, o.batch, o.steps, o.d_model, o.layers,
                 model->num_parameters(), n, probe_idx.size(), eval_idx.size());

    const Stopwatch run_clock;
    std::unique_ptr<groupmates::GroupMatesLoader> loader =
        selection.mode == groupmates::SelectionMode::kNone
            ? std::make_unique<groupmates::GroupMatesLoader>(config)
            : std::make_unique<groupmates::GroupMatesLoader>(config, selection, probes);
    if (selection.mode != groupmates::SelectionMode::kNone) {
      std::vector<torch::Tensor> ref;
      for (const auto& b : probe_batches) ref.push_back(b.to(torch::kCPU));
      loader->set_reference(torch::cat(ref));  // the text the probes measure: the user's reference set
    }
    const double flops_per_token = target->forward_flops_per_token();

    struct Point { int64_t step; double tokens, loss, seconds, flops; };
    std::vector<Point> curve;
    struct Sp {  // trained: refreshes + gated
      int64_t step;
      uint64_t trained;
      double spearman, spearman_scaled, spearman_prior, spearman_unshrunk, head_share;
      std::vector<double> share_scores;
    };
    std::vector<Sp> spearman;
    std::map<std::pair<uint32_t, uint64_t>, uint64_t> selected;  // (source, document) -> rows
    struct Scored { uint64_t document; double u; uint64_t version; };
    std::vector<Scored> scored;  // emitted rows with a predicted influence (not warm-up)
    double wait_s = 0, train_s = 0, on_step_s = 0, eval_s = 0, train_loss_ema = NAN;
    int64_t pad_tokens = 0;  // trained-on rows' padding (aligned packing), not in the loss
    uint64_t last_refreshes = 0;
    int64_t step = 0;
    auto evaluate = [&](int64_t s) {
      const Stopwatch eval_clock;
      const double l = mean_loss(*model, eval_batches);
      const double tokens = static_cast<double>(s) * o.batch * o.seq_len;
      const double overhead =
          selection.mode == groupmates::SelectionMode::kNone ? 0.0 : loader->selection_stats().cost.overhead_flops();
      curve.push_back({s, tokens, l, run_clock.seconds() - eval_s, 3.0 * flops_per_token * tokens + overhead});
      eval_s += eval_clock.seconds();
      if (!o.quiet)
        fmt::print(stderr, "[{} seed {}] step {}/{}  ref loss {:.4f}  train {:.3f}  {:.0f} s\n", o.method, o.seed, s,
                   o.steps, l, train_loss_ema, run_clock.seconds());
    };
    auto poll = [&](int64_t s) {
      if (selection.mode == groupmates::SelectionMode::kNone) return;
      const auto st = loader->selection_stats();
      if (st.refreshes + st.refreshes_gated != last_refreshes) {
        last_refreshes = st.refreshes + st.refreshes_gated;
        spearman.push_back({s, last_refreshes, st.last_heldout_spearman, st.last_heldout_spearman_scaled,
                            st.last_heldout_spearman_prior, st.last_heldout_spearman_unshrunk, st.head_share,
                            st.head_share_scores});
      }
    };

    evaluate(0);
    for (; step < o.steps; ++step) {
      Stopwatch clock;
      auto batch = loader->next();
      wait_s += clock.lap();
      if (!batch) throw groupmates::Error(groupmates::ErrorCode::kInternal, "bench_efficiency", "the endless stream ended");
      for (const auto& id : batch->ids) ++selected[{id.source, id.document}];
      if (o.aligned) pad_tokens += batch->input_ids.eq(pad_id).sum().item<int64_t>();
      if (batch->influence.defined() && batch->influence.numel() == static_cast<int64_t>(batch->ids.size())) {
        const auto u = batch->influence.to(torch::kCPU).to(torch::kDouble).contiguous();
        for (size_t r = 0; r < batch->ids.size(); ++r) {
          const double v = u.data_ptr<double>()[r];
          if (std::isfinite(v)) scored.push_back({batch->ids[r].document, v, batch->model_version});
        }
      }
      clock.restart();
      const double l = target->train_step(batch->input_ids);
      train_s += clock.lap();
      train_loss_ema = std::isnan(train_loss_ema) ? l : 0.95 * train_loss_ema + 0.05 * l;
      loader->on_step(step, probing ? target.get() : nullptr);
      on_step_s += clock.seconds();
      if ((step + 1) % 10 == 0) poll(step + 1);
      if ((step + 1) % o.eval_every == 0 || step + 1 == o.steps) evaluate(step + 1);
    }
    const double run_s = run_clock.seconds();
    groupmates::SelectionStats st;
    if (selection.mode != groupmates::SelectionMode::kNone) {
      poll(step);
      st = loader->selection_stats();
    }
    loader.reset();  // waits for an in-flight probe
    const double total_s = run_clock.seconds();

    auto rows_of = [](const auto& items, auto row) {
      Json out = Json::array();
      for (const auto& item : items) out.push_back(row(item));
      return out;
    };
    const auto& p = st.probes;
    const auto& c = st.cost;
    Json j;
    j["method"] = o.method;
    j["seed"] = o.seed;
    j["reference_feedback"] = num(selection.reference_feedback);
    j["settings"] = {{"pool", o.pool}, {"reference", o.reference}, {"tokenizer", o.tokenizer},
                     {"vocab", mc.vocab_size}, {"steps", o.steps}, {"batch", o.batch}, {"seq_len", o.seq_len},
                     {"d_model", o.d_model}, {"layers", o.layers}, {"heads", o.heads},
                     {"params", model->num_parameters()}, {"lr", num(o.lr)}, {"weight_decay", num(o.weight_decay)},
                     {"eval_every", o.eval_every}, {"eval_rows", eval_idx.size()}, {"probe_ref_rows", probe_idx.size()},
                     {"reference_rows", n}, {"window_size", selection.window_size}, {"ratio", num(selection.ratio)},
                     {"clusters", selection.clusters}, {"replay_share", num(selection.effective_replay_share())},
                     {"probe_interval", probes.interval_steps},
                     {"rollout_length", probes.rollout_length}, {"first_order_labels", probes.first_order_labels},
                     {"probe_nice", probes.nice}, {"trainer_thread_rollouts", probes.trainer_thread_rollouts},
                     {"refresh_steps", selection.refresh_train_steps},
                     {"refresh_lr", num(selection.refresh_learning_rate)}, {"torch_threads", torch::get_num_threads()},
                     {"packing", o.aligned ? "aligned" : "packed"}, {"pad_tokens", pad_tokens}};
    j["curve"] = rows_of(curve, [](const Point& q) {
      return Json::array({q.step, num(q.tokens), num(q.loss), num(q.seconds), num(q.flops)});
    });
    j["spearman_history"] = rows_of(spearman, [](const Sp& q) {
      Json scores = Json::array();
      for (const double v : q.share_scores) scores.push_back(num(v));
      return Json::array({q.step, q.trained, num(q.spearman), num(q.spearman_scaled), num(q.spearman_prior),
                          num(q.spearman_unshrunk), num(q.head_share), scores});
    });
    j["selected"] = rows_of(selected, [](const auto& kv) {
      return Json::array({kv.first.first, kv.first.second, kv.second});
    });
    j["scored"] = rows_of(scored, [](const Scored& q) { return Json::array({q.document, num(q.u), q.version}); });
    j["timing"] = {{"setup_seconds", num(setup_seconds)}, {"run_seconds", num(run_s)}, {"total_seconds", num(total_s)},
                   {"loader_wait_seconds", num(wait_s)}, {"train_seconds", num(train_s)},
                   {"on_step_seconds", num(on_step_s)}, {"eval_seconds", num(eval_s)},
                   {"run_seconds_without_eval", num(run_s - eval_s)}};
    j["cost"] = {{"flops_per_token", num(flops_per_token)},
                 {"train_flops", num(3.0 * flops_per_token * double(step) * o.batch * o.seq_len)},
                 {"probe_flops", num(c.probe_flops)}, {"refresh_flops", num(c.refresh_flops)},
                 {"scoring_flops", num(c.scoring_flops)}, {"probe_train_tokens", num(c.probe_train_tokens)},
                 {"probe_eval_tokens", num(c.probe_eval_tokens)}, {"scoring_seconds", num(c.scoring_seconds)},
                 {"selection_seconds", num(c.selection_seconds)}, {"wait_scoring_seconds", num(c.wait_scoring_seconds)},
                 {"wait_refresh_seconds", num(c.wait_refresh_seconds)}, {"wait_probe_seconds", num(c.wait_probe_seconds)},
                 {"snapshot_seconds", num(c.snapshot_seconds)}, {"probe_slice_seconds", num(c.probe_slice_seconds)},
                 {"probes_skipped_budget", st.probes_skipped_budget},
                 {"probes_skipped_backoff", st.probes_skipped_backoff},
                 {"refreshes_failed", st.refreshes_failed}, {"refreshes_gated", st.refreshes_gated},
                 {"prior_weight", num(st.prior_weight)},
                 {"switches", st.switches.size()}};
    j["encoder"] = {{"kind", o.encoder}, {"path", o.encoder_path}};
    j["selection"] = {{"windows", st.windows}, {"warmup_windows", st.warmup_windows}, {"seen", st.seen},
                      {"selected", st.selected}, {"seen_discounted", st.seen_discounted}, {"replayed", st.replayed}, {"replay_relatives", st.replay_relatives}, {"model_version", st.model_version}, {"refreshes", st.refreshes},
                      {"refresh_seconds", num(st.refresh_seconds)}, {"refresh_wait_seconds", num(st.refresh_wait_seconds)},
                      {"last_heldout_spearman", num(st.last_heldout_spearman)},
                      {"last_heldout_spearman_scaled", num(st.last_heldout_spearman_scaled)},
                      {"last_heldout_spearman_unshrunk", num(st.last_heldout_spearman_unshrunk)},
                      {"head_share", num(st.head_share)},
                      {"probes", {{"started", p.probes_started}, {"completed", p.probes_completed},
                                  {"skipped_busy", p.probes_skipped_busy}, {"failed", p.probes_failed},
                                  {"rollouts_kept", p.rollouts_kept}, {"rollouts_discarded", p.rollouts_discarded},
                                  {"rollouts_skipped", p.rollouts_skipped}, {"snapshot_seconds", num(p.snapshot_seconds)},
                                  {"probe_seconds", num(p.probe_seconds)}, {"wall_seconds", num(p.wall_seconds)},
                                  {"probe_share", num(p.probe_share)}, {"snapshot_share", num(p.snapshot_share)},
                                  {"seconds_per_rollout", num(p.seconds_per_rollout)}}}};
    const std::string tmp = o.out + ".tmp";
    {
      std::ofstream f(tmp);
      f << j.dump() << "\n";
      if (!f) throw groupmates::Error(groupmates::ErrorCode::kIo, tmp, "cannot write");
    }
    if (std::rename(tmp.c_str(), o.out.c_str()) != 0)
      throw groupmates::Error(groupmates::ErrorCode::kIo, o.out, "cannot rename the result into place");
    if (!o.quiet)
      fmt::print(stderr, "[{} seed {}] done: final ref loss {:.4f}, {:.1f} s (loader wait {:.1f}%, train {:.1f} s, eval {:.1f} s)\n",
                 o.method, o.seed, curve.back().loss, total_s, 100.0 * wait_s / run_s, train_s, eval_s);
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_efficiency: {}\n", e.what());
    return 1;
  }
  return 0;
}
