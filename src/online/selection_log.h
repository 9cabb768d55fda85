// selection_log.h: the JSON-lines log of every emitted row (SelectionConfig::log_path; private).
#pragma once

#include <cstdint>
#include <fstream>
#include <string>

#include "groupmates/candidate_id.h"

namespace groupmates {

/// One emitted row.
struct LoggedRow {
  int64_t step = 0;        ///< the trainer step last reported by on_step (-1 before the first)
  uint64_t window = 0;     ///< window number on this rank
  int64_t row = 0;         ///< row within the window
  CandidateId id;
  int64_t cluster = -1;
  float influence = 0;     ///< predicted u (NaN in warm-up: written as null)
  uint64_t version = 0;    ///< model version that scored the window
};

/// Appends one JSON object per line: {"step", "window", "row", "id", "source", "document", "offset",
/// "cluster", "influence", "version"}.
class SelectionLog {
 public:
  /// Opens `path` for appending; "" = no log. Throws Error(kIo) if it cannot be opened.
  explicit SelectionLog(const std::string& path);
  bool enabled() const { return out_.is_open(); }
  void write(const LoggedRow& row);

 private:
  std::ofstream out_;
};

}  // namespace groupmates
