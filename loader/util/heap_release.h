// util/heap_release.h: hands the memory allocator's free pages back to the OS, at most once per interval.
//
// Why: a refresh of the influence model allocates and frees model-sized tensors (optimiser state,
// gradients, exported weights). Once one such block was freed, glibc's dynamic mmap threshold rises and
// the next ones come from its heaps, which keep what is freed for reuse; interleaved with longer-lived
// blocks a heap cannot shrink, so the free part grows with fragmentation and, resident, RSS grows over
// a long run although the memory in use stays flat (bench/soak.py samples both). malloc_trim(0) hands back the
// whole pages inside every arena's free chunks and the main arena's top (a thread arena's top glibc
// shrinks itself on free, above its trim threshold); they stay mapped and are faulted in again, zeroed,
// when reused. Not glibc: release_free_heap() does nothing and says so. Under ASan or TSan, whose
// allocators replace malloc but not malloc_trim, it trims glibc's own, nearly unused, heap.
#pragma once

namespace groupmates {
namespace util {

/// Returns the allocator's free pages to the OS now; false where that is not supported (not glibc).
bool release_free_heap();

/// Calls release_free_heap() when at least `interval_seconds` passed since its last release (0: never).
/// Not thread-safe: one owner calls it (the thread that refreshed, after the refresh).
class HeapReleaser {
 public:
  /// `interval_seconds` >= 0; 0 disables it.
  explicit HeapReleaser(double interval_seconds) : interval_(interval_seconds) {}
  /// Releases if due at `now_seconds` (monotonic_seconds()); returns whether it released.
  bool maybe_release(double now_seconds);
  /// Releases done so far (calls of malloc_trim, whether or not it found pages to hand back).
  unsigned long long releases() const { return releases_; }
  /// Seconds spent releasing so far.
  double seconds() const { return seconds_; }

 private:
  double interval_;
  bool released_before_ = false;
  double last_ = 0;
  unsigned long long releases_ = 0;
  double seconds_ = 0;
};

}  // namespace util
}  // namespace groupmates
