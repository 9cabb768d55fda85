// label_standardisation.h: per-probe standardisation of oracle labels (private).
#pragma once

#include <vector>

#include "groupmates/probe.h"

namespace groupmates {

/// The labels of every entry, flattened in order, each standardised by the centre and scale of
/// all labels of its own probe (same probe_step): median and 1.4826 * MAD when `robust`, else
/// mean and standard deviation. A probe's labels share one snapshot of the live model, and their
/// scale shrinks by an order of magnitude as training goes on, so one global scale would let the
/// early probes drown the later ones. A zero scale is taken as 1.
std::vector<double> standardise_per_probe(const std::vector<LabelledRollout>& entries, bool robust);

}  // namespace groupmates
