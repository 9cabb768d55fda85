// Line indexes cached on disk, keyed by content fingerprint, written atomically (see
// line_index_cache.h).
#include "sources/line_index_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "groupmates/error.h"

namespace groupmates {
namespace {

constexpr char kMagic[8] = {'G', 'M', 'L', 'I', 'D', 'X', '\n', '\0'};
constexpr uint64_t kVersion = 1;
// magic, version, key (4), size, content_end, max_frame_size, #starts, #frames
constexpr size_t kHeaderWords = 11;

struct Fd {
  int fd = -1;
  ~Fd() { if (fd >= 0) ::close(fd); }
};

std::string hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

void IndexCacheCounts::count(IndexCacheOutcome outcome, const std::string& where, const std::string& problem) {
  switch (outcome) {
    case IndexCacheOutcome::kHit: hits++; return;
    case IndexCacheOutcome::kBuilt: built++; return;
    case IndexCacheOutcome::kStale: stale++; break;
    case IndexCacheOutcome::kCorrupt: corrupt++; break;
    case IndexCacheOutcome::kNoCache: uncached++; break;
  }
  if (first_problem.empty()) {
    first_problem = where + ": " + (problem.empty() ? "its directory is not writable and index_cache_dir is empty" : problem);
  }
}

std::string IndexCacheCounts::report() const {
  if (stale + corrupt + uncached == 0) return "";
  std::string r;
  auto part = [&](uint64_t n, const char* what) {
    if (n == 0) return;
    if (!r.empty()) r += ", ";
    r += std::to_string(n) + " " + what;
  };
  part(stale, "stale (data changed) and rebuilt");
  part(corrupt, "corrupt and rebuilt");
  part(uncached, "not cached (indexed at every open; set index_cache_dir to a writable directory)");
  return "line index cache: " + r + "; first: " + first_problem;
}

LineIndexKey line_index_key(const std::string& path, uint64_t content_hash, bool compressed) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw Error(ErrorCode::kIo, path, std::string("cannot stat: ") + std::strerror(errno));
  LineIndexKey k;
  k.size = static_cast<uint64_t>(st.st_size);
  k.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  k.content_hash = content_hash;
  k.compressed = compressed;
  return k;
}

std::string line_index_cache_path(const std::string& data_path, const std::string& cache_dir) {
  namespace fs = std::filesystem;
  const fs::path p(data_path);
  const std::string name = p.filename().string();
  fs::path dir = p.parent_path();
  if (dir.empty()) dir = ".";
  if (::access(dir.c_str(), W_OK) == 0) return (dir / ("." + name + ".gmidx")).string();
  if (cache_dir.empty()) return "";
  std::error_code ec;
  fs::create_directories(cache_dir, ec);
  if (ec || ::access(cache_dir.c_str(), W_OK) != 0) {
    throw Error(ErrorCode::kIo, cache_dir,
                "index_cache_dir cannot be created or written (" + (ec ? ec.message() : std::string(std::strerror(errno))) +
                    "); point it at a writable directory or leave it empty");
  }
  const std::string abs = fs::absolute(p, ec).lexically_normal().string();
  return (fs::path(cache_dir) / (hex(XXH3_64bits(abs.data(), abs.size())) + "-" + name + ".gmidx")).string();
}

std::optional<LineIndex> load_line_index(const std::string& cache_path, const LineIndexKey& key,
                                         IndexCacheOutcome* outcome, std::string* problem) {
  *outcome = IndexCacheOutcome::kBuilt;
  Fd in;
  in.fd = ::open(cache_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in.fd < 0) return std::nullopt;  // not cached yet
  auto corrupt = [&](const std::string& what) -> std::optional<LineIndex> {
    *outcome = IndexCacheOutcome::kCorrupt;
    *problem = what;
    return std::nullopt;
  };
  struct stat st;
  if (::fstat(in.fd, &st) != 0) return corrupt(std::string("cannot stat: ") + std::strerror(errno));
  const uint64_t bytes = static_cast<uint64_t>(st.st_size);
  if (bytes < (kHeaderWords + 1) * 8 || bytes % 8 != 0) return corrupt("its size (" + std::to_string(bytes) + " bytes) is not a whole index");
  std::vector<uint64_t> w(bytes / 8);
  uint64_t done = 0;
  while (done < bytes) {
    const ssize_t got = ::pread(in.fd, reinterpret_cast<char*>(w.data()) + done, bytes - done, static_cast<off_t>(done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return corrupt(got < 0 ? std::string("read failed: ") + std::strerror(errno) : "it shrank while read");
    done += static_cast<uint64_t>(got);
  }
  if (std::memcmp(w.data(), kMagic, 8) != 0) return corrupt("no index magic at its start");
  if (w[1] != kVersion) return corrupt("index format version " + std::to_string(w[1]) + ", this build reads " + std::to_string(kVersion));
  if (XXH3_64bits(w.data(), bytes - 8) != w.back()) return corrupt("its checksum does not match (a torn or damaged file)");
  const uint64_t n_starts = w[9], n_frames = w[10];
  if (n_starts > bytes || n_frames > bytes || (kHeaderWords + n_starts + 4 * n_frames + 1) * 8 != bytes) {
    return corrupt("its counts (" + std::to_string(n_starts) + " lines, " + std::to_string(n_frames) + " frames) do not match its size");
  }
  if (w[2] != key.size || static_cast<int64_t>(w[3]) != key.mtime_ns || w[4] != key.content_hash ||
      w[5] != (key.compressed ? 1u : 0u)) {
    *outcome = IndexCacheOutcome::kStale;
    *problem = "the data file changed since it was indexed (size, mtime or sampled content)";
    return std::nullopt;
  }
  LineIndex ix;
  ix.size = w[6];
  ix.content_end = w[7];
  ix.max_frame_size = w[8];
  const uint64_t* p = w.data() + kHeaderWords;
  ix.starts.assign(p, p + n_starts);
  p += n_starts;
  ix.frames.resize(n_frames);
  for (uint64_t k = 0; k < n_frames; k++, p += 4) ix.frames[k] = {p[0], p[1], p[2], p[3]};
  // What readers rely on: sorted starts inside the content, contiguous frames covering it.
  bool ok = ix.content_end <= ix.size && (ix.starts.empty() || ix.starts[0] == 0);
  for (uint64_t k = 1; ok && k < n_starts; k++) ok = ix.starts[k] > ix.starts[k - 1] && ix.starts[k] <= ix.content_end;
  uint64_t off = 0, max_frame = 0;
  for (uint64_t k = 0; ok && k < n_frames; k++) {
    ok = ix.frames[k].offset == off && ix.frames[k].size > 0 && ix.frames[k].compressed_offset + ix.frames[k].compressed_size <= key.size;
    off += ix.frames[k].size;
    max_frame = std::max(max_frame, ix.frames[k].size);
  }
  if (ok && key.compressed) ok = off == ix.size && max_frame == ix.max_frame_size;
  if (ok && !key.compressed) ok = n_frames == 0 && ix.size == key.size;
  if (!ok) return corrupt("its line or frame offsets are inconsistent");
  *outcome = IndexCacheOutcome::kHit;
  return ix;
}

bool save_line_index(const std::string& cache_path, const LineIndexKey& key, const LineIndex& index, std::string* problem) {
  std::vector<uint64_t> w;
  w.reserve(kHeaderWords + index.starts.size() + 4 * index.frames.size() + 1);
  uint64_t magic;
  std::memcpy(&magic, kMagic, 8);
  w.insert(w.end(), {magic, kVersion, key.size, static_cast<uint64_t>(key.mtime_ns), key.content_hash,
                     key.compressed ? 1u : 0u, index.size, index.content_end, index.max_frame_size,
                     index.starts.size(), index.frames.size()});
  w.insert(w.end(), index.starts.begin(), index.starts.end());
  for (const ZstdFrame& f : index.frames) w.insert(w.end(), {f.compressed_offset, f.compressed_size, f.offset, f.size});
  w.push_back(XXH3_64bits(w.data(), w.size() * 8));
  // A name no other writer uses: pid, thread and a counter.
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = cache_path + ".tmp." + std::to_string(::getpid()) + "." +
                          hex(std::hash<std::thread::id>()(std::this_thread::get_id()) ^ counter++);
  Fd out;
  out.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (out.fd < 0) {
    *problem = "cannot create " + tmp + ": " + std::strerror(errno);
    return false;
  }
  const char* p = reinterpret_cast<const char*>(w.data());
  size_t left = w.size() * 8;
  while (left > 0) {
    const ssize_t n = ::write(out.fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *problem = "cannot write " + tmp + ": " + std::strerror(errno);
      ::unlink(tmp.c_str());
      return false;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  ::close(out.fd);
  out.fd = -1;
  if (std::rename(tmp.c_str(), cache_path.c_str()) != 0) {
    *problem = "cannot rename " + tmp + " to " + cache_path + ": " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

}  // namespace groupmates
