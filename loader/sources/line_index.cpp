// Line indexes of plain and zstd JSONL files (see line_index.h).
#include "sources/line_index.h"

#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "groupmates/error.h"

namespace groupmates {

size_t LineIndex::frame_of(uint64_t offset) const {
  const auto it = std::upper_bound(frames.begin(), frames.end(), offset,
                                   [](uint64_t o, const ZstdFrame& f) { return o < f.offset; });
  return static_cast<size_t>(it - frames.begin()) - 1;
}

namespace {

// Pushes the start of every line after a '\n' in [p, p + n), which begins at decompressed `base`.
void scan_newlines(const char* p, size_t n, uint64_t base, std::vector<uint64_t>& starts) {
  const char* const begin = p;
  const char* const end = p + n;
  while (p < end) {
    const void* nl = std::memchr(p, '\n', static_cast<size_t>(end - p));
    if (nl == nullptr) break;
    p = static_cast<const char*>(nl) + 1;
    starts.push_back(base + static_cast<uint64_t>(p - begin));
  }
}

// Drops the start pushed for a final '\n' and sets content_end.
void finish(LineIndex& ix, bool ends_with_newline) {
  if (ends_with_newline && !ix.starts.empty() && ix.starts.back() == ix.size) ix.starts.pop_back();
  ix.content_end = ends_with_newline ? ix.size - 1 : ix.size;
  ix.starts.shrink_to_fit();
  ix.frames.shrink_to_fit();
}

struct Fd {
  int fd = -1;
  ~Fd() { if (fd >= 0) ::close(fd); }
};

}  // namespace

void throw_frame_too_big(const std::string& path, uint64_t compressed_offset, uint64_t max_frame_bytes) {
  throw Error(ErrorCode::kInvalidConfig, path + ":" + std::to_string(compressed_offset),
              "the zstd frame starting at this compressed offset decompresses to more than zstd_cache_bytes = " +
                  std::to_string(max_frame_bytes) +
                  " bytes; a frame is the only point zstd can restart from, so it is decompressed whole "
                  "when one of its lines is read. Recompress the file into small frames "
                  "(groupmates reframe FILE OUT.jsonl.zst) or raise the source's zstd_cache_bytes");
}

void check_frames_fit(const std::string& path, const LineIndex& index, uint64_t max_frame_bytes) {
  if (index.max_frame_size <= max_frame_bytes) return;
  for (const ZstdFrame& f : index.frames) {
    if (f.size > max_frame_bytes) throw_frame_too_big(path, f.compressed_offset, max_frame_bytes);
  }
}

LineIndex index_plain_lines(const char* data, uint64_t size) {
  LineIndex ix;
  ix.size = size;
  if (size == 0) return ix;
  ix.starts.reserve(static_cast<size_t>(size / 512) + 16);
  ix.starts.push_back(0);
  scan_newlines(data, static_cast<size_t>(size), 0, ix.starts);
  finish(ix, data[size - 1] == '\n');
  return ix;
}

LineIndex index_zstd_lines(const std::string& path, uint64_t max_frame_bytes) {
  Fd in;
  in.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in.fd < 0) throw Error(ErrorCode::kIo, path, std::string("cannot open: ") + std::strerror(errno));
  ZSTD_DStream* ds = ZSTD_createDStream();
  if (ds == nullptr) throw Error(ErrorCode::kInternal, path, "ZSTD_createDStream failed (out of memory?)");
  struct Free {
    ZSTD_DStream* ds;
    ~Free() { ZSTD_freeDStream(ds); }
  } guard{ds};
  ZSTD_initDStream(ds);

  const size_t in_cap = ZSTD_DStreamInSize();
  const size_t out_cap = ZSTD_DStreamOutSize();
  std::unique_ptr<char[]> inbuf(new char[in_cap]);
  std::unique_ptr<char[]> outbuf(new char[out_cap]);
  LineIndex ix;
  ix.starts.push_back(0);
  uint64_t file_pos = 0;       // compressed bytes consumed
  uint64_t frame_start = 0;    // compressed offset of the current frame
  uint64_t frame_out = 0;      // decompressed bytes of the current frame so far
  bool in_frame = false;
  char last = '\n';
  size_t ret = 0;
  while (true) {
    const ssize_t got = ::pread(in.fd, inbuf.get(), in_cap, static_cast<off_t>(file_pos));
    if (got < 0) {
      if (errno == EINTR) continue;
      throw Error(ErrorCode::kIo, path, std::string("read failed: ") + std::strerror(errno));
    }
    if (got == 0) break;
    ZSTD_inBuffer input{inbuf.get(), static_cast<size_t>(got), 0};
    while (true) {
      if (!in_frame && input.pos < input.size) {
        in_frame = true;
        frame_start = file_pos + input.pos;
        frame_out = 0;
      }
      ZSTD_outBuffer output{outbuf.get(), out_cap, 0};
      ret = ZSTD_decompressStream(ds, &output, &input);
      if (ZSTD_isError(ret)) {
        throw Error(ErrorCode::kCorruptData, path + ":" + std::to_string(file_pos + input.pos),
                    std::string("zstd decompression failed: ") + ZSTD_getErrorName(ret) +
                        "; the file is corrupt: recompress it (zstd FILE.jsonl) or remove it from the source");
      }
      if (output.pos > 0) {
        scan_newlines(outbuf.get(), output.pos, ix.size, ix.starts);
        last = outbuf[output.pos - 1];
        ix.size += output.pos;
        frame_out += output.pos;
        if (frame_out > max_frame_bytes) throw_frame_too_big(path, frame_start, max_frame_bytes);
      }
      if (ret == 0 && in_frame) {  // a frame ended (decoded and flushed)
        const uint64_t end = file_pos + input.pos;
        if (frame_out > 0) {
          ix.frames.push_back({frame_start, end - frame_start, ix.size - frame_out, frame_out});
          ix.max_frame_size = std::max(ix.max_frame_size, frame_out);
        }
        in_frame = false;
      }
      if (input.pos == input.size && output.pos < output.size) break;  // needs more input
    }
    file_pos += static_cast<uint64_t>(got);
  }
  if (in_frame) {
    throw Error(ErrorCode::kCorruptData, path,
                "truncated zstd stream (the last frame is incomplete after " + std::to_string(ix.size) +
                    " decompressed bytes); recompress the file or remove it from the source");
  }
  if (ix.size == 0) {
    ix.starts.clear();
    return ix;
  }
  finish(ix, last == '\n');
  return ix;
}

}  // namespace groupmates
