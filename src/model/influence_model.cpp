// RelationalInfluenceModel: encoder + linear head + learnable (tau, alpha); ALGORITHM.md section 3.
#include "groupmates/engine/influence_model.h"
#include "model/blob_file.h"
#include "model/weights_format.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <cmath>
#include <fstream>
#include <sstream>
#include <vector>

#include <torch/nn/functional/loss.h>
#include <torch/serialize/input-archive.h>

#include "groupmates/error.h"

namespace groupmates {

RelationalInfluenceModel::RelationalInfluenceModel(std::shared_ptr<Encoder> encoder, const InfluenceModelConfig& config) {
  if (!encoder) throw Error(ErrorCode::kInvalidConfig, "RelationalInfluenceModel", "encoder is null");
  if (config.dropout < 0 || config.dropout >= 1)
    throw Error(ErrorCode::kInvalidConfig, "InfluenceModelConfig.dropout",
                "got " + std::to_string(config.dropout) + ", allowed [0, 1)");
  if (config.tau_init == 0)
    throw Error(ErrorCode::kInvalidConfig, "InfluenceModelConfig.tau_init", "must be non-zero");
  if (config.tau_min < 0 || (config.tau_min > 0 && config.tau_init < config.tau_min))
    throw Error(ErrorCode::kInvalidConfig, "InfluenceModelConfig.tau_min",
                "got " + std::to_string(config.tau_min) + ": must be >= 0 and <= tau_init (" +
                    std::to_string(config.tau_init) + ")");
  tau_min_ = config.tau_min;
  encoder_ = register_module("encoder", std::move(encoder));
  dropout_ = register_module("dropout", torch::nn::Dropout(config.dropout));
  head_ = register_module("head", torch::nn::Linear(encoder_->dim(), 1));
  tau_ = register_parameter("tau", torch::full({}, config.tau_init));
  alpha_ = register_parameter("alpha", torch::full({}, config.alpha_init));
  prior_weight_ = register_parameter("prior_weight", torch::full({}, config.prior_weight_init));
  if (config.zero_head) {
    torch::NoGradGuard no_grad;
    head_->weight.zero_();
    head_->bias.zero_();
  }
  label_centre_ = register_buffer("label_centre", torch::zeros({}, torch::kDouble));
  label_scale_ = register_buffer("label_scale", torch::ones({}, torch::kDouble));
}

torch::Tensor RelationalInfluenceModel::embed(const torch::Tensor& tokens, const torch::Tensor& mask) {
  return encoder_->encode(tokens, mask);
}

torch::Tensor RelationalInfluenceModel::individual(const torch::Tensor& h, const torch::Tensor& prior) {
  torch::Tensor u = head_->forward(dropout_->forward(h)).squeeze(-1);
  if (prior.defined()) u = u + prior_weight_ * prior.to(u.device(), u.scalar_type());
  return u;
}

torch::Tensor RelationalInfluenceModel::relation(const torch::Tensor& a, const torch::Tensor& b) {
  return alpha_ * (1 - torch::matmul(a, b.transpose(-1, -2)) / tau_);
}

torch::Tensor RelationalInfluenceModel::predict_groups(const torch::Tensor& h, const torch::Tensor& prior) {
  if (h.dim() != 3) throw Error(ErrorCode::kInvalidConfig, "predict_groups", "h must be [G, L, D]");
  if (prior.defined() && (prior.dim() != 2 || prior.size(0) != h.size(0) || prior.size(1) != h.size(1)))
    throw Error(ErrorCode::kInvalidConfig, "predict_groups", "prior must be [G, L] like h's first two dims");
  const int64_t length = h.size(1);
  const torch::Tensor u = individual(h, prior);                       // [G, L]
  const torch::Tensor before = relation(h, h).tril(-1).sum(-1);       // [G, L]: sum_{j<t} r_tj
  const torch::Tensor t = torch::arange(length, h.options());         // [L]
  const torch::Tensor mean_r = before / t.clamp_min(1);
  const torch::Tensor factor = torch::where(t.eq(0), torch::ones_like(mean_r), mean_r);  // p_0 = u_0
  return u * factor;
}

torch::Tensor RelationalInfluenceModel::predict_rollouts(const torch::Tensor& tokens, const torch::Tensor& mask,
                                                        const torch::Tensor& prior) {
  if (tokens.dim() != 3) throw Error(ErrorCode::kInvalidConfig, "predict_rollouts", "tokens must be [G, L, T]");
  const int64_t groups = tokens.size(0), length = tokens.size(1), width = tokens.size(2);
  const torch::Tensor flat_mask = mask.defined() ? mask.reshape({groups * length, width}) : mask;
  const torch::Tensor h = embed(tokens.reshape({groups * length, width}), flat_mask);
  return predict_groups(h.reshape({groups, length, h.size(-1)}), prior);
}

torch::Tensor RelationalInfluenceModel::loss(const torch::Tensor& predictions, const torch::Tensor& raw_labels) const {
  const torch::Tensor target = standardise(raw_labels).to(predictions.device(), predictions.scalar_type());
  return torch::nn::functional::mse_loss(predictions, target);
}

void RelationalInfluenceModel::fit_label_stats(const torch::Tensor& raw_labels, LabelScaling scaling) {
  const torch::Tensor flat = raw_labels.detach().to(torch::kCPU, torch::kDouble).contiguous().flatten();
  std::vector<double> y(flat.data_ptr<double>(), flat.data_ptr<double>() + flat.numel());
  if (y.empty()) throw Error(ErrorCode::kInvalidConfig, "fit_label_stats", "no labels");
  double centre = 0, scale = 1;
  if (scaling == LabelScaling::kMeanStd) {
    for (double v : y) centre += v;
    centre /= double(y.size());
    double var = 0;
    for (double v : y) var += (v - centre) * (v - centre);
    scale = std::sqrt(var / double(y.size()));  // population standard deviation
  } else {
    auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      const size_t n = v.size();
      return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    };
    centre = median(y);
    std::vector<double> dev(y.size());
    for (size_t i = 0; i < y.size(); ++i) dev[i] = std::abs(y[i] - centre);
    scale = 1.4826 * median(dev);
  }
  if (!(scale > 1e-12)) scale = 1.0;  // constant labels: centre only
  torch::NoGradGuard no_grad;
  label_centre_.fill_(centre);
  label_scale_.fill_(scale);
}

torch::Tensor RelationalInfluenceModel::standardise(const torch::Tensor& raw_labels) const {
  return (raw_labels.to(torch::kDouble) - label_centre_.to(raw_labels.device())) / label_scale_.to(raw_labels.device());
}

double RelationalInfluenceModel::label_centre() const { return label_centre_.item<double>(); }
double RelationalInfluenceModel::label_scale() const { return label_scale_.item<double>(); }
void RelationalInfluenceModel::constrain() {
  if (tau_min_ <= 0) return;
  torch::NoGradGuard no_grad;
  tau_.clamp_min_(tau_min_);
  alpha_.clamp_min_(0.0);
  prior_weight_.clamp_min_(0.0);
}

double RelationalInfluenceModel::tau() const { return tau_.item<double>(); }
double RelationalInfluenceModel::alpha() const { return alpha_.item<double>(); }
double RelationalInfluenceModel::prior_weight() const { return prior_weight_.item<double>(); }

// Weights saved with one encoder are refused by a model with another (the head would read garbage).
// Weights saved before the identity was recorded carry none: accepted by the default (hashed n-gram)
// encoder only, whose tensor shapes are still compared below.
void RelationalInfluenceModel::check_encoder_identity(torch::serialize::InputArchive& archive,
                                                      const std::string& origin) const {
  const std::string mine = encoder_->identity();
  c10::IValue saved;
  if (!archive.try_read(kEncoderIdentityKey, saved)) {
    if (mine.rfind("hashed_ngram(", 0) == 0) return;
    throw Error(ErrorCode::kInvalidState, origin,
                "the weights name no encoder (saved before encoders were recorded, with the hashed n-gram encoder); "
                "this model's encoder is " + mine);
  }
  if (!saved.isString() || saved.toStringRef() != mine)
    throw Error(ErrorCode::kInvalidState, origin,
                "the weights were saved with the encoder " + (saved.isString() ? saved.toStringRef() : std::string("?")) +
                    "; this model's encoder is " + mine + ": load them with the same SelectionConfig.encoder and file");
}

namespace {

// The dtype names of weights_format.h; nullptr for a dtype the format does not hold.
const char* saved_dtype_name(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat: return "float32";
    case torch::kDouble: return "float64";
    case torch::kHalf: return "float16";
    case torch::kBFloat16: return "bfloat16";
    case torch::kLong: return "int64";
    case torch::kInt: return "int32";
    case torch::kShort: return "int16";
    case torch::kChar: return "int8";
    case torch::kByte: return "uint8";
    case torch::kBool: return "bool";
    default: return nullptr;
  }
}

// No NaN or inf among a saved tensor's elements (read byte-wise: the blob's views need not be aligned).
bool all_finite(const SavedTensor& s) {
  const char* p = s.bytes.data();
  if (s.dtype == "float32") {
    for (size_t i = 0; i + 4 <= s.bytes.size(); i += 4) {
      float x;
      std::memcpy(&x, p + i, 4);
      if (!std::isfinite(x)) return false;
    }
  } else if (s.dtype == "float64") {
    for (size_t i = 0; i + 8 <= s.bytes.size(); i += 8) {
      double x;
      std::memcpy(&x, p + i, 8);
      if (!std::isfinite(x)) return false;
    }
  } else if (s.dtype == "float16" || s.dtype == "bfloat16") {  // exponent bits all ones: inf or NaN
    for (size_t i = 0; i + 2 <= s.bytes.size(); i += 2) {
      uint16_t x;
      std::memcpy(&x, p + i, 2);
      const uint16_t exponent = s.dtype == "float16" ? 0x7c00 : 0x7f80;
      if ((x & exponent) == exponent) return false;
    }
  }
  return true;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

std::string RelationalInfluenceModel::export_weights() const {
  SavedWeights w;
  w.encoder_identity = encoder_->identity();
  std::vector<torch::Tensor> held;  // the CPU copies the saved tensors' views point into
  const auto add = [&](const std::string& name, const torch::Tensor& t) {
    const char* dtype = saved_dtype_name(t.scalar_type());
    if (dtype == nullptr)
      throw Error(ErrorCode::kInternal, "RelationalInfluenceModel::export_weights",
                  "tensor '" + name + "' has a dtype the weights format does not hold (" +
                      std::string(c10::toString(t.scalar_type())) + ")");
    torch::Tensor cpu = t.detach().to(torch::kCPU).contiguous();
    held.push_back(cpu);
    SavedTensor s;
    s.name = name;
    s.dtype = dtype;
    s.shape = cpu.sizes().vec();
    s.bytes = std::string_view(static_cast<const char*>(cpu.data_ptr()), cpu.numel() * cpu.element_size());
    w.tensors.push_back(std::move(s));
  };
  for (const auto& item : named_parameters()) add(item.key(), item.value());
  for (const auto& item : named_buffers()) add(item.key(), item.value());
  return write_weights(w);
}

void RelationalInfluenceModel::import_weights(const std::string& blob, const std::string& origin) {
  if (is_torch_archive(blob)) {
    import_torch_archive(blob, origin);
    return;
  }
  const SavedWeights saved = read_weights(blob, origin);  // every field checked; LibTorch reads nothing saved
  const std::string mine = encoder_->identity();
  if (saved.encoder_identity != mine)
    throw Error(ErrorCode::kInvalidState, origin,
                "the weights were saved with the encoder " + saved.encoder_identity.substr(0, 200) +
                    "; this model's encoder is " + mine + ": load them with the same SelectionConfig.encoder and file");
  std::map<std::string, const SavedTensor*> by_name;
  for (const SavedTensor& t : saved.tensors) by_name[t.name] = &t;
  // Every tensor is checked and staged on the CPU before any is copied: a refused import changes nothing.
  std::vector<std::pair<torch::Tensor, const SavedTensor*>> staged;  // (the module's tensor, its checked new value)
  const auto stage = [&](const std::string& name, const torch::Tensor& dst) {
    const auto it = by_name.find(name);
    if (it == by_name.end())
      throw Error(ErrorCode::kInvalidState, origin, "the weights hold no tensor '" + name + "': architectures differ");
    const SavedTensor& s = *it->second;
    const char* want = saved_dtype_name(dst.scalar_type());
    if (want == nullptr || s.dtype != want)
      throw Error(ErrorCode::kInvalidState, origin,
                  "tensor '" + name + "' is " + s.dtype + " in the weights, " + (want ? want : "another dtype") +
                      " in this model: architectures differ");
    if (s.shape != dst.sizes().vec())
      throw Error(ErrorCode::kInvalidState, origin,
                  "tensor '" + name + "' has the shape " + shape_text(s.shape) + " in the weights, " +
                      shape_text(dst.sizes().vec()) + " in this model: architectures differ");
    // A model saved after it diverged (or weights edited) would score every window NaN: refused.
    if (!all_finite(s))
      throw Error(ErrorCode::kCorruptData, origin,
                  "tensor '" + name + "' of the influence-model weights holds NaN or inf values: save a model "
                  "that trained without diverging");
    by_name.erase(it);
    staged.emplace_back(dst, &s);
  };
  for (const auto& item : named_parameters()) stage(item.key(), item.value());
  for (const auto& item : named_buffers()) stage(item.key(), item.value());
  if (!by_name.empty())
    throw Error(ErrorCode::kInvalidState, origin,
                "the weights hold a tensor '" + by_name.begin()->first + "' this model has not: architectures differ");
  // Copied straight from the blob into the module's (CPU, contiguous) tensors; through one temporary otherwise
  // (a model on a GPU): no copy of the whole model is allocated per import (refreshes publish one a probe).
  // A frozen tensor (requires_grad false) may share its storage with other models (the n-gram table,
  // InfluenceModelFactory): it is never written into. Bytes equal to its own are skipped; other bytes go
  // into a storage of its own, which it then no longer shares.
  torch::NoGradGuard no_grad;
  for (auto& [dst, s] : staged) {
    if (s->bytes.empty()) continue;
    if (!dst.requires_grad()) {
      if (dst.device().is_cpu() && dst.is_contiguous() &&
          std::memcmp(dst.data_ptr(), s->bytes.data(), s->bytes.size()) == 0)
        continue;
      dst.set_(torch::empty(dst.sizes(), dst.options()));  // its own storage, then written below
    }
    if (dst.device().is_cpu() && dst.is_contiguous()) {
      std::memcpy(dst.data_ptr(), s->bytes.data(), s->bytes.size());
    } else {
      torch::Tensor cpu = torch::empty(dst.sizes(), torch::TensorOptions().dtype(dst.scalar_type()));
      std::memcpy(cpu.data_ptr(), s->bytes.data(), s->bytes.size());
      dst.copy_(cpu);
    }
  }
}

// Weights saved before groupmates wrote its own format: a torch archive, which LibTorch's reader may abort the
// process on when damaged (weights_format.h); read only when the caller trusts it.
void RelationalInfluenceModel::import_torch_archive(const std::string& blob, const std::string& origin) {
  const char* trust = std::getenv("GROUPMATES_TRUST_TORCH_ARCHIVE");
  if (trust == nullptr || std::string(trust) != "1")
    throw Error(ErrorCode::kInvalidState, origin,
                "influence-model weights in the format before 2026-12-05 (a bare torch archive): LibTorch's reader can "
                "abort the process on a damaged archive, so they are not read by default; if they are intact (written "
                "by groupmates and not edited), set GROUPMATES_TRUST_TORCH_ARCHIVE=1 to read them, then save the "
                "model (or the loader's state) again: it is written in the checked format");
  const torch::Device device = head_->weight.device();
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(blob.data(), blob.size(), device);
    check_encoder_identity(archive, origin);
    // Module::load replaces tensors without checking shapes: compare them afterwards.
    std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
    for (const auto& item : named_parameters()) shapes.emplace_back(item.key(), item.value().sizes().vec());
    for (const auto& item : named_buffers()) shapes.emplace_back(item.key(), item.value().sizes().vec());
    load(archive);
    size_t i = 0;
    for (const auto& item : named_parameters())
      if (item.value().sizes().vec() != shapes[i++].second)
        throw Error(ErrorCode::kInvalidState, origin,
                    "tensor '" + item.key() + "' has another shape in the weights: architectures differ");
    for (const auto& item : named_buffers())
      if (item.value().sizes().vec() != shapes[i++].second)
        throw Error(ErrorCode::kInvalidState, origin,
                    "buffer '" + item.key() + "' has another shape in the weights: architectures differ");
  } catch (const c10::Error& e) {
    throw Error(ErrorCode::kInvalidState, origin,
                std::string("weights do not fit this architecture: ") + e.what_without_backtrace());
  }
}

void RelationalInfluenceModel::save_file(const std::string& path) const {
  write_blob_file(path, export_weights(), "model file");
}

void RelationalInfluenceModel::load_file(const std::string& path) {
  import_weights(read_blob_file(path, "model file"), path);
}

}  // namespace groupmates
