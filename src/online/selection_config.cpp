#include "groupmates/selection_config.h"

#include <cmath>
#include <cstdio>
#include <fstream>

#include "groupmates/error.h"

namespace groupmates {

namespace {
[[noreturn]] void bad(const std::string& field, const std::string& what) {
  throw Error(ErrorCode::kInvalidConfig, field, what);
}
}  // namespace

double default_replay_share(SelectionMode mode) {
  switch (mode) {
    case SelectionMode::kNone:
    case SelectionMode::kRandom: return 0.0;
    case SelectionMode::kIndividual:
    case SelectionMode::kGroup:
    case SelectionMode::kGroupNoClusters:
    case SelectionMode::kImportance: return 0.5;
  }
  return 0.0;
}

double SelectionConfig::effective_replay_share(bool shared_model) const {
  if (replay_share != kReplayShareAuto) return replay_share;
  return shared_model ? 0.0 : default_replay_share(mode);
}

void SelectionConfig::validate() const {
  const std::string f = "SelectionConfig.";
  if (window_size < 2 || window_size > (1u << 20)) bad(f + "window_size", "is " + std::to_string(window_size) + "; allowed 2..1048576");
  if (!(ratio > 0 && ratio <= 1)) bad(f + "ratio", "is " + std::to_string(ratio) + "; allowed (0, 1]");
  if (clusters < 1 || clusters > window_size) bad(f + "clusters", "is " + std::to_string(clusters) + "; allowed 1..window_size");
  if (!(prefilter_ratio > 0 && prefilter_ratio <= 1)) bad(f + "prefilter_ratio", "is " + std::to_string(prefilter_ratio) + "; allowed (0, 1]");
  if (!(temperature >= 0)) bad(f + "temperature", "is " + std::to_string(temperature) + "; must be >= 0 (0 = top-k)");
  if (importance_buckets < 16 || importance_buckets > (int64_t{1} << 24))
    bad(f + "importance_buckets", "is " + std::to_string(importance_buckets) + "; allowed 16..16777216");
  if (!(importance_mix > 0 && importance_mix <= 1)) bad(f + "importance_mix", "is " + std::to_string(importance_mix) + "; allowed (0, 1]");
  if (!(reference_feedback >= 0 && reference_feedback < 1))
    bad(f + "reference_feedback", "is " + std::to_string(reference_feedback) + "; allowed [0, 1)");
  if (!(reference_feedback_share > 0 && reference_feedback_share <= 1))
    bad(f + "reference_feedback_share", "is " + std::to_string(reference_feedback_share) + "; allowed (0, 1]");
  if (encoder_buckets < 16 || encoder_buckets > (int64_t{1} << 26)) bad(f + "encoder_buckets", "is " + std::to_string(encoder_buckets) + "; allowed 16..67108864");
  if (encoder_bag_dim < 2 || encoder_bag_dim > 4096) bad(f + "encoder_bag_dim", "is " + std::to_string(encoder_bag_dim) + "; allowed 2..4096");
  if (encoder_max_ngram < 1 || encoder_max_ngram > 3) bad(f + "encoder_max_ngram", "is " + std::to_string(encoder_max_ngram) + "; allowed 1..3");
  if (encoder_dim < 2 || encoder_dim > 4096) bad(f + "encoder_dim", "is " + std::to_string(encoder_dim) + "; allowed 2..4096");
  if (encoder == EncoderKind::kTorchScript) {
    if (encoder_path.empty())
      bad(f + "encoder_path", "is empty but encoder is kTorchScript (\"torchscript\"): set it to a TorchScript module file");
    if (!std::ifstream(encoder_path, std::ios::binary))
      bad(f + "encoder_path", "'" + encoder_path + "' cannot be opened (missing or unreadable) for encoder kTorchScript");
    if (train_ngram_table)
      bad(f + "train_ngram_table", "is true but encoder is kTorchScript, which has no n-gram table (the module is frozen)");
  } else if (!encoder_path.empty()) {
    bad(f + "encoder_path", "is '" + encoder_path + "' but encoder is kHashedNgram (\"hashed_ngram\"), which reads no file: "
                            "set encoder = kTorchScript or clear the path");
  }
  if (refresh_batch_rollouts < 1) bad(f + "refresh_batch_rollouts", "is 0; must be >= 1");
  if (!(refresh_learning_rate > 0)) bad(f + "refresh_learning_rate", "must be > 0");
  if (!(heap_release_interval_seconds >= 0) || !std::isfinite(heap_release_interval_seconds))
    bad(f + "heap_release_interval_seconds",
        "is " + std::to_string(heap_release_interval_seconds) + "; must be finite and >= 0 (0 = never)");
  if (!(refresh_gate_margin >= 0) || !std::isfinite(refresh_gate_margin))
    bad(f + "refresh_gate_margin", "is " + std::to_string(refresh_gate_margin) + "; must be finite and >= 0 (0 = any lead)");
  if (!(refresh_gate_top_share >= 0 && refresh_gate_top_share <= 1))
    bad(f + "refresh_gate_top_share", "is " + std::to_string(refresh_gate_top_share) +
                                          "; must be in [0, 1] (0 = judge by Spearman)");
  if (!(refresh_head_share_start >= 0 && refresh_head_share_start <= 1))
    bad(f + "refresh_head_share_start", "is " + std::to_string(refresh_head_share_start) + "; must be in [0, 1]");
  if (!(relation_tau > 0) || !std::isfinite(relation_tau))
    bad(f + "relation_tau", "is " + std::to_string(relation_tau) + "; must be finite and > 0");
  if (!(relation_tau_min >= 0) || relation_tau_min > relation_tau)
    bad(f + "relation_tau_min", "is " + std::to_string(relation_tau_min) + "; allowed [0, relation_tau = " +
                                    std::to_string(relation_tau) + "] (tau starts at relation_tau)");
  if (!(replay_share == kReplayShareAuto || (replay_share >= 0 && replay_share <= 0.9)))
    bad(f + "replay_share", "is " + std::to_string(replay_share) + "; allowed [0, 0.9] (0 = off) or kReplayShareAuto (-1, \"auto\")");
  if (replay_rows < 1 || replay_rows > 65536) bad(f + "replay_rows", "is " + std::to_string(replay_rows) + "; allowed 1..65536");
  if (!(replay_relative_overlap >= 0 && replay_relative_overlap <= 1))
    bad(f + "replay_relative_overlap", "is " + std::to_string(replay_relative_overlap) + "; allowed [0, 1] (0 = off)");
  if (replay_max_repeats < 1) bad(f + "replay_max_repeats", "is 0; must be >= 1");
  if (!(seen_discount >= 0 && seen_discount <= 1)) bad(f + "seen_discount", "is " + std::to_string(seen_discount) + "; allowed [0, 1] (0 = off)");
  if (seen_shingle_tokens < 2 || seen_shingle_tokens > 64)
    bad(f + "seen_shingle_tokens", "is " + std::to_string(seen_shingle_tokens) + "; allowed 2..64");
  if (seen_memory_shingles < 1 || seen_memory_shingles > (uint64_t{1} << 24))
    bad(f + "seen_memory_shingles", "is " + std::to_string(seen_memory_shingles) + "; allowed 1..16777216");
  if (label_buffer_rollouts < 1) bad(f + "label_buffer_rollouts", "is 0; must be >= 1");
}

uint64_t SelectionConfig::window_memory_bytes(const LoaderConfig& loader) const {
  const double per_row = double(loader.row_length()) * 8.0 * (double(loader.prefetch_batches) + 4.0) +
                         4.0 * (2.0 * double(encoder_bag_dim) + 4.0 * double(encoder_dim) + 2.0 * double(clusters) + 64.0);
  const double total = double(window_size) * per_row;
  return total >= 1.8e19 ? UINT64_MAX : uint64_t(total);
}

void SelectionConfig::validate(const LoaderConfig& loader) const {
  validate();
  const uint64_t need = window_memory_bytes(loader);
  if (need <= max_window_memory_bytes) return;
  const auto gib = [](double bytes) {
    char text[32];
    std::snprintf(text, sizeof text, "%.2f GiB", bytes / double(uint64_t{1} << 30));
    return std::string(text);
  };
  const double per_row = double(need) / double(window_size);
  const uint64_t fits = uint64_t(double(max_window_memory_bytes) / per_row);
  bad("SelectionConfig.window_size",
      "is " + std::to_string(window_size) + ": windows of rows of " + std::to_string(loader.row_length()) +
          " tokens with prefetch_batches " + std::to_string(loader.prefetch_batches) + " need an estimated " + gib(double(need)) +
          " (window_size x (row_length x 8 bytes x (prefetch_batches + 4) + the scorer's floats)), above "
          "SelectionConfig.max_window_memory_bytes = " + gib(double(max_window_memory_bytes)) +
          ". Use window_size <= " + std::to_string(fits) + " (or fewer LoaderConfig.prefetch_batches), or raise "
          "max_window_memory_bytes to allow it");
}

void ProbeConfig::validate() const {
  const std::string f = "ProbeConfig.";
  if (rollout_length < 1 || rollout_length > 1000) bad(f + "rollout_length", "is " + std::to_string(rollout_length) + "; allowed 1..1000");
  if (interval_steps > 0 && effect_delay_steps > interval_steps)
    bad(f + "effect_delay_steps", "is " + std::to_string(effect_delay_steps) + ", more than interval_steps (" +
                                      std::to_string(interval_steps) + "): a refresh must take effect before the next probe");
  if (interval_steps > 0 && random_rollouts + neighbour_rollouts == 0)
    bad(f + "random_rollouts", "and neighbour_rollouts are both 0: a probe would label nothing");
  if (pool_rows < rollout_length) bad(f + "pool_rows", "is " + std::to_string(pool_rows) + "; must be >= rollout_length");
  if (!(lr_scale > 0)) bad(f + "lr_scale", "must be > 0");
  if (!(budget >= 0 && budget <= 100)) bad(f + "budget", "is " + std::to_string(budget) + "; allowed [0, 100] (a share of training FLOPs; 0 = no cap)");
  if (budget > 0 && min_rollouts < 1) bad(f + "min_rollouts", "is 0; must be >= 1 with a budget");
  if (nice < 0 || nice > 19) bad(f + "nice", "is " + std::to_string(nice) + "; allowed 0..19 (0 = the trainer's priority)");
  if (gated_backoff_max > 1000000) bad(f + "gated_backoff_max", "is " + std::to_string(gated_backoff_max) + "; allowed 0..1000000");
  if (trainer_thread_rollouts > 4096)
    bad(f + "trainer_thread_rollouts", "is " + std::to_string(trainer_thread_rollouts) +
                                           "; allowed 0..4096 (rollouts per trainer step; 0 = a probe thread)");
  if (!(timeout_seconds >= 0) || std::isinf(timeout_seconds))
    bad(f + "timeout_seconds", "is " + std::to_string(timeout_seconds) + "; must be finite and >= 0 (0 = no timeout)");
}

}  // namespace groupmates
