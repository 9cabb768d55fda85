// spm_shim.cpp: a tiny extern "C" API around SentencePiece, built as the MODULE library
// libgroupmates_spm.so. It is the only groupmates binary linked to libsentencepiece.
//
// Why: Debian's libsentencepiece embeds (and exports) its own copy of protobuf-lite. In a process
// that also holds libprotobuf.so.32 (pulled in by Debian's LibTorch), the dynamic linker binds
// libprotobuf's own references to sentencepiece's copies and the process dies in libprotobuf's
// static initialiser, before main(). loader/tokenizer.cpp opens this shim with
// dlopen(RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND), so the shim and libsentencepiece resolve their
// symbols in their own scope first and never meet the other protobuf.
//
// Protocol (all functions are noexcept: no C++ exception crosses this boundary):
//   - Every function taking `errbuf, errlen` writes a NUL-terminated message (truncated to
//     errlen - 1 bytes) there on failure; errbuf may be null when errlen is 0.
//   - Variable-length results are delivered through a sink callback called once, synchronously,
//     before the function returns; the pointer is valid only during the call.
//   - A handle is a SentencePieceProcessor*. gm_spm_encode/decode and the getters are const on it
//     and safe to call from many threads at once (SentencePieceProcessor::Encode is const and
//     thread-safe); gm_spm_free must not race with them.
//
// The tokenizer checks gm_spm_abi_version() == GM_SPM_ABI_VERSION before using anything else.
#include <sentencepiece_processor.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#define GM_SPM_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

constexpr int kAbiVersion = 1;

void set_error(char* errbuf, size_t errlen, const std::string& msg) {
  if (errbuf == nullptr || errlen == 0) return;
  size_t n = msg.size() < errlen - 1 ? msg.size() : errlen - 1;
  std::memcpy(errbuf, msg.data(), n);
  errbuf[n] = '\0';
}

/// Runs `body` (which returns 0 or -1); an exception becomes -1 with "exception while <what>: ..."
/// in errbuf.
template <typename Body>
int guarded(const char* what, char* errbuf, size_t errlen, Body&& body) noexcept {
  try {
    return body();
  } catch (const std::exception& e) {
    set_error(errbuf, errlen, std::string("exception while ") + what + ": " + e.what());
  } catch (...) {
    set_error(errbuf, errlen, std::string("unknown exception while ") + what);
  }
  return -1;
}

}  // namespace

/// ABI version of this shim (1). The loader refuses a shim with another version.
GM_SPM_EXPORT int gm_spm_abi_version(void) noexcept { return kAbiVersion; }

/// Loads the SentencePiece model at `path` (NUL-terminated). Returns an opaque handle, or null on
/// failure with SentencePiece's message in errbuf. Free the handle with gm_spm_free.
GM_SPM_EXPORT void* gm_spm_load(const char* path, char* errbuf, size_t errlen) noexcept {
  try {
    auto* sp = new sentencepiece::SentencePieceProcessor();
    const auto status = sp->Load(path);
    if (!status.ok()) {
      set_error(errbuf, errlen, status.ToString());
      delete sp;
      return nullptr;
    }
    return sp;
  } catch (const std::exception& e) {
    set_error(errbuf, errlen, std::string("exception while loading: ") + e.what());
  } catch (...) {
    set_error(errbuf, errlen, "unknown exception while loading");
  }
  return nullptr;
}

/// Releases a handle from gm_spm_load (null is allowed).
GM_SPM_EXPORT void gm_spm_free(void* handle) noexcept {
  delete static_cast<sentencepiece::SentencePieceProcessor*>(handle);
}

/// Sink for gm_spm_encode: receives all ids of one call at once.
typedef void (*gm_spm_ids_sink)(void* ctx, const int32_t* ids, size_t n);
/// Sink for gm_spm_decode: receives the decoded UTF-8 text at once.
typedef void (*gm_spm_text_sink)(void* ctx, const char* text, size_t len);

/// Encodes `len` bytes of UTF-8 `text` (no NUL needed) into ids and hands them to `sink(ctx, ...)`
/// exactly once on success (possibly with n == 0). Returns 0 on success, -1 on failure (errbuf).
/// Thread-safe on a shared handle.
GM_SPM_EXPORT int gm_spm_encode(const void* handle, const char* text, size_t len, gm_spm_ids_sink sink,
                                void* ctx, char* errbuf, size_t errlen) noexcept {
  return guarded("encoding", errbuf, errlen, [&] {
    const auto* sp = static_cast<const sentencepiece::SentencePieceProcessor*>(handle);
    std::vector<int> ids;
    const auto status = sp->Encode(absl::string_view(text, len), &ids);
    if (!status.ok()) {
      set_error(errbuf, errlen, status.ToString());
      return -1;
    }
    static_assert(sizeof(int) == sizeof(int32_t), "int must be 32-bit");
    sink(ctx, reinterpret_cast<const int32_t*>(ids.data()), ids.size());
    return 0;
  });
}

/// Decodes `n` ids (each must be in [0, gm_spm_vocab_size)) and hands the text to `sink(ctx, ...)`
/// exactly once on success. Returns 0 on success, -1 on failure (errbuf). Thread-safe.
GM_SPM_EXPORT int gm_spm_decode(const void* handle, const int32_t* ids, size_t n, gm_spm_text_sink sink,
                                void* ctx, char* errbuf, size_t errlen) noexcept {
  return guarded("decoding", errbuf, errlen, [&] {
    const auto* sp = static_cast<const sentencepiece::SentencePieceProcessor*>(handle);
    std::vector<int> v(ids, ids + n);
    std::string text;
    const auto status = sp->Decode(v, &text);
    if (!status.ok()) {
      set_error(errbuf, errlen, status.ToString());
      return -1;
    }
    sink(ctx, text.data(), text.size());
    return 0;
  });
}

/// Number of pieces (vocabulary size) of the loaded model.
GM_SPM_EXPORT int32_t gm_spm_vocab_size(const void* handle) noexcept {
  return static_cast<const sentencepiece::SentencePieceProcessor*>(handle)->GetPieceSize();
}

/// End-of-sentence id of the model, or -1 if it has none (spm_train --eos_id=-1).
GM_SPM_EXPORT int32_t gm_spm_eos_id(const void* handle) noexcept {
  return static_cast<const sentencepiece::SentencePieceProcessor*>(handle)->eos_id();
}
