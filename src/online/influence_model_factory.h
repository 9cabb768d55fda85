// influence_model_factory.h: the relational influence model a SelectionConfig describes (private).
#pragma once

#include <cstdint>
#include <memory>

#include "groupmates/engine/influence_model.h"
#include "groupmates/selection_config.h"

namespace groupmates {

/// A fresh model (hashed n-gram encoder + relational head) for `config`, with the same initial weights
/// for the same config.seed whatever other threads draw meanwhile: drawn from a private generator seeded
/// from it; LibTorch's global CPU generator, which building modules draws from, is restored afterwards,
/// so building a model neither depends on nor moves the trainer's random stream.
/// `pad_id`: a token id that never enters an embedding (-1 = none).
std::shared_ptr<RelationalInfluenceModel> make_influence_model(const SelectionConfig& config, int64_t pad_id);

}  // namespace groupmates
