// util::BackgroundWorker: order, drain and cancel on shutdown, failures reported, shutdown from a
// task of its own, no lost wake-ups.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <stdexcept>
#include <thread>
#include <vector>

#include "groupmates/error.h"
#include "loader/reader_test_util.h"
#include "util/background_worker.h"

namespace groupmates {
namespace util {
namespace {

using namespace std::chrono_literals;

TEST(BackgroundWorker, RunsTasksInScheduleOrderOnOneThread) {
  BackgroundWorker worker("order");
  std::vector<int> seen;  // touched by the worker thread only, read after wait_idle()
  std::vector<std::thread::id> threads;
  for (int i = 0; i < 2000; ++i)
    worker.schedule([&seen, &threads, i] {
      seen.push_back(i);
      threads.push_back(std::this_thread::get_id());
    });
  worker.wait_idle();
  ASSERT_EQ(seen.size(), 2000u);
  for (int i = 0; i < 2000; ++i) ASSERT_EQ(seen[i], i);
  for (const auto& id : threads) ASSERT_EQ(id, threads.front());
  EXPECT_NE(threads.front(), std::this_thread::get_id());
  EXPECT_EQ(worker.pending(), 0u);
  EXPECT_FALSE(worker.on_worker_thread());
  EXPECT_TRUE(worker.submit([&worker] { return worker.on_worker_thread(); }).get());
}

TEST(BackgroundWorker, SubmitReturnsResultsInOrder) {
  BackgroundWorker worker("submit");
  std::vector<std::future<int>> results;
  int counter = 0;  // incremented by the tasks, on the worker thread, one at a time
  for (int i = 0; i < 100; ++i) results.push_back(worker.submit([&counter] { return counter++; }));
  for (int i = 0; i < 100; ++i) EXPECT_EQ(results[i].get(), i);
}

TEST(BackgroundWorker, DrainingShutdownRunsEveryQueuedTask) {
  std::atomic<int> ran{0};
  std::future<int> last;
  {
    BackgroundWorker worker("drain");
    worker.schedule([] { std::this_thread::sleep_for(50ms); });  // the rest queue up behind it
    for (int i = 0; i < 500; ++i) worker.schedule([&ran] { ++ran; });
    last = worker.submit([&ran] { return ran.load(); });
    EXPECT_GT(worker.pending(), 400u);
  }  // the destructor drains
  EXPECT_EQ(ran.load(), 500);
  EXPECT_EQ(last.get(), 500);
}

TEST(BackgroundWorker, CancellingShutdownDropsQueuedTasksAndBreaksTheirFutures) {
  BackgroundWorker worker("cancel");
  std::promise<void> started, gate;
  std::shared_future<void> open = gate.get_future().share();
  worker.schedule([&started, open] {
    started.set_value();
    open.wait();
  });
  std::atomic<int> ran{0};
  for (int i = 0; i < 100; ++i) worker.schedule([&ran] { ++ran; });
  std::future<int> dropped = worker.submit([] { return 1; });
  started.get_future().wait();
  std::future<void> stopping = std::async(std::launch::async, [&worker] { worker.shutdown(BackgroundWorker::Shutdown::kCancel); });
  // The queue is emptied before the join: only the running task is left.
  for (int i = 0; i < 1000 && worker.pending() != 1; ++i) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(worker.pending(), 1u);
  EXPECT_EQ(stopping.wait_for(20ms), std::future_status::timeout);  // joins after the running task
  gate.set_value();
  ASSERT_EQ(stopping.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(ran.load(), 0);
  try {
    dropped.get();
    FAIL() << "a dropped task's future must not hold a value";
  } catch (const std::future_error& e) {
    EXPECT_EQ(e.code(), std::future_errc::broken_promise);
  }
  EXPECT_THROW(worker.schedule([] {}), Error);
  worker.shutdown();  // idempotent
}

TEST(BackgroundWorker, FailuresAreReportedAndTheWorkerGoesOn) {
  std::vector<std::string> handled;  // by the handler, on the worker thread
  BackgroundWorker worker("failures", [&handled](std::exception_ptr e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::runtime_error& r) {
      handled.push_back(r.what());
    } catch (...) {
      handled.push_back("?");
    }
  });
  worker.schedule([] { throw std::runtime_error("first failure"); });
  worker.schedule([] { throw 7; });
  std::future<int> thrown = worker.submit([]() -> int { throw std::out_of_range("from submit"); });
  std::future<int> after = worker.submit([] { return 3; });
  EXPECT_THROW(thrown.get(), std::out_of_range);  // submit(): the exception reaches the future
  EXPECT_EQ(after.get(), 3);                      // the worker keeps running after a failure
  worker.wait_idle();
  EXPECT_EQ(worker.errors(), 2u);  // schedule(): counted and handed to the handler
  EXPECT_EQ(worker.last_error(), "unknown exception");
  ASSERT_EQ(handled.size(), 2u);
  EXPECT_EQ(handled[0], "first failure");
  EXPECT_EQ(handled[1], "?");
}

TEST(BackgroundWorker, ShutdownFromItsOwnTaskDoesNotHang) {
  auto worker = std::make_unique<BackgroundWorker>("self");
  std::promise<void> done;
  worker->schedule([&] {
    worker.reset();  // the last owner goes on the worker thread: no self-join
    done.set_value();
  });
  ASSERT_EQ(done.get_future().wait_for(10s), std::future_status::ready);
  EXPECT_EQ(worker, nullptr);
  // An explicit shutdown from a task: the thread is not joined by itself, later tasks are refused.
  BackgroundWorker w2("self-shutdown");
  w2.schedule([&w2] { w2.shutdown(); });
  w2.wait_idle();
  EXPECT_THROW(w2.schedule([] {}), Error);
}

TEST(BackgroundWorker, ManyShortLivedWorkersNeverHang) {
  // Construction right before destruction, with and without work: a lost wake-up would hang here.
  rdtest::within_deadline(60, "300 short-lived workers", [] {
    for (int i = 0; i < 300; ++i) {
      BackgroundWorker w("short");
      if (i % 3 == 1) w.schedule([] {});
      if (i % 6 == 1) w.wait_idle();  // the worker is certainly waiting now: shutdown must wake it (a lost wake-up hangs)
      if (i % 3 == 2) w.shutdown(BackgroundWorker::Shutdown::kCancel);
    }
  });
}

}  // namespace
}  // namespace util
}  // namespace groupmates
