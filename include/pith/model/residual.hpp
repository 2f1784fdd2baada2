// SPDX-License-Identifier: MIT
// residual_stream: how sub-layer outputs reach later layers. Standard residual sum, block attention
// residuals (Kimi K3 convention) and full attention residuals (paper convention), per token, float32.
// The state machine (notes/attention_residuals.md §3.1) lives here; the mixing is kernels/depth_mix.hpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "pith/core/aligned_buffer.hpp"
#include "pith/core/checked.hpp"
#include "pith/core/error.hpp"
#include "pith/kernels/depth_mix.hpp"
#include "pith/model/config.hpp"

namespace pith {

/// The folded pseudo-queries q_eff ([hidden] floats each, notes §1) of every attention-residual
/// site, as pointers into storage the caller keeps alive for the stream's life (a session points
/// them at model_weights' attn_res_query / mlp_res_query / output_res_query). Standard residuals
/// need none; layer 0's attention site is never mixed, so attn[0] may be null.
struct residual_queries {
  std::vector<const float*> attn;  // [layers]: before each layer's token mixer
  std::vector<const float*> mlp;   // [layers]: before each layer's MLP
  const float* output = nullptr;   // before the final norm
};

/// The pseudo-queries of a model's weights, by field name: layers[l].attn_res_query and
/// layers[l].mlp_res_query, and output_res_query ([hidden] float buffers; empty ones give null).
/// The weights must outlive the stream that uses them.
template <class Weights>
residual_queries residual_queries_of(const Weights& weights) {
  residual_queries q;
  for (const auto& layer : weights.layers) {
    q.attn.push_back(layer.attn_res_query.empty() ? nullptr : layer.attn_res_query.data());
    q.mlp.push_back(layer.mlp_res_query.empty() ? nullptr : layer.mlp_res_query.data());
  }
  q.output = weights.output_res_query.empty() ? nullptr : weights.output_res_query.data();
  return q;
}

inline namespace PITH_ISA_NAMESPACE {  // calls the depth-mix kernels of this unit's ISA (simd/simd.hpp)

/// The residual stream of a chunk of up to max_tokens tokens through the layers of one forward pass.
/// Call begin, then per layer attn_input / add_attn / mlp_input / add_mlp, then output. Each
/// *_input returns [t, d] rows (valid until the next call). Nothing persists across forward calls:
/// attention residuals mix over depth, per token (notes/attention_residuals.md §4.1).
class residual_stream {
 public:
  residual_stream() = default;
  /// Throws argument_error when a buffer size does not fit in std::size_t, or when block or full
  /// mode lacks a pseudo-query of a site it mixes (checked when `queries` is given; a stream built
  /// without queries, for sizing only, must not run those modes).
  residual_stream(const model_config& c, std::size_t max_tokens, residual_queries queries = {})
      : c_(&c), d_(c.hidden_size), max_tokens_(max_tokens), queries_(std::move(queries)) {
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
        site_queries_.reserve(sites);
      }
      scores_.resize(kernels::depth_mix_scratch_size(blocks));
    } else if (c.residual == residual_mode::full) {
      const std::size_t sources = checked_size("residual_stream: sources", {2, c.num_layers}) + 1;
      snapshots_.resize(checked_size("residual_stream: sources", {sources, max_tokens, d_}));
      snapshot_rstd_.resize(checked_size("residual_stream: sources", {sources, max_tokens}));
      scores_.resize(kernels::depth_mix_scratch_size(sources));
    }
    if (c.residual != residual_mode::standard && !queries_.attn.empty()) check_queries();
  }

  std::size_t bytes_allocated() const noexcept {
    return (current_.size() + mixed_.size() + snapshots_.size() + snapshot_rstd_.size() + site_out_.size() +
            site_max_.size() + site_sum_.size() + scores_.size()) *
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

  const float* attn_input(std::size_t layer) noexcept {
    switch (c_->residual) {
      case residual_mode::standard: return current_.data();
      case residual_mode::full:
        if (sources_ == 1) return snapshot(0);  // only the embedding: the softmax over one source
        mix(queries_.attn[layer], false, mixed_.data());
        return mixed_.data();
      case residual_mode::block: break;
    }
    const std::size_t bs = c_->attn_res_block_size;
    const bool boundary = layer % bs == 0;
    const float* input = current_.data();
    if (sources_ > 0 && !boundary) {
      block_site_input(queries_.attn[layer], 2 * (layer % bs), mixed_.data());
      input = mixed_.data();
    } else if (sources_ > 0 && boundary && !c_->attn_res_two_phase) {
      mix(queries_.attn[layer], has_prefix_, mixed_.data());
      input = mixed_.data();
    }
    if (boundary) {
      // Bank the raw incoming prefix (not the mixed input); the new block starts empty.
      push_source(current_.data());
      has_prefix_ = false;
      if (c_->attn_res_two_phase) {
        phase_one(layer);
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

  const float* mlp_input(std::size_t layer) noexcept {
    switch (c_->residual) {
      case residual_mode::standard: return current_.data();
      case residual_mode::full:
        mix(queries_.mlp[layer], false, mixed_.data());
        return mixed_.data();
      case residual_mode::block: break;
    }
    block_site_input(queries_.mlp[layer], 2 * (layer % c_->attn_res_block_size) + 1, mixed_.data());
    return mixed_.data();
  }

  void add_mlp(std::size_t layer, const float* out) noexcept { add_attn(layer, out); }

  /// The final site's rows [t, d] (before the final norm).
  const float* output() noexcept {
    switch (c_->residual) {
      case residual_mode::standard: return current_.data();
      case residual_mode::full:
        mix(queries_.output, false, mixed_.data());
        return mixed_.data();
      case residual_mode::block: break;
    }
    const std::size_t last_layer = c_->num_layers - 1, bs = c_->attn_res_block_size;
    const std::size_t layers_in_block = last_layer % bs + 1;
    block_site_input(queries_.output, 2 * layers_in_block, mixed_.data());
    return mixed_.data();
  }

 private:
  void check_queries() const {
    const auto missing = [&](const std::string& site) {
      PITH_THROW(argument_error, c_->source + ": residual_stream: " +
                                     (c_->residual == residual_mode::block ? "block" : "full") +
                                     " attention residuals need the pseudo-query of " + site);
    };
    if (queries_.attn.size() != c_->num_layers || queries_.mlp.size() != c_->num_layers)
      PITH_THROW(argument_error, c_->source + ": residual_stream: " + std::to_string(queries_.attn.size()) +
                                     " attention and " + std::to_string(queries_.mlp.size()) + " MLP pseudo-queries for " +
                                     std::to_string(c_->num_layers) + " layers");
    for (std::size_t l = 0; l < c_->num_layers; ++l) {
      if (l > 0 && queries_.attn[l] == nullptr) missing("layer " + std::to_string(l) + "'s attention site");
      if (queries_.mlp[l] == nullptr) missing("layer " + std::to_string(l) + "'s MLP site");
    }
    if (queries_.output == nullptr) missing("the output site");
  }

  float* snapshot(std::size_t i) noexcept { return snapshots_.data() + i * max_tokens_ * d_; }

  // The banked snapshots (blocks or sources) as the kernels' source set.
  kernels::depth_sources banked() const noexcept {
    return {.values = snapshots_.data(),
            .count = sources_,
            .source_stride = max_tokens_ * d_,
            .row_stride = d_,
            .rstd = snapshot_rstd_.data(),
            .rstd_stride = max_tokens_};
  }

  void push_source(const float* rows) noexcept {
    std::copy_n(rows, t_ * d_, snapshot(sources_));
    kernels::depth_rstd_rows(rows, t_, d_, d_, c_->rms_norm_eps, snapshot_rstd_.data() + sources_ * max_tokens_);
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

  // Direct formula: softmax over the banked sources (full mode) and, in block mode, the running prefix.
  void mix(const float* query, bool with_prefix, float* out) noexcept {
    kernels::depth_mix(banked(), with_prefix ? current_.data() : nullptr, d_, query, t_, d_, c_->rms_norm_eps, out, d_,
                       scores_.data());
  }

  // Block mode input of `site` (0-based within the current block) for pseudo-query `query`.
  void block_site_input(const float* query, std::size_t site, float* out) noexcept {
    if (c_->attn_res_two_phase)
      finish_site(site, has_prefix_ ? current_.data() : nullptr, out);
    else
      mix(query, has_prefix_, out);
  }

  kernels::depth_partial site_state(std::size_t site) noexcept {
    return {site_out_.data() + site * max_tokens_ * d_, d_, site_max_.data() + site * max_tokens_,
            site_sum_.data() + site * max_tokens_};
  }

  // Phase 1 (notes §4.2): every site of the block that starts at `layer` against the completed blocks.
  void phase_one(std::size_t layer) noexcept {
    const std::size_t bs = c_->attn_res_block_size;
    const std::size_t end = layer + std::min(bs, c_->num_layers - layer);  // no overflow for any bs
    site_queries_.clear();
    for (std::size_t l = layer; l < end; ++l) {
      site_queries_.push_back(l > 0 ? queries_.attn[l] : nullptr);
      site_queries_.push_back(queries_.mlp[l]);
    }
    if (end == c_->num_layers) site_queries_.push_back(queries_.output);
    for (std::size_t site = 0; site < site_queries_.size(); ++site)
      if (site_queries_[site] != nullptr)
        kernels::depth_mix_partial(banked(), site_queries_[site], t_, d_, c_->rms_norm_eps, site_state(site));
  }

  // Phase 2: merges a site's phase-one result with the running partial sum (exact online softmax).
  void finish_site(std::size_t site, const float* prefix, float* out) noexcept {
    kernels::depth_mix_merge(site_state(site), prefix, d_, site_queries_[site], t_, d_, c_->rms_norm_eps, out, d_);
  }

  const model_config* c_ = nullptr;
  std::size_t d_ = 0, max_tokens_ = 0, t_ = 0;
  std::size_t sources_ = 0;  // banked blocks (block mode) or sources (full mode)
  bool has_prefix_ = true;
  residual_queries queries_;
  aligned_buffer<float> current_;        // [max_tokens, d]: h (standard) or the running prefix (block)
  aligned_buffer<float> mixed_;          // [max_tokens, d]: the last site's input
  aligned_buffer<float> snapshots_;      // [blocks or sources, max_tokens, d]
  aligned_buffer<float> snapshot_rstd_;  // [blocks or sources, max_tokens]
  aligned_buffer<float> site_out_;       // [2 * block_size + 1, max_tokens, d]: phase-one outputs
  aligned_buffer<float> site_max_;       // [2 * block_size + 1, max_tokens]
  aligned_buffer<float> site_sum_;       // [2 * block_size + 1, max_tokens]
  aligned_buffer<float> scores_;         // [depth_mix_scratch_size(blocks or sources)]
  std::vector<const float*> site_queries_;  // pseudo-queries of the current block's sites
};

}  // namespace PITH_ISA_NAMESPACE

}  // namespace pith
