// SPDX-License-Identifier: MIT
// file_tensor: a read-only view of one tensor stored in a model file, and its conversion to float.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pith/core/aligned_buffer.hpp"
#include "pith/core/dtype.hpp"
#include "pith/core/error.hpp"
#include "pith/core/quant.hpp"
#include "pith/io/detail.hpp"
#include "pith/core/half.hpp"

namespace pith {

/// Element types pith converts to float; everything else a file may hold is `other`.
enum class element_type : std::uint8_t { f32, f16, bf16, other };

/// One tensor of a safetensors or GGUF file. The views (name, dtype_name, file, bytes) point into
/// the reader that produced it and stay valid while that reader lives at the same address.
struct file_tensor {
  std::string_view name;
  element_type dtype = element_type::other;
  std::string_view dtype_name;       // as the format spells it: "F32", "BF16", "Q4_K", "I64", ...
  std::optional<pith::dtype> storage;  // pith's type for the bytes when it has one (F32 ... IQ4_XS)
  std::vector<std::int64_t> shape;   // row-major: shape.front() outermost, shape.back() contiguous
  std::span<const std::byte> bytes;  // little-endian elements, not necessarily aligned
  std::string_view file;             // the file it came from, for error messages

  /// Product of the shape (1 for a scalar); the readers have checked that it does not overflow.
  std::int64_t element_count() const noexcept {
    std::int64_t count = 1;
    for (const std::int64_t extent : shape) count *= extent;
    return count;
  }
};

namespace detail {
/// The block-quantized type of `tensor` when it is one pith dequantizes (GGUF's Q4_0 ... IQ4_XS).
inline std::optional<pith::dtype> quantized_storage(const file_tensor& tensor) noexcept {
  if (tensor.storage && dtype_is_quantized(*tensor.storage) && !dtype_is_activation_only(*tensor.storage))
    return tensor.storage;
  return std::nullopt;
}

inline void require_float_convertible(const file_tensor& tensor) {
  if (tensor.dtype == element_type::other && !quantized_storage(tensor))
    PITH_THROW(format_error, std::string(tensor.file) + ": tensor " + quoted(tensor.name) + " has dtype " +
                                 std::string(tensor.dtype_name) +
                                 ", which pith cannot convert to float (supported: F32, F16, BF16 and GGUF's "
                                 "block-quantized types)");
}
}  // namespace detail

/// Converts `tensor` (F32, F16, BF16 or a GGUF block-quantized type) to float into `out`, which
/// must hold exactly element_count() values. Throws format_error naming the tensor and its dtype
/// for other types and shape_error when `out` has the wrong size (or, for a block type, when the
/// bytes are not the blocks of element_count() values). Exact for F32, F16 and BF16; block types
/// are dequantized as llama.cpp does (core/quant.hpp, note §2).
inline void to_float(const file_tensor& tensor, std::span<float> out) {
  detail::require_float_convertible(tensor);
  const auto count = static_cast<std::size_t>(tensor.element_count());
  if (out.size() != count)
    PITH_THROW(shape_error, std::string(tensor.file) + ": tensor " + detail::quoted(tensor.name) + " has " +
                                std::to_string(count) + " elements, the output holds " + std::to_string(out.size()));
  const std::byte* source = tensor.bytes.data();
  if (const auto block = detail::quantized_storage(tensor)) {
    // Blocks never straddle rows and rows are packed, so the tensor is one run of blocks.
    if (count % dtype_block_elements(*block) != 0 || tensor.bytes.size() != dtype_row_bytes(*block, count))
      PITH_THROW(shape_error, std::string(tensor.file) + ": tensor " + detail::quoted(tensor.name) + " holds " +
                                  std::to_string(tensor.bytes.size()) + " bytes, not the " +
                                  std::string(dtype_name(*block)) + " blocks of " + std::to_string(count) + " values");
    if (count != 0) quant::dequantize_row(*block, source, count, out.data());
    return;
  }
  switch (tensor.dtype) {
    case element_type::f32:
      if constexpr (std::endian::native == std::endian::little) {
        if (count != 0) std::memcpy(out.data(), source, count * sizeof(float));
      } else {
        for (std::size_t i = 0; i < count; ++i) out[i] = detail::load_little_endian<float>(source + 4 * i);
      }
      return;
    case element_type::f16:
      for (std::size_t i = 0; i < count; ++i)
        out[i] = half_to_float(detail::load_little_endian<std::uint16_t>(source + 2 * i));
      return;
    case element_type::bf16:
      for (std::size_t i = 0; i < count; ++i)
        out[i] = bfloat16_to_float(detail::load_little_endian<std::uint16_t>(source + 2 * i));
      return;
    case element_type::other:
      break;
  }
}

/// to_float into a new std::vector.
inline std::vector<float> to_float(const file_tensor& tensor) {
  detail::require_float_convertible(tensor);
  std::vector<float> out(static_cast<std::size_t>(tensor.element_count()));
  to_float(tensor, std::span<float>(out));
  return out;
}

/// to_float into `out`, resized to element_count() (aligned for SIMD loads).
inline void to_float(const file_tensor& tensor, aligned_buffer<float>& out) {
  detail::require_float_convertible(tensor);
  out.resize(static_cast<std::size_t>(tensor.element_count()));
  to_float(tensor, out.span());
}

}  // namespace pith
