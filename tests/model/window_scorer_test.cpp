// Versioned scoring: publish() under concurrent scoring never mixes versions within a window.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <deque>
#include <future>
#include <set>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "groupmates/error.h"
#include "groupmates/engine/model_registry.h"
#include "groupmates/engine/window_scorer.h"
#include "common/engine_test_util.h"

namespace groupmates {
namespace {

// Weights whose head has w = 0 and b = marker: every u of the window equals the marker.
std::string marked_weights(double marker) {
  auto model = testing::small_model();
  torch::NoGradGuard no_grad;
  model->head()->weight.zero_();
  model->head()->bias.fill_(marker);
  return model->export_weights();
}

TEST(WindowScorer, ScoringBeforeTheFirstVersionThrows) {
  auto registry = std::make_shared<ModelRegistry>([] { return testing::small_model(); }, torch::kCPU);
  WindowScorer scorer(registry);
  EXPECT_EQ(registry->current_version(), 0u);
  EXPECT_THROW(scorer.score(torch::zeros({2, 4}, torch::kLong)), Error);
}

TEST(WindowScorer, VersionsNeverMixWithinAWindow) {
  torch::manual_seed(30);
  auto registry = std::make_shared<ModelRegistry>([] { return testing::small_model(); }, default_device());
  std::vector<std::string> blobs;
  for (int i = 0; i < 4; ++i) blobs.push_back(marked_weights(100.0 * (i + 1)));
  registry->publish(blobs[0]);

  std::mutex mutex;
  std::map<uint64_t, double> marker_of{{1, 100.0}};
  std::map<uint64_t, size_t> blob_of{{1, 0}};
  std::atomic<bool> done{false};
  std::thread publisher([&] {
    for (int i = 0; !done.load(); ++i) {
      const size_t b = size_t(i % 4);
      const uint64_t v = registry->publish(blobs[b]);
      std::lock_guard<std::mutex> lock(mutex);
      marker_of[v] = 100.0 * (b + 1);
      blob_of[v] = b;
    }
  });

  WindowScorer scorer(registry);
  const torch::Tensor tokens = torch::randint(0, 5000, {64, 48}, torch::kLong);
  // Like a loader: up to 4 windows in flight while the next ones are read.
  std::deque<std::future<ScoredWindow>> pending;
  std::vector<ScoredWindow> results;
  for (int w = 0; w < 200; ++w) {
    pending.push_back(scorer.score(tokens));
    if (pending.size() == 4) {
      results.push_back(pending.front().get());
      pending.pop_front();
    }
  }
  for (auto& f : pending) results.push_back(f.get());
  done = true;
  publisher.join();

  uint64_t previous = 0;
  std::set<uint64_t> seen;
  for (const ScoredWindow& r : results) {
    EXPECT_GE(r.version, previous);  // submission order = version order
    previous = r.version;
    seen.insert(r.version);
    ASSERT_EQ(r.u.numel(), 64);
    const double marker = marker_of.at(r.version);
    EXPECT_TRUE(torch::all(r.u.cpu().eq(float(marker))).item<bool>()) << "version " << r.version;
  }
  std::printf("[registry] 200 windows scored across %zu versions while publishing\n", seen.size());
  EXPECT_GT(seen.size(), 1u);
  // Embeddings of a window are exactly the ones of its version's weights.
  for (size_t i = 0; i < results.size(); i += 37) {
    auto model = testing::small_model();
    model->import_weights(blobs[blob_of.at(results[i].version)]);
    model->eval();
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(torch::equal(model->embed(tokens), results[i].embeddings.cpu()));
  }
}

}  // namespace
}  // namespace groupmates
