// groupmates/selection_config.h: how GroupMatesLoader selects data and probes the live model.
// No LibTorch here. validate() throws Error(kInvalidConfig) naming the field and allowed range.
#pragma once

#include <cstdint>
#include <string>

#include "groupmates/config.h"

namespace groupmates {

/// What the loader emits from each window of candidates.
enum class SelectionMode {
  kNone,             ///< plain loader: every candidate, in stream order (no scoring)
  kRandom,           ///< a seeded random `ratio` of each window (the baseline)
  kIndividual,       ///< MATES: Gumbel-top-k on -u / temperature
  kGroup,            ///< Group-MATES: influence-aware clusters, greedy relational selection per cluster
  kGroupNoClusters,  ///< relational greedy over the whole window (ablation)
  kImportance,       ///< DSIR-style importance resampling: the best `ratio` of each window by hashed n-gram
                     ///< importance weight against the reference rows (GroupMatesLoader::set_reference); no probes
};

/// When a refreshed influence model starts scoring windows.
enum class RefreshMode {
  kWhenReady,  ///< at the first window boundary after the refresh finished: the trainer never waits for it; the
               ///< stream depends on timing, and every switch (window, version) is recorded in the stats and state
  kAtStep,     ///< at the first window boundary at or after probe step + effect_delay_steps, waiting for it there:
               ///< the stream is a pure function of the configs and seed (reproducible runs, tests)
};

/// The encoder of the influence model (h_i = encoder(x_i), ALGORITHM.md section 3).
enum class EncoderKind {
  kHashedNgram,  ///< the built-in hashed n-gram bag + MLP (encoder_buckets, encoder_dim, ...); no file
  kTorchScript,  ///< a TorchScript module file (encoder_path), frozen: forward(ids int64 [rows, T][, mask int64
                 ///< [rows, T]]) -> float [rows, D]; D is read from a probe forward when the loader starts
};

/// SelectionConfig::replay_share: the mode's default (default_replay_share).
inline constexpr double kReplayShareAuto = -1.0;

/// The replay share kReplayShareAuto stands for: 0.5 where rows are ranked (importance, individual, group), 0 for
/// the plain loader and random selection (the baseline: nothing ranks its rows).
double default_replay_share(SelectionMode mode);

/// Selection: windows, ratio, clusters, the influence model and its refresh.
struct SelectionConfig {
  SelectionMode mode = SelectionMode::kNone;
  uint32_t window_size = 512;         ///< candidates per selection window on this rank
  double ratio = 0.5;                 ///< share of each window emitted (0, 1]
  uint32_t clusters = 8;              ///< k of the online spherical k-means (kGroup)
  bool influence_prefilter = true;    ///< kGroup budget: keep the best ratio/prefilter_ratio of the window by u,
                                      ///< then the same ratio of each cluster; false = the paper's uniform ratio
  double prefilter_ratio = 0.8;
  bool merge_cluster_budgets = true;  ///< kGroup: no quota per cluster; the window takes the best picks of all the
                                      ///< clusters' greedy orders merged by score (false = a quota per cluster)
  bool nearest_pick_discount = true;  ///< greedy (kGroup*): a_i = r_ij to the nearest pick (the minimum) instead of
                                      ///< the mean over the picks (ALGORITHM.md section 4; see docs/SELECTION.md)
  bool nonpositive_influence = true;  ///< greedy (kGroup*): u minus its maximum over the greedy's candidates, so every
                                      ///< a_i * u_i <= 0 and distance from the picks always helps (a standardised u has
                                      ///< both signs; for u_i > 0 the rule rewarded copies of the picks; docs/SELECTION.md)
  double temperature = 0.5;           ///< kIndividual Gumbel temperature T; 0 = deterministic top-k by u
  bool relations = true;              ///< kGroup*: false = the greedy ranks by u alone (ablation of the relational term)
  double replay_share = kReplayShareAuto;  ///< selection modes: emitted row j of the stream is a replay when floor((j+1) s) >
                                      ///< floor(j s) and the replay buffer holds max(1, replay_rows / 4) rows: a row drawn
                                      ///< (seeded by j and the rank) from the replay_rows best rows this rank emitted before
                                      ///< the current window (by the u they were selected by; warm-up rows never), counted
                                      ///< in SelectionStats::selected and ::replayed, not per cluster (Batch::cluster -1);
                                      ///< the window's own picks come out in the same order, later. In [0, 0.9], 0 = off;
                                      ///< kReplayShareAuto (the default): default_replay_share(mode), i.e. 0.5 for the modes
                                      ///< that rank rows (importance, individual, group), 0 for kNone and kRandom, and 0 on
                                      ///< ranks sharing one model (effective_replay_share); a resumed run keeps the share
                                      ///< its state was saved with. Part of the stream: a saved state records it and is
                                      ///< refused under another explicit share
                                      ///< (docs/SELECTION.md: 0.5 chosen on the tuning pools, -0.12 to -0.21 of final loss)
  uint32_t replay_rows = 256;         ///< rows the replay buffer keeps, 1..65536 (in memory and in the state: their tokens,
                                      ///< 8 bytes each, ~11 in the state's base64)
  uint32_t replay_max_repeats = 4;    ///< a row leaves the replay buffer once replayed this often (>= 1), so a row this
                                      ///< rank emitted is replayed at most this many times by it however long the run (a
                                      ///< row the stream yields again, e.g. in the next epoch, is a new entry; ranks
                                      ///< restored from rank 0's state each hold a copy of its buffer)
  double replay_relative_overlap = 0.5; ///< kGroup* with relations and a replay buffer: the relational term over the
                                      ///< buffer, which keeps one row of a family of near-duplicates, the best by u: a
                                      ///< row is related to a kept row when at least this share of its sampled token
                                      ///< shingles (seen_shingle_tokens long, one in 8) are among that row's. In [0, 1],
                                      ///< 0 = off; part of the stream (a state records it and is refused under another);
                                      ///< 0.5 chosen on the tuning pools (docs/SELECTION.md)
  double seen_discount = 0.0;         ///< kGroup* with relations: the rows this rank selected before the current
                                      ///< window count as picks too. A candidate of which a share s of the sampled token
                                      ///< shingles is among theirs gets u scaled by a = 1 - seen_discount * s after u is
                                      ///< shifted to <= 0 by the window's maximum (finite u only; Batch::influence then
                                      ///< reports the scaled u): near-duplicates of what the trainer was just given fall
                                      ///< back; 0 = off, the default: it made the tuning pools worse (docs/SELECTION.md)
  uint32_t seen_shingle_tokens = 8;   ///< tokens per shingle of that memory, 2..64
  uint64_t seen_memory_shingles = 1 << 17; ///< sampled shingles remembered, 1..2^24 (one in 8 of the selected rows'
                                      ///< shingles: 2^17 = the last ~8.7k rows of 128 tokens, ~510 of 2,048; 32-bit keys,
                                      ///< so a fresh shingle matches by chance with probability keys / 2^32); ~5.3 bytes a
                                      ///< key in the state (base64), ~40 in memory (a hash map)
  bool importance_prior = true;       ///< when reference rows are set: u = w.h + b + gamma * prior, the prior being
                                      ///< the window-standardised importance weight (kImportance's score, negated) and
                                      ///< gamma learnable (init 1, kept >= 0); before the first refresh u = prior
  int64_t importance_buckets = 1 << 14; ///< hashed token 1-2-gram buckets of the importance estimator
  double importance_mix = 0.5;        ///< reference distribution smoothed toward the pool's: mix * p_ref + (1-mix) * p_pool
  double reference_feedback = 0.0;    ///< relevance feedback from the probes: after each probe the rows whose steps
                                      ///< lowered the reference loss most join a feedback estimate that takes this
                                      ///< share of p_ref (then p_ref = (1-f) p_reference + f p_feedback); 0 = off
  double reference_feedback_share = 0.25; ///< share of each probe's steps (best labels, per rollout position) fed back
  RefreshMode refresh_mode = RefreshMode::kWhenReady;  ///< see RefreshMode (README: why this default)
  EncoderKind encoder = EncoderKind::kHashedNgram; ///< the influence model's encoder (docs/SELECTION.md "Encoders"); it
                                      ///< is recorded (kind, sizes, a hash of a module's weights) with the model's weights and in
                                      ///< the loader state: a resume or weights import with another encoder is refused
  std::string encoder_path;           ///< kTorchScript: the module file, loaded once when the loader starts (its weights
                                      ///< are hashed: the path may change between runs, the weights may not)
  int64_t encoder_buckets = 1 << 14;  ///< hashed n-gram buckets of the default encoder
  int64_t encoder_dim = 64;           ///< embedding width D of the hashed n-gram encoder (a TorchScript module's own)
  int64_t encoder_bag_dim = 256;      ///< width of the n-gram table rows: with the table frozen it is a random
                                      ///< projection, and a wider one keeps more of the n-gram counts
  int encoder_max_ngram = 2;          ///< n-grams of 1..encoder_max_ngram tokens (1..3): trigrams are mostly
                                      ///< unique, so in a fixed random projection they add noise
  uint32_t refresh_train_steps = 150; ///< influence-model optimiser steps after each probe
  uint32_t refresh_batch_rollouts = 16; ///< rollouts per optimiser step
  double refresh_learning_rate = 3e-3;
  double heap_release_interval_seconds = 10.0; ///< at most this often, after a refresh, the thread that refreshed
                                      ///< hands glibc's free heap pages back to the OS (malloc_trim(0); elsewhere
                                      ///< nothing): a refresh frees model-sized tensors and weight copies, which glibc
                                      ///< keeps, fragmented, so RSS crept up 7.8% in a 30-minute soak (bench/soak.py).
                                      ///< A release took 16 ms there (168 in 30 minutes); the pages it returns are
                                      ///< faulted in again when reused. 0 = never
  bool refresh_gate = true;           ///< publish a refreshed model only while learned models predict each new
                                      ///< probe (held out) better than the prior-only model does, by mean
                                      ///< Spearman (or picks, refresh_gate_top_share) over all probes so far;
                                      ///< else the prior-only model selects
  double refresh_gate_margin = 1.0;   ///< the learned mean must lead the prior-only model's by this many standard
                                      ///< errors, 1 / sqrt(held-out labels so far) each (0 = any lead). 1 on the two
                                      ///< tuning pools (11 seeds): -0.029 on data/pool-dev2, +0.003 on data/pool-dev
  double refresh_gate_top_share = 0.0; ///< 0: the gate compares held-out Spearman; in (0, 1]: it compares the mean
                                       ///< standardised measured label of each model's best top_share of the held-out
                                       ///< rows by its own prediction (the probes' verdict on the picks it would make),
                                       ///< with refresh_gate_margin in the same units (1 / sqrt(held-out labels)),
                                       ///< about sqrt(top_share) of that mean's standard error
  bool refresh_head_shrinkage = true; ///< a published model carries share s of its learned head: u = s (w.h + b) +
                                      ///< gamma * prior; after the first held-out check s is the share in {0, 1/4, 1/2, 1}
                                      ///< whose model predicted the held-out probes best so far (mean Spearman, or picks
                                      ///< with refresh_gate_top_share; ties: the smaller), before it
                                      ///< refresh_head_share_start; refreshes still train the whole head. false, or
                                      ///< rollouts without a prior (no reference rows, importance_prior false): s = 1
  double refresh_head_share_start = 0.0; ///< s before the first held-out check, in [0, 1] (0: the prior with the
                                      ///< learned gamma; docs/SELECTION.md "Head shrinkage" for the choice)
  bool robust_label_scaling = true;   ///< standardise labels by median/MAD (else mean/std)
  bool per_position_labels = true;    ///< standardise per probe AND rollout position t (else per probe):
                                      ///< the mean label drifts with t, a trend of the rollout, not the data
  double relation_tau = 1.0;          ///< initial relational temperature tau: r_ij = alpha (1 - cos_ij / tau); larger =
                                      ///< a milder discount (with rollout_length 1 refreshes never train it)
  double relation_tau_min = 1.0;      ///< tau >= this keeps every r_ij >= 0 (0 = unconstrained, as the paper)
  bool train_ngram_table = false;     ///< refreshes also train the encoder's hashed n-gram table (1M weights);
                                      ///< false: it stays a fixed random projection, refreshes run ~4x faster
  uint32_t label_buffer_rollouts = 1024; ///< recent rollouts kept for training
  uint64_t seed = 0;
  std::string log_path;               ///< JSONL selection log of every emitted candidate ("" = none)
  uint64_t max_window_memory_bytes = uint64_t{4} << 30; ///< bound on window_memory_bytes(), checked when the
                                      ///< loader starts (validate(loader)); raise it to allow a bigger window

  void validate() const;
  /// replay_share with kReplayShareAuto resolved: default_replay_share(mode), or 0 on ranks sharing one model
  /// (`shared_model`: a process group of > 1 ranks), whose one saved state cannot hold every rank's replay buffer.
  double effective_replay_share(bool shared_model = false) const;
  /// validate(), and window_memory_bytes(loader) within max_window_memory_bytes.
  void validate(const LoaderConfig& loader) const;
  /// Estimated memory of the selection windows with this loader config: the core's pooled int64 rows of
  /// (prefetch_batches + 4) windows (in flight, current, next, and the encoder's and gathers' copies) plus
  /// per candidate the scorer's and selector's floats: window_size x (row_length x 8 x (prefetch_batches + 4)
  /// + 4 x (2 x encoder_bag_dim + 4 x encoder_dim + 2 x clusters + 64)) bytes (measured: README).
  uint64_t window_memory_bytes(const LoaderConfig& loader) const;
};

/// Oracle probes of the live model (ALGORITHM.md section 2).
struct ProbeConfig {
  uint32_t interval_steps = 100;      ///< probe at steps first_step, first_step + interval, ...; 0 = never
  uint32_t first_step = 0;
  uint32_t rollout_length = 1;        ///< L: optimiser steps per rollout. 1 (single-step labels) reproduce at Spearman
                                      ///< 0.96 where 4-step ones reproduce at 0.44 (docs/PROBE_LABELS.md); paper: 10
  uint32_t random_rollouts = 12;      ///< per probe
  uint32_t neighbour_rollouts = 12;   ///< per probe: rollouts of same-cluster candidates
  uint32_t bootstrap_pairs = 2;       ///< per probe once a trained model exists (best + worst)
  double lr_scale = 0.3;              ///< probes step with lr * lr_scale (a full step can swamp the labels)
  bool first_order_labels = true;     ///< a label = <reference gradient at the snapshot, the step's weight change>
                                      ///< instead of a reference evaluation after the step: 3F x T per label
                                      ///< instead of 3F x T + F x reference tokens (the probe target must give
                                      ///< weights() and reference_gradient(), as the shipped targets do; false =
                                      ///< evaluated labels, for any target). Same streams on both tuning pools at
                                      ///< 40% less probe compute (docs/PROBE_LABELS.md)
  uint32_t pool_rows = 256;           ///< candidates of the current window offered to a probe
  uint32_t effect_delay_steps = 50;   ///< a model refreshed from the probe at step s scores windows from step s + delay
  double max_seconds = 0;             ///< cap on one probe's rollouts (0 = none)
  double budget = 0.1;                ///< probe FLOPs kept within this share of the training FLOPs so far (0 = no
                                      ///< cap): a due probe runs as many rollouts as the unspent budget pays for
                                      ///< (at most the configured ones), or is skipped until min_rollouts are paid.
                                      ///< 0.1: the tuning pool's loss of 0.25 at 40% less probe compute (README)
  uint32_t min_rollouts = 4;          ///< fewest rollouts worth a probe under the budget
  uint32_t gated_backoff_max = 7;     ///< probes back off while the refresh gate keeps the prior-only model: after
                                      ///< n held-out checks in a row that refused the learned model, the next
                                      ///< min(2^n - 1, this) due probes are skipped (a published learned model resets
                                      ///< n); 0 = never back off (SelectionConfig::refresh_gate)
  double timeout_seconds = 600;       ///< a probe still running after this long is abandoned: its thread is left to
                                      ///< finish on its own, its rollouts dropped, ProbeStats::probes_timed_out
                                      ///< counted; the loop goes on with the last good model (0 = no timeout)
  int nice = 0;                       ///< the probe thread's nice value above that of the thread calling on_step
                                      ///< (Linux; 0..19): higher = the trainer's threads go first, the probe takes
                                      ///< the idle time (19 on 2 idle cores: the trainer's wall clock within a few
                                      ///< % of a run without probes). 0 by default: on a machine busy with other
                                      ///< work a low-priority probe starves and times out (timeout_seconds). Under
                                      ///< RefreshMode::kWhenReady only: under kAtStep the trainer waits for due
                                      ///< refreshes, and the probe keeps the trainer's priority
  uint32_t trainer_thread_rollouts = 2; ///< > 0: probes run on the trainer's thread, in slices inside on_step: the
                                      ///< step after a probe falls due measures R_0 and the reference gradient, each
                                      ///< later step runs this many rollouts, the last one also the refresh. No probe
                                      ///< thread competes with the trainer for the cores (on 2 CPU cores its matrix
                                      ///< products queue in the trainer's BLAS pool), and a probe ends at a step that
                                      ///< timing cannot change; on_step takes that slice's time
                                      ///< (SelectionCost::probe_slice_seconds). nice and timeout_seconds do not
                                      ///< apply. 0: a thread of its own per probe. 2 chosen on the tuning pools:
                                      ///< Group-MATES's run took 1.02x importance resampling's wall clock instead
                                      ///< of 1.21x (docs/SELECTION.md, "Probes in slices")
  uint32_t max_consecutive_failures = 3; ///< this many failed probes / refreshes in a row (a throw, a timeout, a
                                      ///< non-finite refresh) and the next GroupMatesLoader::next() throws
                                      ///< Error(kSelectionFailed) with the last error; 0 = never (keep training
                                      ///< on the last good influence model, failures only counted)

  void validate() const;
};

}  // namespace groupmates
