// util/buffer_recycler.h: a bounded free list of heap buffers (std::string, std::vector<T>) handed
// out as shared_ptr whose deleter gives the buffer back, so a reader that needs one buffer per item
// allocates a few once instead of one per item (JsonlSource: each document's token ids).
//
//   BufferRecycler<std::vector<uint32_t>> tokens(/*max_free=*/64, /*max_bytes=*/16 << 10);
//   std::shared_ptr<std::vector<uint32_t>> v = tokens.take();  // previous contents: clear() it
//   ...                                                         // the last owner's release gives it back
//
// Why (bench-jsonl's profile): glibc runs malloc_consolidate over the calling thread's arena at
// every malloc of 1 KiB or more while its fast bins hold chunks; a tokenizer frees hundreds of small
// chunks per document, so one such allocation per document (its token ids) costs a pass over all of
// them. A buffer is kept only while fewer than `max_free` are kept and its capacity is at most
// `max_bytes`: the free list holds at most max_free x max_bytes, and a buffer handed out holds at most
// max_bytes more than a fresh one would (keep max_bytes near the common item's size: a reused buffer
// keeps its capacity whatever the next item needs). Buffers may outlive the recycler
// (the shared state lives as long as any of them). Thread-safe.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

namespace groupmates {

template <typename Buffer>
class BufferRecycler {
 public:
  BufferRecycler(size_t max_free, size_t max_bytes) : state_(std::make_shared<State>(max_free, max_bytes)) {}

  /// A buffer from the free list (its old contents kept: reset it), or a new empty one.
  std::shared_ptr<Buffer> take() {
    Buffer* b = nullptr;
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      if (!state_->free.empty()) {
        b = state_->free.back().release();
        state_->free.pop_back();
      }
    }
    if (b == nullptr) b = new Buffer();
    return std::shared_ptr<Buffer>(b, [state = state_](Buffer* p) { state->give(p); });
  }
  /// Buffers in the free list now.
  size_t free_buffers() const {
    std::lock_guard<std::mutex> lock(state_->mu);
    return state_->free.size();
  }

 private:
  struct State {
    State(size_t f, size_t b) : max_free(f), max_bytes(b) { free.reserve(f); }
    void give(Buffer* p) {
      std::unique_ptr<Buffer> owned(p);
      if (owned->capacity() * sizeof(typename Buffer::value_type) > max_bytes) return;
      std::lock_guard<std::mutex> lock(mu);
      if (free.size() < max_free) free.push_back(std::move(owned));
    }
    const size_t max_free, max_bytes;
    std::mutex mu;
    std::vector<std::unique_ptr<Buffer>> free;
  };
  std::shared_ptr<State> state_;
};

}  // namespace groupmates
