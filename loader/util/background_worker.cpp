// BackgroundWorker: one thread, a FIFO of closures, shutdown by drain or cancel.
#include "util/background_worker.h"

#include <condition_variable>
#include <deque>
#include <mutex>

#include "groupmates/error.h"

namespace groupmates {
namespace util {

struct BackgroundWorker::State {
  mutable std::mutex mutex;
  mutable std::condition_variable cv;  // queue changed, a task finished, or shutdown began
  std::deque<std::function<void()>> queue;
  bool running = false;   // a task is executing
  bool stopping = false;  // shutdown began: no new task is taken
  std::thread::id worker_id;
  uint64_t errors = 0;
  std::string last_error;
  ErrorHandler on_error;

  void loop() {
    std::unique_lock<std::mutex> lock(mutex);
    for (;;) {
      cv.wait(lock, [this] { return stopping || !queue.empty(); });
      if (queue.empty()) return;  // stopping, and nothing left to run
      std::function<void()> task = std::move(queue.front());
      queue.pop_front();
      running = true;
      lock.unlock();
      std::exception_ptr failure;
      try {
        task();
      } catch (...) {
        failure = std::current_exception();
      }
      task = nullptr;  // the closure's captures are released on this thread, before idle is signalled
      if (failure) report(failure);
      lock.lock();
      running = false;
      cv.notify_all();
    }
  }

  void report(const std::exception_ptr& failure) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    ErrorHandler handler;
    {
      std::lock_guard<std::mutex> lock(mutex);
      ++errors;
      last_error = what;
      handler = on_error;
    }
    if (handler) {
      try {
        handler(failure);
      } catch (...) {  // a throwing handler must not end the worker
      }
    }
  }
};

BackgroundWorker::BackgroundWorker(std::string name, ErrorHandler on_error)
    : name_(std::move(name)), state_(std::make_shared<State>()) {
  state_->on_error = std::move(on_error);
  // The thread holds its own reference: shutdown() from a task may free the worker object.
  std::shared_ptr<State> state = state_;
  thread_ = std::thread([state] { state->loop(); });
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->worker_id = thread_.get_id();
}

BackgroundWorker::~BackgroundWorker() { shutdown(Shutdown::kDrain); }

void BackgroundWorker::schedule(std::function<void()> task) {
  if (!task) throw Error(ErrorCode::kInvalidConfig, name_, "scheduled an empty task");
  // Once queued, the task may release the last owner of this object before this call returns:
  // from there on only the shared state (kept alive by this reference) is touched.
  const std::shared_ptr<State> state = state_;
  {
    std::lock_guard<std::mutex> lock(state->mutex);
    if (state->stopping) throw Error(ErrorCode::kInvalidState, name_, "scheduled after shutdown");
    state->queue.push_back(std::move(task));
  }
  state->cv.notify_all();
}

void BackgroundWorker::shutdown(Shutdown mode) {
  std::deque<std::function<void()>> dropped;
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    if (!state_->stopping) {
      state_->stopping = true;
      if (mode == Shutdown::kCancel) dropped.swap(state_->queue);
    }
  }
  state_->cv.notify_all();
  dropped.clear();  // outside the lock: a dropped packaged_task completes its future here
  if (!thread_.joinable()) return;
  if (on_worker_thread()) {
    thread_.detach();  // it ends after this task, holding its own reference to the state
  } else {
    thread_.join();
  }
}

void BackgroundWorker::wait_idle() const {
  if (on_worker_thread()) return;
  std::unique_lock<std::mutex> lock(state_->mutex);
  state_->cv.wait(lock, [this] { return state_->queue.empty() && !state_->running; });
}

bool BackgroundWorker::on_worker_thread() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return std::this_thread::get_id() == state_->worker_id;
}

size_t BackgroundWorker::pending() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->queue.size() + (state_->running ? 1 : 0);
}

uint64_t BackgroundWorker::errors() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->errors;
}

std::string BackgroundWorker::last_error() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->last_error;
}

}  // namespace util
}  // namespace groupmates
