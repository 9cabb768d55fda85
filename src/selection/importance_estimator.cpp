// ImportanceEstimator: hashed n-gram importance weights against a reference set (DSIR-style).
#include "selection/importance_estimator.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "groupmates/error.h"
#include "util/seed.h"

namespace groupmates {

namespace {

using util::splitmix64;

constexpr char kMagic[8] = {'g', 'm', 'i', 'm', 'p', '0', '0', '1'};  // reference + pool counts
constexpr char kMagicFeedback[8] = {'g', 'm', 'i', 'm', 'p', '0', '0', '2'};  // ... + feedback counts

}  // namespace

void ImportanceConfig::validate() const {
  if (buckets < 1 || buckets > (int64_t(1) << 24))
    throw Error(ErrorCode::kInvalidConfig, "ImportanceConfig.buckets", "got " + std::to_string(buckets) + ", allowed [1, 2^24]");
  if (max_ngram < 1 || max_ngram > 3)
    throw Error(ErrorCode::kInvalidConfig, "ImportanceConfig.max_ngram", "got " + std::to_string(max_ngram) + ", allowed 1..3");
  if (!(reference_mix > 0 && reference_mix <= 1))
    throw Error(ErrorCode::kInvalidConfig, "ImportanceConfig.reference_mix",
                "got " + std::to_string(reference_mix) + ", allowed (0, 1]");
  if (!(feedback_weight >= 0 && feedback_weight < 1))
    throw Error(ErrorCode::kInvalidConfig, "ImportanceConfig.feedback_weight",
                "got " + std::to_string(feedback_weight) + ", allowed [0, 1)");
}

ImportanceEstimator::ImportanceEstimator(const ImportanceConfig& config)
    : config_(config), reference_(size_t(std::max<int64_t>(config.buckets, 1)), 0), pool_(reference_.size(), 0),
      feedback_(reference_.size(), 0) {
  config_.validate();
}

void ImportanceEstimator::features(const int64_t* row, int64_t width, std::vector<int64_t>& out) const {
  const uint64_t b = uint64_t(config_.buckets);
  for (int64_t i = 0; i < width; ++i) {
    uint64_t h = splitmix64(config_.seed);
    for (int n = 1; n <= config_.max_ngram && i + n <= width; ++n) {
      const int64_t tok = row[i + n - 1];
      if (tok == config_.pad_id) break;  // an n-gram never spans padding
      h = splitmix64(h ^ uint64_t(tok) ^ (uint64_t(n) << 56));
      out.push_back(int64_t(h % b));
    }
  }
}

void ImportanceEstimator::set_reference(const int64_t* tokens, int64_t rows, int64_t width) {
  std::fill(reference_.begin(), reference_.end(), 0);
  reference_total_ = 0;
  count_features(tokens, rows, width, reference_, reference_total_);
}

void ImportanceEstimator::observe(const int64_t* tokens, int64_t rows, int64_t width) {
  count_features(tokens, rows, width, pool_, pool_total_);
}

void ImportanceEstimator::add_feedback(const int64_t* tokens, int64_t rows, int64_t width) {
  count_features(tokens, rows, width, feedback_, feedback_total_);
}

void ImportanceEstimator::count_features(const int64_t* tokens, int64_t rows, int64_t width,
                                         std::vector<uint64_t>& counts, uint64_t& total) const {
  std::vector<int64_t> f;
  for (int64_t r = 0; r < rows; ++r) {
    f.clear();
    features(tokens + r * width, width, f);
    for (int64_t g : f) ++counts[size_t(g)];
    total += f.size();
  }
}

std::vector<double> ImportanceEstimator::score(const int64_t* tokens, int64_t rows, int64_t width) const {
  if (!has_reference())
    throw Error(ErrorCode::kInvalidState, "ImportanceEstimator::score",
                "no reference rows: call set_reference() (GroupMatesLoader::set_reference) first");
  const double b = double(config_.buckets), mix = config_.reference_mix;
  const double pool_den = double(pool_total_) + b, ref_den = double(reference_total_);
  const double fb = feedback_total_ > 0 ? config_.feedback_weight : 0.0;
  const double fb_den = std::max<double>(double(feedback_total_), 1.0);
  std::vector<double> out(size_t(rows), 0.0);
  std::vector<int64_t> f;
  for (int64_t r = 0; r < rows; ++r) {
    f.clear();
    features(tokens + r * width, width, f);
    double sum = 0;
    for (int64_t g : f) {
      const double p_pool = (double(pool_[size_t(g)]) + 1) / pool_den;
      const double p_target = (1 - fb) * double(reference_[size_t(g)]) / ref_den + fb * double(feedback_[size_t(g)]) / fb_den;
      const double p_ref = mix * p_target + (1 - mix) * p_pool;
      sum += std::log(p_ref) - std::log(p_pool);
    }
    out[size_t(r)] = f.empty() ? 0.0 : sum / double(f.size());
  }
  return out;
}

std::string ImportanceEstimator::save() const {
  const bool fb = feedback_total_ > 0;  // without feedback the first format, as before feedback existed
  std::string blob(fb ? kMagicFeedback : kMagic, sizeof kMagic);
  auto put = [&](uint64_t v) { blob.append(reinterpret_cast<const char*>(&v), sizeof v); };
  put(uint64_t(config_.buckets));
  put(reference_total_);
  put(pool_total_);
  for (uint64_t v : reference_) put(v);
  for (uint64_t v : pool_) put(v);
  if (fb) {
    put(feedback_total_);
    for (uint64_t v : feedback_) put(v);
  }
  return blob;
}

void ImportanceEstimator::load(const std::string& blob) {
  const size_t n = reference_.size();
  const bool fb = blob.size() >= sizeof kMagic && std::memcmp(blob.data(), kMagicFeedback, sizeof kMagic) == 0;
  const size_t expected = sizeof kMagic + 8 * (3 + 2 * n) + (fb ? 8 * (1 + n) : 0);
  if (blob.size() != expected || (!fb && std::memcmp(blob.data(), kMagic, sizeof kMagic) != 0))
    throw Error(ErrorCode::kInvalidState, "ImportanceEstimator::load",
                "not an importance-estimator state of " + std::to_string(n) + " buckets (" + std::to_string(blob.size()) +
                    " bytes): restore with the SelectionConfig it was saved with");
  const char* p = blob.data() + sizeof kMagic;
  auto get = [&] {
    uint64_t v;
    std::memcpy(&v, p, sizeof v);
    p += sizeof v;
    return v;
  };
  if (get() != n) throw Error(ErrorCode::kInvalidState, "ImportanceEstimator::load", "bucket count differs");
  reference_total_ = get();
  pool_total_ = get();
  for (auto& v : reference_) v = get();
  for (auto& v : pool_) v = get();
  feedback_total_ = fb ? get() : 0;
  for (auto& v : feedback_) v = fb ? get() : 0;
}

std::vector<float> importance_prior(const std::vector<double>& scores) {
  std::vector<float> out(scores.size(), 0.0f);
  if (scores.empty()) return out;
  double mean = 0;
  for (double s : scores) mean += s;
  mean /= double(scores.size());
  double var = 0;
  for (double s : scores) var += (s - mean) * (s - mean);
  const double sd = std::sqrt(var / double(scores.size()));
  if (!(sd > 1e-12)) return out;
  for (size_t i = 0; i < scores.size(); ++i) out[i] = float(-(scores[i] - mean) / sd);
  return out;
}

}  // namespace groupmates
