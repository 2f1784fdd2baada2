// SPDX-License-Identifier: MIT
// Helpers shared by the file readers: checked arithmetic, little-endian loads, UTF-8 checks, JSON parsing.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <nlohmann/json.hpp>

#include "pith/core/error.hpp"

namespace pith::detail {

/// a * b, or nothing when the product does not fit in 64 bits.
constexpr std::optional<std::uint64_t> checked_mul(std::uint64_t a, std::uint64_t b) noexcept {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return std::nullopt;
  return a * b;
}

/// a + b, or nothing when the sum does not fit in 64 bits.
constexpr std::optional<std::uint64_t> checked_add(std::uint64_t a, std::uint64_t b) noexcept {
  if (b > std::numeric_limits<std::uint64_t>::max() - a) return std::nullopt;
  return a + b;
}

/// Reads a little-endian T from `source`, which need not be aligned.
template <class T>
T load_little_endian(const std::byte* source) noexcept {
  static_assert(std::is_trivially_copyable_v<T>);
  T value;
  if constexpr (std::endian::native == std::endian::little || sizeof(T) == 1) {
    std::memcpy(&value, source, sizeof(T));
  } else {
    unsigned char reversed[sizeof(T)];
    for (std::size_t i = 0; i < sizeof(T); ++i) reversed[i] = static_cast<unsigned char>(source[sizeof(T) - 1 - i]);
    std::memcpy(&value, reversed, sizeof(T));
  }
  return value;
}

/// Appends `value` to `out` as little-endian bytes.
template <class T>
void append_little_endian(std::string& out, T value) {
  static_assert(std::is_trivially_copyable_v<T>);
  unsigned char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  if constexpr (std::endian::native != std::endian::little && sizeof(T) > 1) {
    for (std::size_t i = 0; i < sizeof(T) / 2; ++i) std::swap(bytes[i], bytes[sizeof(T) - 1 - i]);
  }
  out.append(reinterpret_cast<const char*>(bytes), sizeof(T));
}

/// Length of the UTF-8 sequence starting at text[0] (1 to 4, never more than text.size()). Bytes
/// that do not start a complete, well-formed sequence count as one-byte sequences, so every
/// input splits into pieces that concatenate back to it.
constexpr std::size_t utf8_sequence_length(std::string_view text) noexcept {
  if (text.empty()) return 0;
  const auto lead = static_cast<unsigned char>(text[0]);
  std::size_t length = 1;
  if (lead >= 0xf0 && lead < 0xf8)
    length = 4;
  else if (lead >= 0xe0)
    length = lead < 0xf0 ? 3 : 1;
  else if (lead >= 0xc0)
    length = 2;
  if (length > text.size()) return 1;
  for (std::size_t i = 1; i < length; ++i)
    if ((static_cast<unsigned char>(text[i]) & 0xc0) != 0x80) return 1;
  return length;
}

/// Whether `text` is well-formed UTF-8 (no overlong forms, surrogates or code points above U+10FFFF),
/// the condition nlohmann::json places on the strings it serialises.
constexpr bool is_valid_utf8(std::string_view text) noexcept {
  for (std::size_t i = 0; i < text.size();) {
    const auto lead = static_cast<unsigned char>(text[i]);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    std::size_t length = 0;
    std::uint32_t code_point = 0;
    if (lead >= 0xc2 && lead <= 0xdf) {
      length = 2;
      code_point = lead & 0x1fu;
    } else if (lead >= 0xe0 && lead <= 0xef) {
      length = 3;
      code_point = lead & 0x0fu;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      length = 4;
      code_point = lead & 0x07u;
    } else {
      return false;  // a continuation byte, an overlong 2-byte lead (C0, C1) or F5..FF
    }
    if (length > text.size() - i) return false;
    for (std::size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xc0) != 0x80) return false;
      code_point = (code_point << 6) | (next & 0x3fu);
    }
    if ((length == 3 && code_point < 0x800) || (length == 4 && (code_point < 0x10000 || code_point > 0x10ffff)) ||
        (code_point >= 0xd800 && code_point <= 0xdfff))
      return false;
    i += length;
  }
  return true;
}

/// Parses JSON text; throws format_error "<source>: not valid JSON: <reason>" on a syntax error.
/// Works with and without exceptions enabled.
inline nlohmann::json parse_json(std::string_view text, const std::string& source) {
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    PITH_THROW(format_error, source + ": not valid JSON: " + e.what());
  }
#else
  nlohmann::json parsed = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (parsed.is_discarded()) PITH_THROW(format_error, source + ": not valid JSON");
  return parsed;
#endif
}

/// Quotes a name for an error message.
inline std::string quoted(std::string_view name) {
  std::string out;
  out.reserve(name.size() + 2);
  out += '\'';
  out += name;
  out += '\'';
  return out;
}

}  // namespace pith::detail
