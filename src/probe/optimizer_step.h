// optimizer_step.h: one optimiser step as the probes take it (private).
#pragma once

#include <torch/optim/optimizer.h>

namespace groupmates {

/// Clips the global gradient norm of the optimiser's parameters at `grad_clip_norm` (0 = off),
/// then steps with every group's learning rate multiplied by `lr_scale` (restored afterwards).
void clipped_scaled_step(torch::optim::Optimizer& optimizer, double grad_clip_norm, double lr_scale);

}  // namespace groupmates
