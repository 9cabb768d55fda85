// util::release_free_heap and HeapReleaser: the pages of freed holes inside the heap stop being resident; releases at most once
// per interval, never with interval 0.
#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
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

// Resident pages of [p, p + n) rounded inward to whole pages (mincore).
size_t resident_pages(const void* p, size_t n) {
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (uintptr_t(p) + page - 1) & ~(page - 1), end = (uintptr_t(p) + n) & ~(page - 1);
  if (end <= begin) return 0;
  std::vector<unsigned char> in((end - begin) / page);
  if (mincore(reinterpret_cast<void*>(begin), end - begin, in.data()) != 0) {
    ADD_FAILURE() << "mincore failed: " << std::strerror(errno);
    return 0;
  }
  size_t resident = 0;
  for (unsigned char c : in) resident += c & 1;
  return resident;
}

// Holes in the heap: every other one of 256 blocks of 96 KiB (below glibc's mmap threshold, so inside the heap,
// between blocks still in use: free() cannot shrink the heap past them), written, then freed. Their pages (but
// the first and last of each, where glibc keeps its chunk headers) stay resident until released; the blocks in
// use keep theirs and their bytes.
TEST(ReleaseFreeHeap, HandsFreedHolesInTheHeapBackToTheOs) {
#if defined(GM_HEAP_TEST_SANITIZED)
  GTEST_SKIP() << "the sanitizer's allocator replaces malloc: malloc_trim does not see its memory";
#else
  if (!release_free_heap()) GTEST_SKIP() << "not glibc: nothing to release";
  constexpr size_t kBlock = 96 << 10, kBlocks = 256;
  std::vector<void*> blocks;
  for (size_t i = 0; i < kBlocks; ++i) {
    void* p = std::malloc(kBlock);
    ASSERT_NE(p, nullptr);
    std::memset(p, int(i & 0xff) | 1, kBlock);  // resident
    blocks.push_back(p);
  }
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  if (page > (16 << 10)) GTEST_SKIP() << "pages of " << page << " bytes: a 96 KiB hole holds too few of them";
  const auto hole_pages = [&] {  // resident pages inside the freed holes, less a page at each end
    size_t n = 0;
    for (size_t i = 0; i < kBlocks; i += 2) n += resident_pages(static_cast<char*>(blocks[i]) + page, kBlock - 2 * page);
    return n;
  };
  const size_t in_hole = hole_pages();
  for (size_t i = 0; i < kBlocks; i += 2) std::free(blocks[i]);
  const size_t freed = hole_pages();
  const size_t used_before = [&] {
    size_t n = 0;
    for (size_t i = 1; i < kBlocks; i += 2) n += resident_pages(blocks[i], kBlock);
    return n;
  }();
  ASSERT_TRUE(release_free_heap());
  const size_t released = hole_pages();
  size_t used_after = 0;
  for (size_t i = 1; i < kBlocks; i += 2) used_after += resident_pages(blocks[i], kBlock);
  std::printf("resident pages inside the holes: %zu written, %zu freed, %zu released; in the blocks in use %zu -> %zu\n",
              in_hole, freed, released, used_before, used_after);
  ASSERT_GE(in_hole, (kBlocks / 2) * (kBlock / page - 3)) << "the holes were not resident to begin with";
  EXPECT_GT(freed, in_hole * 9 / 10) << "free() alone handed them back: nothing left to test";
  EXPECT_LT(released, in_hole / 10) << "the freed holes stayed resident";
  EXPECT_EQ(used_after, used_before) << "pages of blocks in use were handed back";
  for (size_t i = 1; i < kBlocks; i += 2) {  // the blocks in use kept their bytes
    const unsigned char* p = static_cast<const unsigned char*>(blocks[i]);
    EXPECT_EQ(p[0], (i & 0xff) | 1);
    EXPECT_EQ(p[kBlock / 2], (i & 0xff) | 1);
    EXPECT_EQ(p[kBlock - 1], (i & 0xff) | 1);
    std::free(blocks[i]);
  }
#endif
}

}  // namespace heap_release_test
}  // namespace util
}  // namespace groupmates

#undef GM_HEAP_TEST_SANITIZED
