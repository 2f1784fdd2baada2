// SPDX-License-Identifier: MIT
// gemm_transposed: Y (+)= X W^T over a range of output features; one register-tiled GEMM for every primitive set.
//
// Contract. For row-major X [rows, in] (rows x_stride apart) and W [out, in] (PyTorch's Linear
// layout, rows `in` apart), gemm_transposed_with<Ops> computes, for every row i < rows and every
// output feature o in [out_begin, out_end),
//   Y[i, o] = sum_k X[i, k] W[o, k]            (accumulate == false)
//   Y[i, o] = Y[i, o] + sum_k X[i, k] W[o, k]  (accumulate == true)
// with Y's rows y_stride apart; no other element of Y is read or written. in == 0 gives zeros (or
// leaves Y unchanged when accumulating).
//
// Preconditions (asserted in debug builds): x_stride >= in, y_stride >= out_end, Y does not alias
// X or W, `scratch` holds gemm_transposed_scratch_size() floats aligned to 64 bytes and is not
// used by a concurrent call (its contents on entry do not matter). Pointers need no alignment.
// The kernel does not allocate and does not throw.
//
// Error bound. Each Y[i, o] is a float sum of the `in` products (and of the old Y when
// accumulating), in k order, rounded once per FMA: |error| <= (in + 1) u (sum_k |X[i, k] W[o, k]|
// + |Y_old[i, o]|) to first order, u = 2^-24 (Higham, "Accuracy and Stability of Numerical
// Algorithms", 4.2). tests/kernels/gemm_test.cpp checks this bound on every ISA.
//
// Algorithm: the GotoBLAS / BLIS layout with output features in SIMD lanes (Goto & van de Geijn,
// "Anatomy of high-performance matrix multiplication", TOMS 2008). For each panel of up to
// panel_width output features and each block of up to `depth` inputs, W's block is packed
// transposed into scratch: k-major, panel_width floats per k, lanes past out_end zero, built from
// W x W blocks of W's rows transposed in registers. The packed block is 32 KiB, so it stays in L1
// while every row of X streams past it. A tile of tile_rows rows x tile_vectors vectors of Y
// accumulates in registers: per k, one packed row of the panel is loaded as vectors and X[i, k]
// is broadcast for each row of the tile (X is read in place, each row sequentially). The tile is
// stored straight into Y's rows, where output features are contiguous, and reloaded for the next
// block. Tiles: 6 rows x 4 vectors (24 accumulators) on ISAs with 32 vector registers (AVX-512,
// NEON), 6 x 2 on those with 16 (AVX2, scalar). X is not packed: W's panel is the operand reused
// across all rows, and the rows of X are read once per panel.
//
// W in another storage type. The packing reads W through a row source (`Rows`): row(o) gives
// where row o starts and load(row, k) / load_partial(row, k, count) the float vector of its
// elements [k, k + W) (or the first `count` of them). float_rows reads float32 rows `in` apart;
// typed_rows.hpp's sources convert F16 and BF16 rows while packing, so the register-tiled product
// runs unchanged on float panels and the conversion is paid once per packed block, not per row
// of X.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "pith/core/assert.hpp"
#include "pith/kernels/linkage.hpp"
#include "pith/simd/simd.hpp"

namespace pith::kernels {

namespace detail {
inline constexpr std::size_t gemm_panel_floats = 8192;  // 32 KiB of packed W per (panel, block): L1-resident
}  // namespace detail

/// Floats of scratch one gemm_transposed call needs, for every ISA.
inline constexpr std::size_t gemm_transposed_scratch_size() noexcept { return detail::gemm_panel_floats; }

namespace detail {

/// Float32 rows of W, `in` floats apart: the packing's row source for gemm_transposed.
template <class Ops>
struct float_rows {
  using pointer = const float*;
  const float* w;
  std::size_t in;

  pointer row(std::size_t o) const noexcept { return w + o * in; }
  static typename Ops::vec load(pointer row, std::size_t k) noexcept { return Ops::load(row + k); }
  static typename Ops::vec load_partial(pointer row, std::size_t k, std::size_t count) noexcept {
    return Ops::load_partial(row + k, count);
  }
};

template <class Ops>
struct gemm_impl {
  using vec = typename Ops::vec;
  static constexpr std::size_t W = Ops::width;
  static constexpr std::size_t tile_rows = 6;
  static constexpr std::size_t tile_vectors = Ops::registers >= 32 ? 4 : 2;
  static constexpr std::size_t panel_width = tile_vectors * W;      // output features per panel
  static constexpr std::size_t depth = gemm_panel_floats / panel_width;  // inputs per packed block
  static_assert(depth >= 1);

  // Packs W[o0 + j, k0 + k] at panel[k * stride + j] for j < count, zero for count <= j < stride
  // (stride is a multiple of W and count > stride - W): W x W blocks of W's rows, loaded as vectors
  // (zero past count rows and past k_count inputs) and transposed in registers.
  template <class Rows>
  static void pack(const Rows& w, std::size_t o0, std::size_t count, std::size_t k0, std::size_t k_count,
                   std::size_t stride, float* panel) noexcept {
    for (std::size_t j = 0; j < stride; j += W) {
      const std::size_t block_rows = std::min(W, count - j);
      typename Rows::pointer src[W];
      for (std::size_t t = 0; t < W; ++t) src[t] = w.row(o0 + j + (t < block_rows ? t : 0));
      std::size_t k = 0;
      for (; k + W <= k_count; k += W) {
        simd::keep_scalar_loop<W>(k);
        vec block[W];
        for (std::size_t t = 0; t < W; ++t) block[t] = t < block_rows ? Rows::load(src[t], k0 + k) : Ops::zero();
        Ops::transpose(block);
        for (std::size_t u = 0; u < W; ++u) Ops::store(panel + (k + u) * stride + j, block[u]);
      }
      if (k < k_count) {
        const std::size_t rest = k_count - k;
        vec block[W];
        for (std::size_t t = 0; t < W; ++t)
          block[t] = t < block_rows ? Rows::load_partial(src[t], k0 + k, rest) : Ops::zero();
        Ops::transpose(block);
        for (std::size_t u = 0; u < rest; ++u) Ops::store(panel + (k + u) * stride + j, block[u]);
      }
    }
  }

  // Y[0, R) x [0, V W) (+)= X[0, R) x [0, k_count) times the packed panel; the last vector holds
  // `tail` lanes when Partial. load_y: add to Y's current values instead of overwriting them.
  template <std::size_t R, std::size_t V, bool Partial>
  static void tile(const float* x, std::size_t x_stride, const float* panel, std::size_t k_count, float* y,
                   std::size_t y_stride, std::size_t tail, bool load_y) noexcept {
    vec acc[R][V];
    for (std::size_t r = 0; r < R; ++r) {
      const float* row = y + r * y_stride;
      for (std::size_t v = 0; v < V; ++v) {
        if (!load_y)
          acc[r][v] = Ops::zero();
        else if (Partial && v == V - 1)
          acc[r][v] = Ops::load_partial(row + v * W, tail);
        else
          acc[r][v] = Ops::load(row + v * W);
      }
    }
    for (std::size_t k = 0; k < k_count; ++k) {
      simd::keep_scalar_loop<W>(k);
      const float* p = panel + k * (V * W);
      vec b[V];
      for (std::size_t v = 0; v < V; ++v) b[v] = Ops::load(p + v * W);
      for (std::size_t r = 0; r < R; ++r) {
        const vec a = Ops::set1(x[r * x_stride + k]);
        for (std::size_t v = 0; v < V; ++v) acc[r][v] = Ops::fmadd(a, b[v], acc[r][v]);
      }
    }
    for (std::size_t r = 0; r < R; ++r) {
      float* row = y + r * y_stride;
      for (std::size_t v = 0; v < V; ++v) {
        if (Partial && v == V - 1)
          Ops::store_partial(row + v * W, acc[r][v], tail);
        else
          Ops::store(row + v * W, acc[r][v]);
      }
    }
  }

  // One panel of `count` output features starting at o0, V = ceil(count / W) vectors wide.
  template <std::size_t V, bool Partial, class Rows>
  static void panel_product(const float* x, std::size_t rows, std::size_t in, std::size_t x_stride, const Rows& w,
                            std::size_t o0, std::size_t count, float* y, std::size_t y_stride, bool accumulate,
                            float* panel) noexcept {
    constexpr std::size_t stride = V * W;
    const std::size_t tail = count - (V - 1) * W;
    float* y0 = y + o0;
    for (std::size_t k0 = 0; k0 < in; k0 += depth) {
      const std::size_t k_count = std::min(depth, in - k0);
      pack(w, o0, count, k0, k_count, stride, panel);
      const bool load_y = accumulate || k0 > 0;
      const float* xk = x + k0;
      std::size_t i = 0;
      for (; i + tile_rows <= rows; i += tile_rows)
        tile<tile_rows, V, Partial>(xk + i * x_stride, x_stride, panel, k_count, y0 + i * y_stride, y_stride, tail, load_y);
      const float* xt = xk + i * x_stride;
      float* yt = y0 + i * y_stride;
      switch (rows - i) {
        case 1: tile<1, V, Partial>(xt, x_stride, panel, k_count, yt, y_stride, tail, load_y); break;
        case 2: tile<2, V, Partial>(xt, x_stride, panel, k_count, yt, y_stride, tail, load_y); break;
        case 3: tile<3, V, Partial>(xt, x_stride, panel, k_count, yt, y_stride, tail, load_y); break;
        case 4: tile<4, V, Partial>(xt, x_stride, panel, k_count, yt, y_stride, tail, load_y); break;
        case 5: tile<5, V, Partial>(xt, x_stride, panel, k_count, yt, y_stride, tail, load_y); break;
        default: break;
      }
    }
  }

  template <std::size_t V, class Rows>
  static void panel_dispatch(const float* x, std::size_t rows, std::size_t in, std::size_t x_stride, const Rows& w,
                             std::size_t o0, std::size_t count, float* y, std::size_t y_stride, bool accumulate,
                             float* panel) noexcept {
    if (count % W != 0)
      panel_product<V, true>(x, rows, in, x_stride, w, o0, count, y, y_stride, accumulate, panel);
    else
      panel_product<V, false>(x, rows, in, x_stride, w, o0, count, y, y_stride, accumulate, panel);
  }

  template <class Rows>
  static void run(const float* x, std::size_t rows, std::size_t in, std::size_t x_stride, const Rows& w,
                  std::size_t out_begin, std::size_t out_end, float* y, std::size_t y_stride, bool accumulate,
                  float* scratch) noexcept {
    if (rows == 0 || out_begin >= out_end) return;
    if (in == 0) {
      if (!accumulate)
        for (std::size_t i = 0; i < rows; ++i) std::fill(y + i * y_stride + out_begin, y + i * y_stride + out_end, 0.0f);
      return;
    }
    for (std::size_t o0 = out_begin; o0 < out_end; o0 += panel_width) {
      const std::size_t count = std::min(panel_width, out_end - o0);
      const std::size_t vectors = (count + W - 1) / W;
      if constexpr (tile_vectors == 4) {
        switch (vectors) {
          case 1: panel_dispatch<1>(x, rows, in, x_stride, w, o0, count, y, y_stride, accumulate, scratch); break;
          case 2: panel_dispatch<2>(x, rows, in, x_stride, w, o0, count, y, y_stride, accumulate, scratch); break;
          case 3: panel_dispatch<3>(x, rows, in, x_stride, w, o0, count, y, y_stride, accumulate, scratch); break;
          default: panel_dispatch<4>(x, rows, in, x_stride, w, o0, count, y, y_stride, accumulate, scratch); break;
        }
      } else {
        static_assert(tile_vectors == 2);
        if (vectors == 1)
          panel_dispatch<1>(x, rows, in, x_stride, w, o0, count, y, y_stride, accumulate, scratch);
        else
          panel_dispatch<2>(x, rows, in, x_stride, w, o0, count, y, y_stride, accumulate, scratch);
      }
    }
  }
};

}  // namespace detail

/// gemm_transposed with the primitive set `Ops` (simd::scalar::ops, simd::avx512::ops, ...); see
/// the file comment for the contract.
template <class Ops>
inline void gemm_transposed_with(const float* x, std::size_t rows, std::size_t in, std::size_t x_stride, const float* w,
                                 std::size_t out_begin, std::size_t out_end, float* y, std::size_t y_stride,
                                 bool accumulate, float* scratch) noexcept {
  PITH_ASSERT(rows == 0 || x_stride >= in, "gemm_transposed: x_stride < in");
  PITH_ASSERT(rows <= 1 || y_stride >= out_end, "gemm_transposed: y_stride < out_end");
  PITH_ASSERT(reinterpret_cast<std::uintptr_t>(scratch) % 64 == 0, "gemm_transposed: scratch must be 64-byte aligned");
  detail::gemm_impl<Ops>::run(x, rows, in, x_stride, detail::float_rows<Ops>{w, in}, out_begin, out_end, y, y_stride,
                              accumulate, scratch);
}

/// gemm_transposed_with for W read through a row source `Rows` (detail::float_rows, or a storage
/// type's source from typed_rows.hpp): W's rows [out_begin, out_end) of `in` elements each. Same
/// contract otherwise; the products are those of the float values the source converts W to.
template <class Ops, class Rows>
inline void gemm_transposed_rows_with(const float* x, std::size_t rows, std::size_t in, std::size_t x_stride,
                                      const Rows& w, std::size_t out_begin, std::size_t out_end, float* y,
                                      std::size_t y_stride, bool accumulate, float* scratch) noexcept {
  PITH_ASSERT(rows == 0 || x_stride >= in, "gemm_transposed: x_stride < in");
  PITH_ASSERT(rows <= 1 || y_stride >= out_end, "gemm_transposed: y_stride < out_end");
  PITH_ASSERT(reinterpret_cast<std::uintptr_t>(scratch) % 64 == 0, "gemm_transposed: scratch must be 64-byte aligned");
  detail::gemm_impl<Ops>::run(x, rows, in, x_stride, w, out_begin, out_end, y, y_stride, accumulate, scratch);
}

inline namespace PITH_ISA_NAMESPACE {

/// gemm_transposed with the widest primitive set compiled for this target.
PITH_KERNEL_ENTRY void gemm_transposed(const float* x, std::size_t rows, std::size_t in, std::size_t x_stride,
                                       const float* w, std::size_t out_begin, std::size_t out_end, float* y,
                                       std::size_t y_stride, bool accumulate, float* scratch) noexcept
#if PITH_KERNEL_DEFINITIONS
{
  gemm_transposed_with<simd::native::ops>(x, rows, in, x_stride, w, out_begin, out_end, y, y_stride, accumulate, scratch);
}
#else
    ;
#endif

}  // namespace PITH_ISA_NAMESPACE

}  // namespace pith::kernels
