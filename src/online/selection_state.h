// selection_state.h: what a selecting loader saves beyond the core's stream position (private).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "groupmates/selection_stats.h"

namespace groupmates {

/// Binary bytes saved as base64 text.
struct Blob {
  std::string bytes;
};

/// Influence-model weights (or, in `pending`, a rank's unexchanged probe) saved as base64 text; saved as a delta
/// against `first_blob` when they share tensors with it (weights_delta(): the frozen n-gram table, ~17 MB, is then
/// saved once per state instead of up to five times), read back as the full blob.
struct WeightsBlob {
  std::string bytes;
};

/// Binary bytes saved as base64 text only when not empty; a state without the key reads as empty.
struct OptionalBlob {
  std::string bytes;
};

/// Text saved as is; a state without the key reads as "" (saved before the key existed).
struct OptionalText {
  std::string text;
};

/// A count saved as text; a state without the key reads as 0, not present (saved before the key existed).
struct OptionalCount {
  uint64_t value = 0;
  bool present = false;
};

/// A refresh registered by a probe and not yet applied.
struct SavedRefresh {
  int64_t probe_step = 0;
  int64_t effective_at = 0;  ///< trainer step it applies at (RefreshMode::kAtStep)
  WeightsBlob weights;       ///< empty = the probe failed (nothing to publish)
};

/// The selection half of a LoaderState: LoaderState::extra's "gm.*" keys. The main fields of the
/// LoaderState are the core's position at the start of the current window; restoring re-reads and
/// re-selects that window. The table of keys is declared once (visit()) and used by both write() and read().
struct SelectionState {
  // What the state is valid for (checked on restore).
  uint64_t mode = 0, window_size = 0, world_size = 0, rank = 0;
  OptionalCount shared;           ///< 1: saved by ranks sharing one model (restorable on another number of ranks)
  OptionalText encoder;           ///< Encoder::identity() of the influence model ("" = saved before it was recorded)
  // Position.
  int64_t step = -1;              ///< last step reported by on_step
  bool has_current = false;       ///< a window was being emitted
  uint64_t emit_pos = 0;          ///< rows of it already emitted
  OptionalCount window_selected;  ///< rows selected from it on each rank (0 = none, or saved before the key existed)
  // Model versions: the current window's, and the next window's (or the latest) when it differs.
  uint64_t first_version = 0, second_version = 0;
  bool first_trained = false, second_trained = false;
  Blob first_blob;                ///< saved whole: the other weights here are saved as deltas against it
  WeightsBlob second_blob;        ///< empty when second_version == first_version
  uint64_t next_loader_version = 1;
  WeightsBlob trainer;            ///< the refreshes' working model (probe thread)
  Blob gate;                      ///< the refresh gate's record (RefreshGate::save() text)
  Blob labels;                    ///< the label buffer (empty = none yet)
  // Per-window state from before the current window.
  Blob kmeans;
  uint64_t kmeans_version = 0;
  Blob importance;
  OptionalText replay_share;               ///< the effective SelectionConfig::replay_share, the shortest text that
                                           ///< reads back exactly ("" = saved before it was recorded)
  OptionalText replay_relative_overlap;    ///< the replay buffer's effective relatives overlap (SelectionConfig::
                                           ///< replay_relative_overlap where it applies, else 0), as replay_share
                                           ///< ("" = saved before it was recorded: resumes under today's setting)
  OptionalBlob replay;                     ///< ReplayBuffer::save() (empty = replay_share 0, or saved before it existed)
  OptionalBlob seen_shingles;              ///< SeenShingles::save() (empty = seen_discount off, or saved before it existed)
  Blob feedback;                  ///< reference-feedback rows due at the next window (int64 tokens; empty = none)
  std::vector<SavedRefresh> pending;
  uint64_t backoff_streak = 0, backoff_skip = 0;  ///< gate refusals in a row; due probes still to skip
  // Counters (SelectionStats) and what the probe budget is measured against.
  uint64_t windows = 0, warmup_windows = 0, seen = 0, selected = 0, refreshes = 0, refreshes_failed = 0,
           refreshes_rejected_nonfinite = 0, refreshes_gated = 0, probes_skipped_backoff = 0;
  uint64_t train_tokens = 0, probe_train_tokens = 0, probe_eval_tokens = 0;
  OptionalCount probe_fixed_train_tokens, probe_fixed_eval_tokens;  ///< of the probe tokens, R_0 and the reference
                                                                     ///< gradient (counted whole on every rank)
  std::vector<VersionSwitch> switches;
  OptionalCount resume_dropped_rows, resume_dropped_probes, seen_discounted, replayed, replay_relatives;

  /// Writes every key into `extra`.
  void write(std::map<std::string, std::string>& extra) const;
  /// Reads every key, weights saved as deltas expanded (read_unexpanded(), then expand_weight_deltas()).
  static SelectionState read(const std::map<std::string, std::string>& extra);
  /// Reads every key, leaving weights saved as deltas against first_blob as they are; throws
  /// Error(kInvalidState) naming the key when one is missing or malformed.
  static SelectionState read_unexpanded(const std::map<std::string, std::string>& extra);
  /// Expands the weights saved as deltas against first_blob into whole blobs (apply_weights_delta); throws
  /// Error(kCorruptData) naming the key (gm.first_blob when it is damaged) when one does not apply.
  void expand_weight_deltas();

  /// Calls f(saved, live) for each counter saved here and the SelectionStats field it comes from.
  template <typename F>
  void visit_counters(SelectionStats& live, F&& f) {
    f(windows, live.windows);
    f(warmup_windows, live.warmup_windows);
    f(seen, live.seen);
    f(selected, live.selected);
    f(refreshes, live.refreshes);
    f(refreshes_failed, live.refreshes_failed);
    f(refreshes_rejected_nonfinite, live.refreshes_rejected_nonfinite);
    f(refreshes_gated, live.refreshes_gated);
    f(probes_skipped_backoff, live.probes_skipped_backoff);
    // What the probe budget is measured against (it must resume exactly).
    f(train_tokens, live.cost.train_tokens);
    f(probe_train_tokens, live.cost.probe_train_tokens);
    f(probe_eval_tokens, live.cost.probe_eval_tokens);
    f(switches, live.switches);
    f(resume_dropped_rows.value, live.resume_dropped_rows);
    f(seen_discounted.value, live.seen_discounted);
    f(replayed.value, live.replayed);
    f(replay_relatives.value, live.replay_relatives);
    f(resume_dropped_probes.value, live.resume_dropped_probes);
  }

  /// Calls f(key, field) for every field, in one fixed order.
  template <typename S, typename F>
  static void visit(S& s, F&& f) {
    f("gm.mode", s.mode);
    f("gm.window_size", s.window_size);
    f("gm.encoder", s.encoder);
    f("gm.world_size", s.world_size);
    f("gm.rank", s.rank);
    f("gm.shared", s.shared);
    f("gm.step", s.step);
    f("gm.has_current", s.has_current);
    f("gm.emit_pos", s.emit_pos);
    f("gm.window_selected", s.window_selected);
    f("gm.first_version", s.first_version);
    f("gm.first_trained", s.first_trained);
    f("gm.first_blob", s.first_blob);
    f("gm.second_version", s.second_version);
    f("gm.second_trained", s.second_trained);
    f("gm.second_blob", s.second_blob);
    f("gm.next_loader_version", s.next_loader_version);
    f("gm.trainer", s.trainer);
    f("gm.gate", s.gate);
    f("gm.labels", s.labels);
    f("gm.kmeans", s.kmeans);
    f("gm.kmeans_version", s.kmeans_version);
    f("gm.importance", s.importance);
    f("gm.seen", s.seen_shingles);
    f("gm.replay_share", s.replay_share);
    f("gm.replay_relative_overlap", s.replay_relative_overlap);
    f("gm.replay", s.replay);
    f("gm.feedback", s.feedback);
    f("gm.pending", s.pending);
    f("gm.backoff_streak", s.backoff_streak);
    f("gm.backoff_skip", s.backoff_skip);
    f("gm.stats.windows", s.windows);
    f("gm.stats.warmup_windows", s.warmup_windows);
    f("gm.stats.seen", s.seen);
    f("gm.stats.selected", s.selected);
    f("gm.stats.refreshes", s.refreshes);
    f("gm.stats.refreshes_failed", s.refreshes_failed);
    f("gm.stats.refreshes_rejected_nonfinite", s.refreshes_rejected_nonfinite);
    f("gm.stats.refreshes_gated", s.refreshes_gated);
    f("gm.stats.probes_skipped_backoff", s.probes_skipped_backoff);
    f("gm.cost.train_tokens", s.train_tokens);
    f("gm.cost.probe_train_tokens", s.probe_train_tokens);
    f("gm.cost.probe_eval_tokens", s.probe_eval_tokens);
    f("gm.cost.probe_fixed_train_tokens", s.probe_fixed_train_tokens);
    f("gm.cost.probe_fixed_eval_tokens", s.probe_fixed_eval_tokens);
    f("gm.switches", s.switches);
    f("gm.stats.resume_dropped_rows", s.resume_dropped_rows);
    f("gm.stats.seen_discounted", s.seen_discounted);
    f("gm.stats.replayed", s.replayed);
    f("gm.stats.replay_relatives", s.replay_relatives);
    f("gm.stats.resume_dropped_probes", s.resume_dropped_probes);
  }
};

}  // namespace groupmates
