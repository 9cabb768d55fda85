// version_registry.h: the influence-model versions of a selecting loader, one number each (private).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>

#include "groupmates/engine/model_registry.h"

namespace groupmates {

/// Owns every influence-model version under one number (1, 2, ...): its weights (while a window or a
/// saved state may still need them), whether it was refreshed from probes, and the ModelRegistry
/// entry the scorer reads. Used on the trainer's thread only (the ModelRegistry inside is thread-safe).
class VersionRegistry {
 public:
  VersionRegistry(ModelRegistry::Factory factory, torch::Device device);

  /// Publishes `weights` as version `number` (0 = the next free number); it becomes current(). Returns it.
  uint64_t publish(const std::string& weights, bool trained, uint64_t number = 0,
                   const std::string& origin = "influence-model weights");
  /// The version published last (what a window read now is scored by).
  uint64_t current() const { return current_; }
  /// The weights of `number`; throws Error(kInternal) if they were released.
  const std::string& weights(uint64_t number) const;
  /// Whether `number` was refreshed from probes (false for the initial model or an unknown number).
  bool trained(uint64_t number) const;
  /// Releases the weights of every version but `keep` and current().
  void retain(std::initializer_list<uint64_t> keep);
  /// Versions whose weights are kept (not released).
  size_t held() const;
  /// The number the next publish() takes by default (saved with the loader's state).
  uint64_t next_number() const { return next_; }
  void set_next_number(uint64_t next) { next_ = next; }
  /// The registry the WindowScorer reads.
  const std::shared_ptr<ModelRegistry>& models() const { return models_; }

 private:
  struct Version {
    std::string weights;
    bool trained = false;
    bool released = false;
  };
  std::shared_ptr<ModelRegistry> models_;
  std::map<uint64_t, Version> versions_;
  uint64_t current_ = 0;
  uint64_t next_ = 1;
};

}  // namespace groupmates
