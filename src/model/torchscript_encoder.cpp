// TorchScriptEncoder: a scripted/traced module file as a frozen encoder.
#include "groupmates/engine/torchscript_encoder.h"

#include <torch/nn/functional/normalization.h>
#include <torch/script.h>

#include "groupmates/error.h"

namespace groupmates {

TorchScriptEncoder::TorchScriptEncoder(const std::string& path, int64_t dim, torch::Device device)
    : path_(path), dim_(dim), device_(device) {
  if (dim <= 0) throw Error(ErrorCode::kInvalidConfig, "TorchScriptEncoder.dim", "must be > 0");
  try {
    module_ = std::make_shared<torch::jit::Module>(torch::jit::load(path, device));
  } catch (const c10::Error& e) {
    throw Error(ErrorCode::kIo, path, std::string("cannot load the TorchScript module: ") + e.what_without_backtrace());
  }
  module_->eval();
}

TorchScriptEncoder::~TorchScriptEncoder() = default;

torch::Tensor TorchScriptEncoder::encode(const torch::Tensor& tokens, const torch::Tensor& mask) {
  torch::NoGradGuard no_grad;  // frozen: only the influence model's head trains on top
  const torch::Tensor ids = tokens.to(device_, torch::kLong);
  const torch::Tensor m = mask.defined() ? mask.to(device_, torch::kLong) : torch::ones_like(ids);
  torch::IValue result;
  try {
    result = module_->forward({ids, m});
  } catch (const c10::Error& e) {
    throw Error(ErrorCode::kInvalidConfig, path_, std::string("forward(ids, mask) failed: ") + e.what_without_backtrace());
  }
  torch::Tensor out;
  if (result.isTensor()) out = result.toTensor();
  else if (result.isTuple()) out = result.toTupleRef().elements().at(0).toTensor();
  else if (result.isList()) out = result.toListRef().at(0).toTensor();
  else throw Error(ErrorCode::kInvalidConfig, path_, "forward must return a tensor, or a tuple/list starting with one");
  if (out.dim() == 3) {  // hidden states [W, T, D]: masked mean over T
    const torch::Tensor weight = m.to(out.scalar_type()).unsqueeze(-1);
    out = (out * weight).sum(1) / weight.sum(1).clamp_min(1);
  }
  if (out.dim() != 2 || out.size(0) != ids.size(0) || out.size(1) != dim_)
    throw Error(ErrorCode::kInvalidConfig, path_,
                "output must be [W, " + std::to_string(dim_) + "], got " + c10::str(out.sizes()));
  return torch::nn::functional::normalize(out.to(torch::kFloat),
                                          torch::nn::functional::NormalizeFuncOptions().p(2.0).dim(1).eps(1e-12));
}

}  // namespace groupmates
