#include "sources/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <utility>

#include <xxhash.h>

#include "groupmates/error.h"
#include "sources/sigbus_guard.h"

namespace groupmates {
namespace {

std::string errno_text(int err) {
  return std::string(std::strerror(err)) + " (errno " + std::to_string(err) + ")";
}

int advice_flag(MappedFile::Advice advice) {
  switch (advice) {
    case MappedFile::Advice::kNormal: return MADV_NORMAL;
    case MappedFile::Advice::kRandom: return MADV_RANDOM;
    case MappedFile::Advice::kSequential: return MADV_SEQUENTIAL;
    case MappedFile::Advice::kWillNeed: return MADV_WILLNEED;
  }
  return MADV_NORMAL;
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

MappedFile::MappedFile(const std::string& path, Advice advice) : path_(path) {
  Fd fd;
  do {
    fd.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd.fd < 0 && errno == EINTR);
  if (fd.fd < 0) {
    const int err = errno;
    std::string hint;
    if (err == ENOENT) hint = "; check the path (relative paths are resolved from the working directory)";
    if (err == EACCES) hint = "; check the file permissions";
    throw Error(ErrorCode::kIo, path, "cannot open for reading: " + errno_text(err) + hint);
  }
  struct stat st;
  if (::fstat(fd.fd, &st) != 0) {
    throw Error(ErrorCode::kIo, path, "cannot stat: " + errno_text(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    throw Error(ErrorCode::kIo, path,
                S_ISDIR(st.st_mode) ? "is a directory, expected a data file" : "is not a regular file");
  }
  size_ = static_cast<uint64_t>(st.st_size);
  if (size_ == 0) return;
  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd.fd, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    size_ = 0;
    throw Error(ErrorCode::kIo, path,
                "cannot mmap " + std::to_string(st.st_size) + " bytes: " + errno_text(err));
  }
  data_ = static_cast<const char*>(p);
  slot_ = sigbus_guard_register(data_, size_, path_);
  if (advice != Advice::kNormal) this->advise(advice);
}

MappedFile::~MappedFile() { release(); }

void MappedFile::release() noexcept {
  sigbus_guard_unregister(slot_);
  slot_ = -1;
  if (data_ != nullptr) ::munmap(const_cast<char*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : slot_(other.slot_), path_(std::move(other.path_)), data_(other.data_), size_(other.size_) {
  other.slot_ = -1;
  other.data_ = nullptr;
  other.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    release();
    slot_ = other.slot_;
    other.slot_ = -1;
    path_ = std::move(other.path_);
    data_ = other.data_;
    size_ = other.size_;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

void MappedFile::advise(Advice advice, uint64_t offset, uint64_t length) const {
  if (data_ == nullptr || offset >= size_) return;
  if (length > size_ - offset) length = size_ - offset;
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t begin = offset / page * page;  // the map itself is page-aligned
  const uint64_t end = offset + length;
  (void)::madvise(const_cast<char*>(data_) + begin, end - begin, advice_flag(advice));
}

uint64_t sampled_content_hash(const char* data, uint64_t size) {
  constexpr uint64_t kBlock = 4096, kSamples = 17;
  XXH3_state_t* st = XXH3_createState();
  if (st == nullptr) throw std::bad_alloc();
  XXH3_64bits_reset(st);
  XXH3_64bits_update(st, &size, sizeof(size));
  if (size <= kBlock * kSamples) {
    if (size > 0) XXH3_64bits_update(st, data, size);
  } else {
    for (uint64_t k = 0; k < kSamples; ++k) {
      const uint64_t at = (size - kBlock) / (kSamples - 1) * k;  // k = 16: the last block
      const uint64_t begin = k + 1 == kSamples ? size - kBlock : at;
      XXH3_64bits_update(st, data + begin, kBlock);
    }
  }
  const uint64_t h = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return h;
}

uint64_t MappedFile::sampled_hash() const { return sampled_content_hash(data_, size_); }

void throw_if_mapping_faulted() {
  if (sigbus_guard_faults() == 0) return;
  std::string path;
  uint64_t offset = 0;
  if (!sigbus_guard_first_fault(&path, &offset)) return;  // the faulted map is gone with its data
  throw Error(ErrorCode::kIo, path + ":" + std::to_string(offset),
              "the file shrank while the loader had it mapped (reading the page at this byte offset raised "
              "SIGBUS: it was truncated or rewritten in place); data files must not change during a run: "
              "restore the file and resume from the last checkpoint");
}

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace groupmates
