// SPDX-License-Identifier: MIT
// word_tokenizer: word- or character-level vocabularies in pith's small JSON format, for toy models.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "pith/core/error.hpp"
#include "pith/io/detail.hpp"
#include "pith/io/mmap.hpp"
#include "pith/io/tokenizer_added.hpp"

namespace pith {

/// A toy-model vocabulary. File format (JSON, UTF-8):
///
///     {
///       "type": "pith-words",            // or "pith-chars"
///       "tokens": ["<unk>", "<s>", "</s>", "the", "cat", ".", ...],   // id = position
///       "unk": 0, "bos": 1, "eos": 2,    // ids of the special tokens, required
///       "lowercase": false,              // optional (pith-words): fold ASCII A-Z before lookup
///       "continuation": "##",            // optional (pith-words): spell unknown words in pieces
///       "joiners": "-"                   // optional (pith-words): punctuation decoded without spaces
///     }
///
/// pith-words: the text is split at ASCII whitespace; each ASCII punctuation character is a token
/// of its own; the other runs of bytes (letters, digits, any non-ASCII UTF-8) are words. Special
/// tokens may be spelled freely; every other token must be non-empty, contain no ASCII whitespace
/// and be unique. Decoding puts a space before every token except: the first one of a sequence
/// (prev_token < 0 or BOS), a token of closing punctuation . , ! ? ; : ) ] } % or an apostrophe,
/// and the token after an opening bracket ( [ { or an apostrophe. So "Hello, world!" and "don't"
/// round-trip; "dogs' toys" decodes as "dogs'toys".
///
/// With "continuation" (a non-empty prefix P, WordPiece's convention), a word that is not in the
/// vocabulary is spelled as its first UTF-8 character followed by P + each further character ("1234567"
/// becomes "1", "##2", ..., "##7" with P = "##") when all those tokens exist; otherwise it is unk.
/// Decoding writes a P-token's text after P with no space. "joiners" lists ASCII punctuation
/// characters decoded with no space on either side ("amber-anchor" round-trips with "-").
///
/// pith-chars: every UTF-8 character is a token; non-special tokens must be exactly one UTF-8
/// character. Decoding returns the character.
///
/// In both, text that is not in the vocabulary encodes as "unk"; BOS and EOS decode to "".
class word_tokenizer {
 public:
  enum class level : std::uint8_t { words, characters };

  /// Reads the JSON file at `path`; format_error for invalid JSON, config_error naming the file and
  /// key for missing, mistyped or inconsistent keys, io_error when the file cannot be read.
  static word_tokenizer load(const std::filesystem::path& path) {
    return parse(read_regular_file(path), path.string());
  }

  /// Parses the JSON text of a vocabulary; `source` names it in error messages.
  static word_tokenizer parse(std::string_view json_text, const std::string& source) {
    const nlohmann::json root = detail::parse_json(json_text, source);
    const auto fail = [&](const std::string& message) { PITH_THROW(config_error, source + ": " + message); };
    if (!root.is_object()) fail("the vocabulary must be a JSON object");

    word_tokenizer out;
    const auto type = root.find("type");
    if (type == root.end() || !type->is_string()) fail("key 'type' is missing or not a string");
    if (*type == "pith-words")
      out.level_ = level::words;
    else if (*type == "pith-chars")
      out.level_ = level::characters;
    else
      fail("key 'type' = " + detail::json_excerpt(*type) + " is neither \"pith-words\" nor \"pith-chars\"");

    const auto tokens = root.find("tokens");
    if (tokens == root.end() || !tokens->is_array() || tokens->empty()) fail("key 'tokens' must be a non-empty array");
    if (tokens->size() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
      fail("key 'tokens' holds too many tokens");
    for (std::size_t i = 0; i < tokens->size(); ++i) {
      if (!(*tokens)[i].is_string()) fail("key 'tokens'[" + std::to_string(i) + "] is not a string");
      out.tokens_.push_back((*tokens)[i].get<std::string>());
    }

    const auto id_of = [&](const char* key) {
      const auto value = root.find(key);
      if (value == root.end() || !value->is_number_integer())
        fail(std::string("key ") + detail::quoted(key) + " is missing or not an integer");
      const auto id = value->get<std::int64_t>();
      if (id < 0 || id >= static_cast<std::int64_t>(out.tokens_.size()))
        fail(std::string("key ") + detail::quoted(key) + " = " + std::to_string(id) + " is outside the " +
             std::to_string(out.tokens_.size()) + " tokens");
      return static_cast<std::int32_t>(id);
    };
    out.unk_ = id_of("unk");
    out.bos_ = id_of("bos");
    out.eos_ = id_of("eos");

    if (const auto lowercase = root.find("lowercase"); lowercase != root.end()) {
      if (!lowercase->is_boolean()) fail("key 'lowercase' is not a boolean");
      out.lowercase_ = lowercase->get<bool>();
    }
    const auto optional_string = [&](const char* key) -> std::string {
      const auto value = root.find(key);
      if (value == root.end()) return {};
      if (!value->is_string()) fail(std::string("key ") + detail::quoted(key) + " is not a string");
      if (out.level_ != level::words) fail(std::string("key ") + detail::quoted(key) + " applies to \"pith-words\" only");
      return value->get<std::string>();
    };
    out.continuation_ = optional_string("continuation");
    if (root.contains("continuation") && out.continuation_.empty()) fail("key 'continuation' is empty");
    out.joiners_ = optional_string("joiners");
    for (const char c : out.joiners_)
      if (!is_punctuation(c))
        fail("key 'joiners' = " + detail::json_excerpt(nlohmann::json(out.joiners_)) +
             " holds a character that is not ASCII punctuation");

    for (std::size_t id = 0; id < out.tokens_.size(); ++id) {
      const std::string& token = out.tokens_[id];
      const auto signed_id = static_cast<std::int32_t>(id);
      const auto where = [&] { return "key 'tokens'[" + std::to_string(id) + "] = " + detail::json_excerpt(nlohmann::json(token)); };
      if (!out.is_special(signed_id)) {
        if (out.level_ == level::words) {
          if (token.empty()) fail(where() + " is empty");
          for (const char c : token)
            if (is_space(c)) fail(where() + " contains whitespace");
        } else if (token.empty() || detail::utf8_sequence_length(token) != token.size()) {
          fail(where() + " is not exactly one UTF-8 character");
        }
      }
      if (!out.ids_.emplace(token, signed_id).second) fail(where() + " appears twice");
    }
    return out;
  }

  /// The ids of `text`, after BOS when `add_bos`; `parse_special` changes nothing (no token text
  /// is matched as a whole here).
  std::vector<std::int32_t> encode(std::string_view text, bool add_bos, bool parse_special = true) const {
    (void)parse_special;
    std::vector<std::int32_t> out;
    if (add_bos) out.push_back(bos_);
    encode_part(text, true, out);
    return out;
  }

  /// Appends the tokens of `text`, one part of a longer text cut where can_cut allows, to `out`;
  /// the parts encoded in order give the tokens of the whole text (no BOS here; `first` is unused:
  /// these vocabularies add nothing at the start of a text).
  void encode_part(std::string_view text, bool first, std::vector<std::int32_t>& out) const {
    (void)first;
    if (level_ == level::characters) {
      for (std::size_t i = 0; i < text.size();) {
        const std::size_t length = detail::utf8_sequence_length(text.substr(i));
        out.push_back(lookup(text.substr(i, length)));
        i += length;
      }
      return;
    }
    std::string word;
    const auto flush = [&] {
      if (!word.empty()) encode_word(word, out);
      word.clear();
    };
    for (const char c : text) {
      if (is_space(c)) {
        flush();
      } else if (is_punctuation(c)) {
        flush();
        out.push_back(lookup(std::string_view(&c, 1)));
      } else {
        word += lowercase_ && c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
      }
    }
    flush();
  }

  /// Whether a text may be cut between the UTF-8 characters `left` and `right` without changing
  /// its tokens: anywhere in a character vocabulary; next to ASCII whitespace or punctuation in a
  /// word vocabulary (a word is a run of the other bytes).
  bool can_cut(std::string_view left, std::string_view right) const noexcept {
    if (level_ == level::characters) return true;
    const auto separates = [](std::string_view c) { return c.size() == 1 && (is_space(c[0]) || is_punctuation(c[0])); };
    return separates(left) || separates(right);
  }

  /// Text of `token` following `prev_token` (see the class comment); argument_error for an id
  /// outside the vocabulary.
  std::string decode(std::int32_t prev_token, std::int32_t token) const {
    check_id(token);
    if (token == bos_ || token == eos_) return {};
    const std::string& text = tokens_[static_cast<std::size_t>(token)];
    if (level_ == level::characters) return text;
    if (is_continuation(text)) return text.substr(continuation_.size());
    const bool first = prev_token < 0 || prev_token == bos_ || prev_token >= vocab_size();
    const auto is_joiner = [&](const std::string& t) {
      return t.size() == 1 && joiners_.find(t[0]) != std::string::npos;
    };
    const bool attaches_left =
        (text.size() == 1 && std::string_view(".,!?;:)]}%'").find(text[0]) != std::string_view::npos) ||
        is_joiner(text);
    bool after_opening = false;
    if (!first) {
      const std::string& previous = tokens_[static_cast<std::size_t>(prev_token)];
      after_opening = (previous.size() == 1 && std::string_view("([{'").find(previous[0]) != std::string_view::npos) ||
                      is_joiner(previous);
    }
    if (first || attaches_left || after_opening) return text;
    return " " + text;
  }

  std::int32_t vocab_size() const noexcept { return static_cast<std::int32_t>(tokens_.size()); }
  std::int32_t bos_id() const noexcept { return bos_; }
  std::int32_t eos_id() const noexcept { return eos_; }
  std::int32_t unk_id() const noexcept { return unk_; }
  level granularity() const noexcept { return level_; }
  const std::string& token_text(std::int32_t id) const {
    check_id(id);
    return tokens_[static_cast<std::size_t>(id)];
  }
  /// The id of the token spelled exactly `text`, special ones included.
  std::optional<std::int32_t> token_id(std::string_view text) const {
    const auto found = ids_.find(text);
    if (found == ids_.end()) return std::nullopt;
    return found->second;
  }
  /// unk, BOS and EOS (these vocabularies find no token in text as a whole).
  std::vector<special_token> special_tokens() const {
    std::vector<special_token> out;
    for (std::size_t id = 0; id < tokens_.size(); ++id)
      if (is_special(static_cast<std::int32_t>(id))) out.push_back({static_cast<std::int32_t>(id), tokens_[id], true});
    return out;
  }

 private:
  struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view text) const noexcept { return std::hash<std::string_view>{}(text); }
  };

  word_tokenizer() = default;

  static bool is_space(char c) noexcept {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  }
  static bool is_punctuation(char c) noexcept {
    return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') || (c >= '{' && c <= '~');
  }
  bool is_special(std::int32_t id) const noexcept { return id == unk_ || id == bos_ || id == eos_; }

  bool is_continuation(const std::string& text) const noexcept {
    return !continuation_.empty() && text.size() > continuation_.size() && text.starts_with(continuation_);
  }

  // A word: its token, or (with a continuation prefix) its characters as pieces, or unk.
  void encode_word(const std::string& word, std::vector<std::int32_t>& out) const {
    const std::int32_t id = lookup(word);
    if (id != unk_ || continuation_.empty()) {
      out.push_back(id);
      return;
    }
    const std::size_t mark = out.size();
    std::string piece;
    for (std::size_t i = 0; i < word.size();) {
      const std::size_t length = detail::utf8_sequence_length(std::string_view(word).substr(i));
      piece.assign(i == 0 ? std::string() : continuation_);
      piece.append(word, i, length);
      const std::int32_t part = lookup(piece);
      if (part == unk_) {
        out.resize(mark);
        out.push_back(unk_);
        return;
      }
      out.push_back(part);
      i += length;
    }
  }

  std::int32_t lookup(std::string_view text) const {
    const auto found = ids_.find(text);
    return found == ids_.end() || is_special(found->second) ? unk_ : found->second;
  }

  void check_id(std::int32_t id) const {
    if (id < 0 || id >= vocab_size())
      PITH_THROW(argument_error, "word_tokenizer: token id " + std::to_string(id) + " is outside the vocabulary of " +
                                     std::to_string(vocab_size()));
  }

  level level_ = level::words;
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, std::int32_t, string_hash, std::equal_to<>> ids_;
  std::int32_t unk_ = 0;
  std::int32_t bos_ = 1;
  std::int32_t eos_ = 2;
  bool lowercase_ = false;
  std::string continuation_;
  std::string joiners_;
};

}  // namespace pith
