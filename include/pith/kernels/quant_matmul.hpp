// SPDX-License-Identifier: MIT
// Y (+)= X W^T for block-quantized W: X quantized once per call to W's activation format
// (quant_dot.hpp), then integer dot products per (W row, X row).
//
// Decode (one row of X): W's rows one after the other, each streamed once, the row
// quant_prefetch_bytes() ahead prefetched (on CPUs whose hardware prefetcher needs it). Prefill
// (several rows): with 512-bit VNNI and a type of quant_packed.hpp, W repacked 32 rows at a time;
// otherwise W's rows in tiles of quant_tile_rows that stay in L2 while groups of quant_group_rows
// rows of X pass over them; every W block is decoded once per group (quant_dot_rows<NX>).
//
// Error: that of X's 8-bit quantization (each x within half a step of its block, note §3.3),
// plus float roundings of the per-block scale products and their sum (quant_dot.hpp).
//
// Measured on one core of an AMD EPYC (Zen 4, AVX512-VNNI, 32 MB L3) shared with other jobs
// (pith_bench_kernels, BM_qmatvec_* / BM_qgemm_*; single-core read bandwidth measured 16-24 GB/s
// from run to run under that load, 22.3 GB/s idle):
//   decode, LM head [32000 x 2048] (37-70 MB, beyond L3), GB/s of W: Q8_0 17-22, Q6_K 16-18,
//     Q5_K 15-16, Q4_K 12-17, Q4_0 12-15; with W in L3 ([5632 x 2048], [2048 x 5632]): Q8_0
//     24-33, Q6_K 22-28, Q4_K 19-24, Q5_K 18-21, Q4_0 13-17 (Q4_0 is bound by its instructions,
//     about 16 per block of 18 bytes). On one idle core since: Q4_0's four-block loop (quant_dot.hpp)
//     19.6 -> 23.3 GB/s with W in L3; the prefetch into L2 8 KB ahead (quant_prefetch_bytes())
//     took W beyond L3 from 14-16 to 18-25 GB/s.
//   prefill, 512 x 2048 x 2048, GOP/s (2 per multiply-add): Q6_K 127, Q4_K 124, Q8_0 116, Q5_K
//     112, Q4_0 109, against pith's F16 GEMM at 98 GFLOP/s in the same run, an FMA peak of 115
//     GFLOP/s and a vpdpbusd peak of 460-470 GOP/s (BM_int8_peak): 0.23-0.27 of the int8 peak.
//     Groups of 8 rows (4 on 16-register ISAs) took Q4_K from 96 to 122.
//   The 1.1B TinyLlama-shaped random models (pith_bench_gguf, one idle core, read bandwidth 23.5
//   GB/s): decode Q4_0 31.5 tok/s (18.9 GB/s of weights, 0.81 of the read bandwidth), Q4_K_M 26.2
//   (16.5, 0.70), Q8_0 19.3 (21.2, 0.90); an earlier run 33.3, 29.1, 19.1; before the two changes
//   above 20.8 and 22.4 tok/s for Q4_0 and Q4_K_M. Prefill of 512 tokens Q4_K_M 59.4 tok/s (115
//   GOP/s), Q4_0 52.4 (102), Q8_0 47.6 (92) with the group loop below; the packed tiles of
//   quant_packed.hpp (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K with 512-bit VNNI, X of min_rows rows or more)
//   took them to 129.6, 130.1 and 125.4 tok/s on one core of an Intel Xeon (FMA peak 216 GFLOP/s,
//   int8 peak 779 GOP/s), where the kernel went from 81-99 to 262-310 GOP/s (BM_qgemm_*).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <type_traits>
#include <utility>

#include "pith/core/aligned_buffer.hpp"
#include "pith/core/parallel.hpp"
#include "pith/core/quant.hpp"
#include "pith/core/tensor.hpp"
#include "pith/kernels/linkage.hpp"
#include "pith/kernels/quant_dot.hpp"
#include "pith/kernels/quant_packed.hpp"
#include "pith/simd/simd.hpp"

namespace pith::kernels {

namespace quant_prefetch_detail {
/// The default of quant_prefetch_bytes() for the running CPU: 0 (no software prefetch) on AMD
/// family 0x1A (Zen 5), 8192 elsewhere.
///
/// Decode can prefetch the W row this many bytes ahead (rounded up to whole rows) into L2
/// (prefetcht1 / prefetcht2) while it multiplies the current one. On a Zen 4 and on an Intel Xeon
/// (Sapphire Rapids class) the integer kernels leave too few loads in flight for the hardware
/// prefetcher alone to keep DRAM busy. One idle Zen 4 core, W [100000 x 2048] (115-220 MB), median
/// GB/s of 7 alternating passes: into L1 4096 bytes ahead Q4_0 15.2, Q4_K 13.7, Q8_0 15.9, Q6_K
/// 16.9; none Q4_0 15.7, Q4_K 18.0; into L2 4608 bytes ahead Q4_0 20.1, Q4_K 18.6, Q8_0 22.4, Q6_K
/// 20.9; 8192 bytes ahead Q4_0 19.5, Q4_K 17.6, Q8_0 24.7, Q6_K 21.9 (passes vary by ±2 GB/s); on
/// the Xeon 8 KB into L2 was the best of 0 / 4 / 8 / 16 / 32 KB and L1. On a Zen 5 the hardware
/// prefetcher keeps up and the software prefetches only cost: every layer matrix of the 1.1B
/// TinyLlama-shaped files in one pass (1.03 GB of Q8_0, 0.54 GB of Q4_0), GB/s of W, passes
/// alternated: 8 KB into L2 Q8_0 17.5, Q4_0 15.2, Q4_K_M 15.5; 8 KB into L1 Q8_0 23.0, Q4_0 16.6,
/// Q4_K_M 15.6; none Q8_0 24.2-28.9, Q4_0 20.7-24.4, Q4_K_M 16.5-17.9.
inline std::size_t default_bytes() noexcept {
  const simd::cpu_family cpu = simd::x86_cpu_family();
  return cpu.amd && cpu.family >= 0x1A ? 0 : 8192;
}
inline std::atomic<std::size_t>& bytes() noexcept {
  static std::atomic<std::size_t> value{default_bytes()};
  return value;
}
}  // namespace quant_prefetch_detail

/// How far ahead decode (one row of X times a quantized W) prefetches W into L2, in bytes; 0
/// leaves W to the hardware prefetcher. The default depends on the CPU (quant_prefetch_detail);
/// set_quant_prefetch_bytes changes it for every later product (results do not depend on it).
inline std::size_t quant_prefetch_bytes() noexcept {
  return quant_prefetch_detail::bytes().load(std::memory_order_relaxed);
}
inline void set_quant_prefetch_bytes(std::size_t bytes) noexcept {
  quant_prefetch_detail::bytes().store(bytes, std::memory_order_relaxed);
}

// Every function here is compiled for the including unit's ISA (even the scalar ones, which the
// compiler vectorizes): the ISA's inline namespace keeps units built for different ISAs apart.
inline namespace PITH_ISA_NAMESPACE {

/// Rows of X whose products share one decoding of each W block: 8 where the ISA has 32 vector
/// registers (their accumulators stay in registers), else 4.
template <class Ops>
inline constexpr std::size_t quant_group_rows = Ops::registers >= 32 ? 8 : 4;
/// W rows per tile in the prefill loop: 64 rows of 2048-5632 Q4_K-Q8_0 values are 74-380 KB, in L2.
inline constexpr std::size_t quant_tile_rows = 64;

/// Quantizes X [rows, cols] (rows x_stride apart) for weights of type `w` into `buffer` (grown on
/// demand: allocates only when larger than before). `parallel` spreads the rows over the pool
/// (parallel_for; a prefill of 512 rows of 2048 is about a tenth of the product's time on one
/// thread, worth sharing).
inline quantized_rows quantize_activations(const float* x, std::size_t rows, std::size_t x_stride, std::size_t cols,
                                           dtype w, aligned_buffer<std::byte>& buffer, bool parallel = false) {
  const dtype act = activation_type(w);
  const std::size_t stride = activation_row_bytes(act, cols);
  if (buffer.size() < rows * stride) buffer.resize(rows * stride);
  std::byte* data = buffer.data();
  const auto quantize_rows = [&](std::size_t first, std::size_t last) {
    for (std::size_t i = first; i < last; ++i)
      quantize_activation_row(act, x + i * x_stride, cols, data + i * stride, w == dtype::q4_0);
  };
  if (parallel && rows > 1)
    parallel_for(rows, quantize_rows, grain_for_work(cols * 4));
  else
    quantize_rows(0, rows);
  return {act, rows, cols, stride, data};
}

namespace quant_detail {

template <class Ops, dtype T, std::size_t NX>
inline void quant_group(const quantized_rows& xq, std::size_t first, const tensor_view& w, std::size_t begin,
                        std::size_t end, float* y, std::size_t y_stride, bool accumulate) noexcept {
  activation_row a[NX];
  for (std::size_t r = 0; r < NX; ++r) a[r] = xq.row(first + r);
  const std::size_t row_bytes = dtype_row_bytes(T, w.cols());
  const std::size_t prefetch = NX == 1 ? quant_prefetch_bytes() : 0;
  const std::size_t ahead = std::max<std::size_t>(1, (prefetch + row_bytes - 1) / row_bytes);
  for (std::size_t o = begin; o < end; ++o) {
#if defined(__GNUC__)
    if (prefetch != 0 && o + ahead < w.rows()) {
      const std::byte* next = w.row(o + ahead);
      for (std::size_t offset = 0; offset < row_bytes; offset += 64) __builtin_prefetch(next + offset, 0, 1);
    }
#endif
    float out[NX];
    quant_dot_rows<Ops, T, NX>(w.row(o), a, xq.cols, out);
    for (std::size_t r = 0; r < NX; ++r) {
      float& target = y[(first + r) * y_stride + o];
      target = accumulate ? target + out[r] : out[r];
    }
  }
}

/// The last `count` (< sizeof...(N) + 1) rows from `first`, in one group of that many.
template <class Ops, dtype T, std::size_t... N>
inline void quant_group_tail(std::size_t count, const quantized_rows& xq, std::size_t first, const tensor_view& w,
                             std::size_t begin, std::size_t end, float* y, std::size_t y_stride, bool accumulate,
                             std::index_sequence<N...>) noexcept {
  ((count == N + 1 ? quant_group<Ops, T, N + 1>(xq, first, w, begin, end, y, y_stride, accumulate) : void()), ...);
}

}  // namespace quant_detail

/// Y[:, begin:end] (+)= X W[begin:end, :]^T for quantized W, X already quantized to
/// activation_type(w.type()) (quantize_activations). Does not allocate.
template <class Ops>
inline void quant_matmul_range_with(const quantized_rows& xq, const tensor_view& w, std::size_t begin, std::size_t end,
                                    float* y, std::size_t y_stride, bool accumulate) noexcept {
  quant::visit_quantized(w.type(), [&](auto type) {
    constexpr dtype T = decltype(type)::value;
    if constexpr (dtype_is_activation_only(T)) {
      return;  // not a weight type (tensor views of weights never hold one)
    } else {
      if (xq.rows == 1) {
        quant_detail::quant_group<Ops, T, 1>(xq, 0, w, begin, end, y, y_stride, accumulate);
        return;
      }
#if defined(PITH_QUANT_PACKED) && defined(PITH_SIMD_HAS_AVX512)
      if constexpr (std::is_same_v<Ops, simd::avx512::ops> && quant_detail::packed::has_packed_kernel<T>) {
        if (xq.rows >= quant_detail::packed::min_rows &&
            quant_detail::packed::matmul_range<T>(xq, w, begin, end, y, y_stride, accumulate))
          return;
      }
#endif
      for (std::size_t tile = begin; tile < end; tile += quant_tile_rows) {
        const std::size_t tile_end = std::min(end, tile + quant_tile_rows);
        constexpr std::size_t group = quant_group_rows<Ops>;
        std::size_t i = 0;
        for (; i + group <= xq.rows; i += group)
          quant_detail::quant_group<Ops, T, group>(xq, i, w, tile, tile_end, y, y_stride, accumulate);
        quant_detail::quant_group_tail<Ops, T>(xq.rows - i, xq, i, w, tile, tile_end, y, y_stride, accumulate,
                                               std::make_index_sequence<group - 1>{});
      }
    }
  });
}

/// quant_matmul_range_with the widest primitive set compiled for this target.
PITH_KERNEL_ENTRY void quant_matmul_range(const quantized_rows& xq, const tensor_view& w, std::size_t begin,
                                          std::size_t end, float* y, std::size_t y_stride, bool accumulate) noexcept
#if PITH_KERNEL_DEFINITIONS
{
  quant_matmul_range_with<simd::native::ops>(xq, w, begin, end, y, y_stride, accumulate);
}
#else
    ;
#endif

}  // namespace PITH_ISA_NAMESPACE
}  // namespace pith::kernels
