// optimizer_step.h: one optimiser step as the probes take it, and the copying of weights and
// optimiser state that the probe targets share (private).
#pragma once

#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <torch/optim/optimizer.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include "groupmates/error.h"

namespace groupmates {

/// The optimiser's state map key of a parameter (a string of the TensorImpl address in LibTorch 1.x,
/// the address itself in later versions).
template <typename Map>
typename Map::key_type state_key(const Map&, const torch::Tensor& p) {
  using Key = typename Map::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream s;
    s << p.unsafeGetTensorImpl();
    return s.str();
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}

/// What `from.save(archive)` writes (a module's weights, an optimiser's state), as bytes.
template <typename Saved>
std::string saved_bytes(const Saved& from) {
  torch::serialize::OutputArchive archive;
  from.save(archive);
  std::ostringstream out;
  archive.save_to(out);
  return out.str();
}

/// Loads saved_bytes() into `to` on `device`. A mismatch (c10::Error: the factory's module or
/// optimiser does not fit what was saved) becomes Error(kInvalidState, where, what + ": " + details).
template <typename Loaded>
void load_bytes(const std::string& bytes, Loaded& to, const torch::Device& device, const std::string& where,
                const std::string& what) {
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(bytes.data(), bytes.size(), device);
    to.load(archive);
  } catch (const c10::Error& e) {
    throw Error(ErrorCode::kInvalidState, where, what + ": " + e.what_without_backtrace());
  }
}

/// Clips the global gradient norm of the optimiser's parameters at `grad_clip_norm` (0 = off),
/// then steps with every group's learning rate multiplied by `lr_scale` (restored afterwards).
void clipped_scaled_step(torch::optim::Optimizer& optimizer, double grad_clip_norm, double lr_scale);

/// d loss / d params (zeros for a parameter the loss does not use), by torch::autograd::grad: the
/// parameters' .grad fields are left as they were.
std::vector<torch::Tensor> gradient_of(const torch::Tensor& loss, const std::vector<torch::Tensor>& params);

}  // namespace groupmates
