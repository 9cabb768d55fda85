#include "util/fault_hooks.h"

namespace groupmates::fault_hooks {

std::function<void(const std::string& source, uint64_t document)> before_document_read;
std::function<void(std::string_view text)> before_tokenize;

}  // namespace groupmates::fault_hooks
