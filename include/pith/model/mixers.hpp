// SPDX-License-Identifier: MIT
// Fixed-size decode states of the recurrent token mixers (notes/deconstructing_attention.md §3.3-3.4,
// docs/layers.md): second-order Taylor linear attention ("approximate") and per-token self-gated
// softmax averaging ("non_approximate").
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "pith/core/aligned_buffer.hpp"

namespace pith {

/// Running sums of one KV head for the approximate mixer, feature map
/// φ(u) = [1, u / d^(1/4), u2 / (√2 √d)] with u2 = u ⊙ u (element-wise) or u ⊗ u (outer).
/// The state does not grow with the sequence: (1 + d + f2) x (d + 1) floats, f2 = d or d².
class approximate_state {
 public:
  approximate_state() = default;
  approximate_state(std::size_t head_dim, bool outer, bool per_term)
      : d_(head_dim), f2_(outer ? head_dim * head_dim : head_dim), outer_(outer), per_term_(per_term) {
    sum_v_.resize(d_);
    kv1_.resize(d_ * d_);
    k1_.resize(d_);
    kv2_.resize(f2_ * d_);
    k2_.resize(f2_);
    feature_.resize(f2_);
  }
  void clear() noexcept {
    count_ = 0.0f;
    sum_v_.fill_zero();
    kv1_.fill_zero();
    k1_.fill_zero();
    kv2_.fill_zero();
    k2_.fill_zero();
  }
  std::size_t bytes() const noexcept {
    return (sum_v_.size() + kv1_.size() + k1_.size() + kv2_.size() + k2_.size() + 1) * sizeof(float);
  }
  /// Takes other's sums (same head size and feature map); allocates only when the shapes differ.
  void assign(const approximate_state& other) {
    if (d_ != other.d_ || f2_ != other.f2_) *this = approximate_state(other.d_, other.outer_, other.per_term_);
    outer_ = other.outer_;
    per_term_ = other.per_term_;
    count_ = other.count_;
    std::copy(other.sum_v_.begin(), other.sum_v_.end(), sum_v_.begin());
    std::copy(other.kv1_.begin(), other.kv1_.end(), kv1_.begin());
    std::copy(other.k1_.begin(), other.k1_.end(), k1_.begin());
    std::copy(other.kv2_.begin(), other.kv2_.end(), kv2_.begin());
    std::copy(other.k2_.begin(), other.k2_.end(), k2_.begin());
  }

  /// Adds the key and value of the next position.
  void push(const float* k, const float* v) noexcept {
    count_ += 1.0f;
    for (std::size_t c = 0; c < d_; ++c) sum_v_[c] += v[c];
    for (std::size_t a = 0; a < d_; ++a) {
      k1_[a] += k[a];
      for (std::size_t c = 0; c < d_; ++c) kv1_[a * d_ + c] += k[a] * v[c];
    }
    second_order(k, feature_.data());
    for (std::size_t a = 0; a < f2_; ++a) {
      k2_[a] += feature_[a];
      for (std::size_t c = 0; c < d_; ++c) kv2_[a * d_ + c] += feature_[a] * v[c];
    }
  }

  /// The mixer's output for query q over every position pushed so far.
  void read(const float* q, float* out) noexcept {
    const float inv_sqrt_d = 1.0f / std::sqrt(static_cast<float>(d_));
    const float half_inv_d = 0.5f / static_cast<float>(d_);
    constexpr float eps = 1e-12f;
    second_order(q, feature_.data());
    float den1 = 0.0f, den2 = 0.0f;
    for (std::size_t a = 0; a < d_; ++a) den1 += q[a] * k1_[a];
    for (std::size_t a = 0; a < f2_; ++a) den2 += feature_[a] * k2_[a];
    den1 *= inv_sqrt_d;
    den2 *= half_inv_d;
    for (std::size_t c = 0; c < d_; ++c) {
      float num1 = 0.0f, num2 = 0.0f;
      for (std::size_t a = 0; a < d_; ++a) num1 += q[a] * kv1_[a * d_ + c];
      for (std::size_t a = 0; a < f2_; ++a) num2 += feature_[a] * kv2_[a * d_ + c];
      num1 *= inv_sqrt_d;
      num2 *= half_inv_d;
      if (per_term_)
        out[c] = sum_v_[c] / count_ + num1 / (den1 + eps) + num2 / (den2 + eps);
      else
        out[c] = (sum_v_[c] + num1 + num2) / (count_ + den1 + den2 + eps);
    }
  }

 private:
  void second_order(const float* u, float* feature) const noexcept {
    if (outer_) {
      for (std::size_t a = 0; a < d_; ++a)
        for (std::size_t b = 0; b < d_; ++b) feature[a * d_ + b] = u[a] * u[b];
    } else {
      for (std::size_t a = 0; a < d_; ++a) feature[a] = u[a] * u[a];
    }
  }

  std::size_t d_ = 0, f2_ = 0;
  bool outer_ = false, per_term_ = false;
  float count_ = 0.0f;
  aligned_buffer<float> sum_v_;  // [d]        Σ v
  aligned_buffer<float> kv1_;    // [d, d]     Σ k ⊗ v
  aligned_buffer<float> k1_;     // [d]        Σ k
  aligned_buffer<float> kv2_;    // [f2, d]    Σ k2 ⊗ v
  aligned_buffer<float> k2_;     // [f2]       Σ k2
  aligned_buffer<float> feature_;  // [f2] scratch
};

/// Running numerator, denominator and maximum of one query head for the non_approximate mixer:
/// o_i = Σ_{j<=i} e^{s_j} v_j / Σ_{j<=i} e^{s_j}, s_j = <q_j, k_j> / √d (online softmax).
class self_gated_state {
 public:
  self_gated_state() = default;
  explicit self_gated_state(std::size_t head_dim) : d_(head_dim) { numerator_.resize(head_dim); }
  void clear() noexcept {
    numerator_.fill_zero();
    denominator_ = 0.0f;
    max_ = -std::numeric_limits<float>::infinity();
  }
  std::size_t bytes() const noexcept { return (numerator_.size() + 2) * sizeof(float); }
  /// Takes other's running sums; allocates only when the head sizes differ.
  void assign(const self_gated_state& other) {
    if (d_ != other.d_) *this = self_gated_state(other.d_);
    std::copy(other.numerator_.begin(), other.numerator_.end(), numerator_.begin());
    denominator_ = other.denominator_;
    max_ = other.max_;
  }

  /// Adds position j (its own query, key and value) and writes the output at j.
  void push_and_read(const float* q, const float* k, const float* v, float* out) noexcept {
    float score = 0.0f;
    for (std::size_t a = 0; a < d_; ++a) score += q[a] * k[a];
    score /= std::sqrt(static_cast<float>(d_));
    const float top = std::max(max_, score);
    const float old_weight = std::exp(max_ - top), new_weight = std::exp(score - top);
    for (std::size_t c = 0; c < d_; ++c) numerator_[c] = numerator_[c] * old_weight + new_weight * v[c];
    denominator_ = denominator_ * old_weight + new_weight;
    max_ = top;
    const float inv = 1.0f / denominator_;
    for (std::size_t c = 0; c < d_; ++c) out[c] = numerator_[c] * inv;
  }

 private:
  std::size_t d_ = 0;
  aligned_buffer<float> numerator_;  // [d]
  float denominator_ = 0.0f;
  float max_ = -std::numeric_limits<float>::infinity();
};

}  // namespace pith
