// SPDX-License-Identifier: MIT
// random_weights: a model with seeded random parameters, for benchmarks and tests that need no file.
#pragma once

#include <cstdint>
#include <random>

#include "pith/model/weights.hpp"

namespace pith {

/// Projections ~ U(-a, a) with a = sqrt(3 / fan_in) (unit variance through each matrix), norm gains 1.
inline model_weights random_weights(const model_config& config, std::uint64_t seed) {
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
  auto ones = [](aligned_buffer<float>& buffer, std::size_t size) {
    buffer.resize(size);
    for (float& x : buffer) x = 1.0f;
  };
  const std::size_t h = config.hidden_size, f = config.intermediate_size;
  fill(w.token_embedding, config.vocab_size, h);
  w.layers.resize(config.num_layers);
  for (auto& l : w.layers) {
    ones(l.attn_norm, h);
    fill(l.wq, config.q_size(), h);
    fill(l.wk, config.kv_size(), h);
    fill(l.wv, config.kv_size(), h);
    fill(l.wo, h, config.q_size());
    ones(l.mlp_norm, h);
    fill(l.w_gate, f, h);
    fill(l.w_up, f, h);
    fill(l.w_down, h, f);
  }
  ones(w.final_norm, h);
  if (!config.tie_word_embeddings) fill(w.lm_head_storage, config.vocab_size, h);
  return w;
}

}  // namespace pith
