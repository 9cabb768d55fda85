// SphericalKMeans shared across ranks (threads of this process as ranks): after every window the
// centroids are bit-identical on every rank, and equal (to float rounding) to one k-means stepping
// on the union of the ranks' windows from the same state.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <thread>

#include "groupmates/engine/spherical_kmeans.h"
#include "thread_collectives.h"

using namespace groupmates;

namespace {

// Unit rows around k well-separated directions (every cluster wins members in every window).
torch::Tensor clustered(const torch::Tensor& centres, int64_t rows, torch::Generator& g) {
  const torch::Tensor pick = torch::randint(0, centres.size(0), {rows}, g);
  torch::Tensor x = centres.index_select(0, pick) + 0.05 * torch::randn({rows, centres.size(1)}, g);
  return x / x.norm(2, 1, true);
}

}  // namespace

TEST(SharedKMeans, CentroidsAreIdenticalOnEveryRankAndFollowTheUnionOfTheirWindows) {
  const uint64_t seed = std::getenv("GM_TEST_SEED") ? std::stoull(std::getenv("GM_TEST_SEED")) : std::random_device{}();
  SCOPED_TRACE("GM_TEST_SEED=" + std::to_string(seed));
  for (int world : {2, 3}) {
    const int64_t k = 4, d = 8, rows = 48, windows = 4;
    auto g = at::detail::createCPUGenerator(seed + world);
    const torch::Tensor centres = torch::eye(d).slice(0, 0, k);
    std::vector<std::vector<torch::Tensor>> x(windows);  // [window][rank]
    for (auto& w : x)
      for (int r = 0; r < world; ++r) w.push_back(clustered(centres, rows, g));
    SphericalKMeansConfig cfg;
    cfg.num_clusters = k;
    cfg.seed = seed;
    auto group = std::make_shared<groupmates_test::ThreadGroup>(world);
    std::vector<std::vector<std::string>> states(windows, std::vector<std::string>(world));
    std::vector<std::vector<torch::Tensor>> assigned(windows, std::vector<torch::Tensor>(world));
    std::vector<std::thread> ranks;
    for (int r = 0; r < world; ++r)
      ranks.emplace_back([&, r] {
        SphericalKMeans km(cfg);
        km.set_collectives(std::make_shared<groupmates_test::ThreadCollectives>(group, r));
        for (int64_t w = 0; w < windows; ++w) {
          assigned[w][r] = w == 2 ? km.refit(x[w][r]) : km.update(x[w][r]);  // window 2: a new model version
          states[w][r] = km.save_state();
        }
      });
    for (auto& t : ranks) t.join();
    for (int64_t w = 0; w < windows; ++w)
      for (int r = 1; r < world; ++r) EXPECT_EQ(states[w][r], states[w][0]) << "window " << w << " rank " << r;
    // The reference: one k-means from the shared state before window w, on the union of the windows.
    for (int64_t w = 1; w < windows; ++w) {
      SphericalKMeans ref(cfg);
      ref.load_state(states[w - 1][0]);
      const torch::Tensor all = torch::cat(x[w]);
      const torch::Tensor a = w == 2 ? ref.refit(all) : ref.update(all);
      SphericalKMeans shared(cfg);
      shared.load_state(states[w][0]);
      EXPECT_TRUE(torch::allclose(shared.centroids(), ref.centroids(), 0, 1e-5)) << "window " << w;
      EXPECT_TRUE(torch::equal(shared.counts(), ref.counts())) << "window " << w;
      EXPECT_TRUE(torch::equal(torch::cat(assigned[w]), a)) << "window " << w;
    }
  }
}
