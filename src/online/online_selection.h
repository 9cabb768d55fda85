// online_selection.h: the selecting half of GroupMatesLoader (private).
//
// Data path: windows from the streaming core -> asynchronous scoring (WindowScorer, one model
// version per window) -> online spherical k-means -> a Selector -> rows emitted in predicted-best
// order. Control path: on_step -> ProbeScheduler (snapshot of the live model, rollouts on the
// probe thread) -> LabelBuffer -> influence-model refresh (same thread) -> a pending version that
// takes effect at the first window boundary after it is ready (RefreshMode::kWhenReady: the
// trainer never waits, each switch is recorded) or at or after step s + effect_delay_steps, waiting
// for it there (kAtStep: timing never changes the stream). With reference rows, an
// ImportanceEstimator (DSIR-style, no probes) scores every window too: kImportance selects by it
// alone, the model-based modes add it to u as a prior weighted by the model's learnable gamma.
//
// Its parts, one job each: VersionRegistry (model versions: weights, trained flag, published
// model), WindowClusters (the k-means lifecycle), InfluenceRefresher (the refresh training, probe
// thread), SelectionState (the saved keys, declared once), SelectionLog (JSON lines of emitted rows).
//
// On many ranks (a Collectives over more than one rank, issue #14): RefreshMode::kAtStep only. Each
// rank's probe thread runs its share of every probe's rollouts into a private buffer; at the refresh's
// effect point (or before the next probe) the trainer thread all-gathers them, every
// rank appends all of them to its label buffer in rank order, rank 0 trains, and its result (weights
// published and working, gate record, refresh stats) is broadcast and checked by hash: every rank
// publishes bit-identical weights under the same version number at the same window. The k-means
// step is shared too (WindowClusters::set_collectives). All collectives run on the trainer thread;
// save() makes none (a probe not exchanged yet is saved as this rank's share).
#pragma once

#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "groupmates/engine/collectives.h"
#include "groupmates/engine/label_buffer.h"
#include "groupmates/engine/oracle_prober.h"
#include "groupmates/engine/probe_scheduler.h"
#include "groupmates/engine/selector.h"
#include "groupmates/engine/window_scorer.h"
#include "groupmates/loader.h"
#include "groupmates/probe_target.h"
#include "online/influence_model_factory.h"
#include "online/influence_refresher.h"
#include "online/selection_log.h"
#include "online/version_registry.h"
#include "online/window_clusters.h"
#include "online/probe_backoff.h"
#include "selection/importance_estimator.h"
#include "selection/replay_buffer.h"
#include "selection/seen_shingles.h"
#include "util/heap_release.h"
#include "util/stopwatch.h"

namespace groupmates {

struct SelectionState;

class OnlineSelection {
 public:
  /// `core` yields windows (its batch_size is the window size); `restore` is a state saved by
  /// save() (or null for a fresh start), whose main fields `core` was opened at; `collectives`:
  /// the data-parallel ranks to share probes, model and centroids with (null or one rank: alone).
  OnlineSelection(StreamingLoader& core, const LoaderConfig& loader, SelectionConfig selection, ProbeConfig probes,
                  const LoaderState* restore, std::shared_ptr<Collectives> collectives = nullptr);
  ~OnlineSelection();

  /// Up to `rows` selected rows (fewer only at the end of the stream), or nullopt at the end.
  std::optional<Batch> next(uint32_t rows);
  void on_step(int64_t step, ProbeTarget* target);
  /// Reference rows for the importance estimator (int64 [R, T]); replaces earlier ones.
  void set_reference(const torch::Tensor& rows);
  /// Main fields: the core's state at the start of the current window; extra: the rest.
  LoaderState save();
  SelectionStats stats() const;

 private:
  struct Window {
    HostBatch host;
    torch::Tensor tokens;          // [W, T] int64, a view of host's pooled buffer
    LoaderState core_before;       // the core's state before this window
    uint64_t index = 0;            // window number on this rank
    uint64_t version = 0;          // loader version that scores it
    std::future<ScoredWindow> scored;
  };
  struct Pending {                 // a refresh registered by a probe
    int64_t probe_step = 0;
    int64_t effective_at = 0;
    std::shared_ptr<std::promise<std::string>> promise;
    std::shared_future<std::string> blob;  // empty string = the probe failed (nothing to publish)
    bool shared = true;                    // shared_: false until share_refresh() resolved it
  };

  std::optional<Window> read_window();
  bool advance();
  void collect_feedback(int64_t probe_step);
  void note_backoff(const RefreshResult& r);
  /// The stats of a refresh on the probe thread (one rank).
  void publish_refresh(int64_t step, const ProbeResult& result, const RefreshResult& r, const util::Stopwatch& took);
  /// After a refresh: hands the free heap back if due (heap_releaser_), counted in the stats.
  void release_heap_if_due();
  void select_current();
  /// u with SelectionConfig::seen_discount applied for the shingles of each row of `window` selected recently.
  torch::Tensor discount_seen(const torch::Tensor& u, const torch::Tensor& window);
  /// Whether emitted row number `slot` of the stream is a replay (SelectionConfig::replay_share).
  bool replay_due(uint64_t slot) const;
  void check_replay_relatives(const SelectionState& s) const;  // throws Error(kInvalidState) naming the fix
  void apply_due_refreshes();
  void refresh(int64_t step, const ProbeResult& result);  // probe thread
  void share_refresh(Pending& p);                          // trainer thread, collective: many ranks
  void share_unshared_refreshes();                         // every pending refresh not shared yet
  void count_probe_cost(double attempted);                 // probe tokens and FLOPs of `attempted` rollouts
  void restore(const LoaderState& state, const LoaderConfig& loader);
  void check_ranks(const SelectionState& s, bool regrouped) const;
  const Selector& selector_for(bool trained) const;
  void log_rows(const std::vector<int64_t>& rows);
  /// Probes failed or timed out plus refreshes failed so far (stats_mu_ held).
  uint64_t failures_locked() const;
  /// Throws Error(kSelectionFailed) once ProbeConfig::max_consecutive_failures failures ran in a row.
  void check_failures() const;
  bool uses_model() const { return cfg_.mode != SelectionMode::kImportance; }

  StreamingLoader& core_;
  SelectionConfig cfg_;
  ProbeConfig probe_cfg_;
  int64_t encoder_pad_id_;  // kDocumentAligned: padding never enters an embedding (else -1)
  int64_t sequence_length_;
  torch::Device device_;
  InfluenceModelFactory models_;  // the config's encoder, loaded once (a TorchScript module); before versions_

  VersionRegistry versions_;
  std::unique_ptr<WindowScorer> scorer_;
  WindowClusters clusters_;

  std::unique_ptr<Selector> group_, random_, individual_, whole_window_, top_k_;

  std::unique_ptr<ImportanceEstimator> importance_;
  std::string importance_before_current_;   // estimator state before current_ was observed
  std::unique_ptr<SeenShingles> seen_;      // shingles of the rows selected before current_ (null: seen_discount off)
  uint64_t window_discounted_ = 0;          // rows of current_ that seen_ discounted (trainer thread)
  std::unique_ptr<ReplayBuffer> replay_;    // the best rows emitted before current_ (null: replay_share 0)
  uint64_t replay_seed_ = 0;
  double replay_relatives_ = 0;             // the buffer's relatives overlap (0 = none: off, or not a group mode)
  bool replay_share_unrecorded_ = false;    // "auto" given for a state that holds a buffer and records no share
  bool remember_current_ = true;            // current_'s picks join seen_ and replay_ at the next window
  std::vector<int64_t> feedback_due_;       // reference-feedback rows [n, sequence_length_], added at the next window
  torch::Tensor prior_;                     // of current_: float [W] CPU, standardised, lower = better (or undefined)

  std::optional<Window> current_, next_;
  bool ended_ = false;
  std::vector<int64_t> order_;              // selected rows of current_, best first
  torch::Tensor u_, cluster_ids_;           // of current_ (CPU; u_ is NaN in warm-up)
  torch::Tensor embeddings_;                // of current_ (device)
  size_t emit_pos_ = 0;
  int64_t step_ = -1;

  std::shared_ptr<LabelBuffer> labels_;
  std::unique_ptr<ProbeScheduler> scheduler_;
  std::unique_ptr<InfluenceRefresher> refresher_;  // used on the probe thread only (after construction)
  util::HeapReleaser heap_releaser_{0};     // after refreshes (cfg_.heap_release_interval_seconds), on the thread
                                            // that refreshed: the probe thread; on many ranks the trainer's
  std::vector<Pending> pending_;
  std::shared_ptr<std::promise<std::string>> inflight_;  // the running probe's refresh result
  double flops_per_token_ = 0;              // of the last target (cost accounting; stats_mu_: the probe thread reads it)
  int64_t reference_tokens_ = 0;            // of the last target's reference rows (stats_mu_)

  std::shared_ptr<Collectives> collectives_;  // null: one rank
  bool shared_ = false;                     // more than one rank: probes, model and centroids shared
  std::shared_ptr<LabelBuffer> probe_out_;  // shared_: this rank's rollouts of the probe in flight
  int64_t probe_attempted_ = 0;             // shared_: its attempted rollouts (probe thread; read after wait_idle)
  uint64_t hashed_version_ = 0, model_hash_ = 0;  // XXH3 of that version's weights (stats)

  mutable std::mutex stats_mu_;
  SelectionStats stats_;
  uint64_t failures_at_last_success_ = 0;   // failures_locked() at the last refresh that trained (stats_mu_)
  // Of stats_.cost.probe_*_tokens, what every rank counts whole per probe (R_0, the reference gradient):
  // not rescaled when a state resumes on another number of ranks (stats_mu_).
  double probe_fixed_train_tokens_ = 0, probe_fixed_eval_tokens_ = 0;
  SelectionLog log_;
  ProbeBackoff backoff_;  // guarded by stats_mu_ (refresh() on the probe thread, on_step() on the trainer's)
};

}  // namespace groupmates
