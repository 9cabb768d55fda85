// label_standardisation.h: per-probe standardisation of oracle labels (private).
#pragma once

#include <vector>

#include "groupmates/engine/label_buffer.h"

namespace groupmates {

/// The labels of every entry, flattened in order, each standardised by the centre and scale of
/// all labels of its own probe (same probe_step), or with `per_position` of its own probe and
/// rollout position t: median and 1.4826 * MAD when `robust`, else mean and standard deviation.
/// A probe's labels share one snapshot of the live model, and their scale shrinks by an order of
/// magnitude as training goes on, so one global scale would let the early probes drown the later
/// ones. Within a probe the mean label drifts with t (single-sequence steps help at first and hurt
/// later: measured -1.6 at t = 0 to +0.5 at t = 9 in per-probe units), a trend of the rollout, not
/// of the data, that p_t = u_t * mean r cannot express. A zero scale is taken as 1.
std::vector<double> standardise_per_probe(const std::vector<LabelledRollout>& entries, bool robust,
                                          bool per_position = false);

}  // namespace groupmates
