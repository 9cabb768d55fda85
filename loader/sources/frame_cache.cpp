// The bounded LRU of decompressed zstd frames (see frame_cache.h).
#include "sources/frame_cache.h"

#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "groupmates/error.h"

namespace groupmates {
namespace {

struct ThreadDctx {
  ZSTD_DCtx* ctx = ZSTD_createDCtx();
  ~ThreadDctx() { ZSTD_freeDCtx(ctx); }
};

// Frame `f` of `path`, decompressed.
FrameCache::Block decompress_frame(const std::string& path, const ZstdFrame& f) {
  thread_local ThreadDctx dctx;
  thread_local std::vector<char> compressed;
  const std::string where = path + ":" + std::to_string(f.compressed_offset);
  const std::string changed = "; the file changed since it was indexed: restart the job (its index is rebuilt)";
  if (dctx.ctx == nullptr) throw Error(ErrorCode::kInternal, where, "ZSTD_createDCtx failed (out of memory?)");
  compressed.resize(static_cast<size_t>(f.compressed_size));
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(ErrorCode::kIo, path, std::string("cannot open: ") + std::strerror(errno));
  uint64_t done = 0;
  while (done < f.compressed_size) {
    const ssize_t got = ::pread(fd, compressed.data() + done, static_cast<size_t>(f.compressed_size - done),
                                static_cast<off_t>(f.compressed_offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      const int e = errno;
      ::close(fd);
      throw Error(ErrorCode::kIo, where, got < 0 ? std::string("read failed: ") + std::strerror(e)
                                                 : "the file ends before this zstd frame" + changed);
    }
    done += static_cast<uint64_t>(got);
  }
  ::close(fd);
  auto out = std::make_shared<std::string>();
  out->resize(static_cast<size_t>(f.size));
  const size_t r = ZSTD_decompressDCtx(dctx.ctx, out->data(), out->size(), compressed.data(), compressed.size());
  if (ZSTD_isError(r) || r != f.size) {
    throw Error(ErrorCode::kCorruptData, where,
                std::string("zstd frame does not decompress to its indexed ") + std::to_string(f.size) + " bytes (" +
                    (ZSTD_isError(r) ? ZSTD_getErrorName(r) : std::to_string(r) + " bytes") + ")" + changed);
  }
  if (compressed.capacity() > (size_t{4} << 20)) std::vector<char>().swap(compressed);
  return out;
}

}  // namespace

FrameCache::FrameCache(uint64_t budget_bytes) : budget_(budget_bytes) {}

FrameCache::Block FrameCache::get(uint32_t file, const std::string& path, const LineIndex& index, size_t frame) {
  const uint64_t key = (uint64_t{file} << 40) | frame;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(key);
    if (it != map_.end()) {
      stats_.hits++;
      lru_.splice(lru_.begin(), lru_, it->second.lru);
      return it->second.block;
    }
    stats_.misses++;
  }
  Block block = decompress_frame(path, index.frames[frame]);
  std::lock_guard<std::mutex> lock(mu_);
  if (map_.count(key) != 0 || block->size() > budget_) return block;
  while (!lru_.empty() && stats_.bytes + block->size() > budget_) {
    auto victim = map_.find(lru_.back());
    stats_.bytes -= victim->second.block->size();
    map_.erase(victim);
    lru_.pop_back();
  }
  lru_.push_front(key);
  map_.emplace(key, Entry{block, lru_.begin()});
  stats_.bytes += block->size();
  stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.bytes);
  return block;
}

FrameCache::Stats FrameCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace groupmates
