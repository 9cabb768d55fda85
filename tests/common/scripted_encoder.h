// scripted_encoder.h: a small TorchScript sentence encoder built in C++ (embedding table, masked mean
// over the real tokens, linear projection), saved to a file, with its weights kept for a reference
// computed with plain tensor ops; and modules that break the encoder contract, for the error tests.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <torch/script.h>
#include <torch/torch.h>

namespace testing_scripted {

/// The weights of write_mean_pool_encoder's module.
struct MeanPoolWeights {
  torch::Tensor table;  ///< float [vocab, width]
  torch::Tensor proj;   ///< float [width, dim]
};

/// Writes a module forward(ids, mask) = (masked mean of table[ids]) @ proj, with weights drawn from
/// `seed`, to `path`; returns the weights. with_mask = false: forward(ids), every token counted.
inline MeanPoolWeights write_mean_pool_encoder(const std::string& path, int64_t vocab, int64_t width, int64_t dim,
                                               uint64_t seed, bool with_mask = true) {
  torch::manual_seed(seed);
  MeanPoolWeights w{torch::randn({vocab, width}), torch::randn({width, dim})};
  torch::jit::Module m("MeanPoolEncoder");
  m.register_parameter("table", w.table.clone(), false);
  m.register_parameter("proj", w.proj.clone(), false);
  if (with_mask)
    m.define(R"JIT(
def forward(self, ids, mask):
    x = torch.embedding(self.table, ids)
    weight = mask.float().unsqueeze(-1)
    pooled = (x * weight).sum(1) / weight.sum(1).clamp_min(1.0)
    return torch.matmul(pooled, self.proj)
)JIT");
  else
    m.define(R"JIT(
def forward(self, ids):
    return torch.matmul(torch.embedding(self.table, ids).mean(1), self.proj)
)JIT");
  m.save(path);
  return w;
}

/// The module's output, row by row with plain tensor ops (the reference): [rows, dim], not normalised.
inline torch::Tensor mean_pool_reference(const MeanPoolWeights& w, const torch::Tensor& ids, const torch::Tensor& mask) {
  std::vector<torch::Tensor> rows;
  for (int64_t r = 0; r < ids.size(0); ++r) {
    torch::Tensor sum = torch::zeros({w.table.size(1)});
    int64_t n = 0;
    for (int64_t t = 0; t < ids.size(1); ++t)
      if (!mask.defined() || mask[r][t].item<int64_t>() != 0) sum += w.table[ids[r][t].item<int64_t>()], ++n;
    rows.push_back(torch::matmul(sum / double(std::max<int64_t>(n, 1)), w.proj));
  }
  return torch::stack(rows);
}

/// Writes a module whose forward is `body` (TorchScript source of a whole def) to `path`.
inline void write_module(const std::string& path, const std::string& body) {
  torch::jit::Module m("BadEncoder");
  m.define(body);
  m.save(path);
}

}  // namespace testing_scripted
