// mapped_file.h: a read-only memory map of one file (RAII).
//
// PROT_READ / MAP_PRIVATE; the descriptor is closed right after mapping. An empty file is valid
// (data() == nullptr, size() == 0): callers decide whether empty is an error for their format.
// Errors are groupmates::Error(kIo) naming the path and the errno text.
//
// A file truncated while it is mapped: reading a page past its new end raises SIGBUS, which
// would kill the process. Every map is registered with a process-wide SIGBUS handler (installed
// at the first map, chaining to any previous handler for faults outside our maps): a fault inside
// a map puts a page of zeros over the faulting page, marks the map as faulted and lets the read
// go on; throw_if_mapping_faulted() then turns the mark into Error(kIo) naming the file, and the
// loader calls it after copying each batch, so zeros are never emitted. (Why not pread: windows
// and documents are zero-copy views into the maps; the handler costs nothing on the hot path.)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace groupmates {

class MappedFile {
 public:
  /// Access pattern hint passed to madvise() for the whole map.
  enum class Advice { kNormal, kRandom, kSequential, kWillNeed };

  /// Maps `path`. Throws Error(kIo) if it is missing, not a regular file, unreadable or cannot be
  /// mapped.
  explicit MappedFile(const std::string& path, Advice advice = Advice::kNormal);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;

  const char* data() const { return data_; }
  uint64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const std::string& path() const { return path_; }

  /// madvise() hint for the byte range [offset, offset + length) (clamped; page-aligned inside).
  /// Best effort: failures are ignored.
  void advise(Advice advice, uint64_t offset = 0, uint64_t length = UINT64_MAX) const;

  /// XXH3 of the size and of 4 KiB blocks sampled at 17 evenly spaced offsets (first and last
  /// included): detects a file replaced by another of the same size at the cost of <= 17 page reads.
  uint64_t sampled_hash() const;

 private:
  void release() noexcept;
  int slot_ = -1;  // index in the SIGBUS registry, -1 if not registered
  std::string path_;
  const char* data_ = nullptr;
  uint64_t size_ = 0;
};

/// Throws Error(kIo) naming the file if a read of any live map hit a page past its file's end
/// (SIGBUS: the file was truncated or rewritten while mapped). Cheap when nothing faulted.
void throw_if_mapping_faulted();

/// XXH3 of `size` bytes sampled as MappedFile::sampled_hash() does.
uint64_t sampled_content_hash(const char* data, uint64_t size);

/// True if `path` exists (any file type).
bool file_exists(const std::string& path);

}  // namespace groupmates
