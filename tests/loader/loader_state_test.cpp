#include "groupmates/loader_state.h"

#include <gtest/gtest.h>

#include "groupmates/error.h"

using groupmates::LoaderState;

TEST(LoaderState, RoundTripsThroughText) {
  LoaderState s;
  s.config_fingerprint = 0xdeadbeefcafef00dULL;
  s.global_batch_size = 48;
  s.batches = 123456789;
  s.samples = 123456789ULL * 48;
  s.files = {{"/data/a b.bin", 4096, 0x1234, 0}, {"c.idx", 7, 0xffffffffffffffffULL, 2}};
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
    LoaderState::parse("groupmates-state 3\nend\n");
    FAIL();
  } catch (const groupmates::Error& e) {
    EXPECT_NE(std::string(e.what()).find("version 3 is not supported (this build reads versions 1 and 2"), std::string::npos)
        << e.what();
  }
  try {
    LoaderState::parse("groupmates-state 2\nbatches 1\nend\n");
    FAIL();
  } catch (const groupmates::Error& e) {
    EXPECT_NE(std::string(e.what()).find("no 'samples' line"), std::string::npos) << e.what();
  }
  // Version 1 (no samples, files without a source): samples = batches * global_batch_size.
  const LoaderState v1 = LoaderState::parse(
      "groupmates-state 1\nfingerprint 00000000000000ff\nglobal_batch_size 6\nbatches 7\npass 0\nended 0\nblend 42\n"
      "source 0 42 0\nfile 100 00000000000000aa /x/y.bin\nend\n");
  EXPECT_EQ(v1.version, 1u);
  EXPECT_EQ(v1.samples, 42u);
  ASSERT_EQ(v1.files.size(), 1u);
  EXPECT_EQ(v1.files[0].path, "/x/y.bin");
  EXPECT_EQ(v1.files[0].size, 100u);
  EXPECT_EQ(v1.files[0].content_hash, 0xaau);
  EXPECT_THROW(LoaderState::parse("groupmates-state 1\nsamples 3\nend\n"), groupmates::Error);  // a version 2 field
}
