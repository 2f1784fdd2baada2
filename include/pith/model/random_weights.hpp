// SPDX-License-Identifier: MIT
// random_weights: a model with seeded random parameters, for benchmarks and tests that need no file.
#pragma once

#include <cstdint>
#include <random>

#include "pith/model/weights.hpp"

namespace pith {

/// Projections ~ U(-a, a) with a = sqrt(3 / fan_in) (unit variance through each matrix), norm gains 1,
/// and what the configuration's family adds: q/k/v biases ~ U(-0.1, 0.1) (attention_bias), unit q/k
/// norm gains (qk_norm), unit output norm gains (sandwich_norms).
/// The matrices are stored as `type` (rounded from the same float32 draws, so a seed gives the same
/// model in every type up to rounding).
inline model_weights random_weights(const model_config& config, std::uint64_t seed, dtype type = dtype::f32) {
  config.validate();
  model_weights w;
  w.config = config;
  std::mt19937_64 rng(seed);
  auto fill = [&](aligned_buffer<float>& buffer, std::size_t rows, std::size_t columns) {
    buffer.resize(rows * columns);
    const float bound = std::sqrt(3.0f / static_cast<float>(columns));
    std::uniform_real_distribution<float> u(-bound, bound);
    for (float& x : buffer) x = u(rng);
  };
  auto matrix = [&](tensor_view& view, std::size_t rows, std::size_t columns) {
    aligned_buffer<float> buffer;
    fill(buffer, rows, columns);
    view = tensor_view::own(std::move(buffer), dtype::f32, rows, columns);
    if (type != dtype::f32) view = convert_tensor(view, type);
  };
  auto ones = [](aligned_buffer<float>& buffer, std::size_t size) {
    buffer.resize(size);
    for (float& x : buffer) x = 1.0f;
  };
  const std::size_t h = config.hidden_size, f = config.intermediate_size, m = config.mixer_mlp_intermediate_size;
  const bool attention_residuals = config.residual != residual_mode::standard;
  matrix(w.token_embedding, config.vocab_size, h);
  w.layers.resize(config.num_layers);
  for (std::size_t i = 0; i < config.num_layers; ++i) {
    auto& l = w.layers[i];
    const mixer_kind mixer = config.mixer(i);
    ones(l.attn_norm, h);
    if (mixer_has_attention_weights(mixer)) {
      matrix(l.wq, config.q_size(), h);
      matrix(l.wk, config.kv_size(), h);
      matrix(l.wv, config.kv_size(), h);
      matrix(l.wo, h, config.q_size());
      if (config.attention_bias) {
        std::uniform_real_distribution<float> u(-0.1f, 0.1f);
        for (auto* bias : {&l.q_bias, &l.k_bias, &l.v_bias}) {
          bias->resize(bias == &l.q_bias ? config.q_size() : config.kv_size());
          for (float& x : *bias) x = u(rng);
        }
      }
      if (config.qk_norm) {
        ones(l.q_norm, config.head_dim);
        ones(l.k_norm, config.head_dim);
      }
    }
    if (config.sandwich_norms) {
      ones(l.post_attn_norm, h);
      ones(l.post_mlp_norm, h);
    }
    if (mixer == mixer_kind::mlp) {
      matrix(l.mixer_gate, m, h);
      matrix(l.mixer_up, m, h);
      matrix(l.mixer_down, h, m);
    }
    if (mixer == mixer_kind::rnd_emb_qk || mixer == mixer_kind::fixed_seq_qk) {
      l.fixed_length = config.max_position_embeddings;
      fill(l.fixed_q, l.fixed_length, config.q_size());
      fill(l.fixed_k, l.fixed_length, config.kv_size());
    }
    ones(l.mlp_norm, h);
    matrix(l.w_gate, f, h);
    matrix(l.w_up, f, h);
    matrix(l.w_down, h, f);
    if (attention_residuals) {
      fill(l.attn_res_query, 1, h);
      fill(l.mlp_res_query, 1, h);
    }
  }
  ones(w.final_norm, h);
  if (attention_residuals) fill(w.output_res_query, 1, h);
  if (!config.tie_word_embeddings) matrix(w.lm_head_storage, config.vocab_size, h);
  return w;
}

}  // namespace pith
