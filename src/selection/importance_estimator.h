// importance_estimator.h: streaming DSIR-style importance weights (Xie et al., 2023) of candidate
// rows against a reference set, from hashed token n-gram counts. No LibTorch, no probes.
//
//   ImportanceEstimator est(config);
//   est.set_reference(ref_tokens, ref_rows, T);     // the text selection should help (e.g. the probes' reference rows)
//   est.observe(window, W, T);                      // every window: the running pool estimate
//   std::vector<double> w = est.score(window, W, T);  // per row: mean log p_ref'(g) - log p_pool(g)
//
// Features: token 1..max_ngram-grams hashed into `buckets` (padding never counts). p_pool is the
// add-one-smoothed frequency of every row observed so far; p_ref' = mix * p_ref + (1 - mix) * p_pool
// with p_ref the reference's plain frequency: the mixing is the smoothing, so a few reference rows
// cannot veto the n-grams they lack (an unseen n-gram scores log(1 - mix), a common one in the
// reference much higher).
// A row's score is the mean over its n-grams of log p_ref' - log p_pool (its log importance weight
// per n-gram); higher = more like the reference. Deterministic; save()/load() hold the counts.
//
// Relevance feedback (optional): rows the probes measured to lower the reference loss most can be added
// with add_feedback(); p_ref then becomes (1 - feedback_weight) * p_ref + feedback_weight * p_feedback,
// widening an estimate made from a few reference rows with pool rows shown to help them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace groupmates {

/// Settings of an ImportanceEstimator.
struct ImportanceConfig {
  int64_t buckets = 1 << 14;    ///< hashed n-gram buckets
  int max_ngram = 2;            ///< n-grams of 1..max_ngram tokens (1..3)
  double reference_mix = 0.5;   ///< p_ref' = mix * p_ref + (1 - mix) * p_pool, in (0, 1]
  int64_t pad_id = -1;          ///< token id that is never a feature (-1 = none)
  uint64_t seed = 0;            ///< hash seed
  double feedback_weight = 0;   ///< share of p_ref taken by add_feedback() rows once there are any, in [0, 1)

  /// Throws Error(kInvalidConfig) naming the field and the allowed range.
  void validate() const;
};

/// Streaming importance weights of token rows against a reference set.
class ImportanceEstimator {
 public:
  explicit ImportanceEstimator(const ImportanceConfig& config = {});

  /// Replaces the reference counts with those of `rows` token rows of width `width` (row-major).
  void set_reference(const int64_t* tokens, int64_t rows, int64_t width);
  bool has_reference() const { return reference_total_ > 0; }
  /// Adds rows to the running pool estimate.
  void observe(const int64_t* tokens, int64_t rows, int64_t width);
  /// Adds rows to the feedback estimate (rows measured to help the reference; see feedback_weight).
  void add_feedback(const int64_t* tokens, int64_t rows, int64_t width);
  /// Per row: mean over its n-grams of log p_ref'(g) - log p_pool(g) (0 for a row without n-grams).
  std::vector<double> score(const int64_t* tokens, int64_t rows, int64_t width) const;

  /// The bucket of every n-gram of one row (for tests); appended to `out`.
  void features(const int64_t* row, int64_t width, std::vector<int64_t>& out) const;
  uint64_t pool_total() const { return pool_total_; }
  uint64_t reference_total() const { return reference_total_; }
  uint64_t feedback_total() const { return feedback_total_; }
  /// Counts as a byte blob / restore from one (throws Error(kInvalidState) on a mismatch).
  std::string save() const;
  void load(const std::string& blob);
  const ImportanceConfig& config() const { return config_; }

 private:
  /// Adds the n-gram features of `rows` rows of `width` tokens to `counts` and their number to `total`.
  void count_features(const int64_t* tokens, int64_t rows, int64_t width, std::vector<uint64_t>& counts,
                      uint64_t& total) const;
  ImportanceConfig config_;
  std::vector<uint64_t> reference_, pool_, feedback_;
  uint64_t reference_total_ = 0, pool_total_ = 0, feedback_total_ = 0;
};

/// -(x - mean) / std over the rows (population std; all zeros when std is 0): the importance score
/// as a standardised prior in the sign convention of u (lower = better).
std::vector<float> importance_prior(const std::vector<double>& scores);

}  // namespace groupmates
