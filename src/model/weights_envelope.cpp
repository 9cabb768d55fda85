#include "model/weights_envelope.h"

#include <xxhash.h>

#include <cstring>

#include "groupmates/error.h"

namespace groupmates {

namespace {

constexpr char kMagic[8] = {'G', 'M', 'W', 'E', 'I', 'G', 'H', 'T'};
constexpr size_t kHeader = 24;

void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

uint64_t get_u64(std::string_view b, size_t at) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[at + i]);
  return v;
}

std::string hex(uint64_t v) {
  static const char digits[] = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) s[i] = digits[v & 15];
  return s;
}

}  // namespace

std::string wrap_weights(std::string_view archive) {
  std::string out(kMagic, sizeof(kMagic));
  put_u64(out, archive.size());
  put_u64(out, XXH3_64bits(archive.data(), archive.size()));
  out.append(archive.data(), archive.size());
  return out;
}

UnwrappedWeights unwrap_weights(std::string_view blob, const std::string& origin) {
  const bool framed = blob.size() >= sizeof(kMagic) && std::memcmp(blob.data(), kMagic, sizeof(kMagic)) == 0;
  if (!framed) {
    if (blob.size() >= 4 && blob.substr(0, 4) == std::string_view("PK\3\4", 4)) return {blob, false};
    throw Error(ErrorCode::kCorruptData, origin,
                "not influence-model weights: " + std::to_string(blob.size()) +
                    " bytes that start with neither \"GMWEIGHT\" nor a torch archive's \"PK\": give a file written by "
                    "RelationalInfluenceModel::save_file (or the blob of export_weights)");
  }
  if (blob.size() < kHeader)
    throw Error(ErrorCode::kCorruptData, origin,
                "influence-model weights truncated inside their " + std::to_string(kHeader) + "-byte header (" +
                    std::to_string(blob.size()) + " bytes): save them again");
  const uint64_t size = get_u64(blob, 8), stored = get_u64(blob, 16);
  if (size != blob.size() - kHeader)
    throw Error(ErrorCode::kCorruptData, origin,
                "influence-model weights: the header gives " + std::to_string(size) + " payload bytes, " +
                    std::to_string(blob.size() - kHeader) + " follow it (" +
                    (size > blob.size() - kHeader ? "truncated" : "bytes appended") + "): save them again");
  const std::string_view archive = blob.substr(kHeader);
  const uint64_t actual = XXH3_64bits(archive.data(), archive.size());
  if (actual != stored)
    throw Error(ErrorCode::kCorruptData, origin,
                "influence-model weights corrupted: XXH3 of the " + std::to_string(size) + " payload bytes is " +
                    hex(actual) + ", the header says " + hex(stored) +
                    " (the bytes changed after they were saved): save them again or restore a good copy");
  return {archive, true};
}

}  // namespace groupmates
