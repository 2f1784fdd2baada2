// SPDX-License-Identifier: MIT
// residual_stream: how sub-layer outputs reach later layers. Standard residual sum, block attention
// residuals (Kimi K3 convention) and full attention residuals (paper convention), per token, float32.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "pith/core/aligned_buffer.hpp"
#include "pith/core/checked.hpp"
#include "pith/model/config.hpp"
#include "pith/model/weights.hpp"

namespace pith {

namespace detail {
/// 1 / sqrt(mean(v^2) + eps): the RMS normalisation of a depth source, computed once per source.
inline float source_rstd(const float* v, std::size_t d, float eps) noexcept {
  float squares = 0.0f;
  for (std::size_t i = 0; i < d; ++i) squares += v[i] * v[i];
  return 1.0f / std::sqrt(squares / static_cast<float>(d) + eps);
}
inline float dot(const float* a, const float* b, std::size_t d) noexcept {
  float total = 0.0f;
  for (std::size_t i = 0; i < d; ++i) total += a[i] * b[i];
  return total;
}
}  // namespace detail

/// The residual stream of a chunk of up to max_tokens tokens through the layers of one forward pass.
/// Call begin, then per layer attn_input / add_attn / mlp_input / add_mlp, then output. Each
/// *_input returns [t, d] rows (valid until the next call). Nothing persists across forward calls:
/// attention residuals mix over depth, per token (notes/attention_residuals.md §4.1).
class residual_stream {
 public:
  residual_stream() = default;
  /// Throws argument_error when a buffer size does not fit in std::size_t.
  residual_stream(const model_config& c, std::size_t max_tokens) : c_(&c), d_(c.hidden_size), max_tokens_(max_tokens) {
    const std::size_t rows = checked_size("residual_stream: rows", {max_tokens, d_});
    current_.resize(rows);
    mixed_.resize(rows);
    if (c.residual == residual_mode::block) {
      const std::size_t blocks = c.attn_res_blocks();
      snapshots_.resize(checked_size("residual_stream: block snapshots", {blocks, max_tokens, d_}));
      snapshot_rstd_.resize(checked_size("residual_stream: block snapshots", {blocks, max_tokens}));
      if (c.attn_res_two_phase) {
        // A block never holds more than the model's layers: 2 sites per layer and the output site.
        const std::size_t block_layers = std::min(c.attn_res_block_size, c.num_layers);
        const std::size_t sites = checked_size("residual_stream: block sites", {2, block_layers}) + 1;
        site_out_.resize(checked_size("residual_stream: block sites", {sites, max_tokens, d_}));
        site_max_.resize(checked_size("residual_stream: block sites", {sites, max_tokens}));
        site_sum_.resize(site_max_.size());
      }
    } else if (c.residual == residual_mode::full) {
      const std::size_t sources = checked_size("residual_stream: sources", {2, c.num_layers}) + 1;
      snapshots_.resize(checked_size("residual_stream: sources", {sources, max_tokens, d_}));
      snapshot_rstd_.resize(checked_size("residual_stream: sources", {sources, max_tokens}));
    }
  }

  std::size_t bytes_allocated() const noexcept {
    return (current_.size() + mixed_.size() + snapshots_.size() + snapshot_rstd_.size() + site_out_.size() +
            site_max_.size() + site_sum_.size()) *
           sizeof(float);
  }

  /// Starts a forward pass from the token embeddings [t, d].
  void begin(const float* embeddings, std::size_t t) noexcept {
    t_ = t;
    std::copy_n(embeddings, t * d_, current_.data());  // standard: h; block: prefix; full: source 0
    has_prefix_ = true;
    sources_ = 0;
    if (c_->residual == residual_mode::full) push_source(embeddings);
  }

  const float* attn_input(const model_weights& w, std::size_t layer) noexcept {
    switch (c_->residual) {
      case residual_mode::standard: return current_.data();
      case residual_mode::full:
        if (sources_ == 1) return snapshot(0);  // only the embedding: the softmax over one source
        mix_sources(w.layers[layer].attn_res_query.data(), mixed_.data());
        return mixed_.data();
      case residual_mode::block: break;
    }
    const std::size_t bs = c_->attn_res_block_size;
    const bool boundary = layer % bs == 0;
    const float* input = current_.data();
    if (sources_ > 0 && !boundary) {
      block_site_input(w.layers[layer].attn_res_query.data(), 2 * (layer % bs), mixed_.data());
      input = mixed_.data();
    } else if (sources_ > 0 && boundary && !c_->attn_res_two_phase) {
      mix_blocks_with_prefix(w.layers[layer].attn_res_query.data(), mixed_.data());
      input = mixed_.data();
    }
    if (boundary) {
      // Bank the raw incoming prefix (not the mixed input); the new block starts empty.
      push_source(current_.data());
      has_prefix_ = false;
      if (c_->attn_res_two_phase) {
        phase_one(w, layer);
        if (layer > 0) {
          // The boundary layer's attention site sees exactly the completed blocks: o / l.
          finish_site(0, nullptr, mixed_.data());
          input = mixed_.data();
        }
      }
    }
    return input;
  }

  void add_attn(std::size_t layer, const float* out) noexcept {
    (void)layer;
    if (c_->residual == residual_mode::full) {
      push_source(out);
      return;
    }
    add_to_prefix(out);
  }

  const float* mlp_input(const model_weights& w, std::size_t layer) noexcept {
    switch (c_->residual) {
      case residual_mode::standard: return current_.data();
      case residual_mode::full:
        mix_sources(w.layers[layer].mlp_res_query.data(), mixed_.data());
        return mixed_.data();
      case residual_mode::block: break;
    }
    block_site_input(w.layers[layer].mlp_res_query.data(), 2 * (layer % c_->attn_res_block_size) + 1, mixed_.data());
    return mixed_.data();
  }

  void add_mlp(std::size_t layer, const float* out) noexcept { add_attn(layer, out); }

  /// The final site's rows [t, d] (before the final norm).
  const float* output(const model_weights& w) noexcept {
    switch (c_->residual) {
      case residual_mode::standard: return current_.data();
      case residual_mode::full:
        mix_sources(w.output_res_query.data(), mixed_.data());
        return mixed_.data();
      case residual_mode::block: break;
    }
    const std::size_t last_layer = c_->num_layers - 1, bs = c_->attn_res_block_size;
    const std::size_t layers_in_block = last_layer % bs + 1;
    block_site_input(w.output_res_query.data(), 2 * layers_in_block, mixed_.data());
    return mixed_.data();
  }

 private:
  float* snapshot(std::size_t i) noexcept { return snapshots_.data() + i * max_tokens_ * d_; }
  float* snapshot_rstd(std::size_t i) noexcept { return snapshot_rstd_.data() + i * max_tokens_; }

  void push_source(const float* rows) noexcept {
    float* target = snapshot(sources_);
    float* rstd = snapshot_rstd(sources_);
    for (std::size_t t = 0; t < t_; ++t) {
      std::copy_n(rows + t * d_, d_, target + t * d_);
      rstd[t] = detail::source_rstd(rows + t * d_, d_, c_->rms_norm_eps);
    }
    ++sources_;
  }

  void add_to_prefix(const float* out) noexcept {
    float* prefix = current_.data();
    if (has_prefix_) {
      for (std::size_t i = 0; i < t_ * d_; ++i) prefix[i] += out[i];
    } else {
      std::copy_n(out, t_ * d_, prefix);
      has_prefix_ = true;
    }
  }

  // Direct formula: softmax over all banked sources (full mode), per token.
  void mix_sources(const float* query, float* out) noexcept { mix(query, sources_, false, out); }
  // Direct formula: softmax over the banked blocks and the running prefix (block mode).
  void mix_blocks_with_prefix(const float* query, float* out) noexcept { mix(query, sources_, has_prefix_, out); }

  void mix(const float* query, std::size_t banked, bool with_prefix, float* out) noexcept {
    std::vector<float>& scores = scores_;
    scores.resize(banked + 1);
    for (std::size_t t = 0; t < t_; ++t) {
      const float* prefix = current_.data() + t * d_;
      float best = -std::numeric_limits<float>::infinity();
      for (std::size_t j = 0; j < banked; ++j) {
        scores[j] = detail::dot(snapshot(j) + t * d_, query, d_) * snapshot_rstd(j)[t];
        best = std::max(best, scores[j]);
      }
      if (with_prefix) {
        scores[banked] = detail::dot(prefix, query, d_) * detail::source_rstd(prefix, d_, c_->rms_norm_eps);
        best = std::max(best, scores[banked]);
      }
      const std::size_t count = banked + (with_prefix ? 1 : 0);
      float total = 0.0f;
      for (std::size_t j = 0; j < count; ++j) total += scores[j] = std::exp(scores[j] - best);
      float* o = out + t * d_;
      std::fill_n(o, d_, 0.0f);
      for (std::size_t j = 0; j < count; ++j) {
        const float p = scores[j] / total;
        const float* v = j < banked ? snapshot(j) + t * d_ : prefix;
        for (std::size_t i = 0; i < d_; ++i) o[i] += p * v[i];
      }
    }
  }

  // Block mode input of `site` (0-based within the current block) for pseudo-query `query`.
  void block_site_input(const float* query, std::size_t site, float* out) noexcept {
    if (c_->attn_res_two_phase)
      finish_site(site, has_prefix_ ? current_.data() : nullptr, out);
    else
      mix_blocks_with_prefix(query, out);
  }

  // Phase 1 (notes §4.2): every site of the block that starts at `layer` against the completed
  // blocks, in one sweep per token: running max, sum and unnormalised output.
  void phase_one(const model_weights& w, std::size_t layer) noexcept {
    const std::size_t bs = c_->attn_res_block_size;
    const std::size_t end = layer + std::min(bs, c_->num_layers - layer);  // no overflow for any bs
    queries_.clear();
    for (std::size_t l = layer; l < end; ++l) {
      queries_.push_back(l > 0 ? w.layers[l].attn_res_query.data() : nullptr);
      queries_.push_back(w.layers[l].mlp_res_query.data());
    }
    if (end == c_->num_layers) queries_.push_back(w.output_res_query.data());
    for (std::size_t site = 0; site < queries_.size(); ++site) {
      const float* query = queries_[site];
      if (query == nullptr) continue;
      float* site_out = site_out_.data() + site * max_tokens_ * d_;
      for (std::size_t t = 0; t < t_; ++t) {
        float best = -std::numeric_limits<float>::infinity(), total = 0.0f;
        float* o = site_out + t * d_;
        std::fill_n(o, d_, 0.0f);
        for (std::size_t j = 0; j < sources_; ++j) {
          const float* v = snapshot(j) + t * d_;
          const float score = detail::dot(v, query, d_) * snapshot_rstd(j)[t];
          if (score > best) {
            // Online rescaling keeps the sweep single-pass over the blocks.
            const float rescale = std::exp(best - score);
            total *= rescale;
            for (std::size_t i = 0; i < d_; ++i) o[i] *= rescale;
            best = score;
          }
          const float e = std::exp(score - best);
          total += e;
          for (std::size_t i = 0; i < d_; ++i) o[i] += e * v[i];
        }
        site_max_[site * max_tokens_ + t] = best;
        site_sum_[site * max_tokens_ + t] = total;
      }
    }
  }

  // Phase 2: merges a site's phase-one result with the running partial sum (exact online softmax).
  void finish_site(std::size_t site, const float* prefix, float* out) noexcept {
    const float* query = queries_[site];
    const float* site_out = site_out_.data() + site * max_tokens_ * d_;
    for (std::size_t t = 0; t < t_; ++t) {
      const float block_max = site_max_[site * max_tokens_ + t], block_sum = site_sum_[site * max_tokens_ + t];
      const float* o = site_out + t * d_;
      float* x = out + t * d_;
      if (prefix == nullptr) {
        const float inv = 1.0f / block_sum;
        for (std::size_t i = 0; i < d_; ++i) x[i] = o[i] * inv;
        continue;
      }
      const float* p = prefix + t * d_;
      const float score = detail::dot(p, query, d_) * detail::source_rstd(p, d_, c_->rms_norm_eps);
      const float top = std::max(block_max, score);
      const float block_weight = std::exp(block_max - top), prefix_weight = std::exp(score - top);
      const float inv = 1.0f / (block_weight * block_sum + prefix_weight);
      for (std::size_t i = 0; i < d_; ++i) x[i] = (block_weight * o[i] + prefix_weight * p[i]) * inv;
    }
  }

  const model_config* c_ = nullptr;
  std::size_t d_ = 0, max_tokens_ = 0, t_ = 0;
  std::size_t sources_ = 0;  // banked blocks (block mode) or sources (full mode)
  bool has_prefix_ = true;
  aligned_buffer<float> current_;        // [max_tokens, d]: h (standard) or the running prefix (block)
  aligned_buffer<float> mixed_;          // [max_tokens, d]: the last site's input
  aligned_buffer<float> snapshots_;      // [blocks or sources, max_tokens, d]
  aligned_buffer<float> snapshot_rstd_;  // [blocks or sources, max_tokens]
  aligned_buffer<float> site_out_;       // [2 * block_size + 1, max_tokens, d]: phase-one outputs
  aligned_buffer<float> site_max_;       // [2 * block_size + 1, max_tokens]
  aligned_buffer<float> site_sum_;       // [2 * block_size + 1, max_tokens]
  std::vector<const float*> queries_;    // pseudo-queries of the current block's sites
  std::vector<float> scores_;
};

}  // namespace pith
