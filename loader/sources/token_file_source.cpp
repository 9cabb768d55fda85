// Flat token files: no header, little-endian uint16/uint32 ids, memory-mapped. Opening is O(1) in
// the file size (maps and divides; never scans the tokens).
#include "sources/token_file_source.h"

#include <xxhash.h>

#include <algorithm>

#include "groupmates/error.h"
#include "sources/mapped_file.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "groupmates reads little-endian token files in place: a little-endian host is required");

namespace groupmates {

struct TokenFileSource::Impl {
  std::vector<std::shared_ptr<const MappedFile>> files;
  std::vector<uint64_t> first_window;  // first_window[i] = windows in files [0, i); size files+1
  TokenWidth width = TokenWidth::kU16;
  uint32_t window = 0;
  uint64_t tail_tokens = 0;
  uint64_t fingerprint = 0;
  uint64_t path_fingerprint = 0;
  std::vector<DataFileFingerprint> data_files;
};

TokenFileSource::TokenFileSource(const SourceConfig& config, uint32_t window) : impl_(new Impl) {
  const std::string who = config.name.empty() ? std::string("token file source") : "source '" + config.name + "'";
  if (window == 0) {
    throw Error(ErrorCode::kInvalidConfig, "", who + ": window length must be > 0 (sequence_length)");
  }
  if (config.paths.empty()) {
    throw Error(ErrorCode::kInvalidConfig, "", who + ": paths is empty; list at least one token file");
  }
  impl_->window = window;
  impl_->width = config.dtype == TokenDtype::kUint32 ? TokenWidth::kU32 : TokenWidth::kU16;
  const uint64_t bytes = token_width_bytes(impl_->width);
  const char* dtype_name = bytes == 4 ? "uint32" : "uint16";

  // What the fingerprint covers: window, width, then every file's size and sampled content hash, in
  // order (never its path: data moved or renamed resumes). `legacy` is version 1's, with the paths.
  std::string fp = "tokenfile\n" + std::to_string(window) + "\n" + std::to_string(bytes) + "\n";
  std::string legacy = fp;

  impl_->first_window.push_back(0);
  for (const std::string& path : config.paths) {
    auto file = std::make_shared<const MappedFile>(path, MappedFile::Advice::kRandom);
    if (file->empty()) {
      throw Error(ErrorCode::kCorruptData, path,
                  "file is empty (0 tokens); remove it from the source's paths");
    }
    if (file->size() % bytes != 0) {
      throw Error(ErrorCode::kCorruptData, path,
                  "size " + std::to_string(file->size()) + " bytes is not a multiple of " +
                      std::to_string(bytes) + " (dtype " + dtype_name +
                      "); check the dtype (uint16 vs uint32) or whether the file is truncated");
    }
    const uint64_t tokens = file->size() / bytes;
    const uint64_t windows = tokens / window;
    impl_->tail_tokens += tokens - windows * window;
    impl_->first_window.push_back(impl_->first_window.back() + windows);
    impl_->data_files.push_back({path, file->size(), file->sampled_hash()});
    const std::string content = std::to_string(file->size()) + " " + std::to_string(impl_->data_files.back().content_hash) + "\n";
    fp += content;
    legacy += path;
    legacy += '\0';
    legacy += content;
    impl_->files.push_back(std::move(file));
  }
  impl_->fingerprint = XXH3_64bits(fp.data(), fp.size());
  impl_->path_fingerprint = XXH3_64bits(legacy.data(), legacy.size());
  if (impl_->first_window.back() == 0) {
    throw Error(ErrorCode::kInvalidConfig, config.paths.front(),
                who + ": no file holds a full window of " + std::to_string(window) +
                    " tokens; lower sequence_length or add data");
  }
}

TokenFileSource::~TokenFileSource() = default;

uint64_t TokenFileSource::num_windows() const { return impl_->first_window.back(); }

std::pair<uint32_t, uint64_t> TokenFileSource::locate(uint64_t k) const {
  if (k >= num_windows()) {
    throw Error(ErrorCode::kInternal, "",
                "window " + std::to_string(k) + " out of range (" + std::to_string(num_windows()) + " windows)");
  }
  const auto& fw = impl_->first_window;
  // Last file whose first window is <= k (files with 0 windows are skipped naturally).
  const auto it = std::upper_bound(fw.begin(), fw.end(), k);
  const uint32_t file = static_cast<uint32_t>(it - fw.begin() - 1);
  return {file, (k - fw[file]) * impl_->window};
}

TokenView TokenFileSource::window(uint64_t k) const {
  const auto loc = locate(k);
  const auto& file = impl_->files[loc.first];
  TokenView v;
  v.width = impl_->width;
  v.data = file->data() + loc.second * token_width_bytes(impl_->width);
  v.size = impl_->window;
  v.owner = std::shared_ptr<const void>(file, file.get());
  return v;
}

const std::string& TokenFileSource::path(uint32_t file) const { return impl_->files.at(file)->path(); }

uint64_t TokenFileSource::tail_tokens() const { return impl_->tail_tokens; }

uint64_t TokenFileSource::fingerprint() const { return impl_->fingerprint; }

uint64_t TokenFileSource::path_fingerprint() const { return impl_->path_fingerprint; }

std::vector<DataFileFingerprint> TokenFileSource::data_files() const { return impl_->data_files; }

}  // namespace groupmates
