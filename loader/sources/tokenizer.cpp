// tokenizer.cpp: SentencePiece through the dlopen()ed shim (see tokenizer.h and spm_shim/spm_shim.cpp), or a
// Hugging Face tokenizer.json (sources/byte_level_bpe.h) for a path ending in .json.
#include "groupmates/tokenizer.h"

#include <dlfcn.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "groupmates/error.h"
#include "sources/byte_level_bpe.h"
#include "util/fault_hooks.h"

namespace groupmates {
namespace {

constexpr int kShimAbiVersion = 1;
constexpr const char* kShimFileName = "libgroupmates_spm.so";
constexpr size_t kErrLen = 1024;

// The shim's C API (declared and documented in spm_shim/spm_shim.cpp).
using IdsSink = void (*)(void* ctx, const int32_t* ids, size_t n);
using TextSink = void (*)(void* ctx, const char* text, size_t len);
using AbiVersionFn = int (*)();
using LoadFn = void* (*)(const char* path, char* errbuf, size_t errlen);
using FreeFn = void (*)(void* handle);
using EncodeFn = int (*)(const void* handle, const char* text, size_t len, IdsSink sink, void* ctx, char* errbuf,
                         size_t errlen);
using DecodeFn = int (*)(const void* handle, const int32_t* ids, size_t n, TextSink sink, void* ctx, char* errbuf,
                         size_t errlen);
using GetterFn = int32_t (*)(const void* handle);

struct ShimApi {
  std::string path;   // the library actually opened
  std::string error;  // non-empty if no usable shim was found
  LoadFn load = nullptr;
  FreeFn free = nullptr;
  EncodeFn encode = nullptr;
  DecodeFn decode = nullptr;
  GetterFn vocab_size = nullptr;
  GetterFn eos_id = nullptr;
};

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The ASan/TSan/MSan runtimes abort on dlopen(RTLD_DEEPBIND), so under a sanitizer the shim is opened
// with RTLD_LOCAL alone: enough where no LibTorch is loaded (the loader core's suites) or where it was
// loaded with RTLD_LOCAL (Python's import of torch: the Python suite passes under ASan); beside a LibTorch
// linked into the executable SentencePiece may meet its protobuf (load() says so), and the one C++ test
// that needs both skips itself under a sanitizer.
bool under_sanitizer() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return true;
#else
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
  return true;
#endif
#endif
  return dlsym(RTLD_DEFAULT, "__asan_init") != nullptr || dlsym(RTLD_DEFAULT, "__tsan_init") != nullptr ||
         dlsym(RTLD_DEFAULT, "__msan_init") != nullptr;
#endif
}

// Directory of the shared object or executable that holds this code.
std::string own_directory() {
  std::string file;
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&own_directory), &info) != 0 && info.dli_fname != nullptr &&
      std::strchr(info.dli_fname, '/') != nullptr) {
    file = info.dli_fname;
  } else {
    // The main executable: dladdr may report its bare argv[0].
    char buf[PATH_MAX];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    if (n <= 0) return {};
    file.assign(buf, static_cast<size_t>(n));
  }
  char resolved[PATH_MAX];
  if (::realpath(file.c_str(), resolved) != nullptr) file = resolved;
  auto slash = file.rfind('/');
  return slash == std::string::npos ? std::string(".") : file.substr(0, slash);
}

// Tries to dlopen `path` and resolve the API; on failure appends why to `tried`.
bool try_open(const std::string& path, ShimApi& api, std::string& tried) {
  int flags = RTLD_NOW | RTLD_LOCAL;
  if (!under_sanitizer()) flags |= RTLD_DEEPBIND;
  void* lib = dlopen(path.c_str(), flags);
  if (lib == nullptr) {
    const char* e = dlerror();
    tried += "\n  " + path + " (dlopen failed: " + (e ? e : "unknown error") + ")";
    return false;
  }
  auto sym = [&](const char* name) { return dlsym(lib, name); };
  auto abi = reinterpret_cast<AbiVersionFn>(sym("gm_spm_abi_version"));
  api.load = reinterpret_cast<LoadFn>(sym("gm_spm_load"));
  api.free = reinterpret_cast<FreeFn>(sym("gm_spm_free"));
  api.encode = reinterpret_cast<EncodeFn>(sym("gm_spm_encode"));
  api.decode = reinterpret_cast<DecodeFn>(sym("gm_spm_decode"));
  api.vocab_size = reinterpret_cast<GetterFn>(sym("gm_spm_vocab_size"));
  api.eos_id = reinterpret_cast<GetterFn>(sym("gm_spm_eos_id"));
  if (abi == nullptr || !api.load || !api.free || !api.encode || !api.decode || !api.vocab_size || !api.eos_id) {
    tried += "\n  " + path + " (not a groupmates SentencePiece shim: gm_spm_* symbols missing)";
    dlclose(lib);
    return false;
  }
  if (abi() != kShimAbiVersion) {
    tried += "\n  " + path + " (shim ABI version " + std::to_string(abi()) + ", expected " +
             std::to_string(kShimAbiVersion) + ": rebuild target groupmates_spm)";
    dlclose(lib);
    return false;
  }
  // Never dlclose()d: handles may live until exit, and unloading protobuf code is unsafe.
  api.path = path;
  return true;
}

ShimApi open_shim() {
  ShimApi api;
  std::string tried;
  const char* env = std::getenv("GROUPMATES_SPM_SHIM");
  if (env != nullptr && *env != '\0') {
    // An explicit override is the only candidate: silently falling back would hide a typo.
    if (try_open(env, api, tried)) return api;
    api.error = std::string("cannot load the SentencePiece shim named by GROUPMATES_SPM_SHIM:") + tried +
                "\nFix: point GROUPMATES_SPM_SHIM at a libgroupmates_spm.so built from this version of groupmates "
                "(target groupmates_spm), or unset it.";
    return api;
  }
  std::vector<std::string> candidates;
#ifdef GROUPMATES_SPM_SHIM_BUILD_PATH
  candidates.emplace_back(GROUPMATES_SPM_SHIM_BUILD_PATH);
#endif
#ifdef GROUPMATES_SPM_SHIM_INSTALL_PATH
  candidates.emplace_back(GROUPMATES_SPM_SHIM_INSTALL_PATH);
#endif
  std::string dir = own_directory();
  if (!dir.empty()) candidates.push_back(dir + "/" + kShimFileName);
  for (const auto& c : candidates) {
    if (!file_exists(c)) {
      tried += "\n  " + c + " (not found)";
      continue;
    }
    if (try_open(c, api, tried)) return api;
  }
  api.error = std::string("cannot find the SentencePiece shim ") + kShimFileName + "; looked at:" + tried +
              "\nFix: set GROUPMATES_SPM_SHIM=/path/to/" + kShimFileName +
              " (built by the CMake target groupmates_spm; installed under <libdir>/groupmates/).";
  return api;
}

const ShimApi& shim_api() {
  static std::once_flag once;
  static ShimApi api;
  std::call_once(once, [] { api = open_shim(); });
  return api;
}

struct ErrBuf {
  char buf[kErrLen] = {0};
};

}  // namespace

struct Tokenizer::Impl {
  std::unique_ptr<ByteLevelBpe> bpe;  // a tokenizer.json; else SentencePiece through the shim
  const ShimApi* api = nullptr;
  void* handle = nullptr;
  std::string path;
  uint32_t vocab_size = 0;
  int32_t eos_id = -1;
};

std::string Tokenizer::shim_path() {
  const ShimApi& api = shim_api();
  if (!api.error.empty()) throw Error(ErrorCode::kInternal, "", api.error);
  return api.path;
}

bool Tokenizer::is_tokenizer_json(const std::string& path) {
  return path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0;
}

std::shared_ptr<Tokenizer> Tokenizer::load(const std::string& model_path) {
  if (is_tokenizer_json(model_path)) {
    auto impl = std::make_unique<Impl>();
    impl->bpe = ByteLevelBpe::load(model_path);
    impl->path = model_path;
    impl->vocab_size = impl->bpe->vocab_size();
    impl->eos_id = impl->bpe->eos_id();
    return std::shared_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
  }
  struct stat st;
  if (::stat(model_path.c_str(), &st) != 0) {
    throw Error(ErrorCode::kIo, model_path,
                std::string("cannot open SentencePiece model: ") + std::strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) {
    throw Error(ErrorCode::kIo, model_path, "cannot open SentencePiece model: is a directory");
  }
  if (::access(model_path.c_str(), R_OK) != 0) {
    throw Error(ErrorCode::kIo, model_path,
                std::string("cannot read SentencePiece model: ") + std::strerror(errno));
  }
  const ShimApi& api = shim_api();
  if (!api.error.empty()) {
    throw Error(ErrorCode::kInternal, model_path, "cannot load SentencePiece model: " + api.error);
  }
  ErrBuf err;
  void* handle = api.load(model_path.c_str(), err.buf, sizeof(err.buf));
  if (handle == nullptr) {
    if (std::strstr(err.buf, "Protocol Buffer") != nullptr) {
      // Not the model's fault: sentencepiece met a second protobuf (see tokenizer.h).
      throw Error(ErrorCode::kInternal, model_path,
                  std::string("SentencePiece clashed with another protobuf in this process (was the shim "
                              "opened without RTLD_DEEPBIND, e.g. under a sanitizer?): ") + err.buf);
    }
    throw Error(ErrorCode::kCorruptData, model_path,
                std::string("not a valid SentencePiece model (SentencePiece: ") + err.buf + ")");
  }
  auto impl = std::make_unique<Impl>();
  impl->api = &api;
  impl->handle = handle;
  impl->path = model_path;
  impl->vocab_size = static_cast<uint32_t>(api.vocab_size(handle));
  impl->eos_id = api.eos_id(handle);
  return std::shared_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Tokenizer::~Tokenizer() {
  if (impl_ && impl_->handle) impl_->api->free(impl_->handle);
}

void Tokenizer::encode(std::string_view text, std::vector<uint32_t>& out) const {
  if (fault_hooks::before_tokenize) fault_hooks::before_tokenize(text);
  if (impl_->bpe) {
    impl_->bpe->encode(text, out);
    return;
  }
  ErrBuf err;
  auto sink = [](void* ctx, const int32_t* ids, size_t n) {
    auto& v = *static_cast<std::vector<uint32_t>*>(ctx);
    v.insert(v.end(), ids, ids + n);  // ids are >= 0
  };
  if (impl_->api->encode(impl_->handle, text.data(), text.size(), sink, &out, err.buf, sizeof(err.buf)) != 0) {
    throw Error(ErrorCode::kCorruptData, impl_->path, std::string("SentencePiece encode failed: ") + err.buf);
  }
}

std::string Tokenizer::decode(const std::vector<uint32_t>& ids) const {
  if (impl_->bpe) return impl_->bpe->decode(ids);
  std::vector<int32_t> v;
  v.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] >= impl_->vocab_size) {
      throw Error(ErrorCode::kOutOfVocab, impl_->path,
                  "decode: token id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                      " is outside [0, " + std::to_string(impl_->vocab_size) + ")");
    }
    v.push_back(static_cast<int32_t>(ids[i]));
  }
  std::string text;
  ErrBuf err;
  auto sink = [](void* ctx, const char* s, size_t n) { static_cast<std::string*>(ctx)->assign(s, n); };
  if (impl_->api->decode(impl_->handle, v.data(), v.size(), sink, &text, err.buf, sizeof(err.buf)) != 0) {
    throw Error(ErrorCode::kCorruptData, impl_->path, std::string("SentencePiece decode failed: ") + err.buf);
  }
  return text;
}

uint32_t Tokenizer::vocab_size() const { return impl_->vocab_size; }

int32_t Tokenizer::eos_id() const { return impl_->eos_id; }

}  // namespace groupmates
