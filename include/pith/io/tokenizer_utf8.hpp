// SPDX-License-Identifier: MIT
// UTF-8 steps for tokenizers: one well-formed character or one maximal ill-formed subpart at a time, repair with U+FFFD, and where a character is left incomplete.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace pith {

/// What starts a UTF-8 text: a well-formed character of `length` bytes (`valid`), or else the
/// maximal subpart of an ill-formed sequence (`length` ≥ 1 bytes that one U+FFFD replaces, the
/// Unicode Standard's recommended practice §3.9 "U+FFFD Substitution of Maximal Subparts", which
/// the WHATWG decoder and Rust's from_utf8_lossy follow). `truncated` marks a subpart cut short by
/// the end of the text: more bytes could still complete it.
struct utf8_step {
  std::size_t length = 0;
  bool valid = false;
  bool truncated = false;
};

/// The first step of `text` (length 0 for an empty text). Well-formed sequences (Table 3-7):
/// 00-7F; C2-DF 80-BF; E0 A0-BF 80-BF; E1-EC 80-BF 80-BF; ED 80-9F 80-BF; EE-EF 80-BF 80-BF;
/// F0 90-BF 80-BF 80-BF; F1-F3 80-BF ×3; F4 80-8F 80-BF 80-BF.
constexpr utf8_step utf8_next(std::string_view text) noexcept {
  if (text.empty()) return {0, false, false};
  const auto lead = static_cast<unsigned char>(text[0]);
  if (lead < 0x80) return {1, true, false};
  std::size_t length = 0;
  unsigned char low = 0x80, high = 0xbf;  // range of the second byte
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead == 0xe0) low = 0xa0;
    if (lead == 0xed) high = 0x9f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead == 0xf0) low = 0x90;
    if (lead == 0xf4) high = 0x8f;
  } else {
    return {1, false, false};  // a continuation byte, C0, C1 or F5-FF
  }
  for (std::size_t i = 1; i < length; ++i) {
    if (i >= text.size()) return {i, false, true};
    const auto byte = static_cast<unsigned char>(text[i]);
    const bool fits = i == 1 ? byte >= low && byte <= high : byte >= 0x80 && byte <= 0xbf;
    if (!fits) return {i, false, false};
  }
  return {length, true, false};
}

/// Whether `text` is well-formed UTF-8.
constexpr bool utf8_is_valid(std::string_view text) noexcept {
  for (std::size_t i = 0; i < text.size();) {
    if (static_cast<unsigned char>(text[i]) < 0x80) {
      ++i;
      continue;
    }
    const utf8_step step = utf8_next(text.substr(i));
    if (!step.valid) return false;
    i += step.length;
  }
  return true;
}

/// `text` with each maximal ill-formed subpart replaced by U+FFFD (EF BF BD).
inline std::string utf8_repair(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 8);
  for (std::size_t i = 0; i < text.size();) {
    const utf8_step step = utf8_next(text.substr(i));
    if (step.valid)
      out.append(text.substr(i, step.length));
    else
      out += "\xEF\xBF\xBD";
    i += step.length;
  }
  return out;
}

/// The length of the longest prefix of `text` that does not end inside a character that later
/// bytes could still complete: what a stream of text may print now. The rest (at most 3 bytes) is
/// a truncated but so far well-formed sequence.
constexpr std::size_t utf8_complete_prefix(std::string_view text) noexcept {
  // Only the last 3 bytes can belong to an unfinished character; find where it would start.
  const std::size_t back = text.size() < 3 ? text.size() : 3;
  for (std::size_t start = text.size() - back; start < text.size(); ++start) {
    const auto byte = static_cast<unsigned char>(text[start]);
    if (byte >= 0x80 && byte < 0xc0) continue;  // a continuation byte cannot start a character
    const utf8_step step = utf8_next(text.substr(start));
    if (step.truncated && start + step.length == text.size()) return start;
  }
  return text.size();
}

}  // namespace pith
