#include "online/refresh_gate.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <limits>
#include <sstream>
#include <vector>

#include "groupmates/error.h"

namespace groupmates {

double picks_gain(const std::vector<double>& predicted, const std::vector<double>& labels, double share) {
  if (predicted.size() != labels.size() || predicted.empty() || !(share >= 0 && share <= 1))
    throw Error(ErrorCode::kInternal, "picks_gain",
                std::to_string(predicted.size()) + " predictions for " + std::to_string(labels.size()) +
                    " labels, share " + std::to_string(share) + ": need the same non-zero number and a share in [0, 1]");
  for (const double p : predicted)
    if (!std::isfinite(p)) return std::numeric_limits<double>::quiet_NaN();
  const size_t n = predicted.size();
  const size_t k = std::min(n, std::max<size_t>(1, static_cast<size_t>(std::llround(share * double(n)))));
  std::vector<double> sorted = predicted;  // only the k-th smallest prediction is needed: the cut
  std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end());
  const double cut = sorted[k - 1];
  double below = 0, tied = 0;
  size_t n_below = 0, n_tied = 0;
  for (size_t i = 0; i < n; ++i) {
    if (predicted[i] < cut) below += labels[i], ++n_below;
    else if (predicted[i] == cut) tied += labels[i], ++n_tied;
  }
  // k - n_below of the k picks come from the tied rows, each tied row with the same weight.
  return -(below + tied * double(k - n_below) / double(n_tied)) / double(k);
}

void RefreshGate::record(double learned_spearman, double prior_spearman, uint64_t labels) {
  checks_ += 1;
  labels_ += labels;
  learned_sum_ += std::isfinite(learned_spearman) ? learned_spearman : 0.0;
  prior_sum_ += std::isfinite(prior_spearman) ? prior_spearman : 0.0;
}

void RefreshGate::record_shares(const std::vector<double>& share_scores) {
  if (share_scores.size() != kHeadShares.size())
    throw Error(ErrorCode::kInternal, "RefreshGate::record_shares",
                std::to_string(share_scores.size()) + " share scores for " + std::to_string(kHeadShares.size()) + " shares");
  share_checks_ += 1;
  for (size_t k = 0; k < share_sums_.size(); ++k)
    share_sums_[k] += std::isfinite(share_scores[k]) ? share_scores[k] : 0.0;
}

double RefreshGate::head_share() const {
  if (!shrinkage_) return 1.0;
  if (share_checks_ == 0) return head_share_start_;
  size_t best = 0;
  for (size_t k = 1; k < share_sums_.size(); ++k) {  // a lead within rounding of the sums is a tie: the smaller share
    const double rounding = 1e-12 * (std::fabs(share_sums_[k]) + std::fabs(share_sums_[best]) + 1.0);
    if (share_sums_[k] - share_sums_[best] > rounding) best = k;
  }
  return kHeadShares[best];
}

std::vector<double> RefreshGate::share_means() const {
  std::vector<double> out(share_sums_.size(), 0.0);
  if (share_checks_)
    for (size_t k = 0; k < out.size(); ++k) out[k] = share_sums_[k] / double(share_checks_);
  return out;
}

double RefreshGate::required_lead() const {
  return margin_ > 0 ? margin_ / std::sqrt(double(std::max<uint64_t>(labels_, 1))) : 0.0;
}

bool RefreshGate::learned_wins() const {
  if (checks_ == 0) return false;
  // A lead within rounding of the sums is a tie (the same picks summed in another order differ in the last
  // bits): a tie keeps the prior-only model.
  const double rounding = 1e-12 * (std::fabs(learned_sum_) + std::fabs(prior_sum_) + 1.0);
  return (learned_sum_ - prior_sum_) > rounding && (learned_sum_ - prior_sum_) / double(checks_) > required_lead();
}

std::string RefreshGate::shrinkage_text() const {
  if (!shrinkage_) return "off";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%a", head_share_start_ + 0.0);  // -0 written as 0
  return buf;
}

std::string RefreshGate::save() const {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%llu %a %a %d %llu", static_cast<unsigned long long>(checks_), learned_sum_,
                prior_sum_, learned_published_ ? 1 : 0, static_cast<unsigned long long>(labels_));
  std::string out = buf;
  std::snprintf(buf, sizeof buf, " %s %llu", shrinkage_text().c_str(), static_cast<unsigned long long>(share_checks_));
  out += buf;
  for (const double v : share_sums_) {
    std::snprintf(buf, sizeof buf, " %a", v);
    out += buf;
  }
  return out;
}

void RefreshGate::load(const std::string& text, const std::string& what, bool adopt_shrinkage) {
  std::istringstream in(text);
  unsigned long long checks = 0, labels = 0, share_checks = 0;
  std::string checks_text, learned, prior, labels_text, shrinkage = "off", share_checks_text, rest;
  std::array<std::string, kHeadShares.size()> share_texts;
  int published = -1;
  bool legacy_shrinkage_field = true;  // absent in states saved before head shrinkage: whole heads were published
  const auto bad = [&] {
    throw Error(ErrorCode::kInvalidState, what,
                "'" + text.substr(0, 60) + "' is not '<checks> <learned sum> <prior sum> <0|1> [<labels> [<head shrinkage> "
                "<share checks> <4 share sums>]]': the state text was edited or truncated");
  };
  const auto count = [&](const std::string& t) {
    char* end = nullptr;
    if (t.empty() || t[0] == '-' || t[0] == '+') bad();  // strtoull would wrap a negative one
    errno = 0;
    const unsigned long long v = std::strtoull(t.c_str(), &end, 10);
    if (end != t.c_str() + t.size() || errno == ERANGE) bad();
    return v;
  };
  const auto number = [&](const std::string& s) {
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(v)) bad();
    return v;
  };
  if (!(in >> checks_text >> learned >> prior >> published) || (published != 0 && published != 1)) bad();
  checks = count(checks_text);
  if (in >> labels_text) {  // absent in states saved before the label count
    labels = count(labels_text);
    if (in >> shrinkage) {
      legacy_shrinkage_field = false;
      if (!(in >> share_checks_text)) bad();
      share_checks = count(share_checks_text);
      for (auto& t : share_texts)
        if (!(in >> t)) bad();
      if (shrinkage != "off" && !(number(shrinkage) >= 0 && number(shrinkage) <= 1)) bad();
    }
    if (in >> rest) bad();
  }
  std::array<double, kHeadShares.size()> sums{};
  for (size_t k = 0; k < sums.size(); ++k) sums[k] = share_texts[k].empty() ? 0.0 : number(share_texts[k]);
  const double learned_sum = number(learned), prior_sum = number(prior);  // all parsed before anything is judged
  // The same mode: both off, or the same start share (compared as numbers: -0 and 0 alike).
  const auto same_mode = [&](const std::string& a, const std::string& b) {
    if (a == "off" || b == "off") return a == b;
    return std::strtod(a.c_str(), nullptr) + 0.0 == std::strtod(b.c_str(), nullptr) + 0.0;
  };
  // A record saved before head shrinkage that has published no learned model yet holds nothing shrinkage would
  // have changed (a gate-off run then never recorded a check, yet published whole heads: published is 1).
  const bool legacy_unchecked = legacy_shrinkage_field && checks == 0 && published == 0;
  if (!adopt_shrinkage && !legacy_unchecked && !same_mode(shrinkage, shrinkage_text())) {
    const auto describe = [](const std::string& t) {
      if (t == "off") return std::string("off (whole heads published)");
      return "on, starting at share " + std::to_string(std::strtod(t.c_str(), nullptr));
    };
    throw Error(ErrorCode::kInvalidState, what,
                "saved with head shrinkage " + describe(shrinkage) + (legacy_shrinkage_field ? " (saved before it existed)" : "") +
                    ", resumed with " + describe(shrinkage_text()) +
                    ": the published models would differ from the saved run's; resume with the saved "
                    "SelectionConfig::refresh_head_shrinkage and refresh_head_share_start");
  }
  if (adopt_shrinkage && !legacy_shrinkage_field) {
    shrinkage_ = shrinkage != "off";
    if (shrinkage_) head_share_start_ = number(shrinkage);
  }
  learned_sum_ = learned_sum;
  prior_sum_ = prior_sum;
  checks_ = checks;
  labels_ = labels;
  learned_published_ = published == 1;
  share_checks_ = share_checks;
  share_sums_ = sums;
}

}  // namespace groupmates
