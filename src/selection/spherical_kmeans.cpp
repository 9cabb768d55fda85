// SphericalKMeans: k-means++ seeding, Lloyd refinement on the first window, mini-batch updates.
#include "groupmates/engine/spherical_kmeans.h"
#include "model/blob_file.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <vector>

#include <torch/nn/functional/normalization.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include "groupmates/error.h"

namespace groupmates {

namespace {

torch::Tensor normalise_rows(const torch::Tensor& x) {
  return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().p(2.0).dim(1).eps(1e-12));
}

double uniform01(std::mt19937_64& rng) { return double(rng() >> 11) * 0x1.0p-53; }

}  // namespace

SphericalKMeans::SphericalKMeans(const SphericalKMeansConfig& config, torch::Device device)
    : config_(config), device_(device) {
  if (config.num_clusters <= 0)
    throw Error(ErrorCode::kInvalidConfig, "SphericalKMeansConfig.num_clusters",
                "got " + std::to_string(config.num_clusters) + ", allowed >= 1");
  if (config.init_iterations < 0 || config.init_restarts < 1 || config.reseed_after_idle_windows < 1)
    throw Error(ErrorCode::kInvalidConfig, "SphericalKMeansConfig",
                "init_iterations must be >= 0, init_restarts and reseed_after_idle_windows >= 1");
  if (!(config.max_count >= 0))
    throw Error(ErrorCode::kInvalidConfig, "SphericalKMeansConfig.max_count",
                "got " + std::to_string(config.max_count) + ", allowed >= 0 (0 = no cap)");
}

torch::Tensor SphericalKMeans::assign(const torch::Tensor& x) const {
  if (!initialized_) throw Error(ErrorCode::kInvalidState, "SphericalKMeans::assign", "no window seen yet: call update() first");
  return torch::matmul(x.to(device_, torch::kFloat), centroids_.t()).argmax(1);
}

void SphericalKMeans::all_reduce(torch::Tensor& sums, torch::Tensor& counts) {
  torch::Tensor both = torch::cat({sums, counts.unsqueeze(1)}, 1).to(torch::kCPU, torch::kDouble).contiguous();
  collectives_->all_reduce_sum(both);
  const torch::Tensor back = both.to(device_, torch::kFloat);
  sums = back.slice(1, 0, sums.size(1)).contiguous();
  counts = back.select(1, sums.size(1)).contiguous();
}

void SphericalKMeans::broadcast_state() {
  const std::string blob = collectives_->broadcast(collectives_->rank() == 0 ? save_state() : std::string(), 0);
  if (collectives_->rank() != 0) load_state(blob);
}

void SphericalKMeans::seed(const torch::Tensor& x) {
  if (x.size(0) == 0) throw Error(ErrorCode::kInvalidConfig, "SphericalKMeans::update", "empty first window");
  if (shared()) {  // rank 0 seeds on its window; every rank refines from its centroids on the union
    if (collectives_->rank() == 0) {
      local_only_ = true;
      try {
        seed(x);
      } catch (...) {
        local_only_ = false;
        throw;
      }
      local_only_ = false;
    }
    broadcast_state();
    lloyd(x.to(device_, torch::kFloat));
    return;
  }
  // Several seeded starts from one random stream; keep the one with the highest total cosine.
  std::mt19937_64 rng(config_.seed);
  const torch::Tensor xd = x.to(device_, torch::kFloat);
  double best_objective = -std::numeric_limits<double>::infinity();
  torch::Tensor best_centroids, best_counts, best_idle;
  for (int start = 0; start < config_.init_restarts; ++start) {
    seed_once(xd, rng);
    const double objective = std::get<0>(torch::matmul(xd, centroids_.t()).max(1)).sum().item<double>();
    if (objective > best_objective) {
      best_objective = objective;
      best_centroids = centroids_;
      best_counts = counts_;
      best_idle = idle_;
    }
  }
  centroids_ = best_centroids;
  counts_ = best_counts;
  idle_ = best_idle;
}

void SphericalKMeans::seed_once(const torch::Tensor& x, std::mt19937_64& rng) {
  const int64_t rows = x.size(0), k = config_.num_clusters;
  // Greedy k-means++ (as scikit-learn): D^2 sampling with D = 1 - cos, drawing 2 + ln k candidates
  // per centre and keeping the one that lowers the potential most. Host, double: deterministic.
  const torch::Tensor xh = x.to(torch::kCPU, torch::kFloat).contiguous();
  const int trials = 2 + static_cast<int>(std::log(double(k)));
  auto distance_to = [&](int64_t row) { return (1 - torch::mv(xh, xh[row]).to(torch::kDouble)).clamp_min(0); };
  std::vector<int64_t> chosen{static_cast<int64_t>(uniform01(rng) * double(rows))};
  torch::Tensor best = distance_to(chosen[0]);  // distance to the nearest chosen centre
  for (int64_t c = 1; c < k; ++c) {
    const torch::Tensor weight = best * best;
    const double* w = weight.data_ptr<double>();
    double total = 0;
    for (int64_t i = 0; i < rows; ++i) total += w[i];
    int64_t pick = -1;
    double pick_potential = 0;
    torch::Tensor pick_best;
    for (int trial = 0; trial < trials; ++trial) {
      int64_t candidate = rows - 1;
      if (total > 0) {
        double target = uniform01(rng) * total;
        for (int64_t i = 0; i < rows; ++i) {
          target -= w[i];
          if (target < 0 && w[i] > 0) {
            candidate = i;
            break;
          }
        }
      } else {
        candidate = static_cast<int64_t>(uniform01(rng) * double(rows));  // all points coincide
      }
      const torch::Tensor merged = torch::minimum(best, distance_to(candidate));
      const double potential = (merged * merged).sum().item<double>();
      if (pick < 0 || potential < pick_potential) {
        pick = candidate;
        pick_potential = potential;
        pick_best = merged;
      }
    }
    chosen.push_back(pick);
    best = pick_best;
  }
  centroids_ = xh.index_select(0, torch::tensor(chosen, torch::kLong)).to(device_).clone();
  counts_ = torch::zeros({k}, torch::TensorOptions(device_).dtype(torch::kFloat));
  idle_ = torch::zeros({k}, torch::TensorOptions(device_).dtype(torch::kLong));
  initialized_ = true;
  lloyd(x);
}

void SphericalKMeans::lloyd(const torch::Tensor& xd) {
  // Lloyd iterations from the current centroids: centroid = normalised mean of its members; empty
  // ones are re-seeded; the counts restart from this window's members.
  const int64_t k = config_.num_clusters;
  for (int it = 0; it <= config_.init_iterations; ++it) {
    const torch::Tensor a = assign(xd);
    torch::Tensor counts = torch::bincount(a, {}, k).to(torch::kFloat);
    torch::Tensor sums = torch::zeros_like(centroids_).index_add_(0, a, xd);
    if (shared()) all_reduce(sums, counts);
    if (it == config_.init_iterations) {
      counts_ = counts;
      idle_ = counts.eq(0).to(torch::kLong) * config_.reseed_after_idle_windows;  // empty: re-seed now
      reseed_idle(xd, a);
      break;
    }
    const torch::Tensor nonempty = counts.gt(0).unsqueeze(1);
    centroids_ = torch::where(nonempty, normalise_rows(sums), centroids_);
  }
}

void SphericalKMeans::reseed_idle(const torch::Tensor& x, const torch::Tensor& assignment) {
  const torch::Tensor idle = idle_.ge(config_.reseed_after_idle_windows).nonzero().flatten().cpu();
  const int64_t n = idle.numel();
  if (n == 0) return;
  // Worst-fit points (lowest cosine to their own centroid) become the new centroids.
  const torch::Tensor fit = (x * centroids_.index_select(0, assignment)).sum(1);
  const int64_t take = std::min<int64_t>(n, x.size(0));
  const torch::Tensor worst = std::get<1>(fit.topk(take, 0, /*largest=*/false, /*sorted=*/true));
  const torch::Tensor targets = idle.slice(0, 0, take).to(device_);
  centroids_.index_copy_(0, targets, normalise_rows(x.index_select(0, worst)));
  counts_.index_fill_(0, targets, 1.0f);
  idle_.index_fill_(0, targets, 0);
  if (shared()) broadcast_state();  // the same idle set on every rank; rank 0's points replace them
}

torch::Tensor SphericalKMeans::refit(const torch::Tensor& x_in) {
  if (x_in.dim() != 2) throw Error(ErrorCode::kInvalidConfig, "SphericalKMeans::refit", "x must be [W, D]");
  const torch::Tensor x = x_in.to(device_, torch::kFloat);
  if (!initialized_) seed(x);
  else lloyd(x);
  return assign(x);
}

torch::Tensor SphericalKMeans::update(const torch::Tensor& x_in) {
  if (x_in.dim() != 2) throw Error(ErrorCode::kInvalidConfig, "SphericalKMeans::update", "x must be [W, D]");
  const torch::Tensor x = x_in.to(device_, torch::kFloat);
  if (!initialized_) {
    seed(x);
    return assign(x);
  }
  const int64_t k = config_.num_clusters;
  const torch::Tensor a = assign(x);
  torch::Tensor m = torch::bincount(a, {}, k).to(torch::kFloat);
  torch::Tensor sums = torch::zeros_like(centroids_).index_add_(0, a, x);
  if (shared()) all_reduce(sums, m);  // the step on the union of the ranks' windows
  counts_ += m;
  // c <- (1 - m/n) c + sum/n, with n the centroid's running count (rate 1/n per point), capped at
  // max_count so the rate never decays below ~1/max_count; n >= m keeps 1 - m/n >= 0.
  torch::Tensor n = counts_;
  if (config_.max_count > 0) n = torch::maximum(n.clamp_max(config_.max_count), m);
  n = n.clamp_min(1).unsqueeze(1);
  centroids_ = normalise_rows(centroids_ * (1 - m.unsqueeze(1) / n) + sums / n);
  idle_ = torch::where(m.gt(0), torch::zeros_like(idle_), idle_ + 1);
  reseed_idle(x, a);
  return a;
}

std::string SphericalKMeans::save_state() const {
  torch::serialize::OutputArchive archive;
  archive.write("initialized", torch::tensor(int64_t(initialized_)));
  if (initialized_) {
    archive.write("centroids", centroids_.cpu());
    archive.write("counts", counts_.cpu());
    archive.write("idle", idle_.cpu());
  }
  std::ostringstream out;
  archive.save_to(out);
  return out.str();
}

void SphericalKMeans::load_state(const std::string& blob) {
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(blob.data(), blob.size());
    torch::Tensor flag;
    archive.read("initialized", flag);
    initialized_ = flag.item<int64_t>() != 0;
    if (!initialized_) return;
    torch::Tensor centroids, counts, idle;
    archive.read("centroids", centroids);
    archive.read("counts", counts);
    archive.read("idle", idle);
    if (centroids.dim() != 2 || centroids.size(0) != config_.num_clusters)
      throw Error(ErrorCode::kInvalidState, "SphericalKMeans::load_state",
                  "saved state has " + std::to_string(centroids.size(0)) + " clusters, config has " +
                      std::to_string(config_.num_clusters));
    centroids_ = centroids.to(device_);
    counts_ = counts.to(device_);
    idle_ = idle.to(device_);
  } catch (const c10::Error& e) {
    initialized_ = false;
    throw Error(ErrorCode::kInvalidState, "SphericalKMeans::load_state", e.what_without_backtrace());
  }
}

void SphericalKMeans::save(const std::string& path) const { write_blob_file(path, save_state(), "k-means state"); }

void SphericalKMeans::load(const std::string& path) { load_state(read_blob_file(path, "k-means state")); }

}  // namespace groupmates
