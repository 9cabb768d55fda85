#include "online/blob_text.h"

#include <cstdint>

#include "groupmates/error.h"

namespace groupmates {

namespace {
const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
}

std::string blob_to_text(const std::string& blob) {
  std::string out;
  out.reserve((blob.size() + 2) / 3 * 4);
  size_t i = 0;
  const auto* b = reinterpret_cast<const unsigned char*>(blob.data());
  for (; i + 2 < blob.size(); i += 3) {
    const uint32_t v = (b[i] << 16) | (b[i + 1] << 8) | b[i + 2];
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i < blob.size()) {
    uint32_t v = b[i] << 16;
    if (i + 1 < blob.size()) v |= b[i + 1] << 8;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < blob.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string text_to_blob(const std::string& text, const std::string& field) {
  int8_t table[256];
  for (auto& t : table) t = -1;
  for (int k = 0; k < 64; ++k) table[static_cast<unsigned char>(kAlphabet[k])] = static_cast<int8_t>(k);
  if (text.size() % 4 != 0)
    throw Error(ErrorCode::kInvalidState, "LoaderState.extra." + field, "base64 text has a length that is not a multiple of 4");
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    uint32_t v = 0;
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = text[i + k];
      if (c == '=' && i + 4 == text.size() && k >= 2) {
        ++pad;
        v <<= 6;
        continue;
      }
      const int8_t d = table[static_cast<unsigned char>(c)];
      if (d < 0 || pad) throw Error(ErrorCode::kInvalidState, "LoaderState.extra." + field, "invalid base64 at character " + std::to_string(i + k));
      v = (v << 6) | static_cast<uint32_t>(d);
    }
    out += static_cast<char>((v >> 16) & 255);
    if (pad < 2) out += static_cast<char>((v >> 8) & 255);
    if (pad < 1) out += static_cast<char>(v & 255);
  }
  return out;
}

}  // namespace groupmates
