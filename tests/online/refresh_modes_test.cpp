// The online loop's cost controls: the probe budget, the ready-when-done refresh mode (on_step never
// waits; switches recorded and resumed), the guard that keeps non-finite models unpublished, and
// importance resampling (alone, and as the prior of the influence model).
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <thread>

#include "groupmates/error.h"
#include "common/thrown_error.h"
#include "common/wrapped_target.h"
#include "online_test_util.h"
#include "util/heap_release.h"
#include "util/stopwatch.h"

using namespace gmonline;

namespace {

bool topic0(const torch::Tensor& row) { return row.lt(2).all().item<bool>(); }

// The plain stream of the same file, one selection window per batch.
StreamingLoader window_stream(const std::string& path, uint64_t seed, uint32_t window) {
  LoaderConfig c = loader_config(path, seed);
  c.batch_size = window;
  return StreamingLoader(c);
}

}  // namespace

class RefreshModesTest : public OnlineFixture {};

class ProbeBudgetTest : public OnlineFixture, public ::testing::WithParamInterface<bool> {};

TEST_P(ProbeBudgetTest, ProbeBudgetHoldsOverARun) {
  // Spent probe work (token-FLOP units: 3 per probe step token, 1 per reference token evaluated)
  // never exceeds budget x 3 x trained tokens; without the budget the same run spends far more.
  // Both label kinds (the parameter: first-order labels).
  auto run = [&](double budget) {
    ProbeConfig p = probe_config();
    p.first_order_labels = GetParam();
    p.interval_steps = 2;
    p.effect_delay_steps = 1;
    p.budget = budget;
    p.min_rollouts = 2;
    GroupMatesLoader loader(loader_config(path, seed), selection_config(seed), p);
    auto live = make_live_model(seed);
    double worst = 0;
    for (int64_t step = 0; step < 60; ++step) {
      auto b = loader.next();
      live->train_step(b->input_ids);
      loader.on_step(step, live.get());
      const SelectionCost c = loader.selection_stats().cost;
      const double spent = 3.0 * c.probe_train_tokens + c.probe_eval_tokens;
      if (budget > 0) {
        EXPECT_LE(spent, budget * 3.0 * double(c.train_tokens) + 1e-9) << "step " << step;
      }
      worst = std::max(worst, spent / (3.0 * double(c.train_tokens)));
    }
    loader.state();  // waits for the probe in flight
    const SelectionStats s = loader.selection_stats();
    const double spent = 3.0 * s.cost.probe_train_tokens + s.cost.probe_eval_tokens;
    if (budget > 0) {
      EXPECT_LE(spent, budget * 3.0 * double(s.cost.train_tokens) + 1e-9);
    }
    EXPECT_GT(s.cost.probe_flops, 0);
    EXPECT_NEAR(s.cost.train_flops, 3.0 * live->forward_flops_per_token() * double(s.cost.train_tokens),
                1e-6 * s.cost.train_flops);
    return std::make_pair(s, worst);
  };
  const auto [capped, capped_share] = run(0.5);
  const auto [free, free_share] = run(0.0);
  EXPECT_GE(capped.probes.probes_completed, 2);
  EXPECT_GT(capped.probes_skipped_budget, 0u);
  EXPECT_LE(capped_share, 0.5 + 1e-9);
  EXPECT_GT(free_share, 1.0) << "the test's probes must cost more than the budget without one";
  EXPECT_EQ(free.probes_skipped_budget, 0u);
}

INSTANTIATE_TEST_SUITE_P(LabelKinds, ProbeBudgetTest, ::testing::Values(false, true));

TEST_F(RefreshModesTest, FirstOrderLabelsCostOneStepPerLabelAndStayWithinTheBudget) {
  // ProbeConfig::first_order_labels: per probe R_0 (F per reference token) and one backward over the
  // reference rows (counted as 3F training tokens), then 3F per token of each rollout step and no
  // evaluation after it; the same run with evaluated labels pays an evaluation per step.
  auto run = [&](bool first_order, double budget) {
    ProbeConfig p = probe_config();
    p.first_order_labels = first_order;
    p.budget = budget;
    p.min_rollouts = 2;
    GroupMatesLoader loader(loader_config(path, seed), selection_config(seed), p);
    auto live = make_live_model(seed);
    for (int64_t step = 0; step < 40; ++step) {
      auto b = loader.next();
      live->train_step(b->input_ids);
      loader.on_step(step, live.get());
      const SelectionCost c = loader.selection_stats().cost;
      if (budget > 0) {
        EXPECT_LE(3.0 * c.probe_train_tokens + c.probe_eval_tokens, budget * 3.0 * double(c.train_tokens) + 1e-9)
            << "step " << step;
      }
    }
    loader.state();  // waits for the probe in flight
    return std::make_pair(loader.selection_stats(), double(live->reference_tokens()));
  };
  const auto [fo, reference] = run(true, 0.0);
  const auto [ev, reference_ev] = run(false, 0.0);
  const double row = double(kT), L = double(probe_config().rollout_length);
  const double probes = double(fo.probes.probes_completed);
  const double attempted = double(fo.probes.rollouts_kept + fo.probes.rollouts_discarded);
  ASSERT_GE(probes, 3);
  ASSERT_GT(attempted, 0);
  EXPECT_EQ(fo.cost.probe_eval_tokens, probes * reference);
  EXPECT_EQ(fo.cost.probe_train_tokens, attempted * L * row + probes * reference);
  const double ev_attempted = double(ev.probes.rollouts_kept + ev.probes.rollouts_discarded);
  EXPECT_EQ(ev.cost.probe_eval_tokens, double(ev.probes.probes_completed) * reference + ev_attempted * L * reference);
  EXPECT_EQ(ev.cost.probe_train_tokens, ev_attempted * L * row);
  EXPECT_GT(fo.refreshes, 0u);
  const auto [capped, unused] = run(true, 0.3);
  EXPECT_GT(capped.probes.probes_completed, 0);
}

TEST_F(RefreshModesTest, ATargetWithoutFirstOrderSupportIsRefusedAtItsFirstDueProbe) {
  // A ProbeTarget of the user's that does not give weights(): with first_order_labels (the default)
  // on_step says so at once on the trainer's thread, naming the field and the fix; with evaluated
  // labels the same target probes.
  struct Plain : gmtest::WrappedTarget {
    using gmtest::WrappedTarget::WrappedTarget;
    std::vector<torch::Tensor> weights() const override { return {}; }
  };
  for (bool first_order : {true, false}) {
    ProbeConfig p = probe_config();
    p.first_order_labels = first_order;
    GroupMatesLoader loader(loader_config(path, seed), selection_config(seed), p);
    Plain live(std::shared_ptr<ProbeTarget>(make_live_model(seed)), [] {});
    const auto run = [&] {
      for (int64_t step = 0; step < 10; ++step) {
        auto b = loader.next();
        live.inner().train_step(b->input_ids);
        loader.on_step(step, &live);
      }
    };
    if (first_order) {
      const std::string what = testing_errors::error_of(run, ErrorCode::kInvalidConfig);
      EXPECT_NE(what.find("ProbeConfig.first_order_labels"), std::string::npos) << what;
      EXPECT_NE(what.find("first_order_labels = false"), std::string::npos) << what;
      EXPECT_EQ(loader.selection_stats().probes.probes_started, 0);
    } else {
      run();
      loader.state();
      EXPECT_GE(loader.selection_stats().probes.probes_completed, 1);
      EXPECT_EQ(loader.selection_stats().probes.probes_failed, 0);
    }
  }
}

TEST_F(RefreshModesTest, OnStepNeverWaitsForARunningProbe) {
  SelectionConfig sel = selection_config(seed);
  sel.refresh_mode = RefreshMode::kWhenReady;
  ProbeConfig p = probe_config();
  p.interval_steps = 2;
  p.first_step = 2;
  p.effect_delay_steps = 1;  // unused by kWhenReady
  p.budget = 0;
  p.trainer_thread_rollouts = 0;  // a probe thread (ProbesInSlices... below: the trainer's own thread)
  GroupMatesLoader loader(loader_config(path, seed), sel, p);
  auto live = gmtest::slow_target(make_live_model(seed), 0.05);  // a probe: >= 7 rollouts x 3 steps x 50 ms
  double longest_on_step = 0;
  bool checked_busy = false;
  const groupmates::util::Stopwatch clock;
  for (int64_t step = 0; clock.seconds() < 60; ++step) {
    auto b = loader.next();
    ASSERT_TRUE(b);
    live.inner().train_step(b->input_ids);
    const groupmates::util::Stopwatch on_step;
    loader.on_step(step, &live);
    const double took = on_step.seconds();
    if (step != 2) longest_on_step = std::max(longest_on_step, took);  // step 2 takes the snapshot
    if (step == 4) {
      const SelectionStats s = loader.selection_stats();
      EXPECT_EQ(s.probes.probes_started, 1);
      EXPECT_EQ(s.probes.probes_completed, 0) << "on_step(4) returned while the probe of step 2 runs";
      EXPECT_EQ(s.probes.probes_skipped_busy, 1) << "the probe due at step 4 is skipped, not waited for";
      checked_busy = true;
    }
    if (loader.selection_stats().refreshes >= 2) break;
  }
  EXPECT_TRUE(checked_busy);
  const SelectionStats s = loader.selection_stats();
  EXPECT_GE(s.refreshes, 2u);
  EXPECT_LT(longest_on_step, 0.25) << "on_step waited (a probe step sleeps 50 ms)";
  EXPECT_EQ(s.cost.wait_refresh_seconds, 0.0);
  EXPECT_EQ(s.cost.wait_probe_seconds, 0.0);
  ASSERT_EQ(s.switches.size(), s.refreshes);
  for (size_t i = 0; i < s.switches.size(); ++i) {
    EXPECT_EQ(s.switches[i].version, i + 2);
    if (i > 0) EXPECT_GT(s.switches[i].window, s.switches[i - 1].window);
  }
}

// ProbeConfig::trainer_thread_rollouts: probes in slices on the trainer's thread (inside on_step) label what a probe
// thread labels. Under kAtStep the stream is the probe thread's exactly (here a due refresh also finishes a probe
// whose slices are not done yet); under kWhenReady a probe ends at a step that timing cannot change, so two runs
// emit the same stream and record the same switches.
TEST_F(RefreshModesTest, ProbesInSlicesLabelAsAProbeThreadAndDoNotDependOnTiming) {
  const auto run = [&](RefreshMode mode, uint32_t slice) {
    SelectionConfig sel = selection_config(seed);
    sel.refresh_mode = mode;
    ProbeConfig p = probe_config();
    p.trainer_thread_rollouts = slice;
    GroupMatesLoader loader(loader_config(path, seed), sel, p);
    auto live = make_live_model(seed);
    Emitted e = train(loader, *live, 0, 30);
    return std::make_pair(std::move(e), loader.selection_stats());
  };
  const auto [thread, ts] = run(RefreshMode::kAtStep, 0);
  const auto [sliced, ss] = run(RefreshMode::kAtStep, 2);
  EXPECT_EQ(sliced.ids, thread.ids);
  EXPECT_EQ(sliced.versions, thread.versions);
  EXPECT_GE(ts.refreshes, 2u);
  EXPECT_EQ(ss.refreshes, ts.refreshes);
  EXPECT_EQ(ss.probes.probes_completed, ts.probes.probes_completed);
  EXPECT_EQ(ss.probes.rollouts_kept, ts.probes.rollouts_kept);
  EXPECT_EQ(ss.cost.probe_train_tokens, ts.cost.probe_train_tokens);
  EXPECT_GT(ss.cost.probe_slice_seconds, 0.0) << "the probes ran in slices";
  EXPECT_EQ(ts.cost.probe_slice_seconds, 0.0) << "the probes ran on their thread";
  for (size_t i = 0; i < sliced.influence.size(); ++i)
    EXPECT_TRUE(torch::allclose(sliced.influence[i], thread.influence[i], 0, 0, /*equal_nan=*/true)) << "batch " << i;

  const auto [a, as] = run(RefreshMode::kWhenReady, 1);
  const auto [b, bs] = run(RefreshMode::kWhenReady, 1);
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_EQ(a.versions, b.versions);
  EXPECT_GE(as.refreshes, 2u);
  ASSERT_EQ(as.switches.size(), bs.switches.size());
  for (size_t i = 0; i < as.switches.size(); ++i) {
    EXPECT_EQ(as.switches[i].window, bs.switches[i].window);
    EXPECT_EQ(as.switches[i].probe_step, bs.switches[i].probe_step);
  }
  EXPECT_GT(as.cost.probe_slice_seconds, 0.0);
}

// Probes in slices run inside on_step, on the training thread, whose autograd mode is the caller's: a loop that calls
// on_step (and state()) under no-grad still gets its probes labelled and its models refreshed.
TEST_F(RefreshModesTest, ProbesInSlicesRunUnderACallersNoGradMode) {
  GroupMatesLoader loader(loader_config(path, seed), selection_config(seed), probe_config());
  auto live = make_live_model(seed);
  for (int64_t step = 0; step < 30; ++step) {
    auto b = loader.next();
    ASSERT_TRUE(b);
    live->train_step(b->input_ids);
    const torch::NoGradGuard no_grad;
    loader.on_step(step, live.get());
    if (step == 20) loader.state();
  }
  const SelectionStats s = loader.selection_stats();
  EXPECT_GE(s.probes.probes_completed, 3);
  EXPECT_EQ(s.probes.probes_failed, 0) << s.probes.last_error;
  EXPECT_EQ(s.refreshes_failed, 0u) << s.last_refresh_error;
  EXPECT_GE(s.refreshes, 2u);
  EXPECT_GT(s.cost.probe_slice_seconds, 0.0);
}

TEST_F(RefreshModesTest, WhenReadySwitchesResumeExactly) {
  // Saving waits for the probe in flight; its refresh then takes effect at the same window boundary
  // in the saved run and in the resumed one, and the recorded switches carry over.
  SelectionConfig sel = selection_config(seed);
  sel.refresh_mode = RefreshMode::kWhenReady;
  ProbeConfig p = probe_config();
  p.interval_steps = 7;
  p.first_step = 2;
  p.budget = 0;
  std::mt19937_64 rng(seed);
  const int64_t k = 2 + static_cast<int64_t>(rng() % 20), total = 40;
  SCOPED_TRACE("save after step " + std::to_string(k));
  std::string saved;
  std::unique_ptr<ProbeTarget> live_at_k;
  Emitted after;
  std::vector<VersionSwitch> switches;
  {
    GroupMatesLoader loader(loader_config(path, seed), sel, p);
    auto live = make_live_model(seed);
    train(loader, *live, 0, k + 1);
    saved = loader.state().serialize();
    live_at_k = live->clone();
    // After the save, only probes that finish before the next window boundary could differ; keep
    // the rest of the run probe-free by handing no target.
    for (int64_t step = k + 1; step < total; ++step) {
      auto b = loader.next();
      for (const auto& id : b->ids) after.ids.push_back(id.hash);
      after.versions.push_back(b->model_version);
      loader.on_step(step, nullptr);
    }
    switches = loader.selection_stats().switches;
  }
  GroupMatesLoader resumed(loader_config(path, seed), sel, p, LoaderState::parse(saved));
  Emitted rest;
  for (int64_t step = k + 1; step < total; ++step) {
    auto b = resumed.next();
    for (const auto& id : b->ids) rest.ids.push_back(id.hash);
    rest.versions.push_back(b->model_version);
    resumed.on_step(step, nullptr);
  }
  EXPECT_EQ(rest.ids, after.ids);
  EXPECT_EQ(rest.versions, after.versions);
  const auto got = resumed.selection_stats().switches;
  ASSERT_EQ(got.size(), switches.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].window, switches[i].window);
    EXPECT_EQ(got[i].probe_step, switches[i].probe_step);
    EXPECT_EQ(got[i].version, switches[i].version);
  }
  EXPECT_GE(got.size(), 1u) << "the probe of step 2 refreshed the model";
}

TEST_F(RefreshModesTest, NonFiniteRefreshIsNeverPublished) {
  SelectionConfig sel = selection_config(seed);
  sel.refresh_learning_rate = 1e30;  // AdamW's decay and steps overflow the influence model's weights
  ProbeConfig p = probe_config();
  p.max_consecutive_failures = 0;  // every refresh fails: keep going (fault_injection_test: the other policy)
  GroupMatesLoader loader(loader_config(path, seed), sel, p);
  auto live = make_live_model(seed);
  const Emitted e = train(loader, *live, 0, 30);
  const SelectionStats s = loader.selection_stats();
  EXPECT_GE(s.probes.probes_completed, 3);
  EXPECT_EQ(s.refreshes, 0u);
  EXPECT_GE(s.refreshes_failed, 3u);
  EXPECT_EQ(s.refreshes_rejected_nonfinite, s.refreshes_failed);
  EXPECT_NE(s.last_refresh_error.find("not finite"), std::string::npos) << s.last_refresh_error;
  for (uint64_t v : e.versions) EXPECT_EQ(v, 1u);
  EXPECT_EQ(e.inputs.size(), 30u) << "the loader goes on with the last good model";
}

// heap_release_interval_seconds: the first refresh hands the freed heap back, later ones only once the interval
// passed (here never again); 0 never does; neither changes what is emitted.
TEST_F(RefreshModesTest, RefreshesReleaseTheFreedHeapAtMostOncePerInterval) {
  if (!groupmates::util::release_free_heap()) GTEST_SKIP() << "not glibc: nothing to release";
  std::vector<Emitted> runs;
  for (double interval : {1e9, 0.0}) {
    SelectionConfig sel = selection_config(seed);
    sel.heap_release_interval_seconds = interval;
    GroupMatesLoader loader(loader_config(path, seed), sel, probe_config());
    auto live = make_live_model(seed);
    runs.push_back(train(loader, *live, 0, 30));
    const SelectionStats s = loader.selection_stats();
    ASSERT_GE(s.refreshes, 2u);
    EXPECT_EQ(s.heap_releases, interval > 0 ? 1u : 0u) << "heap_release_interval_seconds " << interval;
    if (interval > 0) EXPECT_GT(s.heap_release_seconds, 0.0) << "the release's time is counted";
    else EXPECT_EQ(s.heap_release_seconds, 0.0);
    EXPECT_LE(s.heap_release_seconds, s.refresh_seconds) << "counted in the refresh's time";
  }
  EXPECT_EQ(runs[0].ids, runs[1].ids);
  EXPECT_EQ(runs[0].versions, runs[1].versions);
}

TEST_F(RefreshModesTest, ImportanceModeTakesTheReferenceLikeRowsFirst) {
  SelectionConfig sel = selection_config(seed);
  sel.mode = SelectionMode::kImportance;
  sel.replay_share = 0;  // each window's own picks, in order (replays would interleave the best rows of earlier ones)
  GroupMatesLoader loader(loader_config(path, seed), sel, ProbeConfig{});
  EXPECT_THROW(
      {
        try {
          loader.next();
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("set_reference"), std::string::npos) << e.what();
          throw;
        }
      },
      Error);
  GroupMatesLoader fresh(loader_config(path, seed), sel, ProbeConfig{});
  fresh.set_reference(reference_rows());
  StreamingLoader plain = window_stream(path, seed, sel.window_size);
  int64_t selected_topic0 = 0, seen_topic0 = 0;
  for (int w = 0; w < 6; ++w) {
    const auto window = plain.next();
    const torch::Tensor rows = to_tensor(*window);
    int64_t in_window = 0;
    for (int64_t i = 0; i < rows.size(0); ++i) in_window += topic0(rows[i]);
    const int64_t budget = sel.window_size / 2;
    int64_t got = 0;
    for (int b = 0; b < budget / 4; ++b) {
      auto batch = fresh.next();
      ASSERT_TRUE(batch);
      EXPECT_EQ(batch->model_version, 1u);
      EXPECT_TRUE(torch::isfinite(batch->influence).all().item<bool>());
      for (int64_t i = 0; i < batch->input_ids.size(0); ++i) got += topic0(batch->input_ids[i]);
    }
    EXPECT_EQ(got, std::min(in_window, budget)) << "window " << w << ": every reference-like row is taken first";
    selected_topic0 += got;
    seen_topic0 += in_window;
  }
  EXPECT_GT(2 * selected_topic0, seen_topic0) << "random selection takes about half of them";
  const SelectionStats s = fresh.selection_stats();
  EXPECT_EQ(s.warmup_windows, 0u);
  EXPECT_EQ(s.cost.scoring_seconds, 0.0) << "no influence model runs in importance mode";
}

TEST_F(RefreshModesTest, PriorDrivesGroupSelectionBeforeTheFirstRefresh) {
  // With reference rows, u = gamma * prior until a refresh exists: no random warm-up.
  SelectionConfig sel = selection_config(seed);
  GroupMatesLoader loader(loader_config(path, seed), sel, ProbeConfig{});
  loader.set_reference(reference_rows());
  int64_t topic0_rows = 0, rows = 0;
  double u_topic0 = 0, u_other = 0;
  for (int b = 0; b < 40; ++b) {
    auto batch = loader.next();
    ASSERT_TRUE(batch);
    EXPECT_TRUE(torch::isfinite(batch->influence).all().item<bool>()) << "batch " << b;
    for (int64_t i = 0; i < batch->input_ids.size(0); ++i) {
      const bool t0 = topic0(batch->input_ids[i]);
      topic0_rows += t0, ++rows;
      (t0 ? u_topic0 : u_other) += batch->influence[i].item<double>();
    }
  }
  const SelectionStats s = loader.selection_stats();
  EXPECT_EQ(s.warmup_windows, 0u);
  EXPECT_DOUBLE_EQ(s.prior_weight, 1.0);
  // The relational discount spreads the picks; the prior still takes topic 0 well above its share
  // of the windows (the 10 windows the 40 batches came from).
  StreamingLoader plain = window_stream(path, seed, sel.window_size);
  int64_t window_topic0 = 0, window_rows = 0;
  for (int w = 0; w < 10; ++w) {
    const torch::Tensor t = to_tensor(*plain.next());
    for (int64_t i = 0; i < t.size(0); ++i) window_topic0 += topic0(t[i]), ++window_rows;
  }
  EXPECT_GT(double(topic0_rows) / double(rows), 1.2 * double(window_topic0) / double(window_rows));
  ASSERT_GT(topic0_rows, 0);
  EXPECT_LT(u_topic0 / double(topic0_rows), u_other / double(rows - topic0_rows));
}
