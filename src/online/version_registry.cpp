#include "online/version_registry.h"

#include <algorithm>

#include "groupmates/error.h"
#include "model/weights_format.h"

namespace groupmates {

VersionRegistry::VersionRegistry(ModelRegistry::Factory factory, torch::Device device)
    : models_(std::make_shared<ModelRegistry>(std::move(factory), device)) {}

uint64_t VersionRegistry::publish(const std::string& weights, bool trained, uint64_t number, const std::string& origin) {
  if (number == 0) number = next_++;
  models_->publish(weights, origin);
  // A torch archive from before groupmates' own format (read only when trusted) is kept converted: a later
  // state or probe never hands LibTorch those bytes again.
  versions_[number] = Version{is_torch_archive(weights) ? models_->current()->model->export_weights() : weights, trained, false};
  current_ = number;
  return number;
}

const std::string& VersionRegistry::weights(uint64_t number) const {
  auto it = versions_.find(number);
  if (it == versions_.end() || it->second.released)
    throw Error(ErrorCode::kInternal, "VersionRegistry", "the weights of version " + std::to_string(number) + " were released");
  return it->second.weights;
}

size_t VersionRegistry::held() const {
  size_t n = 0;
  for (const auto& [number, v] : versions_) n += !v.released;
  return n;
}

bool VersionRegistry::trained(uint64_t number) const {
  auto it = versions_.find(number);
  return it != versions_.end() && it->second.trained;
}

void VersionRegistry::retain(std::initializer_list<uint64_t> keep) {
  for (auto& [number, v] : versions_) {
    if (number == current_ || std::find(keep.begin(), keep.end(), number) != keep.end()) continue;
    v.released = true;
    std::string().swap(v.weights);
  }
}

}  // namespace groupmates
