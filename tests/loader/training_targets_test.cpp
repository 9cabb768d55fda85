// Training targets (labels, loss mask, position ids, document boundaries) against a straightforward
// reference on fresh random rows, a hand-checked example, the config checks, and the loader's
// rows of T + 1 tokens with labels (same stream as sequence_length T + 1 without).
#include "groupmates/training_targets.h"

#include <gtest/gtest.h>

#include <random>

#include "groupmates/error.h"
#include "groupmates/streaming_loader.h"
#include "loader/loader_test_util.h"

using namespace groupmates;

namespace {

struct Targets {
  std::vector<int64_t> labels, position_ids, document_ids;
  std::vector<float> loss_mask;
  std::vector<int32_t> cu_seqlens;
  int64_t max_seqlen = 0;
};

Targets compute(const std::vector<int64_t>& rows, uint32_t B, const LoaderConfig& c) {
  const size_t n = size_t{B} * c.sequence_length;
  Targets t;
  t.labels.assign(n, 7);
  t.loss_mask.assign(n, 7);
  t.position_ids.assign(n, 7);
  t.document_ids.assign(n, 7);
  TargetBuffers out;
  out.labels = t.labels.data();
  out.loss_mask = t.loss_mask.data();
  out.position_ids = t.position_ids.data();
  out.document_ids = t.document_ids.data();
  out.cu_seqlens = &t.cu_seqlens;
  out.max_seqlen = &t.max_seqlen;
  compute_training_targets(rows.data(), B, c.row_length(), c, out);
  return t;
}

// The reference: cut each row into runs (documents ending with EOS, then padding), then read
// every field off the runs.
Targets reference(const std::vector<int64_t>& rows, uint32_t B, const LoaderConfig& c) {
  const uint32_t T = c.sequence_length;
  Targets t;
  t.cu_seqlens.push_back(0);
  for (uint32_t r = 0; r < B; ++r) {
    std::vector<int64_t> x(rows.begin() + r * (T + 1), rows.begin() + (r + 1) * (T + 1));
    // padding: in an aligned row, everything after the first EOS
    std::vector<bool> pad(T + 1, false);
    if (c.packing == PackingMode::kDocumentAligned) {
      bool seen = false;
      for (uint32_t i = 0; i <= T; ++i) {
        pad[i] = seen;
        if (x[i] == c.eos_id) seen = true;
      }
    }
    // runs over the T inputs: [start, end)
    std::vector<std::pair<uint32_t, uint32_t>> runs;
    uint32_t start = 0;
    for (uint32_t i = 1; i < T; ++i) {
      const bool after_eos = !pad[i - 1] && x[i - 1] == c.eos_id;
      const bool pad_starts = pad[i] && !pad[i - 1];
      if (after_eos || pad_starts) {
        runs.push_back({start, i});
        start = i;
      }
    }
    runs.push_back({start, T});
    int64_t doc = 0;
    for (auto [a, b] : runs) {
      t.max_seqlen = std::max<int64_t>(t.max_seqlen, b - a);
      for (uint32_t i = a; i < b; ++i) {
        t.position_ids.push_back(i - a);
        t.document_ids.push_back(pad[i] ? -1 : doc);
      }
      if (!pad[a]) ++doc;
      if (b < T) t.cu_seqlens.push_back(static_cast<int32_t>(r * T + b));
    }
    t.cu_seqlens.push_back(static_cast<int32_t>((r + 1) * T));
    for (uint32_t i = 0; i < T; ++i) {
      bool target = !pad[i + 1];
      if (c.mask_across_documents && x[i] == c.eos_id) target = false;
      t.labels.push_back(target ? x[i + 1] : kIgnoreIndex);
      t.loss_mask.push_back(target ? 1.0f : 0.0f);
    }
  }
  return t;
}

void expect_equal(const Targets& got, const Targets& want, const std::string& trace) {
  EXPECT_EQ(got.labels, want.labels) << trace;
  EXPECT_EQ(got.loss_mask, want.loss_mask) << trace;
  EXPECT_EQ(got.position_ids, want.position_ids) << trace;
  EXPECT_EQ(got.document_ids, want.document_ids) << trace;
  EXPECT_EQ(got.cu_seqlens, want.cu_seqlens) << trace;
  EXPECT_EQ(got.max_seqlen, want.max_seqlen) << trace;
}

LoaderConfig labelled(uint32_t T, int64_t eos, PackingMode packing, bool mask) {
  LoaderConfig c;
  c.sources.resize(1);
  c.sources[0].paths = {"unused"};
  c.sequence_length = T;
  c.eos_id = eos;
  c.packing = packing;
  c.labels = c.position_ids = c.document_boundaries = true;
  c.mask_across_documents = mask;
  return c;
}

}  // namespace

TEST(TrainingTargets, EqualTheReferenceOnRandomRows) {
  const uint64_t seed = gmtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 300; ++trial) {
    const uint32_t T = 1 + rng() % 40, B = 1 + rng() % 5;
    const int64_t eos = rng() % 4;  // ids 0..5: EOS (and pad_id 0 on padding) are frequent
    const auto packing = rng() % 2 ? PackingMode::kDocumentAligned : PackingMode::kPacked;
    LoaderConfig c = labelled(T, eos, packing, rng() % 2);
    c.validate();
    std::vector<int64_t> rows(size_t{B} * (T + 1));
    for (auto& v : rows) v = static_cast<int64_t>(rng() % 6);
    expect_equal(compute(rows, B, c), reference(rows, B, c), "trial " + std::to_string(trial));
  }
}

TEST(TrainingTargets, HandCheckedRows) {
  // Aligned row: "5 6 EOS(2) pad pad" with pad_id 5, a real token: the EOS is a target, padding is not.
  LoaderConfig c = labelled(4, 2, PackingMode::kDocumentAligned, false);
  Targets t = compute({5, 6, 2, 5, 5}, 1, c);
  EXPECT_EQ(t.labels, (std::vector<int64_t>{6, 2, -100, -100}));
  EXPECT_EQ(t.loss_mask, (std::vector<float>{1, 1, 0, 0}));
  EXPECT_EQ(t.position_ids, (std::vector<int64_t>{0, 1, 2, 0}));
  EXPECT_EQ(t.document_ids, (std::vector<int64_t>{0, 0, 0, -1}));
  EXPECT_EQ(t.cu_seqlens, (std::vector<int32_t>{0, 3, 4}));
  EXPECT_EQ(t.max_seqlen, 3);
  // Packed rows "7 EOS 8 9 EOS | 1 1 1 1 1": the label after an EOS is masked only when asked.
  c = labelled(4, 2, PackingMode::kPacked, true);
  t = compute({7, 2, 8, 9, 2, 1, 1, 1, 1, 1}, 2, c);
  EXPECT_EQ(t.labels, (std::vector<int64_t>{2, -100, 9, 2, 1, 1, 1, 1}));
  EXPECT_EQ(t.position_ids, (std::vector<int64_t>{0, 1, 0, 1, 0, 1, 2, 3}));
  EXPECT_EQ(t.document_ids, (std::vector<int64_t>{0, 0, 1, 1, 0, 0, 0, 0}));
  EXPECT_EQ(t.cu_seqlens, (std::vector<int32_t>{0, 2, 4, 8}));
  c.mask_across_documents = false;
  EXPECT_EQ(compute({7, 2, 8, 9, 2, 1, 1, 1, 1, 1}, 2, c).labels, (std::vector<int64_t>{2, 8, 9, 2, 1, 1, 1, 1}));
}

TEST(TrainingTargets, ConfigChecksNameTheFieldAndTheFix) {
  LoaderConfig c = labelled(8, -1, PackingMode::kPacked, false);
  EXPECT_TRUE(rdtest::contains(rdtest::expect_error([&] { c.validate(); }).what(), "LoaderConfig.position_ids"));
  c.position_ids = c.document_boundaries = false;
  c.validate();  // plain labels need no EOS in packed rows
  c.packing = PackingMode::kDocumentAligned;
  const std::string aligned = rdtest::expect_error([&] { c.validate(); }).what();
  EXPECT_TRUE(rdtest::contains(aligned, "LoaderConfig.labels") && rdtest::contains(aligned, "set eos_id")) << aligned;
  c = labelled(8, 3, PackingMode::kPacked, true);
  c.labels = false;
  const std::string off = rdtest::expect_error([&] { c.validate(); }).what();
  EXPECT_TRUE(rdtest::contains(off, "set labels = true")) << off;
  std::vector<int64_t> row(9, 1), out(8);
  std::vector<float> mask(8);
  TargetBuffers b;
  b.labels = out.data();
  b.loss_mask = mask.data();
  EXPECT_TRUE(rdtest::contains(rdtest::expect_error([&] { compute_training_targets(row.data(), 1, 9, c, b); }).what(),
                               "LoaderConfig.labels"));
}

TEST(TrainingTargets, LabelledRowsAreTheStreamOfRowsOneTokenLonger) {
  const uint64_t seed = gmtest::fresh_seed();
  SCOPED_TRACE(rdtest::seed_trace(seed));
  std::mt19937_64 rng(seed);
  gmtest::TempDir dir;
  std::vector<std::vector<uint16_t>> docs;
  for (int i = 0; i < 40; ++i) {
    std::vector<uint16_t> d(1 + rng() % 30);
    for (auto& t : d) t = static_cast<uint16_t>(1 + rng() % 50);  // pad_id 0 never in the data
    docs.push_back(std::move(d));
  }
  gmtest::write_megatron(dir.file("mega"), docs);
  for (PackingMode packing : {PackingMode::kPacked, PackingMode::kDocumentAligned}) {
    LoaderConfig c;
    c.sources.resize(1);
    c.sources[0].format = SourceFormat::kMegatron;
    c.sources[0].paths = {dir.file("mega")};
    c.sequence_length = 12;
    c.batch_size = 3;
    c.eos_id = 60;
    c.packing = packing;
    c.seed = seed;
    LoaderConfig plain = c;
    plain.sequence_length = 13;
    c.labels = true;
    StreamingLoader with_labels(c), longer(plain);
    EXPECT_EQ(with_labels.config_fingerprint(), longer.config_fingerprint());
    const auto got = gmtest::drain(with_labels), want = gmtest::drain(longer);
    ASSERT_FALSE(want.rows.empty());
    EXPECT_EQ(got.rows, want.rows);
    // Every target is the next real token; no padding (id 0) is ever a target or a counted input.
    std::vector<int64_t> flat;
    for (const auto& r : got.rows) flat.insert(flat.end(), r.begin(), r.end());
    Targets t = compute(flat, static_cast<uint32_t>(got.rows.size()), c);
    for (size_t r = 0; r < got.rows.size(); ++r)
      for (uint32_t i = 0; i < 12; ++i) {
        const size_t k = r * 12 + i;
        if (t.loss_mask[k] == 1.0f) {
          EXPECT_EQ(t.labels[k], got.rows[r][i + 1]);
          EXPECT_NE(got.rows[r][i + 1], 0);
          EXPECT_NE(got.rows[r][i], 0);
        } else {
          EXPECT_EQ(t.labels[k], kIgnoreIndex);
          EXPECT_TRUE(got.rows[r][i + 1] == 0 || got.rows[r][i] == 0 || got.rows[r][i] == 60) << "row " << r << " pos " << i;
        }
      }
  }
}
