// TorchScriptEncoder: a scripted/traced module file as a frozen encoder.
#include "groupmates/engine/torchscript_encoder.h"

#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>

#include <torch/csrc/jit/passes/inliner.h>
#include <torch/nn/functional/normalization.h>
#include <torch/script.h>

#include <functional>
#include <set>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "groupmates/error.h"

namespace groupmates {

/// The loaded module, shared by every TorchScriptEncoder made from it by share().
struct TorchScriptEncoder::Loaded {
  std::string path;
  torch::Device device = torch::kCPU;
  uint64_t weights_hash = 0;  ///< XXH3 of the module's parameters and buffers (names, dtypes, shapes, values)
  bool takes_mask = true;     ///< forward(ids, mask); else forward(ids)
  int64_t dim = 0;
  double flops_per_token = 0;  ///< 2 x the parameters not read as lookup tables (looked_up_parameters)
  mutable torch::jit::Module module;  ///< forward is not const in LibTorch; running it does not change the module
};

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Error(ErrorCode::kIo, path,
                "cannot open the TorchScript encoder file (SelectionConfig.encoder_path): it does not exist or is "
                "not readable; export one with torch.jit.script(module).save(path) (examples/export_torchscript_encoder.py)");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw Error(ErrorCode::kIo, path, "read error in the TorchScript encoder file");
  return bytes;
}

// The weights, not the file's bytes: exporting the same module again (torch.jit.script names its
// classes with a per-process counter) gives the same hash; the code alone is not hashed.
uint64_t weights_hash(const torch::jit::Module& module) {
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  auto add = [&](const std::string& name, const torch::Tensor& value) {
    const torch::Tensor t = value.detach().to(torch::kCPU).contiguous();
    const std::string head = name + "|" + c10::toString(t.scalar_type()) + "|" + c10::str(t.sizes()) + "|";
    XXH3_64bits_update(state, head.data(), head.size());
    XXH3_64bits_update(state, t.data_ptr(), t.numel() * t.element_size());
  };
  for (const auto& p : module.named_parameters(true)) add("p:" + p.name, p.value);
  for (const auto& b : module.named_buffers(true)) add("b:" + b.name, b.value);
  const uint64_t h = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return h;
}

// Names (dotted, as named_parameters gives them) of the parameters that forward reads as the table of an
// aten::embedding / aten::embedding_bag: row lookups, no multiply-adds per token (a table also used in a
// matmul, e.g. tied weights, is left out too: the estimate then undercounts it). The forward graph is
// inlined (calls into submodules included) and each lookup's table traced back through prim::GetAttr
// to the module's self.
std::set<std::string> looked_up_parameters(const torch::jit::Module& module) {
  std::set<std::string> out;
  std::shared_ptr<torch::jit::Graph> graph = module.get_method("forward").graph()->copy();
  torch::jit::Inline(*graph);
  torch::jit::Value* self = graph->inputs().at(0);
  auto path_of = [&](torch::jit::Value* v) {
    std::vector<std::string> names;
    while (v->node()->kind() == c10::prim::GetAttr) {
      names.push_back(v->node()->s(c10::attr::name));
      v = v->node()->input(0);
    }
    std::string path;
    if (v != self) return path;
    for (auto it = names.rbegin(); it != names.rend(); ++it) path += (path.empty() ? "" : ".") + *it;
    return path;
  };
  std::function<void(torch::jit::Block*)> walk = [&](torch::jit::Block* block) {
    for (torch::jit::Node* node : block->nodes()) {
      const std::string kind = node->kind().toQualString();
      if ((kind == "aten::embedding" || kind == "aten::embedding_bag" || kind == "aten::_embedding_bag") &&
          node->inputs().size() > 0) {
        const std::string path = path_of(node->input(0));
        if (!path.empty()) out.insert(path);
      }
      for (torch::jit::Block* inner : node->blocks()) walk(inner);
    }
  };
  walk(graph->block());
  return out;
}

// ~2 FLOPs per parameter per token (a multiply-add), the rule ModuleProbeTarget uses for the live
// model, with the lookup tables left out.
double flops_per_token_of(const torch::jit::Module& module) {
  const std::set<std::string> tables = looked_up_parameters(module);
  double params = 0;
  for (const auto& p : module.named_parameters(true))
    if (!tables.count(p.name)) params += double(p.value.numel());
  return 2.0 * params;
}

}  // namespace

TorchScriptEncoder::TorchScriptEncoder(const std::string& path, int64_t dim, torch::Device device, int64_t pad_id)
    : path_(path), pad_id_(pad_id) {
  if (dim == 0 || dim < -1) throw Error(ErrorCode::kInvalidConfig, "TorchScriptEncoder.dim", "must be > 0 (or -1: read it)");
  auto loaded = std::make_shared<Loaded>();
  loaded->path = path;
  loaded->device = device;
  const std::string bytes = read_file(path);
  try {
    std::istringstream in(bytes);
    loaded->module = torch::jit::load(in, device);
  } catch (const c10::Error& e) {
    throw Error(ErrorCode::kIo, path,
                std::string("is not a TorchScript module file (save one with torch.jit.script(m).save(path) or "
                            "torch.jit.trace(m, ids).save(path)): ") + e.what_without_backtrace());
  }
  loaded->module.eval();
  loaded->weights_hash = weights_hash(loaded->module);
  if (!loaded->module.find_method("forward"))
    throw Error(ErrorCode::kInvalidConfig, path, "the module has no forward method");
  const size_t args = loaded->module.get_method("forward").function().getSchema().arguments().size();  // with self
  if (args != 2 && args != 3)
    throw Error(ErrorCode::kInvalidConfig, path,
                "forward takes " + std::to_string(int(args) - 1) +
                    " arguments; an encoder's forward takes (ids) or (ids, mask): ids int64 [rows, T], mask int64 [rows, T]");
  loaded->takes_mask = args == 3;
  loaded->flops_per_token = flops_per_token_of(loaded->module);
  loaded_ = loaded;
  // Probe: 2 rows of 8 small ids, every token real. D is the width of the answer.
  const torch::Tensor ids = torch::arange(1, 17, torch::kLong).reshape({2, 8});
  const torch::Tensor out = run(ids, torch::ones_like(ids));
  loaded->dim = out.size(1);
  if (dim > 0 && loaded->dim != dim)
    throw Error(ErrorCode::kInvalidConfig, path,
                "the module returns vectors of width " + std::to_string(loaded->dim) + ", expected " + std::to_string(dim));
  dim_ = loaded->dim;
}

TorchScriptEncoder::TorchScriptEncoder(std::shared_ptr<const Loaded> loaded, int64_t pad_id)
    : loaded_(std::move(loaded)), pad_id_(pad_id) {
  path_ = loaded_->path;
  dim_ = loaded_->dim;
}

TorchScriptEncoder::~TorchScriptEncoder() = default;

std::shared_ptr<TorchScriptEncoder> TorchScriptEncoder::share() const {
  return std::shared_ptr<TorchScriptEncoder>(new TorchScriptEncoder(loaded_, pad_id_));
}

double TorchScriptEncoder::flops_per_row(int64_t tokens) const { return double(tokens) * loaded_->flops_per_token; }

std::string TorchScriptEncoder::identity() const {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016" PRIx64, loaded_->weights_hash);
  return "torchscript(weights_xxh3=" + std::string(hex) + ",dim=" + std::to_string(dim_) + ")";
}

// forward on the module's device, the output checked and reduced to float [rows, D] (not normalised).
torch::Tensor TorchScriptEncoder::run(const torch::Tensor& ids, const torch::Tensor& mask) const {
  const Loaded& l = *loaded_;
  torch::IValue result;
  try {
    result = l.takes_mask ? l.module.forward({ids, mask}) : l.module.forward({ids});
  } catch (const c10::Error& e) {
    throw Error(ErrorCode::kInvalidConfig, l.path,
                std::string(l.takes_mask ? "forward(ids, mask)" : "forward(ids)") + " failed on ids int64 " +
                    c10::str(ids.sizes()) + ": " + e.what_without_backtrace());
  }
  torch::Tensor out;
  if (result.isTensor()) out = result.toTensor();
  else if (result.isTuple() && !result.toTupleRef().elements().empty() && result.toTupleRef().elements()[0].isTensor())
    out = result.toTupleRef().elements()[0].toTensor();
  else if (result.isList() && result.toListRef().size() > 0 && result.toListRef()[0].isTensor())
    out = result.toListRef()[0].toTensor();
  else
    throw Error(ErrorCode::kInvalidConfig, l.path,
                "forward returned " + result.tagKind() + "; it must return a float tensor [rows, D] (or a tuple/list starting with one)");
  if (!at::isFloatingType(out.scalar_type()))
    throw Error(ErrorCode::kInvalidConfig, l.path,
                std::string("forward returned a tensor of dtype ") + c10::toString(out.scalar_type()) +
                    "; it must return floating point [rows, D] (one vector per row)");
  if (out.dim() == 3 && out.size(0) == ids.size(0) && out.size(1) == ids.size(1)) {  // hidden states: masked mean
    const torch::Tensor weight = mask.to(out.scalar_type()).unsqueeze(-1);
    out = (out * weight).sum(1) / weight.sum(1).clamp_min(1);
  }
  if (out.dim() != 2 || out.size(0) != ids.size(0) || out.size(1) < 1 || (dim_ > 0 && out.size(1) != dim_))
    throw Error(ErrorCode::kInvalidConfig, l.path,
                "forward on ids " + c10::str(ids.sizes()) + " returned shape " + c10::str(out.sizes()) + "; it must return [" +
                    std::to_string(ids.size(0)) + ", " + (dim_ > 0 ? std::to_string(dim_) : std::string("D")) +
                    "]: one vector per row");
  out = out.to(torch::kFloat);
  if (!torch::isfinite(out).all().item<bool>())
    throw Error(ErrorCode::kInvalidConfig, l.path,
                "forward returned NaN or Inf on ids " + c10::str(ids.sizes()) + ": the encoder must give finite vectors");
  return out;
}

torch::Tensor TorchScriptEncoder::encode(const torch::Tensor& tokens, const torch::Tensor& mask) {
  torch::NoGradGuard no_grad;  // frozen: only the influence model's head trains on top
  if (tokens.dim() != 2)
    throw Error(ErrorCode::kInvalidConfig, "TorchScriptEncoder::encode",
                "tokens must be [W, T], got " + std::to_string(tokens.dim()) + " dims");
  const torch::Tensor ids = tokens.to(loaded_->device, torch::kLong);
  torch::Tensor m;
  if (mask.defined()) m = mask.to(loaded_->device, torch::kLong);
  else if (pad_id_ >= 0) m = ids.ne(pad_id_).to(torch::kLong);
  else m = torch::ones_like(ids);
  return torch::nn::functional::normalize(run(ids, m), torch::nn::functional::NormalizeFuncOptions().p(2.0).dim(1).eps(1e-12));
}

}  // namespace groupmates
