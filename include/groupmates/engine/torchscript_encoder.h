// groupmates/torchscript_encoder.h: plug any scripted/traced sentence encoder (e.g. a small BERT).
//
// The file holds a TorchScript module whose forward(ids: int64 [W, T], mask: int64 [W, T]) returns
// [W, D] (or a tuple/list whose first element is [W, D], or [W, T, D] hidden states, of which the
// masked mean is taken). The output is L2-normalised. The scripted module is frozen: only the
// influence model's head, tau and alpha train on top of it.
#pragma once

#include <memory>
#include <string>

#include "groupmates/engine/encoder.h"

namespace torch::jit {
struct Module;
}

namespace groupmates {

/// Encoder backed by a TorchScript module file (torch::jit::load); frozen weights.
class TorchScriptEncoder : public Encoder {
 public:
  /// Loads `path` onto `device`; dim is the output width D (checked on the first encode()).
  TorchScriptEncoder(const std::string& path, int64_t dim, torch::Device device = torch::kCPU);
  ~TorchScriptEncoder() override;

  torch::Tensor encode(const torch::Tensor& tokens, const torch::Tensor& mask = {}) override;
  int64_t dim() const override { return dim_; }

 private:
  std::string path_;
  int64_t dim_;
  torch::Device device_;
  std::shared_ptr<torch::jit::Module> module_;
};

}  // namespace groupmates
