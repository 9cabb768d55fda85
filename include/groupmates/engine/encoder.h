// groupmates/encoder.h: the interface every candidate encoder implements.
//
// An encoder maps a window of token sequences to one L2-normalised embedding per sequence
// (h_i in ALGORITHM.md section 3). It is a torch::nn::Module so the relational influence model
// can own it as a submodule, train it, save it and move it to a device.
#pragma once

#include <cstdint>
#include <string>

#include <torch/nn/module.h>
#include <torch/types.h>

namespace groupmates {

/// Maps token sequences to unit-norm embeddings; owned and trained by RelationalInfluenceModel.
class Encoder : public torch::nn::Module {
 public:
  /// tokens: int64 [W, T]; mask: undefined or bool [W, T] (true = real token). Returns float [W, dim()], unit rows.
  virtual torch::Tensor encode(const torch::Tensor& tokens, const torch::Tensor& mask = {}) = 0;
  /// Width D of the embeddings encode() returns.
  virtual int64_t dim() const = 0;
  /// Approximate forward FLOPs to encode one row of `tokens` tokens, for cost accounting (0 = unknown).
  virtual double flops_per_row(int64_t tokens) const { return 0; }
  /// What the encoder is, as text: its kind and everything that changes its embeddings beyond the
  /// weights RelationalInfluenceModel saves (sizes, hash seed, a TorchScript file's content hash).
  /// Saved with the model's weights and in a selecting loader's state; a mismatch refuses them.
  virtual std::string identity() const = 0;
};

}  // namespace groupmates
