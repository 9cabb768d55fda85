#include "stream/buffer_pool.h"

#include <cstdlib>
#include <new>

namespace groupmates {

std::shared_ptr<BufferPool> BufferPool::create(size_t bytes, BufferAllocator allocator) {
  return std::shared_ptr<BufferPool>(new BufferPool(bytes, std::move(allocator)));
}

std::shared_ptr<int64_t> BufferPool::acquire() {
  Block block;
  if (!free_.try_dequeue(block)) {
    void* data = nullptr;
    if (allocator_) {
      block.owner = allocator_(bytes_, &data);
    } else {
      data = std::aligned_alloc(64, (bytes_ + 63) / 64 * 64);
      if (data == nullptr) throw std::bad_alloc();
      block.owner = std::shared_ptr<void>(data, [](void* p) { std::free(p); });
    }
    block.data = static_cast<int64_t*>(data);
    allocated_.fetch_add(1);
  }
  // The buffer goes back to the pool if the pool still exists, else its owner frees it.
  std::weak_ptr<BufferPool> weak = shared_from_this();
  int64_t* data = block.data;
  return std::shared_ptr<int64_t>(data, [weak, block](int64_t*) mutable {
    if (auto pool = weak.lock()) pool->free_.enqueue(std::move(block));
  });
}

}  // namespace groupmates
