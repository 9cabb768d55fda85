// Injected faults in the online loop: a refresh whose weights turn NaN (rejected, counted, leaves no
// trace), a refresh or a probe that throws (counted with its message; ProbeConfig::max_consecutive_failures
// in a row stop next() with the errors), a probe that hangs (abandoned after timeout_seconds, counted,
// the loop goes on and shutdown is bounded).
#include <gtest/gtest.h>

#include <chrono>
#include <limits>
#include <stdexcept>
#include <thread>

#include "common/wrapped_target.h"
#include "groupmates/error.h"
#include "online/influence_refresher.h"
#include "online_test_util.h"

using namespace gmonline;

namespace {

class FaultInjectionTest : public OnlineFixture {
 protected:
  void TearDown() override { refresh_fault_hook = nullptr; }
};

// Writes NaN into one weight of the model refreshed after the probe at `step` (only that one).
void nan_after_probe(int64_t step) {
  refresh_fault_hook = [step](int64_t probe_step, RelationalInfluenceModel& model) {
    if (probe_step != step) return;
    torch::NoGradGuard no_grad;
    model.parameters().back().view(-1)[0].fill_(std::numeric_limits<float>::quiet_NaN());
  };
}

void throw_after_probe(int64_t step) {
  refresh_fault_hook = [step](int64_t probe_step, RelationalInfluenceModel&) {
    if (probe_step == step) throw std::runtime_error("injected refresh fault at step " + std::to_string(probe_step));
  };
}

// Steps the loop until next() throws (returns that step and the error) or `steps` are done (-1).
int64_t run_until_error(GroupMatesLoader& loader, ProbeTarget& live, int64_t steps, std::string* message) {
  for (int64_t step = 0; step < steps; ++step) {
    std::optional<Batch> b;
    try {
      b = loader.next();
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kSelectionFailed) << e.what();
      *message = e.what();
      return step;
    }
    live.train_step(b->input_ids);
    loader.on_step(step, &live);
  }
  return -1;
}

}  // namespace

TEST_F(FaultInjectionTest, NonFiniteRefreshIsRejectedAndLeavesNoTrace) {
  // Probes at 2, 8, 14, 20 (kAtStep, effect 3 steps later). The refresh of probe 2 turns NaN: not
  // published, counted, and the stream equals that of a run whose refresh of probe 2 threw.
  nan_after_probe(2);
  GroupMatesLoader loader(loader_config(path, seed), selection_config(seed), probe_config());
  auto live = make_live_model(seed);
  const Emitted e = train(loader, *live, 0, 24);
  const SelectionStats s = loader.selection_stats();
  EXPECT_EQ(s.refreshes_failed, 1u);
  EXPECT_EQ(s.refreshes_rejected_nonfinite, 1u);
  EXPECT_NE(s.last_refresh_error.find("is not finite"), std::string::npos) << s.last_refresh_error;
  EXPECT_GE(s.refreshes, 2u) << "the refreshes of probes 8 and 14 publish";
  EXPECT_EQ(s.consecutive_failures, 0u) << "a refresh that trained ends the run of failures";
  ASSERT_EQ(e.versions.size(), 24u);
  for (size_t step = 0; step < 11; ++step) EXPECT_EQ(e.versions[step], 1u) << "step " << step;
  for (size_t step = 0; step < e.versions.size(); ++step)
    if (e.versions[step] > 1) EXPECT_TRUE(torch::isfinite(e.influence[step]).all().item<bool>()) << "step " << step;

  throw_after_probe(2);
  GroupMatesLoader other(loader_config(path, seed), selection_config(seed), probe_config());
  auto live2 = make_live_model(seed);
  const Emitted f = train(other, *live2, 0, 24);
  const SelectionStats t = other.selection_stats();
  EXPECT_EQ(t.refreshes_failed, 1u);
  EXPECT_EQ(t.refreshes_rejected_nonfinite, 0u) << "an exception is not a non-finite model";
  EXPECT_NE(t.last_refresh_error.find("injected refresh fault at step 2"), std::string::npos) << t.last_refresh_error;
  EXPECT_EQ(e.ids, f.ids);
  EXPECT_EQ(e.versions, f.versions);
}

TEST_F(FaultInjectionTest, RefreshesFailingInARowStopNextWithTheirError) {
  refresh_fault_hook = [](int64_t probe_step, RelationalInfluenceModel&) {
    throw std::runtime_error("injected refresh fault at step " + std::to_string(probe_step));
  };
  ProbeConfig p = probe_config();
  p.max_consecutive_failures = 2;
  GroupMatesLoader loader(loader_config(path, seed), selection_config(seed), p);
  auto live = make_live_model(seed);
  std::string message;
  const int64_t at = run_until_error(loader, *live, 40, &message);
  // The second failure is the refresh of the probe at step 8, applied (waited for) at the window
  // boundary of step 12; it is seen by step 13's next() at the latest.
  EXPECT_GE(at, 9) << message;
  EXPECT_LE(at, 13) << message;
  EXPECT_NE(message.find("[selection_failed] ProbeConfig.max_consecutive_failures: 2 probes or refreshes failed in a row"),
            std::string::npos) << message;
  EXPECT_NE(message.find("last refresh error: "), std::string::npos) << message;
  EXPECT_NE(message.find("injected refresh fault at step 8"), std::string::npos) << message;
  EXPECT_NE(message.find("max_consecutive_failures = 0 to keep training"), std::string::npos) << message;
  EXPECT_THROW(loader.next(), Error) << "and it keeps failing";
  EXPECT_EQ(loader.selection_stats().consecutive_failures, 2u);

  // With the policy off, the loop goes on with the last good model and only counts.
  p.max_consecutive_failures = 0;
  GroupMatesLoader lenient(loader_config(path, seed), selection_config(seed), p);
  auto live2 = make_live_model(seed);
  EXPECT_EQ(run_until_error(lenient, *live2, 30, &message), -1);
  lenient.state();  // waits for the probe in flight
  const SelectionStats s = lenient.selection_stats();
  EXPECT_GE(s.refreshes_failed, 4u);
  EXPECT_EQ(s.consecutive_failures, s.refreshes_failed);
  EXPECT_EQ(s.refreshes, 0u);
}

TEST_F(FaultInjectionTest, ProbesFailingInARowStopNextWithTheirError) {
  auto inner = std::shared_ptr<ProbeTarget>(make_live_model(seed));
  gmtest::WrappedTarget live(inner, [] { throw std::runtime_error("injected probe fault"); });
  GroupMatesLoader loader(loader_config(path, seed), selection_config(seed), probe_config());  // default: 3
  std::string message;
  // live.train_step runs the hook too: the loop trains the inner model directly.
  int64_t at = -1;
  for (int64_t step = 0; step < 40 && at < 0; ++step) {
    std::optional<Batch> b;
    try {
      b = loader.next();
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kSelectionFailed);
      message = e.what();
      at = step;
      break;
    }
    inner->train_step(b->input_ids);
    loader.on_step(step, &live);
  }
  // Probes at 2, 8, 14 fail at their first step; the third is counted before the probe at 20 starts.
  EXPECT_GE(at, 15) << message;
  EXPECT_LE(at, 21) << message;
  EXPECT_NE(message.find("3 probes or refreshes failed in a row (probes failed 3, timed out 0, refreshes failed 0"),
            std::string::npos) << message;
  EXPECT_NE(message.find("last probe error: injected probe fault"), std::string::npos) << message;
  const SelectionStats s = loader.selection_stats();
  EXPECT_EQ(s.probes.probes_failed, 3);
  EXPECT_EQ(s.refreshes, 0u);
}

TEST_F(FaultInjectionTest, HungProbeIsAbandonedAtItsTimeoutAndTheLoopGoesOn) {
  // The probe at step 2 hangs at its first step. kAtStep: the loader waits for its refresh at the
  // boundary of step 8, at most timeout_seconds; then the probes of 8, 14, ... run and publish.
  auto hang = std::make_shared<gmtest::HangSwitch>();
  gmtest::HangingTarget live(std::shared_ptr<ProbeTarget>(make_live_model(seed)), hang);
  ProbeConfig p = probe_config();
  p.timeout_seconds = 0.5;
  p.trainer_thread_rollouts = 0;  // a probe thread: the timeout applies to it (in slices a hang is the trainer's)
  const auto started = std::chrono::steady_clock::now();
  {
    GroupMatesLoader loader(loader_config(path, seed), selection_config(seed), p);
    const Emitted e = train(loader, live, 0, 24);
    loader.state();
    const SelectionStats s = loader.selection_stats();
    EXPECT_EQ(e.inputs.size(), 24u);
    EXPECT_EQ(s.probes.probes_timed_out, 1);
    EXPECT_EQ(s.probes.probes_failed, 0);
    EXPECT_GE(s.probes.probes_completed, 3);
    EXPECT_GE(s.refreshes, 2u);
    EXPECT_EQ(s.consecutive_failures, 0u);
    EXPECT_NE(s.probes.last_probe_step, 2);
    for (size_t step = 0; step < 11; ++step) EXPECT_EQ(e.versions[step], 1u) << "step " << step;
    EXPECT_GE(hang->clones_alive.load(), 1) << "the hung probe's snapshot is still on its thread";
  }
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_LT(took, 25.0) << "a probe hung for 30 s: the timeout did not abandon it";
  hang->release();
  EXPECT_TRUE(hang->clones_gone_within(60)) << "the abandoned thread ends once the hang ends";
}

TEST_F(FaultInjectionTest, HungProbeNeverHoldsTheTrainerOrShutdownWhenReady) {
  // kWhenReady: the trainer never waits for the hung probe; due probes are skipped (busy) until it is
  // abandoned, then they run again. Destroying the loader with a probe hung returns at its timeout.
  auto hang = std::make_shared<gmtest::HangSwitch>();
  gmtest::HangingTarget live(std::shared_ptr<ProbeTarget>(make_live_model(seed)), hang);
  SelectionConfig sel = selection_config(seed);
  sel.refresh_mode = RefreshMode::kWhenReady;
  ProbeConfig p = probe_config();
  p.timeout_seconds = 0.3;
  p.trainer_thread_rollouts = 0;  // a probe thread (in slices a hang is the trainer's own)
  {
    GroupMatesLoader loader(loader_config(path, seed), sel, p);
    double longest_step = 0;
    for (int64_t step = 0; step < 48; ++step) {
      const auto t0 = std::chrono::steady_clock::now();
      auto b = loader.next();
      ASSERT_TRUE(b);
      live.train_step(b->input_ids);
      loader.on_step(step, &live);
      longest_step = std::max(longest_step, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // ~1 s in all: past the timeout
    }
    loader.state();
    const SelectionStats s = loader.selection_stats();
    EXPECT_EQ(s.probes.probes_timed_out, 1);
    EXPECT_GE(s.probes.probes_skipped_busy, 1);
    EXPECT_GE(s.probes.probes_completed, 1) << "probes run again after the abandonment";
    EXPECT_LT(longest_step, 0.3) << "no step waited for the hung probe";
  }
  auto hang2 = std::make_shared<gmtest::HangSwitch>();
  gmtest::HangingTarget live2(std::shared_ptr<ProbeTarget>(make_live_model(seed)), hang2);
  std::chrono::steady_clock::time_point destroyed;
  {
    GroupMatesLoader loader(loader_config(path, seed), sel, p);
    for (int64_t step = 0; step < 3; ++step) {
      auto b = loader.next();
      live2.train_step(b->input_ids);
      loader.on_step(step, &live2);  // the probe at step 2 hangs
    }
    destroyed = std::chrono::steady_clock::now();
  }
  const double shutdown = std::chrono::duration<double>(std::chrono::steady_clock::now() - destroyed).count();
  EXPECT_LT(shutdown, 10.0) << "shutdown is bounded by the timeout";
  hang->release();
  hang2->release();
  EXPECT_TRUE(hang->clones_gone_within(60));
  EXPECT_TRUE(hang2->clones_gone_within(60));
}
