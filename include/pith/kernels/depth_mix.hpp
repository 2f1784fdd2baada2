// SPDX-License-Identifier: MIT
// The attention-residual depth mix: a softmax over depth sources (earlier layer outputs or banked
// blocks), per token, with a static pseudo-query, over buffers the caller owns.
//
// For one site with folded pseudo-query q_eff [d] (notes/attention_residuals.md §1: RMSNorm gain ⊙
// projection, folded once at load time) and sources v_0 .. v_{n-1}, for each token independently:
//   s_j = dot(v_j, q_eff) · rstd(v_j),   rstd(v) = 1 / sqrt(mean(v²) + eps)
//   out = Σ_j softmax_j(s) · v_j         (the RAW sources are mixed, §3.2)
// Full attention residuals (§2) call depth_mix over every earlier sub-layer output; block
// attention residuals (§3) over the banked blocks plus the running partial sum, either directly
// (depth_mix with a partial) or in two phases (§4.2): depth_mix_partial scores the banked blocks
// once per site with an online softmax (running max, sum and unnormalised output), and
// depth_mix_merge folds in the partial sum of the site's own block. The merge is exact: two phases
// equal one phase up to float rounding of the rescaling (tests/kernels/depth_mix_test.cpp).
//
// Layouts. Sources are rows of d floats: source j, token i at values + j·source_stride +
// i·row_stride, so [sources, t, d] (source_stride = t_capacity·d, row_stride = d), llama.cpp's
// [t, sources, d] (source_stride = d, row_stride = sources·d) and one [t, d] matrix (count 1) are
// all described without copying; sources in separate buffers are an array of row pointers
// (source_rows). rstd of source j, token i at rstd[j·rstd_stride + i] (or source_rstd[j][i]); compute
// it once per source with depth_rstd_rows when the source is banked (§4.2) or leave rstd null to
// have it computed at every call (the same value bit for bit).
//
// Numerics: all float32. Dot products and sums of squares accumulate in index order with one
// accumulator, so they do not depend on the vector width; exp is std::exp.
// The element-wise weighting, rescaling and merging run on the primitive set `Ops` (lane-wise, so
// every ISA gives the same bits wherever the compiler contracts a·b + c to a fused multiply-add,
// as GCC and clang do for the scalar set on targets with FMA).
//
// Preconditions (checked by validate_depth_mix, asserted in debug builds): at least one source for
// depth_mix_partial and depth_mix_merge without a partial sum; strides >= d; outputs do not alias
// sources, the partial sum or each other, except that depth_mix_merge may write over the phase-one
// output it reads. The kernels do not allocate and do not throw.
//
// This header includes no model, file reader or JSON: engines call it over their own buffers.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "pith/core/assert.hpp"
#include "pith/simd/simd.hpp"

namespace pith::kernels {

/// Where the sources of a site lie (see the file comment for the layouts). Sources in one buffer
/// are described by `values` and the strides; sources in separate buffers (one [t, d] matrix per
/// earlier sub-layer, say) by `source_rows`, an array of `count` pointers, which takes precedence.
struct depth_sources {
  const float* values = nullptr;  // source j, token i: values + j * source_stride + i * row_stride, d floats
  std::size_t count = 0;          // n: sources
  std::size_t source_stride = 0;  // floats between sources
  std::size_t row_stride = 0;     // floats between tokens of a source (>= d)
  const float* rstd = nullptr;    // rstd[j * rstd_stride + i] = rstd of source j, token i; nullptr: computed
  std::size_t rstd_stride = 0;    // floats between sources' rstd rows
  const float* const* source_rows = nullptr;  // [count]: source j, token i at source_rows[j] + i * row_stride
  const float* const* source_rstd = nullptr;  // [count]: rstd of source j, token i at source_rstd[j][i]

  const float* row(std::size_t source, std::size_t token) const noexcept {
    return source_rows != nullptr ? source_rows[source] + token * row_stride
                                  : values + source * source_stride + token * row_stride;
  }
};

/// One site's phase-one state over t tokens (depth_mix_partial writes it, depth_mix_merge reads it).
struct depth_partial {
  float* output = nullptr;  // [t, d], rows output_stride apart: Σ_j exp(s_j - max) · v_j
  std::size_t output_stride = 0;
  float* max = nullptr;  // [t]: max_j s_j (-inf for no source)
  float* sum = nullptr;  // [t]: Σ_j exp(s_j - max)
};

/// 1 / sqrt(mean(v²) + eps) of one row of d floats: the RMS normalisation of a depth source's key
/// (sum of squares in float, in index order).
inline float depth_rstd(const float* v, std::size_t d, float eps) noexcept {
  float squares = 0.0f;
  for (std::size_t i = 0; i < d; ++i) squares += v[i] * v[i];
  return 1.0f / std::sqrt(squares / static_cast<float>(d) + eps);
}

/// rstd[i] = depth_rstd of row i of [t, d] (rows `stride` apart): what a source is banked with.
inline void depth_rstd_rows(const float* rows, std::size_t t, std::size_t d, std::size_t stride, float eps,
                            float* rstd) noexcept {
  for (std::size_t i = 0; i < t; ++i) rstd[i] = depth_rstd(rows + i * stride, d, eps);
}

/// Floats of scratch depth_mix needs for `sources` sources (one score per source and the partial sum).
constexpr std::size_t depth_mix_scratch_size(std::size_t sources) noexcept { return sources + 1; }

/// Returns nullptr when the arguments satisfy the depth-mix preconditions, else a static message
/// naming the offending one. `needs_source`: the call has no partial sum to fall back on
/// (depth_mix_partial, depth_mix_merge without a partial, depth_mix without a partial).
inline const char* validate_depth_mix(const depth_sources& s, const float* query, std::size_t t, std::size_t d,
                                      bool needs_source) noexcept {
  if (t == 0 || d == 0) return nullptr;
  if (query == nullptr) return "depth_mix: the pseudo-query is null";
  if (needs_source && s.count == 0) return "depth_mix: no source to mix (and no partial sum)";
  if (s.count > 0 && s.values == nullptr && s.source_rows == nullptr)
    return "depth_mix: sources.values and sources.source_rows are null";
  if (s.count > 0 && s.row_stride < d && t > 1) return "depth_mix: sources.row_stride < d";
  if (s.count > 1 && s.source_rows == nullptr && s.source_stride == 0)
    return "depth_mix: sources.source_stride is 0 with several sources";
  for (std::size_t j = 0; s.source_rows != nullptr && j < s.count; ++j)
    if (s.source_rows[j] == nullptr) return "depth_mix: a pointer of sources.source_rows is null";
  return nullptr;
}

namespace detail {

/// dot(a, b) over d floats, one float accumulator in index order (the depth scores' contract).
inline float depth_dot(const float* a, const float* b, std::size_t d) noexcept {
  float total = 0.0f;
  for (std::size_t i = 0; i < d; ++i) total += a[i] * b[i];
  return total;
}

template <class Ops>
struct depth_mix_impl {
  using vec = typename Ops::vec;
  static constexpr std::size_t W = Ops::width;

  // o[i] = 0.
  static void clear(float* o, std::size_t d) noexcept { std::fill_n(o, d, 0.0f); }

  // o[i] += p · v[i].
  static void add_scaled(float* o, float p, const float* v, std::size_t d) noexcept {
    const vec pv = Ops::set1(p);
    std::size_t i = 0;
    for (; i + W <= d; i += W) {
      simd::keep_scalar_loop<W>(i);
      Ops::store(o + i, Ops::fmadd(pv, Ops::load(v + i), Ops::load(o + i)));
    }
    if (i < d) {
      const vec tail = Ops::fmadd(pv, Ops::load_partial(v + i, d - i), Ops::load_partial(o + i, d - i));
      Ops::store_partial(o + i, tail, d - i);
    }
  }

  // out[i] = o[i] · s (out may be o).
  static void scale(const float* o, float s, float* out, std::size_t d) noexcept {
    const vec sv = Ops::set1(s);
    std::size_t i = 0;
    for (; i + W <= d; i += W) {
      simd::keep_scalar_loop<W>(i);
      Ops::store(out + i, Ops::mul(Ops::load(o + i), sv));
    }
    if (i < d) Ops::store_partial(out + i, Ops::mul(Ops::load_partial(o + i, d - i), sv), d - i);
  }

  // out[i] = (a · o[i] + b · p[i]) · s (out may be o). Vector sets fuse a · o[i] into the add, as
  // compilers contract the expression below; the scalar set is that expression, so that a compiler
  // contracting it picks the same product on every target.
  static void merge(const float* o, float a, const float* p, float b, float s, float* out, std::size_t d) noexcept {
    if constexpr (W == 1) {
      for (std::size_t i = 0; i < d; ++i) out[i] = (a * o[i] + b * p[i]) * s;
      return;
    }
    const vec av = Ops::set1(a), bv = Ops::set1(b), sv = Ops::set1(s);
    std::size_t i = 0;
    for (; i + W <= d; i += W) {
      simd::keep_scalar_loop<W>(i);
      Ops::store(out + i, Ops::mul(Ops::fmadd(av, Ops::load(o + i), Ops::mul(bv, Ops::load(p + i))), sv));
    }
    if (i < d) {
      const vec x = Ops::fmadd(av, Ops::load_partial(o + i, d - i), Ops::mul(bv, Ops::load_partial(p + i, d - i)));
      Ops::store_partial(out + i, Ops::mul(x, sv), d - i);
    }
  }

  static float rstd_of(const depth_sources& s, std::size_t j, std::size_t token, std::size_t d, float eps) noexcept {
    if (s.source_rstd != nullptr) return s.source_rstd[j][token];
    return s.rstd != nullptr ? s.rstd[j * s.rstd_stride + token] : depth_rstd(s.row(j, token), d, eps);
  }
};

}  // namespace detail

/// Direct formula (one phase): out[i] = Σ_j softmax(s)_j · v_j over the sources and, when `partial`
/// is not null, the running partial sum partial[i] ([t, d], rows partial_stride apart) as one more
/// source (block mode, §3.1). Full mode passes partial = nullptr. scratch holds
/// depth_mix_scratch_size(sources.count) floats. Rows of out are out_stride apart.
template <class Ops>
inline void depth_mix_with(const depth_sources& sources, const float* partial, std::size_t partial_stride,
                           const float* query, std::size_t t, std::size_t d, float eps, float* out,
                           std::size_t out_stride, float* scratch) noexcept {
  using impl = detail::depth_mix_impl<Ops>;
  PITH_ASSERT(validate_depth_mix(sources, query, t, d, partial == nullptr) == nullptr, "depth_mix: invalid arguments");
  const std::size_t banked = sources.count;
  const std::size_t count = banked + (partial != nullptr ? 1 : 0);
  float* scores = scratch;
  for (std::size_t token = 0; token < t; ++token) {
    const float* p = partial != nullptr ? partial + token * partial_stride : nullptr;
    float best = -std::numeric_limits<float>::infinity();
    for (std::size_t j = 0; j < banked; ++j) {
      scores[j] = detail::depth_dot(sources.row(j, token), query, d) * impl::rstd_of(sources, j, token, d, eps);
      best = std::max(best, scores[j]);
    }
    if (p != nullptr) {
      scores[banked] = detail::depth_dot(p, query, d) * depth_rstd(p, d, eps);
      best = std::max(best, scores[banked]);
    }
    float total = 0.0f;
    for (std::size_t j = 0; j < count; ++j) total += scores[j] = std::exp(scores[j] - best);
    float* o = out + token * out_stride;
    impl::clear(o, d);
    for (std::size_t j = 0; j < count; ++j)
      impl::add_scaled(o, scores[j] / total, j < banked ? sources.row(j, token) : p, d);
  }
}

/// Phase one of the two-phase block computation (§4.2) for one site: a single sweep over the
/// sources per token with online rescaling, writing the unnormalised output, the max and the sum
/// of exponentials into `state` (each site of a block calls it against the same banked blocks).
template <class Ops>
inline void depth_mix_partial_with(const depth_sources& sources, const float* query, std::size_t t, std::size_t d,
                                   float eps, const depth_partial& state) noexcept {
  using impl = detail::depth_mix_impl<Ops>;
  PITH_ASSERT(validate_depth_mix(sources, query, t, d, true) == nullptr, "depth_mix_partial: invalid arguments");
  for (std::size_t token = 0; token < t; ++token) {
    float best = -std::numeric_limits<float>::infinity(), total = 0.0f;
    float* o = state.output + token * state.output_stride;
    impl::clear(o, d);
    for (std::size_t j = 0; j < sources.count; ++j) {
      const float* v = sources.row(j, token);
      const float score = detail::depth_dot(v, query, d) * impl::rstd_of(sources, j, token, d, eps);
      if (score > best) {
        // Online rescaling keeps the sweep single-pass over the sources.
        const float rescale = std::exp(best - score);
        total *= rescale;
        impl::scale(o, rescale, o, d);
        best = score;
      }
      const float e = std::exp(score - best);
      total += e;
      impl::add_scaled(o, e, v, d);
    }
    state.max[token] = best;
    state.sum[token] = total;
  }
}

/// Phase two (§4.2): the site's input from its phase-one state and the running partial sum of its
/// own block ([t, d], rows partial_stride apart; nullptr at a block's first site, which sees the
/// banked blocks only: out = o / ℓ). With p the partial sum, s_p its score and m = max(m_q, s_p):
/// out = (e^{m_q−m}·o_q + e^{s_p−m}·p) / (e^{m_q−m}·ℓ_q + e^{s_p−m}). `out` may be state.output.
template <class Ops>
inline void depth_mix_merge_with(const depth_partial& state, const float* partial, std::size_t partial_stride,
                                 const float* query, std::size_t t, std::size_t d, float eps, float* out,
                                 std::size_t out_stride) noexcept {
  using impl = detail::depth_mix_impl<Ops>;
  PITH_ASSERT(partial == nullptr || query != nullptr, "depth_mix_merge: a partial sum needs the pseudo-query");
  for (std::size_t token = 0; token < t; ++token) {
    const float block_max = state.max[token], block_sum = state.sum[token];
    const float* o = state.output + token * state.output_stride;
    float* x = out + token * out_stride;
    if (partial == nullptr) {
      impl::scale(o, 1.0f / block_sum, x, d);
      continue;
    }
    const float* p = partial + token * partial_stride;
    const float score = detail::depth_dot(p, query, d) * depth_rstd(p, d, eps);
    const float top = std::max(block_max, score);
    const float block_weight = std::exp(block_max - top), prefix_weight = std::exp(score - top);
    const float inv = 1.0f / (block_weight * block_sum + prefix_weight);
    impl::merge(o, block_weight, p, prefix_weight, inv, x, d);
  }
}

inline namespace PITH_ISA_NAMESPACE {

/// depth_mix_with on the widest primitive set compiled for this target.
inline void depth_mix(const depth_sources& sources, const float* partial, std::size_t partial_stride,
                      const float* query, std::size_t t, std::size_t d, float eps, float* out, std::size_t out_stride,
                      float* scratch) noexcept {
  depth_mix_with<simd::native::ops>(sources, partial, partial_stride, query, t, d, eps, out, out_stride, scratch);
}

/// depth_mix_partial_with on the widest primitive set compiled for this target.
inline void depth_mix_partial(const depth_sources& sources, const float* query, std::size_t t, std::size_t d, float eps,
                              const depth_partial& state) noexcept {
  depth_mix_partial_with<simd::native::ops>(sources, query, t, d, eps, state);
}

/// depth_mix_merge_with on the widest primitive set compiled for this target.
inline void depth_mix_merge(const depth_partial& state, const float* partial, std::size_t partial_stride,
                            const float* query, std::size_t t, std::size_t d, float eps, float* out,
                            std::size_t out_stride) noexcept {
  depth_mix_merge_with<simd::native::ops>(state, partial, partial_stride, query, t, d, eps, out, out_stride);
}

}  // namespace PITH_ISA_NAMESPACE

}  // namespace pith::kernels
