// util::release_free_heap and HeapReleaser: free pages inside the heap leave RSS; releases at most once
// per interval, never with interval 0.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "util/heap_release.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define GM_HEAP_TEST_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define GM_HEAP_TEST_SANITIZED 1
#endif

namespace groupmates {
namespace util {
namespace heap_release_test {

long long resident_bytes() {
  long long pages = 0, resident = 0;
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return -1;
  const int got = std::fscanf(f, "%lld %lld", &pages, &resident);
  std::fclose(f);
  return got == 2 ? resident * sysconf(_SC_PAGESIZE) : -1;
}

TEST(HeapReleaser, ReleasesAtMostOncePerIntervalAndNeverWithZero) {
  if (!release_free_heap()) GTEST_SKIP() << "not glibc: nothing to release";
  HeapReleaser every10(10.0);
  EXPECT_TRUE(every10.maybe_release(100.0));  // the first call releases
  EXPECT_FALSE(every10.maybe_release(105.0));
  EXPECT_FALSE(every10.maybe_release(109.99));
  EXPECT_TRUE(every10.maybe_release(110.0));
  EXPECT_FALSE(every10.maybe_release(119.0));  // counted from the last release, not the last call
  EXPECT_TRUE(every10.maybe_release(120.5));
  EXPECT_EQ(every10.releases(), 3u);
  EXPECT_GE(every10.seconds(), 0.0);
  HeapReleaser never(0.0);
  for (double t : {0.0, 1.0, 1e6}) EXPECT_FALSE(never.maybe_release(t));
  EXPECT_EQ(never.releases(), 0u);
  EXPECT_EQ(never.seconds(), 0.0);
}

// Holes in the heap: every other one of 512 blocks of 96 KiB (below glibc's mmap threshold, so inside the heap,
// between blocks still in use: free() cannot shrink the heap past them) freed after being written. They stay
// resident until released.
TEST(ReleaseFreeHeap, HandsFreedHolesInTheHeapBackToTheOs) {
#if defined(GM_HEAP_TEST_SANITIZED)
  GTEST_SKIP() << "the sanitizer's allocator replaces malloc: malloc_trim does not see its memory";
#else
  if (!release_free_heap()) GTEST_SKIP() << "not glibc: nothing to release";
  constexpr size_t kBlock = 96 << 10, kBlocks = 512;
  std::vector<void*> blocks;
  for (size_t i = 0; i < kBlocks; ++i) {
    void* p = std::malloc(kBlock);
    ASSERT_NE(p, nullptr);
    std::memset(p, int(i & 0xff) | 1, kBlock);  // resident
    blocks.push_back(p);
  }
  for (size_t i = 0; i < kBlocks; i += 2) std::free(blocks[i]);
  const long long freed = (kBlocks / 2) * kBlock;  // 24 MiB
  const long long before = resident_bytes();
  ASSERT_GT(before, 0);
  ASSERT_TRUE(release_free_heap());
  const long long after = resident_bytes();
  std::printf("RSS %.1f -> %.1f MiB after releasing %.1f MiB of holes\n", before / 1048576.0, after / 1048576.0,
              freed / 1048576.0);
  EXPECT_GT(before - after, freed / 2) << "the freed holes stayed resident";
  for (size_t i = 1; i < kBlocks; i += 2) {  // the blocks in use kept their bytes
    const unsigned char* p = static_cast<const unsigned char*>(blocks[i]);
    EXPECT_EQ(p[0], (i & 0xff) | 1);
    EXPECT_EQ(p[kBlock - 1], (i & 0xff) | 1);
    std::free(blocks[i]);
  }
#endif
}

}  // namespace heap_release_test
}  // namespace util
}  // namespace groupmates
