// groupmates/selection_stats.h: what selection did and cost so far (GroupMatesLoader::selection_stats()).
// No LibTorch here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace groupmates {

/// Cost and outcome counters of a ProbeScheduler.
struct ProbeStats {
  int64_t probes_started = 0;      ///< snapshots taken and queued
  int64_t probes_completed = 0;
  int64_t probes_skipped_busy = 0; ///< due while one was in flight (skipped, not queued)
  int64_t probes_failed = 0;       ///< threw (see last_error)
  int64_t probes_timed_out = 0;    ///< abandoned after ProbeConfig::timeout_seconds (see last_error); started =
                                   ///< completed + failed + timed out + the one in flight
  int64_t rollouts_kept = 0;
  int64_t rollouts_discarded = 0;  ///< NaN/inf
  int64_t rollouts_skipped = 0;    ///< cut by max_rollouts / max_seconds
  double snapshot_seconds = 0;     ///< spent on the caller's (trainer's) thread cloning
  double probe_seconds = 0;        ///< spent on the probe thread
  double wall_seconds = 0;         ///< since the scheduler was created
  double probe_share = 0;          ///< probe_seconds / wall_seconds
  double snapshot_share = 0;       ///< snapshot_seconds / wall_seconds
  double seconds_per_rollout = 0;  ///< probe_seconds / rollouts attempted
  int64_t last_probe_step = -1;
  std::string last_error;          ///< why the last failed probe threw or timed out ("" = none)
};

/// What selection cost so far, and where the trainer waited for it. FLOPs follow ALGORITHM.md
/// section 7 with the live model's ProbeTarget::forward_flops_per_token() = F (2N): training 3F per
/// token; a probe's optimiser step 3F per token, each reference evaluation F per reference token (with
/// first-order labels: R_0, and the reference gradient at 3F per reference token, once per probe);
/// the influence model's refresh 3x its forward (Encoder::flops_per_row + head + relations);
/// scoring the encoder and head per candidate plus k-means and greedy dot products per window.
/// FLOPs are 0 until a target with a known F reaches on_step.
struct SelectionCost {
  double flops_per_token = 0;       ///< F of the last target seen by on_step
  uint64_t train_tokens = 0;        ///< tokens emitted to the trainer
  double probe_train_tokens = 0;    ///< tokens of probe optimiser steps (first-order labels: and of the
                                    ///< reference gradient's forward + backward, once per probe)
  double probe_eval_tokens = 0;     ///< reference tokens evaluated by probes (first-order labels: R_0 only)
  double train_flops = 0;           ///< 3 F x train_tokens
  double probe_flops = 0;
  double refresh_flops = 0;
  double scoring_flops = 0;
  double scoring_seconds = 0;       ///< scorer thread: encoder + head
  double selection_seconds = 0;     ///< trainer's thread inside next(): importance, k-means, greedy
  /// Trainer's thread, by cause: next() waiting for a window's scores; next() waiting for a due refresh
  /// (RefreshMode::kAtStep); on_step() waiting for the previous probe (kAtStep); on_step() snapshotting.
  double wait_scoring_seconds = 0, wait_refresh_seconds = 0, wait_probe_seconds = 0, snapshot_seconds = 0;
  /// Trainer's thread, not waiting but working: on_step() running probe slices and, after a probe's last slice, its
  /// refresh (ProbeConfig::trainer_thread_rollouts > 0; 0 with a probe thread).
  double probe_slice_seconds = 0;
  /// Selection overhead in FLOPs: probes + refresh + scoring.
  double overhead_flops() const { return probe_flops + refresh_flops + scoring_flops; }
};

/// A refreshed version taking effect: windows from `window` (on this rank) on are scored by `version`,
/// the refresh of the probe at trainer step `probe_step`.
struct VersionSwitch {
  uint64_t window = 0;
  int64_t probe_step = 0;
  uint64_t version = 0;
};

/// Counters of what selection did so far.
struct SelectionStats {
  uint64_t windows = 0;            ///< windows selected from
  uint64_t warmup_windows = 0;     ///< of which selected randomly before the first refreshed model
  uint64_t seen = 0;               ///< candidates read
  uint64_t selected = 0;           ///< candidates emitted
  std::vector<uint64_t> seen_per_cluster, selected_per_cluster;
  uint64_t model_version = 0;      ///< version scoring the current window (0 = none)
  uint64_t refreshes = 0;          ///< refreshed versions published
  double refresh_seconds = 0;      ///< influence-model training time (probe thread; on many ranks the trainer's),
                                   ///< heap releases included
  double refresh_wait_seconds = 0; ///< time next() waited for a due refresh
  uint64_t heap_releases = 0;       ///< times glibc's free heap pages were handed back to the OS after a refresh
                                    ///< (SelectionConfig::heap_release_interval_seconds)
  double heap_release_seconds = 0;  ///< time those took (counted in refresh_seconds too)
  double last_heldout_spearman = 0; ///< of the refreshed model's predictions on the newest probe's rollouts, before
                                    ///< training on them, against the oracle's marginal labels as measured
  double last_heldout_spearman_scaled = 0; ///< the same against the labels as standardised for training (per probe
                                           ///< and rollout position: without the rollout-position trend)
  double last_heldout_spearman_prior = 0; ///< the prior-only model's, on the same rollouts (SelectionConfig::refresh_gate)
  double last_heldout_spearman_unshrunk = 0; ///< the refreshed model's with its whole learned head (share 1), on the same
                                       ///< rollouts: last_heldout_spearman is the share in force then's (refresh_head_shrinkage)
  double head_share = 0;            ///< the share of the learned head the last refresh would publish (0 before the first;
                                    ///< SelectionConfig::refresh_head_shrinkage)
  std::vector<double> head_share_scores; ///< mean held-out score (Spearman, or picks with refresh_gate_top_share) of a
                                    ///< model carrying each share {0, 1/4, 1/2, 1} of its learned head, over the checks so far
  uint64_t refreshes_gated = 0;     ///< refreshes trained but not published: the prior-only model predicted better
  ProbeStats probes;
  SelectionCost cost;
  uint64_t probes_skipped_budget = 0;  ///< due probes skipped because the budget could not pay min_rollouts
  uint64_t probes_skipped_backoff = 0; ///< due probes skipped while the refresh gate keeps refusing (ProbeConfig::gated_backoff_max)
  uint64_t refreshes_failed = 0;    ///< refreshes not published (non-finite weights or predictions, or an error)
  uint64_t refreshes_rejected_nonfinite = 0; ///< of which the refreshed weights or predictions were NaN/inf
  std::string last_refresh_error;   ///< why the last one failed ("" = none)
  uint64_t consecutive_failures = 0; ///< probes failed or timed out and refreshes failed since the last refresh that
                                     ///< trained (ProbeConfig::max_consecutive_failures)
  double prior_weight = 0;          ///< gamma of the version scoring the current window (importance prior's weight)
  std::vector<VersionSwitch> switches;  ///< every version switch so far (RefreshMode::kWhenReady: timing-dependent)
  uint64_t replayed = 0;              ///< rows emitted again from the replay buffer (SelectionConfig::replay_share;
                                      ///< counted in `selected` too)
  uint64_t replay_relatives = 0;      ///< rows kept out of the replay buffer, or dropped from it, for a better near-
                                      ///< duplicate there (SelectionConfig::replay_relative_overlap)
  uint64_t seen_discounted = 0;       ///< candidates whose u was discounted for shingles selected recently
                                      ///< (SelectionConfig::seen_discount)
  uint64_t resume_dropped_rows = 0;   ///< selected rows never emitted: the rest of a window half emitted when a state
                                      ///< saved on N ranks resumed on M != N (all ranks' rows; the resume starts at
                                      ///< the next window)
  uint64_t resume_dropped_probes = 0; ///< probes whose shares were not exchanged when a state saved on N ranks
                                      ///< resumed on M != N (their refresh is not applied)
  // Depths of the online loop's queues and buffers as of the current window (bench/soak.py samples them):
  uint64_t label_buffer_rollouts = 0;  ///< labelled rollouts held (bounded by the label buffer's capacity)
  uint64_t versions_held = 0;          ///< influence-model versions whose weights are kept (the current one and those
                                       ///< a pending refresh or a saved state needs)
  uint64_t refreshes_pending = 0;      ///< probes in flight and refreshes waiting for their step or window
  uint64_t replay_rows = 0;            ///< rows in the replay buffer (bounded by SelectionConfig::replay_rows)
  uint64_t model_hash = 0;          ///< XXH3 of the weights of the version scoring the current window (0 = none)
  uint64_t centroids_hash = 0;      ///< XXH3 of the k-means centroids and counts after the current window (0 = none)
  uint64_t labels_hash = 0;         ///< XXH3 of the label buffer after the last shared refresh (0 = one rank: not computed)
  uint64_t shared_rollouts = 0;     ///< rollouts all-gathered from every rank so far (0 on one rank)
  uint64_t shared_bytes = 0;        ///< bytes this rank sent and received in the refresh exchanges so far (payloads)
};

}  // namespace groupmates
