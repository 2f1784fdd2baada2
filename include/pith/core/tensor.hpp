// SPDX-License-Identifier: MIT
// dtype and tensor_view: a weight matrix (or vector) in its own storage type, used where it lies.
//
// A tensor_view is a small value: a pointer to the first row, the element type, the shape
// [rows, cols], the distance between rows in bytes, and shared ownership of whatever keeps the
// bytes alive (a mapped checkpoint file, or a buffer the view owns). Copies share that owner, so a
// view stays valid for as long as any copy of it lives; a view made from a caller's pointer
// (tensor_view::borrow) owns nothing and is valid while the caller keeps the bytes.
//
// Rows are sequences of blocks: a block holds dtype_block_elements(t) consecutive elements of a
// row in dtype_block_bytes(t) bytes (1 element in 4 or 2 bytes for F32, F16 and BF16; block types
// such as GGUF's Q8_0 hold 32 elements with a scale). cols is a multiple of the block size and a
// row is cols / block_elements blocks stored back to back.
//
// This header includes no file reader and no JSON: engines use it to hand their own tensors to
// pith's kernels and layers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "pith/core/aligned_buffer.hpp"
#include "pith/core/dtype.hpp"
#include "pith/core/error.hpp"
#include "pith/core/half.hpp"
#include "pith/core/quant.hpp"

namespace pith {

/// Element i of a row of an element type (F32, F16, BF16), as float. Exact. 0 for a block type.
inline float dtype_element(dtype t, const std::byte* row, std::size_t i) noexcept {
  switch (t) {
    case dtype::f32: {
      float value;
      std::memcpy(&value, row + 4 * i, 4);
      return value;
    }
    case dtype::f16: {
      std::uint16_t bits;
      std::memcpy(&bits, row + 2 * i, 2);
      return half_to_float(bits);
    }
    case dtype::bf16: {
      std::uint16_t bits;
      std::memcpy(&bits, row + 2 * i, 2);
      return bfloat16_to_float(bits);
    }
    default: break;  // block types: see row_to_float
  }
  return 0.0f;
}

/// A read-only matrix [rows, cols] (a vector is one row) in its storage type.
class tensor_view {
 public:
  tensor_view() noexcept = default;

  /// A view of bytes owned by `owner` (a mapped file, a buffer): they stay alive with the view.
  /// Throws shape_error when cols is not a multiple of the type's block or row_bytes is shorter
  /// than a row.
  tensor_view(std::shared_ptr<const void> owner, const std::byte* data, dtype type, std::size_t rows,
              std::size_t cols, std::size_t row_bytes)
      : owner_(std::move(owner)), data_(data), type_(type), rows_(rows), cols_(cols), row_bytes_(row_bytes) {
    if (cols % dtype_block_elements(type) != 0)
      PITH_THROW(shape_error, "tensor_view: " + std::to_string(cols) + " columns are not a whole number of " +
                                  std::string(dtype_name(type)) + " blocks");
    if (rows > 1 && row_bytes < dtype_row_bytes(type, cols))
      PITH_THROW(shape_error, "tensor_view: rows " + std::to_string(row_bytes) + " bytes apart overlap (a row holds " +
                                  std::to_string(dtype_row_bytes(type, cols)) + " bytes)");
  }

  /// A view of the caller's bytes (rows packed back to back unless row_bytes says otherwise). The
  /// view owns nothing: the caller keeps the bytes alive and unchanged while any copy is in use.
  static tensor_view borrow(const void* data, dtype type, std::size_t rows, std::size_t cols,
                            std::size_t row_bytes = 0) {
    return {nullptr, static_cast<const std::byte*>(data), type, rows, cols,
            row_bytes == 0 ? dtype_row_bytes(type, cols) : row_bytes};
  }
  /// A borrowed float32 matrix [rows, cols] with rows packed.
  static tensor_view borrow(const float* data, std::size_t rows, std::size_t cols) {
    return borrow(static_cast<const void*>(data), dtype::f32, rows, cols);
  }

  /// Takes `buffer` (its bytes are one packed matrix of `type`): the view owns it.
  template <class T>
  static tensor_view own(aligned_buffer<T>&& buffer, dtype type, std::size_t rows, std::size_t cols) {
    if (buffer.size() * sizeof(T) < rows * dtype_row_bytes(type, cols))
      PITH_THROW(shape_error, "tensor_view::own: the buffer holds " + std::to_string(buffer.size() * sizeof(T)) +
                                  " bytes, [" + std::to_string(rows) + ", " + std::to_string(cols) + "] " +
                                  std::string(dtype_name(type)) + " needs " +
                                  std::to_string(rows * dtype_row_bytes(type, cols)));
    auto owner = std::make_shared<aligned_buffer<T>>(std::move(buffer));
    const auto* data = reinterpret_cast<const std::byte*>(owner->data());
    return {std::move(owner), data, type, rows, cols, dtype_row_bytes(type, cols)};
  }

  bool empty() const noexcept { return rows_ == 0 || cols_ == 0; }
  dtype type() const noexcept { return type_; }
  std::size_t rows() const noexcept { return rows_; }
  std::size_t cols() const noexcept { return cols_; }
  /// Elements (rows · cols).
  std::size_t size() const noexcept { return rows_ * cols_; }
  /// Distance between rows in bytes.
  std::size_t row_bytes() const noexcept { return row_bytes_; }
  const std::byte* data() const noexcept { return data_; }
  const std::byte* row(std::size_t r) const noexcept { return data_ + r * row_bytes_; }
  /// Bytes the rows occupy (what one pass over the matrix reads).
  std::size_t bytes() const noexcept { return rows_ * dtype_row_bytes(type_, cols_); }
  /// The float32 rows when the type is F32 with 4-byte aligned packed rows, else nullptr.
  const float* f32() const noexcept {
    const bool aligned = reinterpret_cast<std::uintptr_t>(data_) % alignof(float) == 0;
    return type_ == dtype::f32 && aligned && (rows_ <= 1 || row_bytes_ == cols_ * 4)
               ? reinterpret_cast<const float*>(data_)
               : nullptr;
  }
  /// Rows [first, first + count) as a view sharing this one's owner.
  tensor_view rows_view(std::size_t first, std::size_t count) const {
    if (first > rows_ || count > rows_ - first)
      PITH_THROW(argument_error, "tensor_view::rows_view: rows [" + std::to_string(first) + ", " +
                                     std::to_string(first + count) + ") of " + std::to_string(rows_));
    return {owner_, row(first), type_, count, cols_, row_bytes_};
  }
  /// What keeps the bytes alive (nullptr for a borrowed view).
  const std::shared_ptr<const void>& owner() const noexcept { return owner_; }

 private:
  std::shared_ptr<const void> owner_;
  const std::byte* data_ = nullptr;
  dtype type_ = dtype::f32;
  std::size_t rows_ = 0;
  std::size_t cols_ = 0;
  std::size_t row_bytes_ = 0;
};

/// Row r of `t` converted to float into out[0, t.cols()).
inline void row_to_float(const tensor_view& t, std::size_t r, float* out) noexcept {
  const std::byte* row = t.row(r);
  if (t.type() == dtype::f32) {
    std::memcpy(out, row, t.cols() * sizeof(float));
    return;
  }
  if (dtype_is_quantized(t.type())) {
    quant::dequantize_row(t.type(), row, t.cols(), out);
    return;
  }
  for (std::size_t i = 0; i < t.cols(); ++i) out[i] = dtype_element(t.type(), row, i);
}

}  // namespace pith
