// groupmates/probe.h: oracle probes of the live model (ALGORITHM.md section 2).
//
//   ProbeTarget        what the prober needs from the live model: clone(), train_step(), reference_loss()
//   ModuleProbeTarget  a C++ torch::nn::Module + torch::optim::Optimizer + loss callback
//   OracleProber       rollouts of L real optimiser steps from a copy; marginal labels y_t = s_t - s_{t-1}
//   rollout policies   random, neighbour (same cluster / top cosine), bootstrap (beam search, best + worst)
//   LabelBuffer        bounded FIFO of labelled rollouts; save/load for the loader's checkpoint
//   ProbeScheduler     every N trainer steps: snapshot on the caller's thread, rollouts on its own thread
//
// A rollout from weights theta (and optimiser state): R_0 = reference loss; for t = 1..L one real
// optimiser step on the t-th batch, R_t = reference loss, s_t = R_t - R_0, y_t = s_t - s_{t-1}
// (y_1 = s_1). Negative = the data helped. A rollout with a non-finite loss is discarded.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/types.h>

namespace groupmates {

class RelationalInfluenceModel;

// ---------------------------------------------------------------------------------------------
// Probe targets

/// What the prober needs from the live model. Implementations are not thread-safe: one thread
/// uses an instance at a time (the scheduler clones on the trainer's thread, then the clone is
/// used on the probe thread only).
class ProbeTarget {
 public:
  virtual ~ProbeTarget() = default;
  /// Deep copy of the weights AND the optimiser state, independent of this target.
  virtual std::unique_ptr<ProbeTarget> clone() const = 0;
  /// One real optimiser step (same optimiser, lr and clipping as training, lr times lr_scale())
  /// on tokens int64 [B, T]; returns the training loss of the batch before the step.
  virtual double train_step(const torch::Tensor& tokens) = 0;
  /// Mean loss over the reference batches (no gradient; never changes weights or state).
  virtual double reference_loss() = 0;
  /// Multiplies the learning rate of later train_step()s (probes: a scaled step; default 1).
  virtual void set_lr_scale(double scale) = 0;
  virtual double lr_scale() const = 0;
  /// Device the weights live on (token batches are moved there).
  virtual torch::Device device() const = 0;
  /// Forward FLOPs per token of the model (about 2 x its non-embedding parameters); a forward plus
  /// backward counts 3x this. Used only for cost accounting; 0 = unknown (FLOPs then report 0).
  virtual double forward_flops_per_token() const { return 0; }
  /// Tokens in the reference set that reference_loss() evaluates (cost accounting; 0 = unknown).
  virtual int64_t reference_tokens() const { return 0; }
};

/// Settings of a ModuleProbeTarget.
struct ModuleProbeTargetConfig {
  double grad_clip_norm = 1.0;  ///< clip the global gradient norm at this value before each step; 0 = off
  double lr_scale = 1.0;        ///< see ProbeTarget::set_lr_scale
  double forward_flops_per_token = 0;  ///< cost accounting; 0 = 2 x every parameter of the module (embeddings too)
};

/// A C++ torch::nn::Module trained by a torch::optim::Optimizer (AdamW, SGD, ...).
///
/// clone() serialises the module (parameters and buffers) and the optimiser (param groups with
/// their options, per-parameter state) into in-memory torch archives and loads them into a fresh
/// module built by `module_factory` and a fresh optimiser built by `optimizer_factory` over its
/// parameters. The factories must build the same architecture and optimiser type; the loaded
/// options (lr, betas, weight decay, ...) replace the factory's. Works with LibTorch 1.13 and 2.x.
///
/// Use the same instance for the real training steps (train_step) so probes use exactly the
/// trainer's optimiser settings, or keep training yourself and only hand this target to the prober.
class ModuleProbeTarget : public ProbeTarget {
 public:
  using ModulePtr = std::shared_ptr<torch::nn::Module>;
  using ModuleFactory = std::function<ModulePtr()>;
  using OptimizerFactory = std::function<std::shared_ptr<torch::optim::Optimizer>(torch::nn::Module&)>;
  /// Scalar loss of a batch of token rows [B, T] (on the module's device).
  using LossFn = std::function<torch::Tensor(torch::nn::Module&, const torch::Tensor&)>;

  /// `reference_batches`: token tensors [B_i, T_i] (moved to the module's device once).
  ModuleProbeTarget(ModulePtr module, std::shared_ptr<torch::optim::Optimizer> optimizer, ModuleFactory module_factory,
                    OptimizerFactory optimizer_factory, LossFn loss, std::vector<torch::Tensor> reference_batches,
                    const ModuleProbeTargetConfig& config = {});

  std::unique_ptr<ProbeTarget> clone() const override;
  double train_step(const torch::Tensor& tokens) override;
  double reference_loss() override;
  void set_lr_scale(double scale) override;
  double lr_scale() const override { return config_.lr_scale; }
  torch::Device device() const override { return device_; }
  double forward_flops_per_token() const override;
  int64_t reference_tokens() const override;

  torch::nn::Module& module() { return *module_; }
  const ModulePtr& module_ptr() const { return module_; }
  torch::optim::Optimizer& optimizer() { return *optimizer_; }
  const std::vector<torch::Tensor>& reference_batches() const { return reference_batches_; }

  /// The module's parameters and buffers and the optimiser's state as one byte blob (the same
  /// archives clone() uses); equal blobs = bit-identical weights and state. For tests and checks.
  std::string state_blob() const;

 private:
  ModulePtr module_;
  std::shared_ptr<torch::optim::Optimizer> optimizer_;
  ModuleFactory module_factory_;
  OptimizerFactory optimizer_factory_;
  LossFn loss_;
  std::vector<torch::Tensor> reference_batches_;
  ModuleProbeTargetConfig config_;
  torch::Device device_;
};

// ---------------------------------------------------------------------------------------------
// Rollouts

/// How a rollout's candidates were chosen.
enum class RolloutKind : int64_t {
  kRandom = 0,          ///< uniform without replacement from the pool
  kNeighbour = 1,       ///< near neighbours (same cluster / top cosine): exercises the relational terms
  kBootstrapBest = 2,   ///< beam search with the current model: best predicted sequence
  kBootstrapWorst = 3,  ///< beam search with the current model: worst predicted sequence
};
constexpr int kNumRolloutKinds = 4;
/// "random", "neighbour", "bootstrap_best", "bootstrap_worst".
const char* rollout_kind_name(RolloutKind kind);

/// Which pool rows a rollout trains on: step t (0-based) uses candidates[t * rows_per_step ..
/// (t + 1) * rows_per_step).
struct RolloutPlan {
  std::vector<int64_t> candidates;  ///< [L * rows_per_step] row ids into the pool
  RolloutKind kind = RolloutKind::kRandom;
};

/// One finished rollout (only finite ones are ever returned).
struct Rollout {
  std::vector<int64_t> candidates;  ///< [L * rows_per_step] row ids into the pool
  std::vector<double> labels;       ///< [L] marginal labels y_t = s_t - s_{t-1}, y_1 = s_1
  std::vector<double> cumulative;   ///< [L] raw s_t = R_t - R_0
  double reference_before = 0;      ///< R_0
  RolloutKind kind = RolloutKind::kRandom;
  double seconds = 0;               ///< wall time of this rollout (clone + L steps + L evaluations)
};

/// Settings of an OracleProber.
struct OracleProberConfig {
  int64_t rollout_length = 10;  ///< L
  int64_t rows_per_step = 1;    ///< candidate rows per optimiser step (the batch of one step)
  int64_t max_rollouts = 64;    ///< at most this many rollouts per run() (planned beyond are skipped)
  double max_seconds = 0;       ///< stop starting new rollouts after this many seconds; 0 = no limit
  double lr_scale = 1.0;        ///< probes step with lr * lr_scale (a full step can swamp the labels)
};

/// What one run() produced and what it cost.
struct ProbeResult {
  std::vector<Rollout> rollouts;  ///< finite rollouts, in plan order
  int64_t attempted = 0;          ///< rollouts started
  int64_t discarded = 0;          ///< rollouts dropped for a NaN/inf loss
  int64_t skipped = 0;            ///< planned rollouts not started (max_rollouts / max_seconds)
  double reference_before = 0;    ///< R_0 of the probed weights
  double seconds = 0;             ///< wall time of run()
  /// seconds / attempted (0 if none).
  double seconds_per_rollout() const { return attempted > 0 ? seconds / attempted : 0.0; }
};

/// Runs rollouts from a target's current weights; never modifies the target it is given.
class OracleProber {
 public:
  explicit OracleProber(const OracleProberConfig& config = {});

  /// Runs the plans (each of exactly L * rows_per_step candidates) on copies of `target`.
  /// `pool`: int64 [N, T] candidate rows (any device). Throws Error(kInvalidConfig) on bad plans.
  ProbeResult run(ProbeTarget& target, const torch::Tensor& pool, const std::vector<RolloutPlan>& plans) const;

  /// One rollout from a copy of `target` whose reference loss before any step is `reference_before`.
  /// Returns false (and leaves `out` unspecified) if a loss became NaN/inf.
  bool run_rollout(const ProbeTarget& target, const torch::Tensor& pool, const RolloutPlan& plan,
                   double reference_before, Rollout& out) const;

  const OracleProberConfig& config() const { return config_; }

 private:
  OracleProberConfig config_;
};

/// Label statistics of one rollout kind.
struct LabelStats {
  RolloutKind kind = RolloutKind::kRandom;
  int64_t rollouts = 0;
  int64_t count = 0;         ///< labels (rollouts * L)
  double mean = 0, std = 0;  ///< over all labels y_t of the kind (population std)
  double first_mean = 0;     ///< mean of y_1 (individual effect of the first batch)
  double later_mean = 0;     ///< mean of y_t, t >= 2 (where the relational terms act)
  double later_std = 0;
  double final_mean = 0;     ///< mean of s_L (the whole rollout's effect)
};
/// One entry per kind present in `rollouts`, in RolloutKind order.
std::vector<LabelStats> summarise_labels(const std::vector<Rollout>& rollouts);
/// A fixed-width table of summarise_labels() for logs and reports.
std::string format_label_stats(const std::vector<LabelStats>& stats);

// ---------------------------------------------------------------------------------------------
// Rollout policies (each returns plans of `length * rows_per_step` distinct candidates)

/// `count` rollouts drawn uniformly without replacement (within a rollout) from [0, pool_size).
std::vector<RolloutPlan> random_rollouts(int64_t pool_size, int64_t count, int64_t length, int64_t rows_per_step,
                                         uint64_t seed);

/// `count` rollouts each drawn from one cluster (clusters picked with probability proportional
/// to size among those with >= 2 members), in random order; when the cluster has fewer members
/// than a rollout needs, the rest are random rows of other clusters. cluster_ids: int64 [N].
std::vector<RolloutPlan> cluster_neighbour_rollouts(const torch::Tensor& cluster_ids, int64_t count, int64_t length,
                                                    int64_t rows_per_step, uint64_t seed);

/// `count` rollouts: a random anchor and its top-(n-1) cosine neighbours (n = length * rows_per_step),
/// in random order. embeddings: float [N, D] (rows need not be unit norm).
std::vector<RolloutPlan> embedding_neighbour_rollouts(const torch::Tensor& embeddings, int64_t count, int64_t length,
                                                      int64_t rows_per_step, uint64_t seed);

/// Best and worst ordered sequences found by beam search (indices into the searched rows).
struct BeamSearchResult {
  std::vector<int64_t> best, worst;
  double best_score = 0, worst_score = 0;  ///< predicted group influence sum_t p_t (lower = better)
};

/// Beam search (width `beam_width`) over ordered sequences of `length` distinct rows of
/// `embeddings` [M, D] scored by the model's predict_groups (eval mode, no gradient; the model's
/// training flag is restored). Deterministic: ties go to the lower row id.
/// `prior` (optional, float [M]): the rows' prior for the model's u (RelationalInfluenceModel::individual).
BeamSearchResult beam_search_groups(RelationalInfluenceModel& model, const torch::Tensor& embeddings, int64_t length,
                                    int64_t beam_width = 5, const torch::Tensor& prior = {});

/// Beam search from precomputed scores: u [M] individual influences and r [M, M] relationship
/// weights (p_0 = u_0, p_t = u_t * mean_{j<t} r_tj). beam_search_groups() calls this.
BeamSearchResult beam_search_scores(const std::vector<double>& u, const std::vector<double>& r, int64_t length,
                                    int64_t beam_width = 5);

/// `pairs` times: a random subset of `subset_size` pool rows is embedded with the model and beam
/// search returns its best and worst predicted sequences of length * rows_per_step rows
/// (consecutive chunks of rows_per_step form the steps): 2 * pairs plans, best then worst.
/// `prior` (optional, float [N]): the pool rows' prior for the model's u.
std::vector<RolloutPlan> bootstrap_rollouts(RelationalInfluenceModel& model, const torch::Tensor& pool, int64_t pairs,
                                            int64_t length, int64_t rows_per_step, uint64_t seed,
                                            int64_t subset_size = 64, int64_t beam_width = 5,
                                            const torch::Tensor& prior = {});

// ---------------------------------------------------------------------------------------------
// Label buffer

/// A labelled rollout as stored for training the influence model.
struct LabelledRollout {
  torch::Tensor tokens;        ///< int64 [L, R, T] on the CPU (R = rows per step)
  std::vector<double> labels;  ///< [L] raw marginal labels
  RolloutKind kind = RolloutKind::kRandom;
  int64_t probe_step = 0;      ///< trainer step of the snapshot
  torch::Tensor prior;         ///< float [L, R] on the CPU: the rows' prior for u (undefined = none)
};

/// Bounded FIFO buffer of the most recent labelled rollouts. Thread-safe.
class LabelBuffer {
 public:
  explicit LabelBuffer(size_t capacity);

  /// Appends (tokens moved to the CPU, made contiguous); evicts the oldest entries beyond capacity.
  void add(LabelledRollout rollout);
  size_t size() const;
  size_t capacity() const { return capacity_; }
  uint64_t total_added() const;
  uint64_t evicted() const;
  void clear();

  /// Copy of the contents, oldest first (tensors shared, never modified in place).
  std::vector<LabelledRollout> snapshot() const;

  /// Training batch: tokens [G, L, T] (if every sampled entry has R = 1; else [G, L, R, T]) and
  /// raw labels double [G, L], kinds int64 [G], prior float [G, L] (or [G, L, R]; undefined unless every
  /// entry has one). Without replacement when count <= size().
  struct Batch {
    torch::Tensor tokens, labels, kinds, prior;
  };
  /// Throws Error(kInvalidState) if the buffer is empty or the sampled entries differ in shape.
  Batch sample(size_t count, uint64_t seed) const;
  /// Everything, oldest first (same shapes as sample()).
  Batch all() const;

  /// Contents and counters as a byte blob (a torch archive) / restore from it (capacity is kept
  /// from this instance; the newest entries are kept if the blob holds more).
  std::string save() const;
  void load(const std::string& blob);

 private:
  Batch stack(const std::vector<LabelledRollout>& entries) const;

  size_t capacity_;
  mutable std::mutex mutex_;
  std::vector<LabelledRollout> ring_;  // oldest first
  uint64_t total_added_ = 0;
  uint64_t evicted_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Probe scheduler

/// What policies a probe may use beyond random rollouts (all optional).
struct ProbeContext {
  torch::Tensor cluster_ids;  ///< int64 [N]: same-cluster neighbour rollouts
  torch::Tensor embeddings;   ///< float [N, D]: cosine-neighbour rollouts when cluster_ids is undefined
  /// The current influence model (an immutable published version): bootstrap rollouts.
  std::shared_ptr<RelationalInfluenceModel> model;
  torch::Tensor prior;        ///< float [N]: each candidate row's prior for u; stored with its rollouts
  int64_t max_rollouts = -1;  ///< this probe's cap on rollouts (a compute budget), -1 = the configured one
};

/// Settings of a ProbeScheduler.
struct ProbeSchedulerConfig {
  int64_t interval_steps = 1000;   ///< probe at steps first_step, first_step + interval, ...
  int64_t first_step = 0;          ///< first step at which a probe is due
  OracleProberConfig prober;       ///< rollout length, rows per step, cost bounds, lr scale
  int64_t random_rollouts = 16;    ///< per probe
  int64_t neighbour_rollouts = 8;  ///< per probe, when the context has cluster ids or embeddings
  int64_t bootstrap_pairs = 4;     ///< per probe (best + worst each), when the context has a model
  int64_t bootstrap_subset = 64;   ///< candidate rows searched by each beam search
  int64_t beam_width = 5;
  uint64_t seed = 0;               ///< rollout draws use (seed, step)
  int probe_threads = 0;           ///< intra-op threads on the probe thread (at::set_num_threads); 0 = leave
};

/// Cost and outcome counters of a ProbeScheduler.
struct ProbeStats {
  int64_t probes_started = 0;      ///< snapshots taken and queued
  int64_t probes_completed = 0;
  int64_t probes_skipped_busy = 0; ///< due while one was in flight (skipped, not queued)
  int64_t probes_failed = 0;       ///< threw (see last_error)
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
};

/// Runs probes asynchronously on its own thread, at most one in flight.
///
/// maybe_probe() on the trainer's thread: when a probe is due and none is running, clones the
/// target there (the probe sees the weights as they were at that step), copies the candidate
/// rows and hands both to the probe thread; the trainer keeps stepping. A probe that falls due
/// while another runs is SKIPPED and counted (never queued): the cost stays bounded and labels
/// always come from a recent snapshot. Finished rollouts go to the LabelBuffer, then the
/// completion callback (if any) runs on the probe thread. On a CUDA device the probe runs on its
/// own stream from the pool, ordered after the snapshot copy.
class ProbeScheduler {
 public:
  using Callback = std::function<void(int64_t step, const ProbeResult& result)>;

  ProbeScheduler(const ProbeSchedulerConfig& config, std::shared_ptr<LabelBuffer> buffer);
  ~ProbeScheduler();  ///< waits for the probe in flight, then stops the thread
  ProbeScheduler(const ProbeScheduler&) = delete;
  ProbeScheduler& operator=(const ProbeScheduler&) = delete;

  bool due(int64_t step) const;
  /// Starts a probe if due and idle; returns whether one was started. candidate_rows: int64 [N, T].
  bool maybe_probe(int64_t step, const ProbeTarget& target, const torch::Tensor& candidate_rows,
                   const ProbeContext& context = {});
  /// Blocks until no probe is in flight.
  void wait_idle();
  bool busy() const;
  ProbeStats stats() const;
  /// Message of the last probe that threw, empty if none.
  std::string last_error() const;
  /// Called on the probe thread after each completed probe (after the buffer is filled).
  void set_callback(Callback callback);
  const std::shared_ptr<LabelBuffer>& buffer() const { return buffer_; }

 private:
  struct Job;
  void worker_loop();
  void run_job(Job& job);

  ProbeSchedulerConfig config_;
  std::shared_ptr<LabelBuffer> buffer_;
  OracleProber prober_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::unique_ptr<Job> job_;  // pending or running
  bool running_ = false;
  bool stop_ = false;
  Callback callback_;
  ProbeStats stats_;
  int64_t rollouts_attempted_ = 0;
  std::string last_error_;
  double created_ = 0;  // steady-clock seconds
  std::thread thread_;
};

}  // namespace groupmates
