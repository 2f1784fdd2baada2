// SPDX-License-Identifier: MIT
// Helpers shared by the file readers: checked arithmetic, little-endian loads, UTF-8 checks, JSON parsing
// with a nesting limit and bounded excerpts of JSON values for error messages.
#pragma once

#include <algorithm>
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

/// Deepest nesting of arrays and objects the JSON readers accept. Configurations and safetensors
/// headers nest 2 to 5 levels; the limit keeps every recursive walk of a parsed value (printing,
/// comparing) shallow, whatever the file holds.
/// FNV-1a over left, a separator byte (0xFF, never in well-formed UTF-8) and right: the key of a
/// pair of token texts that the tokenizers' added-token checks look up in a sorted list.
inline std::uint64_t token_pair_key(std::string_view left, std::string_view right) noexcept {
  std::uint64_t hash = 0xcbf29ce484222325ull;
  const auto mix = [&](unsigned char byte) { hash = (hash ^ byte) * 0x100000001b3ull; };
  for (const char c : left) mix(static_cast<unsigned char>(c));
  mix(0xff);
  for (const char c : right) mix(static_cast<unsigned char>(c));
  return hash;
}

inline constexpr std::size_t max_json_depth = 64;

/// Offset of the first bracket of `text` that opens an array or object deeper than `limit`,
/// outside strings; nothing when the nesting stays within it. The scan does not validate JSON.
constexpr std::optional<std::size_t> json_nesting_beyond(std::string_view text, std::size_t limit) noexcept {
  std::size_t depth = 0;
  bool in_string = false, escaped = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return i;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return std::nullopt;
}

/// Parses JSON text into `out`; on failure returns the reason (nesting deeper than max_json_depth,
/// checked before parsing, or the parser's message), on success an empty string.
inline std::string try_parse_json(std::string_view text, nlohmann::json& out) {
  if (const auto at = json_nesting_beyond(text, max_json_depth))
    return "arrays and objects nest deeper than " + std::to_string(max_json_depth) + " levels (at byte " +
           std::to_string(*at) + ")";
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
  try {
    out = nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    return e.what();
  }
#else
  out = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (out.is_discarded()) return "syntax error";
#endif
  return {};
}

/// Parses JSON text; throws format_error "<source>: not valid JSON: <reason>" on a syntax error or
/// a nesting deeper than max_json_depth. Works with and without exceptions enabled.
inline nlohmann::json parse_json(std::string_view text, const std::string& source) {
  nlohmann::json parsed;
  const std::string reason = try_parse_json(text, parsed);
  if (!reason.empty()) PITH_THROW(format_error, source + ": not valid JSON: " + reason);
  return parsed;
}

namespace json_excerpt_detail {
// Appends at most limit + 1 - out.size() characters of `text` (one past the limit marks the cut).
inline void append_text(std::string& out, std::string_view text, std::size_t limit) {
  if (out.size() > limit) return;
  out.append(text.substr(0, limit + 1 - out.size()));
}
inline std::string dump(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}
inline void append(const nlohmann::json& value, std::string& out, std::size_t limit) {
  if (out.size() > limit) return;
  if (!value.is_array() && !value.is_object()) return append_text(out, dump(value), limit);
  const bool object = value.is_object();
  append_text(out, object ? "{" : "[", limit);
  bool first = true;
  for (auto it = value.begin(); it != value.end() && out.size() <= limit; ++it) {
    if (!first) append_text(out, ", ", limit);
    first = false;
    if (object) {
      append_text(out, dump(nlohmann::json(it.key())), limit);
      append_text(out, ": ", limit);
    }
    append(*it, out, limit);
  }
  append_text(out, object ? "}" : "]", limit);
}
}  // namespace json_excerpt_detail

/// `value` as JSON text of at most about `limit` characters, cut with "..." where longer: error
/// messages quote values from files this way, never with an unbounded dump(). Each nesting level
/// adds a character before it recurses, so the recursion is at most `limit` deep.
inline std::string json_excerpt(const nlohmann::json& value, std::size_t limit = 64) {
  std::string out;
  json_excerpt_detail::append(value, out, limit);
  if (out.size() > limit) {
    out.resize(limit);
    out += "...";
  }
  return out;
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
