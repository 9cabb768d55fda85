// TokenFileSource (flat uint16/uint32 token files) against a reference reader on fresh random data.
#include "sources/token_file_source.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>

#include "groupmates/error.h"
#include "loader/reader_test_util.h"
#include "util/stopwatch.h"

namespace groupmates {
namespace {

using rdtest::TempDir;
using rdtest::expect_error;

// Reference reader: the whole file as little-endian integers of `width` bytes.
std::vector<uint64_t> reference_tokens(const std::string& path, uint32_t width) {
  const std::string bytes = rdtest::read_bytes(path);
  std::vector<uint64_t> out(bytes.size() / width);
  for (size_t i = 0; i < out.size(); i++) {
    uint64_t v = 0;
    std::memcpy(&v, bytes.data() + i * width, width);
    out[i] = v;
  }
  return out;
}

SourceConfig config_for(const std::vector<std::string>& paths, TokenDtype dtype) {
  SourceConfig c;
  c.name = "flat";
  c.format = SourceFormat::kTokenFile;
  c.paths = paths;
  c.dtype = dtype;
  return c;
}

TEST(TokenFileSource, RandomFilesMatchReference) {
  const uint64_t seed = rdtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 6; round++) {
    TempDir dir;
    const bool wide = round % 2 == 1;
    const uint32_t width = wide ? 4 : 2;
    const uint32_t window = 1 + static_cast<uint32_t>(rng() % 300);
    const int nfiles = 1 + static_cast<int>(rng() % 4);
    std::vector<std::string> paths;
    for (int f = 0; f < nfiles; f++) {
      // Some files shorter than a window (0 windows, all tail), most several windows long.
      // (The first file always holds a window: a source with none is an error, see Errors.)
      const uint64_t tokens = f == 0 ? window + rng() % (window * 20)
                                     : 1 + (rng() % 4 == 0 ? rng() % window : rng() % (window * 20));
      std::string bytes(tokens * width, '\0');
      for (auto& b : bytes) b = static_cast<char>(rng());
      paths.push_back(dir.file("f" + std::to_string(f) + ".bin"));
      rdtest::write_bytes(paths.back(), bytes);
    }
    TokenFileSource src(config_for(paths, wide ? TokenDtype::kUint32 : TokenDtype::kUint16), window);
    uint64_t expect_windows = 0, expect_tail = 0;
    uint64_t k = 0;
    for (uint32_t f = 0; f < paths.size(); f++) {
      const auto ref = reference_tokens(paths[f], width);
      expect_windows += ref.size() / window;
      expect_tail += ref.size() % window;
      EXPECT_EQ(src.path(f), paths[f]);
      for (uint64_t w = 0; w < ref.size() / window; w++, k++) {
        const TokenView v = src.window(k);
        ASSERT_EQ(v.size, window);
        ASSERT_EQ(v.width, wide ? TokenWidth::kU32 : TokenWidth::kU16);
        const auto loc = src.locate(k);
        ASSERT_EQ(loc.first, f);
        ASSERT_EQ(loc.second, w * window);
        for (uint32_t t = 0; t < window; t++) {
          ASSERT_EQ(static_cast<uint64_t>(v.at(t)), ref[w * window + t]) << "file " << f << " window " << w << " token " << t;
        }
      }
    }
    EXPECT_EQ(src.num_windows(), expect_windows);
    EXPECT_EQ(src.tail_tokens(), expect_tail);
  }
}

TEST(TokenFileSource, ViewsOutliveTheSource) {
  TempDir dir;
  std::vector<uint16_t> toks(100);
  for (size_t i = 0; i < toks.size(); i++) toks[i] = static_cast<uint16_t>(i * 7);
  rdtest::write_bytes(dir.file("a.bin"), std::string(reinterpret_cast<const char*>(toks.data()), toks.size() * 2));
  TokenView v;
  {
    TokenFileSource src(config_for({dir.file("a.bin")}, TokenDtype::kUint16), 10);
    v = src.window(3);
  }
  ASSERT_EQ(v.size, 10u);
  for (uint64_t t = 0; t < 10; t++) EXPECT_EQ(v.at(t), static_cast<int64_t>((30 + t) * 7));
}

TEST(TokenFileSource, OpenDoesNotScanTheFile) {
  // A 4 GiB sparse file: opening must only map it (O(1) in the size).
  TempDir dir;
  const std::string p = dir.file("big.bin");
  const int fd = ::open(p.c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, off_t{4} << 30), 0);
  ::close(fd);
  const util::Stopwatch clock;
  TokenFileSource src(config_for({p}, TokenDtype::kUint32), 2048);
  const double s = clock.seconds();
  EXPECT_LT(s, 1.0);
  EXPECT_EQ(src.num_windows(), (uint64_t{1} << 30) / 2048);
  EXPECT_EQ(src.window(src.num_windows() - 1).at(2047), 0);
}

TEST(TokenFileSource, Errors) {
  TempDir dir;
  rdtest::write_bytes(dir.file("ok.bin"), std::string(64, '\x01'));
  rdtest::write_bytes(dir.file("empty.bin"), "");
  rdtest::write_bytes(dir.file("odd.bin"), std::string(63, '\x01'));
  rdtest::write_bytes(dir.file("six.bin"), std::string(6, '\x01'));

  Error e = expect_error([&] { TokenFileSource(config_for({dir.file("ok.bin"), dir.file("missing.bin")}, TokenDtype::kUint16), 8); });
  EXPECT_EQ(e.code(), ErrorCode::kIo);
  EXPECT_NE(std::string(e.what()).find(dir.file("missing.bin")), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("No such file"), std::string::npos) << e.what();

  e = expect_error([&] { TokenFileSource(config_for({dir.file("empty.bin")}, TokenDtype::kUint16), 8); });
  EXPECT_EQ(e.code(), ErrorCode::kCorruptData);
  EXPECT_NE(std::string(e.what()).find(dir.file("empty.bin")), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("remove it"), std::string::npos) << e.what();

  e = expect_error([&] { TokenFileSource(config_for({dir.file("odd.bin")}, TokenDtype::kUint16), 8); });
  EXPECT_EQ(e.code(), ErrorCode::kCorruptData);
  EXPECT_NE(std::string(e.what()).find("not a multiple of 2"), std::string::npos) << e.what();
  e = expect_error([&] { TokenFileSource(config_for({dir.file("six.bin")}, TokenDtype::kUint32), 1); });
  EXPECT_NE(std::string(e.what()).find("not a multiple of 4"), std::string::npos) << e.what();

  e = expect_error([&] { TokenFileSource(config_for({dir.path}, TokenDtype::kUint16), 8); });
  EXPECT_EQ(e.code(), ErrorCode::kIo);
  EXPECT_NE(std::string(e.what()).find("directory"), std::string::npos) << e.what();

  e = expect_error([&] { TokenFileSource(config_for({dir.file("ok.bin")}, TokenDtype::kUint16), 0); });
  EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig);
  e = expect_error([&] { TokenFileSource(config_for({}, TokenDtype::kUint16), 8); });
  EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig);
  // 32 tokens, window 33: no window at all.
  e = expect_error([&] { TokenFileSource(config_for({dir.file("ok.bin")}, TokenDtype::kUint16), 33); });
  EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig);
  EXPECT_NE(std::string(e.what()).find("sequence_length"), std::string::npos) << e.what();
}

// An unreadable file: Error(kIo) with the errno text and a hint. Root reads anything, so as root
// the open runs in a forked child that has dropped to uid/gid 65534 (nobody); if it cannot drop,
// the test is skipped visibly, with the reason.
TEST(TokenFileSource, PermissionDeniedIsNamed) {
  TempDir dir;
  const std::string path = dir.file("locked.bin");
  rdtest::write_bytes(path, std::string(64, '\x01'));
  ASSERT_EQ(::chmod(path.c_str(), 0), 0);
  auto open_locked = [&]() -> std::string {
    try {
      TokenFileSource(config_for({path}, TokenDtype::kUint16), 8);
      return "opened";
    } catch (const Error& e) {
      return std::string(e.code() == ErrorCode::kIo ? "kIo " : "other ") + e.what();
    }
  };
  std::string got;
  if (::geteuid() != 0) {
    got = open_locked();
  } else {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      std::string out = ::setgid(65534) == 0 && ::setuid(65534) == 0 ? open_locked() : "cannot drop root";
      if (::write(fds[1], out.data(), out.size()) < 0) _exit(2);
      _exit(0);
    }
    ::close(fds[1]);
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fds[0], buf, sizeof(buf))) > 0) got.append(buf, static_cast<size_t>(n));
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (got == "cannot drop root") GTEST_SKIP() << "running as root and setuid(65534) failed: cannot test EACCES";
  }
  EXPECT_EQ(got.rfind("kIo ", 0), 0u) << got;
  EXPECT_NE(got.find("Permission denied"), std::string::npos) << got;
  EXPECT_NE(got.find("check the file permissions"), std::string::npos) << got;
}

TEST(TokenFileSource, Fingerprint) {
  TempDir dir;
  rdtest::write_bytes(dir.file("a.bin"), std::string(64, '\x01'));
  rdtest::write_bytes(dir.file("b.bin"), std::string(66, '\x01'));
  const auto a = config_for({dir.file("a.bin")}, TokenDtype::kUint16);
  const auto b = config_for({dir.file("b.bin")}, TokenDtype::kUint16);
  EXPECT_EQ(TokenFileSource(a, 8).fingerprint(), TokenFileSource(a, 8).fingerprint());
  EXPECT_NE(TokenFileSource(a, 8).fingerprint(), TokenFileSource(a, 4).fingerprint());
  EXPECT_NE(TokenFileSource(a, 8).fingerprint(), TokenFileSource(b, 8).fingerprint());
  EXPECT_NE(TokenFileSource(a, 8).fingerprint(),
            TokenFileSource(config_for({dir.file("a.bin")}, TokenDtype::kUint32), 8).fingerprint());
}

}  // namespace
}  // namespace groupmates
