#include "probe/label_standardisation.h"

#include <algorithm>
#include <cmath>
#include <map>

namespace groupmates {

namespace {

std::pair<double, double> centre_and_scale(std::vector<double> v, bool robust) {
  double centre = 0, scale = 0;
  if (robust) {
    std::sort(v.begin(), v.end());
    centre = v[v.size() / 2];
    std::vector<double> dev;
    for (double y : v) dev.push_back(std::fabs(y - centre));
    std::sort(dev.begin(), dev.end());
    scale = 1.4826 * dev[dev.size() / 2];
  } else {
    for (double y : v) centre += y;
    centre /= v.size();
    for (double y : v) scale += (y - centre) * (y - centre);
    scale = std::sqrt(scale / v.size());
  }
  return {centre, scale > 1e-12 ? scale : 1.0};
}

}  // namespace

std::vector<double> standardise_per_probe(const std::vector<LabelledRollout>& entries, bool robust, bool per_position) {
  // Group key: (probe step, position) with per_position, else (probe step, -1).
  auto key = [&](const LabelledRollout& e, size_t t) {
    return std::make_pair(e.probe_step, per_position ? static_cast<int64_t>(t) : int64_t{-1});
  };
  std::map<std::pair<int64_t, int64_t>, std::vector<double>> groups;
  for (const auto& e : entries)
    for (size_t t = 0; t < e.labels.size(); ++t) groups[key(e, t)].push_back(e.labels[t]);
  std::map<std::pair<int64_t, int64_t>, std::pair<double, double>> stats;  // key -> (centre, scale)
  for (const auto& kv : groups) stats[kv.first] = centre_and_scale(kv.second, robust);
  std::vector<double> out;
  for (const auto& e : entries)
    for (size_t t = 0; t < e.labels.size(); ++t) {
      const auto cs = stats.at(key(e, t));
      out.push_back((e.labels[t] - cs.first) / cs.second);
    }
  return out;
}

}  // namespace groupmates
