// Rank and world size from torchrun's environment: precedence, mismatches, malformed variables.
#include "groupmates/rank_environment.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <random>
#include <string>

#include "groupmates/error.h"
#include "loader/loader_test_util.h"

using namespace groupmates;

namespace {

RankEnvironment env_of(const std::map<std::string, std::string>& vars) {
  return read_rank_environment([&vars](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

LoaderConfig given(uint32_t rank, uint32_t world) {
  LoaderConfig c;
  c.rank = rank;
  c.world_size = world;
  return c;
}

std::string error_of(const LoaderConfig& c, const RankEnvironment& env) {
  try {
    resolve_ranks(c, env);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig);
    return e.what();
  }
  return "";
}

}  // namespace

TEST(RankEnvironment, PrecedenceGivenThenEnvironmentThenDefault) {
  const uint64_t seed = gmtest::fresh_seed();
  SCOPED_TRACE("GM_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 20; ++trial) {
    const uint32_t world = 1 + rng() % 64, rank = rng() % world;
    const RankEnvironment env = env_of({{"RANK", std::to_string(rank)}, {"WORLD_SIZE", std::to_string(world)},
                                        {"LOCAL_RANK", std::to_string(rank % 8)}});
    // Nothing given: the environment.
    LoaderConfig r = resolve_ranks(LoaderConfig{}, env);
    EXPECT_EQ(r.rank, rank);
    EXPECT_EQ(r.world_size, world);
    // Given and equal: fine; one given: the other from the environment.
    r = resolve_ranks(given(rank, world), env);
    EXPECT_EQ(r.rank, rank);
    EXPECT_EQ(r.world_size, world);
    r = resolve_ranks(given(kFromEnvironment, world), env);
    EXPECT_EQ(r.rank, rank);
    // check_rank_environment = false: the environment is not read.
    LoaderConfig off;
    off.check_rank_environment = false;
    r = resolve_ranks(off, env);
    EXPECT_EQ(r.rank, 0u);
    EXPECT_EQ(r.world_size, 1u);
    off.world_size = world + 1;
    off.rank = world;
    r = resolve_ranks(off, env);
    EXPECT_EQ(r.rank, world);
    EXPECT_EQ(r.world_size, world + 1);
  }
  // No environment: the default, or what was given.
  LoaderConfig r = resolve_ranks(LoaderConfig{}, env_of({}));
  EXPECT_EQ(r.rank, 0u);
  EXPECT_EQ(r.world_size, 1u);
  r = resolve_ranks(given(2, 5), env_of({}));
  EXPECT_EQ(r.rank, 2u);
  EXPECT_EQ(r.world_size, 5u);
}

TEST(RankEnvironment, GivenValueThatDisagreesIsAnErrorNamingFieldAndVariable) {
  const RankEnvironment env = env_of({{"RANK", "1"}, {"WORLD_SIZE", "2"}});
  std::string e = error_of(given(0, 2), env);
  EXPECT_NE(e.find("LoaderConfig.rank"), std::string::npos) << e;
  EXPECT_NE(e.find("RANK=1"), std::string::npos) << e;
  EXPECT_NE(e.find("check_rank_environment"), std::string::npos) << e;
  e = error_of(given(kFromEnvironment, 1), env);  // the old default world_size of 1 under torchrun
  EXPECT_NE(e.find("LoaderConfig.world_size"), std::string::npos) << e;
  EXPECT_NE(e.find("WORLD_SIZE=2"), std::string::npos) << e;
  e = error_of(given(0, 1), env);
  EXPECT_NE(e.find("world_size"), std::string::npos) << e;
}

TEST(RankEnvironment, MalformedVariablesNameTheVariable) {
  auto error = [](const std::map<std::string, std::string>& vars) {
    try {
      env_of(vars);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(error({{"RANK", "one"}, {"WORLD_SIZE", "2"}}).find("RANK='one'"), std::string::npos);
  EXPECT_NE(error({{"RANK", "-1"}, {"WORLD_SIZE", "2"}}).find("RANK='-1'"), std::string::npos);
  EXPECT_NE(error({{"RANK", "1"}, {"WORLD_SIZE", ""}}).find("WORLD_SIZE=''"), std::string::npos);
  EXPECT_NE(error({{"RANK", "0"}}).find("set both or neither"), std::string::npos);
  EXPECT_NE(error({{"WORLD_SIZE", "2"}}).find("set both or neither"), std::string::npos);
  EXPECT_NE(error({{"RANK", "2"}, {"WORLD_SIZE", "2"}}).find("RANK=2 is not < WORLD_SIZE=2"), std::string::npos);
  EXPECT_NE(error({{"RANK", "0"}, {"WORLD_SIZE", "0"}}).find("WORLD_SIZE=0"), std::string::npos);
  EXPECT_NE(error({{"RANK", "1"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "2"}}).find("LOCAL_RANK=2"), std::string::npos);
  EXPECT_NE(error({{"RANK", "99999999999"}, {"WORLD_SIZE", "4"}}).find("RANK"), std::string::npos);
  const RankEnvironment ok = env_of({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}});
  EXPECT_EQ(*ok.rank, 3u);
  EXPECT_EQ(*ok.world_size, 4u);
  EXPECT_EQ(*ok.local_rank, 1u);
}
