// groupmates/tokenizer.h: No LibTorch here. A SentencePiece .model (behind a small shim loaded with
// dlopen(RTLD_LOCAL | RTLD_DEEPBIND)) or a Hugging Face tokenizer.json (byte-level BPE: GPT-2,
// Llama 3, Qwen2 style; read by groupmates itself, see loader/sources/byte_level_bpe.h for the
// supported subset). A path ending in ".json" is a tokenizer.json, any other a SentencePiece model.
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
// it): enough without LibTorch, or with Python's torch (imported RTLD_LOCAL); beside a LibTorch linked
// into the executable the two protobufs may meet (load() then says so).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace groupmates {

/// A loaded SentencePiece model or tokenizer.json. encode() is thread-safe.
class Tokenizer {
 public:
  /// Loads a tokenizer.json (path ending in ".json") or a SentencePiece .model file. Throws
  /// Error(kIo) if missing, Error(kCorruptData) if not a model (for a tokenizer.json: naming the
  /// field that is malformed or unsupported), Error(kInternal) if the SentencePiece shim library
  /// cannot be found (set GROUPMATES_SPM_SHIM to its path).
  static std::shared_ptr<Tokenizer> load(const std::string& model_path);
  /// True if load() reads `path` as a Hugging Face tokenizer.json (it ends in ".json").
  static bool is_tokenizer_json(const std::string& path);
  ~Tokenizer();
  /// Appends the token ids of `text` (valid UTF-8) to `out`.
  void encode(std::string_view text, std::vector<uint32_t>& out) const;
  /// Decodes ids back to text (for samples and inspection).
  std::string decode(const std::vector<uint32_t>& ids) const;
  /// Vocabulary size of the model.
  uint32_t vocab_size() const;
  /// The model's end-of-sentence id, or -1 if it has none (tokenizer.json: the added token
  /// <|endoftext|>, <|end_of_text|> or </s>, the first found).
  int32_t eos_id() const;
  /// Path of the SentencePiece shim library this process uses; loads it on first call. Throws Error(kInternal)
  /// like load() if it cannot be found.
  static std::string shim_path();

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace groupmates
