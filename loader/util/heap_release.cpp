#include "util/heap_release.h"

#include <cstdlib>  // defines __GLIBC__ on glibc
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "util/stopwatch.h"

namespace groupmates {
namespace util {

bool release_free_heap() {
#if defined(__GLIBC__)
  malloc_trim(0);
  return true;
#else
  return false;
#endif
}

bool HeapReleaser::maybe_release(double now_seconds) {
  if (!(interval_ > 0)) return false;
  if (released_before_ && now_seconds - last_ < interval_) return false;
  const Stopwatch took;
  if (!release_free_heap()) return false;
  seconds_ += took.seconds();
  released_before_ = true;
  last_ = now_seconds;
  ++releases_;
  return true;
}

}  // namespace util
}  // namespace groupmates
