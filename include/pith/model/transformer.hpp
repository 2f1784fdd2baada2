// SPDX-License-Identifier: MIT
// session: the state of one generation over shared model_weights, and the forward pass of a chunk.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "pith/cache/kv_cache.hpp"
#include "pith/core/aligned_buffer.hpp"
#include "pith/core/error.hpp"
#include "pith/core/parallel.hpp"
#include "pith/kernels/activations.hpp"
#include "pith/kernels/matmul.hpp"
#include "pith/kernels/rms_norm.hpp"
#include "pith/kernels/rope.hpp"
#include "pith/kernels/softmax_importance.hpp"
#include "pith/model/weights.hpp"

namespace pith {

struct session_options {
  std::size_t max_context = 0;  // KV rows per head; 0: the model's max_position_embeddings
  std::size_t max_chunk = 512;  // most tokens one forward call takes
};

/// Everything that changes while a model reads and writes: the KV cache and the activation
/// buffers, allocated once. The weights are only read, so sessions on several threads may share them.
class session {
 public:
  explicit session(const model_weights& weights, session_options options = {})
      : w_(weights), c_(weights.config), options_(options) {
    if (options_.max_context == 0) options_.max_context = c_.max_position_embeddings;
    if (options_.max_chunk == 0) PITH_THROW(argument_error, "session: max_chunk must be at least 1");
    const std::size_t t = options_.max_chunk;
    cache_ = kv_cache(c_.num_layers, c_.num_kv_heads, c_.head_dim, options_.max_context);
    x_.resize(t * c_.hidden_size);
    normed_.resize(t * c_.hidden_size);
    q_.resize(t * c_.q_size());
    k_.resize(t * c_.kv_size());
    v_.resize(t * c_.kv_size());
    attn_.resize(t * c_.q_size());
    gate_.resize(t * c_.intermediate_size);
    up_.resize(t * c_.intermediate_size);
    inv_freq_.resize(c_.head_dim / 2);
    cos_.resize(t * c_.head_dim / 2);
    sin_.resize(t * c_.head_dim / 2);
    kernels::rope_inverse_frequencies(c_.rope_theta, c_.head_dim, inv_freq_.data());
    parts_ = std::max<std::size_t>(1, std::min(c_.num_heads, num_threads()));
    scratch_size_ = kernels::softmax_importance_scratch_size(t, options_.max_context, c_.head_dim);
    scratch_.resize(parts_ * scratch_size_);
  }

  const model_config& config() const noexcept { return c_; }
  const model_weights& weights() const noexcept { return w_; }
  kv_cache& cache() noexcept { return cache_; }
  const kv_cache& cache() const noexcept { return cache_; }
  /// Position the next token will take.
  std::size_t position() const noexcept { return position_; }
  void reset() noexcept {
    cache_.clear();
    position_ = 0;
  }

  /// Bytes of this session's own state (KV cache, activations, scratch).
  std::size_t bytes_allocated() const noexcept {
    std::size_t floats = x_.size() + normed_.size() + q_.size() + k_.size() + v_.size() + attn_.size() + gate_.size() +
                         up_.size() + scratch_.size() + cos_.size() + sin_.size();
    return cache_.bytes_allocated() + floats * sizeof(float);
  }

  /// Runs `tokens` at the next positions, appending their keys and values to the cache. Writes the
  /// logits of the last token to logits[0, vocab) or, with all_logits, of every token to
  /// logits[t * vocab, (t + 1) * vocab). Longer inputs than max_chunk are split into chunks.
  void forward(std::span<const std::int32_t> tokens, float* logits, bool all_logits = false) {
    for (std::size_t start = 0; start < tokens.size(); start += options_.max_chunk) {
      const auto chunk = tokens.subspan(start, std::min(options_.max_chunk, tokens.size() - start));
      const bool last_chunk = start + chunk.size() == tokens.size();
      float* out = logits == nullptr ? nullptr : all_logits ? logits + start * c_.vocab_size : logits;
      forward_chunk(chunk, (all_logits || last_chunk) ? out : nullptr, all_logits);
    }
  }

 private:
  void check_chunk(std::span<const std::int32_t> tokens) const {
    if (tokens.empty()) PITH_THROW(argument_error, "session::forward: no tokens");
    for (const std::int32_t token : tokens)
      if (token < 0 || static_cast<std::size_t>(token) >= c_.vocab_size)
        PITH_THROW(argument_error, "session::forward: token id " + std::to_string(token) + " is outside the vocabulary [0, " +
                                       std::to_string(c_.vocab_size) + ")");
    for (std::size_t l = 0; l < c_.num_layers; ++l)
      if (cache_.size(l, 0) + tokens.size() > cache_.capacity())
        PITH_THROW(argument_error, "session::forward: the KV cache holds " + std::to_string(cache_.capacity()) +
                                       " rows per head and " + std::to_string(cache_.size(l, 0)) +
                                       " are in use; " + std::to_string(tokens.size()) + " more do not fit");
  }

  void forward_chunk(std::span<const std::int32_t> tokens, float* logits, bool all_logits) {
    check_chunk(tokens);
    const std::size_t t = tokens.size(), hidden = c_.hidden_size, half = c_.head_dim / 2;
    for (std::size_t i = 0; i < t; ++i) {
      std::copy_n(w_.token_embedding.data() + static_cast<std::size_t>(tokens[i]) * hidden, hidden, x_.data() + i * hidden);
      kernels::rope_angles(static_cast<double>(position_ + i), inv_freq_.data(), c_.head_dim, cos_.data() + i * half,
                           sin_.data() + i * half);
    }
    for (std::size_t l = 0; l < c_.num_layers; ++l) layer(l, t);
    position_ += t;
    if (logits == nullptr) return;
    const std::size_t first = all_logits ? 0 : t - 1, rows = t - first;
    kernels::rms_norm(x_.data() + first * hidden, hidden, w_.final_norm.data(), rows, hidden, c_.rms_norm_eps,
                      normed_.data(), hidden);
    kernels::matmul_transposed(normed_.data(), rows, hidden, hidden, w_.lm_head(), c_.vocab_size, logits, c_.vocab_size);
  }

  // One decoder layer over the chunk held in x_ (t tokens).
  void layer(std::size_t l, std::size_t t) {
    const layer_weights& lw = w_.layers[l];
    const std::size_t hidden = c_.hidden_size, qs = c_.q_size(), kvs = c_.kv_size(), f = c_.intermediate_size;
    // Attention.
    kernels::rms_norm(x_.data(), hidden, lw.attn_norm.data(), t, hidden, c_.rms_norm_eps, normed_.data(), hidden);
    kernels::matmul_transposed(normed_.data(), t, hidden, hidden, lw.wq.data(), qs, q_.data(), qs);
    kernels::matmul_transposed(normed_.data(), t, hidden, hidden, lw.wk.data(), kvs, k_.data(), kvs);
    kernels::matmul_transposed(normed_.data(), t, hidden, hidden, lw.wv.data(), kvs, v_.data(), kvs);
    const std::size_t half = c_.head_dim / 2;
    for (std::size_t i = 0; i < t; ++i) {
      kernels::apply_rope(c_.rope, q_.data() + i * qs, c_.num_heads, c_.head_dim, c_.head_dim, cos_.data() + i * half,
                          sin_.data() + i * half);
      kernels::apply_rope(c_.rope, k_.data() + i * kvs, c_.num_kv_heads, c_.head_dim, c_.head_dim, cos_.data() + i * half,
                          sin_.data() + i * half);
    }
    const std::size_t before = cache_.size(l, 0);
    for (std::size_t h = 0; h < c_.num_kv_heads; ++h) {
      float* keys = cache_.keys(l, h) + before * c_.head_dim;
      float* values = cache_.values(l, h) + before * c_.head_dim;
      std::int64_t* positions = cache_.positions(l, h) + before;
      for (std::size_t i = 0; i < t; ++i) {
        std::copy_n(k_.data() + i * kvs + h * c_.head_dim, c_.head_dim, keys + i * c_.head_dim);
        std::copy_n(v_.data() + i * kvs + h * c_.head_dim, c_.head_dim, values + i * c_.head_dim);
        positions[i] = static_cast<std::int64_t>(position_ + i);
      }
      cache_.set_size(l, h, before + t);
    }
    const std::size_t group = c_.num_heads / c_.num_kv_heads;
    const float scale = 1.0f / std::sqrt(static_cast<float>(c_.head_dim));
    parallel_for(parts_, [&](std::size_t first_part, std::size_t last_part) {
      for (std::size_t part = first_part; part < last_part; ++part) {
        float* scratch = scratch_.data() + part * scratch_size_;
        for (std::size_t h = part * c_.num_heads / parts_; h < (part + 1) * c_.num_heads / parts_; ++h) {
          const std::size_t kv_head = h / group;
          kernels::softmax_importance_args a;
          a.queries = q_.data() + h * c_.head_dim;
          a.query_stride = qs;
          a.keys = cache_.keys(l, kv_head);
          a.key_stride = c_.head_dim;
          a.values = cache_.values(l, kv_head);
          a.value_stride = c_.head_dim;
          a.m = t;
          a.n = before + t;
          a.d = c_.head_dim;
          a.scale = scale;
          a.causal = true;
          a.causal_offset = before;
          a.output = attn_.data() + h * c_.head_dim;
          a.output_stride = qs;
          kernels::softmax_importance(a, scratch);
        }
      }
    });
    kernels::matmul_transposed(attn_.data(), t, qs, qs, lw.wo.data(), hidden, x_.data(), hidden, true);
    // MLP.
    kernels::rms_norm(x_.data(), hidden, lw.mlp_norm.data(), t, hidden, c_.rms_norm_eps, normed_.data(), hidden);
    kernels::matmul_transposed(normed_.data(), t, hidden, hidden, lw.w_gate.data(), f, gate_.data(), f);
    kernels::matmul_transposed(normed_.data(), t, hidden, hidden, lw.w_up.data(), f, up_.data(), f);
    kernels::silu_mul(gate_.data(), up_.data(), t * f);
    kernels::matmul_transposed(gate_.data(), t, f, f, lw.w_down.data(), hidden, x_.data(), hidden, true);
  }

  const model_weights& w_;
  const model_config& c_;
  session_options options_;
  kv_cache cache_;
  std::size_t position_ = 0;
  std::size_t parts_ = 1;
  std::size_t scratch_size_ = 0;
  aligned_buffer<float> x_;       // [max_chunk, hidden] residual stream
  aligned_buffer<float> normed_;  // [max_chunk, hidden]
  aligned_buffer<float> q_;       // [max_chunk, heads * head_dim]
  aligned_buffer<float> k_;       // [max_chunk, kv_heads * head_dim]
  aligned_buffer<float> v_;       // [max_chunk, kv_heads * head_dim]
  aligned_buffer<float> attn_;    // [max_chunk, heads * head_dim]
  aligned_buffer<float> gate_;    // [max_chunk, intermediate]
  aligned_buffer<float> up_;      // [max_chunk, intermediate]
  aligned_buffer<float> inv_freq_;  // [head_dim / 2]
  aligned_buffer<float> cos_;     // [max_chunk, head_dim / 2]
  aligned_buffer<float> sin_;     // [max_chunk, head_dim / 2]
  aligned_buffer<float> scratch_;  // [parts, softmax_importance_scratch_size]
};

}  // namespace pith
