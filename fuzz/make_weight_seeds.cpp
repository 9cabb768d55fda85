// make_weight_seeds OUT_DIR: real saved influence-model weights for fuzz_model_weights, written by the engine
// (a build tool linked to LibTorch, not instrumented): a small model's weights and a trained-looking one (label
// statistics and scalars set), and a weights delta. Nothing is committed.
#include <sys/stat.h>

#include <fstream>
#include <string>

#include "groupmates/engine/hashed_ngram_encoder.h"
#include "groupmates/engine/influence_model.h"
#include "weights_delta_base.h"
#include <torch/utils.h>

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const std::string out = argv[1];
  ::mkdir(out.c_str(), 0755);
  groupmates::HashedNgramEncoderConfig c;
  c.num_buckets = 16;
  c.embed_dim = 4;
  c.hidden_dim = 4;
  c.out_dim = 4;
  torch::manual_seed(1);
  groupmates::RelationalInfluenceModel m(std::make_shared<groupmates::HashedNgramEncoder>(c));
  std::ofstream(out + "/small", std::ios::binary) << m.export_weights();
  m.fit_label_stats(torch::randn({20}) * 3 + 1);
  {
    torch::NoGradGuard no_grad;
    m.tau_tensor().fill_(1.25);
  }
  std::ofstream(out + "/small_trained", std::ios::binary) << m.export_weights();
  std::ofstream(out + "/delta", std::ios::binary) << fuzzdelta::delta();  // against fuzz_model_weights' base
  return 0;
}
