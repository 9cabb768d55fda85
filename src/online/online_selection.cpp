#include "online/online_selection.h"

#include <ATen/core/Generator.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <sstream>

#include "online/blob_text.h"
#include "probe/label_standardisation.h"
#include "groupmates/error.h"
#include "groupmates/engine/hashed_ngram_encoder.h"
#include "groupmates/engine/influence_trainer.h"
#include "groupmates/engine/metrics.h"
#include "stream/permutation.h"

namespace groupmates {

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Runs f with LibTorch's global CPU generator seeded by `seed`, then restores the generator, so
// building models here neither depends on nor disturbs the trainer's random stream.
template <typename F>
auto with_seeded_generator(uint64_t seed, F&& f) {
  auto gen = at::detail::getDefaultCPUGenerator();
  torch::Tensor saved;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    saved = gen.get_state();
    gen.set_current_seed(seed);
  }
  auto result = f();
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(saved);
  }
  return result;
}

std::string get(const LoaderState& s, const std::string& key) {
  auto it = s.extra.find(key);
  if (it == s.extra.end())
    throw Error(ErrorCode::kInvalidState, "LoaderState.extra." + key,
                "missing: this state was not saved by a selecting GroupMatesLoader (restore it with SelectionMode::kNone)");
  return it->second;
}

uint64_t get_u64(const LoaderState& s, const std::string& key) { return std::stoull(get(s, key)); }
int64_t get_i64(const LoaderState& s, const std::string& key) { return std::stoll(get(s, key)); }

}  // namespace

std::shared_ptr<RelationalInfluenceModel> OnlineSelection::make_model() const {
  return with_seeded_generator(derive_seed(cfg_.seed, 0x6d6f64656cULL), [&] {
    HashedNgramEncoderConfig ec;
    ec.num_buckets = cfg_.encoder_buckets;
    ec.out_dim = cfg_.encoder_dim;
    ec.embed_dim = cfg_.encoder_bag_dim;
    ec.max_ngram = cfg_.encoder_max_ngram;
    ec.seed = cfg_.seed;
    ec.pad_id = encoder_pad_id_;
    InfluenceModelConfig mc;
    mc.dropout = 0.0;  // refreshes run beside the trainer; dropout would draw from the shared generator
    mc.tau_min = cfg_.relation_tau_min;
    auto model = std::make_shared<RelationalInfluenceModel>(std::make_shared<HashedNgramEncoder>(ec), mc);
    if (!cfg_.train_ngram_table) {  // a fixed random projection of n-gram counts; imports keep the flag
      int frozen = 0;
      for (auto& item : model->named_parameters())
        if (item.key() == "encoder.table.weight") item.value().set_requires_grad(false), ++frozen;
      if (frozen != 1) throw Error(ErrorCode::kInternal, "OnlineSelection", "the encoder has no parameter table.weight");
    }
    return model;
  });
}

OnlineSelection::OnlineSelection(StreamingLoader& core, const LoaderConfig& loader, SelectionConfig selection,
                                 ProbeConfig probes, const LoaderState* restore)
    : core_(core), cfg_(std::move(selection)), probe_cfg_(std::move(probes)),
      encoder_pad_id_(loader.packing == PackingMode::kDocumentAligned ? loader.pad_id : -1),
      sequence_length_(loader.sequence_length), device_(default_device()),
      kmeans_(SphericalKMeansConfig{cfg_.clusters, cfg_.seed}, device_) {
  registry_ = std::make_shared<ModelRegistry>([this] { return make_model(); }, device_);
  scorer_ = std::make_unique<WindowScorer>(registry_);
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
  trainer_model_ = make_model();
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
    scheduler_ = std::make_unique<ProbeScheduler>(sc, labels_);
    scheduler_->set_callback([this](int64_t step, const ProbeResult& result) { refresh(step, result); });
  }
  if (!cfg_.log_path.empty()) {
    log_.open(cfg_.log_path, std::ios::app);
    if (!log_) throw Error(ErrorCode::kIo, cfg_.log_path, "cannot open the selection log for appending");
  }
  stats_.seen_per_cluster.assign(cfg_.clusters, 0);
  stats_.selected_per_cluster.assign(cfg_.clusters, 0);

  if (restore == nullptr) {
    publish(next_loader_version_++, trainer_model_->export_weights(), false);
    next_ = read_window();
    return;
  }
  // Restore: re-read and re-select the current window exactly as the original run did.
  const LoaderState& s = *restore;
  if (get_u64(s, "gm.world_size") != loader.world_size || get_u64(s, "gm.rank") != loader.rank)
    throw Error(ErrorCode::kInvalidState, "LoaderState.extra.gm.world_size",
                "a selecting loader's state is per rank (its windows, centroids and model are its own): restore it "
                "on the same rank of the same number of ranks (saved: rank " + get(s, "gm.rank") + " of " +
                    get(s, "gm.world_size") + ")");
  if (get_u64(s, "gm.mode") != static_cast<uint64_t>(cfg_.mode) || get_u64(s, "gm.window_size") != cfg_.window_size)
    throw Error(ErrorCode::kInvalidState, "LoaderState.extra.gm.mode",
                "the state was saved with another selection mode or window size");
  next_loader_version_ = get_u64(s, "gm.next_loader_version");
  step_ = get_i64(s, "gm.step");
  trainer_model_->import_weights(text_to_blob(get(s, "gm.trainer"), "gm.trainer"));
  const std::string labels = text_to_blob(get(s, "gm.labels"), "gm.labels");
  if (!labels.empty()) labels_->load(labels);
  stats_.windows = get_u64(s, "gm.stats.windows");
  stats_.warmup_windows = get_u64(s, "gm.stats.warmup_windows");
  stats_.seen = get_u64(s, "gm.stats.seen");
  stats_.selected = get_u64(s, "gm.stats.selected");
  stats_.refreshes = get_u64(s, "gm.stats.refreshes");
  stats_.refreshes_failed = get_u64(s, "gm.stats.refreshes_failed");
  stats_.cost.train_tokens = get_u64(s, "gm.cost.train_tokens");
  stats_.cost.probe_train_tokens = double(get_u64(s, "gm.cost.probe_train_tokens"));
  stats_.cost.probe_eval_tokens = double(get_u64(s, "gm.cost.probe_eval_tokens"));
  {
    std::istringstream in(get(s, "gm.switches"));
    VersionSwitch sw;
    char c1, c2;
    while (in >> sw.window >> c1 >> sw.probe_step >> c2 >> sw.version) {
      if (c1 != ':' || c2 != ':') throw Error(ErrorCode::kInvalidState, "LoaderState.extra.gm.switches", "malformed");
      stats_.switches.push_back(sw);
      in >> std::ws;
      if (in.peek() == ',') in.get();
    }
  }
  importance_->load(text_to_blob(get(s, "gm.importance"), "gm.importance"));
  const uint64_t first = get_u64(s, "gm.first_version"), second = get_u64(s, "gm.second_version");
  publish(first, text_to_blob(get(s, "gm.first_blob"), "gm.first_blob"), get(s, "gm.first_trained") == "1");
  next_ = read_window();
  if (get(s, "gm.has_current") == "1") {
    if (!next_) throw Error(ErrorCode::kInvalidState, "LoaderState", "the saved window is past the end of the stream");
    const std::string km = text_to_blob(get(s, "gm.kmeans"), "gm.kmeans");
    if (!km.empty()) kmeans_.load_state(km);
    kmeans_version_ = get_u64(s, "gm.kmeans_version");
    kmeans_before_current_ = km;
    importance_before_current_ = importance_->save();
    kmeans_version_before_current_ = kmeans_version_;
    current_ = std::move(next_);
    next_.reset();
    select_current();
    if (second != first)
      publish(second, text_to_blob(get(s, "gm.second_blob"), "gm.second_blob"), get(s, "gm.second_trained") == "1");
    next_ = read_window();
    emit_pos_ = get_u64(s, "gm.emit_pos");
    stats_.windows -= 1;  // select_current() counted the re-selected window again
    stats_.seen -= current_->host.batch_size;
    if (stats_.warmup_windows > 0 && !trained_[current_->version]) stats_.warmup_windows -= 1;
  }
  const uint64_t npending = get_u64(s, "gm.pending");
  trained_any_ = stats_.refreshes > 0 || npending > 0;
  for (uint64_t i = 0; i < npending; ++i) {
    const std::string k = "gm.pending." + std::to_string(i);
    Pending p;
    p.probe_step = get_i64(s, k + ".probe_step");
    p.effective_at = get_i64(s, k + ".effective_at");
    auto promise = std::make_shared<std::promise<std::string>>();
    promise->set_value(text_to_blob(get(s, k + ".blob"), k + ".blob"));
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

void OnlineSelection::publish(uint64_t loader_version, const std::string& blob, bool trained) {
  const uint64_t rv = registry_->publish(blob);
  registry_to_loader_version_[rv] = loader_version;
  blobs_[loader_version] = blob;
  trained_[loader_version] = trained;
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
  w.version = registry_to_loader_version_.at(registry_->current_version());
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
  const double t_wait = now();
  ScoredWindow scored;
  if (current_->scored.valid()) scored = current_->scored.get();
  const double t_select = now();
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
    // Centroids live in one model version's embedding space: a new version re-seeds them.
    if (kmeans_version_ != current_->version) {
      kmeans_ = SphericalKMeans(SphericalKMeansConfig{cfg_.clusters, cfg_.seed}, device_);
      kmeans_version_ = current_->version;
    }
    clusters = kmeans_.update(scored.embeddings);
    in.u = use_prior ? scored.u + scored.prior_weight * prior_.to(scored.u.device()) : scored.u;
    in.embeddings = scored.embeddings;
    in.cluster_ids = clusters;
    in.relation = cfg_.relations
                      ? RelationParams{scored.alpha, scored.tau,
                                       cfg_.nearest_pick_discount ? RelationAggregate::kNearest : RelationAggregate::kMean}
                      : RelationParams{1.0, 1e30, RelationAggregate::kMean};  // every r_ij = 1: rank by u alone
    informed = trained_[current_->version] || use_prior;
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
  const double t_done = now();
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
  cost.wait_scoring_seconds += t_select - t_wait;
  cost.selection_seconds += t_done - t_select;
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
      const double t0 = now();
      scheduler_->wait_idle();
      // A probe that threw never reaches refresh(): nothing to publish.
      if (front.blob.wait_for(std::chrono::seconds(0)) != std::future_status::ready) front.promise->set_value("");
      std::lock_guard<std::mutex> lock(stats_mu_);
      stats_.refresh_wait_seconds += now() - t0;
      stats_.cost.wait_refresh_seconds += now() - t0;
    }
    const Pending p = front;
    pending_.erase(pending_.begin());
    const std::string blob = p.blob.get();
    if (blob.empty()) continue;
    const uint64_t version = next_loader_version_++;
    publish(version, blob, true);
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
  kmeans_before_current_ = kmeans_.initialized() ? kmeans_.save_state() : std::string();
  importance_before_current_ = importance_->save();
  kmeans_version_before_current_ = kmeans_version_;
  current_ = std::move(next_);
  next_.reset();
  select_current();
  apply_due_refreshes();
  next_ = read_window();
  // Keep only the weights a saved state may still need.
  for (auto it = blobs_.begin(); it != blobs_.end();) {
    const uint64_t v = it->first;
    const bool used = v == current_->version || (next_ && v == next_->version) ||
                      v == registry_to_loader_version_.at(registry_->current_version());
    it = used ? std::next(it) : blobs_.erase(it);
  }
  return true;
}

std::optional<Batch> OnlineSelection::next(uint32_t rows) {
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
    if (log_.is_open()) log_rows(idx);
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
  for (int64_t i : rows) {
    const CandidateId& id = current_->host.ids[i];
    const float u = u_.data_ptr<float>()[i];
    log_ << "{\"step\":" << step_ << ",\"window\":" << current_->index << ",\"row\":" << i << ",\"id\":" << id.hash
         << ",\"source\":" << id.source << ",\"document\":" << id.document << ",\"offset\":" << id.offset
         << ",\"cluster\":" << cluster_ids_.data_ptr<int64_t>()[i] << ",\"influence\":";
    if (std::isnan(u)) log_ << "null"; else log_ << u;
    log_ << ",\"version\":" << current_->version << "}\n";
  }
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
    const double t0 = now();
    scheduler_->wait_idle();  // never skip a due probe: timing must not change the stream
    std::lock_guard<std::mutex> lock(stats_mu_);
    stats_.cost.wait_probe_seconds += now() - t0;
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
  if (trained_[current_->version]) {  // a private copy for beam search (the scorer uses the published one)
    ctx.model = make_model();
    ctx.model->import_weights(blobs_.at(current_->version));
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

namespace {

// Why a refreshed model must not be published, or "" if it may.
std::string unpublishable(RelationalInfluenceModel& model, const torch::Tensor& predictions) {
  for (const auto& item : model.named_parameters())
    if (!torch::isfinite(item.value()).all().item<bool>()) return "parameter '" + item.key() + "' is not finite";
  if (predictions.defined() && !torch::isfinite(predictions).all().item<bool>()) return "its predictions are not finite";
  return "";
}

}  // namespace

void OnlineSelection::refresh(int64_t step, const ProbeResult& result) {
  std::shared_ptr<std::promise<std::string>> done = inflight_;
  if (!done) return;
  const double t0 = now();
  const std::string last_good = trainer_model_->export_weights();
  std::string error;
  double flops = 0;
  try {
    const std::vector<LabelledRollout> entries = labels_->snapshot();
    const int64_t g = static_cast<int64_t>(entries.size());
    if (g == 0) throw Error(ErrorCode::kInvalidState, "OnlineSelection::refresh", "no labelled rollouts");
    const int64_t L = static_cast<int64_t>(entries[0].labels.size());
    std::vector<torch::Tensor> rows, priors;
    for (const auto& e : entries) {
      rows.push_back(e.tokens.reshape({L, -1}));
      if (e.prior.defined()) priors.push_back(e.prior.reshape({L}));
    }
    const torch::Tensor tokens = torch::stack(rows);  // [G, L, T]
    // The prior only when every rollout has one (rollouts from before set_reference() have none).
    const torch::Tensor prior = priors.size() == entries.size() && cfg_.importance_prior ? torch::stack(priors) : torch::Tensor();
    const std::vector<double> std_labels = standardise_per_probe(entries, cfg_.robust_label_scaling, cfg_.per_position_labels);
    const torch::Tensor labels = torch::tensor(std_labels, torch::kDouble).view({g, L}).to(torch::kFloat);
    const int64_t fresh = std::min<int64_t>(g, static_cast<int64_t>(result.rollouts.size()));
    const double row_flops = trainer_model_->encoder().flops_per_row(tokens.size(2)) +
                             2.0 * double(trainer_model_->encoder().dim()) * double(L);  // head + relations
    if (fresh > 0 && trained_any_) {  // held-out check: the newest rollouts, before training on them
      std::vector<double> measured, predicted;  // the fresh rollouts' marginal labels as measured, and p
      for (int64_t i = g - fresh; i < g; ++i) measured.insert(measured.end(), entries[i].labels.begin(), entries[i].labels.end());
      {
        torch::NoGradGuard no_grad;
        trainer_model_->eval();
        const torch::Tensor fresh_prior = prior.defined() ? prior.slice(0, g - fresh, g) : prior;
        const torch::Tensor p =
            trainer_model_->predict_rollouts(tokens.slice(0, g - fresh, g), {}, fresh_prior).to(torch::kDouble).contiguous();
        predicted.assign(p.data_ptr<double>(), p.data_ptr<double>() + p.numel());
      }
      flops += double(fresh * L) * row_flops;
      const std::vector<double> scaled(std_labels.end() - fresh * L, std_labels.end());
      std::lock_guard<std::mutex> lock(stats_mu_);
      stats_.last_heldout_spearman = spearman(predicted, measured);
      stats_.last_heldout_spearman_scaled = spearman(predicted, scaled);
    }
    trainer_model_->fit_label_stats(labels, LabelScaling::kMeanStd);  // ~(0, 1): labels are standardised already
    InfluenceTrainerConfig tc;
    tc.learning_rate = cfg_.refresh_learning_rate;
    InfluenceTrainer trainer(trainer_model_, tc);
    const int64_t batch = std::min<int64_t>(cfg_.refresh_batch_rollouts, g);
    for (uint32_t i = 0; i < cfg_.refresh_train_steps; ++i) {
      const Permutation order(static_cast<uint64_t>(g), derive_seed(cfg_.seed, static_cast<uint64_t>(step), i));
      std::vector<int64_t> pick;
      for (int64_t k = 0; k < batch; ++k) pick.push_back(static_cast<int64_t>(order.at(k)));
      const torch::Tensor idx = torch::tensor(pick, torch::kLong);
      trainer.step(tokens.index_select(0, idx), labels.index_select(0, idx), {},
                   prior.defined() ? prior.index_select(0, idx) : prior);
    }
    flops += 3.0 * double(cfg_.refresh_train_steps) * double(batch * L) * row_flops;
    // Guard: a model with non-finite weights or predictions is never published.
    torch::Tensor check;
    {
      torch::NoGradGuard no_grad;
      trainer_model_->eval();
      const int64_t k = std::min<int64_t>(g, 4);
      check = trainer_model_->predict_rollouts(tokens.slice(0, g - k, g), {}, prior.defined() ? prior.slice(0, g - k, g) : prior);
    }
    error = unpublishable(*trainer_model_, check);
    if (!error.empty()) throw Error(ErrorCode::kInvalidState, "OnlineSelection::refresh", "refreshed model not published: " + error);
    trained_any_ = true;
    done->set_value(trainer_model_->export_weights());
  } catch (const std::exception& e) {
    error = e.what();
    trainer_model_->import_weights(last_good);  // the next refresh starts from the last good model
    done->set_value("");
  } catch (...) {
    error = "unknown exception";
    trainer_model_->import_weights(last_good);
    done->set_value("");
  }
  // Probe cost: every attempted rollout's steps and evaluations, and each probe's R_0.
  const auto& pc = probe_cfg_;
  const double width = double(sequence_length_);
  const double train_tokens = double(result.attempted) * pc.rollout_length * width;
  const double eval_tokens = double(1 + result.attempted * pc.rollout_length) * double(reference_tokens_);
  std::lock_guard<std::mutex> lock(stats_mu_);
  stats_.refresh_seconds += now() - t0;
  stats_.cost.refresh_flops += flops;
  stats_.cost.probe_train_tokens += train_tokens;
  stats_.cost.probe_eval_tokens += eval_tokens;
  stats_.cost.probe_flops += 3.0 * flops_per_token_ * train_tokens + flops_per_token_ * eval_tokens;
  if (!error.empty()) {
    stats_.refreshes_failed += 1;
    stats_.last_refresh_error = error;
  }
}

LoaderState OnlineSelection::save() {
  if (scheduler_) scheduler_->wait_idle();
  for (auto& p : pending_)
    if (p.blob.wait_for(std::chrono::seconds(0)) != std::future_status::ready) p.promise->set_value("");
  const Window* first = current_ ? &*current_ : (next_ ? &*next_ : nullptr);
  LoaderState s = first ? first->core_before : core_.state();
  auto& x = s.extra;
  x["gm.mode"] = std::to_string(static_cast<int>(cfg_.mode));
  x["gm.window_size"] = std::to_string(cfg_.window_size);
  x["gm.world_size"] = std::to_string(core_.config().world_size);
  x["gm.rank"] = std::to_string(core_.config().rank);
  x["gm.step"] = std::to_string(step_);
  x["gm.has_current"] = current_ ? "1" : "0";
  x["gm.emit_pos"] = std::to_string(emit_pos_);
  const uint64_t latest = registry_to_loader_version_.at(registry_->current_version());
  const uint64_t v1 = first ? first->version : latest;
  const uint64_t v2 = current_ ? (next_ ? next_->version : latest) : v1;
  x["gm.first_version"] = std::to_string(v1);
  x["gm.first_trained"] = trained_[v1] ? "1" : "0";
  x["gm.first_blob"] = blob_to_text(blobs_.at(v1));
  x["gm.second_version"] = std::to_string(v2);
  x["gm.second_trained"] = trained_[v2] ? "1" : "0";
  x["gm.second_blob"] = v2 == v1 ? "" : blob_to_text(blobs_.at(v2));
  x["gm.kmeans"] = blob_to_text(kmeans_before_current_);
  x["gm.importance"] = blob_to_text(current_ ? importance_before_current_ : importance_->save());
  x["gm.kmeans_version"] = std::to_string(kmeans_version_before_current_);
  x["gm.next_loader_version"] = std::to_string(next_loader_version_);
  x["gm.trainer"] = blob_to_text(trainer_model_->export_weights());
  x["gm.labels"] = blob_to_text(labels_->size() > 0 ? labels_->save() : std::string());
  x["gm.pending"] = std::to_string(pending_.size());
  for (size_t i = 0; i < pending_.size(); ++i) {
    const std::string k = "gm.pending." + std::to_string(i);
    x[k + ".probe_step"] = std::to_string(pending_[i].probe_step);
    x[k + ".effective_at"] = std::to_string(pending_[i].effective_at);
    x[k + ".blob"] = blob_to_text(pending_[i].blob.get());
  }
  std::lock_guard<std::mutex> lock(stats_mu_);
  x["gm.stats.windows"] = std::to_string(stats_.windows);
  x["gm.stats.warmup_windows"] = std::to_string(stats_.warmup_windows);
  x["gm.stats.seen"] = std::to_string(stats_.seen);
  x["gm.stats.selected"] = std::to_string(stats_.selected);
  x["gm.stats.refreshes"] = std::to_string(stats_.refreshes);
  x["gm.stats.refreshes_failed"] = std::to_string(stats_.refreshes_failed);
  // What the probe budget was measured against (it must resume exactly).
  x["gm.cost.train_tokens"] = std::to_string(stats_.cost.train_tokens);
  x["gm.cost.probe_train_tokens"] = std::to_string(uint64_t(stats_.cost.probe_train_tokens));
  x["gm.cost.probe_eval_tokens"] = std::to_string(uint64_t(stats_.cost.probe_eval_tokens));
  std::string switches;
  for (const auto& sw : stats_.switches)
    switches += (switches.empty() ? "" : ",") + std::to_string(sw.window) + ":" + std::to_string(sw.probe_step) + ":" +
                std::to_string(sw.version);
  x["gm.switches"] = switches;
  return s;
}

SelectionStats OnlineSelection::stats() const {
  std::lock_guard<std::mutex> lock(stats_mu_);
  SelectionStats s = stats_;
  if (scheduler_) s.probes = scheduler_->stats();
  s.cost.snapshot_seconds = s.probes.snapshot_seconds;
  return s;
}

}  // namespace groupmates
