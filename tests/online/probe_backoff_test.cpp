// ProbeBackoff against a straightforward reference on fresh random event sequences, and the online
// loop's accounting with it: every due probe either runs or is counted as skipped (budget, back-off),
// and nothing backs off without the gate or with gated_backoff_max 0.
#include "online/probe_backoff.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "online_test_util.h"

using namespace gmonline;

TEST(ProbeBackoff, SkipsLikeAReference) {
  const uint64_t seed = gmtest::fresh_seed();
  SCOPED_TRACE("GM_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const uint64_t max_skip = rng() % 12;
  ProbeBackoff b(max_skip);
  // Reference: after n refusals in a row, the next min(2^n - 1, max) due probes are skipped.
  uint64_t n = 0;
  int64_t to_skip = 0;
  for (int i = 0; i < 400; ++i) {
    const uint64_t e = rng() % 4;
    if (e == 0) {
      n += 1;
      to_skip = int64_t(std::min<double>(std::pow(2.0, double(n)) - 1, double(max_skip)));
      b.refused();
    } else if (e == 1) {
      n = 0;
      to_skip = 0;
      b.published();
    } else {
      const bool want = to_skip > 0;
      if (want) to_skip -= 1;
      ASSERT_EQ(b.skip_due(), want) << "event " << i;
    }
    ASSERT_EQ(b.streak(), n);
    ASSERT_EQ(int64_t(b.pending_skips()), to_skip);
    if (rng() % 17 == 0) {  // a resume in between changes nothing
      ProbeBackoff r(max_skip);
      r.restore(b.streak(), b.pending_skips());
      b = r;
    }
  }
  ProbeBackoff huge(~uint64_t{0});
  for (int i = 0; i < 100; ++i) huge.refused();  // 2^100 - 1 saturates instead of overflowing
  EXPECT_EQ(huge.pending_skips(), ~uint64_t{0});
}

class ProbeBackoffLoaderTest : public OnlineFixture {};

TEST_F(ProbeBackoffLoaderTest, EveryDueProbeRunsOrIsCounted) {
  auto run = [&](bool gate, uint32_t max_skip) {
    SelectionConfig sel = selection_config(seed);
    sel.refresh_gate = gate;
    ProbeConfig p = probe_config();
    p.interval_steps = 3;
    p.effect_delay_steps = 1;
    p.gated_backoff_max = max_skip;
    GroupMatesLoader loader(loader_config(path, seed), sel, p);
    loader.set_reference(reference_rows());
    auto live = make_live_model(seed);
    int64_t due = 0;
    for (int64_t step = 0; step < 48; ++step) {
      auto b = loader.next();
      live->train_step(b->input_ids);
      loader.on_step(step, live.get());
      due += step >= int64_t(p.first_step) && (step - int64_t(p.first_step)) % int64_t(p.interval_steps) == 0;
    }
    loader.state();  // waits for the probe in flight
    const SelectionStats s = loader.selection_stats();
    EXPECT_EQ(uint64_t(s.probes.probes_completed + s.probes.probes_failed + s.probes.probes_skipped_busy) +
                  s.probes_skipped_budget + s.probes_skipped_backoff,
              uint64_t(due))
        << "gate " << gate << ", max skip " << max_skip;
    return s;
  };
  const SelectionStats off = run(false, 7), zero = run(true, 0), on = run(true, 7);
  EXPECT_EQ(off.probes_skipped_backoff, 0u);
  EXPECT_EQ(zero.probes_skipped_backoff, 0u);
  // Every refusal of a held-out check skips at least the next due probe (unless the run ended first).
  if (on.refreshes_gated >= 3) EXPECT_GT(on.probes_skipped_backoff, 0u);
  EXPECT_LE(on.probes.probes_completed, zero.probes.probes_completed);
}

TEST_F(ProbeBackoffLoaderTest, BackoffResumesExactly) {
  // The streak, the skips still due and the counter carry over a save and restore (kAtStep: timing-free).
  SelectionConfig sel = selection_config(seed);
  sel.refresh_gate = true;
  ProbeConfig p = probe_config();
  p.interval_steps = 3;
  p.effect_delay_steps = 1;
  const torch::Tensor reference = reference_rows();
  std::mt19937_64 rng(seed);
  const int64_t k = 6 + int64_t(rng() % 30), total = 48;
  SCOPED_TRACE("save after step " + std::to_string(k));
  std::string saved;
  std::unique_ptr<ProbeTarget> live_at_k;
  Emitted rest_original;
  SelectionStats end_original;
  {
    GroupMatesLoader loader(loader_config(path, seed), sel, p);
    loader.set_reference(reference);
    auto live = make_live_model(seed);
    train(loader, *live, 0, k + 1);
    saved = loader.state().serialize();
    live_at_k = live->clone();
    rest_original = train(loader, *live, k + 1, total);
    loader.state();
    end_original = loader.selection_stats();
  }
  GroupMatesLoader resumed(loader_config(path, seed), sel, p, LoaderState::parse(saved));
  const Emitted rest = train(resumed, *live_at_k, k + 1, total);
  resumed.state();
  const SelectionStats end = resumed.selection_stats();
  EXPECT_EQ(rest.ids, rest_original.ids);
  EXPECT_EQ(rest.versions, rest_original.versions);
  EXPECT_EQ(end.probes_skipped_backoff, end_original.probes_skipped_backoff);
  EXPECT_EQ(end.refreshes_gated, end_original.refreshes_gated);
}
