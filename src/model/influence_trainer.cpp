// InfluenceTrainer: AdamW on labelled rollouts; Pearson/Spearman evaluation.
#include "groupmates/engine/influence_trainer.h"

#include <vector>

#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include "groupmates/engine/metrics.h"

namespace groupmates {

namespace {

std::vector<double> to_vector(const torch::Tensor& t) {
  const torch::Tensor flat = t.detach().to(torch::kCPU, torch::kDouble).contiguous().flatten();
  return std::vector<double>(flat.data_ptr<double>(), flat.data_ptr<double>() + flat.numel());
}

}  // namespace

InfluenceTrainer::InfluenceTrainer(std::shared_ptr<RelationalInfluenceModel> model, const InfluenceTrainerConfig& config)
    : model_(std::move(model)), config_(config) {
  // Weight decay on matrices only: decaying tau, alpha or biases would pull them toward 0.
  std::vector<torch::Tensor> decayed, plain;
  for (const auto& item : model_->named_parameters()) {
    if (!item.value().requires_grad()) continue;
    (item.value().dim() >= 2 ? decayed : plain).push_back(item.value());
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decayed, std::make_unique<torch::optim::AdamWOptions>(
                                   torch::optim::AdamWOptions(config.learning_rate).weight_decay(config.weight_decay)));
  groups.emplace_back(plain, std::make_unique<torch::optim::AdamWOptions>(
                                 torch::optim::AdamWOptions(config.learning_rate).weight_decay(0.0)));
  optimizer_ = std::make_unique<torch::optim::AdamW>(
      groups, torch::optim::AdamWOptions(config.learning_rate).weight_decay(config.weight_decay));
}

InfluenceTrainer::~InfluenceTrainer() = default;

double InfluenceTrainer::step(const torch::Tensor& tokens, const torch::Tensor& raw_labels, const torch::Tensor& mask,
                              const torch::Tensor& prior) {
  model_->train();
  optimizer_->zero_grad();
  const torch::Tensor loss = model_->loss(model_->predict_rollouts(tokens, mask, prior), raw_labels);
  loss.backward();
  if (config_.grad_clip_norm > 0) torch::nn::utils::clip_grad_norm_(model_->parameters(), config_.grad_clip_norm);
  optimizer_->step();
  model_->constrain();
  return loss.item<double>();
}

InfluenceEvaluation InfluenceTrainer::evaluate(const torch::Tensor& tokens, const torch::Tensor& raw_labels,
                                               const torch::Tensor& mask, const torch::Tensor& prior) {
  torch::NoGradGuard no_grad;
  model_->eval();
  const torch::Tensor p = model_->predict_rollouts(tokens, mask, prior);
  InfluenceEvaluation result;
  result.mse = model_->loss(p, raw_labels).item<double>();
  const std::vector<double> x = to_vector(p), y = to_vector(model_->standardise(raw_labels));
  result.pearson = pearson(x, y);
  result.spearman = spearman(x, y);
  return result;
}

}  // namespace groupmates
