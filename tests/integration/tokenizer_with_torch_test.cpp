// LibTorch and SentencePiece in one process, the combination the spm shim exists for.
//
// The hazard, observed on Debian 12 (libtorch1.13 1.13.1+dfsg-4, libsentencepiece0 0.1.97-3+b1,
// libprotobuf32 3.21.12-3+deb12u1) with a throwaway program that links -lsentencepiece and
// -ltorch -ltorch_cpu -lc10 directly (either link order): it dies with SIGSEGV before main()
// runs, in libprotobuf.so.32's own static initialiser:
//   #0 google::protobuf::internal::ReflectionOps::FindInitializationErrors   (libprotobuf.so.32)
//   #1 google::protobuf::Message::FindInitializationErrors                   (libprotobuf.so.32)
//   #2 google::protobuf::Message::InitializationErrorString                  (libprotobuf.so.32)
//   #3 google::protobuf::internal::MergeFromImpl<false>                      (libsentencepiece.so.0 !)
//   #4 google::protobuf::EncodedDescriptorDatabase::Add                      (libprotobuf.so.32)
//   #5 google::protobuf::DescriptorPool::InternalAddGeneratedFile            (libprotobuf.so.32)
//   #7 _dl_init
// libsentencepiece exports its embedded protobuf-lite symbols and precedes libprotobuf.so.32 in
// the global lookup order (it is a direct dependency, libprotobuf an indirect one), so
// libprotobuf's registration of descriptor.proto calls sentencepiece's MergeFromImpl, which
// calls back into full protobuf with an object it does not understand. It is not sentencepiece
// that crashes "at load": it is libprotobuf, hijacked by sentencepiece's copy. No SentencePiece
// or Torch call is needed to trigger it; merely having both in the link is fatal.
//
// RTLD_LOCAL alone is not enough. dlopen()ing the shim into a LibTorch process without
// RTLD_DEEPBIND (RTLD_LOCAL or RTLD_GLOBAL alike) binds libsentencepiece's protobuf references to
// the already-loaded libprotobuf.so.32, and the model load fails with
//   [libprotobuf FATAL google/protobuf/stubs/common.cc:83] This program was compiled against
//   version 3.14.0 of the Protocol Buffer runtime library, which is not compatible with the
//   installed version (3.21.12). (Version verification failed in
//   "./src/builtin_pb/sentencepiece_model.pb.cc".)
// With RTLD_DEEPBIND the shim's scope (libsentencepiece and its embedded protobuf 3.14) is
// searched first, and loading and encoding work.
//
// This executable links LibTorch (hence libprotobuf.so.32) and groupmates_loader, which reaches
// SentencePiece only through dlopen("libgroupmates_spm.so", RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "groupmates/error.h"
#include "groupmates/tokenizer.h"

namespace {

bool process_has_mapped(const std::string& name) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find(name) != std::string::npos) return true;
  }
  return false;
}

std::string make_temp_dir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/gm_tok_torch_test.XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  return mkdtemp(buf.data()) ? std::string(buf.data()) : std::string();
}

TEST(TokenizerWithTorch, EncodeInSameProcessAsLibTorch) {
  // LibTorch first: the tensor library and its protobuf are live before SentencePiece arrives.
  torch::Tensor t = torch::arange(10, torch::kFloat32);
  ASSERT_FLOAT_EQ(t.sum().item<float>(), 45.0f);
  ASSERT_TRUE(process_has_mapped("libprotobuf.so")) << "test premise: LibTorch should bring libprotobuf";
  EXPECT_FALSE(process_has_mapped("libsentencepiece.so")) << "the executable must not link libsentencepiece";

  const std::string dir = make_temp_dir();
  ASSERT_FALSE(dir.empty());
  struct Cleanup {
    std::string dir;
    ~Cleanup() {  // kept on failure, for its train.log
      std::error_code ec;
      if (!::testing::Test::HasFailure()) std::filesystem::remove_all(dir, ec);
    }
  } cleanup{dir};
  std::vector<std::string> lines;
  {
    // Pseudo-words over a skewed alphabet (xorshift32, fixed seed): enough variety for 100 pieces.
    std::ofstream f(dir + "/train.txt");
    const std::string letters = "etaoinshrdlcumwfgypbvkjxqz";
    uint32_t x = 2463534242u;
    auto next = [&x] { return x ^= x << 13, x ^= x >> 17, x ^= x << 5; };
    std::vector<std::string> words;
    for (int i = 0; i < 300; ++i) {
      std::string w;
      for (uint32_t k = 0, n = 1 + next() % 8; k < n; ++k) w += letters[std::min(next() % 26, next() % 26)];
      words.push_back(w);
    }
    for (int i = 0; i < 2000; ++i) {
      std::string line;
      for (uint32_t k = 0, n = 3 + next() % 12; k < n; ++k) {
        line += (k ? " " : "") + words[std::min(next() % words.size(), next() % words.size())];
      }
      f << line << ".\n";
      if (i % 20 == 0) lines.push_back(line + "!");
    }
  }
  ASSERT_EQ(std::system(("spm_train --input=" + dir + "/train.txt --model_prefix=" + dir +
                         "/m --vocab_size=100 --eos_id=3 --bos_id=2 --unk_id=1 --pad_id=0 --num_threads=1"
                         " --minloglevel=2 > " + dir + "/train.log 2>&1")
                            .c_str()),
            0)
      << "spm_train failed, see " << dir << "/train.log";
  {
    std::ofstream f(dir + "/test.txt");
    for (const auto& l : lines) f << l << '\n';
  }
  ASSERT_EQ(std::system(("spm_encode --model=" + dir + "/m.model --output_format=id < " + dir + "/test.txt > " +
                         dir + "/test.ids")
                            .c_str()),
            0);

  auto tok = groupmates::Tokenizer::load(dir + "/m.model");
  EXPECT_TRUE(process_has_mapped("libsentencepiece.so")) << "loaded through the shim";
  EXPECT_EQ(tok->vocab_size(), 100u);
  EXPECT_EQ(tok->eos_id(), 3);

  std::ifstream ids_in(dir + "/test.ids");
  std::string id_line;
  std::vector<int64_t> all;
  for (const auto& l : lines) {
    ASSERT_TRUE(std::getline(ids_in, id_line));
    std::vector<uint32_t> expected, got;
    std::istringstream in(id_line);
    uint32_t id;
    while (in >> id) expected.push_back(id);
    tok->encode(l, got);
    ASSERT_EQ(got, expected) << l;
    all.insert(all.end(), got.begin(), got.end());
  }
  // And back into LibTorch: the ids as a tensor.
  torch::Tensor ids = torch::tensor(all, torch::kInt64);
  EXPECT_EQ(ids.numel(), static_cast<int64_t>(all.size()));
  EXPECT_LT(ids.max().item<int64_t>(), 100);
  EXPECT_GT(ids.numel(), static_cast<int64_t>(lines.size()));

}

}  // namespace
