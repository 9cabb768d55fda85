#include "online/refresh_gate.h"

#include <cmath>
#include <cstdio>
#include <sstream>

#include "groupmates/error.h"

namespace groupmates {

void RefreshGate::record(double learned_spearman, double prior_spearman) {
  checks_ += 1;
  learned_sum_ += std::isfinite(learned_spearman) ? learned_spearman : 0.0;
  prior_sum_ += std::isfinite(prior_spearman) ? prior_spearman : 0.0;
}

std::string RefreshGate::save() const {
  char buf[128];
  std::snprintf(buf, sizeof buf, "%llu %a %a %d", static_cast<unsigned long long>(checks_), learned_sum_, prior_sum_,
                learned_published_ ? 1 : 0);
  return buf;
}

void RefreshGate::load(const std::string& text, const std::string& what) {
  std::istringstream in(text);
  unsigned long long checks = 0;
  std::string learned, prior, rest;
  int published = -1;
  const auto bad = [&] {
    throw Error(ErrorCode::kInvalidState, what,
                "'" + text.substr(0, 60) + "' is not '<checks> <learned sum> <prior sum> <0|1>': the state text was "
                "edited or truncated");
  };
  if (!(in >> checks >> learned >> prior >> published) || (in >> rest) || (published != 0 && published != 1)) bad();
  const auto number = [&](const std::string& s) {
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (end != s.c_str() + s.size() || !std::isfinite(v)) bad();
    return v;
  };
  learned_sum_ = number(learned);
  prior_sum_ = number(prior);
  checks_ = checks;
  learned_published_ = published == 1;
}

}  // namespace groupmates
