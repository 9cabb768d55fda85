// groupmates/torchscript_encoder.h: plug any scripted/traced sentence encoder (e.g. a small BERT).
//
// The file holds a TorchScript module whose forward takes token ids int64 [W, T] and optionally a
// mask int64 [W, T] (1 = real token; a forward with one argument gets the ids alone), and returns
// float [W, D] (or a tuple/list whose first element is [W, D], or [W, T, D] hidden states, of which
// the masked mean is taken). The output is L2-normalised. The scripted module is frozen: only the
// influence model's head, tau and alpha train on top of it.
//
// The constructor reads the file once, loads the module onto the device, hashes its weights (identity()),
// and runs a probe forward on 2 rows of 8 ids (1..16): D is the probe's output width. A
// missing or unreadable file, a file that is not TorchScript, a forward of another arity, an output
// that is not a floating-point [rows, D] tensor or holds NaN/Inf: Error naming the file and the fix.
// Every encode() checks the output again (shape, dtype, finite).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "groupmates/engine/encoder.h"

namespace groupmates {

/// Encoder backed by a TorchScript module file (torch::jit::load); frozen weights.
class TorchScriptEncoder : public Encoder {
 public:
  /// Loads `path` onto `device` and probes it (see above). dim: the expected D (-1 = take the probe's);
  /// pad_id >= 0: encode() without a mask masks the tokens equal to it (-1 = none).
  explicit TorchScriptEncoder(const std::string& path, int64_t dim = -1, torch::Device device = torch::kCPU,
                              int64_t pad_id = -1);
  ~TorchScriptEncoder() override;

  /// Another encoder over the same loaded module (nothing re-read; forward may run on several threads).
  std::shared_ptr<TorchScriptEncoder> share() const;

  torch::Tensor encode(const torch::Tensor& tokens, const torch::Tensor& mask = {}) override;
  int64_t dim() const override { return dim_; }
  /// An estimate: tokens x 2 x the module's parameters, leaving out tables read by embedding lookups
  /// (aten::embedding / embedding_bag in the inlined forward). The rule counts every other parameter once
  /// per token, so a layer applied after pooling (once per row) is overcounted; exact for per-token layers.
  double flops_per_row(int64_t tokens) const override;
  /// "torchscript(weights_xxh3=<16 hex digits>,dim=D)": a hash of the module's parameters and buffers (names,
  /// dtypes, shapes, values). Neither the path nor the file's bytes (a re-export of the same module may differ in
  /// generated class names) nor the code are part of it.
  std::string identity() const override;
  const std::string& path() const { return path_; }

 private:
  struct Loaded;
  explicit TorchScriptEncoder(std::shared_ptr<const Loaded> loaded, int64_t pad_id);
  torch::Tensor run(const torch::Tensor& ids, const torch::Tensor& mask) const;

  std::shared_ptr<const Loaded> loaded_;
  std::string path_;
  int64_t dim_ = 0;
  int64_t pad_id_ = -1;
};

}  // namespace groupmates
