// SPDX-License-Identifier: MIT
// matvec_transposed: y (+)= W x for one activation row, W read once in its storage type and
// converted in registers (the decode step, bound by how fast W streams from memory).
//
// Contract. For x [in] and W's rows [begin, end) of `in` elements read through a row source
// (typed_rows.hpp), y[o] = sum_k W[o, k] x[k] (accumulate == false) or y[o] + that sum
// (accumulate == true) for every o in [begin, end); nothing else of y is read or written. in == 0
// gives zeros (or leaves y unchanged). y must not alias x or W; no alignment is needed. The kernels
// do not allocate and do not throw.
//
// Algorithm. W's rows one after the other, each with two accumulators over alternate vectors of
// k, the last vector partial; the two are added and reduced horizontally once per row. W is read
// as one sequential stream, which the hardware prefetchers follow at full speed. Interleaving
// several rows (x's vectors reused across them) halves the rate out of cache: on AMD Zen 4,
// W [64000 x 512] F16 streams at 17-18 GB/s one row at a time and at 8-11 GB/s four or two rows
// at a time (with or without software prefetch); with W in L2 one row at a time is as fast, the
// conversion (vcvtph2ps, 16 weights per two cycles) being the limit there. The kernels take
// detail::matvec_group_rows rows per pass over x, for a target where interleaving pays.
//
// Error bound: each y[o] is a float sum of the `in` exact products of x and converted W (plus the
// old y), rounded once per FMA and addition: |error| <= (in + 1) u (sum_k |W[o, k] x[k]| + |y_old|)
// to first order, u = 2^-24 (Higham, "Accuracy and Stability of Numerical Algorithms", 4.2).
//
// matvec_bf16_dot (AVX512_BF16 only): BF16 W through vdpbf16ps, which multiplies bfloat16 pairs.
// x is split once per call into x_hi = bf16(x) and x_lo = bf16(x - x_hi), and each row gets two
// dot products, W x_hi + W x_lo: |x - x_hi - x_lo| <= 2^-16 |x| (each rounding to bfloat16 keeps
// 8 significant bits), so the bound above gains 2^-16 sum_k |W[o, k] x[k]|. vdpbf16ps treats
// subnormal inputs as zero (bfloat16 subnormals of W, x_lo below 2^-126) and an infinite x[k]
// gives NaN (x_lo = inf - inf).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "pith/simd/simd.hpp"

namespace pith::kernels {

namespace detail {

/// Rows of W per pass over x (see the file comment).
inline constexpr std::size_t matvec_group_rows = 1;

template <class Ops, std::size_t Group, class Rows>
inline void matvec_group(const float* x, std::size_t in, const Rows& w, std::size_t o, float* y,
                         bool accumulate) noexcept {
  using vec = typename Ops::vec;
  constexpr std::size_t W = Ops::width;
  typename Rows::pointer row[Group];
  vec even[Group], odd[Group];
  for (std::size_t r = 0; r < Group; ++r) {
    row[r] = w.row(o + r);
    even[r] = Ops::zero();
    odd[r] = Ops::zero();
  }
  std::size_t k = 0;
  for (; k + 2 * W <= in; k += 2 * W) {
    simd::keep_scalar_loop<W>(k);
    const vec x0 = Ops::load(x + k), x1 = Ops::load(x + k + W);
    for (std::size_t r = 0; r < Group; ++r) {
      even[r] = Ops::fmadd(Rows::load(row[r], k), x0, even[r]);
      odd[r] = Ops::fmadd(Rows::load(row[r], k + W), x1, odd[r]);
    }
  }
  if (k + W <= in) {
    const vec x0 = Ops::load(x + k);
    for (std::size_t r = 0; r < Group; ++r) even[r] = Ops::fmadd(Rows::load(row[r], k), x0, even[r]);
    k += W;
  }
  if (k < in) {
    const std::size_t rest = in - k;
    const vec x0 = Ops::load_partial(x + k, rest);
    for (std::size_t r = 0; r < Group; ++r) odd[r] = Ops::fmadd(Rows::load_partial(row[r], k, rest), x0, odd[r]);
  }
  for (std::size_t r = 0; r < Group; ++r) {
    const float sum = Ops::reduce_add(Ops::add(even[r], odd[r]));
    y[o + r] = accumulate ? y[o + r] + sum : sum;
  }
}

}  // namespace detail

/// y[o] (+)= sum_k W[o, k] x[k] for o in [begin, end) with the primitive set `Ops`, W's rows read
/// through `w` (see the file comment).
template <class Ops, class Rows>
inline void matvec_transposed_with(const float* x, std::size_t in, const Rows& w, std::size_t begin, std::size_t end,
                                   float* y, bool accumulate) noexcept {
  constexpr std::size_t group = detail::matvec_group_rows;
  std::size_t o = begin;
  for (; o + group <= end; o += group) detail::matvec_group<Ops, group>(x, in, w, o, y, accumulate);
  for (; o < end; ++o) detail::matvec_group<Ops, 1>(x, in, w, o, y, accumulate);
}

#if defined(PITH_SIMD_HAS_AVX512_BF16_DOT)

/// bfloat16 elements of scratch matvec_bf16_dot needs for `in` inputs (x_hi and x_lo, padded).
inline constexpr std::size_t matvec_bf16_dot_scratch_size(std::size_t in) noexcept {
  return 2 * ((in + 31) / 32 * 32);
}

namespace detail {

// Four accumulators per row (x_hi and x_lo products of alternate 32-element steps) cover the
// latency of vdpbf16ps with W in cache.
template <std::size_t Group>
inline void matvec_bf16_dot_group(const std::uint16_t* x_hi, const std::uint16_t* x_lo, std::size_t in,
                                  const std::byte* w, std::size_t row_bytes, std::size_t o, float* y,
                                  bool accumulate) noexcept {
  using dot = simd::avx512::bf16_dot;
  using ops = simd::avx512::ops;
  constexpr std::size_t E = dot::elements;
  const std::uint16_t* row[Group];
  ops::vec hi[Group][2], lo[Group][2];
  for (std::size_t r = 0; r < Group; ++r) {
    row[r] = reinterpret_cast<const std::uint16_t*>(w + (o + r) * row_bytes);
    hi[r][0] = hi[r][1] = lo[r][0] = lo[r][1] = ops::zero();
  }
  std::size_t k = 0;
  for (; k + 2 * E <= in; k += 2 * E) {
    for (std::size_t u = 0; u < 2; ++u) {
      const dot::pairs xh = dot::load(x_hi + k + u * E), xl = dot::load(x_lo + k + u * E);
      for (std::size_t r = 0; r < Group; ++r) {
        const dot::pairs wv = dot::load(row[r] + k + u * E);
        hi[r][u] = dot::dot(hi[r][u], wv, xh);
        lo[r][u] = dot::dot(lo[r][u], wv, xl);
      }
    }
  }
  for (; k < in; k += E) {
    // x_hi and x_lo are zero past `in`; W's elements past its row are not read.
    const dot::pairs xh = dot::load(x_hi + k), xl = dot::load(x_lo + k);
    for (std::size_t r = 0; r < Group; ++r) {
      const dot::pairs wv = in - k >= E ? dot::load(row[r] + k) : dot::load_partial(row[r] + k, in - k);
      hi[r][0] = dot::dot(hi[r][0], wv, xh);
      lo[r][0] = dot::dot(lo[r][0], wv, xl);
    }
  }
  for (std::size_t r = 0; r < Group; ++r) {
    const float sum = ops::reduce_add(ops::add(ops::add(hi[r][0], hi[r][1]), ops::add(lo[r][0], lo[r][1])));
    y[o + r] = accumulate ? y[o + r] + sum : sum;
  }
}

}  // namespace detail

/// matvec_transposed_with for BF16 rows of W (`row_bytes` apart from `w`, at even addresses)
/// through vdpbf16ps with x split in two bfloat16 parts (see the file comment for the error).
/// `scratch` holds matvec_bf16_dot_scratch_size(in) bfloat16 (any contents, any alignment).
inline void matvec_bf16_dot(const float* x, std::size_t in, const std::byte* w, std::size_t row_bytes,
                            std::size_t begin, std::size_t end, float* y, bool accumulate,
                            std::uint16_t* scratch) noexcept {
  using dot = simd::avx512::bf16_dot;
  using ops = simd::avx512::ops;
  constexpr std::size_t E = dot::elements, W = ops::width;
  const std::size_t padded = (in + E - 1) / E * E;
  std::uint16_t* x_hi = scratch;
  std::uint16_t* x_lo = scratch + padded;
  for (std::size_t k = 0; k < padded; k += E) {
    const std::size_t rest = in - k;  // >= 1
    const ops::vec low = rest >= W ? ops::load(x + k) : ops::load_partial(x + k, rest);
    const ops::vec high = rest >= 2 * W ? ops::load(x + k + W)
                          : rest > W    ? ops::load_partial(x + k + W, rest - W)
                                        : ops::zero();
    const dot::pairs h = dot::round(low, high);
    ops::vec h_low, h_high;
    dot::widen(h, h_low, h_high);
    dot::store(x_hi + k, h);
    dot::store(x_lo + k, dot::round(ops::sub(low, h_low), ops::sub(high, h_high)));
  }
  constexpr std::size_t group = detail::matvec_group_rows;
  std::size_t o = begin;
  for (; o + group <= end; o += group) detail::matvec_bf16_dot_group<group>(x_hi, x_lo, in, w, row_bytes, o, y, accumulate);
  for (; o < end; ++o) detail::matvec_bf16_dot_group<1>(x_hi, x_lo, in, w, row_bytes, o, y, accumulate);
}

#endif

}  // namespace pith::kernels
