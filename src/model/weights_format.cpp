#include "model/weights_format.h"

#include <xxhash.h>

#include <cstring>
#include <map>
#include <set>

#include "groupmates/error.h"

namespace groupmates {

namespace {

constexpr char kWeightsMagic[8] = {'G', 'M', 'W', 'E', 'I', 'G', 'H', 'T'};
constexpr size_t kWeightsHeader = 24;
constexpr uint32_t kWeightsVersion = 2;
constexpr uint32_t kMaxRank = 8;
constexpr char kDeltaMagic[8] = {'G', 'M', 'W', 'D', 'E', 'L', 'T', 'A'};
constexpr uint32_t kDeltaVersion = 1;

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

void put_string(std::string& out, std::string_view s) {
  put_le(out, s.size(), 4);
  out.append(s.data(), s.size());
}

std::string hex64(uint64_t v) {
  static const char digits[] = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) s[i] = digits[v & 15];
  return s;
}

// Reads the payload front to back; every read is bounds-checked and a failure names the field.
class PayloadReader {
 public:
  PayloadReader(std::string_view payload, const std::string& origin) : p_(payload), origin_(origin) {}

  uint64_t le(int bytes, const std::string& field) {
    need(bytes, field);
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p_[at_ + i]);
    at_ += bytes;
    return v;
  }
  std::string_view take(uint64_t n, const std::string& field) {
    need(n, field);
    const std::string_view s = p_.substr(at_, n);
    at_ += n;
    return s;
  }
  std::string string(const std::string& field) { return std::string(take(le(4, field + " length"), field)); }
  bool done() const { return at_ == p_.size(); }
  uint64_t at() const { return at_; }

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(ErrorCode::kCorruptData, origin_,
                "influence-model weights, payload byte " + std::to_string(at_) + ": " + what +
                    " (the checksum matched: written by another program or edited on purpose): save them again");
  }

 private:
  void need(uint64_t n, const std::string& field) const {
    if (n > p_.size() - at_)
      fail(field + " needs " + std::to_string(n) + " bytes, " + std::to_string(p_.size() - at_) + " remain");
  }
  std::string_view p_;
  const std::string& origin_;
  uint64_t at_ = 0;
};

// The payload of a framed blob whose magic and 24-byte header the caller checked: its size and XXH3 checked against
// the header's; `what` names the kind of blob in errors, `fix` ends them.
std::string_view checked_payload(std::string_view blob, const std::string& what, const std::string& fix,
                                 const std::string& origin) {
  PayloadReader header(blob.substr(8, 16), origin);
  const uint64_t size = header.le(8, "size"), stored = header.le(8, "checksum");
  const uint64_t follow = blob.size() - kWeightsHeader;
  if (size != follow)
    throw Error(ErrorCode::kCorruptData, origin,
                what + ": the header gives " + std::to_string(size) + " payload bytes, " + std::to_string(follow) +
                    " follow it (" + (size > follow ? "truncated" : "bytes appended") + "): " + fix);
  const std::string_view payload = blob.substr(kWeightsHeader);
  const uint64_t actual = XXH3_64bits(payload.data(), payload.size());
  if (actual != stored)
    throw Error(ErrorCode::kCorruptData, origin,
                what + " corrupted: XXH3 of the " + std::to_string(size) + " payload bytes is " + hex64(actual) +
                    ", the header says " + hex64(stored) + " (the bytes changed after they were saved): " + fix);
  return payload;
}

}  // namespace

size_t element_size(std::string_view dtype) {
  if (dtype == "float64" || dtype == "int64") return 8;
  if (dtype == "float32" || dtype == "int32") return 4;
  if (dtype == "float16" || dtype == "bfloat16" || dtype == "int16") return 2;
  if (dtype == "int8" || dtype == "uint8" || dtype == "bool") return 1;
  return 0;
}

bool is_torch_archive(std::string_view blob) { return blob.size() >= 4 && blob.substr(0, 4) == std::string_view("PK\3\4", 4); }

std::string write_weights(const SavedWeights& weights) {
  // What read_weights would refuse is never written (a model that saved must load).
  const auto refuse = [](const std::string& what) {
    throw Error(ErrorCode::kInternal, "write_weights", what + ": the weights format cannot hold it");
  };
  const auto check_string = [&](std::string_view s, const char* what) {
    if (s.size() > UINT32_MAX) refuse(std::string(what) + " of " + std::to_string(s.size()) + " bytes");
  };
  check_string(weights.encoder_identity, "an encoder identity");
  if (weights.tensors.size() > UINT32_MAX) refuse(std::to_string(weights.tensors.size()) + " tensors");
  for (const SavedTensor& t : weights.tensors) {
    check_string(t.name, "a tensor name");
    if (t.name.empty()) refuse("a tensor without a name");
    const size_t elem = element_size(t.dtype);
    if (elem == 0) refuse("tensor '" + t.name + "' of dtype '" + t.dtype + "'");
    if (t.shape.size() > kMaxRank) refuse("tensor '" + t.name + "' of rank " + std::to_string(t.shape.size()));
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0 || uint64_t(d) > (uint64_t{1} << 40) || (d != 0 && numel > (uint64_t{1} << 40) / uint64_t(d)))
        refuse("tensor '" + t.name + "' with a dim of " + std::to_string(d));
      numel *= uint64_t(d);
    }
    if (t.bytes.size() != numel * elem) refuse("tensor '" + t.name + "' with " + std::to_string(t.bytes.size()) + " bytes for " + std::to_string(numel) + " elements");
  }
  // One allocation of the exact size (a model's weights are ~17 MB: no growth by doubling, no second copy).
  uint64_t size = 4 + 4 + weights.encoder_identity.size() + 4;
  for (const SavedTensor& t : weights.tensors)
    size += 4 + t.name.size() + 4 + t.dtype.size() + 4 + 8 * t.shape.size() + 8 + t.bytes.size();
  std::string out;
  out.reserve(kWeightsHeader + size);
  out.append(kWeightsMagic, sizeof(kWeightsMagic));
  out.append(16, '\0');  // size and checksum, filled in below
  put_le(out, kWeightsVersion, 4);
  put_string(out, weights.encoder_identity);
  put_le(out, weights.tensors.size(), 4);
  for (const SavedTensor& t : weights.tensors) {
    put_string(out, t.name);
    put_string(out, t.dtype);
    put_le(out, t.shape.size(), 4);
    for (int64_t d : t.shape) put_le(out, static_cast<uint64_t>(d), 8);
    put_le(out, t.bytes.size(), 8);
    out.append(t.bytes.data(), t.bytes.size());
  }
  const uint64_t payload = out.size() - kWeightsHeader;
  const uint64_t sum = XXH3_64bits(out.data() + kWeightsHeader, payload);
  for (int i = 0; i < 8; ++i) out[8 + i] = static_cast<char>((payload >> (8 * i)) & 0xff);
  for (int i = 0; i < 8; ++i) out[16 + i] = static_cast<char>((sum >> (8 * i)) & 0xff);
  return out;
}

SavedWeights read_weights(std::string_view blob, const std::string& origin) {
  if (blob.size() < sizeof(kWeightsMagic) || std::memcmp(blob.data(), kWeightsMagic, sizeof(kWeightsMagic)) != 0)
    throw Error(ErrorCode::kCorruptData, origin,
                "not influence-model weights: " + std::to_string(blob.size()) +
                    " bytes that do not start with \"GMWEIGHT\": give a file written by "
                    "RelationalInfluenceModel::save_file (or the blob of export_weights)");
  if (blob.size() < kWeightsHeader)
    throw Error(ErrorCode::kCorruptData, origin,
                "influence-model weights truncated inside their " + std::to_string(kWeightsHeader) + "-byte header (" +
                    std::to_string(blob.size()) + " bytes): save them again");
  const std::string_view payload =
      checked_payload(blob, "influence-model weights", "save them again or restore a good copy", origin);
  PayloadReader in(payload, origin);
  const uint64_t version = in.le(4, "format version");
  if (version != kWeightsVersion)
    in.fail("format version " + std::to_string(version) + ", this groupmates reads " + std::to_string(kWeightsVersion));
  SavedWeights w;
  w.encoder_identity = in.string("encoder identity");
  const uint64_t count = in.le(4, "tensor count");
  std::set<std::string> names;
  for (uint64_t i = 0; i < count; ++i) {
    const std::string field = "tensor " + std::to_string(i);
    SavedTensor t;
    t.name = in.string(field + " name");
    if (t.name.empty() || !names.insert(t.name).second) in.fail(field + ": name '" + t.name + "' is empty or repeated");
    t.dtype = in.string(field + " dtype");
    const size_t elem = element_size(t.dtype);
    if (elem == 0) in.fail(field + " ('" + t.name + "'): unknown dtype '" + t.dtype.substr(0, 40) + "'");
    const uint64_t rank = in.le(4, field + " rank");
    if (rank > kMaxRank) in.fail(field + " ('" + t.name + "'): rank " + std::to_string(rank) + " > " + std::to_string(kMaxRank));
    uint64_t numel = 1;
    for (uint64_t d = 0; d < rank; ++d) {
      const uint64_t dim = in.le(8, field + " dim");
      if (dim > (uint64_t{1} << 40) || (dim != 0 && numel > (uint64_t{1} << 40) / dim))
        in.fail(field + " ('" + t.name + "'): dim " + std::to_string(d) + " = " + std::to_string(dim) + " is too large");
      numel *= dim;
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    const uint64_t nbytes = in.le(8, field + " byte count");
    if (nbytes != numel * elem)
      in.fail(field + " ('" + t.name + "'): " + std::to_string(nbytes) + " bytes for " + std::to_string(numel) + " " +
              t.dtype + " elements");
    t.bytes = in.take(nbytes, field + " ('" + t.name + "') elements");
    w.tensors.push_back(std::move(t));
  }
  if (!in.done()) in.fail(std::to_string(payload.size() - in.at()) + " bytes after the last tensor");
  return w;
}

namespace {

// The header's checksum of framed weights (read_weights has checked the blob).
uint64_t weights_checksum(std::string_view blob) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(blob[16 + i]);
  return v;
}

bool same_tensor(const SavedTensor& a, const SavedTensor& b) {
  return a.name == b.name && a.dtype == b.dtype && a.shape == b.shape && a.bytes == b.bytes;
}

}  // namespace

bool is_weights_delta(std::string_view blob) {
  return blob.size() >= sizeof(kDeltaMagic) && std::memcmp(blob.data(), kDeltaMagic, sizeof(kDeltaMagic)) == 0;
}

std::string weights_delta(std::string_view blob, std::string_view base) {
  SavedWeights mine, theirs;
  try {
    mine = read_weights(blob, "weights_delta");
    theirs = read_weights(base, "weights_delta base");
  } catch (const Error&) {
    return std::string();
  }
  std::map<std::string_view, const SavedTensor*> by_name;
  for (const SavedTensor& t : theirs.tensors) by_name[t.name] = &t;
  SavedWeights own;
  own.encoder_identity = mine.encoder_identity;
  std::string list;
  bool shared_any = false;
  for (const SavedTensor& t : mine.tensors) {
    const auto it = by_name.find(t.name);
    const bool shared = it != by_name.end() && same_tensor(t, *it->second);
    put_string(list, t.name);
    list += static_cast<char>(shared ? 1 : 0);
    if (shared) shared_any = true;
    else own.tensors.push_back(t);
  }
  if (!shared_any) return std::string();
  std::string out(kDeltaMagic, sizeof(kDeltaMagic));
  out.append(16, '\0');  // size and checksum, filled in below
  put_le(out, kDeltaVersion, 4);
  put_le(out, weights_checksum(base), 8);
  put_le(out, mine.tensors.size(), 4);
  out += list;
  out += write_weights(own);
  const uint64_t payload = out.size() - kWeightsHeader;
  const uint64_t sum = XXH3_64bits(out.data() + kWeightsHeader, payload);
  for (int i = 0; i < 8; ++i) out[8 + i] = static_cast<char>((payload >> (8 * i)) & 0xff);
  for (int i = 0; i < 8; ++i) out[16 + i] = static_cast<char>((sum >> (8 * i)) & 0xff);
  return out;
}

std::string apply_weights_delta(std::string_view delta, std::string_view base, const std::string& origin) {
  if (!is_weights_delta(delta) || delta.size() < kWeightsHeader)
    throw Error(ErrorCode::kCorruptData, origin,
                "not an influence-model weights delta: " + std::to_string(delta.size()) +
                    " bytes that do not start with \"GMWDELTA\" and a 24-byte header: the state text was edited or "
                    "truncated; restore a good copy");
  const std::string_view payload =
      checked_payload(delta, "influence-model weights delta", "restore a good copy of the state", origin);
  PayloadReader in(payload, origin);
  const uint64_t version = in.le(4, "delta format version");
  if (version != kDeltaVersion)
    throw Error(ErrorCode::kCorruptData, origin,
                "influence-model weights delta of format version " + std::to_string(version) + ", this groupmates reads " +
                    std::to_string(kDeltaVersion) + ": restore the state with the groupmates that saved it, or a newer one");
  const uint64_t base_sum = in.le(8, "base checksum");
  const SavedWeights theirs = read_weights(base, origin + " (the weights it shares tensors with)");
  if (weights_checksum(base) != base_sum)
    throw Error(ErrorCode::kCorruptData, origin,
                "influence-model weights delta saved against the weights with checksum " + hex64(base_sum) +
                    ", the weights given as its base have " + hex64(weights_checksum(base)) +
                    ": the state's keys were mixed from different states; restore every gm.* key from one saved state");
  const uint64_t count = in.le(4, "tensor count");
  std::vector<std::pair<std::string, bool>> list;
  std::set<std::string> names;
  for (uint64_t i = 0; i < count; ++i) {
    const std::string field = "tensor " + std::to_string(i);
    std::string name = in.string(field + " name");
    if (name.empty() || !names.insert(name).second) in.fail(field + ": name '" + name.substr(0, 40) + "' is empty or repeated");
    const uint64_t shared = in.le(1, field + " source");
    if (shared > 1) in.fail(field + " ('" + name.substr(0, 40) + "'): source " + std::to_string(shared) + ", not 0 or 1");
    list.emplace_back(std::move(name), shared == 1);
  }
  const SavedWeights own = read_weights(payload.substr(in.at()), origin + " (its own tensors)");
  std::map<std::string_view, const SavedTensor*> base_by_name, own_by_name;
  for (const SavedTensor& t : theirs.tensors) base_by_name[t.name] = &t;
  for (const SavedTensor& t : own.tensors) own_by_name[t.name] = &t;
  SavedWeights out;
  out.encoder_identity = own.encoder_identity;
  uint64_t own_used = 0;
  for (const auto& [name, shared] : list) {
    const auto& from = shared ? base_by_name : own_by_name;
    const auto it = from.find(name);
    if (it == from.end())
      in.fail("tensor '" + name.substr(0, 40) + "' is listed " + (shared ? "from the base, which" : "as its own, but the delta") +
              " does not hold it");
    if (!shared) ++own_used;
    out.tensors.push_back(*it->second);
  }
  if (own_used != own.tensors.size())
    in.fail(std::to_string(own.tensors.size() - own_used) + " of its own tensors are not in its tensor list");
  return write_weights(out);
}

}  // namespace groupmates
