// ProbeScheduler: asynchronous oracle probes every N trainer steps, at most one in flight.
#include <chrono>
#include <memory>
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

namespace groupmates {
namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

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

}  // namespace

struct ProbeScheduler::Job {
  int64_t step = 0;
  std::unique_ptr<ProbeTarget> snapshot;
  torch::Tensor pool;
  ProbeContext context;
  std::unique_ptr<c10::Event> ready;  // CUDA only: recorded on the trainer's stream after the copy
};

ProbeScheduler::ProbeScheduler(const ProbeSchedulerConfig& config, std::shared_ptr<LabelBuffer> buffer)
    : config_(config), buffer_(std::move(buffer)), prober_(config.prober), created_(now_seconds()) {
  if (!buffer_) throw Error(ErrorCode::kInvalidConfig, "ProbeScheduler", "label buffer is null");
  if (config_.interval_steps < 1)
    throw Error(ErrorCode::kInvalidConfig, "ProbeSchedulerConfig.interval_steps", "must be >= 1");
  if (config_.random_rollouts < 0 || config_.neighbour_rollouts < 0 || config_.bootstrap_pairs < 0)
    throw Error(ErrorCode::kInvalidConfig, "ProbeSchedulerConfig", "rollout counts must be >= 0");
  if (config_.beam_width < 1) throw Error(ErrorCode::kInvalidConfig, "ProbeSchedulerConfig.beam_width", "must be >= 1");
  thread_ = std::thread([this] { worker_loop(); });
}

ProbeScheduler::~ProbeScheduler() {
  {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [this] { return !running_; });
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool ProbeScheduler::due(int64_t step) const {
  return step >= config_.first_step && (step - config_.first_step) % config_.interval_steps == 0;
}

bool ProbeScheduler::maybe_probe(int64_t step, const ProbeTarget& target, const torch::Tensor& candidate_rows,
                                 const ProbeContext& context) {
  if (!due(step)) return false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (running_) {  // at most one probe in flight: a due probe is skipped, never queued
      ++stats_.probes_skipped_busy;
      return false;
    }
  }
  if (!candidate_rows.defined() || candidate_rows.dim() != 2 || candidate_rows.scalar_type() != torch::kInt64)
    throw Error(ErrorCode::kInvalidConfig, "ProbeScheduler::maybe_probe", "candidate_rows must be int64 [N, T]");
  const double start = now_seconds();
  auto job = std::make_unique<Job>();
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
    c10::impl::VirtualGuardImpl impl(device.type());
    job->ready = std::make_unique<c10::Event>(device.type());
    job->ready->record(impl.getStream(device));
  }
  const double spent = now_seconds() - start;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.snapshot_seconds += spent;
    ++stats_.probes_started;
    stats_.last_probe_step = step;
    job_ = std::move(job);
    running_ = true;
  }
  cv_.notify_all();
  return true;
}

void ProbeScheduler::worker_loop() {
  if (config_.probe_threads > 0) at::set_num_threads(config_.probe_threads);
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    cv_.wait(lock, [this] { return stop_ || (running_ && job_); });
    if (stop_) return;
    Job* job = job_.get();
    lock.unlock();
    const double start = now_seconds();
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
    const double spent = now_seconds() - start;
    lock.lock();
    stats_.probe_seconds += spent;
    if (ok)
      ++stats_.probes_completed;
    else {
      ++stats_.probes_failed;
      last_error_ = error;
    }
    job_.reset();  // frees the snapshot on this thread
    running_ = false;
    cv_.notify_all();
  }
}

void ProbeScheduler::run_job(Job& job) {
  std::optional<c10::StreamGuard> stream_guard;
  const torch::Device device = job.snapshot->device();
  if (job.ready) {  // CUDA: a stream of our own, ordered after the snapshot copy
    c10::impl::VirtualGuardImpl impl(device.type());
    const c10::Stream stream = impl.getStreamFromGlobalPool(device);
    job.ready->block(stream);
    stream_guard.emplace(stream);
  }
  const OracleProberConfig& pc = config_.prober;
  const int64_t n = job.pool.size(0);
  const uint64_t seed = config_.seed ^ (static_cast<uint64_t>(job.step) * 0xD1B54A32D192ED03ULL);
  std::vector<std::vector<RolloutPlan>> lists;
  lists.push_back(random_rollouts(n, config_.random_rollouts, pc.rollout_length, pc.rows_per_step, seed));
  if (config_.neighbour_rollouts > 0) {
    if (job.context.cluster_ids.defined())
      lists.push_back(cluster_neighbour_rollouts(job.context.cluster_ids, config_.neighbour_rollouts,
                                                 pc.rollout_length, pc.rows_per_step, seed + 1));
    else if (job.context.embeddings.defined())
      lists.push_back(embedding_neighbour_rollouts(job.context.embeddings, config_.neighbour_rollouts,
                                                   pc.rollout_length, pc.rows_per_step, seed + 1));
  }
  if (config_.bootstrap_pairs > 0 && job.context.model)
    lists.push_back(bootstrap_rollouts(*job.context.model, job.pool, config_.bootstrap_pairs, pc.rollout_length,
                                       pc.rows_per_step, seed + 2, config_.bootstrap_subset, config_.beam_width,
                                       job.context.prior));
  std::vector<RolloutPlan> plans = interleave(std::move(lists));
  if (job.context.max_rollouts >= 0 && int64_t(plans.size()) > job.context.max_rollouts)
    plans.resize(size_t(job.context.max_rollouts));  // interleaved: the cut keeps a mix of kinds

  const ProbeResult result = prober_.run(*job.snapshot, job.pool, plans);

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
    buffer_->add(std::move(entry));
  }
  Callback callback;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.rollouts_kept += static_cast<int64_t>(result.rollouts.size());
    stats_.rollouts_discarded += result.discarded;
    stats_.rollouts_skipped += result.skipped;
    rollouts_attempted_ += result.attempted;
    callback = callback_;
  }
  if (callback) callback(job.step, result);
}

void ProbeScheduler::wait_idle() {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [this] { return !running_; });
}

bool ProbeScheduler::busy() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return running_;
}

ProbeStats ProbeScheduler::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  ProbeStats s = stats_;
  s.wall_seconds = now_seconds() - created_;
  if (s.wall_seconds > 0) {
    s.probe_share = s.probe_seconds / s.wall_seconds;
    s.snapshot_share = s.snapshot_seconds / s.wall_seconds;
  }
  s.seconds_per_rollout = rollouts_attempted_ > 0 ? s.probe_seconds / rollouts_attempted_ : 0.0;
  return s;
}

std::string ProbeScheduler::last_error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return last_error_;
}

void ProbeScheduler::set_callback(Callback callback) {
  std::lock_guard<std::mutex> lock(mutex_);
  callback_ = std::move(callback);
}

}  // namespace groupmates
