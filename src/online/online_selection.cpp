#include "online/online_selection.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <type_traits>

#include "groupmates/error.h"
#include "online/influence_model_factory.h"
#include "online/selection_state.h"
#include "util/stopwatch.h"
#include "util/permutation.h"

namespace groupmates {

OnlineSelection::OnlineSelection(StreamingLoader& core, const LoaderConfig& loader, SelectionConfig selection,
                                 ProbeConfig probes, const LoaderState* restore)
    : core_(core), cfg_(std::move(selection)), probe_cfg_(std::move(probes)),
      encoder_pad_id_(loader.packing == PackingMode::kDocumentAligned ? loader.pad_id : -1),
      sequence_length_(loader.sequence_length), device_(default_device()),
      versions_([this] { return make_influence_model(cfg_, encoder_pad_id_); }, device_),
      clusters_(cfg_.clusters, cfg_.seed, device_), log_(cfg_.log_path) {
  scorer_ = std::make_unique<WindowScorer>(versions_.models());
  group_ = std::make_unique<ClusterGreedySelector>(
      cfg_.influence_prefilter ? BudgetMode::kInfluencePrefilter : BudgetMode::kUniformRatio, cfg_.prefilter_ratio,
      GreedyExecution::kAuto, cfg_.merge_cluster_budgets);
  random_ = std::make_unique<RandomSelector>(cfg_.seed);
  individual_ = std::make_unique<IndividualSelector>(cfg_.temperature, cfg_.seed);
  whole_window_ = std::make_unique<GreedySelector>();
  top_k_ = std::make_unique<IndividualSelector>(0.0, cfg_.seed);
  ImportanceConfig ic;
  ic.buckets = cfg_.importance_buckets;
  ic.reference_mix = cfg_.importance_mix;
  ic.pad_id = encoder_pad_id_;
  ic.seed = derive_seed(cfg_.seed, 0x696d70ULL);
  importance_ = std::make_unique<ImportanceEstimator>(ic);
  labels_ = std::make_shared<LabelBuffer>(cfg_.label_buffer_rollouts);
  refresher_ = std::make_unique<InfluenceRefresher>(cfg_, make_influence_model(cfg_, encoder_pad_id_),
                                                    make_influence_model(cfg_, encoder_pad_id_), labels_);
  if (probe_cfg_.interval_steps > 0 && uses_model()) {
    ProbeSchedulerConfig sc;
    sc.interval_steps = probe_cfg_.interval_steps;
    sc.first_step = probe_cfg_.first_step;
    sc.prober.rollout_length = probe_cfg_.rollout_length;
    sc.prober.rows_per_step = 1;
    sc.prober.max_rollouts = probe_cfg_.random_rollouts + probe_cfg_.neighbour_rollouts + 2 * probe_cfg_.bootstrap_pairs;
    sc.prober.max_seconds = probe_cfg_.max_seconds;
    sc.prober.lr_scale = probe_cfg_.lr_scale;
    sc.random_rollouts = probe_cfg_.random_rollouts;
    sc.neighbour_rollouts = probe_cfg_.neighbour_rollouts;
    sc.bootstrap_pairs = probe_cfg_.bootstrap_pairs;
    sc.seed = derive_seed(cfg_.seed, 0x70726f6265ULL);
    sc.timeout_seconds = probe_cfg_.timeout_seconds;
    scheduler_ = std::make_unique<ProbeScheduler>(sc, labels_);
    scheduler_->set_callback([this](int64_t step, const ProbeResult& result) { refresh(step, result); });
  }
  stats_.seen_per_cluster.assign(cfg_.clusters, 0);
  stats_.selected_per_cluster.assign(cfg_.clusters, 0);
  if (restore != nullptr) {
    this->restore(*restore, loader);
    return;
  }
  versions_.publish(refresher_->weights(), false);
  next_ = read_window();
}

// Re-reads and re-selects the current window exactly as the original run did.
void OnlineSelection::restore(const LoaderState& state, const LoaderConfig& loader) {
  SelectionState s = SelectionState::read(state.extra);
  if (s.world_size != core_.config().world_size || s.rank != core_.config().rank)  // resolved (rank_environment.h)
    throw Error(ErrorCode::kInvalidState, "LoaderState.extra.gm.world_size",
                "a selecting loader's state is per rank (its windows, centroids and model are its own): restore it "
                "on the same rank of the same number of ranks (saved: rank " + std::to_string(s.rank) + " of " +
                    std::to_string(s.world_size) + ")");
  if (s.mode != static_cast<uint64_t>(cfg_.mode) || s.window_size != cfg_.window_size)
    throw Error(ErrorCode::kInvalidState, "LoaderState.extra.gm.mode",
                "the state was saved with another selection mode or window size");
  versions_.set_next_number(s.next_loader_version);
  step_ = s.step;
  if (!s.labels.bytes.empty()) labels_->load(s.labels.bytes);
  s.visit_counters(stats_, [](const auto& saved, auto& live) { live = static_cast<std::decay_t<decltype(live)>>(saved); });
  failures_at_last_success_ = stats_.refreshes_failed;  // a run of failures starts afresh in a new process
  refresher_->load(s.trainer.bytes, s.refreshes > 0 || s.refreshes_gated > 0 || !s.pending.empty());
  refresher_->gate().load(s.gate.bytes, "LoaderState.extra.gm.gate");
  importance_->load(s.importance.bytes);
  versions_.publish(s.first_blob.bytes, s.first_trained, s.first_version);
  next_ = read_window();
  if (s.has_current) {
    if (!next_) throw Error(ErrorCode::kInvalidState, "LoaderState", "the saved window is past the end of the stream");
    clusters_.restore(s.kmeans.bytes, s.kmeans_version);
    importance_before_current_ = importance_->save();
    current_ = std::move(next_);
    next_.reset();
    select_current();
    if (s.second_version != s.first_version) versions_.publish(s.second_blob.bytes, s.second_trained, s.second_version);
    next_ = read_window();
    emit_pos_ = s.emit_pos;
    stats_.windows -= 1;  // select_current() counted the re-selected window again
    stats_.seen -= current_->host.batch_size;
    if (stats_.warmup_windows > 0 && !versions_.trained(current_->version)) stats_.warmup_windows -= 1;
  }
  for (const SavedRefresh& saved : s.pending) {
    Pending p;
    p.probe_step = saved.probe_step;
    p.effective_at = saved.effective_at;
    auto promise = std::make_shared<std::promise<std::string>>();
    promise->set_value(saved.weights.bytes);
    p.promise = promise;
    p.blob = promise->get_future().share();
    pending_.push_back(std::move(p));
  }
}

OnlineSelection::~OnlineSelection() {
  scheduler_.reset();  // waits for a probe in flight (it calls refresh on this object)
  if (current_ && current_->scored.valid()) current_->scored.wait();
  if (next_ && next_->scored.valid()) next_->scored.wait();
  scorer_.reset();
}

std::optional<OnlineSelection::Window> OnlineSelection::read_window() {
  LoaderState before = core_.state();
  auto host = core_.next();
  if (!host) return std::nullopt;
  Window w;
  w.core_before = std::move(before);
  w.index = w.core_before.batches;
  w.host = std::move(*host);
  w.tokens = to_tensor(w.host);
  w.version = versions_.current();
  if (uses_model()) w.scored = scorer_->score(w.tokens);
  return w;
}

const Selector& OnlineSelection::selector_for(bool informed) const {
  if (!informed) return *random_;
  switch (cfg_.mode) {
    case SelectionMode::kImportance: return *top_k_;
    case SelectionMode::kIndividual: return *individual_;
    case SelectionMode::kGroup: return *group_;
    case SelectionMode::kGroupNoClusters: return *whole_window_;
    default: return *random_;
  }
}

void OnlineSelection::select_current() {
  util::Stopwatch clock;
  ScoredWindow scored;
  if (current_->scored.valid()) scored = current_->scored.get();
  const double waited = clock.lap();
  const int64_t rows = current_->tokens.size(0), width = current_->tokens.size(1);
  // The importance prior: the running pool estimate takes this window in, then scores it.
  prior_ = torch::Tensor();
  if (importance_->has_reference()) {
    const torch::Tensor tokens = current_->tokens.contiguous();
    importance_->observe(tokens.data_ptr<int64_t>(), rows, width);
    prior_ = torch::tensor(importance_prior(importance_->score(tokens.data_ptr<int64_t>(), rows, width)), torch::kFloat);
  } else if (!uses_model()) {
    throw Error(ErrorCode::kInvalidConfig, "SelectionMode::kImportance",
                "needs reference rows: call GroupMatesLoader::set_reference(rows) before the first next()");
  }
  const bool use_prior = prior_.defined() && cfg_.importance_prior;
  SelectionInput in;
  torch::Tensor clusters;
  bool informed = true;  // selected on a score (else randomly: warm-up)
  if (uses_model()) {
    clusters = clusters_.update(scored.embeddings, current_->version);
    in.u = use_prior ? scored.u + scored.prior_weight * prior_.to(scored.u.device()) : scored.u;
    in.embeddings = scored.embeddings;
    in.cluster_ids = clusters;
    in.relation = cfg_.relations
                      ? RelationParams{scored.alpha, scored.tau,
                                       cfg_.nearest_pick_discount ? RelationAggregate::kNearest : RelationAggregate::kMean}
                      : RelationParams{1.0, 1e30, RelationAggregate::kMean};  // every r_ij = 1: rank by u alone
    informed = versions_.trained(current_->version) || use_prior;
  } else {
    in.u = prior_;
    clusters = torch::full({rows}, -1, torch::kLong);
  }
  in.window_seed = current_->index;
  const Selection sel = selector_for(informed).select(in, cfg_.ratio);
  order_ = sel.indices;
  emit_pos_ = 0;
  u_ = informed ? in.u.to(torch::kCPU, torch::kFloat).contiguous() : torch::full({rows}, NAN);
  cluster_ids_ = clusters.to(torch::kCPU, torch::kLong).contiguous();
  embeddings_ = scored.embeddings;
  const double selecting = clock.seconds();
  std::lock_guard<std::mutex> lock(stats_mu_);
  stats_.windows += 1;
  if (!informed) stats_.warmup_windows += 1;
  stats_.seen += current_->host.batch_size;
  stats_.model_version = current_->version;
  stats_.prior_weight = use_prior ? scored.prior_weight : 0.0;
  const int64_t* c = cluster_ids_.data_ptr<int64_t>();
  for (int64_t i = 0; i < cluster_ids_.size(0); ++i)
    if (c[i] >= 0) stats_.seen_per_cluster.at(c[i]) += 1;
  SelectionCost& cost = stats_.cost;
  cost.wait_scoring_seconds += waited;
  cost.selection_seconds += selecting;
  cost.scoring_seconds += scored.seconds;
  const double d = scored.embeddings.defined() ? double(scored.embeddings.size(1)) : 0.0;
  cost.scoring_flops += scored.flops + 2.0 * double(rows) * d * double(cfg_.clusters)  // k-means assignment
                        + 2.0 * double(rows) * d * double(order_.size()) / double(cfg_.clusters)  // greedy, per cluster
                        + (prior_.defined() ? double(rows) * double(width) * 2.0 : 0.0);  // importance: 1-2-grams
}

void OnlineSelection::apply_due_refreshes() {
  const bool when_ready = cfg_.refresh_mode == RefreshMode::kWhenReady;
  while (!pending_.empty()) {
    Pending& front = pending_.front();
    const bool ready = front.blob.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
    if (when_ready && !ready) {
      if (scheduler_->busy()) break;  // never wait: it takes effect at a later boundary
      // Idle and still unresolved: the probe threw before its refresh (ProbeStats::probes_failed).
      if (front.blob.wait_for(std::chrono::seconds(0)) != std::future_status::ready) front.promise->set_value("");
    }
    if (!when_ready && front.effective_at > step_) break;
    if (!ready) {
      const util::Stopwatch waited;
      scheduler_->wait_idle();
      // A probe that threw never reaches refresh(): nothing to publish.
      if (front.blob.wait_for(std::chrono::seconds(0)) != std::future_status::ready) front.promise->set_value("");
      std::lock_guard<std::mutex> lock(stats_mu_);
      const double w = waited.seconds();
      stats_.refresh_wait_seconds += w;
      stats_.cost.wait_refresh_seconds += w;
    }
    const Pending p = front;
    pending_.erase(pending_.begin());
    const std::string blob = p.blob.get();
    if (blob.empty()) continue;
    const uint64_t version = versions_.publish(blob, true);
    std::lock_guard<std::mutex> lock(stats_mu_);
    stats_.refreshes += 1;
    stats_.switches.push_back({current_->index + 1, p.probe_step, version});  // the next window read is the first
  }
}

bool OnlineSelection::advance() {
  if (!next_) {
    ended_ = true;
    return false;
  }
  clusters_.begin_window();
  importance_before_current_ = importance_->save();
  current_ = std::move(next_);
  next_.reset();
  select_current();
  apply_due_refreshes();
  next_ = read_window();
  versions_.retain({current_->version, next_ ? next_->version : current_->version});  // what a saved state may need
  return true;
}

std::optional<Batch> OnlineSelection::next(uint32_t rows) {
  check_failures();
  if (ended_) return std::nullopt;
  std::vector<torch::Tensor> pieces, us, cs;
  Batch b;
  uint32_t collected = 0;
  while (collected < rows) {
    if (!current_ || emit_pos_ >= order_.size()) {
      if (!advance()) break;
      continue;
    }
    const size_t take = std::min<size_t>(rows - collected, order_.size() - emit_pos_);
    std::vector<int64_t> idx(order_.begin() + emit_pos_, order_.begin() + emit_pos_ + take);
    const torch::Tensor it = torch::tensor(idx, torch::kLong);
    pieces.push_back(current_->tokens.index_select(0, it));
    us.push_back(u_.index_select(0, it));
    cs.push_back(cluster_ids_.index_select(0, it));
    for (int64_t i : idx) b.ids.push_back(current_->host.ids[i]);
    if (log_.enabled()) log_rows(idx);
    {
      std::lock_guard<std::mutex> lock(stats_mu_);
      for (int64_t i : idx)
        if (cluster_ids_.data_ptr<int64_t>()[i] >= 0) stats_.selected_per_cluster.at(cluster_ids_.data_ptr<int64_t>()[i]) += 1;
      stats_.selected += take;
      stats_.cost.train_tokens += uint64_t(take) * uint64_t(current_->tokens.size(1));
      stats_.cost.train_flops = 3.0 * flops_per_token_ * double(stats_.cost.train_tokens);
    }
    b.model_version = current_->version;
    emit_pos_ += take;
    collected += static_cast<uint32_t>(take);
  }
  if (collected < rows) return std::nullopt;  // the stream ended; a partial last batch is not emitted
  b.input_ids = pieces.size() == 1 ? pieces[0] : torch::cat(pieces);
  b.influence = us.size() == 1 ? us[0] : torch::cat(us);
  b.cluster = cs.size() == 1 ? cs[0] : torch::cat(cs);
  return b;
}

void OnlineSelection::log_rows(const std::vector<int64_t>& rows) {
  for (int64_t i : rows)
    log_.write(LoggedRow{step_, current_->index, i, current_->host.ids[i], cluster_ids_.data_ptr<int64_t>()[i],
                         u_.data_ptr<float>()[i], current_->version});
}

void OnlineSelection::set_reference(const torch::Tensor& rows) {
  if (!rows.defined() || rows.dim() != 2 || rows.size(0) < 1 || rows.size(1) < 1)
    throw Error(ErrorCode::kInvalidConfig, "GroupMatesLoader::set_reference", "rows must be token ids int64 [R, T] with R, T >= 1");
  const torch::Tensor t = rows.to(torch::kCPU, torch::kLong).contiguous();
  importance_->set_reference(t.data_ptr<int64_t>(), t.size(0), t.size(1));
}

void OnlineSelection::on_step(int64_t step, ProbeTarget* target) {
  step_ = step;
  if (target != nullptr) {
    flops_per_token_ = target->forward_flops_per_token();
    reference_tokens_ = target->reference_tokens();
    std::lock_guard<std::mutex> lock(stats_mu_);
    stats_.cost.flops_per_token = flops_per_token_;
    stats_.cost.train_flops = 3.0 * flops_per_token_ * double(stats_.cost.train_tokens);
  }
  if (!scheduler_ || target == nullptr || !current_) return;
  if (!scheduler_->due(step)) return;
  const int64_t n = std::min<int64_t>(probe_cfg_.pool_rows, current_->tokens.size(0));
  const torch::Tensor rows = current_->tokens.slice(0, 0, n);
  if (cfg_.refresh_mode == RefreshMode::kWhenReady) {
    // Never wait: a probe that falls due while one runs is skipped (ProbeStats::probes_skipped_busy).
    if (scheduler_->busy()) {
      scheduler_->maybe_probe(step, *target, rows, ProbeContext{});  // counts the skip
      return;
    }
    for (auto& q : pending_)  // idle: a pending refresh still unresolved belongs to a probe that threw
      if (q.blob.wait_for(std::chrono::seconds(0)) != std::future_status::ready) q.promise->set_value("");
  } else {
    const util::Stopwatch waited;
    scheduler_->wait_idle();  // never skip a due probe: timing must not change the stream
    std::lock_guard<std::mutex> lock(stats_mu_);
    stats_.cost.wait_probe_seconds += waited.seconds();
  }
  ProbeContext ctx;
  if (probe_cfg_.budget > 0) {
    // Budget in token-FLOP units (x F cancels): training 3 per token, a probe step 3 per token, an evaluation 1
    // per reference token. Deterministic under kAtStep: the previous probe's cost is counted by now.
    std::lock_guard<std::mutex> lock(stats_mu_);
    const SelectionCost& c = stats_.cost;
    const double spent = 3.0 * c.probe_train_tokens + c.probe_eval_tokens;
    const double allowance = probe_cfg_.budget * 3.0 * double(c.train_tokens) - spent - double(reference_tokens_);
    const double per_rollout =
        double(probe_cfg_.rollout_length) * (3.0 * double(sequence_length_) + double(reference_tokens_));
    const int64_t afford = allowance > 0 ? int64_t(allowance / per_rollout) : 0;
    if (afford < int64_t(probe_cfg_.min_rollouts)) {
      stats_.probes_skipped_budget += 1;
      return;
    }
    ctx.max_rollouts = afford;
  }
  ctx.cluster_ids = cluster_ids_.slice(0, 0, n);
  if (prior_.defined() && cfg_.importance_prior) ctx.prior = prior_.slice(0, 0, n);
  if (versions_.trained(current_->version)) {  // a private copy for beam search (the scorer uses the published one)
    ctx.model = make_influence_model(cfg_, encoder_pad_id_);
    ctx.model->import_weights(versions_.weights(current_->version));
    ctx.model->eval();
  }
  Pending p;
  p.probe_step = step;
  p.effective_at = step + probe_cfg_.effect_delay_steps;
  p.promise = std::make_shared<std::promise<std::string>>();
  p.blob = p.promise->get_future().share();
  inflight_ = p.promise;
  pending_.push_back(p);
  bool started = false;
  try {
    started = scheduler_->maybe_probe(step, *target, rows, ctx);  // clones the target and the rows here
  } catch (...) {
    inflight_.reset();
    p.promise->set_value("");  // nothing to publish; the error is the caller's to see
    throw;
  }
  if (!started) {
    inflight_.reset();
    pending_.pop_back();
  }
}

void OnlineSelection::refresh(int64_t step, const ProbeResult& result) {
  std::shared_ptr<std::promise<std::string>> done = inflight_;
  if (!done) return;
  const util::Stopwatch took;
  const RefreshResult r = refresher_->refresh(step, static_cast<int64_t>(result.rollouts.size()));
  if (r.heldout_measured) {
    std::lock_guard<std::mutex> lock(stats_mu_);
    stats_.last_heldout_spearman = r.heldout_spearman;
    stats_.last_heldout_spearman_scaled = r.heldout_spearman_scaled;
    stats_.last_heldout_spearman_prior = r.heldout_spearman_prior;
  }
  // Probe cost: every attempted rollout's steps and evaluations, and each probe's R_0.
  const auto& pc = probe_cfg_;
  const double width = double(sequence_length_);
  const double train_tokens = double(result.attempted) * pc.rollout_length * width;
  const double eval_tokens = double(1 + result.attempted * pc.rollout_length) * double(reference_tokens_);
  std::lock_guard<std::mutex> lock(stats_mu_);
  stats_.refresh_seconds += took.seconds();
  stats_.cost.refresh_flops += r.flops;
  stats_.cost.probe_train_tokens += train_tokens;
  stats_.cost.probe_eval_tokens += eval_tokens;
  stats_.cost.probe_flops += 3.0 * flops_per_token_ * train_tokens + flops_per_token_ * eval_tokens;
  if (r.gated) stats_.refreshes_gated += 1;
  if (!r.error.empty()) {
    stats_.refreshes_failed += 1;
    if (r.nonfinite) stats_.refreshes_rejected_nonfinite += 1;
    stats_.last_refresh_error = r.error;
    std::fprintf(stderr, "groupmates [warning] the refresh after the probe at step %lld failed: %s\n",
                 static_cast<long long>(step), r.error.c_str());
  } else {
    failures_at_last_success_ = failures_locked();
  }
  done->set_value(r.weights);  // after the stats: whoever sees the refresh sees it counted
}

uint64_t OnlineSelection::failures_locked() const {
  const ProbeStats p = scheduler_ ? scheduler_->stats() : ProbeStats{};
  return uint64_t(p.probes_failed + p.probes_timed_out) + stats_.refreshes_failed;
}

void OnlineSelection::check_failures() const {
  if (probe_cfg_.max_consecutive_failures == 0 || !scheduler_) return;
  std::string probe_error;
  ProbeStats p;
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    const uint64_t run = failures_locked() - failures_at_last_success_;
    if (run < probe_cfg_.max_consecutive_failures) return;
    p = scheduler_->stats();
    probe_error = scheduler_->last_error();
    std::string msg = std::to_string(run) + " probes or refreshes failed in a row (probes failed " +
                      std::to_string(p.probes_failed) + ", timed out " + std::to_string(p.probes_timed_out) +
                      ", refreshes failed " + std::to_string(stats_.refreshes_failed) + " so far)";
    if (!probe_error.empty()) msg += "; last probe error: " + probe_error;
    if (!stats_.last_refresh_error.empty()) msg += "; last refresh error: " + stats_.last_refresh_error;
    msg += ". Fix what the errors name (the probe target, its loss or model), or set "
           "ProbeConfig.max_consecutive_failures = 0 to keep training on the last good influence model";
    throw Error(ErrorCode::kSelectionFailed, "ProbeConfig.max_consecutive_failures", msg);
  }
}

LoaderState OnlineSelection::save() {
  if (scheduler_) scheduler_->wait_idle();
  for (auto& p : pending_)
    if (p.blob.wait_for(std::chrono::seconds(0)) != std::future_status::ready) p.promise->set_value("");
  const Window* first = current_ ? &*current_ : (next_ ? &*next_ : nullptr);
  LoaderState state = first ? first->core_before : core_.state();
  SelectionState s;
  s.mode = static_cast<uint64_t>(cfg_.mode);
  s.window_size = cfg_.window_size;
  s.world_size = core_.config().world_size;
  s.rank = core_.config().rank;
  s.step = step_;
  s.has_current = current_.has_value();
  s.emit_pos = emit_pos_;
  const uint64_t latest = versions_.current();
  s.first_version = first ? first->version : latest;
  s.second_version = current_ ? (next_ ? next_->version : latest) : s.first_version;
  s.first_trained = versions_.trained(s.first_version);
  s.first_blob.bytes = versions_.weights(s.first_version);
  s.second_trained = versions_.trained(s.second_version);
  if (s.second_version != s.first_version) s.second_blob.bytes = versions_.weights(s.second_version);
  s.kmeans.bytes = clusters_.saved_state();
  s.kmeans_version = clusters_.saved_version();
  s.importance.bytes = current_ ? importance_before_current_ : importance_->save();
  s.next_loader_version = versions_.next_number();
  s.trainer.bytes = refresher_->weights();
  s.gate.bytes = refresher_->gate().save();
  if (labels_->size() > 0) s.labels.bytes = labels_->save();
  for (const Pending& p : pending_) s.pending.push_back(SavedRefresh{p.probe_step, p.effective_at, Blob{p.blob.get()}});
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    s.visit_counters(stats_, [](auto& saved, const auto& live) { saved = static_cast<std::decay_t<decltype(saved)>>(live); });
  }
  s.write(state.extra);
  return state;
}

SelectionStats OnlineSelection::stats() const {
  std::lock_guard<std::mutex> lock(stats_mu_);
  SelectionStats s = stats_;
  if (scheduler_) s.probes = scheduler_->stats();
  s.cost.snapshot_seconds = s.probes.snapshot_seconds;
  s.consecutive_failures =
      uint64_t(s.probes.probes_failed + s.probes.probes_timed_out) + s.refreshes_failed - failures_at_last_success_;
  return s;
}

}  // namespace groupmates
