// groupmates/engine/probe_scheduler.h: runs oracle probes every N trainer steps from a snapshot taken on
// the trainer's thread, on a thread of their own or in slices on the trainer's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <torch/types.h>

#include "groupmates/engine/label_buffer.h"
#include "groupmates/engine/oracle_prober.h"
#include "groupmates/probe_target.h"
#include "groupmates/selection_stats.h"

namespace groupmates {

class RelationalInfluenceModel;

/// What policies a probe may use beyond random rollouts (all optional).
struct ProbeContext {
  torch::Tensor cluster_ids;  ///< int64 [N]: same-cluster neighbour rollouts
  torch::Tensor embeddings;   ///< float [N, D]: cosine-neighbour rollouts when cluster_ids is undefined
  /// The current influence model (an immutable published version): bootstrap rollouts.
  std::shared_ptr<RelationalInfluenceModel> model;
  torch::Tensor prior;        ///< float [N]: each candidate row's prior for u; stored with its rollouts
  int64_t max_rollouts = -1;  ///< this probe's cap on rollouts (a compute budget), -1 = the configured one
};

/// This rank's share of a probe's n rollouts: the indices i < n with i % world == rank (round
/// robin, so a cost cut at the end of the plan list keeps a mix of rollout kinds on every rank).
std::vector<size_t> rollouts_of_rank(size_t n, int rank, int world);

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
  int nice = 0;                    ///< the probe thread's nice increment (Linux, setpriority on its own tid); 0 = none
  int rank = 0;                    ///< of world_size data-parallel ranks sharing each probe: this rank runs the
  int world_size = 1;              ///< planned rollouts i with i % world_size == rank (rollouts_of_rank)
  double timeout_seconds = 0;      ///< a probe still in its rollouts after this long is abandoned (0 = never)
  int64_t trainer_thread_rollouts = 0;  ///< > 0: no probe thread; the probe runs on the trainer's thread in slices,
                                        ///< advance() running this many rollouts (its first call draws the plans and
                                        ///< measures R_0 and the reference gradient), then the buffer and callback; probe_threads, nice and the
                                        ///< timeout do not apply. 0: a thread of its own per probe
};


/// Runs probes asynchronously, at most one in flight: on a thread of their own (one per probe), or in slices on the
/// trainer's thread (config.trainer_thread_rollouts > 0: advance() once per trainer step).
///
/// maybe_probe() on the trainer's thread: when a probe is due and none is running, clones the
/// target there (the probe sees the weights as they were at that step), copies the candidate
/// rows and hands both to the probe thread (in slices: keeps them for advance()); the trainer keeps
/// stepping. A probe that falls due while another runs is SKIPPED and counted (never queued): the cost
/// stays bounded and labels always come from a recent snapshot. Finished rollouts go to the LabelBuffer,
/// then the completion callback (if any) runs on the probe thread (in slices: in the last advance()). On
/// a CUDA device a probe thread runs on its own stream from the pool, ordered after the snapshot copy;
/// slices run on the caller's current stream.
///
/// Timeout (probe thread only; config.timeout_seconds > 0): a probe still running its rollouts (the target's code) that
/// long after it started is ABANDONED when the trainer's thread next looks (busy(), wait_idle(),
/// maybe_probe(), the destructor): counted (probes_timed_out, last_error), its thread detached and
/// left to finish on its own (it holds the snapshot until then; when it returns, its rollouts are
/// dropped and the callback is not called), and the scheduler is idle again. C++ cannot stop a
/// thread: a probe that never returns keeps its thread and snapshot for the life of the process.
class ProbeScheduler {
 public:
  using Callback = std::function<void(int64_t step, const ProbeResult& result)>;

  ProbeScheduler(const ProbeSchedulerConfig& config, std::shared_ptr<LabelBuffer> buffer);
  ~ProbeScheduler();  ///< waits for a probe thread in flight (at most until its timeout, then abandons it); a probe in
                      ///< slices is dropped (counted as started only)
  ProbeScheduler(const ProbeScheduler&) = delete;
  ProbeScheduler& operator=(const ProbeScheduler&) = delete;

  bool due(int64_t step) const;
  /// Starts a probe if due and idle; returns whether one was started. candidate_rows: int64 [N, T].
  bool maybe_probe(int64_t step, const ProbeTarget& target, const torch::Tensor& candidate_rows,
                   const ProbeContext& context = {});
  /// In slices (trainer_thread_rollouts > 0): runs the next slice of the probe in flight, if any, on this thread (the
  /// first draws the plans and measures R_0; autograd on, as on a probe thread); after its last slice fills the buffer
  /// and calls the callback here. Returns whether a slice ran (never with a probe thread).
  bool advance();
  /// Blocks until no probe is in flight (a probe past its timeout is abandoned). In slices: runs what is left of the
  /// probe in flight on this thread.
  void wait_idle();
  /// Whether a probe is in flight (a probe past its timeout is abandoned first).
  bool busy() const;
  ProbeStats stats() const;
  /// Message of the last probe that threw, empty if none.
  std::string last_error() const;
  /// Called after each completed probe (after the buffer is filled), on the probe thread (in slices: the trainer's).
  void set_callback(Callback callback);
  const std::shared_ptr<LabelBuffer>& buffer() const { return buffer_; }

 private:
  struct Shared;  // what the probe thread touches (the counters, their lock, the callback): outlives an abandoned probe
  struct Impl;    // the shared part and the probe in flight's thread
  std::shared_ptr<LabelBuffer> buffer_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace groupmates
