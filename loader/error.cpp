#include "groupmates/error.h"

namespace groupmates {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidConfig: return "invalid_config";
    case ErrorCode::kIo: return "io";
    case ErrorCode::kCorruptData: return "corrupt_data";
    case ErrorCode::kOutOfVocab: return "out_of_vocab";
    case ErrorCode::kInvalidState: return "invalid_state";
    case ErrorCode::kInternal: return "internal";
    case ErrorCode::kDistributed: return "distributed";
    case ErrorCode::kSelectionFailed: return "selection_failed";
  }
  return "unknown";
}

static std::string format_message(ErrorCode code, const std::string& where, const std::string& msg) {
  std::string s = "groupmates [";
  s += error_code_name(code);
  s += "] ";
  if (!where.empty()) {
    s += where;
    s += ": ";
  }
  s += msg;
  return s;
}

Error::Error(ErrorCode code, std::string where, const std::string& message)
    : std::runtime_error(format_message(code, where, message)), code_(code), where_(std::move(where)) {}

}  // namespace groupmates
