// ProbeScheduler: asynchronous oracle probes every N trainer steps, at most one in flight.
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <cerrno>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#include <algorithm>

#include <ATen/Parallel.h>
#include <c10/core/Event.h>
#include <c10/core/InferenceMode.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <torch/cuda.h>
#include <torch/types.h>

#include "groupmates/error.h"
#include "groupmates/probe_target.h"
#include "groupmates/engine/oracle_prober.h"
#include "groupmates/engine/rollout_policy.h"
#include "groupmates/engine/label_buffer.h"
#include "groupmates/engine/probe_scheduler.h"
#include "util/stopwatch.h"

namespace groupmates {

std::vector<size_t> rollouts_of_rank(size_t n, int rank, int world) {
  if (world < 1 || rank < 0 || rank >= world)
    throw Error(ErrorCode::kInvalidConfig, "rollouts_of_rank", "rank " + std::to_string(rank) + " of " +
                                                                   std::to_string(world) + " is not a rank");
  std::vector<size_t> out;
  for (size_t i = static_cast<size_t>(rank); i < n; i += static_cast<size_t>(world)) out.push_back(i);
  return out;
}

namespace {

// Raises this thread's nice value by `nice` (Linux: a thread's priority is its own, set through its
// tid); elsewhere, or if refused, the thread keeps the process's priority.
void lower_priority(int nice) {
#if defined(__linux__)
  if (nice <= 0) return;
  const auto tid = static_cast<id_t>(::syscall(SYS_gettid));
  errno = 0;
  const int now = ::getpriority(PRIO_PROCESS, tid);
  if (errno == 0) (void)::setpriority(PRIO_PROCESS, tid, std::min(19, now + nice));
#else
  (void)nice;
#endif
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

/// Runs `work`; the message of what it threw ("" if nothing): a probe's failure is counted and reported, never
/// thrown into the trainer.
template <typename Work>
std::string error_of(Work&& work) {
  try {
    work();
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
  return "";
}

struct Job {
  int64_t step = 0;
  std::unique_ptr<ProbeTarget> snapshot;
  torch::Tensor pool;
  ProbeContext context;
  std::unique_ptr<c10::Event> ready;  // CUDA only: recorded on the trainer's stream after the copy
};

}  // namespace

/// What the probe thread touches. Shared with the thread, so a probe abandoned after its timeout (its
/// thread detached) may still finish after the scheduler is gone: it then finds its job abandoned and
/// only frees its snapshot.
struct ProbeScheduler::Shared {
  Shared(const ProbeSchedulerConfig& c, std::shared_ptr<LabelBuffer> b)
      : config(c), buffer(std::move(b)), prober(c.prober) {}

  /// On the probe thread: runs job `id`; unless it was abandoned meanwhile, fills the buffer, calls
  /// the callback, counts it and reports idle. Frees the snapshot on this thread.
  static void execute(const std::shared_ptr<Shared>& self, std::shared_ptr<Job> job, uint64_t id);
  /// The probe's plans: this rank's share of the policies' rollouts, cut to the job's max_rollouts.
  std::vector<RolloutPlan> plan(Job& job);
  ProbeResult run_rollouts(Job& job);
  /// After the rollouts (not abandoned): unless `error`, fills the buffer and calls the callback; then frees the job
  /// (its snapshot) on this thread, counts `seconds` and the commit's time, and reports idle.
  void finish(std::shared_ptr<Job>& job, const ProbeResult& result, std::string error, double seconds);
  void commit(Job& job, const ProbeResult& result);
  /// With the lock held: abandons the job in flight if it is past its timeout (and not yet committing).
  bool expire_locked();

  const ProbeSchedulerConfig config;
  const std::shared_ptr<LabelBuffer> buffer;
  OracleProber prober;
  std::mutex mutex;
  std::condition_variable idle;  // notified when running turns false
  bool running = false;          // a probe is pending or running
  bool committing = false;       // the probe in flight is past the target's code: buffer, callback (never abandoned)
  uint64_t job_id = 0;           // the probe in flight (or the last one)
  int64_t job_step = 0;
  std::chrono::steady_clock::time_point job_started;
  Callback callback;
  ProbeStats stats;
  int64_t rollouts_attempted = 0;
  std::string last_error;
};

struct ProbeScheduler::Impl {
  std::shared_ptr<Shared> shared;
  const util::Stopwatch created;
  std::thread thread;  // the probe in flight; joined when done, detached when abandoned
  // In slices (trainer_thread_rollouts > 0): the probe in flight (set from maybe_probe until it ends) and its
  // rollouts so far (drawn by its first slice), on the trainer's thread.
  std::shared_ptr<Job> sliced_job;
  std::unique_ptr<ProbeRun> sliced_run;
  /// Runs up to `rollouts` more of the sliced probe in flight (its first slice draws the plans and measures R_0);
  /// finishes it after its last slice or a throw.
  void run_slice(int64_t rollouts) {
    Shared& s = *shared;
    const util::Stopwatch clock;
    // The caller's thread may be inside torch.no_grad() / inference mode (e.g. state() in an evaluation block): the
    // probe's steps and the refresh need autograd, which a probe thread has. (Autocast is the caller's: call on_step
    // outside autocast regions.)
    const c10::InferenceMode not_inference(false);
    const torch::AutoGradMode grad(true);
    bool done = false;
    std::string error = error_of([&] {
      if (!sliced_run)
        sliced_run = std::make_unique<ProbeRun>(s.prober, *sliced_job->snapshot, sliced_job->pool, s.plan(*sliced_job));
      done = sliced_run->advance(rollouts);
    });
    if (!done && error.empty()) {
      std::lock_guard<std::mutex> lock(s.mutex);
      s.stats.probe_seconds += clock.seconds();
      return;
    }
    const ProbeResult result = sliced_run ? sliced_run->result() : ProbeResult{};
    sliced_run.reset();
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      s.committing = true;
    }
    s.finish(sliced_job, result, std::move(error), clock.seconds());
  }
  /// After an abandonment (the lock was held): lets the abandoned thread go.
  void release_abandoned() {
    if (thread.joinable()) thread.detach();
  }
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
  if (!(config.timeout_seconds >= 0))
    throw Error(ErrorCode::kInvalidConfig, "ProbeSchedulerConfig.timeout_seconds", "must be >= 0 (0 = no timeout)");
  impl_ = std::make_unique<Impl>();
  impl_->shared = std::make_shared<Shared>(config, buffer_);
}

ProbeScheduler::~ProbeScheduler() {
  if (impl_->sliced_job) {  // in slices: a probe in flight is dropped, not finished on the way out
    impl_->sliced_run.reset();
    impl_->sliced_job.reset();
    std::lock_guard<std::mutex> lock(impl_->shared->mutex);
    impl_->shared->running = false;
  }
  wait_idle();  // bounded by the timeout: a hung probe is abandoned (its thread detached)
  if (impl_->thread.joinable()) impl_->thread.join();
}

bool ProbeScheduler::due(int64_t step) const {
  const ProbeSchedulerConfig& c = impl_->shared->config;
  return step >= c.first_step && (step - c.first_step) % c.interval_steps == 0;
}

bool ProbeScheduler::maybe_probe(int64_t step, const ProbeTarget& target, const torch::Tensor& candidate_rows,
                                 const ProbeContext& context) {
  if (!due(step)) return false;
  Shared& shared = *impl_->shared;
  {
    std::lock_guard<std::mutex> lock(shared.mutex);
    if (shared.expire_locked()) impl_->release_abandoned();
    if (shared.running) {  // at most one probe in flight: a due probe is skipped, never queued
      ++shared.stats.probes_skipped_busy;
      return false;
    }
  }
  if (!candidate_rows.defined() || candidate_rows.dim() != 2 || candidate_rows.scalar_type() != torch::kInt64)
    throw Error(ErrorCode::kInvalidConfig, "ProbeScheduler::maybe_probe", "candidate_rows must be int64 [N, T]");
  if (impl_->thread.joinable()) impl_->thread.join();  // the last probe's thread, done (idle) but not yet joined
  const util::Stopwatch clock;
  auto job = std::make_shared<Job>();
  job->step = step;
  job->snapshot = target.clone();  // on the trainer's thread: the weights as they are at this step
  job->pool = candidate_rows.clone();
  job->context = context;
  if (job->context.cluster_ids.defined()) job->context.cluster_ids = job->context.cluster_ids.clone();
  if (job->context.embeddings.defined()) job->context.embeddings = job->context.embeddings.clone();
  if (job->context.prior.defined()) job->context.prior = job->context.prior.to(torch::kCPU, torch::kFloat).clone();
  const bool sliced = shared.config.trainer_thread_rollouts > 0;
  const torch::Device device = target.device();
  if (!sliced && device.is_cuda() && torch::cuda::is_available()) {
    // The copies above were queued on the trainer's current stream; the probe stream waits for them.
    c10::impl::VirtualGuardImpl guard(device.type());
    job->ready = std::make_unique<c10::Event>(device.type());
    job->ready->record(guard.getStream(device));
  }
  const double spent = clock.seconds();
  uint64_t id = 0;
  {
    std::lock_guard<std::mutex> lock(shared.mutex);
    shared.stats.snapshot_seconds += spent;
    ++shared.stats.probes_started;
    shared.stats.last_probe_step = step;
    shared.running = true;
    shared.committing = false;
    id = ++shared.job_id;
    shared.job_step = step;
    shared.job_started = std::chrono::steady_clock::now();
  }
  if (!sliced) {
    impl_->thread = std::thread(&Shared::execute, impl_->shared, std::move(job), id);
    return true;
  }
  impl_->sliced_job = std::move(job);  // in slices: nothing more runs until the next advance()
  return true;
}

bool ProbeScheduler::advance() {
  if (!impl_->sliced_job) return false;
  impl_->run_slice(impl_->shared->config.trainer_thread_rollouts);
  return true;
}

bool ProbeScheduler::Shared::expire_locked() {
  // In slices the trainer's thread runs the probe: there is no other thread to abandon.
  if (!running || committing || !(config.timeout_seconds > 0) || config.trainer_thread_rollouts > 0) return false;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - job_started).count();
  if (elapsed < config.timeout_seconds) return false;
  running = false;
  ++stats.probes_timed_out;
  stats.probe_seconds += elapsed;
  last_error = "the probe at step " + std::to_string(job_step) + " was still running after ProbeConfig.timeout_seconds = " +
               std::to_string(config.timeout_seconds) +
               " s: abandoned (its rollouts are dropped; its thread is left to finish on its own)";
  std::fprintf(stderr, "groupmates [warning] %s\n", last_error.c_str());
  idle.notify_all();
  return true;
}

void ProbeScheduler::Shared::execute(const std::shared_ptr<Shared>& self, std::shared_ptr<Job> job, uint64_t id) {
  Shared& s = *self;
  if (s.config.probe_threads > 0) at::set_num_threads(s.config.probe_threads);  // this thread's own
  lower_priority(s.config.nice);
  const util::Stopwatch clock;
  ProbeResult result;
  std::string error = error_of([&] { result = s.run_rollouts(*job); });
  bool abandoned = false;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    abandoned = s.job_id != id || !s.running;  // abandoned after its timeout: nothing of it is used
    if (!abandoned) s.committing = true;  // from here on only our own code runs (buffer, callback)
  }
  if (abandoned) {
    job.reset();  // outside the lock: a snapshot's destructor may wait (e.g. for Python's GIL)
    return;
  }
  s.finish(job, result, std::move(error), clock.seconds());
}

void ProbeScheduler::Shared::finish(std::shared_ptr<Job>& job, const ProbeResult& result, std::string error,
                                    double seconds) {
  const util::Stopwatch clock;
  if (error.empty()) error = error_of([&] { commit(*job, result); });
  job.reset();  // frees the snapshot on this thread
  const double spent = seconds + clock.seconds();
  std::lock_guard<std::mutex> lock(mutex);
  stats.probe_seconds += spent;
  if (error.empty()) {
    ++stats.probes_completed;
  } else {
    ++stats.probes_failed;
    last_error = error;
    std::fprintf(stderr, "groupmates [warning] the probe at step %lld failed: %s\n",
                 static_cast<long long>(job_step), error.c_str());
  }
  committing = false;
  running = false;
  idle.notify_all();
}

ProbeResult ProbeScheduler::Shared::run_rollouts(Job& job) {
  std::optional<c10::StreamGuard> stream_guard;
  const torch::Device device = job.snapshot->device();
  if (job.ready) {  // CUDA: a stream of our own, ordered after the snapshot copy
    c10::impl::VirtualGuardImpl impl(device.type());
    const c10::Stream stream = impl.getStreamFromGlobalPool(device);
    job.ready->block(stream);
    stream_guard.emplace(stream);
  }
  return prober.run(*job.snapshot, job.pool, plan(job));
}

std::vector<RolloutPlan> ProbeScheduler::Shared::plan(Job& job) {
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
  return plans;
}

void ProbeScheduler::Shared::commit(Job& job, const ProbeResult& result) {
  const OracleProberConfig& pc = config.prober;
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
  while (impl_->sliced_job) impl_->run_slice(std::numeric_limits<int64_t>::max());
  Shared& s = *impl_->shared;
  std::unique_lock<std::mutex> lock(s.mutex);
  while (s.running) {
    if (s.config.timeout_seconds > 0 && !s.committing) {
      const auto deadline = s.job_started + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                std::chrono::duration<double>(s.config.timeout_seconds));
      s.idle.wait_until(lock, deadline, [&s] { return !s.running || s.committing; });
      if (s.expire_locked()) impl_->release_abandoned();
    } else {
      s.idle.wait(lock, [&s] { return !s.running; });
    }
  }
}

bool ProbeScheduler::busy() const {
  Shared& s = *impl_->shared;
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.expire_locked()) impl_->release_abandoned();
  return s.running;
}

ProbeStats ProbeScheduler::stats() const {
  const Shared& sh = *impl_->shared;
  std::lock_guard<std::mutex> lock(impl_->shared->mutex);
  ProbeStats s = sh.stats;
  s.last_error = sh.last_error;
  s.wall_seconds = impl_->created.seconds();
  if (s.wall_seconds > 0) {
    s.probe_share = s.probe_seconds / s.wall_seconds;
    s.snapshot_share = s.snapshot_seconds / s.wall_seconds;
  }
  s.seconds_per_rollout = sh.rollouts_attempted > 0 ? s.probe_seconds / sh.rollouts_attempted : 0.0;
  return s;
}

std::string ProbeScheduler::last_error() const {
  std::lock_guard<std::mutex> lock(impl_->shared->mutex);
  return impl_->shared->last_error;
}

void ProbeScheduler::set_callback(Callback callback) {
  std::lock_guard<std::mutex> lock(impl_->shared->mutex);
  impl_->shared->callback = std::move(callback);
}

}  // namespace groupmates
