#include "label_standardisation.h"

#include <algorithm>
#include <cmath>
#include <map>

namespace groupmates {

std::vector<double> standardise_per_probe(const std::vector<LabelledRollout>& entries, bool robust) {
  std::map<int64_t, std::vector<double>> by_step;
  for (const auto& e : entries) by_step[e.probe_step].insert(by_step[e.probe_step].end(), e.labels.begin(), e.labels.end());
  std::map<int64_t, std::pair<double, double>> stats;  // step -> (centre, scale)
  for (auto& kv : by_step) {
    std::vector<double>& v = kv.second;
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
    stats[kv.first] = {centre, scale > 1e-12 ? scale : 1.0};
  }
  std::vector<double> out;
  for (const auto& e : entries) {
    const auto cs = stats.at(e.probe_step);
    for (double y : e.labels) out.push_back((y - cs.first) / cs.second);
  }
  return out;
}

}  // namespace groupmates
