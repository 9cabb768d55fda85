// groupmates/tokenizer.h: No LibTorch here. SentencePiece behind a small shim loaded with dlopen(RTLD_LOCAL | RTLD_DEEPBIND).
//
// Why the shim: Debian's libsentencepiece embeds its own protobuf and crashes at load when
// libprotobuf.so.32 (pulled in by Debian's LibTorch) is in the same process. The shim library
// (libgroupmates_spm.so) is the only thing linked to libsentencepiece; it is opened with its own
// symbol scope, so the two protobufs never meet.
//
// The shim is looked up once per process, in this order: $GROUPMATES_SPM_SHIM (if set, it is the
// only candidate); the build tree's copy (if the file exists); the install path
// (<libdir>/groupmates/libgroupmates_spm.so); libgroupmates_spm.so next to the binary that
// contains this code. Under ASan/TSan RTLD_DEEPBIND is dropped (the sanitizer runtimes abort on
// it); those builds have no LibTorch, so no second protobuf.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace groupmates {

/// A loaded SentencePiece model. encode() is thread-safe.
class Tokenizer {
 public:
  /// Loads a .model file. Throws Error(kIo) if missing, Error(kCorruptData) if not a model,
  /// Error(kInternal) if the shim library cannot be found (set GROUPMATES_SPM_SHIM to its path).
  static std::shared_ptr<Tokenizer> load(const std::string& model_path);
  ~Tokenizer();
  /// Appends the token ids of `text` (valid UTF-8) to `out`.
  void encode(std::string_view text, std::vector<uint32_t>& out) const;
  /// Decodes ids back to text (for samples and inspection).
  std::string decode(const std::vector<uint32_t>& ids) const;
  /// Vocabulary size of the model.
  uint32_t vocab_size() const;
  /// The model's end-of-sentence id, or -1 if it has none.
  int32_t eos_id() const;
  /// Path of the shim library this process uses; loads it on first call. Throws Error(kInternal)
  /// like load() if it cannot be found.
  static std::string shim_path();

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace groupmates
