#include "online_selection.h"

#include <ATen/core/Generator.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <sstream>

#include "blob_text.h"
#include "label_standardisation.h"
#include "groupmates/error.h"
#include "groupmates/hashed_ngram_encoder.h"
#include "groupmates/influence_trainer.h"
#include "groupmates/metrics.h"
#include "permutation.h"

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
      encoder_pad_id_(loader.packing == PackingMode::kDocumentAligned ? loader.pad_id : -1), device_(default_device()),
      kmeans_(SphericalKMeansConfig{cfg_.clusters, cfg_.seed}, device_) {
  registry_ = std::make_shared<ModelRegistry>([this] { return make_model(); }, device_);
  scorer_ = std::make_unique<WindowScorer>(registry_);
  group_ = std::make_unique<ClusterGreedySelector>(
      cfg_.influence_prefilter ? BudgetMode::kInfluencePrefilter : BudgetMode::kUniformRatio, cfg_.prefilter_ratio);
  random_ = std::make_unique<RandomSelector>(cfg_.seed);
  individual_ = std::make_unique<IndividualSelector>(cfg_.temperature, cfg_.seed);
  whole_window_ = std::make_unique<GreedySelector>();
  labels_ = std::make_shared<LabelBuffer>(cfg_.label_buffer_rollouts);
  trainer_model_ = make_model();
  if (probe_cfg_.interval_steps > 0) {
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
  const uint64_t first = get_u64(s, "gm.first_version"), second = get_u64(s, "gm.second_version");
  publish(first, text_to_blob(get(s, "gm.first_blob"), "gm.first_blob"), get(s, "gm.first_trained") == "1");
  next_ = read_window();
  if (get(s, "gm.has_current") == "1") {
    if (!next_) throw Error(ErrorCode::kInvalidState, "LoaderState", "the saved window is past the end of the stream");
    const std::string km = text_to_blob(get(s, "gm.kmeans"), "gm.kmeans");
    if (!km.empty()) kmeans_.load_state(km);
    kmeans_version_ = get_u64(s, "gm.kmeans_version");
    kmeans_before_current_ = km;
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
  w.scored = scorer_->score(w.tokens);
  return w;
}

const Selector& OnlineSelection::selector_for(bool trained) const {
  if (!trained) return *random_;
  switch (cfg_.mode) {
    case SelectionMode::kIndividual: return *individual_;
    case SelectionMode::kGroup: return *group_;
    case SelectionMode::kGroupNoClusters: return *whole_window_;
    default: return *random_;
  }
}

void OnlineSelection::select_current() {
  ScoredWindow scored = current_->scored.get();
  const bool trained = trained_[current_->version];
  // Centroids live in one model version's embedding space: a new version re-seeds them.
  if (kmeans_version_ != current_->version) {
    kmeans_ = SphericalKMeans(SphericalKMeansConfig{cfg_.clusters, cfg_.seed}, device_);
    kmeans_version_ = current_->version;
  }
  const torch::Tensor clusters = kmeans_.update(scored.embeddings);
  SelectionInput in;
  in.u = scored.u;
  in.embeddings = scored.embeddings;
  in.cluster_ids = clusters;
  in.relation = RelationParams{scored.alpha, scored.tau,
                               cfg_.nearest_pick_discount ? RelationAggregate::kNearest : RelationAggregate::kMean};
  in.window_seed = current_->index;
  const Selection sel = selector_for(trained).select(in, cfg_.ratio);
  order_ = sel.indices;
  emit_pos_ = 0;
  u_ = trained ? scored.u.to(torch::kCPU, torch::kFloat) : torch::full({scored.u.size(0)}, NAN);
  cluster_ids_ = clusters.to(torch::kCPU, torch::kLong);
  embeddings_ = scored.embeddings;
  std::lock_guard<std::mutex> lock(stats_mu_);
  stats_.windows += 1;
  if (!trained) stats_.warmup_windows += 1;
  stats_.seen += current_->host.batch_size;
  stats_.model_version = current_->version;
  const int64_t* c = cluster_ids_.data_ptr<int64_t>();
  for (int64_t i = 0; i < cluster_ids_.size(0); ++i) stats_.seen_per_cluster.at(c[i]) += 1;
}

void OnlineSelection::apply_due_refreshes() {
  while (!pending_.empty() && pending_.front().effective_at <= step_) {
    Pending p = pending_.front();
    pending_.erase(pending_.begin());
    if (p.blob.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      const double t0 = now();
      scheduler_->wait_idle();
      // A probe that threw never reaches refresh(): nothing to publish.
      if (p.blob.wait_for(std::chrono::seconds(0)) != std::future_status::ready) p.promise->set_value("");
      std::lock_guard<std::mutex> lock(stats_mu_);
      stats_.refresh_wait_seconds += now() - t0;
    }
    const std::string blob = p.blob.get();
    if (blob.empty()) continue;
    publish(next_loader_version_++, blob, true);
    std::lock_guard<std::mutex> lock(stats_mu_);
    stats_.refreshes += 1;
  }
}

bool OnlineSelection::advance() {
  if (!next_) {
    ended_ = true;
    return false;
  }
  kmeans_before_current_ = kmeans_.initialized() ? kmeans_.save_state() : std::string();
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
      for (int64_t i : idx) stats_.selected_per_cluster.at(cluster_ids_.data_ptr<int64_t>()[i]) += 1;
      stats_.selected += take;
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

void OnlineSelection::on_step(int64_t step, ProbeTarget* target) {
  step_ = step;
  if (!scheduler_ || target == nullptr || !current_) return;
  if (!scheduler_->due(step)) return;
  scheduler_->wait_idle();  // never skip a due probe: timing must not change the stream
  const int64_t n = std::min<int64_t>(probe_cfg_.pool_rows, current_->tokens.size(0));
  const torch::Tensor rows = current_->tokens.slice(0, 0, n);
  ProbeContext ctx;
  ctx.cluster_ids = cluster_ids_.slice(0, 0, n);
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
    started = scheduler_->maybe_probe(step, *target, rows.clone(), ctx);  // clones the target here
  } catch (...) {
    inflight_.reset();
    p.promise->set_value("");  // nothing to publish; the error is the caller's to see
    throw;
  }
  if (!started) {
    inflight_.reset();
    p.promise->set_value("");
  }
}

void OnlineSelection::refresh(int64_t step, const ProbeResult& result) {
  std::shared_ptr<std::promise<std::string>> done = inflight_;
  if (!done) return;
  const double t0 = now();
  try {
    const std::vector<LabelledRollout> entries = labels_->snapshot();
    const int64_t g = static_cast<int64_t>(entries.size());
    if (g == 0) throw Error(ErrorCode::kInvalidState, "OnlineSelection::refresh", "no labelled rollouts");
    const int64_t L = static_cast<int64_t>(entries[0].labels.size());
    std::vector<torch::Tensor> rows;
    for (const auto& e : entries) rows.push_back(e.tokens.reshape({L, -1}));
    const torch::Tensor tokens = torch::stack(rows);  // [G, L, T]
    const std::vector<double> std_labels = standardise_per_probe(entries, cfg_.robust_label_scaling, cfg_.per_position_labels);
    const torch::Tensor labels = torch::tensor(std_labels, torch::kDouble).view({g, L}).to(torch::kFloat);
    const int64_t fresh = std::min<int64_t>(g, static_cast<int64_t>(result.rollouts.size()));
    if (fresh > 0 && trained_any_) {  // held-out check: the newest rollouts, before training on them
      std::vector<double> measured, predicted;  // the fresh rollouts' marginal labels as measured, and p
      for (int64_t i = g - fresh; i < g; ++i) measured.insert(measured.end(), entries[i].labels.begin(), entries[i].labels.end());
      {
        torch::NoGradGuard no_grad;
        trainer_model_->eval();
        const torch::Tensor p = trainer_model_->predict_rollouts(tokens.slice(0, g - fresh, g)).to(torch::kDouble).contiguous();
        predicted.assign(p.data_ptr<double>(), p.data_ptr<double>() + p.numel());
      }
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
      trainer.step(tokens.index_select(0, idx), labels.index_select(0, idx));
    }
    trained_any_ = true;
    done->set_value(trainer_model_->export_weights());
  } catch (...) {
    done->set_value("");
  }
  std::lock_guard<std::mutex> lock(stats_mu_);
  stats_.refresh_seconds += now() - t0;
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
  return s;
}

SelectionStats OnlineSelection::stats() const {
  std::lock_guard<std::mutex> lock(stats_mu_);
  SelectionStats s = stats_;
  if (scheduler_) s.probes = scheduler_->stats();
  return s;
}

}  // namespace groupmates
