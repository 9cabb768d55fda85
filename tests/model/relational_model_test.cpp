// The relational influence model against float64 references written from ALGORITHM.md section 3.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "groupmates/error.h"
#include "groupmates/engine/influence_model.h"
#include "common/engine_test_util.h"

namespace groupmates {
namespace {

using testing::as_doubles;

// Plain parameters of the head and relation, and a float64 reference of p and the loss.
struct Reference {
  std::vector<double> w;
  double b, tau, alpha;

  double u(const std::vector<double>& h, int64_t row, int64_t d) const {
    double s = b;
    for (int64_t k = 0; k < d; ++k) s += w[k] * h[row * d + k];
    return s;
  }
  double r(const std::vector<double>& h, int64_t i, int64_t j, int64_t d) const {
    double dot = 0;
    for (int64_t k = 0; k < d; ++k) dot += h[i * d + k] * h[j * d + k];
    return alpha * (1.0 - dot / tau);
  }
  // p for groups h [G, L, D] flattened row-major.
  std::vector<double> predict(const std::vector<double>& h, int64_t groups, int64_t length, int64_t d) const {
    std::vector<double> p(groups * length);
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t t = 0; t < length; ++t) {
        const int64_t row = g * length + t;
        if (t == 0) {
          p[row] = u(h, row, d);
          continue;
        }
        double sum = 0;
        for (int64_t j = 0; j < t; ++j) sum += r(h, row, g * length + j, d);
        p[row] = u(h, row, d) * sum / double(t);
      }
    return p;
  }
  double loss(const std::vector<double>& h, const std::vector<double>& y, double centre, double scale, int64_t groups,
              int64_t length, int64_t d) const {
    const std::vector<double> p = predict(h, groups, length, d);
    double s = 0;
    for (size_t i = 0; i < p.size(); ++i) {
      const double e = p[i] - (y[i] - centre) / scale;
      s += e * e;
    }
    return s / double(p.size());
  }
};

struct Fixture {
  std::shared_ptr<RelationalInfluenceModel> model;
  Reference ref;
  int64_t d = 8;
};

Fixture make_fixture(torch::Dtype dtype) {
  Fixture f;
  f.model = testing::small_model(f.d);
  f.model->to(dtype);
  f.model->eval();
  torch::NoGradGuard no_grad;
  f.model->head()->weight.copy_(torch::randn({1, f.d}));
  f.model->head()->bias.copy_(torch::randn({1}));
  f.model->tau_tensor().fill_(0.5 + torch::rand({}).item<double>());
  f.model->alpha_tensor().fill_(0.5 + torch::rand({}).item<double>());
  f.ref.w = as_doubles(f.model->head()->weight);
  f.ref.b = f.model->head()->bias.item<double>();
  f.ref.tau = f.model->tau();
  f.ref.alpha = f.model->alpha();
  return f;
}

TEST(RelationalModel, PredictionMatchesFloat64Reference) {
  torch::manual_seed(1);
  for (int trial = 0; trial < 5; ++trial) {
    Fixture f = make_fixture(torch::kFloat);
    const int64_t groups = 7, length = 1 + trial * 3;
    const torch::Tensor h = testing::random_unit(groups * length, f.d).reshape({groups, length, f.d});
    const std::vector<double> p = as_doubles(f.model->predict_groups(h));
    const std::vector<double> want = f.ref.predict(as_doubles(h), groups, length, f.d);
    ASSERT_EQ(p.size(), want.size());
    for (size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(p[i], want[i], 1e-5 * (1 + std::abs(want[i]))) << i;
  }
}

TEST(RelationalModel, LossMatchesFloat64Reference) {
  torch::manual_seed(2);
  Fixture f = make_fixture(torch::kDouble);
  const int64_t groups = 5, length = 6;
  const torch::Tensor h = testing::random_unit(groups * length, f.d).to(torch::kDouble).reshape({groups, length, f.d});
  const torch::Tensor y = torch::randn({groups, length}, torch::kDouble) * 3 + 1;
  f.model->fit_label_stats(y);
  const double got = f.model->loss(f.model->predict_groups(h), y).item<double>();
  const double want = f.ref.loss(as_doubles(h), as_doubles(y), f.model->label_centre(), f.model->label_scale(), groups,
                                 length, f.d);
  EXPECT_NEAR(got, want, 1e-12 * (1 + want));
}

TEST(RelationalModel, GradientsMatchFiniteDifferences) {
  torch::manual_seed(3);
  Fixture f = make_fixture(torch::kDouble);
  const int64_t groups = 4, length = 5, d = f.d;
  const torch::Tensor h = testing::random_unit(groups * length, d).to(torch::kDouble).reshape({groups, length, d});
  const torch::Tensor y = torch::randn({groups, length}, torch::kDouble);
  f.model->fit_label_stats(y);
  const double centre = f.model->label_centre(), scale = f.model->label_scale();
  const std::vector<double> hv = as_doubles(h), yv = as_doubles(y);

  f.model->zero_grad();
  f.model->loss(f.model->predict_groups(h), y).backward();
  std::vector<double> autograd = as_doubles(f.model->head()->weight.grad());
  autograd.push_back(f.model->head()->bias.grad().item<double>());
  autograd.push_back(f.model->tau_tensor().grad().item<double>());
  autograd.push_back(f.model->alpha_tensor().grad().item<double>());

  // Central differences of the float64 reference loss in (w, b, tau, alpha).
  auto loss_at = [&](Reference ref) { return ref.loss(hv, yv, centre, scale, groups, length, d); };
  const double eps = 1e-6;
  for (size_t k = 0; k < autograd.size(); ++k) {
    Reference plus = f.ref, minus = f.ref;
    auto nudge = [&](Reference& r, double delta) {
      if (k < size_t(d)) r.w[k] += delta;
      else if (k == size_t(d)) r.b += delta;
      else if (k == size_t(d) + 1) r.tau += delta;
      else r.alpha += delta;
    };
    nudge(plus, eps);
    nudge(minus, -eps);
    const double numeric = (loss_at(plus) - loss_at(minus)) / (2 * eps);
    EXPECT_NEAR(autograd[k], numeric, 1e-6 * (1 + std::abs(numeric))) << "parameter " << k;
  }
}

TEST(RelationalModel, LabelStatistics) {
  auto model = testing::small_model();
  const torch::Tensor y = torch::tensor({1.0, 2.0, 3.0, 4.0, 100.0}, torch::kDouble);
  model->fit_label_stats(y, LabelScaling::kMeanStd);
  EXPECT_DOUBLE_EQ(model->label_centre(), 22.0);
  double var = 0;
  for (double v : {1.0, 2.0, 3.0, 4.0, 100.0}) var += (v - 22.0) * (v - 22.0);
  EXPECT_NEAR(model->label_scale(), std::sqrt(var / 5), 1e-12);
  model->fit_label_stats(y, LabelScaling::kMedianMad);
  EXPECT_DOUBLE_EQ(model->label_centre(), 3.0);
  EXPECT_NEAR(model->label_scale(), 1.4826 * 1.0, 1e-12);  // |dev| = 2 1 0 1 97 -> median 1
  const std::vector<double> z = as_doubles(model->standardise(y));
  EXPECT_NEAR(z[0], (1.0 - 3.0) / 1.4826, 1e-12);
}

TEST(RelationalModel, SaveLoadIsBitExact) {
  torch::manual_seed(4);
  auto a = testing::small_model();
  a->fit_label_stats(torch::randn({50}) * 2 + 5, LabelScaling::kMedianMad);
  {
    torch::NoGradGuard no_grad;
    a->tau_tensor().fill_(0.731);
  }
  const std::string path = (std::filesystem::temp_directory_path() / "groupmates_model_test.pt").string();
  a->save_file(path);
  torch::manual_seed(99);
  auto b = testing::small_model();  // different random init
  b->load_file(path);
  std::filesystem::remove(path);
  const auto pa = a->named_parameters(), pb = b->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i].key(), pb[i].key());
    EXPECT_TRUE(torch::equal(pa[i].value(), pb[i].value())) << pa[i].key();
  }
  const auto ba = a->named_buffers(), bb = b->named_buffers();
  for (size_t i = 0; i < ba.size(); ++i) EXPECT_TRUE(torch::equal(ba[i].value(), bb[i].value())) << ba[i].key();
  EXPECT_EQ(a->export_weights(), b->export_weights());
  a->eval();
  b->eval();
  const torch::Tensor tokens = torch::randint(0, 1000, {6, 4, 20}, torch::kLong);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(a->predict_rollouts(tokens), b->predict_rollouts(tokens)));
}

TEST(RelationalModel, ImportRejectsOtherArchitecture) {
  auto a = testing::small_model(8);
  auto b = testing::small_model(16);
  EXPECT_THROW(b->import_weights(a->export_weights()), Error);
  EXPECT_THROW(b->import_weights("not an archive"), Error);
}

}  // namespace
}  // namespace groupmates
