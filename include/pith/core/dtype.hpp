// SPDX-License-Identifier: MIT
// dtype: the storage types of weights and their block geometry.
//
// A row of a matrix is a sequence of blocks: a block holds dtype_block_elements(t) consecutive
// elements of the row in dtype_block_bytes(t) bytes. The element types (F32, F16, BF16) have
// blocks of one element. The block-quantized types are GGUF's (llama.cpp's ggml types, ids and
// layouts in ../shared/notes/quantization.md §1): 32-element blocks with one scale (Q4_0 ... Q8_0,
// IQ4_NL) and 256-element super-blocks with per-sub-block scales (the K-quants, IQ4_XS). Q8_1 and
// Q8_K are the activation formats of the integer dot products; they do not occur in files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace pith {

/// Storage types of weights. Little-endian, as in safetensors and GGUF files.
enum class dtype : std::uint8_t {
  f32,   // IEEE binary32
  f16,   // IEEE binary16
  bf16,  // bfloat16: the upper half of a binary32
  q4_0,  // 32 elements: f16 scale, 4-bit quants
  q4_1,  // 32 elements: f16 scale and min, 4-bit quants
  q5_0,  // 32 elements: f16 scale, 5-bit quants
  q5_1,  // 32 elements: f16 scale and min, 5-bit quants
  q8_0,  // 32 elements: f16 scale, 8-bit quants
  q8_1,  // 32 elements: f16 scale, f16 scale x sum, 8-bit quants (activations)
  q2_k,  // 256 elements: 16 sub-blocks with 4-bit scales and mins, 2-bit quants
  q3_k,  // 256 elements: 16 sub-blocks with 6-bit scales, 3-bit quants
  q4_k,  // 256 elements: 8 sub-blocks with 6-bit scales and mins, 4-bit quants
  q5_k,  // 256 elements: 8 sub-blocks with 6-bit scales and mins, 5-bit quants
  q6_k,  // 256 elements: 16 sub-blocks with 8-bit scales, 6-bit quants
  q8_k,  // 256 elements: f32 scale, 8-bit quants, 16 int16 partial sums (activations)
  iq4_nl,  // 32 elements: f16 scale, 4-bit indices into a non-linear table
  iq4_xs,  // 256 elements: 8 sub-blocks with 6-bit scales, IQ4_NL indices
};

/// Every dtype, in enum order.
inline constexpr dtype all_dtypes[] = {dtype::f32,  dtype::f16,  dtype::bf16, dtype::q4_0,   dtype::q4_1,  dtype::q5_0,
                                       dtype::q5_1, dtype::q8_0, dtype::q8_1, dtype::q2_k,   dtype::q3_k,  dtype::q4_k,
                                       dtype::q5_k, dtype::q6_k, dtype::q8_k, dtype::iq4_nl, dtype::iq4_xs};

/// True for the block-quantized types (everything but F32, F16 and BF16).
constexpr bool dtype_is_quantized(dtype t) noexcept { return t != dtype::f32 && t != dtype::f16 && t != dtype::bf16; }

/// True for the types that occur only as quantized activations (Q8_1, Q8_K).
constexpr bool dtype_is_activation_only(dtype t) noexcept { return t == dtype::q8_1 || t == dtype::q8_k; }

/// Elements per block of `t` (1 for the element types).
constexpr std::size_t dtype_block_elements(dtype t) noexcept {
  switch (t) {
    case dtype::f32:
    case dtype::f16:
    case dtype::bf16: return 1;
    case dtype::q4_0:
    case dtype::q4_1:
    case dtype::q5_0:
    case dtype::q5_1:
    case dtype::q8_0:
    case dtype::q8_1:
    case dtype::iq4_nl: return 32;
    case dtype::q2_k:
    case dtype::q3_k:
    case dtype::q4_k:
    case dtype::q5_k:
    case dtype::q6_k:
    case dtype::q8_k:
    case dtype::iq4_xs: return 256;
  }
  return 1;
}

/// Bytes per block of `t`.
constexpr std::size_t dtype_block_bytes(dtype t) noexcept {
  switch (t) {
    case dtype::f32: return 4;
    case dtype::f16:
    case dtype::bf16: return 2;
    case dtype::q4_0: return 18;
    case dtype::q4_1: return 20;
    case dtype::q5_0: return 22;
    case dtype::q5_1: return 24;
    case dtype::q8_0: return 34;
    case dtype::q8_1: return 36;
    case dtype::q2_k: return 84;
    case dtype::q3_k: return 110;
    case dtype::q4_k: return 144;
    case dtype::q5_k: return 176;
    case dtype::q6_k: return 210;
    case dtype::q8_k: return 292;
    case dtype::iq4_nl: return 18;
    case dtype::iq4_xs: return 136;
  }
  return 4;
}

/// The name GGUF (and safetensors, for the element types) gives the type: "F32", "Q4_K", ...
constexpr std::string_view dtype_name(dtype t) noexcept {
  switch (t) {
    case dtype::f32: return "F32";
    case dtype::f16: return "F16";
    case dtype::bf16: return "BF16";
    case dtype::q4_0: return "Q4_0";
    case dtype::q4_1: return "Q4_1";
    case dtype::q5_0: return "Q5_0";
    case dtype::q5_1: return "Q5_1";
    case dtype::q8_0: return "Q8_0";
    case dtype::q8_1: return "Q8_1";
    case dtype::q2_k: return "Q2_K";
    case dtype::q3_k: return "Q3_K";
    case dtype::q4_k: return "Q4_K";
    case dtype::q5_k: return "Q5_K";
    case dtype::q6_k: return "Q6_K";
    case dtype::q8_k: return "Q8_K";
    case dtype::iq4_nl: return "IQ4_NL";
    case dtype::iq4_xs: return "IQ4_XS";
  }
  return "?";
}

/// The dtype named `name` (case-insensitive: "q4_k", "Q4_K", "bf16"), if any.
constexpr std::optional<dtype> dtype_from_name(std::string_view name) noexcept {
  const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
  for (dtype t : all_dtypes) {
    const std::string_view n = dtype_name(t);
    if (n.size() != name.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < n.size() && same; ++i) same = lower(n[i]) == lower(name[i]);
    if (same) return t;
  }
  return std::nullopt;
}

/// The ggml type id of `t` (ggml.h's enum, the `type` field of a GGUF tensor).
constexpr std::uint32_t dtype_ggml_id(dtype t) noexcept {
  switch (t) {
    case dtype::f32: return 0;
    case dtype::f16: return 1;
    case dtype::q4_0: return 2;
    case dtype::q4_1: return 3;
    case dtype::q5_0: return 6;
    case dtype::q5_1: return 7;
    case dtype::q8_0: return 8;
    case dtype::q8_1: return 9;
    case dtype::q2_k: return 10;
    case dtype::q3_k: return 11;
    case dtype::q4_k: return 12;
    case dtype::q5_k: return 13;
    case dtype::q6_k: return 14;
    case dtype::q8_k: return 15;
    case dtype::iq4_nl: return 20;
    case dtype::iq4_xs: return 23;
    case dtype::bf16: return 30;
  }
  return 0;
}

/// The dtype of ggml type id `id`, if pith has it.
constexpr std::optional<dtype> dtype_from_ggml_id(std::uint32_t id) noexcept {
  for (dtype t : all_dtypes)
    if (dtype_ggml_id(t) == id) return t;
  return std::nullopt;
}

/// Bytes of one row of `cols` elements (cols a multiple of the block size).
constexpr std::size_t dtype_row_bytes(dtype t, std::size_t cols) noexcept {
  return cols / dtype_block_elements(t) * dtype_block_bytes(t);
}

}  // namespace pith
