// thrown_error.h: the groupmates::Error a callable throws, for tests that check its message or `where`.
#pragma once

#include <optional>
#include <utility>

#include <gtest/gtest.h>

#include "groupmates/error.h"

namespace testing_errors {

/// The Error `f` throws, its code checked against `code`; empty (and a test failure) when none is thrown.
template <typename F>
std::optional<groupmates::Error> thrown_error(F&& f, groupmates::ErrorCode code) {
  try {
    std::forward<F>(f)();
  } catch (const groupmates::Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    return e;
  }
  ADD_FAILURE() << "no Error thrown";
  return std::nullopt;
}

/// what() of the Error `f` throws ("" and a test failure when none).
template <typename F>
std::string error_of(F&& f, groupmates::ErrorCode code) {
  const auto e = thrown_error(std::forward<F>(f), code);
  return e ? e->what() : "";
}

/// where() of the Error `f` throws ("" and a test failure when none).
template <typename F>
std::string where_of(F&& f, groupmates::ErrorCode code) {
  const auto e = thrown_error(std::forward<F>(f), code);
  return e ? e->where() : "";
}

}  // namespace testing_errors
