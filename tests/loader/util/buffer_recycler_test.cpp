// BufferRecycler: buffers come back after their last owner lets go, within max_free and max_bytes,
// also after the recycler is gone and under concurrent takers.
#include "util/buffer_recycler.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace groupmates {
namespace {

TEST(BufferRecycler, ReusesReleasedBuffersWithTheirCapacity) {
  BufferRecycler<std::vector<uint32_t>> r(2, 1024);
  auto a = r.take();
  a->assign(100, 7);
  const auto* raw = a.get();
  EXPECT_EQ(r.free_buffers(), 0u);
  auto copy = a;  // a second owner: nothing given back until both let go
  a.reset();
  EXPECT_EQ(r.free_buffers(), 0u);
  copy.reset();
  EXPECT_EQ(r.free_buffers(), 1u);
  auto b = r.take();
  EXPECT_EQ(b.get(), raw);
  EXPECT_EQ(b->size(), 100u);  // contents kept: the taker resets them
  EXPECT_GE(b->capacity(), 100u);
  EXPECT_EQ(r.free_buffers(), 0u);
}

TEST(BufferRecycler, KeepsAtMostMaxFreeBuffersOfAtMostMaxBytes) {
  BufferRecycler<std::string> r(2, 1000);
  {
    std::vector<std::shared_ptr<std::string>> held;
    for (int i = 0; i < 5; ++i) held.push_back(r.take());
    held[0]->resize(2000);  // over max_bytes: freed, not kept
  }
  EXPECT_EQ(r.free_buffers(), 2u);
  auto big = r.take();
  big->resize(5000);
  big.reset();
  EXPECT_EQ(r.free_buffers(), 1u);  // the taken one was too large to keep
}

TEST(BufferRecycler, BuffersOutliveTheRecyclerAndThreadsShareIt) {
  std::shared_ptr<std::vector<int>> survivor;
  {
    BufferRecycler<std::vector<int>> r(8, 1 << 20);
    survivor = r.take();
    std::atomic<int> wrong{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t) {
      ts.emplace_back([&, t] {
        for (int k = 0; k < 2000; ++k) {
          auto v = r.take();
          v->assign(16, t);
          for (int x : *v) wrong += x != t;  // nobody else writes a buffer while it is held
        }
      });
    }
    for (auto& th : ts) th.join();
    EXPECT_EQ(wrong.load(), 0);
    EXPECT_LE(r.free_buffers(), 8u);
    EXPECT_GE(r.free_buffers(), 1u);
  }
  survivor->push_back(1);  // still valid; its release after the recycler is gone must not crash
  survivor.reset();
}

}  // namespace
}  // namespace groupmates
