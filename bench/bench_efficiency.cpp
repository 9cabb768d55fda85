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
// false), group_no_clusters (kGroupNoClusters), group_no_prior (importance_prior = false); plain
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

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tiny_gpt_training.h"


namespace {

using tiny_gpt_training::batches_of;
using tiny_gpt_training::mean_loss;
using tiny_gpt_training::reference_rows;

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Options {
  std::string pool, reference, tokenizer, method, out;
  uint64_t seed = 0;
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
  uint32_t loader_threads = 2;
  int torch_threads = 0;
  std::string log_path;
  uint32_t clusters = 0;  // 0 = SelectionConfig's default
  double probe_budget = -1;  // < 0 = ProbeConfig's default
  int64_t rollout_length = 0;  // 0 = ProbeConfig's default
  int merge_budgets = -1;      // -1 = SelectionConfig's default
  std::string refresh_mode;  // "" = SelectionConfig's default; when_ready | at_step
  bool aligned = false;  // --packing aligned: every candidate starts at a document start (pad id 0, not trained on)
  bool quiet = false;
};

[[noreturn]] void usage(const char* msg) {
  if (msg) std::fprintf(stderr, "bench_efficiency: %s\n", msg);
  std::fprintf(stderr,
               "usage: bench_efficiency --pool P.jsonl --reference R.jsonl --tokenizer M.model\n"
               "         --method random|individual|group|plain --seed S --out RUN.json\n"
               "         [--steps 600] [--batch 8] [--seq-len 128] [--eval-every 40] [--eval-rows 128]\n"
               "         [--probe-ref-rows 16] [--d-model 128] [--layers 2] [--heads 4] [--lr 1e-3]\n"
               "         [--weight-decay 0.1] [--loader-threads 2] [--torch-threads 0] [--log PATH]\n"
               "         [--packing packed|aligned] [--clusters K] [--probe-budget B]\n"
               "         [--refresh-mode when_ready|at_step] [--rollout-length L] [--merge-cluster-budgets 0|1] [--quiet]\n");
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage((a + " needs a value").c_str());
      return argv[++i];
    };
    if (a == "--pool") o.pool = value();
    else if (a == "--reference") o.reference = value();
    else if (a == "--tokenizer") o.tokenizer = value();
    else if (a == "--method") o.method = value();
    else if (a == "--out") o.out = value();
    else if (a == "--seed") o.seed = std::stoull(value());
    else if (a == "--steps") o.steps = std::stoll(value());
    else if (a == "--batch") o.batch = std::stoul(value());
    else if (a == "--seq-len") o.seq_len = std::stoul(value());
    else if (a == "--eval-every") o.eval_every = std::stoll(value());
    else if (a == "--eval-rows") o.eval_rows = std::stoll(value());
    else if (a == "--probe-ref-rows") o.probe_ref_rows = std::stoll(value());
    else if (a == "--d-model") o.d_model = std::stoll(value());
    else if (a == "--layers") o.layers = std::stoll(value());
    else if (a == "--heads") o.heads = std::stoll(value());
    else if (a == "--lr") o.lr = std::stod(value());
    else if (a == "--weight-decay") o.weight_decay = std::stod(value());
    else if (a == "--loader-threads") o.loader_threads = std::stoul(value());
    else if (a == "--torch-threads") o.torch_threads = std::stoi(value());
    else if (a == "--log") o.log_path = value();
    else if (a == "--packing") {
      const std::string v = value();
      if (v != "packed" && v != "aligned") usage("--packing must be packed or aligned");
      o.aligned = v == "aligned";
    } else if (a == "--clusters") o.clusters = std::stoul(value());
    else if (a == "--probe-budget") o.probe_budget = std::stod(value());
    else if (a == "--rollout-length") o.rollout_length = std::stoll(value());
    else if (a == "--merge-cluster-budgets") o.merge_budgets = std::stoi(value());
    else if (a == "--refresh-mode") {
      o.refresh_mode = value();
      if (o.refresh_mode != "when_ready" && o.refresh_mode != "at_step") usage("--refresh-mode must be when_ready or at_step");
    }
    else if (a == "--quiet") o.quiet = true;
    else usage(("unknown argument " + a).c_str());
  }
  if (o.pool.empty() || o.reference.empty() || o.tokenizer.empty() || o.method.empty() || o.out.empty())
    usage("--pool, --reference, --tokenizer, --method and --out are required");
  static const char* kMethods[] = {"random", "importance", "individual", "individual_topk", "group",
                                   "group_no_relations", "group_no_clusters", "group_no_prior", "plain"};
  if (std::find(std::begin(kMethods), std::end(kMethods), o.method) == std::end(kMethods))
    usage("--method must be random, importance, individual, individual_topk, group, group_no_relations, "
          "group_no_clusters, group_no_prior or plain");
  if (o.steps < 1 || o.eval_every < 1 || o.eval_rows < 1 || o.probe_ref_rows < 1 || o.batch < 1 || o.seq_len < 2)
    usage("sizes must be positive (seq-len >= 2)");
  return o;
}

std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

std::string json_str(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\', o += c;
    else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      o += buf;
    } else o += c;
  }
  return o + "\"";
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  try {
    if (o.torch_threads > 0) torch::set_num_threads(o.torch_threads);
    const auto t_setup = Clock::now();
    auto tokenizer = groupmates::Tokenizer::load(o.tokenizer);

    // Reference rows: disjoint, evenly spaced probe and evaluation subsets.
    const auto rows = reference_rows(o.reference, *tokenizer, o.seq_len);
    const int64_t n = static_cast<int64_t>(rows.size());
    if (n < o.probe_ref_rows + 1)
      throw groupmates::Error(groupmates::ErrorCode::kInvalidConfig, o.reference,
                              "too small: " + std::to_string(n) + " rows of " + std::to_string(o.seq_len) + " tokens");
    const auto split = tiny_gpt_training::split_reference(n, o.probe_ref_rows, o.eval_rows);
    const std::vector<size_t>& probe_idx = split.probe;
    const std::vector<size_t>& eval_idx = split.eval;
    const auto probe_batches = batches_of(rows, probe_idx, 16);
    const auto eval_batches = batches_of(rows, eval_idx, 32);

    // Model + optimiser; the probe target wraps the live pair and is used for the real steps too.
    groupmates::TinyGptConfig mc =
        tiny_gpt_training::tiny_gpt_config(tokenizer->vocab_size(), o.seq_len, o.d_model, o.layers, o.heads, o.seed);
    const int64_t pad_id = 0;  // the pool tokenizer's --pad_id (bench_efficiency.py)
    if (o.aligned) mc.ignore_id = pad_id;
    auto model = std::make_shared<groupmates::TinyGpt>(mc);
    groupmates::ModuleProbeTargetConfig tc;
    tc.grad_clip_norm = 1.0;
    const auto target = tiny_gpt_training::tiny_gpt_target(mc, model, o.lr, o.weight_decay, probe_batches, tc);

    // Loader: the pool, endless (the budget is trainer steps), library defaults for selection/probes.
    groupmates::LoaderConfig config;
    groupmates::SourceConfig pool;
    pool.name = "pool";
    pool.format = groupmates::SourceFormat::kJsonl;
    pool.paths = {o.pool};
    pool.tokenizer_model = o.tokenizer;
    config.sources = {pool};
    config.sequence_length = o.seq_len;
    config.batch_size = o.batch;
    config.seed = o.seed;
    config.epochs = 0;
    config.eos_id = tokenizer->eos_id();
    config.vocab_size = tokenizer->vocab_size();
    config.bad_input = groupmates::BadInputPolicy::kSkip;
    config.num_threads = o.loader_threads;
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
    if (o.probe_budget >= 0) probes.budget = o.probe_budget;
    if (o.rollout_length > 0) probes.rollout_length = static_cast<uint32_t>(o.rollout_length);
    if (o.merge_budgets >= 0) selection.merge_cluster_budgets = o.merge_budgets != 0;
    if (!o.refresh_mode.empty())
      selection.refresh_mode = o.refresh_mode == "at_step" ? groupmates::RefreshMode::kAtStep : groupmates::RefreshMode::kWhenReady;
    selection.seed = o.seed;
    if (o.clusters > 0) selection.clusters = o.clusters;
    selection.log_path = o.log_path;
    const double setup_seconds = since(t_setup);

    if (!o.quiet)
      std::fprintf(stderr,
                   "[%s seed %llu] vocab %lld, T %u, B %u, steps %lld, d_model %lld x %lld layers (%lld params), "
                   "reference rows %lld (probe %zu, eval %zu)\n",
                   o.method.c_str(), static_cast<unsigned long long>(o.seed), static_cast<long long>(mc.vocab_size),
                   o.seq_len, o.batch, static_cast<long long>(o.steps), static_cast<long long>(o.d_model),
                   static_cast<long long>(o.layers), static_cast<long long>(model->num_parameters()),
                   static_cast<long long>(n), probe_idx.size(), eval_idx.size());

    const auto t_run = Clock::now();
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
    struct Sp { int64_t step; uint64_t refreshes; double spearman, spearman_scaled; };
    std::vector<Sp> spearman;
    std::map<std::pair<uint32_t, uint64_t>, uint64_t> selected;  // (source, document) -> rows
    struct Scored { uint64_t document; double u; uint64_t version; };
    std::vector<Scored> scored;  // emitted rows with a predicted influence (not warm-up)
    double wait_s = 0, train_s = 0, on_step_s = 0, eval_s = 0, train_loss_ema = NAN;
    int64_t pad_tokens = 0;  // trained-on rows' padding (aligned packing), not in the loss
    uint64_t last_refreshes = 0;
    int64_t step = 0;
    auto evaluate = [&](int64_t s) {
      const auto t = Clock::now();
      const double l = mean_loss(*model, eval_batches);
      const double tokens = static_cast<double>(s) * o.batch * o.seq_len;
      const double overhead =
          selection.mode == groupmates::SelectionMode::kNone ? 0.0 : loader->selection_stats().cost.overhead_flops();
      curve.push_back({s, tokens, l, since(t_run) - eval_s, 3.0 * flops_per_token * tokens + overhead});
      eval_s += since(t);
      if (!o.quiet)
        std::fprintf(stderr, "[%s seed %llu] step %lld/%lld  ref loss %.4f  train %.3f  %.0f s\n", o.method.c_str(),
                     static_cast<unsigned long long>(o.seed), static_cast<long long>(s),
                     static_cast<long long>(o.steps), l, train_loss_ema, since(t_run));
    };
    auto poll = [&](int64_t s) {
      if (selection.mode == groupmates::SelectionMode::kNone) return;
      const auto st = loader->selection_stats();
      if (st.refreshes != last_refreshes) {
        last_refreshes = st.refreshes;
        spearman.push_back({s, st.refreshes, st.last_heldout_spearman, st.last_heldout_spearman_scaled});
      }
    };

    evaluate(0);
    for (; step < o.steps; ++step) {
      auto t = Clock::now();
      auto batch = loader->next();
      wait_s += since(t);
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
      t = Clock::now();
      const double l = target->train_step(batch->input_ids);
      train_s += since(t);
      train_loss_ema = std::isnan(train_loss_ema) ? l : 0.95 * train_loss_ema + 0.05 * l;
      t = Clock::now();
      loader->on_step(step, probing ? target.get() : nullptr);
      on_step_s += since(t);
      if ((step + 1) % 10 == 0) poll(step + 1);
      if ((step + 1) % o.eval_every == 0 || step + 1 == o.steps) evaluate(step + 1);
    }
    const double run_s = since(t_run);
    groupmates::SelectionStats st;
    if (selection.mode != groupmates::SelectionMode::kNone) {
      poll(step);
      st = loader->selection_stats();
    }
    loader.reset();  // waits for an in-flight probe
    const double total_s = since(t_run);

    std::ostringstream j;
    j << "{\"method\": " << json_str(o.method) << ", \"seed\": " << o.seed << ",\n";
    j << " \"settings\": {\"pool\": " << json_str(o.pool) << ", \"reference\": " << json_str(o.reference)
      << ", \"tokenizer\": " << json_str(o.tokenizer) << ", \"vocab\": " << mc.vocab_size << ", \"steps\": " << o.steps
      << ", \"batch\": " << o.batch << ", \"seq_len\": " << o.seq_len << ", \"d_model\": " << o.d_model
      << ", \"layers\": " << o.layers << ", \"heads\": " << o.heads << ", \"params\": " << model->num_parameters()
      << ", \"lr\": " << num(o.lr) << ", \"weight_decay\": " << num(o.weight_decay) << ", \"eval_every\": " << o.eval_every
      << ", \"eval_rows\": " << eval_idx.size() << ", \"probe_ref_rows\": " << probe_idx.size()
      << ", \"reference_rows\": " << n << ", \"window_size\": " << selection.window_size
      << ", \"ratio\": " << num(selection.ratio) << ", \"clusters\": " << selection.clusters
      << ", \"probe_interval\": " << probes.interval_steps << ", \"rollout_length\": " << probes.rollout_length
      << ", \"torch_threads\": " << torch::get_num_threads() << ", \"packing\": \"" << (o.aligned ? "aligned" : "packed")
      << "\", \"pad_tokens\": " << pad_tokens << "},\n";
    j << " \"curve\": [";
    for (size_t i = 0; i < curve.size(); ++i)
      j << (i ? ", " : "") << "[" << curve[i].step << ", " << num(curve[i].tokens) << ", " << num(curve[i].loss) << ", "
        << num(curve[i].seconds) << ", " << num(curve[i].flops) << "]";
    j << "],\n \"spearman_history\": [";
    for (size_t i = 0; i < spearman.size(); ++i)
      j << (i ? ", " : "") << "[" << spearman[i].step << ", " << spearman[i].refreshes << ", " << num(spearman[i].spearman)
        << ", " << num(spearman[i].spearman_scaled) << "]";
    j << "],\n \"selected\": [";
    size_t k = 0;
    for (const auto& [key, count] : selected) j << (k++ ? ", " : "") << "[" << key.first << ", " << key.second << ", " << count << "]";
    j << "],\n \"scored\": [";
    for (size_t i = 0; i < scored.size(); ++i)
      j << (i ? ", " : "") << "[" << scored[i].document << ", " << num(scored[i].u) << ", " << scored[i].version << "]";
    j << "],\n \"timing\": {\"setup_seconds\": " << num(setup_seconds) << ", \"run_seconds\": " << num(run_s)
      << ", \"total_seconds\": " << num(total_s) << ", \"loader_wait_seconds\": " << num(wait_s)
      << ", \"train_seconds\": " << num(train_s) << ", \"on_step_seconds\": " << num(on_step_s)
      << ", \"eval_seconds\": " << num(eval_s) << ", \"run_seconds_without_eval\": " << num(run_s - eval_s) << "},\n";
    const auto& p = st.probes;
    const auto& c = st.cost;
    j << " \"cost\": {\"flops_per_token\": " << num(flops_per_token) << ", \"train_flops\": "
      << num(3.0 * flops_per_token * double(step) * o.batch * o.seq_len) << ", \"probe_flops\": " << num(c.probe_flops)
      << ", \"refresh_flops\": " << num(c.refresh_flops) << ", \"scoring_flops\": " << num(c.scoring_flops)
      << ", \"probe_train_tokens\": " << num(c.probe_train_tokens) << ", \"probe_eval_tokens\": " << num(c.probe_eval_tokens)
      << ", \"scoring_seconds\": " << num(c.scoring_seconds) << ", \"selection_seconds\": " << num(c.selection_seconds)
      << ", \"wait_scoring_seconds\": " << num(c.wait_scoring_seconds) << ", \"wait_refresh_seconds\": "
      << num(c.wait_refresh_seconds) << ", \"wait_probe_seconds\": " << num(c.wait_probe_seconds)
      << ", \"snapshot_seconds\": " << num(c.snapshot_seconds) << ", \"probes_skipped_budget\": " << st.probes_skipped_budget
      << ", \"refreshes_failed\": " << st.refreshes_failed << ", \"prior_weight\": " << num(st.prior_weight)
      << ", \"switches\": " << st.switches.size() << "},\n";
    j << " \"selection\": {\"windows\": " << st.windows << ", \"warmup_windows\": " << st.warmup_windows
      << ", \"seen\": " << st.seen << ", \"selected\": " << st.selected << ", \"model_version\": " << st.model_version
      << ", \"refreshes\": " << st.refreshes << ", \"refresh_seconds\": " << num(st.refresh_seconds)
      << ", \"refresh_wait_seconds\": " << num(st.refresh_wait_seconds)
      << ", \"last_heldout_spearman\": " << num(st.last_heldout_spearman)
      << ", \"last_heldout_spearman_scaled\": " << num(st.last_heldout_spearman_scaled) << ",\n  \"probes\": {\"started\": "
      << p.probes_started << ", \"completed\": " << p.probes_completed << ", \"skipped_busy\": " << p.probes_skipped_busy
      << ", \"failed\": " << p.probes_failed << ", \"rollouts_kept\": " << p.rollouts_kept
      << ", \"rollouts_discarded\": " << p.rollouts_discarded << ", \"rollouts_skipped\": " << p.rollouts_skipped
      << ", \"snapshot_seconds\": " << num(p.snapshot_seconds) << ", \"probe_seconds\": " << num(p.probe_seconds)
      << ", \"wall_seconds\": " << num(p.wall_seconds) << ", \"probe_share\": " << num(p.probe_share)
      << ", \"snapshot_share\": " << num(p.snapshot_share) << ", \"seconds_per_rollout\": " << num(p.seconds_per_rollout)
      << "}}}\n";
    const std::string tmp = o.out + ".tmp";
    {
      std::ofstream f(tmp);
      f << j.str();
      if (!f) throw groupmates::Error(groupmates::ErrorCode::kIo, tmp, "cannot write");
    }
    if (std::rename(tmp.c_str(), o.out.c_str()) != 0)
      throw groupmates::Error(groupmates::ErrorCode::kIo, o.out, "cannot rename the result into place");
    if (!o.quiet)
      std::fprintf(stderr, "[%s seed %llu] done: final ref loss %.4f, %.1f s (loader wait %.1f%%, train %.1f s, eval %.1f s)\n",
                   o.method.c_str(), static_cast<unsigned long long>(o.seed), curve.back().loss, total_s,
                   100.0 * wait_s / run_s, train_s, eval_s);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_efficiency: %s\n", e.what());
    return 1;
  }
  return 0;
}
