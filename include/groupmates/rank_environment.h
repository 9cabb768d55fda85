// groupmates/rank_environment.h: this process's rank and world size (no LibTorch).
//
// Precedence (resolve_ranks):
//   1. a value given in LoaderConfig (rank / world_size other than kFromEnvironment);
//   2. else torchrun's environment: RANK and WORLD_SIZE (both or neither; LOCAL_RANK is checked);
//   3. else rank 0 of 1.
// A given value that disagrees with the environment is an error (two ranks would otherwise read
// the same rows, or a rank none), unless LoaderConfig::check_rank_environment is false. The Python
// package puts an initialised torch.distributed group first (python/groupmates/ranks.py).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

#include "groupmates/config.h"

namespace groupmates {

/// torchrun's variables as this process sees them (nullopt: not set).
struct RankEnvironment {
  std::optional<uint32_t> rank;        ///< RANK
  std::optional<uint32_t> world_size;  ///< WORLD_SIZE
  std::optional<uint32_t> local_rank;  ///< LOCAL_RANK
};

/// Reads RANK, WORLD_SIZE and LOCAL_RANK through `lookup` (nullptr: not set). Throws
/// Error(kInvalidConfig) naming the variable when one is not a number, when only one of RANK and
/// WORLD_SIZE is set, or when RANK >= WORLD_SIZE or LOCAL_RANK > RANK.
RankEnvironment read_rank_environment(const std::function<const char*(const char*)>& lookup);
/// The same from the process's environment (std::getenv).
RankEnvironment read_rank_environment();

/// `config` with rank and world_size resolved by the precedence above; throws Error(kInvalidConfig)
/// naming LoaderConfig.rank or .world_size when a given value disagrees with `env`.
LoaderConfig resolve_ranks(LoaderConfig config, const RankEnvironment& env);

}  // namespace groupmates
