// TinyGpt: a small causal transformer LM (groupmates/tiny_gpt.h).
#include "tiny_gpt/tiny_gpt.h"

#include <cmath>
#include <limits>
#include <string>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/adamw.h>

#include "groupmates/error.h"

namespace groupmates {

/// Pre-LayerNorm transformer block: x + attn(ln1(x)), then x + mlp(ln2(x)).
class TinyGptBlock : public torch::nn::Module {
 public:
  TinyGptBlock(int64_t d_model, int64_t n_heads, int64_t d_ff, int64_t context) : heads_(n_heads) {
    ln1_ = register_module("ln1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d_model})));
    qkv_ = register_module("qkv", torch::nn::Linear(d_model, 3 * d_model));
    proj_ = register_module("proj", torch::nn::Linear(d_model, d_model));
    ln2_ = register_module("ln2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d_model})));
    fc1_ = register_module("fc1", torch::nn::Linear(d_model, d_ff));
    fc2_ = register_module("fc2", torch::nn::Linear(d_ff, d_model));
    // true above the diagonal: position t may not attend to t' > t.
    mask_ = register_buffer("causal_mask", torch::ones({context, context}, torch::kBool).triu(1));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    const int64_t b = x.size(0), t = x.size(1), d = x.size(2), dh = d / heads_;
    const auto qkv = qkv_->forward(ln1_->forward(x)).view({b, t, 3, heads_, dh}).permute({2, 0, 3, 1, 4});
    const torch::Tensor q = qkv[0], k = qkv[1], v = qkv[2];  // [B, H, T, dh]
    torch::Tensor att = torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(dh)));
    att = att.masked_fill(mask_.slice(0, 0, t).slice(1, 0, t), -std::numeric_limits<float>::infinity());
    const torch::Tensor y = torch::matmul(torch::softmax(att, -1), v).transpose(1, 2).reshape({b, t, d});
    torch::Tensor h = x + proj_->forward(y);
    return h + fc2_->forward(torch::gelu(fc1_->forward(ln2_->forward(h))));
  }

 private:
  int64_t heads_;
  torch::nn::LayerNorm ln1_{nullptr}, ln2_{nullptr};
  torch::nn::Linear qkv_{nullptr}, proj_{nullptr}, fc1_{nullptr}, fc2_{nullptr};
  torch::Tensor mask_;
};

TinyGpt::TinyGpt(const TinyGptConfig& config) : config_(config) {
  const char* where = "TinyGptConfig";
  if (config_.vocab_size < 2 || config_.context < 2 || config_.d_model < 1 || config_.n_layers < 1 ||
      config_.n_heads < 1)
    throw Error(ErrorCode::kInvalidConfig, where, "vocab_size, context >= 2; d_model, n_layers, n_heads >= 1");
  if (config_.d_model % config_.n_heads != 0)
    throw Error(ErrorCode::kInvalidConfig, where, "n_heads must divide d_model");
  if (config_.d_ff == 0) config_.d_ff = 4 * config_.d_model;
  token_embedding_ = register_module("tok", torch::nn::Embedding(config_.vocab_size, config_.d_model));
  position_embedding_ = register_module("pos", torch::nn::Embedding(config_.context, config_.d_model));
  for (int64_t i = 0; i < config_.n_layers; ++i)
    blocks_.push_back(register_module("block" + std::to_string(i),
                                      std::make_shared<TinyGptBlock>(config_.d_model, config_.n_heads, config_.d_ff,
                                                                     config_.context)));
  final_norm_ = register_module("ln_f", torch::nn::LayerNorm(torch::nn::LayerNormOptions({config_.d_model})));

  // Deterministic initialisation from the seed with a private generator.
  torch::NoGradGuard no_grad;
  at::Generator gen = at::detail::createCPUGenerator(config_.seed);
  const double residual_std = 0.02 / std::sqrt(2.0 * static_cast<double>(config_.n_layers));
  for (auto& item : named_parameters()) {
    const std::string& name = item.key();
    torch::Tensor& p = item.value();
    const bool is_norm = name.find("ln") != std::string::npos;
    const bool is_bias = name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
    if (is_norm)
      is_bias ? p.zero_() : p.fill_(1.0);
    else if (is_bias)
      p.zero_();
    else if (name.find("proj.") != std::string::npos || name.find("fc2.") != std::string::npos)
      p.normal_(0.0, residual_std, gen);
    else
      p.normal_(0.0, 0.02, gen);
  }
}

torch::Tensor TinyGpt::forward(const torch::Tensor& tokens) {
  const int64_t t = tokens.size(1);
  if (t > config_.context)
    throw Error(ErrorCode::kInvalidConfig, "TinyGpt::forward",
                "sequence of " + std::to_string(t) + " tokens exceeds the context of " + std::to_string(config_.context));
  const torch::Tensor positions = torch::arange(t, tokens.options().dtype(torch::kInt64));
  torch::Tensor x = token_embedding_->forward(tokens) + position_embedding_->forward(positions);
  for (auto& block : blocks_) x = block->forward(x);
  x = final_norm_->forward(x);
  return torch::matmul(x, token_embedding_->weight.t());  // tied head
}

torch::Tensor TinyGpt::loss(const torch::Tensor& tokens) {
  if (tokens.dim() != 2 || tokens.size(1) < 2)
    throw Error(ErrorCode::kInvalidConfig, "TinyGpt::loss", "tokens must be int64 [B, T] with T >= 2");
  const int64_t t = tokens.size(1);
  return loss(tokens.slice(1, 0, t - 1), tokens.slice(1, 1, t));
}

torch::Tensor TinyGpt::loss(const torch::Tensor& input_ids, const torch::Tensor& labels) {
  if (input_ids.dim() != 2 || labels.sizes() != input_ids.sizes())
    throw Error(ErrorCode::kInvalidConfig, "TinyGpt::loss", "input_ids and labels must both be int64 [B, T]");
  const torch::Tensor logits = forward(input_ids);
  torch::Tensor targets = labels.reshape({-1});
  if (config_.ignore_id >= 0)  // the padding id of a loader without labels: left out like -100
    targets = targets.masked_fill(targets == config_.ignore_id, -100);
  return torch::nll_loss(torch::log_softmax(logits.reshape({-1, config_.vocab_size}), -1), targets, {},
                         at::Reduction::Mean, -100);
}

int64_t TinyGpt::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

TinyGptConfig tiny_gpt_config(int64_t vocab, int64_t context, int64_t d_model, int64_t layers, int64_t heads,
                              uint64_t seed) {
  TinyGptConfig c;
  c.vocab_size = vocab;
  c.context = context;
  c.d_model = d_model;
  c.n_layers = layers;
  c.n_heads = heads;
  c.seed = seed;
  return c;
}

std::function<std::shared_ptr<torch::optim::Optimizer>(torch::nn::Module&)> adamw_factory(double lr,
                                                                                          double weight_decay) {
  return [lr, weight_decay](torch::nn::Module& m) -> std::shared_ptr<torch::optim::Optimizer> {
    return std::make_shared<torch::optim::AdamW>(m.parameters(),
                                                 torch::optim::AdamWOptions(lr).weight_decay(weight_decay));
  };
}

torch::Tensor tiny_gpt_loss(torch::nn::Module& module, const torch::Tensor& tokens) {
  auto* gpt = dynamic_cast<TinyGpt*>(&module);
  if (!gpt) throw Error(ErrorCode::kInvalidConfig, "tiny_gpt_loss", "the module is not a TinyGpt");
  return gpt->loss(tokens);
}

}  // namespace groupmates
