// SPDX-License-Identifier: MIT
// Row sources over a tensor_view's rows in their storage type: the rows of W as float vectors of a
// primitive set, converted in registers, for the matrix-vector kernel and the GEMM's packing.
//
// A row source has `pointer` (where a row starts), row(o), and load(row, k) / load_partial(row, k,
// count): elements [k, k + width) of the row as one float vector (the first `count` < width of
// them, other lanes 0). A source converts one block of a row at a time; for F32, F16 and BF16 a
// block is one element, so any k is a block boundary. A block type (GGUF's Q8_0, 32 elements with
// a scale) gets a source of the same shape whose load converts the block holding k; the kernels
// then step k by whole blocks.
//
// Preconditions: F16 and BF16 rows start at even addresses; F32 rows may start anywhere (they are
// read with unaligned loads). Conversions are exact (every F16 and BF16 value is a float).
#pragma once

#include <cstddef>
#include <cstdint>

#include "pith/core/tensor.hpp"

namespace pith::kernels {

template <class Ops, dtype Type>
struct typed_rows;

/// Float32 rows `row_bytes` apart at any address.
template <class Ops>
struct typed_rows<Ops, dtype::f32> {
  using pointer = const std::byte*;
  const std::byte* data;
  std::size_t row_bytes;

  pointer row(std::size_t o) const noexcept { return data + o * row_bytes; }
  static typename Ops::vec load(pointer row, std::size_t k) noexcept { return Ops::load_unaligned(row + 4 * k); }
  static typename Ops::vec load_partial(pointer row, std::size_t k, std::size_t count) noexcept {
    return Ops::load_unaligned_partial(row + 4 * k, count);
  }
};

/// IEEE binary16 rows `row_bytes` apart.
template <class Ops>
struct typed_rows<Ops, dtype::f16> {
  using pointer = const std::uint16_t*;
  const std::byte* data;
  std::size_t row_bytes;

  pointer row(std::size_t o) const noexcept { return reinterpret_cast<pointer>(data + o * row_bytes); }
  static typename Ops::vec load(pointer row, std::size_t k) noexcept { return Ops::load_f16(row + k); }
  static typename Ops::vec load_partial(pointer row, std::size_t k, std::size_t count) noexcept {
    return Ops::load_f16_partial(row + k, count);
  }
};

/// bfloat16 rows `row_bytes` apart.
template <class Ops>
struct typed_rows<Ops, dtype::bf16> {
  using pointer = const std::uint16_t*;
  const std::byte* data;
  std::size_t row_bytes;

  pointer row(std::size_t o) const noexcept { return reinterpret_cast<pointer>(data + o * row_bytes); }
  static typename Ops::vec load(pointer row, std::size_t k) noexcept { return Ops::load_bf16(row + k); }
  static typename Ops::vec load_partial(pointer row, std::size_t k, std::size_t count) noexcept {
    return Ops::load_bf16_partial(row + k, count);
  }
};

/// Calls f(typed_rows<Ops, w.type()>) and returns what it returns: the one switch over storage
/// types, outside every loop.
template <class Ops, class F>
inline decltype(auto) visit_typed_rows(const tensor_view& w, F&& f) {
  switch (w.type()) {
    case dtype::f16: return f(typed_rows<Ops, dtype::f16>{w.data(), w.row_bytes()});
    case dtype::bf16: return f(typed_rows<Ops, dtype::bf16>{w.data(), w.row_bytes()});
    default: break;  // F32 (block types go to quant kernels, never here)
  }
  return f(typed_rows<Ops, dtype::f32>{w.data(), w.row_bytes()});
}

}  // namespace pith::kernels
