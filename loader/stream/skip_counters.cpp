#include "stream/skip_counters.h"

namespace groupmates {

void SkipCounters::add(const std::string& source, const std::string& reason, const std::string& where, uint64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string key = source + "/" + reason;
  counts_[key] += n;
  examples_.emplace(key, where);
}

std::map<std::string, uint64_t> SkipCounters::counts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counts_;
}

std::map<std::string, std::string> SkipCounters::examples() const {
  std::lock_guard<std::mutex> lock(mu_);
  return examples_;
}

uint64_t SkipCounters::total() const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t t = 0;
  for (const auto& kv : counts_) t += kv.second;
  return t;
}

void SkipCounters::reset(const std::map<std::string, uint64_t>& counts) {
  std::lock_guard<std::mutex> lock(mu_);
  counts_ = counts;
  examples_.clear();
}

std::string SkipCounters::report() const {
  std::lock_guard<std::mutex> lock(mu_);
  return report(counts_, examples_);
}

std::string SkipCounters::report(const std::map<std::string, uint64_t>& counts,
                                 const std::map<std::string, std::string>& examples) {
  if (counts.empty()) return "nothing skipped";
  std::string s;
  for (const auto& kv : counts) {
    if (!s.empty()) s += "\n";
    s += kv.first + ": " + std::to_string(kv.second);
    auto it = examples.find(kv.first);
    if (it != examples.end()) s += " (first at " + it->second + ")";
  }
  return s;
}

}  // namespace groupmates
