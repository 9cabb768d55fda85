// ProbeScheduler: asynchronous oracle probes every N trainer steps, at most one in flight.
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <ATen/Parallel.h>
#include <c10/core/Event.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <torch/cuda.h>

#include "groupmates/error.h"
#include "groupmates/probe_target.h"
#include "groupmates/engine/oracle_prober.h"
#include "groupmates/engine/rollout_policy.h"
#include "groupmates/engine/label_buffer.h"
#include "groupmates/engine/probe_scheduler.h"
#include "groupmates/engine/shared_probes.h"
#include "util/background_worker.h"
#include "util/stopwatch.h"

namespace groupmates {
namespace {

/// Round-robin merge of the plan lists, so a cost cut (max_rollouts / max_seconds) keeps a mix of kinds.
std::vector<RolloutPlan> interleave(std::vector<std::vector<RolloutPlan>> lists) {
  std::vector<RolloutPlan> out;
  for (size_t i = 0;; ++i) {
    bool any = false;
    for (auto& list : lists)
      if (i < list.size()) {
        out.push_back(std::move(list[i]));
        any = true;
      }
    if (!any) break;
  }
  return out;
}

struct Job {
  int64_t step = 0;
  std::unique_ptr<ProbeTarget> snapshot;
  torch::Tensor pool;
  ProbeContext context;
  std::unique_ptr<c10::Event> ready;  // CUDA only: recorded on the trainer's stream after the copy
};

}  // namespace

struct ProbeScheduler::Impl {
  Impl(const ProbeSchedulerConfig& c, std::shared_ptr<LabelBuffer> b)
      : config(c), buffer(std::move(b)), prober(c.prober) {}

  /// On the probe thread: runs the probe, counts it, frees the snapshot there, then reports idle.
  void execute(std::shared_ptr<Job> job);
  void run_job(Job& job);

  const ProbeSchedulerConfig config;
  const std::shared_ptr<LabelBuffer> buffer;
  OracleProber prober;
  const util::Stopwatch created;
  mutable std::mutex mutex;
  std::condition_variable idle;  // notified when running turns false
  bool running = false;          // a probe is pending or running
  Callback callback;
  ProbeStats stats;
  int64_t rollouts_attempted = 0;
  std::string last_error;
  util::BackgroundWorker worker{"ProbeScheduler"};  // last: destroyed first, after the probe in flight
};

ProbeScheduler::ProbeScheduler(const ProbeSchedulerConfig& config, std::shared_ptr<LabelBuffer> buffer)
    : buffer_(std::move(buffer)) {
  if (!buffer_) throw Error(ErrorCode::kInvalidConfig, "ProbeScheduler", "label buffer is null");
  if (config.interval_steps < 1)
    throw Error(ErrorCode::kInvalidConfig, "ProbeSchedulerConfig.interval_steps", "must be >= 1");
  if (config.random_rollouts < 0 || config.neighbour_rollouts < 0 || config.bootstrap_pairs < 0)
    throw Error(ErrorCode::kInvalidConfig, "ProbeSchedulerConfig", "rollout counts must be >= 0");
  if (config.beam_width < 1) throw Error(ErrorCode::kInvalidConfig, "ProbeSchedulerConfig.beam_width", "must be >= 1");
  if (config.world_size < 1 || config.rank < 0 || config.rank >= config.world_size)
    throw Error(ErrorCode::kInvalidConfig, "ProbeSchedulerConfig.rank",
                std::to_string(config.rank) + " of " + std::to_string(config.world_size) + " is not a rank");
  impl_ = std::make_unique<Impl>(config, buffer_);
  if (config.probe_threads > 0)
    impl_->worker.schedule([n = config.probe_threads] { at::set_num_threads(n); });  // the probe thread's own
}

ProbeScheduler::~ProbeScheduler() = default;  // the worker waits for the probe in flight, then stops

bool ProbeScheduler::due(int64_t step) const {
  const ProbeSchedulerConfig& c = impl_->config;
  return step >= c.first_step && (step - c.first_step) % c.interval_steps == 0;
}

bool ProbeScheduler::maybe_probe(int64_t step, const ProbeTarget& target, const torch::Tensor& candidate_rows,
                                 const ProbeContext& context) {
  if (!due(step)) return false;
  Impl& impl = *impl_;
  {
    std::lock_guard<std::mutex> lock(impl.mutex);
    if (impl.running) {  // at most one probe in flight: a due probe is skipped, never queued
      ++impl.stats.probes_skipped_busy;
      return false;
    }
  }
  if (!candidate_rows.defined() || candidate_rows.dim() != 2 || candidate_rows.scalar_type() != torch::kInt64)
    throw Error(ErrorCode::kInvalidConfig, "ProbeScheduler::maybe_probe", "candidate_rows must be int64 [N, T]");
  const util::Stopwatch clock;
  auto job = std::make_shared<Job>();
  job->step = step;
  job->snapshot = target.clone();  // on the trainer's thread: the weights as they are at this step
  job->pool = candidate_rows.clone();
  job->context = context;
  if (job->context.cluster_ids.defined()) job->context.cluster_ids = job->context.cluster_ids.clone();
  if (job->context.embeddings.defined()) job->context.embeddings = job->context.embeddings.clone();
  if (job->context.prior.defined()) job->context.prior = job->context.prior.to(torch::kCPU, torch::kFloat).clone();
  const torch::Device device = target.device();
  if (device.is_cuda() && torch::cuda::is_available()) {
    // The copies above were queued on the trainer's current stream; the probe stream waits for them.
    c10::impl::VirtualGuardImpl guard(device.type());
    job->ready = std::make_unique<c10::Event>(device.type());
    job->ready->record(guard.getStream(device));
  }
  const double spent = clock.seconds();
  {
    std::lock_guard<std::mutex> lock(impl.mutex);
    impl.stats.snapshot_seconds += spent;
    ++impl.stats.probes_started;
    impl.stats.last_probe_step = step;
    impl.running = true;
  }
  impl.worker.schedule([&impl, job = std::move(job)]() mutable { impl.execute(std::move(job)); });
  return true;
}

void ProbeScheduler::Impl::execute(std::shared_ptr<Job> job) {
  const util::Stopwatch clock;
  std::string error;
  bool ok = true;
  try {
    run_job(*job);
  } catch (const std::exception& e) {
    ok = false;
    error = e.what();
  } catch (...) {
    ok = false;
    error = "unknown exception";
  }
  const double spent = clock.seconds();
  job.reset();  // frees the snapshot on this thread
  std::lock_guard<std::mutex> lock(mutex);
  stats.probe_seconds += spent;
  if (ok)
    ++stats.probes_completed;
  else {
    ++stats.probes_failed;
    last_error = error;
  }
  running = false;
  idle.notify_all();
}

void ProbeScheduler::Impl::run_job(Job& job) {
  std::optional<c10::StreamGuard> stream_guard;
  const torch::Device device = job.snapshot->device();
  if (job.ready) {  // CUDA: a stream of our own, ordered after the snapshot copy
    c10::impl::VirtualGuardImpl impl(device.type());
    const c10::Stream stream = impl.getStreamFromGlobalPool(device);
    job.ready->block(stream);
    stream_guard.emplace(stream);
  }
  const OracleProberConfig& pc = config.prober;
  const int64_t n = job.pool.size(0);
  const uint64_t seed = config.seed ^ (static_cast<uint64_t>(job.step) * 0xD1B54A32D192ED03ULL);
  std::vector<std::vector<RolloutPlan>> lists;
  lists.push_back(random_rollouts(n, config.random_rollouts, pc.rollout_length, pc.rows_per_step, seed));
  if (config.neighbour_rollouts > 0) {
    if (job.context.cluster_ids.defined())
      lists.push_back(cluster_neighbour_rollouts(job.context.cluster_ids, config.neighbour_rollouts,
                                                 pc.rollout_length, pc.rows_per_step, seed + 1));
    else if (job.context.embeddings.defined())
      lists.push_back(embedding_neighbour_rollouts(job.context.embeddings, config.neighbour_rollouts,
                                                   pc.rollout_length, pc.rows_per_step, seed + 1));
  }
  if (config.bootstrap_pairs > 0 && job.context.model)
    lists.push_back(bootstrap_rollouts(*job.context.model, job.pool, config.bootstrap_pairs, pc.rollout_length,
                                       pc.rows_per_step, seed + 2, config.bootstrap_subset, config.beam_width,
                                       job.context.prior));
  std::vector<RolloutPlan> plans = interleave(std::move(lists));
  if (job.context.max_rollouts >= 0 && int64_t(plans.size()) > job.context.max_rollouts)
    plans.resize(size_t(job.context.max_rollouts));  // interleaved: the cut keeps a mix of kinds
  if (config.world_size > 1) {  // this rank's share of the probe (every rank planned the same count)
    std::vector<RolloutPlan> mine;
    for (size_t i : rollouts_of_rank(plans.size(), config.rank, config.world_size)) mine.push_back(std::move(plans[i]));
    plans = std::move(mine);
  }

  const ProbeResult result = prober.run(*job.snapshot, job.pool, plans);

  const int64_t width = job.pool.size(1);
  for (const auto& rollout : result.rollouts) {
    LabelledRollout entry;
    const torch::Tensor ids =
        torch::tensor(rollout.candidates, torch::TensorOptions().dtype(torch::kInt64)).to(job.pool.device());
    entry.tokens = job.pool.index_select(0, ids).reshape({pc.rollout_length, pc.rows_per_step, width}).to(torch::kCPU);
    entry.labels = rollout.labels;
    entry.kind = rollout.kind;
    entry.probe_step = job.step;
    if (job.context.prior.defined())
      entry.prior = job.context.prior.index_select(0, ids.to(torch::kCPU)).reshape({pc.rollout_length, pc.rows_per_step});
    buffer->add(std::move(entry));
  }
  ProbeScheduler::Callback notify;
  {
    std::lock_guard<std::mutex> lock(mutex);
    stats.rollouts_kept += static_cast<int64_t>(result.rollouts.size());
    stats.rollouts_discarded += result.discarded;
    stats.rollouts_skipped += result.skipped;
    rollouts_attempted += result.attempted;
    notify = callback;
  }
  if (notify) notify(job.step, result);
}

void ProbeScheduler::wait_idle() {
  std::unique_lock<std::mutex> lock(impl_->mutex);
  impl_->idle.wait(lock, [this] { return !impl_->running; });
}

bool ProbeScheduler::busy() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->running;
}

ProbeStats ProbeScheduler::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  ProbeStats s = impl_->stats;
  s.wall_seconds = impl_->created.seconds();
  if (s.wall_seconds > 0) {
    s.probe_share = s.probe_seconds / s.wall_seconds;
    s.snapshot_share = s.snapshot_seconds / s.wall_seconds;
  }
  s.seconds_per_rollout = impl_->rollouts_attempted > 0 ? s.probe_seconds / impl_->rollouts_attempted : 0.0;
  return s;
}

std::string ProbeScheduler::last_error() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->last_error;
}

void ProbeScheduler::set_callback(Callback callback) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->callback = std::move(callback);
}

}  // namespace groupmates
