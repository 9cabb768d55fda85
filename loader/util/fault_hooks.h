// fault_hooks.h (internal, test-only): where tests make the loader core fail on purpose. Every hook is
// empty in production (one branch per document or text); a test sets one while no loader runs and
// clears it before the next (tests/loader/read_faults_test.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace groupmates::fault_hooks {

/// Called on the reading thread before a Megatron or JSONL source reads `document` (numbered across its files)
/// of the source named `source`; may throw: a reader failing mid-file.
extern std::function<void(const std::string& source, uint64_t document)> before_document_read;
/// Called by Tokenizer::encode before it encodes `text`; may throw: a tokenizer failing.
extern std::function<void(std::string_view text)> before_tokenize;

}  // namespace groupmates::fault_hooks
