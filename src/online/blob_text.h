// blob_text.h: binary blobs as base64 text, for the text form of LoaderState.
#pragma once

#include <string>

namespace groupmates {

/// Standard base64 (RFC 4648) with padding.
std::string blob_to_text(const std::string& blob);
/// Inverse of blob_to_text; throws Error(kInvalidState) naming `field` on bad input.
std::string text_to_blob(const std::string& text, const std::string& field);

}  // namespace groupmates
