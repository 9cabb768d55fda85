#include "online/online_selection.h"

#include "util/seed.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include <xxhash.h>

#include "groupmates/engine/shared_probes.h"
#include "groupmates/error.h"
#include "online/influence_model_factory.h"
#include "online/selection_state.h"
#include "util/stopwatch.h"
#include "util/permutation.h"

namespace groupmates {

namespace {
uint64_t hash_of(const std::string& s) { return XXH3_64bits(s.data(), s.size()); }
// A saved refresh whose probe ran on many ranks and was not exchanged yet: this marker, the rank's
// attempted count (int64), then its labelled rollouts (serialize_rollouts).
const std::string kUnsharedProbe("gm.unshared-probe\n", 18);
// SelectionConfig::replay_share as saved in a state and named in messages: the shortest text that round-trips.
std::string share_text(double share) {
  char text[32];
  for (const char* format : {"%.15g", "%.17g"}) {
    std::snprintf(text, sizeof text, format, share);
    if (std::strtod(text, nullptr) == share) break;
  }
  return text;
}

// The replay buffer's relatives as saved in a state (gm.replay_relative_overlap): "0" when off, else the overlap and
// the shingle length its entries' shingles are cut with ("0.5,8"): both decide which rows the buffer keeps.
std::string relatives_text(double overlap, uint32_t shingle_tokens) {
  return overlap > 0 ? share_text(overlap) + "," + std::to_string(shingle_tokens) : "0";
}

// A replay share as saved in a state; false if the text is not a number (the range is checked by the caller).
bool parse_share(const std::string& text, double& share) {
  char* end = nullptr;
  share = std::strtod(text.c_str(), &end);
  return !text.empty() && end != text.c_str() && *end == '\0';
}

// The replay share is part of the stream: a state resumes only under the share it was saved with (kReplayShareAuto
// takes it from the state: the constructor). States saved before the share was recorded do not say it: one without
// a replay buffer was saved with 0 (a loader with replay always saves its buffer, if only its header); one holding a
// buffer with some share > 0 that only the user knows (`unrecorded_auto`: "auto" was given for such a state).
void check_replay_share(const SelectionState& s, double share, bool unrecorded_auto) {
  const std::string fix = "; this loader's is " + share_text(share) + ": set SelectionConfig.replay_share = ";
  if (s.replay_share.text.empty()) {
    if (s.replay.bytes.empty() && share != 0)
      throw Error(ErrorCode::kInvalidState, "LoaderState.extra.gm.replay_share",
                  "the state was saved before replay_share was recorded and holds no replay buffer, so with "
                  "replay_share 0 (the default then)" + fix + "0 (or \"auto\", which takes 0 for such a state) to "
                  "resume it exactly");
    if (!s.replay.bytes.empty() && (share == 0 || unrecorded_auto))
      throw Error(ErrorCode::kInvalidState, "LoaderState.extra.gm.replay_share",
                  "the state holds a replay buffer but was saved before replay_share was recorded, so with a share "
                  "> 0 that \"auto\" cannot recover" + (unrecorded_auto ? std::string(": set SelectionConfig.replay_share = ") : fix) +
                      "the share of the saved run (a number in (0, 0.9]) to resume it exactly");
    return;
  }
  double saved = 0;
  if (!parse_share(s.replay_share.text, saved) || !(saved >= 0 && saved <= 0.9))
    throw Error(ErrorCode::kInvalidState, "LoaderState.extra.gm.replay_share",
                "'" + s.replay_share.text + "' is not a replay share in [0, 0.9]");
  if (saved != share)
    throw Error(ErrorCode::kInvalidState, "LoaderState.extra.gm.replay_share",
                "the state was saved with replay_share " + s.replay_share.text + fix + s.replay_share.text +
                    " (or \"auto\", kReplayShareAuto, which takes the state's share) to resume it exactly");
}

bool is_unshared_probe(const SavedRefresh& r) { return r.weights.bytes.compare(0, kUnsharedProbe.size(), kUnsharedProbe) == 0; }
}  // namespace

OnlineSelection::OnlineSelection(StreamingLoader& core, const LoaderConfig& loader, SelectionConfig selection,
                                 ProbeConfig probes, const LoaderState* restore,
                                 std::shared_ptr<Collectives> collectives)
    : core_(core), cfg_(std::move(selection)), probe_cfg_(std::move(probes)),
      encoder_pad_id_(loader.packing == PackingMode::kDocumentAligned ? loader.pad_id : -1),
      sequence_length_(loader.sequence_length), device_(default_device()),
      models_(cfg_, encoder_pad_id_, device_), versions_([this] { return models_.make(); }, device_),
      clusters_(cfg_.clusters, cfg_.seed, device_), collectives_(std::move(collectives)), log_(cfg_.log_path),
      backoff_(probe_cfg_.gated_backoff_max) {
  shared_ = collectives_ && collectives_->world_size() > 1;
  const LoaderConfig& resolved = core_.config();  // rank and world size resolved (rank_environment.h)
  if (collectives_ && (collectives_->world_size() != static_cast<int>(resolved.world_size) ||
                       collectives_->rank() != static_cast<int>(resolved.rank)))
    throw Error(ErrorCode::kInvalidConfig, "process_group",
                "is rank " + std::to_string(collectives_->rank()) + " of " + std::to_string(collectives_->world_size()) +
                    " but the loader reads rank " + std::to_string(resolved.rank) + " of " +
                    std::to_string(resolved.world_size) + ": pass the data-parallel group the ranks were taken from");
  if (shared_ && uses_model() && cfg_.refresh_mode == RefreshMode::kWhenReady)
    throw Error(ErrorCode::kInvalidConfig, "SelectionConfig.refresh_mode",
                "is kWhenReady (\"when_ready\"), whose switch points depend on each rank's timing; on " +
                    std::to_string(collectives_->world_size()) +
                    " ranks every rank must refresh at the same step: set refresh_mode = kAtStep (\"at_step\")");
  if (shared_) clusters_.set_collectives(collectives_);
  // kReplayShareAuto: a resumed run keeps the share its state was saved with (a state from before the share was
  // recorded: 0, the default then, if it holds no replay buffer; with one, refused in restore()); a new run takes
  // the mode's default, 0 on ranks sharing one model (their one state, rank 0's, restores every rank and cannot
  // hold every rank's buffer).
  if (cfg_.replay_share == kReplayShareAuto && restore != nullptr) {
    const auto saved = restore->extra.find("gm.replay_share");
    if (saved != restore->extra.end() && !saved->second.empty()) {
      double share = 0;
      if (parse_share(saved->second, share)) cfg_.replay_share = share;  // else refused in restore()
    } else {
      const auto buffer = restore->extra.find("gm.replay");
      if (buffer == restore->extra.end() || buffer->second.empty()) cfg_.replay_share = 0.0;
      else replay_share_unrecorded_ = true;  // refused in restore(): only the user knows that share
    }
  }
  cfg_.replay_share = cfg_.effective_replay_share(shared_);
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
  ic.feedback_weight = cfg_.reference_feedback;
  importance_ = std::make_unique<ImportanceEstimator>(ic);
  if (cfg_.replay_share > 0) {
    ReplayRelatives relatives;
    if (cfg_.relations && (cfg_.mode == SelectionMode::kGroup || cfg_.mode == SelectionMode::kGroupNoClusters)) {
      relatives.overlap = cfg_.replay_relative_overlap;
      relatives.shingles.shingle_tokens = static_cast<int>(cfg_.seen_shingle_tokens);
      relatives.shingles.pad_id = encoder_pad_id_;
      relatives.shingles.seed = derive_seed(cfg_.seed, 0x7365656eULL);
    }
    replay_ = std::make_unique<ReplayBuffer>(cfg_.replay_rows, cfg_.replay_max_repeats, relatives);
    replay_relatives_ = relatives.overlap;
    replay_seed_ = derive_seed(cfg_.seed, 0x7265706c6179ULL + core_.config().rank);  // ranks draw different rows
  }
  if (cfg_.seen_discount > 0 && cfg_.relations &&
      (cfg_.mode == SelectionMode::kGroup || cfg_.mode == SelectionMode::kGroupNoClusters)) {
    SeenShinglesConfig sc;
    sc.shingle_tokens = static_cast<int>(cfg_.seen_shingle_tokens);
    sc.capacity = cfg_.seen_memory_shingles;
    sc.pad_id = encoder_pad_id_;
    sc.seed = derive_seed(cfg_.seed, 0x7365656eULL);
    seen_ = std::make_unique<SeenShingles>(sc);
  }
  labels_ = std::make_shared<LabelBuffer>(cfg_.label_buffer_rollouts);
  refresher_ = std::make_unique<InfluenceRefresher>(cfg_, models_.make(), models_.make(), labels_);
  heap_releaser_ = util::HeapReleaser(cfg_.heap_release_interval_seconds);
  if (probe_cfg_.interval_steps > 0 && uses_model()) {
    ProbeSchedulerConfig sc;
    sc.interval_steps = probe_cfg_.interval_steps;
    sc.first_step = probe_cfg_.first_step;
    sc.prober.rollout_length = probe_cfg_.rollout_length;
    sc.prober.rows_per_step = 1;
    sc.prober.max_rollouts = probe_cfg_.random_rollouts + probe_cfg_.neighbour_rollouts + 2 * probe_cfg_.bootstrap_pairs;
    sc.prober.max_seconds = probe_cfg_.max_seconds;
    sc.prober.lr_scale = probe_cfg_.lr_scale;
    sc.prober.first_order = probe_cfg_.first_order_labels;
    // Under kAtStep the trainer waits for due refreshes: a probe below its priority would only make it
    // wait longer whenever anything else runs. Under kWhenReady it never waits, so the probe yields.
    sc.nice = cfg_.refresh_mode == RefreshMode::kWhenReady ? probe_cfg_.nice : 0;
    sc.random_rollouts = probe_cfg_.random_rollouts;
    sc.neighbour_rollouts = probe_cfg_.neighbour_rollouts;
    sc.bootstrap_pairs = probe_cfg_.bootstrap_pairs;
    sc.seed = derive_seed(cfg_.seed, 0x70726f6265ULL);
    if (shared_) {  // this rank's share of each probe, into a buffer of its own until the exchange
      sc.rank = collectives_->rank();
      sc.world_size = collectives_->world_size();
      probe_out_ = std::make_shared<LabelBuffer>(std::max<size_t>(1, static_cast<size_t>(sc.prober.max_rollouts)));
    }
    sc.timeout_seconds = probe_cfg_.timeout_seconds;
    sc.trainer_thread_rollouts = probe_cfg_.trainer_thread_rollouts;
    scheduler_ = std::make_unique<ProbeScheduler>(sc, shared_ ? probe_out_ : labels_);
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

// Whether a state saved on (rank, world size) restores here; the same outcome on every rank (it reads the
// state and this rank's resolved position only), so no rank fails alone before the restore's collective.
void OnlineSelection::check_ranks(const SelectionState& s, bool regrouped) const {
  const uint64_t ranks = core_.config().world_size;
  const std::string where = " (saved: rank " + std::to_string(s.rank) + " of " + std::to_string(s.world_size) +
                            "; here: rank " + std::to_string(core_.config().rank) + " of " + std::to_string(ranks) + ")";
  if (regrouped && !s.shared.present)
    throw Error(ErrorCode::kInvalidState, "LoaderState.extra.gm.world_size",
                "the state was saved before a selecting loader could resume on another number of ranks (it has no "
                "gm.shared): restore it on " + std::to_string(s.world_size) + " ranks" + where);
  if (regrouped && s.shared.value == 0)
    throw Error(ErrorCode::kInvalidState, "LoaderState.extra.gm.world_size",
                "a selecting loader's state is per rank when the ranks do not share a model (its windows, centroids "
                "and model are its own): restore it on the same rank of the same number of ranks" + where);
  if (!regrouped && !shared_ && s.rank != core_.config().rank)
    throw Error(ErrorCode::kInvalidState, "LoaderState.extra.gm.rank",
                "a selecting loader's state is per rank unless the ranks share a model (process group): restore it on "
                "the same rank of the same number of ranks" + where);
  if (regrouped && s.has_current && !s.window_selected.present)
    throw Error(ErrorCode::kInvalidState, "LoaderState.extra.gm.window_selected",
                "missing from a state saved by ranks sharing a model: the state text was edited or truncated");
}

// Re-reads and re-selects the current window exactly as the original run did.
void OnlineSelection::restore(const LoaderState& state, const LoaderConfig& loader) {
  // Weights saved as deltas are expanded after the ranks of a shared model compared what they restore: a state
  // whose deltas do not apply then fails on every rank alike, not on one while the others wait in a collective.
  SelectionState s = SelectionState::read_unexpanded(state.extra);
  // Alone, a state is per rank (its model, centroids and labels are its own). Shared across ranks they
  // are global, and so is the stream position: one state (e.g. rank 0's) restores every rank, on the same
  // number of ranks or on another with the same global window (N -> M, below); the rank's importance
  // estimate and counters then come from that state.
  const uint64_t ranks = core_.config().world_size;  // resolved (rank_environment.h)
  const bool regrouped = s.world_size != ranks;       // N -> M: the resume starts at a window boundary
  check_ranks(s, regrouped);
  if (shared_) {  // before any check a rank could fail alone: the others would wait in a collective
    uint64_t share_bits = 0;
    const double share = cfg_.replay_share + 0.0;  // -0.0 and 0.0 alike
    std::memcpy(&share_bits, &share, sizeof share_bits);
    share_bits ^= hash_of(s.replay_share.text) ^ (hash_of(relatives_text(replay_relatives_, cfg_.seen_shingle_tokens)) * 3) ^
                  (hash_of(refresher_->gate().shrinkage_text()) * 5);
    const uint64_t global[10] = {hash_of(s.first_blob.bytes), hash_of(s.trainer.bytes), hash_of(s.labels.bytes),
                                 hash_of(s.kmeans.bytes), static_cast<uint64_t>(s.step), s.emit_pos, cfg_.window_size,
                                 static_cast<uint64_t>(cfg_.mode), hash_of(models_.encoder_identity()), share_bits};
    const std::vector<uint64_t> h =
        hashes_of_ranks(*collectives_, std::string(reinterpret_cast<const char*>(global), sizeof global));
    for (size_t q = 1; q < h.size(); ++q)
      if (h[q] != h[0])
        throw Error(ErrorCode::kInvalidState, "LoaderState.extra.gm",
                    "rank " + std::to_string(q) + " restores another selection state (model, labels, centroids or "
                    "position) than rank 0, or another SelectionConfig mode, window_size, encoder, replay_share, replay_relative_overlap or "
                    "refresh_head_shrinkage / refresh_head_share_start: every rank of a shared model "
                    "restores the same saved state (e.g. rank 0's) with the same config");
  }
  s.expand_weight_deltas();
  if (regrouped && s.window_size * s.world_size != cfg_.window_size * ranks)
    throw Error(ErrorCode::kInvalidState, "LoaderState.extra.gm.window_size",
                "the state was saved on " + std::to_string(s.world_size) + " ranks with window_size " +
                    std::to_string(s.window_size) + " (a global window of " + std::to_string(s.window_size * s.world_size) +
                    " rows); on " + std::to_string(ranks) + " ranks the global window must stay the same: " +
                    ((s.window_size * s.world_size) % ranks == 0
                         ? "set SelectionConfig.window_size = " + std::to_string(s.window_size * s.world_size / ranks)
                         : std::string("it does not divide by ") + std::to_string(ranks) +
                               ": choose a number of ranks that divides it"));
  if (s.mode != static_cast<uint64_t>(cfg_.mode) || (!regrouped && s.window_size != cfg_.window_size))
    throw Error(ErrorCode::kInvalidState, "LoaderState.extra.gm.mode",
                "the state was saved with another selection mode or window size");
  // States saved before the encoder was recorded name none: they were saved with the hashed n-gram encoder.
  const bool legacy_hashed = s.encoder.text.empty() && models_.encoder_identity().rfind("hashed_ngram(", 0) == 0;
  if (s.encoder.text != models_.encoder_identity() && !legacy_hashed)
    throw Error(ErrorCode::kInvalidState, "LoaderState.extra.gm.encoder",
                "the state was saved with the encoder " + (s.encoder.text.empty() ? std::string("hashed_ngram (unrecorded)") : s.encoder.text) +
                    "; this loader's is " + models_.encoder_identity() +
                    ": resume with the SelectionConfig encoder settings (and TorchScript module weights) of the saved run");
  check_replay_share(s, cfg_.replay_share, replay_share_unrecorded_);
  check_replay_relatives(s);
  versions_.set_next_number(s.next_loader_version);
  step_ = s.step;
  if (!s.labels.bytes.empty()) labels_->load(s.labels.bytes);
  s.visit_counters(stats_, [](const auto& saved, auto& live) { live = static_cast<std::decay_t<decltype(live)>>(saved); });
  if (regrouped) {
    // What one rank counted of the rows it read and emitted and of the probes' rollouts (its share): per
    // rank, so M ranks continue from N/M of it (exact with the same global window and batch); what every
    // rank counts whole per probe (R_0, the reference gradient) stays. The budget and the Python batch
    // index (selected / batch_size) read these.
    const auto rescale = [&](auto& per_rank, double whole = 0) {
      per_rank = static_cast<std::decay_t<decltype(per_rank)>>((per_rank - whole) * s.world_size / ranks + whole);
    };
    rescale(stats_.seen);
    rescale(stats_.selected);
    rescale(stats_.seen_discounted);
    rescale(stats_.replayed);
    rescale(stats_.replay_relatives);
    rescale(stats_.cost.train_tokens);
    rescale(stats_.cost.probe_train_tokens, double(s.probe_fixed_train_tokens.value));
    rescale(stats_.cost.probe_eval_tokens, double(s.probe_fixed_eval_tokens.value));
  }
  failures_at_last_success_ = stats_.refreshes_failed;  // a run of failures starts afresh in a new process
  probe_fixed_train_tokens_ = double(s.probe_fixed_train_tokens.value);
  probe_fixed_eval_tokens_ = double(s.probe_fixed_eval_tokens.value);
  // A probe shared across the old ranks and not exchanged is dropped below: it trains nothing.
  const auto dropped = [&](const SavedRefresh& r) { return regrouped && is_unshared_probe(r); };
  const bool will_refresh = std::any_of(s.pending.begin(), s.pending.end(), [&](const SavedRefresh& r) { return !dropped(r); });
  refresher_->load(s.trainer.bytes, s.refreshes > 0 || s.refreshes_gated > 0 || will_refresh, "LoaderState.extra.gm.trainer");
  refresher_->gate().load(s.gate.bytes, "LoaderState.extra.gm.gate");
  backoff_.restore(s.backoff_streak, s.backoff_skip);
  importance_->load(s.importance.bytes);
  // As the live path reports it (0 before the first refresh; rollouts without a prior publish the whole head); a
  // refresh that failed last before the save is not told apart.
  stats_.head_share = s.refreshes == 0 && s.refreshes_gated == 0 ? 0.0
                      : refresher_->shrinks()                     ? refresher_->gate().head_share()
                                                                  : 1.0;
  stats_.head_share_scores = refresher_->gate().share_means();
  if (replay_ && !s.replay.bytes.empty()) {  // none saved: an empty buffer
    try {
      replay_->load(s.replay.bytes);
    } catch (const Error& e) {
      throw Error(ErrorCode::kInvalidState, "LoaderState.extra.gm.replay", e.what());
    }
    const uint32_t width = core_.config().row_length();
    for (uint64_t i = 0; i < replay_->size(); ++i)
      if (replay_->at(i).tokens.size() != width)
        throw Error(ErrorCode::kInvalidState, "LoaderState.extra.gm.replay",
                    "holds rows of " + std::to_string(replay_->at(i).tokens.size()) + " tokens; this loader's rows have " +
                        std::to_string(width) + ": restore with the LoaderConfig (sequence_length, labels) of the saved run");
  }
  if (seen_ && !s.seen_shingles.bytes.empty()) {  // none saved: an empty memory
    try {
      seen_->load(s.seen_shingles.bytes);
    } catch (const Error& e) {
      throw Error(ErrorCode::kInvalidState, "LoaderState.extra.gm.seen", e.what());
    }
  }
  if (s.feedback.bytes.size() % (sizeof(int64_t) * size_t(sequence_length_)) != 0)
    throw Error(ErrorCode::kInvalidState, "LoaderState.extra.gm.feedback",
                "not whole token rows of sequence_length " + std::to_string(sequence_length_) +
                    ": restore with the LoaderConfig the state was saved with");
  feedback_due_.resize(s.feedback.bytes.size() / sizeof(int64_t));
  if (!feedback_due_.empty()) std::memcpy(feedback_due_.data(), s.feedback.bytes.data(), s.feedback.bytes.size());
  versions_.publish(s.first_blob.bytes, s.first_trained, s.first_version, "LoaderState.extra.gm.first_blob");
  next_ = read_window();
  if (s.has_current) {
    if (!next_) throw Error(ErrorCode::kInvalidState, "LoaderState", "the saved window is past the end of the stream");
    clusters_.restore(s.kmeans.bytes, s.kmeans_version);
    importance_before_current_ = importance_->save();
    current_ = std::move(next_);
    next_.reset();
    select_current();
    if (s.second_version != s.first_version)
      versions_.publish(s.second_blob.bytes, s.second_trained, s.second_version, "LoaderState.extra.gm.second_blob");
    next_ = read_window();
    emit_pos_ = s.emit_pos;
    if (regrouped && s.emit_pos > 0) {
      // The window was selected on other rank slices: what each old rank emitted of it cannot be told
      // apart on the new ones. It counts as emitted, and the old ranks' rows not emitted yet are dropped.
      if (s.emit_pos < s.window_selected.value)
        stats_.resume_dropped_rows += (s.window_selected.value - s.emit_pos) * s.world_size;
      emit_pos_ = order_.size();
      remember_current_ = false;  // its picks on this rank were never emitted: not replayed, not remembered
    }
    stats_.windows -= 1;  // select_current() counted the re-selected window again
    stats_.seen_discounted -= window_discounted_;
    stats_.seen -= current_->host.batch_size;
    if (stats_.warmup_windows > 0 && !versions_.trained(current_->version)) stats_.warmup_windows -= 1;
  }
  for (const SavedRefresh& saved : s.pending) {
    if (dropped(saved)) {  // split for the old ranks: the other shares are not in this state
      stats_.resume_dropped_probes += 1;
      continue;
    }
    Pending p;
    p.probe_step = saved.probe_step;
    p.effective_at = saved.effective_at;
    auto promise = std::make_shared<std::promise<std::string>>();
    p.promise = promise;
    p.blob = promise->get_future().share();
    const std::string& bytes = saved.weights.bytes;
    if (is_unshared_probe(saved)) {  // this rank's share, exchanged later
      if (!shared_ || !probe_out_)
        throw Error(ErrorCode::kInvalidState, "LoaderState.extra.gm.pending",
                    "holds a probe shared across ranks and not exchanged yet (step " + std::to_string(p.probe_step) +
                        "): restore it with the same process group and number of ranks");
      const size_t at = kUnsharedProbe.size();
      if (bytes.size() < at + sizeof(int64_t))
        throw Error(ErrorCode::kInvalidState, "LoaderState.extra.gm.pending", "a saved probe share is truncated");
      std::memcpy(&probe_attempted_, bytes.data() + at, sizeof(int64_t));
      probe_out_->clear();
      for (auto& r : deserialize_rollouts(bytes.substr(at + sizeof(int64_t)))) probe_out_->add(std::move(r));
      p.shared = false;
    } else {
      promise->set_value(bytes);
    }
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

torch::Tensor OnlineSelection::discount_seen(const torch::Tensor& u, const torch::Tensor& window) {
  // a_i = 1 - seen_discount * s_i on u shifted to <= 0 by its maximum (as the greedy's nonpositive_influence):
  // the rows selected recently act as picks the candidate is related to by the share s_i of its shingles seen.
  const torch::Tensor host = u.to(torch::kCPU, torch::kFloat).contiguous();
  const torch::Tensor tokens = window.contiguous();
  const int64_t rows = host.size(0), width = tokens.size(1);
  std::vector<float> out(host.data_ptr<float>(), host.data_ptr<float>() + rows);
  float top = -std::numeric_limits<float>::infinity();
  for (const float x : out)
    if (std::isfinite(x)) top = std::max(top, x);
  if (!std::isfinite(top)) return u;  // no finite u: nothing to scale
  uint64_t discounted = 0;
  for (int64_t i = 0; i < rows; ++i) {
    if (!std::isfinite(out[i])) continue;
    const double s = seen_->overlap(tokens.data_ptr<int64_t>() + i * width, width);
    if (s <= 0) continue;
    out[i] = float(double(top) + (double(out[i]) - double(top)) * (1.0 - cfg_.seen_discount * s));
    discounted += 1;
  }
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    stats_.seen_discounted += discounted;
    window_discounted_ = discounted;
  }
  return torch::tensor(out, torch::kFloat).to(u.device());
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
  window_discounted_ = 0;
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
                                       cfg_.nearest_pick_discount ? RelationAggregate::kNearest : RelationAggregate::kMean,
                                       cfg_.nonpositive_influence}
                      : RelationParams{1.0, 1e30, RelationAggregate::kMean};  // every r_ij = 1: rank by u alone
    informed = versions_.trained(current_->version) || use_prior;
    if (seen_ && informed) in.u = discount_seen(in.u, current_->tokens);
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
  const uint64_t centroids_hash = uses_model() ? clusters_.hash() : 0;
  if (uses_model() && hashed_version_ != current_->version) {
    const std::string& w = versions_.weights(current_->version);
    model_hash_ = XXH3_64bits(w.data(), w.size());
    hashed_version_ = current_->version;
  }
  const uint64_t label_rollouts = labels_ ? labels_->size() : 0;
  std::lock_guard<std::mutex> lock(stats_mu_);
  stats_.label_buffer_rollouts = label_rollouts;
  stats_.versions_held = versions_.held();
  stats_.refreshes_pending = pending_.size();
  stats_.replay_rows = replay_ ? replay_->size() : 0;
  stats_.centroids_hash = centroids_hash;
  stats_.model_hash = model_hash_;
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
      if (shared_ && !front.shared) share_refresh(front);
      // A probe that threw never reaches refresh(): nothing to publish.
      if (front.blob.wait_for(std::chrono::seconds(0)) != std::future_status::ready) front.promise->set_value("");
      std::lock_guard<std::mutex> lock(stats_mu_);
      const double w = waited.seconds();
      stats_.refresh_wait_seconds += w;
      stats_.cost.wait_refresh_seconds += w;
    }
    const Pending p = front;
    pending_.erase(pending_.begin());
    if (cfg_.reference_feedback > 0) collect_feedback(p.probe_step);
    const std::string blob = p.blob.get();
    if (blob.empty()) continue;
    const uint64_t version =
        versions_.publish(blob, true, 0, "the refreshed weights (a probe's, rank 0's broadcast, or LoaderState.extra.gm.pending.*)");
    std::lock_guard<std::mutex> lock(stats_mu_);
    stats_.refreshes += 1;
    stats_.switches.push_back({current_->index + 1, p.probe_step, version});  // the next window read is the first
  }
}

// Relevance feedback: the rows of the probe's steps that lowered the reference loss most (the best
// reference_feedback_share at each rollout position), due at the next window.
void OnlineSelection::collect_feedback(int64_t probe_step) {
  std::vector<LabelledRollout> probe;
  for (LabelledRollout& e : labels_->snapshot())
    if (e.probe_step == probe_step) probe.push_back(std::move(e));
  if (probe.empty()) return;
  const size_t L = probe[0].labels.size();
  for (size_t t = 0; t < L; ++t) {
    std::vector<std::pair<double, size_t>> ranked;  // (label, rollout): lower = the step helped more
    for (size_t i = 0; i < probe.size(); ++i)
      if (probe[i].labels.size() == L && std::isfinite(probe[i].labels[t])) ranked.emplace_back(probe[i].labels[t], i);
    const size_t keep = size_t(std::ceil(cfg_.reference_feedback_share * double(ranked.size())));
    std::partial_sort(ranked.begin(), ranked.begin() + std::min(keep, ranked.size()), ranked.end());
    for (size_t k = 0; k < keep && k < ranked.size(); ++k) {
      const torch::Tensor rows = probe[ranked[k].second].tokens.select(0, int64_t(t)).contiguous();  // [R, T]
      if (rows.size(-1) != sequence_length_)
        throw Error(ErrorCode::kInvalidState, "OnlineSelection::collect_feedback",
                    "a probe row of " + std::to_string(rows.size(-1)) + " tokens, not sequence_length");
      feedback_due_.insert(feedback_due_.end(), rows.data_ptr<int64_t>(), rows.data_ptr<int64_t>() + rows.numel());
    }
  }
}

bool OnlineSelection::advance() {
  if (!next_) {
    ended_ = true;
    return false;
  }
  if (!feedback_due_.empty() && importance_->has_reference())
    importance_->add_feedback(feedback_due_.data(), int64_t(feedback_due_.size()) / sequence_length_, sequence_length_);
  feedback_due_.clear();
  clusters_.begin_window();
  importance_before_current_ = importance_->save();
  // The picks of the window just emitted join the shingle memory and compete for the replay buffer (with the u
  // they were selected by), in emitted order.
  if ((seen_ || replay_) && current_ && remember_current_) {
    const torch::Tensor tokens = current_->tokens.contiguous();
    const int64_t width = tokens.size(1);
    const float* u = u_.data_ptr<float>();
    uint64_t relatives = 0;
    for (const int64_t row : order_) {
      const int64_t* r = tokens.data_ptr<int64_t>() + row * width;
      if (seen_) seen_->add(r, width);
      if (replay_) relatives += replay_->offer(double(u[row]), current_->host.ids[row], r, width);
    }
    std::lock_guard<std::mutex> lock(stats_mu_);
    stats_.replay_relatives += relatives;
  }
  remember_current_ = true;
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
  uint64_t slot = 0;  // the stream's emitted rows so far: replay slots are a function of it
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    slot = stats_.selected;
  }
  while (collected < rows) {
    if (replay_due(slot)) {
      const ReplayEntry e = replay_->take(util::splitmix64(replay_seed_ ^ slot) % replay_->size());
      const int64_t width = int64_t(e.tokens.size());
      pieces.push_back(torch::from_blob(const_cast<int64_t*>(e.tokens.data()), {1, width}, torch::kLong).clone());
      us.push_back(torch::full({1}, float(e.score), torch::kFloat));
      cs.push_back(torch::full({1}, int64_t{-1}, torch::kLong));
      b.ids.push_back(e.id);
      {
        std::lock_guard<std::mutex> lock(stats_mu_);
        stats_.selected += 1;
        stats_.replayed += 1;
        stats_.cost.train_tokens += uint64_t(width);
        stats_.cost.train_flops = 3.0 * flops_per_token_ * double(stats_.cost.train_tokens);
      }
      slot += 1;
      collected += 1;
      continue;
    }
    if (!current_ || emit_pos_ >= order_.size()) {
      if (!advance()) break;
      continue;
    }
    size_t take = std::min<size_t>(rows - collected, order_.size() - emit_pos_);
    for (size_t k = 1; k < take; ++k)  // up to the next replay slot
      if (replay_due(slot + k)) take = k;
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
    slot += take;
    collected += static_cast<uint32_t>(take);
  }
  if (collected < rows) return std::nullopt;  // the stream ended; a partial last batch is not emitted
  b.input_ids = pieces.size() == 1 ? pieces[0] : torch::cat(pieces);
  b.influence = us.size() == 1 ? us[0] : torch::cat(us);
  b.cluster = cs.size() == 1 ? cs[0] : torch::cat(cs);
  return b;
}

// The relatives are part of the stream: a state resumes only under the overlap and shingle length its buffer kept
// rows apart with. A state saved before they were recorded (no gm.replay_relative_overlap) holding a replay buffer
// was filled without relatives (then the only behaviour).
void OnlineSelection::check_replay_relatives(const SelectionState& s) const {
  const std::string mine = relatives_text(replay_relatives_, cfg_.seen_shingle_tokens);
  const bool unrecorded = s.replay_relative_overlap.text.empty();
  if (unrecorded && s.replay.bytes.empty()) return;  // no buffer saved: nothing it kept depends on them
  const std::string saved = unrecorded ? "0" : s.replay_relative_overlap.text;
  if (saved == mine) return;
  const size_t comma = saved.find(',');
  double overlap = 0;
  const bool parsed = parse_share(saved.substr(0, comma), overlap) && overlap >= 0 && overlap <= 1 &&
                      (comma == std::string::npos ? overlap == 0 : saved.find_first_not_of("0123456789", comma + 1) == std::string::npos && comma + 1 < saved.size());
  if (!parsed)
    throw Error(ErrorCode::kInvalidState, "LoaderState.extra.gm.replay_relative_overlap",
                "'" + saved + "' is not \"0\" or \"<overlap in (0, 1]>,<shingle tokens>\": the state was edited");
  const std::string fix =
      comma == std::string::npos
          ? "SelectionConfig.replay_relative_overlap = 0"
          : "SelectionConfig.replay_relative_overlap = " + saved.substr(0, comma) + " and seen_shingle_tokens = " +
                saved.substr(comma + 1) + ", with mode group (or group_no_clusters) and relations on";
  throw Error(ErrorCode::kInvalidState, "LoaderState.extra.gm.replay_relative_overlap",
              std::string(unrecorded ? "the state was saved before the replay buffer's relatives were recorded, so without "
                                       "them (overlap 0)"
                                     : "the state's replay buffer kept near-duplicates apart with (overlap, shingle tokens) " +
                                           saved) +
                  "; this loader's buffer applies " + mine +
                  " (relatives apply in the group modes with relations and replay only): set " + fix +
                  " to resume it exactly");
}

bool OnlineSelection::replay_due(uint64_t slot) const {
  if (!replay_ || replay_->size() < std::max<uint64_t>(1, replay_->capacity() / 4)) return false;
  const double s = cfg_.replay_share;
  return std::floor(double(slot + 1) * s) > std::floor(double(slot) * s);
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
    const double flops = target->forward_flops_per_token();
    const int64_t reference = target->reference_tokens();
    std::lock_guard<std::mutex> lock(stats_mu_);  // the probe thread reads both (count_probe_cost)
    flops_per_token_ = flops;
    reference_tokens_ = reference;
    stats_.cost.flops_per_token = flops_per_token_;
    stats_.cost.train_flops = 3.0 * flops_per_token_ * double(stats_.cost.train_tokens);
  }
  if (scheduler_ && probe_cfg_.trainer_thread_rollouts > 0) {  // probes in slices: the next slice of the one in flight
    const util::Stopwatch took;
    if (scheduler_->advance()) {
      const double spent = took.seconds();
      std::lock_guard<std::mutex> lock(stats_mu_);
      stats_.cost.probe_slice_seconds += spent;
    }
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
    if (shared_) share_unshared_refreshes();  // the previous probe's rollouts leave probe_out_ first
    std::lock_guard<std::mutex> lock(stats_mu_);
    stats_.cost.wait_probe_seconds += waited.seconds();
  }
  {  // back-off while the gate keeps refusing (decided after the previous probe's refresh, under kAtStep)
    std::lock_guard<std::mutex> lock(stats_mu_);
    if (backoff_.skip_due()) {
      stats_.probes_skipped_backoff += 1;
      return;
    }
  }
  if (probe_cfg_.first_order_labels && target->weights().empty())  // said here, not as failed probes later
    throw Error(ErrorCode::kInvalidConfig, "ProbeConfig.first_order_labels", first_order_unsupported);
  ProbeContext ctx;
  if (probe_cfg_.budget > 0) {
    // Budget in token-FLOP units (x F cancels): training 3 per token, a probe step 3 per token, an evaluation 1
    // per reference token. Deterministic under kAtStep: the previous probe's cost is counted by now.
    std::lock_guard<std::mutex> lock(stats_mu_);
    const SelectionCost& c = stats_.cost;
    // First-order labels: no evaluation per step; the reference gradient (3 per reference token) once per probe.
    const double spent = 3.0 * c.probe_train_tokens + c.probe_eval_tokens;
    const bool first_order = probe_cfg_.first_order_labels;
    const double fixed = double(reference_tokens_) * (first_order ? 4.0 : 1.0);  // R_0 (+ the gradient)
    const double allowance = probe_cfg_.budget * 3.0 * double(c.train_tokens) - spent - fixed;
    const double per_rollout = double(probe_cfg_.rollout_length) *
                               (3.0 * double(sequence_length_) + (first_order ? 0.0 : double(reference_tokens_)));
    // On many ranks: this rank's allowance (its share of the probes' cost is counted) times the ranks is
    // what the whole probe may cost; the plan is cut to that many rollouts before it is split.
    const double ranks = shared_ ? double(collectives_->world_size()) : 1.0;
    const int64_t afford = allowance > 0 ? int64_t(allowance * ranks / per_rollout) : 0;
    if (afford < int64_t(probe_cfg_.min_rollouts)) {
      stats_.probes_skipped_budget += 1;
      return;
    }
    ctx.max_rollouts = afford;
  }
  ctx.cluster_ids = cluster_ids_.slice(0, 0, n);
  if (prior_.defined() && cfg_.importance_prior) ctx.prior = prior_.slice(0, 0, n);
  if (versions_.trained(current_->version)) {  // a private copy for beam search (the scorer uses the published one)
    ctx.model = models_.make();
    ctx.model->import_weights(versions_.weights(current_->version));
    ctx.model->eval();
  }
  Pending p;
  p.probe_step = step;
  p.effective_at = step + probe_cfg_.effect_delay_steps;
  p.promise = std::make_shared<std::promise<std::string>>();
  p.blob = p.promise->get_future().share();
  p.shared = !shared_;
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

// Probe back-off after a refresh (called under stats_mu_).
void OnlineSelection::note_backoff(const RefreshResult& r) {
  if (r.gated && r.heldout_measured && r.error.empty()) backoff_.refused();  // a held-out check kept the prior
  else if (!r.gated && r.error.empty() && !r.weights.empty()) backoff_.published();
}

void OnlineSelection::refresh(int64_t step, const ProbeResult& result) {
  if (shared_) {  // trained after the exchange (share_refresh), on the trainer thread
    probe_attempted_ = result.attempted;
    return;
  }
  std::shared_ptr<std::promise<std::string>> done = inflight_;
  if (!done) return;
  {
    const util::Stopwatch took;
    RefreshResult r = refresher_->refresh(step, static_cast<int64_t>(result.rollouts.size()));
    publish_refresh(step, result, r, took);
    done->set_value(std::move(r.weights));  // after the stats: whoever sees the refresh sees it counted
  }
  // The refresh's tensors and weight copies are freed now (the probe's snapshot and beam-search copy only after
  // this callback: the next release takes those). The trainer has the result; it waits for this ~16 ms only when
  // it waits for the probe thread itself (kAtStep with the result late, or a probe due while this one runs), or
  // allocates from an arena while malloc_trim holds its lock.
  release_heap_if_due();
}

void OnlineSelection::publish_refresh(int64_t step, const ProbeResult& result, const RefreshResult& r,
                                      const util::Stopwatch& took) {
  if (r.heldout_measured) {
    std::lock_guard<std::mutex> lock(stats_mu_);
    stats_.last_heldout_spearman = r.heldout_spearman;
    stats_.last_heldout_spearman_scaled = r.heldout_spearman_scaled;
    stats_.last_heldout_spearman_prior = r.heldout_spearman_prior;
    stats_.last_heldout_spearman_unshrunk = r.heldout_spearman_unshrunk;
  }
  count_probe_cost(double(result.attempted));
  std::lock_guard<std::mutex> lock(stats_mu_);
  if (r.error.empty()) stats_.head_share = r.head_share;
  stats_.head_share_scores = refresher_->gate().share_means();
  stats_.refresh_seconds += took.seconds();
  stats_.cost.refresh_flops += r.flops;
  if (r.gated) stats_.refreshes_gated += 1;
  note_backoff(r);
  if (!r.error.empty()) {
    stats_.refreshes_failed += 1;
    if (r.nonfinite) stats_.refreshes_rejected_nonfinite += 1;
    stats_.last_refresh_error = r.error;
    std::fprintf(stderr, "groupmates [warning] the refresh after the probe at step %lld failed: %s\n",
                 static_cast<long long>(step), r.error.c_str());
  } else {
    failures_at_last_success_ = failures_locked();
  }
}

// After a refresh, on the thread that refreshed (heap_releaser_'s one owner): hands the free heap back if due and
// counts it, the release's own time added to refresh_seconds too.
void OnlineSelection::release_heap_if_due() {
  const double before = heap_releaser_.seconds();
  if (!heap_releaser_.maybe_release(util::monotonic_seconds())) return;
  std::lock_guard<std::mutex> lock(stats_mu_);
  stats_.refresh_seconds += heap_releaser_.seconds() - before;
  stats_.heap_releases = heap_releaser_.releases();
  stats_.heap_release_seconds = heap_releaser_.seconds();
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

void OnlineSelection::count_probe_cost(double attempted) {
  // Probe cost: every attempted rollout's steps and evaluations, and each probe's R_0.
  const auto& pc = probe_cfg_;
  const double width = double(sequence_length_);
  // Steps 3 F per token, evaluations F per token; first-order labels: no evaluation after a step, one
  // backward over the reference rows per probe (counted as training tokens).
  const bool first_order = pc.first_order_labels;
  std::lock_guard<std::mutex> lock(stats_mu_);  // on_step writes reference_tokens_ and flops_per_token_
  const double reference = double(reference_tokens_);
  const double fixed_train = first_order && attempted > 0 ? reference : 0.0, fixed_eval = reference;
  const double train_tokens = attempted * pc.rollout_length * width + fixed_train;
  const double eval_tokens = fixed_eval + (first_order ? 0.0 : attempted * pc.rollout_length * reference);
  probe_fixed_train_tokens_ += fixed_train;
  probe_fixed_eval_tokens_ += fixed_eval;
  stats_.cost.probe_train_tokens += train_tokens;
  stats_.cost.probe_eval_tokens += eval_tokens;
  stats_.cost.probe_flops += 3.0 * flops_per_token_ * train_tokens + flops_per_token_ * eval_tokens;
}

LoaderState OnlineSelection::save() {
  if (scheduler_) scheduler_->wait_idle();
  // No collective here (a rank may save alone, e.g. on leaving a loop after an error): a probe not
  // exchanged yet is saved as this rank's share, exchanged after the restore.
  for (auto& p : pending_)
    if (p.shared && p.blob.wait_for(std::chrono::seconds(0)) != std::future_status::ready) p.promise->set_value("");
  const Window* first = current_ ? &*current_ : (next_ ? &*next_ : nullptr);
  LoaderState state = first ? first->core_before : core_.state();
  SelectionState s;
  s.mode = static_cast<uint64_t>(cfg_.mode);
  s.window_size = cfg_.window_size;
  s.encoder.text = models_.encoder_identity();
  s.world_size = core_.config().world_size;
  s.rank = core_.config().rank;
  s.shared.value = shared_ ? 1 : 0;
  s.step = step_;
  s.has_current = current_.has_value();
  s.emit_pos = emit_pos_;
  s.window_selected.value = current_ ? order_.size() : 0;
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
  if (seen_) s.seen_shingles.bytes = seen_->save();  // the current window's picks join it at the next window
  s.replay_share.text = share_text(cfg_.replay_share);
  s.replay_relative_overlap.text = relatives_text(replay_relatives_, cfg_.seen_shingle_tokens);
  if (replay_) s.replay.bytes = replay_->save();     // likewise
  s.feedback.bytes.assign(reinterpret_cast<const char*>(feedback_due_.data()), feedback_due_.size() * sizeof(int64_t));
  s.next_loader_version = versions_.next_number();
  s.trainer.bytes = refresher_->weights();
  s.gate.bytes = refresher_->gate().save();
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    s.backoff_streak = backoff_.streak();
    s.backoff_skip = backoff_.pending_skips();
    s.probe_fixed_train_tokens.value = uint64_t(probe_fixed_train_tokens_);
    s.probe_fixed_eval_tokens.value = uint64_t(probe_fixed_eval_tokens_);
  }
  if (labels_->size() > 0) s.labels.bytes = labels_->save();
  for (const Pending& p : pending_) {
    std::string bytes;
    if (p.shared) {
      bytes = p.blob.get();
    } else {
      bytes = kUnsharedProbe;
      bytes.append(reinterpret_cast<const char*>(&probe_attempted_), sizeof(int64_t));
      bytes += serialize_rollouts(probe_out_->snapshot());
    }
    s.pending.push_back(SavedRefresh{p.probe_step, p.effective_at, WeightsBlob{std::move(bytes)}});
  }
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

namespace groupmates {

namespace {

// Length-prefixed strings as one byte string (rank 0's refresh result on the wire).
std::string pack(const std::vector<std::string>& fields) {
  std::string out;
  for (const std::string& f : fields) {
    const uint64_t n = f.size();
    out.append(reinterpret_cast<const char*>(&n), sizeof n);
    out += f;
  }
  return out;
}

std::vector<std::string> unpack(const std::string& bytes, size_t count) {
  std::vector<std::string> out;
  size_t at = 0;
  while (out.size() < count) {
    uint64_t n = 0;
    if (at + sizeof n > bytes.size()) break;
    std::memcpy(&n, bytes.data() + at, sizeof n);
    at += sizeof n;
    if (n > bytes.size() - at) break;
    out.push_back(bytes.substr(at, n));
    at += n;
  }
  if (out.size() != count || at != bytes.size())
    throw Error(ErrorCode::kDistributed, "refresh broadcast", "rank 0's refresh result is malformed (" +
                                                                  std::to_string(bytes.size()) + " bytes)");
  return out;
}

std::string pack_doubles(const std::vector<double>& v) { return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(double)); }

std::vector<double> unpack_doubles(const std::string& s) {
  std::vector<double> v(s.size() / sizeof(double));
  std::memcpy(v.data(), s.data(), v.size() * sizeof(double));
  return v;
}

uint64_t hash_of(const std::vector<LabelledRollout>& entries) {
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  for (const LabelledRollout& e : entries) {
    const torch::Tensor t = e.tokens.contiguous();
    XXH3_64bits_update(state, t.data_ptr(), t.numel() * t.element_size());
    XXH3_64bits_update(state, e.labels.data(), e.labels.size() * sizeof(double));
  }
  const uint64_t h = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return h;
}

}  // namespace

void OnlineSelection::share_unshared_refreshes() {
  for (Pending& p : pending_)
    if (!p.shared) {
      scheduler_->wait_idle();
      share_refresh(p);
    }
}

void OnlineSelection::share_refresh(Pending& p) {
  const util::Stopwatch took;
  const int rank = collectives_->rank(), world = collectives_->world_size();
  // 1. Every rank's share of the probe (its attempted count and labelled rollouts), in rank order.
  std::vector<LabelledRollout> mine = probe_out_->snapshot();
  probe_out_->clear();
  const int64_t attempted = probe_attempted_;
  probe_attempted_ = 0;
  uint64_t bytes = 0;
  int64_t all_attempted = 0;
  for (const std::string& b : collectives_->all_gather(std::string(reinterpret_cast<const char*>(&attempted), sizeof attempted))) {
    int64_t n = 0;
    std::memcpy(&n, b.data(), std::min(b.size(), sizeof n));
    all_attempted += n;
    bytes += b.size();
  }
  std::vector<LabelledRollout> all;
  for (const std::string& b : collectives_->all_gather(serialize_rollouts(mine))) {
    bytes += b.size();
    for (auto& r : deserialize_rollouts(b)) all.push_back(std::move(r));
  }
  for (const LabelledRollout& r : all) labels_->add(r);  // the same entries in the same order on every rank
  p.shared = true;
  // 2. Rank 0 trains on the shared buffer; its result is every rank's (a probe that failed everywhere: nothing).
  std::string published;
  RefreshResult r;
  bool refreshed = false;
  if (!all.empty()) {
    std::string wire;
    if (rank == 0) {
      r = refresher_->refresh(p.probe_step, static_cast<int64_t>(all.size()));
      std::string working = refresher_->weights();
      if (working == r.weights) working.clear();  // the usual case: sent once
      wire = pack({r.weights, working, refresher_->gate().save(), r.error,
                   pack_doubles({r.flops, double(r.heldout_measured), r.heldout_spearman, r.heldout_spearman_scaled,
                            r.heldout_spearman_prior, double(r.gated), double(refresher_->refreshed()),
                            r.heldout_spearman_unshrunk, r.head_share})});
    }
    wire = collectives_->broadcast(wire, 0);
    bytes += wire.size();
    std::vector<std::string> f = unpack(wire, 5);
    if (f[1].empty()) f[1] = f[0];  // the working weights are the published ones
    const std::vector<double> d = unpack_doubles(f[4]);
    if (d.size() != 9) throw Error(ErrorCode::kDistributed, "refresh broadcast", "rank 0's refresh numbers are malformed");
    if (rank != 0) {
      refresher_->load(f[1], d[6] != 0, "the working weights broadcast by rank 0");
      refresher_->gate().load(f[2], "the refresh gate record broadcast by rank 0", /*adopt_shrinkage=*/true);
      r.weights = f[0];
      r.error = f[3];
      r.flops = d[0];
      r.heldout_measured = d[1] != 0;
      r.heldout_spearman = d[2];
      r.heldout_spearman_scaled = d[3];
      r.heldout_spearman_prior = d[4];
      r.gated = d[5] != 0;
      r.heldout_spearman_unshrunk = d[7];
      r.head_share = d[8];
    }
    // 3. Checked, not assumed: every rank now holds the same published and working weights.
    const uint64_t both[2] = {hash_of(f[0]), hash_of(f[1])};
    const std::vector<uint64_t> h = hashes_of_ranks(*collectives_, std::string(reinterpret_cast<const char*>(both), sizeof both));
    for (int q = 1; q < world; ++q)
      if (h[q] != h[0])
        throw Error(ErrorCode::kDistributed, "refresh broadcast",
                    "rank " + std::to_string(q) + " holds other influence-model weights than rank 0 after the refresh "
                    "of the probe at step " + std::to_string(p.probe_step));
    published = f[0];
    refreshed = true;
  }
  count_probe_cost(double(all_attempted) / double(world));  // this rank's share of the probe's cost
  const uint64_t labels_hash = hash_of(labels_->snapshot());
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    stats_.shared_rollouts += all.size();
    stats_.shared_bytes += bytes;
    stats_.labels_hash = labels_hash;
    stats_.refresh_seconds += took.seconds();
    if (refreshed) {
      if (r.heldout_measured) {
        stats_.last_heldout_spearman = r.heldout_spearman;
        stats_.last_heldout_spearman_scaled = r.heldout_spearman_scaled;
        stats_.last_heldout_spearman_prior = r.heldout_spearman_prior;
        stats_.last_heldout_spearman_unshrunk = r.heldout_spearman_unshrunk;
      }
      if (r.error.empty()) stats_.head_share = r.head_share;
      stats_.head_share_scores = refresher_->gate().share_means();
      stats_.cost.refresh_flops += r.flops;  // rank 0's (the others trained nothing; counted as one model)
      if (r.gated) stats_.refreshes_gated += 1;
      note_backoff(r);  // rank 0's result: every rank backs off alike
      if (!r.error.empty()) {
        stats_.refreshes_failed += 1;
        stats_.last_refresh_error = r.error;
        std::fprintf(stderr, "groupmates [warning] the refresh after the probe at step %lld failed: %s\n",
                     static_cast<long long>(p.probe_step), r.error.c_str());
      } else {
        failures_at_last_success_ = failures_locked();
      }
    }
  }
  p.promise->set_value(std::move(published));
  if (!refreshed) return;
  // The refresh's and the exchange's copies freed first (the broadcast's are already), then the free heap handed
  // back (each rank by its own clock: a rank may spend these ~16 ms at another step than the others).
  std::string().swap(r.weights);
  std::vector<LabelledRollout>().swap(all);
  std::vector<LabelledRollout>().swap(mine);
  release_heap_if_due();
}

}  // namespace groupmates
