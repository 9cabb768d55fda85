// util/background_worker.h: one thread that runs scheduled closures in order (in the manner of
// tf.data's BackgroundWorker), with a shutdown that never deadlocks and failures that are reported.
//
//   BackgroundWorker worker("window scorer");
//   worker.schedule([] { ... });                       // fire and forget: a throw is counted
//   std::future<int> f = worker.submit([] { return 42; });  // a throw reaches f.get()
//   worker.shutdown();                                 // runs what is queued, then joins (or ~)
//
// Tasks run one at a time, in the order they were scheduled, on the worker's own thread. A task
// that throws does not stop the worker: the exception is counted (errors(), last_error()), handed
// to the error handler if one was given, and for submit() stored in the returned future.
//
// shutdown(kDrain) (and the destructor) lets every queued task run, then joins; shutdown(kCancel)
// drops the queued tasks (their futures get std::future_error broken_promise) and joins after the
// running one. Called from a task on the worker's own thread (say the last owner is released
// there), shutdown does not join itself: the thread finishes on its own, with its own reference to
// the shared state, so the owner's memory may go at once.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

namespace groupmates {
namespace util {

class BackgroundWorker {
 public:
  enum class Shutdown { kDrain, kCancel };
  /// Called on the worker thread with the exception of each task that threw (after it is counted).
  using ErrorHandler = std::function<void(std::exception_ptr)>;

  explicit BackgroundWorker(std::string name = "background worker", ErrorHandler on_error = {});
  ~BackgroundWorker();  ///< shutdown(kDrain)
  BackgroundWorker(const BackgroundWorker&) = delete;
  BackgroundWorker& operator=(const BackgroundWorker&) = delete;

  /// Queues `task`. Throws Error(kInvalidState) once shutdown has begun.
  void schedule(std::function<void()> task);

  /// Queues `f` and returns the future of its result (or of its exception).
  template <typename F>
  auto submit(F&& f) -> std::future<std::invoke_result_t<std::decay_t<F>&>> {
    using R = std::invoke_result_t<std::decay_t<F>&>;
    auto task = std::make_shared<std::packaged_task<R()>>(std::forward<F>(f));
    std::future<R> result = task->get_future();
    // A packaged_task keeps the exception in its future: the worker sees a task that returned.
    schedule([task] { (*task)(); });
    return result;
  }

  /// Stops taking tasks; kDrain runs the queued ones first, kCancel drops them. Joins the thread
  /// unless called on it. Idempotent; the first call's mode holds.
  void shutdown(Shutdown mode = Shutdown::kDrain);

  /// Blocks until no task is queued or running (immediately when called on the worker thread).
  void wait_idle() const;

  bool on_worker_thread() const;
  /// Tasks queued or running.
  size_t pending() const;
  /// Tasks that threw (submit()'s tasks pass their exceptions to their futures and are not counted).
  uint64_t errors() const;
  /// what() of the last task that threw ("unknown exception" if not a std::exception), empty if none.
  std::string last_error() const;
  const std::string& name() const { return name_; }

 private:
  struct State;
  std::string name_;
  std::shared_ptr<State> state_;
  std::thread thread_;
};

}  // namespace util
}  // namespace groupmates
