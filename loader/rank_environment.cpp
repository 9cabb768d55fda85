#include "groupmates/rank_environment.h"

#include <cstdlib>
#include <string>

#include "groupmates/error.h"

namespace groupmates {

namespace {

[[noreturn]] void bad_variable(const char* name, const std::string& what) {
  throw Error(ErrorCode::kInvalidConfig, std::string("environment ") + name,
              what + " (torchrun sets RANK, WORLD_SIZE and LOCAL_RANK: fix the launcher, or unset them)");
}

std::optional<uint32_t> parse(const std::function<const char*(const char*)>& lookup, const char* name) {
  const char* text = lookup(name);
  if (text == nullptr) return std::nullopt;
  const std::string s(text);
  if (s.empty() || s.size() > 10 || s.find_first_not_of("0123456789") != std::string::npos)
    bad_variable(name, std::string(name) + "='" + s + "' is not a non-negative integer");
  const unsigned long long v = std::stoull(s);
  if (v >= kFromEnvironment) bad_variable(name, std::string(name) + "=" + s + " is too large");
  return static_cast<uint32_t>(v);
}

// One of rank / world_size: the given value checked against the environment's, or the
// environment's, or the default.
uint32_t resolve(uint32_t given, std::optional<uint32_t> env, bool check, uint32_t fallback, const char* field,
                 const char* variable) {
  if (given == kFromEnvironment) return env && check ? *env : fallback;
  if (check && env && *env != given)
    throw Error(ErrorCode::kInvalidConfig, std::string("LoaderConfig.") + field,
                "is " + std::to_string(given) + " but the environment says " + variable + "=" + std::to_string(*env) +
                    ": ranks would read the wrong rows of the stream; leave " + field +
                    " unset to take it from the environment, or set check_rank_environment = false for a loader "
                    "that is not split across the ranks (e.g. evaluation data every rank reads whole)");
  return given;
}

}  // namespace

RankEnvironment read_rank_environment(const std::function<const char*(const char*)>& lookup) {
  RankEnvironment env;
  env.rank = parse(lookup, "RANK");
  env.world_size = parse(lookup, "WORLD_SIZE");
  env.local_rank = parse(lookup, "LOCAL_RANK");
  if (env.rank.has_value() != env.world_size.has_value())
    bad_variable(env.rank ? "WORLD_SIZE" : "RANK",
                 std::string("RANK is ") + (env.rank ? "set" : "not set") + " but WORLD_SIZE is " +
                     (env.world_size ? "set" : "not set") + ": set both or neither");
  if (env.world_size && *env.world_size < 1) bad_variable("WORLD_SIZE", "WORLD_SIZE=0; must be >= 1");
  if (env.rank && *env.rank >= *env.world_size)
    bad_variable("RANK", "RANK=" + std::to_string(*env.rank) + " is not < WORLD_SIZE=" + std::to_string(*env.world_size));
  if (env.local_rank && env.rank && *env.local_rank > *env.rank)
    bad_variable("LOCAL_RANK", "LOCAL_RANK=" + std::to_string(*env.local_rank) + " is greater than RANK=" +
                                   std::to_string(*env.rank));
  return env;
}

RankEnvironment read_rank_environment() {
  return read_rank_environment([](const char* name) -> const char* { return std::getenv(name); });
}

LoaderConfig resolve_ranks(LoaderConfig config, const RankEnvironment& env) {
  const bool check = config.check_rank_environment;
  config.world_size = resolve(config.world_size, env.world_size, check, 1, "world_size", "WORLD_SIZE");
  config.rank = resolve(config.rank, env.rank, check, 0, "rank", "RANK");
  return config;
}

}  // namespace groupmates
