// groupmates/error.h: the one exception type the library throws. No LibTorch here.
//
// Every error names where it happened (file, byte offset or line) and, where there is one,
// the fix. Worker-thread errors are carried to the consumer unchanged.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace groupmates {

/// What kind of problem an Error reports.
enum class ErrorCode {
  kInvalidConfig,  ///< a config field is out of range or inconsistent
  kIo,             ///< a file is missing, unreadable or cannot be mapped
  kCorruptData,    ///< a file's content is malformed (bad header, truncated, bad JSON, bad UTF-8)
  kOutOfVocab,     ///< a token id is outside [0, vocab_size)
  kInvalidState,   ///< a saved state cannot be restored with this config
  kInternal,       ///< a bug in groupmates: please report it
  kDistributed,    ///< a collective across ranks failed or timed out (a rank died, hung or disagreed)
  kSelectionFailed,  ///< online selection's probes or refreshes kept failing (ProbeConfig::max_consecutive_failures)
};

/// Name of an ErrorCode, e.g. "corrupt_data".
const char* error_code_name(ErrorCode code);

/// The exception groupmates throws. what() is the full human-readable message.
class Error : public std::runtime_error {
 public:
  /// `where` is "path", "path:offset" or "path:line N"; it may be empty.
  Error(ErrorCode code, std::string where, const std::string& message);
  ErrorCode code() const { return code_; }
  const std::string& where() const { return where_; }

 private:
  ErrorCode code_;
  std::string where_;
};

}  // namespace groupmates
