// SeenShingles: a bounded memory of the sampled token shingles of recently selected rows.
#include "selection/seen_shingles.h"

#include <cstring>

#include "groupmates/error.h"
#include "util/seed.h"

namespace groupmates {

namespace {

using util::splitmix64;

constexpr char kSeenMagic[8] = {'g', 'm', 's', 'e', 'e', 'n', '0', '1'};

}  // namespace

void SeenShinglesConfig::validate() const {
  if (shingle_tokens < 2 || shingle_tokens > 64)
    throw Error(ErrorCode::kInvalidConfig, "SeenShinglesConfig.shingle_tokens",
                "got " + std::to_string(shingle_tokens) + ", allowed [2, 64]");
  if (sample_every < 1 || sample_every > 1024)
    throw Error(ErrorCode::kInvalidConfig, "SeenShinglesConfig.sample_every",
                "got " + std::to_string(sample_every) + ", allowed [1, 1024]");
  if (capacity < 1 || capacity > (uint64_t(1) << 24))
    throw Error(ErrorCode::kInvalidConfig, "SeenShinglesConfig.capacity",
                "got " + std::to_string(capacity) + ", allowed [1, 2^24]");
}

SeenShingles::SeenShingles(const SeenShinglesConfig& config) : config_(config) { config_.validate(); }

void SeenShingles::sampled(const int64_t* row, int64_t width, std::vector<uint32_t>& out) const {
  const int64_t k = config_.shingle_tokens;
  int64_t clean = 0;  // tokens since the last padding, up to and including i
  for (int64_t i = 0; i < width; ++i) {
    clean = row[i] == config_.pad_id ? 0 : clean + 1;
    if (clean < k) continue;
    uint64_t h = splitmix64(config_.seed ^ 0x5eed5eedULL);
    for (int64_t j = i - k + 1; j <= i; ++j) h = splitmix64(h ^ uint64_t(row[j]));
    if ((h >> 32) % config_.sample_every == 0) out.push_back(uint32_t(h));
  }
}

double SeenShingles::overlap(const int64_t* row, int64_t width) const {
  std::vector<uint32_t> keys;
  sampled(row, width, keys);
  if (keys.empty()) return 0.0;
  size_t hit = 0;
  for (const uint32_t key : keys) hit += counts_.count(key);
  return double(hit) / double(keys.size());
}

void SeenShingles::add(const int64_t* row, int64_t width) {
  std::vector<uint32_t> keys;
  sampled(row, width, keys);
  for (const uint32_t key : keys) {
    if (ring_.size() < config_.capacity) {
      ring_.push_back(key);
    } else {
      uint32_t& old = ring_[head_];
      auto it = counts_.find(old);
      if (--it->second == 0) counts_.erase(it);
      old = key;
      head_ = (head_ + 1) % config_.capacity;
    }
    counts_[key] += 1;
  }
}

std::string SeenShingles::save() const {
  // magic, shingle_tokens, sample_every, capacity, seed, pad_id, head, size, keys (oldest first once full)
  std::string out(kSeenMagic, sizeof kSeenMagic);
  const uint64_t fields[] = {uint64_t(config_.shingle_tokens), config_.sample_every, config_.capacity, config_.seed,
                             uint64_t(config_.pad_id), head_, uint64_t(ring_.size())};
  out.append(reinterpret_cast<const char*>(fields), sizeof fields);
  if (!ring_.empty()) out.append(reinterpret_cast<const char*>(ring_.data()), ring_.size() * sizeof(uint32_t));
  return out;
}

void SeenShingles::load(const std::string& blob) {
  constexpr size_t kHeader = sizeof kSeenMagic + 7 * sizeof(uint64_t);
  const auto bad = [](const std::string& why) { throw Error(ErrorCode::kInvalidState, "SeenShingles::load", why); };
  if (blob.size() < kHeader || std::memcmp(blob.data(), kSeenMagic, sizeof kSeenMagic) != 0)
    bad("not a seen-shingles blob (" + std::to_string(blob.size()) + " bytes): the state was edited or truncated");
  uint64_t f[7];
  std::memcpy(f, blob.data() + sizeof kSeenMagic, sizeof f);
  if (f[0] != uint64_t(config_.shingle_tokens) || f[1] != config_.sample_every || f[2] != config_.capacity ||
      f[3] != config_.seed || f[4] != uint64_t(config_.pad_id))
    bad("saved with shingle_tokens " + std::to_string(f[0]) + ", sample_every " + std::to_string(f[1]) + ", capacity " +
        std::to_string(f[2]) + " (seed, pad_id " + std::to_string(int64_t(f[4])) +
        "): restore with the SelectionConfig.seen_* settings and seed the state was saved under");
  const uint64_t head = f[5], size = f[6];
  if (size > config_.capacity || (size < config_.capacity && head != 0) || (size > 0 && head >= size) ||
      blob.size() != kHeader + size * sizeof(uint32_t))
    bad("head " + std::to_string(head) + ", " + std::to_string(size) + " keys in " + std::to_string(blob.size()) +
        " bytes: the state was edited or truncated");
  ring_.assign(size, 0);
  if (size > 0) std::memcpy(ring_.data(), blob.data() + kHeader, size * sizeof(uint32_t));  // data() may be null
  head_ = head;
  counts_.clear();
  for (const uint32_t key : ring_) counts_[key] += 1;
}

}  // namespace groupmates
