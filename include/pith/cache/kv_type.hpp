// SPDX-License-Identifier: MIT
// The storage types of a KV cache's keys and values: F32 (the default, exact), F16, BF16 and Q8_0.
//
// A cache row (one key or one value of head_dim elements) is stored as kv_row_bytes(type, head_dim)
// bytes: head_dim floats, head_dim 16-bit halves, or head_dim / 32 Q8_0 blocks (f16 scale
// d = amax / 127 and 32 int8 quants, quant.hpp's block_q8_0) along the head dimension.
// Writing rounds: F16 and BF16 to nearest, ties to even; Q8_0 exactly as llama.cpp's reference
// quantizer (quantize_row_q8_0_ref: d = amax / 127, q = roundf(x / d), ties away from zero).
// Reading is exact (every stored value is a float). Relative error of one element written:
// F16 2^-11 (normal range), BF16 2^-8; Q8_0 at most half a quant step, d / 2, plus the rounding of
// d to f16 (d carries a relative error up to 2^-11, which moves q·d by up to 127·d·2^-11).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "pith/core/dtype.hpp"
#include "pith/core/error.hpp"
#include "pith/core/half.hpp"
#include "pith/core/quant.hpp"
#include "pith/simd/f16_rows.hpp"


namespace pith {

/// True for the types a KV cache can store: f32, f16, bf16, q8_0.
constexpr bool is_kv_type(dtype t) noexcept {
  return t == dtype::f32 || t == dtype::f16 || t == dtype::bf16 || t == dtype::q8_0;
}

/// Throws argument_error naming `option` unless `t` is a KV type and head_dim suits it (q8_0 stores
/// whole 32-element blocks along the head dimension: head_dim must be a multiple of 32).
inline void check_kv_type(dtype t, std::size_t head_dim, const char* option = "kv_type") {
  if (!is_kv_type(t))
    PITH_THROW(argument_error, std::string(option) + " " + std::string(dtype_name(t)) +
                                   " is not a KV cache type (f32, f16, bf16 or q8_0)");
  if (t == dtype::q8_0 && head_dim % quant::qk != 0)
    PITH_THROW(argument_error, std::string(option) + " q8_0 stores blocks of 32 elements along the head dimension; "
                                                     "head_dim " + std::to_string(head_dim) +
                                   " is not a multiple of 32");
}

/// Parses an option value: "f32", "f16", "bf16", "q8_0" (any case). Throws argument_error naming
/// `option` for anything else.
inline dtype parse_kv_type(std::string_view name, const char* option = "--kv-type") {
  const std::optional<dtype> t = dtype_from_name(name);
  if (!t || !is_kv_type(*t))
    PITH_THROW(argument_error, std::string(option) + ": '" + std::string(name) +
                                   "' is not a KV cache type (f32, f16, bf16 or q8_0)");
  return *t;
}

/// Bytes of one row of head_dim elements stored as `t` (a KV type; q8_0 requires head_dim % 32 == 0).
constexpr std::size_t kv_row_bytes(dtype t, std::size_t head_dim) noexcept {
  switch (t) {
    case dtype::f16:
    case dtype::bf16: return head_dim * 2;
    case dtype::q8_0: return head_dim / quant::qk * sizeof(quant::block_q8_0);
    default: return head_dim * sizeof(float);
  }
}

/// One Q8_0 block of 32 floats, as llama.cpp's quantize_row_q8_0_ref. A block holding a NaN or an
/// infinity (which cannot be scaled to int8) is stored as zeros with a NaN scale: it reads back as
/// NaNs, as a float cache would give non-finite scores. A block too small to scale (the inverse
/// scale overflows) is stored as zeros.
inline quant::block_q8_0 quantize_block_q8_0(const float* x) noexcept {
  float amax = 0.0f;
  bool finite = true;
  for (std::size_t i = 0; i < quant::qk; ++i) {
    const float a = std::fabs(x[i]);
    finite = finite && std::isfinite(a);
    amax = std::max(amax, a);
  }
  const float d = finite ? amax / 127.0f : std::numeric_limits<float>::quiet_NaN();
  const float id = finite && d != 0.0f ? 1.0f / d : 0.0f;
  quant::block_q8_0 b{};
  b.d = float_to_half(d);
  if (std::isfinite(id))
    for (std::size_t i = 0; i < quant::qk; ++i) b.qs[i] = static_cast<std::int8_t>(std::roundf(x[i] * id));
  return b;
}

inline namespace PITH_ISA_NAMESPACE {  // the f16 rows convert with this unit's target (simd/f16_rows.hpp)

/// Stores head_dim floats as one row of type t at `row` (kv_row_bytes(t, head_dim) bytes).
inline void kv_encode_row(dtype t, const float* x, std::size_t head_dim, std::byte* row) noexcept {
  switch (t) {
    case dtype::f16: simd::store_f16_row(x, head_dim, row); return;
    case dtype::bf16:
      for (std::size_t i = 0; i < head_dim; ++i) {
        const std::uint16_t h = float_to_bfloat16(x[i]);
        std::memcpy(row + 2 * i, &h, 2);
      }
      return;
    case dtype::q8_0:
      for (std::size_t b = 0; b < head_dim / quant::qk; ++b) {
        const quant::block_q8_0 block = quantize_block_q8_0(x + b * quant::qk);
        std::memcpy(row + b * sizeof block, &block, sizeof block);
      }
      return;
    default: std::memcpy(row, x, head_dim * sizeof(float)); return;
  }
}

/// Reads one row of type t (head_dim elements) into floats.
inline void kv_decode_row(dtype t, const std::byte* row, std::size_t head_dim, float* x) noexcept {
  switch (t) {
    case dtype::f16: simd::load_f16_row(row, head_dim, x); return;
    case dtype::bf16:
      for (std::size_t i = 0; i < head_dim; ++i) {
        std::uint16_t h;
        std::memcpy(&h, row + 2 * i, 2);
        x[i] = bfloat16_to_float(h);
      }
      return;
    case dtype::q8_0:
      for (std::size_t b = 0; b < head_dim / quant::qk; ++b) {
        quant::block_q8_0 block;
        std::memcpy(&block, row + b * sizeof block, sizeof block);
        const float d = half_to_float(block.d);
        for (std::size_t i = 0; i < quant::qk; ++i) x[b * quant::qk + i] = static_cast<float>(block.qs[i]) * d;
      }
      return;
    default: std::memcpy(x, row, head_dim * sizeof(float)); return;
  }
}

}  // namespace PITH_ISA_NAMESPACE

}  // namespace pith
