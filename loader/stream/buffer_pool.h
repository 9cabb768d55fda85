// buffer_pool.h: recycled token buffers of one size; a buffer returns when its last user drops it.
#pragma once

#include <atomic>
#include <concurrentqueue.h>
#include <memory>

#include "groupmates/streaming_loader.h"

namespace groupmates {

class BufferPool : public std::enable_shared_from_this<BufferPool> {
 public:
  /// Buffers of `bytes`, allocated with `allocator` (plain aligned memory when empty).
  static std::shared_ptr<BufferPool> create(size_t bytes, BufferAllocator allocator);
  /// A free buffer, or a new one if none is free. Thread-safe, never blocks.
  std::shared_ptr<int64_t> acquire();
  /// Buffers allocated so far.
  uint64_t allocated() const { return allocated_.load(); }

 private:
  BufferPool(size_t bytes, BufferAllocator allocator) : bytes_(bytes), allocator_(std::move(allocator)) {}
  struct Block {
    std::shared_ptr<void> owner;
    int64_t* data = nullptr;
  };
  size_t bytes_;
  BufferAllocator allocator_;
  moodycamel::ConcurrentQueue<Block> free_;
  std::atomic<uint64_t> allocated_{0};
};

}  // namespace groupmates
