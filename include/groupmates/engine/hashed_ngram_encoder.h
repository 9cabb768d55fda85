// groupmates/hashed_ngram_encoder.h: the default encoder, trainable from scratch, no download.
//
// Token uni/bi/tri-grams are hashed (XXH3 of the n packed int64 ids, seeded by n and the encoder
// seed) into B buckets; a sequence's bag of buckets is averaged through an embedding table
// (EmbeddingBag, mode mean), then a small MLP (Linear, ReLU, Linear) and an L2 normalisation.
// With an n-gram window, an n-gram counts only if all its tokens are unmasked.
#pragma once

#include <cstdint>

#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include "groupmates/engine/encoder.h"

namespace groupmates {

/// Sizes of a HashedNgramEncoder.
struct HashedNgramEncoderConfig {
  int64_t num_buckets = 1 << 16;  ///< B: hash buckets (rows of the embedding table)
  int64_t embed_dim = 64;         ///< width of the bag embedding
  int64_t hidden_dim = 128;       ///< width of the MLP's hidden layer
  int64_t out_dim = 64;           ///< D: width of the returned embedding
  int max_ngram = 3;              ///< n-grams of 1..max_ngram tokens (1..3)
  uint64_t seed = 0;              ///< hash seed (changes every bucket)
  int64_t pad_id = -1;            ///< encode() without a mask masks the tokens equal to it (-1 = none)
};

/// Flat EmbeddingBag input: bucket ids of every row's n-grams, and where each row starts.
struct NgramBags {
  torch::Tensor indices;  ///< int64 [total n-grams]
  torch::Tensor offsets;  ///< int64 [W]: start of row w in indices
};

/// Hashed n-gram bag embedding + MLP + L2 normalisation (the default encoder).
class HashedNgramEncoder : public Encoder {
 public:
  /// Builds the table and MLP with LibTorch's default initialisation (seed it with torch::manual_seed).
  /// `table`: an existing float [num_buckets, embed_dim] table whose storage this encoder's table then
  /// shares (not drawn: several frozen models hold one copy; see InfluenceModelFactory); undefined: a new one.
  explicit HashedNgramEncoder(const HashedNgramEncoderConfig& config = {}, const torch::Tensor& table = {});

  /// [W, T] int64 tokens (host memory preferred: hashing runs on the CPU) -> [W, D] unit rows.
  /// Without a mask and with config.pad_id >= 0, the mask is `tokens != pad_id`.
  torch::Tensor encode(const torch::Tensor& tokens, const torch::Tensor& mask = {}) override;
  int64_t dim() const override { return config_.out_dim; }
  /// "hashed_ngram(buckets=B,embed=E,hidden=H,dim=D,max_ngram=n,seed=s)".
  std::string identity() const override { return identity_of(config_); }
  /// identity() of an encoder built from `config` (without building one).
  static std::string identity_of(const HashedNgramEncoderConfig& config);
  /// tokens x max_ngram x embed_dim (the bag sum; hashing not counted) + 2 x the MLP's multiply-adds.
  double flops_per_row(int64_t tokens) const override {
    const auto& c = config_;
    return double(tokens) * c.max_ngram * c.embed_dim + 2.0 * (c.embed_dim * c.hidden_dim + c.hidden_dim * c.out_dim);
  }

  /// Bucket of one n-gram starting at `ngram` (n consecutive ids), in [0, B).
  int64_t bucket(const int64_t* ngram, int n) const;
  /// Bucket ids and row offsets of every n-gram of every row (CPU, parallel over rows).
  NgramBags hash(const torch::Tensor& tokens, const torch::Tensor& mask = {}) const;
  /// Mean bag embedding [W, embed_dim]: a fused hash+sum kernel when no gradient is needed on
  /// a CPU table, else hash() + EmbeddingBag (differentiable, any device). The two agree within
  /// float rounding: the fused kernel adds a row's n-grams grouped by table chunk (bucket /
  /// sum_chunk_rows(embed_dim), ascending), in position order within a chunk, so its bits depend
  /// on the tokens, mask and weights only (not on threads, batch or CPU).
  torch::Tensor bag_embed(const torch::Tensor& tokens, const torch::Tensor& mask = {});
  /// Table rows per chunk of the fused kernel: the largest power of two whose rows fit in 512 KiB.
  static int64_t sum_chunk_rows(int64_t embed_dim);
  /// MLP + L2 normalisation of bag embeddings [W, embed_dim] -> [W, D].
  torch::Tensor project(const torch::Tensor& bags);

  const HashedNgramEncoderConfig& config() const { return config_; }

 private:
  torch::Tensor fused_bag_mean(const torch::Tensor& tokens, const torch::Tensor& mask) const;

  HashedNgramEncoderConfig config_;
  torch::nn::EmbeddingBag table_{nullptr};
  torch::nn::Linear fc1_{nullptr};
  torch::nn::Linear fc2_{nullptr};
};

}  // namespace groupmates
