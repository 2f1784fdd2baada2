// SPDX-License-Identifier: MIT
// A small inference engine built from pith's public blocks over data it owns: its own weight
// arrays, its own KV cache, its own loop over chunks, and CItruS eviction of its own cache
// (docs/embedding.md walks through it). It runs Llama layers with two-phase block attention
// residuals, the layout of the shipped toy models; its logits equal pith::session's bit for bit.
//
// The headers below include no model, session, file reader or JSON.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

#include <pith/cache/compaction.hpp>       // kv_store
#include <pith/cache/eviction_blocks.hpp>  // mean_over_heads
#include <pith/core/aligned_buffer.hpp>
#include <pith/core/error.hpp>
#include <pith/core/tensor.hpp>
#include <pith/kernels/activations.hpp>
#include <pith/kernels/depth_mix.hpp>
#include <pith/kernels/rms_norm.hpp>
#include <pith/kernels/rope.hpp>
#include <pith/kernels/softmax_importance.hpp>
#include <pith/kernels/typed_matmul.hpp>

namespace embed {

namespace k = pith::kernels;
using buffer = pith::aligned_buffer<float>;  // 64-byte aligned floats

struct config {
  std::size_t hidden = 0, intermediate = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0, vocab = 0;
  std::size_t block_size = 0;  // attention-residual block, in decoder layers
  float eps = 1e-5f, rope_theta = 10000.0f;
};

struct layer_weights {
  buffer attn_norm;              // [hidden]
  buffer wq, wk, wv;             // [heads * head_dim, hidden], [kv_heads * head_dim, hidden] (twice)
  buffer wo;                     // [hidden, heads * head_dim]
  buffer mlp_norm;               // [hidden]
  buffer gate, up;               // [intermediate, hidden]
  buffer down;                   // [hidden, intermediate]
  buffer attn_query, mlp_query;  // [hidden]: folded pseudo-queries of the two depth-mix sites
};

struct weights {
  config c;
  buffer embedding;  // [vocab, hidden]
  std::vector<layer_weights> layers;
  buffer final_norm;    // [hidden]
  buffer lm_head;       // [vocab, hidden]
  buffer output_query;  // [hidden]: the final depth-mix site
};

/// The engine's KV cache: per layer and KV head, `capacity` rows of keys and values ([capacity,
/// head_dim], one matrix per head, what the attention kernel reads) and each slot's RoPE position.
/// It models pith::kv_store (cache/compaction.hpp), so pith's compaction and re-rotation work on it.
class kv_cache {
 public:
  kv_cache(std::size_t layers, std::size_t kv_heads, std::size_t head_dim, std::size_t capacity)
      : kv_heads_(kv_heads), head_dim_(head_dim), capacity_(capacity), keys_(layers), values_(layers),
        positions_(layers, std::vector<std::int64_t>(kv_heads * capacity)), sizes_(layers * kv_heads, 0) {
    for (std::size_t l = 0; l < layers; ++l) {
      keys_[l].resize(kv_heads * capacity * head_dim);
      values_[l].resize(keys_[l].size());
    }
  }
  std::size_t layers() const { return keys_.size(); }
  std::size_t kv_heads() const { return kv_heads_; }
  std::size_t head_dim() const { return head_dim_; }
  std::size_t capacity() const { return capacity_; }
  std::size_t size(std::size_t l, std::size_t h) const { return sizes_[l * kv_heads_ + h]; }
  void set_size(std::size_t l, std::size_t h, std::size_t rows) { sizes_[l * kv_heads_ + h] = rows; }
  float* keys(std::size_t l, std::size_t h) { return keys_[l].data() + h * capacity_ * head_dim_; }
  float* values(std::size_t l, std::size_t h) { return values_[l].data() + h * capacity_ * head_dim_; }
  std::int64_t* positions(std::size_t l, std::size_t h) { return positions_[l].data() + h * capacity_; }

 private:
  std::size_t kv_heads_, head_dim_, capacity_;
  std::vector<buffer> keys_, values_;                 // [layers][kv_heads * capacity * head_dim]
  std::vector<std::vector<std::int64_t>> positions_;  // [layers][kv_heads * capacity]
  std::vector<std::size_t> sizes_;                    // [layers * kv_heads] rows in use
};
static_assert(pith::kv_store<kv_cache>);

/// y [rows, out] = x [rows, in] · w^T for the engine's float array w [out, in], through pith's
/// typed matrix product on a borrowed view (the view owns nothing; w outlives the call).
inline void linear(const float* x, std::size_t rows, std::size_t in, const buffer& w, std::size_t out, float* y) {
  k::matmul_transposed(x, rows, in, pith::tensor_view::borrow(w.data(), out, in), y, out);
}

/// Which attention the forward pass reports as scores ([layers, old slots]: the mean over query
/// heads and scoring queries of each old slot's softmax probability).
enum class scoring { none, side_queries, all_queries };

class engine {
 public:
  engine(const weights& w, std::size_t capacity, std::size_t max_chunk)
      : w_(w), c_(w.c), cache_(c_.layers, c_.kv_heads, c_.head_dim, capacity), max_chunk_(max_chunk) {
    const std::size_t d = c_.hidden, t = max_chunk, half = c_.head_dim / 2;
    const auto size = [](std::initializer_list<buffer*> buffers, std::size_t floats) {
      for (buffer* b : buffers) b->resize(floats);
    };
    size({&x_, &normed_, &delta_, &mixed_, &prefix_}, t * d);
    size({&q_, &attn_}, t * c_.heads * c_.head_dim);
    size({&k_, &v_}, t * c_.kv_heads * c_.head_dim);
    size({&gate_, &up_}, t * c_.intermediate);
    size({&cos_, &sin_}, t * half);
    size({&inv_freq_}, half);
    k::rope_inverse_frequencies(c_.rope_theta, c_.head_dim, inv_freq_.data());
    size({&scratch_}, k::softmax_importance_scratch_size(t, capacity, c_.head_dim));
    size({&importance_}, c_.heads * capacity);
    // Block attention residuals: a snapshot per block, and the phase-one state of a block's sites.
    const std::size_t blocks = (c_.layers + c_.block_size - 1) / c_.block_size;
    const std::size_t sites = 2 * std::min(c_.block_size, c_.layers) + 1;
    size({&blocks_}, blocks * t * d);
    size({&block_rstd_}, blocks * t);
    size({&site_out_}, sites * t * d);
    size({&site_max_, &site_sum_}, sites * t);
  }

  kv_cache& cache() { return cache_; }
  std::size_t position() const { return position_; }
  void set_position(std::size_t p) { position_ = p; }

  /// Runs `tokens` at positions position().. and appends their keys and values; logits (if not
  /// null, [vocab]) of the last token. With `side` tokens (an instruction) in the same pass: they
  /// see the cache as it was before `tokens` plus themselves, at the positions `tokens` start from,
  /// and leave nothing behind; `scores` ([layers, old slots]) then gets their attention.
  void forward(std::span<const std::int32_t> tokens, float* logits, std::span<const std::int32_t> side = {},
               float* scores = nullptr) {
    all_.assign(tokens.begin(), tokens.end());
    all_.insert(all_.end(), side.begin(), side.end());
    run(all_, side.size(), scores != nullptr ? scoring::side_queries : scoring::none, scores);
    for (std::size_t l = 0; l < c_.layers; ++l)  // the side rows go
      for (std::size_t g = 0; g < c_.kv_heads; ++g) cache_.set_size(l, g, cache_.size(l, g) - side.size());
    position_ -= side.size();
    if (logits != nullptr) final_logits(tokens.size() - 1, logits);
  }

  /// The attention of `tokens` (every query, every head) over the current slots into `scores`
  /// ([layers, slots]), leaving the cache and the position as they were: an instruction's scores.
  void score(std::span<const std::int32_t> tokens, float* scores) {
    const std::size_t rows = cache_.size(0, 0), position = position_;
    all_.assign(tokens.begin(), tokens.end());
    run(all_, 0, scoring::all_queries, scores);
    for (std::size_t l = 0; l < c_.layers; ++l)
      for (std::size_t g = 0; g < c_.kv_heads; ++g) cache_.set_size(l, g, rows);
    position_ = position;
  }

 private:
  // One pass over `all` (the chunk, then `side` side tokens).
  void run(std::span<const std::int32_t> all, std::size_t side, scoring mode, float* scores) {
    const std::size_t t = all.size(), d = c_.hidden, half = c_.head_dim / 2;
    if (t == 0 || t > max_chunk_) throw pith::argument_error("engine: a pass takes 1 to max_chunk tokens");
    for (std::size_t l = 0; l < c_.layers; ++l)
      if (cache_.size(l, 0) + t > cache_.capacity()) throw pith::argument_error("engine: the KV cache is full");
    const pith::tensor_view embedding = pith::tensor_view::borrow(w_.embedding.data(), c_.vocab, d);
    for (std::size_t i = 0; i < t; ++i) {
      if (all[i] < 0 || static_cast<std::size_t>(all[i]) >= c_.vocab)
        throw pith::argument_error("engine: token id " + std::to_string(all[i]) + " is outside the vocabulary");
      k::embedding_row(embedding, static_cast<std::size_t>(all[i]), x_.data() + i * d);
      // Side tokens restart at the chunk's first position.
      const std::size_t offset = i < t - side ? i : i - (t - side);
      k::rope_angles(static_cast<double>(position_ + offset), inv_freq_.data(), c_.head_dim, cos_.data() + i * half,
                     sin_.data() + i * half);
    }
    t_ = t;
    std::copy_n(x_.data(), t * d, prefix_.data());  // the running partial sum starts as the embedding
    has_prefix_ = true;
    banked_ = 0;
    for (std::size_t l = 0; l < c_.layers; ++l) layer(l, side, mode, scores);
    position_ += t;
  }

  // One decoder layer: depth mix → norm → attention → depth mix → norm → SwiGLU MLP.
  void layer(std::size_t l, std::size_t side, scoring mode, float* scores) {
    const layer_weights& lw = w_.layers[l];
    const std::size_t t = t_, d = c_.hidden, f = c_.intermediate;
    k::rms_norm(attn_input(l), d, lw.attn_norm.data(), t, d, c_.eps, normed_.data(), d);
    attention(l, side, mode, scores);
    add_to_prefix(delta_.data());
    k::rms_norm(site_input(2 * (l % c_.block_size) + 1), d, lw.mlp_norm.data(), t, d, c_.eps, normed_.data(), d);
    linear(normed_.data(), t, d, lw.gate, f, gate_.data());
    linear(normed_.data(), t, d, lw.up, f, up_.data());
    k::silu_mul(gate_.data(), up_.data(), t * f);
    linear(gate_.data(), t, f, lw.down, d, delta_.data());
    add_to_prefix(delta_.data());
  }

  // Grouped-query attention over the cache with the fused kernel; writes wo · heads to delta_.
  void attention(std::size_t l, std::size_t side, scoring mode, float* scores) {
    const layer_weights& lw = w_.layers[l];
    const std::size_t t_all = t_, t = t_all - side, d = c_.hidden, hd = c_.head_dim, half = hd / 2;
    const std::size_t qs = c_.heads * hd, kvs = c_.kv_heads * hd, group = c_.heads / c_.kv_heads;
    linear(normed_.data(), t_all, d, lw.wq, qs, q_.data());
    linear(normed_.data(), t_all, d, lw.wk, kvs, k_.data());
    linear(normed_.data(), t_all, d, lw.wv, kvs, v_.data());
    for (std::size_t i = 0; i < t_all; ++i) {
      k::apply_rope_half(q_.data() + i * qs, c_.heads, hd, hd, cos_.data() + i * half, sin_.data() + i * half);
      k::apply_rope_half(k_.data() + i * kvs, c_.kv_heads, hd, hd, cos_.data() + i * half, sin_.data() + i * half);
    }
    // Append: cache rows [before, before + t_all) of every KV head (side rows last).
    const std::size_t before = cache_.size(l, 0);
    for (std::size_t g = 0; g < c_.kv_heads; ++g) {
      for (std::size_t i = 0; i < t_all; ++i) {
        std::copy_n(k_.data() + i * kvs + g * hd, hd, cache_.keys(l, g) + (before + i) * hd);
        std::copy_n(v_.data() + i * kvs + g * hd, hd, cache_.values(l, g) + (before + i) * hd);
        cache_.positions(l, g)[before + i] = static_cast<std::int64_t>(position_ + (i < t ? i : i - t));
      }
      cache_.set_size(l, g, before + t_all);
    }
    // Side queries see the old slots and the side keys, not the chunk's.
    side_mask_.assign(before + t_all, 1);
    std::fill_n(side_mask_.begin() + static_cast<std::ptrdiff_t>(before), t, std::uint8_t{0});
    for (std::size_t h = 0; h < c_.heads; ++h) {
      k::softmax_importance_args a;
      a.queries = q_.data() + h * hd;
      a.query_stride = qs;
      a.keys = cache_.keys(l, h / group);
      a.key_stride = hd;
      a.values = cache_.values(l, h / group);
      a.value_stride = hd;
      a.m = t;
      a.n = before + t;
      a.d = hd;
      a.scale = 1.0f / std::sqrt(static_cast<float>(hd));
      a.causal = true;
      a.causal_offset = before;
      a.output = attn_.data() + h * hd;
      a.output_stride = qs;
      if (mode == scoring::all_queries) a.importance = importance_.data() + h * cache_.capacity();
      if (side > 0) {
        k::softmax_importance_args s = a;
        s.queries = q_.data() + t * qs + h * hd;
        s.m = side;
        s.n = before + t_all;
        s.causal_offset = before + t;
        s.key_mask = side_mask_.data();
        s.output = attn_.data() + t * qs + h * hd;
        if (mode == scoring::side_queries) {
          s.importance = importance_.data() + h * cache_.capacity();
          s.importance_end = before;  // only the old slots are candidates
        }
        k::softmax_importance(s, scratch_.data());
      }
      k::softmax_importance(a, scratch_.data());
    }
    if (mode != scoring::none) {
      // One score per old slot: the mean over query heads (CItruS selects per layer, all heads).
      const pith::head_scores heads{std::span<const float>(importance_.data(), importance_.size()), c_.heads, before,
                                    cache_.capacity()};
      pith::mean_over_heads(heads, std::span(scores + l * before, before));
    }
    linear(attn_.data(), t_all, qs, lw.wo, d, delta_.data());
  }

  // --- Block attention residuals, two-phase (notes/attention_residuals.md §3.1, §4.2) ---
  // Sites of a block: 2i before layer i's attention, 2i + 1 before its MLP, then the output site.

  const float* attn_input(std::size_t l) {
    const std::size_t bs = c_.block_size, d = c_.hidden;
    if (l % bs != 0) return site_input(2 * (l % bs));
    // A boundary: bank the raw incoming partial sum as a block; the new block starts empty.
    std::copy_n(prefix_.data(), t_ * d, blocks_.data() + banked_ * max_chunk_ * d);
    k::depth_rstd_rows(prefix_.data(), t_, d, d, c_.eps, block_rstd_.data() + banked_ * max_chunk_);
    ++banked_;
    has_prefix_ = false;
    // Phase one: every site of this block against the completed blocks, once.
    const k::depth_sources sources{.values = blocks_.data(),  // [blocks, max_chunk, hidden]
                                   .count = banked_,
                                   .source_stride = max_chunk_ * d,
                                   .row_stride = d,
                                   .rstd = block_rstd_.data(),  // [blocks, max_chunk]
                                   .rstd_stride = max_chunk_};
    const std::size_t last = std::min(l + bs, c_.layers);
    for (std::size_t layer = l; layer < last; ++layer) {
      if (layer > 0) k::depth_mix_partial(sources, w_.layers[layer].attn_query.data(), t_, d, c_.eps, site(2 * (layer - l)));
      k::depth_mix_partial(sources, w_.layers[layer].mlp_query.data(), t_, d, c_.eps, site(2 * (layer - l) + 1));
    }
    if (last == c_.layers) k::depth_mix_partial(sources, w_.output_query.data(), t_, d, c_.eps, site(2 * (last - l)));
    // Layer 0 reads the embedding as it is; a later boundary reads the completed blocks only.
    return l == 0 ? prefix_.data() : site_input(0);
  }

  // Phase two: a site's input from its phase-one state and the block's running partial sum.
  const float* site_input(std::size_t s) {
    const std::size_t d = c_.hidden;
    k::depth_mix_merge(site(s), has_prefix_ ? prefix_.data() : nullptr, d, site_query(s), t_, d, c_.eps,
                       mixed_.data(), d);
    return mixed_.data();
  }

  const float* site_query(std::size_t s) const {
    const std::size_t layer = block_start() + s / 2;
    if (layer == c_.layers) return w_.output_query.data();
    return s % 2 == 0 ? w_.layers[layer].attn_query.data() : w_.layers[layer].mlp_query.data();
  }
  std::size_t block_start() const { return (banked_ - 1) * c_.block_size; }

  k::depth_partial site(std::size_t s) {
    return {site_out_.data() + s * max_chunk_ * c_.hidden, c_.hidden, site_max_.data() + s * max_chunk_,
            site_sum_.data() + s * max_chunk_};
  }

  void add_to_prefix(const float* out) {
    const std::size_t n = t_ * c_.hidden;
    if (has_prefix_)
      for (std::size_t i = 0; i < n; ++i) prefix_[i] += out[i];
    else
      std::copy_n(out, n, prefix_.data());
    has_prefix_ = true;
  }

  // Output site → final norm → LM head, for one row of the last pass.
  void final_logits(std::size_t row, float* logits) {
    const std::size_t d = c_.hidden;
    const float* z = site_input(2 * ((c_.layers - 1) % c_.block_size + 1));
    k::rms_norm(z + row * d, d, w_.final_norm.data(), 1, d, c_.eps, normed_.data(), d);
    linear(normed_.data(), 1, d, w_.lm_head, c_.vocab, logits);
  }

  const weights& w_;
  const config& c_;
  kv_cache cache_;
  std::size_t max_chunk_, position_ = 0, t_ = 0, banked_ = 0;
  bool has_prefix_ = true;
  std::vector<std::int32_t> all_;
  std::vector<std::uint8_t> side_mask_;
  buffer x_, normed_, delta_, mixed_, prefix_;  // [max_chunk, hidden]
  buffer q_, attn_;                             // [max_chunk, heads * head_dim]
  buffer k_, v_;                                // [max_chunk, kv_heads * head_dim]
  buffer gate_, up_;                            // [max_chunk, intermediate]
  buffer cos_, sin_, inv_freq_;                 // [max_chunk, head_dim / 2], [head_dim / 2]
  buffer scratch_;                              // softmax_importance scratch
  buffer importance_;                           // [heads, capacity]
  buffer blocks_, block_rstd_;                  // [blocks, max_chunk, hidden], [blocks, max_chunk]
  buffer site_out_, site_max_, site_sum_;       // [sites, max_chunk, hidden], [sites, max_chunk] twice
};

}  // namespace embed
