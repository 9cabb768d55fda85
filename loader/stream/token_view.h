// token_view.h: a read-only run of token ids of some integer width, kept alive by an owner.
#pragma once

#include <cstdint>
#include <memory>

namespace groupmates {

/// Integer width and signedness of token ids as stored.
enum class TokenWidth : uint8_t { kU8, kU16, kI16, kU32, kI32, kI64 };

/// Bytes per token of a TokenWidth.
inline uint32_t token_width_bytes(TokenWidth w) {
  switch (w) {
    case TokenWidth::kU8: return 1;
    case TokenWidth::kU16: case TokenWidth::kI16: return 2;
    case TokenWidth::kU32: case TokenWidth::kI32: return 4;
    case TokenWidth::kI64: return 8;
  }
  return 0;
}

/// `size` tokens at `data` (a memory map or a tokenizer's output); `owner` keeps them alive.
struct TokenView {
  const void* data = nullptr;
  uint64_t size = 0;
  TokenWidth width = TokenWidth::kU32;
  std::shared_ptr<const void> owner;

  /// Token i widened to int64.
  int64_t at(uint64_t i) const {
    switch (width) {
      case TokenWidth::kU8: return static_cast<const uint8_t*>(data)[i];
      case TokenWidth::kU16: return static_cast<const uint16_t*>(data)[i];
      case TokenWidth::kI16: return static_cast<const int16_t*>(data)[i];
      case TokenWidth::kU32: return static_cast<const uint32_t*>(data)[i];
      case TokenWidth::kI32: return static_cast<const int32_t*>(data)[i];
      case TokenWidth::kI64: return static_cast<const int64_t*>(data)[i];
    }
    return 0;
  }
  /// The sub-run [offset, offset + count), sharing the owner.
  TokenView slice(uint64_t offset, uint64_t count) const {
    TokenView v = *this;
    v.data = static_cast<const char*>(data) + offset * token_width_bytes(width);
    v.size = count;
    return v;
  }
};

}  // namespace groupmates
