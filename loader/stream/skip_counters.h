// skip_counters.h: counts of everything the loader skipped, by reason, so nothing is lost silently.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace groupmates {

/// Thread-safe counters of skipped records, keyed by "source/reason" (e.g. "web/invalid_json"),
/// with the first location seen for each key so a user can look at an example.
class SkipCounters {
 public:
  /// Counts one skipped record of `reason` in `source`, seen at `where` (file:line or file:offset).
  void add(const std::string& source, const std::string& reason, const std::string& where, uint64_t n = 1);
  /// Snapshot: key -> count.
  std::map<std::string, uint64_t> counts() const;
  /// Snapshot: key -> first location.
  std::map<std::string, std::string> examples() const;
  /// Sum of all counts.
  uint64_t total() const;
  /// Replaces all counts (used when restoring a saved state).
  void reset(const std::map<std::string, uint64_t>& counts);
  /// "source/reason: n (first at where)" lines, or "nothing skipped".
  std::string report() const;
  /// The same report of `counts`, with the first locations that `examples` has.
  static std::string report(const std::map<std::string, uint64_t>& counts,
                            const std::map<std::string, std::string>& examples);

 private:
  mutable std::mutex mu_;
  std::map<std::string, uint64_t> counts_;
  std::map<std::string, std::string> examples_;
};

}  // namespace groupmates
