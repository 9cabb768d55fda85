// groupmates/model_registry.h: versioned influence models, swapped atomically between windows.
//
// publish() builds a fresh model from the factory, imports the weights blob, moves it to the
// device in eval mode and only then swaps it in: readers never see a half-loaded model. A
// version, once published, is immutable; readers hold it by shared_ptr for as long as they use it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include <torch/types.h>

#include "groupmates/engine/influence_model.h"

namespace groupmates {

/// One immutable published model and its version number (1, 2, ...).
struct ModelVersion {
  uint64_t version = 0;
  std::shared_ptr<RelationalInfluenceModel> model;
};

/// Holds the current model version; publish() is safe from any thread.
class ModelRegistry {
 public:
  /// Builds an untrained model of the right architecture (weights are then imported).
  using Factory = std::function<std::shared_ptr<RelationalInfluenceModel>()>;

  ModelRegistry(Factory factory, torch::Device device);

  /// Loads `weights_blob` (RelationalInfluenceModel::export_weights) as a new version; returns it.
  uint64_t publish(const std::string& weights_blob, const std::string& origin = "influence-model weights");
  /// The current version, or nullptr before the first publish().
  std::shared_ptr<const ModelVersion> current() const;
  /// Version number of current(), 0 before the first publish().
  uint64_t current_version() const;
  torch::Device device() const { return device_; }

 private:
  Factory factory_;
  torch::Device device_;
  mutable std::mutex mutex_;
  uint64_t next_version_ = 1;
  std::shared_ptr<const ModelVersion> current_;
};

/// The device LibTorch should use here: CUDA when available, else CPU.
torch::Device default_device();

}  // namespace groupmates
