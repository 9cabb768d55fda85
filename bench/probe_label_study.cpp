// probe_label_study: how reproducible is a probe label, and what would make it more so? (issue 13)
// A study tool, not a benchmark: bench/probe_label_study.py runs it and analyses its JSON
// (docs/PROBE_LABELS.md has the design and the measured figures).
//
//   probe_label_study --pool POOL.jsonl --reference REF.jsonl --tokenizer M.model --seed S --out STUDY.json
//
// The same TinyGpt + AdamW (betas 0.9/0.95, grad clip 1) as bench_efficiency, trained on the plain
// pool stream for --snapshots steps; at each snapshot, from the same weights and optimiser state
// and with the probes' lr scale, it records the loss of EVERY reference row (the library's 16 probe
// rows first, then up to --extra-ref-rows others) so that a label can be formed afterwards from any
// subset of them:
//
//  * single:  per candidate c (K rows of the stream after the snapshot), one step on c from the
//             snapshot: delta[c][r] = loss_r(after) - loss_r(snapshot)   (position 0 of a rollout)
//  * shared:  per context j (--contexts), a prefix of --prefix rows (fixed per context, drawn from the
//             candidates), then for every c one step on c from the prefix's end: the label of c at
//             position prefix+1 when every candidate shares the same predecessors
//  * rollout: per candidate c and repeat j, an independent random prefix (as the library's random
//             rollouts draw them), then c: delta at the prefix end and after c; and a control step on
//             a fixed row x0 after the same prefix (a paired design: the label minus the control's
//             cancels what the prefix leaves in the optimiser's momentum)
//  * graddot: at the snapshot, <g_ref, P g_c> with P the AdamW preconditioner 1 / (sqrt(v_hat) + eps)
//             and g_ref the gradient of the mean loss of the 16 probe rows and of the others:
//             a first-order label costing one backward per candidate
//
// Per candidate also: the importance prior as the loader computes it (DSIR against the 16 probe
// rows, the pool estimate from every row streamed so far, standardised over the candidates) and the
// frozen n-gram bag of the loader's default encoder (for the model-side study); variants of the prior
// (1- or 3-grams, mixes 0.2 and 0.9, the reference from all or only the other reference rows); and what
// the live model knows of the row: its loss at the snapshot (`cand_loss`, one forward), its gradient's
// norm, and two free proxies of its typicality (mean token surprisal under the stream's unigram and
// interpolated bigram counts).
#include <groupmates/error.h>
#include <groupmates/loader.h>
#include <groupmates/module_probe_target.h>
#include <groupmates/selection_config.h>
#include <groupmates/tokenizer.h>
#include <groupmates/engine/hashed_ngram_encoder.h>
#include "tiny_gpt/tiny_gpt.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "example_cli.h"
#include "online/influence_model_factory.h"
#include "selection/importance_estimator.h"
#include "tiny_gpt_training.h"
#include "util/stopwatch.h"

namespace {

using Json = nlohmann::ordered_json;
using groupmates::ModuleProbeTarget;
using groupmates::TinyGpt;

struct Options : tiny_gpt_training::TrainingSettings {
  std::string pool, reference, tokenizer, out;
  std::vector<int64_t> snapshots = {100, 300};
  int64_t candidates = 48;
  int64_t contexts = 2;
  int64_t prefix = 3;
  int64_t repeats = 2;
  int64_t extra_ref_rows = 128;
  double lr_scale = 0.3;
  bool fixed_candidates = false;
  int64_t top_of = 0;
  bool quiet = false;
};

// Per-row mean next-token loss of `rows` [N, T], in eval mode, no gradient.
std::vector<double> row_losses(TinyGpt& model, const torch::Tensor& rows) {
  torch::NoGradGuard no_grad;
  const bool was = model.is_training();
  model.eval();
  std::vector<double> out;
  const int64_t t = rows.size(1);
  for (int64_t i = 0; i < rows.size(0); i += 32) {
    const auto b = rows.slice(0, i, std::min(rows.size(0), i + 32));
    const auto logits = model.forward(b.slice(1, 0, t - 1));
    const auto nll = torch::nll_loss(torch::log_softmax(logits.reshape({-1, logits.size(-1)}), -1),
                                     b.slice(1, 1, t).reshape({-1}), {}, at::Reduction::None);
    const auto per_row = nll.view({b.size(0), t - 1}).mean(1).to(torch::kDouble).contiguous();
    out.insert(out.end(), per_row.data_ptr<double>(), per_row.data_ptr<double>() + per_row.numel());
  }
  model.train(was);
  return out;
}

std::vector<double> minus(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return d;
}

Json rounded(const std::vector<double>& v) {
  Json a = Json::array();
  for (double x : v) a.push_back(std::stod(fmt::format("{:.7g}", x)));
  return a;
}

TinyGpt& gpt(groupmates::ProbeTarget& t) {
  return static_cast<TinyGpt&>(dynamic_cast<ModuleProbeTarget&>(t).module());
}

// Flattened gradient of the mean loss of `rows` at the target's weights (no step taken).
torch::Tensor flat_grad(ModuleProbeTarget& target, const torch::Tensor& rows) {
  auto& m = static_cast<TinyGpt&>(target.module());
  m.train();
  m.zero_grad();
  m.loss(rows).backward();
  std::vector<torch::Tensor> parts;
  for (const auto& p : m.parameters()) parts.push_back(p.grad().defined() ? p.grad().flatten().clone() : torch::zeros({p.numel()}));
  m.zero_grad();
  return torch::cat(parts);
}

// AdamW's per-coordinate preconditioner 1 / (sqrt(v / (1 - beta2^step)) + eps), flattened like flat_grad.
torch::Tensor preconditioner(ModuleProbeTarget& target) {
  auto& opt = target.optimizer();
  auto& state = opt.state();
  std::vector<torch::Tensor> parts;
  for (const auto& p : target.module().parameters()) {
    std::ostringstream key;
    key << p.unsafeGetTensorImpl();
    auto it = state.find(key.str());
    if (it == state.end()) {
      parts.push_back(torch::ones({p.numel()}));
      continue;
    }
    auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
    const double correction = 1.0 - std::pow(0.95, double(s.step()));
    parts.push_back((1.0 / ((s.exp_avg_sq() / correction).sqrt() + 1e-8)).flatten());
  }
  return torch::cat(parts);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app("probe label reproducibility study (bench/probe_label_study.py drives it)", "probe_label_study");
  tiny_gpt_training::add_training_options(app, o);
  app.add_option("--pool", o.pool, "candidate pool JSONL")->required();
  app.add_option("--reference", o.reference, "held-out reference set JSONL")->required();
  app.add_option("--tokenizer", o.tokenizer, "SentencePiece model of both")->required();
  app.add_option("--out", o.out, "the study's JSON")->required();
  app.add_option("--snapshots", o.snapshots, "trainer steps at which to study labels")->capture_default_str();
  app.add_option("--candidates", o.candidates, "candidates per snapshot")->capture_default_str();
  app.add_option("--contexts", o.contexts, "shared prefixes per snapshot")->capture_default_str();
  app.add_option("--prefix", o.prefix, "rows before the candidate in shared / rollout designs")->capture_default_str();
  app.add_option("--repeats", o.repeats, "independent random prefixes per candidate")->capture_default_str();
  app.add_option("--extra-ref-rows", o.extra_ref_rows, "reference rows beside the 16 probe rows")->capture_default_str();
  app.add_option("--lr-scale", o.lr_scale, "probe steps use lr * this (ProbeConfig::lr_scale)")->capture_default_str();
  app.add_flag("--fixed-candidates", o.fixed_candidates,
               "label the first snapshot's candidates again at every later snapshot (a row's label over time)");
  app.add_option("--top-of", o.top_of,
                 "draw this many rows and keep the candidates with the highest importance prior (0: the next rows), "
                 "as a replay buffer holds the best rows")->capture_default_str();
  app.add_flag("--quiet", o.quiet, "no progress on stderr");
  example_cli::parse_or_exit(app, argc, argv);
  try {
    torch::set_num_threads(1);
    auto tokenizer = groupmates::Tokenizer::load(o.tokenizer);
    const auto ref = tiny_gpt_training::load_reference(o.reference, *tokenizer, o.seq_len, o.probe_ref_rows, o.extra_ref_rows);
    std::vector<torch::Tensor> all_ref(ref.probe_batches);
    all_ref.insert(all_ref.end(), ref.eval_batches.begin(), ref.eval_batches.end());
    const torch::Tensor ref_rows = torch::cat(all_ref);  // probe rows first
    const torch::Tensor probe_rows = torch::cat(ref.probe_batches);
    const torch::Tensor other_rows = torch::cat(ref.eval_batches);

    groupmates::TinyGptConfig mc =
        groupmates::tiny_gpt_config(tokenizer->vocab_size(), o.seq_len, o.d_model, o.layers, o.heads, o.seed);
    auto model = std::make_shared<TinyGpt>(mc);
    groupmates::ModuleProbeTargetConfig tc;
    tc.grad_clip_norm = 1.0;
    auto target = tiny_gpt_training::tiny_gpt_target(mc, model, o.lr, o.weight_decay, ref.probe_batches, tc);

    groupmates::LoaderConfig config = tiny_gpt_training::pool_loader_config(
        o.pool, o.tokenizer, *tokenizer, o.seq_len, o.batch, o.seed, 1);
    groupmates::GroupMatesLoader loader(config);

    groupmates::SelectionConfig sel;
    sel.seed = o.seed;
    groupmates::ImportanceConfig ic;
    ic.buckets = sel.importance_buckets;
    ic.reference_mix = sel.importance_mix;
    ic.seed = o.seed;
    groupmates::ImportanceEstimator importance(ic);
    const torch::Tensor pr = probe_rows.contiguous();
    importance.set_reference(pr.data_ptr<int64_t>(), pr.size(0), pr.size(1));
    // Variants of the prior: other n-gram orders and mixes, and the reference estimated from more rows.
    std::vector<std::pair<std::string, groupmates::ImportanceEstimator>> variants;
    {
      auto add = [&](const std::string& name, groupmates::ImportanceConfig c, const torch::Tensor& r) {
        groupmates::ImportanceEstimator e(c);
        const torch::Tensor rc = r.contiguous();
        e.set_reference(rc.data_ptr<int64_t>(), rc.size(0), rc.size(1));
        variants.emplace_back(name, std::move(e));
      };
      auto c1 = ic; c1.max_ngram = 1; add("imp_uni", c1, probe_rows);
      auto c3 = ic; c3.max_ngram = 3; add("imp_tri", c3, probe_rows);
      auto m2 = ic; m2.reference_mix = 0.2; add("imp_mix02", m2, probe_rows);
      auto m9 = ic; m9.reference_mix = 0.9; add("imp_mix09", m9, probe_rows);
      add("imp_allref", ic, ref_rows);
      add("imp_otherref", ic, other_rows);
    }
    auto influence = groupmates::make_influence_model(sel, -1);
    auto& encoder = dynamic_cast<groupmates::HashedNgramEncoder&>(influence->encoder());

    // Typicality of a row: its mean token surprisal under the unigram counts of every row streamed so far
    // (add-one smoothed), and under a bigram model interpolated half-and-half with them.
    std::unordered_map<int64_t, double> uni;
    std::unordered_map<uint64_t, double> bi;
    double uni_total = 0;
    const auto pair_key = [](int64_t a, int64_t b) { return (uint64_t(a) << 32) ^ uint64_t(b); };
    auto count_rows = [&](const torch::Tensor& rows) {
      const torch::Tensor c = rows.contiguous();
      const int64_t* t = c.data_ptr<int64_t>();
      for (int64_t r = 0; r < c.size(0); ++r, t += c.size(1))
        for (int64_t j = 0; j < c.size(1); ++j) {
          uni[t[j]] += 1, uni_total += 1;
          if (j > 0) bi[pair_key(t[j - 1], t[j])] += 1;
        }
    };
    auto surprisal = [&](const int64_t* t, int64_t width, bool bigram) {
      const double vocab = double(tokenizer->vocab_size());
      const auto count = [](const auto& map, auto key) { const auto it = map.find(key); return it == map.end() ? 0.0 : it->second; };
      double s = 0;
      for (int64_t j = 0; j < width; ++j) {
        double p = (count(uni, t[j]) + 1) / (uni_total + vocab);
        const double before = j > 0 ? count(uni, t[j - 1]) : 0;
        if (bigram && before > 0) p = 0.5 * count(bi, pair_key(t[j - 1], t[j])) / before + 0.5 * p;
        s -= std::log(p);
      }
      return s / double(width);
    };
    std::mt19937_64 rng(o.seed * 7919 + 17);
    Json out;
    out["settings"] = {{"seed", o.seed}, {"lr_scale", o.lr_scale}, {"probe_ref_rows", ref.split.probe.size()},
                       {"extra_ref_rows", ref.split.eval.size()}, {"candidates", o.candidates},
                       {"contexts", o.contexts}, {"prefix", o.prefix}, {"repeats", o.repeats},
                       {"fixed_candidates", o.fixed_candidates}, {"top_of", o.top_of},
                       {"params", model->num_parameters()}, {"seq_len", o.seq_len}, {"batch", o.batch}};
    out["snapshots"] = Json::array();
    int64_t step = 0;
    torch::Tensor fixed;  // the candidates (with the control row last)
    const groupmates::util::Stopwatch clock;
    for (int64_t snap : o.snapshots) {
      for (; step < snap; ++step) {
        auto b = loader.next();
        const auto ids = b->input_ids.contiguous();
        importance.observe(ids.data_ptr<int64_t>(), ids.size(0), ids.size(1));
        for (auto& v : variants) v.second.observe(ids.data_ptr<int64_t>(), ids.size(0), ids.size(1));
        count_rows(b->input_ids);
        target->train_step(b->input_ids);
      }
      // Candidates: the stream's next rows (not trained on).
      const bool fresh = !o.fixed_candidates || !fixed.defined();
      if (fresh) {
        std::vector<torch::Tensor> rows;
        int64_t have = 0;
        const int64_t want = std::max(o.top_of, o.candidates + 1);
        while (have < want) {
          auto b = loader.next();
          rows.push_back(b->input_ids);
          have += b->input_ids.size(0);
        }
        torch::Tensor drawn = torch::cat(rows).slice(0, 0, want).contiguous();
        importance.observe(drawn.data_ptr<int64_t>(), drawn.size(0), drawn.size(1));
        for (auto& v : variants) v.second.observe(drawn.data_ptr<int64_t>(), drawn.size(0), drawn.size(1));
        if (o.top_of > o.candidates + 1) {  // the best by the prior, then the control row x0 from the rest
          const auto all = importance.score(drawn.data_ptr<int64_t>(), drawn.size(0), drawn.size(1));
          std::vector<int64_t> order(all.size());
          std::iota(order.begin(), order.end(), 0);
          std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return all[a] > all[b]; });
          order.resize(o.candidates);
          order.push_back(want - 1);
          drawn = drawn.index_select(0, torch::tensor(order, torch::kLong)).contiguous();
        }
        fixed = drawn.slice(0, 0, o.candidates + 1).contiguous();  // last = control x0
      }
      const torch::Tensor cand = fixed;
      const auto scores = importance.score(cand.data_ptr<int64_t>(), o.candidates, cand.size(1));
      Json variant_scores;
      for (auto& v : variants) {
        variant_scores[v.first] = rounded(v.second.score(cand.data_ptr<int64_t>(), o.candidates, cand.size(1)));
      }
      const auto prior = groupmates::importance_prior(scores);
      torch::Tensor bags;
      {
        torch::NoGradGuard no_grad;
        bags = encoder.bag_embed(cand.slice(0, 0, o.candidates)).to(torch::kDouble).contiguous();
      }
      const torch::Tensor x0 = cand.slice(0, o.candidates, o.candidates + 1);
      auto cand_row = [&](int64_t c) { return cand.slice(0, c, c + 1); };
      const auto base = row_losses(*model, ref_rows);

      Json js;
      js["step"] = snap;
      js["base"] = rounded(base);
      js["prior"] = rounded(std::vector<double>(prior.begin(), prior.end()));
      js["importance"] = rounded(scores);
      js["variants"] = variant_scores;
      {
        if (fresh) count_rows(cand);
        std::vector<double> su, sb;
        for (int64_t c = 0; c < o.candidates; ++c) {
          su.push_back(surprisal(cand[c].data_ptr<int64_t>(), cand.size(1), false));
          sb.push_back(surprisal(cand[c].data_ptr<int64_t>(), cand.size(1), true));
        }
        js["surprisal_uni"] = rounded(su);
        js["surprisal_bi"] = rounded(sb);
      }
      js["cand_loss"] = rounded(row_losses(*model, cand.slice(0, 0, o.candidates)));
      js["bags"] = Json::array();
      for (int64_t c = 0; c < o.candidates; ++c)
        js["bags"].push_back(rounded(std::vector<double>(bags[c].data_ptr<double>(), bags[c].data_ptr<double>() + bags.size(1))));
      js["tokens"] = Json::array();
      for (int64_t c = 0; c < o.candidates; ++c)
        js["tokens"].push_back(std::vector<int64_t>(cand[c].data_ptr<int64_t>(), cand[c].data_ptr<int64_t>() + cand.size(1)));

      // single
      Json single = Json::array();
      for (int64_t c = 0; c < o.candidates; ++c) {
        auto copy = target->clone();
        copy->set_lr_scale(o.lr_scale);
        copy->train_step(cand_row(c));
        single.push_back(rounded(minus(row_losses(gpt(*copy), ref_rows), base)));
      }
      js["single"] = single;
      if (!o.quiet) fmt::print(stderr, "[seed {}] step {}: single done, {:.0f} s\n", o.seed, snap, clock.seconds());

      // graddot
      {
        auto copy = target->clone();
        auto& mt = dynamic_cast<ModuleProbeTarget&>(*copy);
        const auto p = preconditioner(mt);
        const auto g_probe = flat_grad(mt, probe_rows) * p;
        const auto g_other = flat_grad(mt, other_rows) * p;
        std::vector<double> dot_probe, dot_other, dot_plain, gnorm;
        const auto g_other_plain = flat_grad(mt, other_rows);
        for (int64_t c = 0; c < o.candidates; ++c) {
          const auto g = flat_grad(mt, cand_row(c));
          dot_probe.push_back(-torch::dot(g_probe, g).item<double>());
          dot_other.push_back(-torch::dot(g_other, g).item<double>());
          dot_plain.push_back(-torch::dot(g_other_plain, g).item<double>());
          gnorm.push_back(g.norm().item<double>());
        }
        js["cand_grad_norm"] = rounded(gnorm);
        js["graddot_probe"] = rounded(dot_probe);
        js["graddot_other"] = rounded(dot_other);
        js["graddot_plain_other"] = rounded(dot_plain);
      }

      // shared prefixes (drawn from the candidates)
      Json shared = Json::array();
      for (int64_t j = 0; j < o.contexts; ++j) {
        std::vector<int64_t> pre;
        for (int64_t k = 0; k < o.prefix; ++k) pre.push_back(static_cast<int64_t>(rng() % o.candidates));
        auto ctx = target->clone();
        ctx->set_lr_scale(o.lr_scale);
        for (int64_t k : pre) ctx->train_step(cand_row(k));
        const auto ctx_base = row_losses(gpt(*ctx), ref_rows);
        Json deltas = Json::array();
        for (int64_t c = 0; c < o.candidates; ++c) {
          auto copy = ctx->clone();
          copy->train_step(cand_row(c));
          deltas.push_back(rounded(minus(row_losses(gpt(*copy), ref_rows), ctx_base)));
        }
        shared.push_back({{"prefix", pre}, {"delta", deltas}});
      }
      js["shared"] = shared;
      if (!o.quiet) fmt::print(stderr, "[seed {}] step {}: shared done, {:.0f} s\n", o.seed, snap, clock.seconds());

      // independent random prefixes, with a paired control step
      Json rollout = Json::array();
      for (int64_t j = 0; j < o.repeats; ++j) {
        Json per = Json::array();
        for (int64_t c = 0; c < o.candidates; ++c) {
          std::vector<int64_t> pre;
          while (static_cast<int64_t>(pre.size()) < o.prefix) {
            const int64_t k = static_cast<int64_t>(rng() % o.candidates);
            if (k != c) pre.push_back(k);
          }
          auto ctx = target->clone();
          ctx->set_lr_scale(o.lr_scale);
          for (int64_t k : pre) ctx->train_step(cand_row(k));
          const auto before = row_losses(gpt(*ctx), ref_rows);
          auto ctrl = ctx->clone();
          ctrl->train_step(x0);
          const auto control = minus(row_losses(gpt(*ctrl), ref_rows), before);
          ctx->train_step(cand_row(c));
          const auto after = minus(row_losses(gpt(*ctx), ref_rows), before);
          per.push_back({{"prefix", pre}, {"before", rounded(minus(before, base))}, {"delta", rounded(after)},
                         {"control", rounded(control)}});
        }
        rollout.push_back(per);
      }
      js["rollout"] = rollout;
      if (!o.quiet) fmt::print(stderr, "[seed {}] step {}: rollouts done, {:.0f} s\n", o.seed, snap, clock.seconds());
      out["snapshots"].push_back(js);
    }
    out["flops_per_token"] = target->forward_flops_per_token();
    out["seconds"] = clock.seconds();
    std::ofstream f(o.out);
    f << out.dump() << "\n";
    if (!f) throw groupmates::Error(groupmates::ErrorCode::kIo, o.out, "cannot write");
  } catch (const std::exception& e) {
    fmt::print(stderr, "probe_label_study: {}\n", e.what());
    return 1;
  }
  return 0;
}
