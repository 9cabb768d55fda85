// ModelRegistry: versioned influence models, swapped atomically.
#include "groupmates/engine/model_registry.h"

#include <torch/cuda.h>

#include "groupmates/error.h"

namespace groupmates {

torch::Device default_device() {
  return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
}

ModelRegistry::ModelRegistry(Factory factory, torch::Device device) : factory_(std::move(factory)), device_(device) {
  if (!factory_) throw Error(ErrorCode::kInvalidConfig, "ModelRegistry", "factory is empty");
}

uint64_t ModelRegistry::publish(const std::string& weights_blob, const std::string& origin) {
  // Build and load outside the lock: scoring of the current version goes on meanwhile.
  auto version = std::make_shared<ModelVersion>();
  version->model = factory_();
  if (!version->model) throw Error(ErrorCode::kInvalidConfig, "ModelRegistry", "factory returned null");
  version->model->import_weights(weights_blob, origin);
  version->model->to(device_);
  version->model->eval();
  for (auto& p : version->model->parameters()) p.set_requires_grad(false);
  std::lock_guard<std::mutex> lock(mutex_);
  version->version = next_version_++;
  current_ = version;
  return version->version;
}

std::shared_ptr<const ModelVersion> ModelRegistry::current() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return current_;
}

uint64_t ModelRegistry::current_version() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return current_ ? current_->version : 0;
}

}  // namespace groupmates
