// weights_delta_base.h: the base weights fuzz_model_weights applies deltas against, and a delta against it for
// its seed corpus (make_weight_seeds): shared so that the seed's tensor list names the base's tensors.
#pragma once

#include <string>

#include "model/weights_format.h"

namespace fuzzdelta {

/// Framed weights of two tensors: "a" (uint8 [4]) and "encoder.table.weight" (float32 [2]).
inline std::string base() {
  static const std::string a("\x01\x02\x03\x04", 4), table(8, '\x3f');
  groupmates::SavedWeights w;
  w.encoder_identity = "fuzz";
  w.tensors.push_back(groupmates::SavedTensor{"a", "uint8", {4}, a});
  w.tensors.push_back(groupmates::SavedTensor{"encoder.table.weight", "float32", {2}, table});
  return groupmates::write_weights(w);
}

/// A delta against base(): the table shared, "a" changed, a tensor of its own.
inline std::string delta() {
  static const std::string a("\x05\x06\x07\x08", 4), table(8, '\x3f'), head(12, '\x40');
  groupmates::SavedWeights w;
  w.encoder_identity = "fuzz";
  w.tensors.push_back(groupmates::SavedTensor{"encoder.table.weight", "float32", {2}, table});
  w.tensors.push_back(groupmates::SavedTensor{"a", "uint8", {4}, a});
  w.tensors.push_back(groupmates::SavedTensor{"head.weight", "float32", {3}, head});
  return groupmates::weights_delta(groupmates::write_weights(w), base());
}

}  // namespace fuzzdelta
