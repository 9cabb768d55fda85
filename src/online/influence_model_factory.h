// influence_model_factory.h: the relational influence model a SelectionConfig describes (private).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "groupmates/engine/influence_model.h"
#include "groupmates/selection_config.h"

namespace groupmates {

class TorchScriptEncoder;

/// Builds the influence models of one selecting loader: its encoder is chosen by config.encoder. A
/// TorchScript file is read, hashed, loaded onto `device` and probed once, here; every model made
/// afterwards shares that module (a new TorchScriptEncoder over it, frozen), so the file may change on
/// disk without the run seeing it. The hashed n-gram encoder's frozen table (config.train_ngram_table
/// false, the default; ~17 MB at the defaults) is drawn once, here, and every model made afterwards
/// shares its storage (importing weights never writes into it: RelationalInfluenceModel::import_weights);
/// its MLP and head are each model's own. With a trained table every model draws its own.
class InfluenceModelFactory {
 public:
  /// Throws Error naming the file when a TorchScript encoder cannot be loaded or fails its probe.
  InfluenceModelFactory(const SelectionConfig& config, int64_t pad_id, torch::Device device = torch::kCPU);
  /// A fresh model, with the same initial weights every time (see make_influence_model).
  std::shared_ptr<RelationalInfluenceModel> make() const;
  /// Encoder::identity() of the models' encoder (recorded in the loader state, compared on restore).
  const std::string& encoder_identity() const { return identity_; }

 private:
  SelectionConfig config_;
  int64_t pad_id_;
  std::shared_ptr<TorchScriptEncoder> scripted_;  ///< the loaded module (kTorchScript), else null
  std::string identity_;
  torch::Tensor table_;          ///< the shared frozen n-gram table (hashed encoder, table not trained), else undefined
  torch::Tensor after_table_;    ///< the private generator's state after drawing table_ (each model starts there)
};

/// A fresh model (the config's encoder + relational head) for `config`, with the same initial weights
/// for the same config.seed whatever other threads draw meanwhile: drawn from a private generator seeded
/// from it (a TorchScript encoder's weights are the file's; only the head, when not zero, is drawn);
/// LibTorch's global CPU generator, which building modules draws from, is restored afterwards, so
/// building a model neither depends on nor moves the trainer's random stream.
/// `pad_id`: a token id that never enters an embedding (-1 = none).
/// A TorchScript file is loaded for this one model (InfluenceModelFactory loads it once for many).
std::shared_ptr<RelationalInfluenceModel> make_influence_model(const SelectionConfig& config, int64_t pad_id);

}  // namespace groupmates
