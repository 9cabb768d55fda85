#include "groupmates/loader_state.h"

#include <gtest/gtest.h>

#include "groupmates/error.h"

using groupmates::LoaderState;

TEST(LoaderState, RoundTripsThroughText) {
  LoaderState s;
  s.config_fingerprint = 0xdeadbeefcafef00dULL;
  s.global_batch_size = 48;
  s.batches = 123456789;
  s.pass = 3;
  s.ended = true;
  s.blend_counts = {5, 0, 17};
  s.sources = {{1, 2, 3}, {4, 5, 6}, {0, 0, 0}};
  s.skipped = {{"web docs/invalid_json", 7}, {"a%b/c", 1}};
  s.extra = {{"selection", "line one\nline two %"}, {"empty", ""}};
  const LoaderState t = LoaderState::parse(s.serialize());
  EXPECT_TRUE(s == t);
  EXPECT_EQ(t.extra.at("selection"), "line one\nline two %");
}

TEST(LoaderState, RejectsGarbageWithClearErrors) {
  EXPECT_THROW(LoaderState::parse(""), groupmates::Error);
  EXPECT_THROW(LoaderState::parse("something else 1\nend\n"), groupmates::Error);
  try {
    LoaderState::parse("groupmates-state 1\nbatches 3\n");
    FAIL();
  } catch (const groupmates::Error& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  try {
    LoaderState::parse("groupmates-state 2\nend\n");
    FAIL();
  } catch (const groupmates::Error& e) {
    EXPECT_NE(std::string(e.what()).find("version 2"), std::string::npos) << e.what();
  }
}
