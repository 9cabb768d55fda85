// mapped_file.h: a read-only memory map of one file (RAII).
//
// PROT_READ / MAP_PRIVATE; the descriptor is closed right after mapping. An empty file is valid
// (data() == nullptr, size() == 0): callers decide whether empty is an error for their format.
// Errors are groupmates::Error(kIo) naming the path and the errno text.
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

 private:
  void release() noexcept;
  std::string path_;
  const char* data_ = nullptr;
  uint64_t size_ = 0;
};

/// True if `path` exists (any file type).
bool file_exists(const std::string& path);

}  // namespace groupmates
