// `groupmates reframe`: JSONL rewritten as small zstd frames cut at line ends (see zstd_reframe.h).
#include "sources/zstd_reframe.h"

#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "groupmates/error.h"

namespace groupmates {
namespace {

struct Fd {
  int fd = -1;
  ~Fd() { if (fd >= 0) ::close(fd); }
};

void write_all(int fd, const char* p, size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) throw Error(ErrorCode::kIo, path, std::string("write failed: ") + std::strerror(errno) + "; check free space");
    p += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

ReframeResult reframe_jsonl_zstd(const std::string& in, const std::string& out, uint64_t frame_bytes, int level) {
  if (frame_bytes < 4096) throw Error(ErrorCode::kInvalidConfig, "", "frame bytes is " + std::to_string(frame_bytes) + "; at least 4096");
  if (level < 1 || level > 19) throw Error(ErrorCode::kInvalidConfig, "", "zstd level is " + std::to_string(level) + "; allowed 1..19");
  Fd src;
  src.fd = ::open(in.c_str(), O_RDONLY | O_CLOEXEC);
  if (src.fd < 0) throw Error(ErrorCode::kIo, in, std::string("cannot open: ") + std::strerror(errno));
  const std::string tmp = out + ".tmp." + std::to_string(::getpid());
  Fd dst;
  dst.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (dst.fd < 0) throw Error(ErrorCode::kIo, tmp, std::string("cannot create: ") + std::strerror(errno));
  struct Unlink {
    const std::string& path;
    bool keep = false;
    ~Unlink() { if (!keep) ::unlink(path.c_str()); }
  } cleanup{tmp};

  ZSTD_DStream* ds = ZSTD_createDStream();
  ZSTD_CCtx* cc = ZSTD_createCCtx();
  struct Free {
    ZSTD_DStream* ds;
    ZSTD_CCtx* cc;
    ~Free() { ZSTD_freeDStream(ds); ZSTD_freeCCtx(cc); }
  } guard{ds, cc};
  if (ds == nullptr || cc == nullptr) throw Error(ErrorCode::kInternal, in, "zstd context allocation failed");
  ZSTD_initDStream(ds);
  ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
  ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 1);

  ReframeResult r;
  std::string pending;  // content not yet written
  std::string frame;    // compressed output
  auto emit = [&](size_t n) {
    frame.resize(ZSTD_compressBound(n));
    const size_t c = ZSTD_compress2(cc, frame.data(), frame.size(), pending.data(), n);
    if (ZSTD_isError(c)) throw Error(ErrorCode::kInternal, out, std::string("zstd compression failed: ") + ZSTD_getErrorName(c));
    write_all(dst.fd, frame.data(), c, tmp);
    r.frames++;
    r.output_bytes += c;
    r.decompressed_bytes += n;
    pending.erase(0, n);
  };
  // A frame ends at the first line end at or after frame_bytes (so a frame holds from frame_bytes to
  // frame_bytes + one line); `scanned`: bytes of pending already searched for it.
  size_t scanned = 0;
  auto take = [&](const char* p, size_t n) {
    pending.append(p, n);
    while (pending.size() >= frame_bytes) {
      const size_t from = std::max<size_t>(scanned, frame_bytes - 1);
      const void* nl = std::memchr(pending.data() + from, '\n', pending.size() - from);
      if (nl == nullptr) {  // the line crossing frame_bytes has not ended yet
        scanned = pending.size();
        return;
      }
      emit(static_cast<size_t>(static_cast<const char*>(nl) - pending.data()) + 1);
      scanned = 0;
    }
  };

  const size_t in_cap = ZSTD_DStreamInSize(), out_cap = ZSTD_DStreamOutSize();
  std::unique_ptr<char[]> ibuf(new char[in_cap]), obuf(new char[out_cap]);
  bool compressed = false, first = true;
  size_t ret = 0;
  while (true) {
    const ssize_t got = ::read(src.fd, ibuf.get(), in_cap);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw Error(ErrorCode::kIo, in, std::string("read failed: ") + std::strerror(errno));
    if (got == 0) break;
    if (first) {
      static const unsigned char kMagic[4] = {0x28, 0xB5, 0x2F, 0xFD};
      compressed = got >= 4 && std::memcmp(ibuf.get(), kMagic, 4) == 0;
      first = false;
    }
    if (!compressed) {
      take(ibuf.get(), static_cast<size_t>(got));
    } else {
      ZSTD_inBuffer input{ibuf.get(), static_cast<size_t>(got), 0};
      while (true) {
        ZSTD_outBuffer output{obuf.get(), out_cap, 0};
        ret = ZSTD_decompressStream(ds, &output, &input);
        if (ZSTD_isError(ret)) {
          throw Error(ErrorCode::kCorruptData, in + ":" + std::to_string(r.input_bytes + input.pos),
                      std::string("zstd decompression failed: ") + ZSTD_getErrorName(ret) + "; the input is corrupt");
        }
        take(obuf.get(), output.pos);
        if (input.pos == input.size && output.pos < output.size) break;
      }
    }
    r.input_bytes += static_cast<uint64_t>(got);
  }
  if (compressed && ret != 0) throw Error(ErrorCode::kCorruptData, in, "truncated zstd stream; the input is incomplete");
  if (!pending.empty()) emit(pending.size());
  if (::fsync(dst.fd) != 0) throw Error(ErrorCode::kIo, tmp, std::string("fsync failed: ") + std::strerror(errno));
  if (std::rename(tmp.c_str(), out.c_str()) != 0) {
    throw Error(ErrorCode::kIo, out, std::string("cannot rename ") + tmp + " to it: " + std::strerror(errno));
  }
  cleanup.keep = true;
  return r;
}

}  // namespace groupmates
