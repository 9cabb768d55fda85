// SelectionState (src/online/selection_state): the influence-model weights a state holds besides the current
// version's (the next version's, the refreshes' working model, pending refreshes) are saved as deltas against it,
// so the frozen n-gram table they share is saved once; read back, every blob is byte for byte what was saved, and
// keys mixed from two states are refused naming the key.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "common/test_seed.h"
#include "groupmates/error.h"
#include "model/weights_format.h"
#include "online/blob_text.h"
#include "online/influence_model_factory.h"
#include "online/selection_state.h"

using namespace groupmates;

namespace selectionstate {

// A model of `cfg` whose trainable tensors (not the frozen n-gram table) are redrawn from `seed`.
std::string retrained_weights(const SelectionConfig& cfg, uint64_t seed) {
  auto m = make_influence_model(cfg, 0);
  torch::manual_seed(seed);
  torch::NoGradGuard no_grad;
  for (auto& p : m->parameters())
    if (p.requires_grad()) p.copy_(torch::randn_like(p));
  return m->export_weights();
}

TEST(SelectionState, WeightsSharingTheFrozenTableAreSavedOnceAndReadBackWhole) {
  const uint64_t seed = testing_seed::fresh();
  SCOPED_TRACE(testing_seed::trace(seed));
  SelectionConfig cfg;
  cfg.seed = seed;
  const std::string current = make_influence_model(cfg, 0)->export_weights();
  const std::string next = retrained_weights(cfg, seed + 1), working = retrained_weights(cfg, seed + 2);
  ASSERT_NE(current, next);
  SelectionState s;
  s.first_blob.bytes = current;
  s.second_blob.bytes = next;
  s.trainer.bytes = working;
  s.pending = {SavedRefresh{10, 60, WeightsBlob{next}}, SavedRefresh{20, 70, WeightsBlob{""}},
               SavedRefresh{30, 80, WeightsBlob{"a rank's probe share, not weights"}}};
  std::map<std::string, std::string> extra;
  s.write(extra);
  // The table (~17 MB of the default model's weights) is in gm.first_blob only.
  const size_t whole = extra.at("gm.first_blob").size();
  for (const char* key : {"gm.second_blob", "gm.trainer", "gm.pending.0.blob"}) {
    EXPECT_TRUE(is_weights_delta(text_to_blob(extra.at(key), key))) << key;
    EXPECT_LT(extra.at(key).size() * 20, whole) << key << " was saved with the table";
  }
  EXPECT_EQ(text_to_blob(extra.at("gm.pending.2.blob"), "p"), "a rank's probe share, not weights");

  const SelectionState back = SelectionState::read(extra);
  EXPECT_EQ(back.first_blob.bytes, current);
  EXPECT_EQ(back.second_blob.bytes, next);
  EXPECT_EQ(back.trainer.bytes, working);
  ASSERT_EQ(back.pending.size(), 3u);
  EXPECT_EQ(back.pending[0].weights.bytes, next);
  EXPECT_EQ(back.pending[1].weights.bytes, "");
  EXPECT_EQ(back.pending[2].weights.bytes, "a rank's probe share, not weights");
  EXPECT_EQ(back.pending[2].effective_at, 80);

  // As saved before deltas (every blob whole): read as it is.
  std::map<std::string, std::string> whole_blobs = extra;
  whole_blobs["gm.trainer"] = blob_to_text(working);
  whole_blobs["gm.second_blob"] = blob_to_text(next);
  whole_blobs["gm.pending.0.blob"] = blob_to_text(next);
  const SelectionState old = SelectionState::read(whole_blobs);
  EXPECT_EQ(old.trainer.bytes, working);
  EXPECT_EQ(old.second_blob.bytes, next);
  EXPECT_EQ(old.pending[0].weights.bytes, next);

  // A damaged gm.first_blob is named as such, not as the keys saved against it.
  std::map<std::string, std::string> damaged = extra;
  std::string flipped = current;
  flipped[flipped.size() / 2] ^= 1;
  damaged["gm.first_blob"] = blob_to_text(flipped);
  try {
    SelectionState::read(damaged);
    FAIL() << "a damaged base was read";
  } catch (const Error& e) {
    EXPECT_EQ(e.where(), "LoaderState.extra.gm.first_blob") << e.what();
  }

  // gm.first_blob from another state (another model's weights): the deltas are refused, naming their key.
  std::map<std::string, std::string> mixed = extra;
  mixed["gm.first_blob"] = blob_to_text(retrained_weights(cfg, seed + 3));
  try {
    SelectionState::read(mixed);
    FAIL() << "deltas were applied to weights they were not saved against";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCorruptData) << e.what();
    EXPECT_EQ(e.where().rfind("LoaderState.extra.gm.", 0), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find("mixed from different states"), std::string::npos) << e.what();
  }
}

}  // namespace selectionstate
