// Megatron-LM indexed dataset reader (MMIDIDX version 1). See megatron_source.h for the layout.
#include "sources/megatron_source.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>

#include "groupmates/error.h"
#include "sources/mapped_file.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "groupmates reads Megatron files in place: a little-endian host is required");

namespace groupmates {
namespace {

constexpr char kMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
constexpr uint64_t kHeaderBytes = 9 + 8 + 1 + 8 + 8;  // magic, version, dtype, N, D
constexpr const char* kRegenerate =
    "regenerate it (Megatron-LM tools/preprocess_data.py) or remove the prefix from the source";

template <typename T>
T load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

std::string strip_suffix(const std::string& path) {
  for (const char* ext : {".bin", ".idx"}) {
    const size_t n = std::strlen(ext);
    if (path.size() > n && path.compare(path.size() - n, n, ext) == 0) return path.substr(0, path.size() - n);
  }
  return path;
}

}  // namespace

bool megatron_dtype_width(uint8_t code, TokenWidth* width) {
  switch (code) {
    case 1: *width = TokenWidth::kU8; return true;
    case 3: *width = TokenWidth::kI16; return true;
    case 4: *width = TokenWidth::kI32; return true;
    case 5: *width = TokenWidth::kI64; return true;
    case 8: *width = TokenWidth::kU16; return true;
    default: return false;  // 2 int8 (no TokenWidth), 6 float64, 7 float32, unknown
  }
}

const char* megatron_dtype_name(uint8_t code) {
  switch (code) {
    case 1: return "uint8";
    case 2: return "int8";
    case 3: return "int16";
    case 4: return "int32";
    case 5: return "int64";
    case 6: return "float64";
    case 7: return "float32";
    case 8: return "uint16";
    default: return "unknown";
  }
}

struct MegatronSource::File {
  std::string prefix, idx_path, bin_path;
  std::shared_ptr<const MappedFile> idx, bin;
  uint8_t dtype = 0;
  TokenWidth width = TokenWidth::kU16;
  uint64_t n = 0, d = 0;
  const char* sizes = nullptr;     // int32[n], unaligned
  const char* pointers = nullptr;  // int64[n], unaligned

  int64_t size_at(uint64_t j) const { return load<int32_t>(sizes + 4 * j); }
  int64_t pointer_at(uint64_t j) const { return load<int64_t>(pointers + 8 * j); }
};

MegatronSource::MegatronSource(const SourceConfig& config, BadInputPolicy policy)
    : source_name_(config.name.empty() ? "megatron" : config.name), policy_(policy) {
  if (config.paths.empty()) {
    throw Error(ErrorCode::kInvalidConfig, "",
                "source '" + source_name_ + "': paths is empty; list Megatron prefixes (data/wiki for data/wiki.idx + data/wiki.bin)");
  }
  std::string fp = "megatron\n", legacy = fp;  // fp by content; legacy (version 1) with the prefixes
  first_doc_.push_back(0);
  for (const std::string& path : config.paths) {
    auto f = std::make_unique<File>();
    f->prefix = strip_suffix(path);
    f->idx_path = f->prefix + ".idx";
    f->bin_path = f->prefix + ".bin";
    f->idx = std::make_shared<const MappedFile>(f->idx_path, MappedFile::Advice::kRandom);
    const MappedFile& idx = *f->idx;
    const std::string& ip = f->idx_path;
    if (idx.size() < kHeaderBytes) {
      throw Error(ErrorCode::kCorruptData, ip,
                  "file has " + std::to_string(idx.size()) + " bytes, less than the " +
                      std::to_string(kHeaderBytes) + "-byte MMIDIDX header: truncated or corrupt .idx, " + kRegenerate);
    }
    if (std::memcmp(idx.data(), kMagic, sizeof kMagic) != 0) {
      throw Error(ErrorCode::kCorruptData, ip + ":0",
                  "bad magic: not a Megatron-LM MMIDIDX index (expected \"MMIDIDX\\0\\0\"); check the path, " +
                      std::string(kRegenerate));
    }
    const uint64_t version = load<uint64_t>(idx.data() + 9);
    if (version != 1) {
      throw Error(ErrorCode::kCorruptData, ip + ":9",
                  "unsupported MMIDIDX version " + std::to_string(version) + " (only version 1 is supported)");
    }
    f->dtype = static_cast<uint8_t>(idx.data()[17]);
    if (!megatron_dtype_width(f->dtype, &f->width)) {
      throw Error(ErrorCode::kCorruptData, ip + ":17",
                  "unsupported token dtype code " + std::to_string(f->dtype) + " (" + megatron_dtype_name(f->dtype) +
                      "); supported: 1 uint8, 3 int16, 4 int32, 5 int64, 8 uint16");
    }
    f->n = load<uint64_t>(idx.data() + 18);
    f->d = load<uint64_t>(idx.data() + 26);
    // Exact size, computed without overflow: header + 4N + 8N + 8D.
    const uint64_t max_entries = (UINT64_MAX - kHeaderBytes) / 24;
    if (f->n > max_entries || f->d > max_entries) {
      throw Error(ErrorCode::kCorruptData, ip + ":18",
                  "absurd counts in header (N=" + std::to_string(f->n) + ", D=" + std::to_string(f->d) +
                      "): truncated or corrupt .idx, " + kRegenerate);
    }
    const uint64_t expected = kHeaderBytes + 12 * f->n + 8 * f->d;
    if (idx.size() != expected) {
      throw Error(ErrorCode::kCorruptData, ip,
                  "size is " + std::to_string(idx.size()) + " bytes but the header (N=" + std::to_string(f->n) +
                      " sequences, D=" + std::to_string(f->d) + " document indices) implies exactly " +
                      std::to_string(expected) + " bytes: truncated or corrupt .idx, " + kRegenerate);
    }
    if (f->n == 0) {
      throw Error(ErrorCode::kCorruptData, ip,
                  "index holds no documents (N=0): remove this prefix from the source's paths");
    }
    f->sizes = idx.data() + kHeaderBytes;
    f->pointers = f->sizes + 4 * f->n;
    f->bin = std::make_shared<const MappedFile>(f->bin_path, MappedFile::Advice::kRandom);
    // O(1) guard against a truncated .bin: the last sequence must end inside it.
    const int64_t last_size = f->size_at(f->n - 1), last_ptr = f->pointer_at(f->n - 1);
    const uint64_t w = token_width_bytes(f->width);
    if (last_size >= 0 && last_ptr >= 0) {
      const uint64_t end = static_cast<uint64_t>(last_ptr) + static_cast<uint64_t>(last_size) * w;
      if (end > f->bin->size()) {
        throw Error(ErrorCode::kCorruptData, f->bin_path,
                    "size is " + std::to_string(f->bin->size()) + " bytes but the last document (" +
                        std::to_string(f->n - 1) + ") ends at byte " + std::to_string(end) +
                        " per " + ip + ": truncated .bin or mismatched .idx, " + kRegenerate);
      }
    }
    data_files_.push_back({f->idx_path, idx.size(), idx.sampled_hash()});
    data_files_.push_back({f->bin_path, f->bin->size(), f->bin->sampled_hash()});
    legacy += f->prefix;
    legacy += '\0';
    const std::string content = std::to_string(idx.size()) + " " + std::to_string(f->bin->size()) + " " + std::to_string(f->n) + " " +
          std::to_string(f->d) + " " + std::to_string(f->dtype) + " " +
          std::to_string(data_files_[data_files_.size() - 2].content_hash) + " " +
          std::to_string(data_files_.back().content_hash) + "\n";
    fp += content;
    legacy += content;
    first_doc_.push_back(first_doc_.back() + f->n);
    files_.push_back(std::move(f));
  }
  fingerprint_ = XXH3_64bits(fp.data(), fp.size());
  path_fingerprint_ = XXH3_64bits(legacy.data(), legacy.size());
}

MegatronSource::~MegatronSource() = default;

uint64_t MegatronSource::num_documents() const { return first_doc_.back(); }

MegatronSource::Entry MegatronSource::entry(uint64_t i) const {
  if (i >= num_documents()) {
    throw Error(ErrorCode::kInternal, "",
                "document " + std::to_string(i) + " out of range (" + std::to_string(num_documents()) + " documents)");
  }
  const auto it = std::upper_bound(first_doc_.begin(), first_doc_.end(), i);
  Entry e;
  e.file = static_cast<uint32_t>(it - first_doc_.begin() - 1);
  e.local = i - first_doc_[e.file];
  const File& f = *files_[e.file];
  e.size = f.size_at(e.local);
  e.pointer = f.pointer_at(e.local);
  return e;
}

std::string MegatronSource::check(uint64_t i, std::string* reason) const {
  const Entry e = entry(i);
  const File& f = *files_[e.file];
  const uint64_t w = token_width_bytes(f.width);
  auto fail = [&](const char* key, const std::string& what) {
    if (reason != nullptr) *reason = key;
    return what;
  };
  if (e.size < 0) {
    return fail("corrupt_index", "negative size " + std::to_string(e.size) + " in " + f.idx_path +
                                     " (entry " + std::to_string(e.local) + ")");
  }
  if (e.pointer < 0) {
    return fail("corrupt_index", "negative byte offset " + std::to_string(e.pointer) + " in " + f.idx_path +
                                     " (entry " + std::to_string(e.local) + ")");
  }
  if (static_cast<uint64_t>(e.pointer) % w != 0) {
    return fail("corrupt_index", "byte offset " + std::to_string(e.pointer) + " is not a multiple of the token width " +
                                     std::to_string(w) + " (entry " + std::to_string(e.local) + " of " + f.idx_path + ")");
  }
  const uint64_t begin = static_cast<uint64_t>(e.pointer);
  const uint64_t bytes = static_cast<uint64_t>(e.size) * w;
  if (begin > f.bin->size() || bytes > f.bin->size() - begin) {
    return fail("out_of_bounds", "document spans bytes [" + std::to_string(begin) + ", " +
                                     std::to_string(begin + bytes) + ") but " + f.bin_path + " has only " +
                                     std::to_string(f.bin->size()) + " bytes (entry " + std::to_string(e.local) +
                                     " of " + f.idx_path + "): truncated .bin or mismatched .idx");
  }
  return std::string();
}

Document MegatronSource::read(uint64_t i, SkipCounters& skips) const {
  std::string reason;
  const std::string problem = check(i, &reason);
  Document doc;
  if (!problem.empty()) {
    if (policy_ == BadInputPolicy::kSkip) {
      skips.add(source_name_, reason, locate(i));
      doc.skipped = true;
      return doc;
    }
    throw Error(ErrorCode::kCorruptData, locate(i),
                problem + "; regenerate the dataset, or set bad_input=skip to skip and count such documents");
  }
  const Entry e = entry(i);
  const File& f = *files_[e.file];
  const uint64_t bytes = static_cast<uint64_t>(e.size) * token_width_bytes(f.width);
  if (bytes >= (64u << 10)) f.bin->advise(MappedFile::Advice::kWillNeed, static_cast<uint64_t>(e.pointer), bytes);
  doc.tokens.data = f.bin->data() + e.pointer;
  doc.tokens.size = static_cast<uint64_t>(e.size);
  doc.tokens.width = f.width;
  doc.tokens.owner = std::shared_ptr<const void>(f.bin, f.bin.get());
  return doc;
}

std::string MegatronSource::locate(uint64_t i) const {
  const Entry e = entry(i);
  return files_[e.file]->bin_path + ":byte " + std::to_string(e.pointer) + " (document " + std::to_string(i) + ")";
}

uint64_t MegatronSource::fingerprint() const { return fingerprint_; }
uint64_t MegatronSource::path_fingerprint() const { return path_fingerprint_; }
std::vector<DataFileFingerprint> MegatronSource::data_files() const { return data_files_; }
uint32_t MegatronSource::num_files() const { return static_cast<uint32_t>(files_.size()); }
const std::string& MegatronSource::prefix(uint32_t f) const { return files_.at(f)->prefix; }
TokenWidth MegatronSource::width(uint32_t f) const { return files_.at(f)->width; }
uint8_t MegatronSource::dtype_code(uint32_t f) const { return files_.at(f)->dtype; }
uint64_t MegatronSource::bin_size(uint32_t f) const { return files_.at(f)->bin->size(); }
uint64_t MegatronSource::file_documents(uint32_t f) const { return files_.at(f)->n; }
uint64_t MegatronSource::file_document_index_count(uint32_t f) const { return files_.at(f)->d; }

}  // namespace groupmates
