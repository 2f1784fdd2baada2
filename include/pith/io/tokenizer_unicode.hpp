// SPDX-License-Identifier: MIT
// Unicode services of the BPE tokenizer: pre-tokenizer regexes on PCRE2 and normalization on utf8proc (CMake target pith::bpe).
#pragma once

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>
#include <utf8proc.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pith/core/error.hpp"
#include "pith/io/tokenizer_utf8.hpp"

#if PCRE2_MAJOR < 10 || (PCRE2_MAJOR == 10 && PCRE2_MINOR < 34)
#error "pith's BPE tokenizer needs PCRE2 10.34 or newer"
#endif

namespace pith::unicode {

/// Rewrites a pattern of Hugging Face tokenizers (Oniguruma syntax) into PCRE2's (notes/tokenizers.md §4.2)
/// so that it matches what the reference matches:
///  - `\s` / `\S` become `\p{White_Space}` / `\P{White_Space}`, also inside classes: Oniguruma's
///    \s is the White_Space property (with U+0085, without U+180E and U+FEFF), PCRE2's is not;
///  - in a `(?i:...)` group the ASCII letters become both cases ([sS]) and the group loses its
///    flag: the reference and llama.cpp fold ASCII only, PCRE2 would also let 'ſ' (U+017F) match s;
///  - `\uHHHH` becomes `\x{HHHH}`.
/// Anything else is passed through (\p{L}, \p{N}, lookahead and bounded repeats mean the same in both).
/// config_error naming `source` for a construct this cannot rewrite faithfully (a global (?i), a
/// character class inside a case-insensitive group).
inline std::string oniguruma_to_pcre2(std::string_view pattern, const std::string& source) {
  const auto is_hex = [](std::string_view digits) {
    for (const char d : digits)
      if (!((d >= '0' && d <= '9') || (d >= 'a' && d <= 'f') || (d >= 'A' && d <= 'F'))) return false;
    return true;
  };
  const auto fail = [&](const std::string& why) {
    PITH_THROW(config_error, source + ": the pattern \"" + std::string(pattern) + "\" " + why);
  };
  std::string out;
  out.reserve(pattern.size() + 32);
  std::vector<bool> caseless_groups;  // per open group: whether it is a (?i:...) group
  bool caseless = false;
  bool in_class = false;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\') {
      if (i + 1 >= pattern.size()) fail("ends with a backslash");
      const char next = pattern[i + 1];
      if (next == 's' || next == 'S') {
        out += next == 's' ? "\\p{White_Space}" : "\\P{White_Space}";
        ++i;
      } else if (next == 'u' && pattern.size() - i >= 6 && is_hex(pattern.substr(i + 2, 4))) {
        out += "\\x{" + std::string(pattern.substr(i + 2, 4)) + "}";
        i += 5;
      } else if ((next == 'p' || next == 'P' || next == 'x') && i + 2 < pattern.size() && pattern[i + 2] == '{') {
        const std::size_t close = pattern.find('}', i + 2);
        if (close == std::string_view::npos) fail("has an unterminated \\" + std::string(1, next) + "{");
        out.append(pattern.substr(i, close - i + 1));
        i = close;
      } else {
        out += c;
        out += next;
        ++i;
      }
      continue;
    }
    if (in_class) {
      if (c == ']') in_class = false;
      out += c;
      continue;
    }
    if (c == '[') {
      if (caseless) fail("has a character class inside a case-insensitive group, which pith does not rewrite");
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal member.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') {
        out += '^';
        ++i;
      }
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') {
        out += ']';
        ++i;
      }
      continue;
    }
    if (c == '(') {
      const std::string_view rest = pattern.substr(i);
      if (rest.substr(0, 4) == "(?i:") {
        caseless_groups.push_back(true);
        caseless = true;
        out += "(?:";
        i += 3;
        continue;
      }
      if (rest.substr(0, 3) == "(?i" || rest.substr(0, 4) == "(?-i") fail("sets case-insensitivity outside a (?i:...) group");
      caseless_groups.push_back(false);
      out += c;
      continue;
    }
    if (c == ')') {
      if (!caseless_groups.empty()) caseless_groups.pop_back();
      caseless = false;
      for (const bool group : caseless_groups) caseless = caseless || group;
      out += c;
      continue;
    }
    if (caseless && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
      const char lower = c >= 'a' ? c : static_cast<char>(c - 'A' + 'a');
      out += '[';
      out += lower;
      out += static_cast<char>(lower - 'a' + 'A');
      out += ']';
      continue;
    }
    out += c;
  }
  return out;
}

/// A compiled PCRE2 pattern (UTF and Unicode properties, JIT-compiled where the platform allows).
/// Shared and immutable: matching from several threads is safe (each thread has its own match data).
class regex {
 public:
  /// Compiles `pattern` (PCRE2 syntax); config_error naming `source`, the pattern and PCRE2's message.
  regex(const std::string& pattern, const std::string& source) {
    int code = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* compiled = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                         PCRE2_UTF | PCRE2_UCP, &code, &offset, nullptr);
    if (compiled == nullptr)
      PITH_THROW(config_error, source + ": the pattern \"" + pattern + "\" does not compile (" + message(code) +
                                   " at offset " + std::to_string(offset) + ")");
    code_.reset(compiled, pcre2_code_free);
    pcre2_jit_compile(compiled, PCRE2_JIT_COMPLETE);  // without JIT (an error code) the interpreter runs
  }

  /// Calls segment(begin, end, matched) for consecutive pieces [begin, end) that cover `text`:
  /// every match of the pattern (matched = true) and every non-empty gap between them (false), in
  /// order. `text` must be valid UTF-8 (tokenizers repair their input first). An empty match
  /// produces no piece and the search moves on one character.
  template <class Segment>
  void segments(std::string_view text, Segment&& segment) const {
    pcre2_match_data* data = thread_match_data();
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    std::size_t last = 0;    // end of the previous piece
    std::size_t search = 0;  // where the next search starts
    while (search < text.size()) {
      int rc = pcre2_match(code_.get(), subject, text.size(), search, PCRE2_NO_UTF_CHECK, data, nullptr);
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT)  // deep backtracking: the interpreter keeps its stack on the heap
        rc = pcre2_match(code_.get(), subject, text.size(), search, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, data, nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) PITH_THROW(format_error, "regex: matching failed (" + message(rc) + ")");
      const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
      const std::size_t begin = ovector[0], end = ovector[1];
      if (end == begin) {
        search = begin + std::max<std::size_t>(1, utf8_next(text.substr(begin)).length);
        continue;
      }
      if (begin > last) segment(last, begin, false);
      segment(begin, end, true);
      last = search = end;
    }
    if (last < text.size()) segment(last, text.size(), false);
  }

 private:
  static std::string message(int code) {
    PCRE2_UCHAR buffer[256];
    if (pcre2_get_error_message(code, buffer, sizeof buffer) < 0) return "PCRE2 error " + std::to_string(code);
    return reinterpret_cast<const char*>(buffer);
  }

  // One pair of offsets suffices: only the whole match is read.
  static pcre2_match_data* thread_match_data() {
    struct release {
      void operator()(pcre2_match_data* data) const noexcept { pcre2_match_data_free(data); }
    };
    thread_local const std::unique_ptr<pcre2_match_data, release> data(pcre2_match_data_create(1, nullptr));
    if (!data) PITH_THROW(error, "regex: PCRE2 could not allocate match data");
    return data.get();
  }

  std::shared_ptr<pcre2_code> code_;
};

/// Unicode normalization forms (UAX #15), as utf8proc computes them.
enum class normal_form : std::uint8_t { nfc, nfd, nfkc, nfkd };

/// `text` (valid UTF-8) in normalization form `form`. Text below U+0300 (lead bytes below 0xCC) is
/// returned as is in NFC: no character there changes under NFC (the first with NFC_Quick_Check
/// No or Maybe is U+0300), and ASCII is in every form.
inline std::string normalize(std::string_view text, normal_form form) {
  bool ascii = true, below_0300 = true;
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    ascii = ascii && byte < 0x80;
    below_0300 = below_0300 && byte < 0xcc;
  }
  if (ascii || (below_0300 && form == normal_form::nfc)) return std::string(text);
  int options = UTF8PROC_STABLE;
  switch (form) {
    case normal_form::nfc: options |= UTF8PROC_COMPOSE; break;
    case normal_form::nfd: options |= UTF8PROC_DECOMPOSE; break;
    case normal_form::nfkc: options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case normal_form::nfkd: options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
  }
  utf8proc_uint8_t* result = nullptr;
  const utf8proc_ssize_t length = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                               static_cast<utf8proc_ssize_t>(text.size()), &result,
                                               static_cast<utf8proc_option_t>(options));
  if (length < 0) {
    std::free(result);
    PITH_THROW(format_error, std::string("normalize: utf8proc failed (") + utf8proc_errmsg(length) + ")");
  }
  std::string out(reinterpret_cast<const char*>(result), static_cast<std::size_t>(length));
  std::free(result);
  return out;
}

/// `text` (valid UTF-8) with every code point mapped to its simple lowercase (UnicodeData.txt).
inline std::string lowercase(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    utf8proc_int32_t code_point = 0;
    const utf8proc_ssize_t length = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + i),
                                                     static_cast<utf8proc_ssize_t>(text.size() - i), &code_point);
    if (length <= 0) {  // not valid UTF-8: kept as is
      out += text[i++];
      continue;
    }
    utf8proc_uint8_t encoded[4];
    const utf8proc_ssize_t written = utf8proc_encode_char(utf8proc_tolower(code_point), encoded);
    out.append(reinterpret_cast<const char*>(encoded), static_cast<std::size_t>(written));
    i += static_cast<std::size_t>(length);
  }
  return out;
}

/// The code point that starts `text` (valid UTF-8), or -1.
inline std::int32_t first_code_point(std::string_view text) noexcept {
  utf8proc_int32_t code_point = -1;
  if (utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                       static_cast<utf8proc_ssize_t>(text.size()), &code_point) <= 0)
    return -1;
  return code_point;
}

/// Whether the character that starts `text` is a letter or a number (general category L* or N*).
inline bool is_letter_or_number(std::string_view text) noexcept {
  const std::int32_t code_point = first_code_point(text);
  if (code_point < 0) return false;
  switch (utf8proc_category(code_point)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

/// Whether the character that starts `text` has the White_Space property: the separators (Zs, Zl,
/// Zp), the controls U+0009-U+000D and U+0085.
inline bool is_white_space(std::string_view text) noexcept {
  const std::int32_t code_point = first_code_point(text);
  if (code_point < 0) return false;
  if ((code_point >= 0x09 && code_point <= 0x0d) || code_point == 0x85) return true;
  const utf8proc_category_t category = utf8proc_category(code_point);
  return category == UTF8PROC_CATEGORY_ZS || category == UTF8PROC_CATEGORY_ZL || category == UTF8PROC_CATEGORY_ZP;
}

}  // namespace pith::unicode
