// ReplayBuffer: the best rows emitted so far, to be emitted again.
#include "selection/replay_buffer.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "groupmates/error.h"

namespace groupmates {

namespace {

constexpr char kReplayMagic[8] = {'g', 'm', 'r', 'p', 'l', 'y', '0', '2'};

void put(std::string& out, uint64_t v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); }

}  // namespace

ReplayBuffer::ReplayBuffer(uint64_t capacity, uint64_t max_replays, const ReplayRelatives& relatives)
    : capacity_(capacity), max_replays_(max_replays), relatives_(relatives), shingler_(relatives.shingles) {
  if (capacity < 1 || capacity > 65536)
    throw Error(ErrorCode::kInvalidConfig, "ReplayBuffer.capacity", "got " + std::to_string(capacity) + ", allowed [1, 65536]");
  if (max_replays < 1) throw Error(ErrorCode::kInvalidConfig, "ReplayBuffer.max_replays", "got 0, allowed >= 1");
  if (!(relatives.overlap >= 0 && relatives.overlap <= 1))
    throw Error(ErrorCode::kInvalidConfig, "ReplayBuffer.relatives.overlap",
                "got " + std::to_string(relatives.overlap) + ", allowed [0, 1]");
}

std::vector<uint32_t> ReplayBuffer::shingles_of(const int64_t* tokens, int64_t width) const {
  std::vector<uint32_t> keys;
  if (relatives_.overlap <= 0) return keys;
  shingler_.sampled(tokens, width, keys);
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

ReplayEntry ReplayBuffer::take(uint64_t i) {
  ReplayEntry& e = entries_.at(i);
  e.replays += 1;
  ReplayEntry out = e;
  if (e.replays >= max_replays_) entries_.erase(entries_.begin() + int64_t(i));
  return out;
}

uint64_t ReplayBuffer::offer(double score, const CandidateId& id, const int64_t* tokens, int64_t width) {
  if (!std::isfinite(score) || width < 1) return 0;
  if (entries_.size() >= capacity_ && !(score < entries_.back().score)) return 0;
  std::vector<uint32_t> keys = shingles_of(tokens, width);
  uint64_t replaced = 0;
  if (!keys.empty()) {
    // Its relatives: entries holding at least `overlap` of its shingles. A better one keeps its place; else the
    // row replaces them all.
    std::vector<size_t> related;  // ascending
    for (size_t i = 0; i < entries_.size(); ++i) {
      const std::vector<uint32_t>& theirs = entries_[i].shingles;
      size_t common = 0;
      for (size_t a = 0, b = 0; a < keys.size() && b < theirs.size();) {
        if (keys[a] < theirs[b]) ++a;
        else if (theirs[b] < keys[a]) ++b;
        else ++common, ++a, ++b;
      }
      if (double(common) / double(keys.size()) >= relatives_.overlap) {
        if (!(score < entries_[i].score)) return 1;
        related.push_back(i);
      }
    }
    for (auto i = related.rbegin(); i != related.rend(); ++i) entries_.erase(entries_.begin() + int64_t(*i));
    replaced = related.size();
  }
  const auto at = std::upper_bound(entries_.begin(), entries_.end(), score,
                                   [](double s, const ReplayEntry& e) { return s < e.score; });
  ReplayEntry e;
  e.score = score;
  e.id = id;
  e.tokens.assign(tokens, tokens + width);
  e.shingles = std::move(keys);
  entries_.insert(at, std::move(e));
  if (entries_.size() > capacity_) entries_.pop_back();
  return replaced;
}

std::string ReplayBuffer::save() const {
  // magic, capacity, count, then per row: score bits, hash, source, document, offset, width, tokens
  std::string out(kReplayMagic, sizeof kReplayMagic);
  put(out, capacity_);
  put(out, entries_.size());
  for (const ReplayEntry& e : entries_) {
    uint64_t bits = 0;
    std::memcpy(&bits, &e.score, sizeof bits);
    put(out, bits);
    put(out, e.id.hash);
    put(out, e.id.source);
    put(out, e.id.document);
    put(out, e.id.offset);
    put(out, e.replays);
    put(out, e.tokens.size());
    out.append(reinterpret_cast<const char*>(e.tokens.data()), e.tokens.size() * sizeof(int64_t));
  }
  return out;
}

void ReplayBuffer::load(const std::string& blob) {
  const auto bad = [&](const std::string& why) {
    throw Error(ErrorCode::kInvalidState, "ReplayBuffer::load", why + ": the state was edited or truncated");
  };
  size_t pos = sizeof kReplayMagic;
  const auto get = [&]() {
    if (blob.size() - pos < sizeof(uint64_t)) bad("ends inside a field at byte " + std::to_string(pos));
    uint64_t v = 0;
    std::memcpy(&v, blob.data() + pos, sizeof v);
    pos += sizeof v;
    return v;
  };
  if (blob.size() < sizeof kReplayMagic || std::memcmp(blob.data(), kReplayMagic, sizeof kReplayMagic) != 0)
    bad("not a replay-buffer blob (" + std::to_string(blob.size()) + " bytes)");
  const uint64_t capacity = get(), count = get();
  if (capacity != capacity_)
    throw Error(ErrorCode::kInvalidState, "ReplayBuffer::load",
                "saved with replay_rows " + std::to_string(capacity) + ", this loader has " + std::to_string(capacity_) +
                    ": restore with the SelectionConfig.replay_rows the state was saved under");
  if (count > capacity) bad(std::to_string(count) + " rows in a buffer of " + std::to_string(capacity));
  std::vector<ReplayEntry> entries(count);
  for (ReplayEntry& e : entries) {
    const uint64_t bits = get();
    std::memcpy(&e.score, &bits, sizeof bits);
    e.id.hash = get();
    const uint64_t source = get();
    if (source > UINT32_MAX) bad("source " + std::to_string(source));
    e.id.source = uint32_t(source);
    e.id.document = get();
    e.id.offset = get();
    e.replays = get();
    if (e.replays >= max_replays_)
      throw Error(ErrorCode::kInvalidState, "ReplayBuffer::load",
                  "holds a row replayed " + std::to_string(e.replays) + " times, at or above replay_max_repeats " +
                      std::to_string(max_replays_) + ": restore with the SelectionConfig.replay_max_repeats the state was "
                      "saved under (or a higher one)");
    const uint64_t width = get();
    if (width < 1 || width > (blob.size() - pos) / sizeof(int64_t)) bad("a row of " + std::to_string(width) + " tokens");
    e.tokens.resize(width);
    std::memcpy(e.tokens.data(), blob.data() + pos, width * sizeof(int64_t));
    pos += width * sizeof(int64_t);
    if (!std::isfinite(e.score)) bad("a non-finite score");
    e.shingles = shingles_of(e.tokens.data(), int64_t(width));
  }
  if (pos != blob.size()) bad(std::to_string(blob.size() - pos) + " bytes after the last row");
  for (size_t i = 1; i < entries.size(); ++i)
    if (entries[i].score < entries[i - 1].score) bad("rows out of order");
  entries_ = std::move(entries);
}

}  // namespace groupmates
