// util/lazy_thread_pool.h: a boost::asio::thread_pool that starts its threads at the first post(),
// so a loader that is only constructed (files opened, config and state checked) starts no thread.
//
//   LazyThreadPool pool(4);
//   pool.post([] { ... });   // the first post starts the 4 threads
//   pool.stop_and_join();    // queued tasks are dropped, running ones finish (also in ~)
//
// After stop_and_join() a post() is dropped (its closure destroyed without running), as a post to
// a stopped boost pool is. Thread-safe.
#pragma once

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>

namespace groupmates {

class LazyThreadPool {
 public:
  explicit LazyThreadPool(uint32_t threads) : threads_(threads) {}
  ~LazyThreadPool() { stop_and_join(); }
  LazyThreadPool(const LazyThreadPool&) = delete;
  LazyThreadPool& operator=(const LazyThreadPool&) = delete;

  template <typename F>
  void post(F&& f) {
    boost::asio::thread_pool* pool = started_pool();
    if (pool != nullptr) boost::asio::post(*pool, std::forward<F>(f));
  }
  /// Stops the pool (if it ever started) and joins its threads; idempotent.
  void stop_and_join() {
    std::unique_ptr<boost::asio::thread_pool> pool;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopped_ = true;
      pool = std::move(pool_);
    }
    if (pool) {
      pool->stop();
      pool->join();
    }
  }
  /// True once the threads were started (by a post).
  bool started() const {
    std::lock_guard<std::mutex> lock(mu_);
    return pool_ != nullptr;
  }

 private:
  boost::asio::thread_pool* started_pool() {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return nullptr;
    if (!pool_) pool_ = std::make_unique<boost::asio::thread_pool>(threads_);
    return pool_.get();
  }

  const uint32_t threads_;
  mutable std::mutex mu_;
  std::unique_ptr<boost::asio::thread_pool> pool_;
  bool stopped_ = false;
};

}  // namespace groupmates
