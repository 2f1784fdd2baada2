// SPDX-License-Identifier: MIT
// spm_tokenizer: SentencePiece-style score-greedy BPE for llama2.c tokenizer.bin and GGUF "llama" vocabularies.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <optional>
#include <queue>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "pith/core/error.hpp"
#include "pith/io/detail.hpp"
#include "pith/io/gguf.hpp"
#include "pith/io/mmap.hpp"
#include "pith/io/tokenizer_added.hpp"

namespace pith {

/// Token types of a SentencePiece vocabulary; the numbers are GGUF's tokenizer.ggml.token_type values.
enum class token_kind : std::uint8_t { normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };

/// A SentencePiece BPE vocabulary (pieces with scores) and the encoder both llama2.c's run.c and
/// llama.cpp's SPM tokenizer implement:
///  1. optional BOS; nothing else for empty text;
///  2. a dummy prefix space, then (GGUF only) every space replaced by U+2581 "▁";
///  3. split into UTF-8 characters;
///  4. repeatedly merge the adjacent pair whose concatenation is a piece with the highest score
///     (ties: the leftmost pair);
///  5. emit each final piece; a character that is not a piece becomes its bytes' <0xHH> tokens
///     (the unknown token when the vocabulary has no such byte token).
/// The two sources differ in one place: run.c turns an unknown character into byte tokens before
/// merging, so it never merges (llama2c), while SentencePiece and llama.cpp keep it as text and
/// may merge it into a piece (GGUF). In a GGUF vocabulary, the text of every control, unknown and
/// user-defined token ("<s>", "[INST]", "<start_of_turn>") is cut out first and becomes that token,
/// leftmost-longest, as llama.cpp does with special-token parsing on (notes/tokenizers.md §3.3);
/// the dummy prefix then goes before the text that starts the input or follows such a token.
/// run.c parses no special tokens, so neither does a llama2.c tokenizer.bin.
///
/// decode(prev, token) returns the text of one token with llama2.c's rules: a <0xHH> byte token is
/// that raw byte, control tokens (BOS, EOS) are empty, "▁" becomes a space (GGUF), and a leading
/// space is dropped right after BOS. (run.c would print BOS/EOS as their pieces "\n<s>\n".)
class spm_tokenizer {
 public:
  /// Reads a llama2.c tokenizer.bin: int32 max_token_length, then `vocab_size` × {float32 score,
  /// int32 length, bytes}. The file does not store its vocabulary size: pass the model's. BOS is
  /// id 1, EOS id 2, unknown id 0 (as run.c assumes); pieces spelled <0xHH> are byte tokens.
  /// Throws format_error naming the file when the file is not exactly that, argument_error for
  /// vocab_size < 3, io_error when it cannot be read.
  static spm_tokenizer load_llama2c(const std::filesystem::path& path, std::int32_t vocab_size) {
    const mapped_file file(path);
    const std::string& name = file.path();
    if (vocab_size < 3)
      PITH_THROW(argument_error, name + ": vocab_size " + std::to_string(vocab_size) + " must be at least 3");
    const auto fail = [&](const std::string& message) { PITH_THROW(format_error, name + ": " + message); };
    std::uint64_t position = 0;
    const auto require = [&](std::uint64_t bytes, std::int32_t token) {
      if (bytes > file.size() - position)
        fail("truncated at token " + std::to_string(token) + " of " + std::to_string(vocab_size) + " (offset " +
             std::to_string(position) + ")");
    };
    require(4, -1);
    const auto max_length = detail::load_little_endian<std::int32_t>(file.data());
    position = 4;
    if (max_length <= 0) fail("max_token_length " + std::to_string(max_length) + " must be positive");

    spm_tokenizer out;
    out.pieces_.reserve(static_cast<std::size_t>(vocab_size));
    out.scores_.reserve(static_cast<std::size_t>(vocab_size));
    for (std::int32_t id = 0; id < vocab_size; ++id) {
      require(8, id);
      const float score = detail::load_little_endian<float>(file.data() + position);
      const auto length = detail::load_little_endian<std::int32_t>(file.data() + position + 4);
      position += 8;
      if (length < 0 || length > max_length)
        fail("token " + std::to_string(id) + " has length " + std::to_string(length) + ", outside 0.." +
             std::to_string(max_length));
      require(static_cast<std::uint64_t>(length), id);
      out.pieces_.emplace_back(reinterpret_cast<const char*>(file.data() + position), static_cast<std::size_t>(length));
      out.scores_.push_back(score);
      position += static_cast<std::uint64_t>(length);
    }
    if (position != file.size())
      fail(std::to_string(file.size() - position) + " bytes follow the " + std::to_string(vocab_size) +
           " tokens; is vocab_size right?");

    out.kinds_.assign(static_cast<std::size_t>(vocab_size), token_kind::normal);
    out.kinds_[0] = token_kind::unknown;
    out.kinds_[1] = token_kind::control;
    out.kinds_[2] = token_kind::control;
    for (std::size_t id = 3; id < out.pieces_.size(); ++id)
      if (byte_piece_value(out.pieces_[id]) >= 0) out.kinds_[id] = token_kind::byte;
    out.unk_ = 0;
    out.bos_ = 1;
    out.eos_ = 2;
    out.add_bos_ = true;
    out.add_space_prefix_ = true;
    out.escape_whitespace_ = false;
    out.merge_unknown_characters_ = false;
    out.merge_all_kinds_ = true;  // run.c looks every piece up, whatever its role
    out.build_indexes(false);
    return out;
  }

  /// Reads the vocabulary of a GGUF file whose tokenizer.ggml.model is "llama": tokens (required),
  /// scores and token_type (optional, default 0 and normal, same length as tokens), bos/eos/unknown
  /// token ids (default 1, 2, 0), add_bos_token (default true), add_space_prefix (default true).
  /// Throws config_error naming the file and key on a missing, mistyped or inconsistent key.
  static spm_tokenizer from_gguf(const gguf_file& file) {
    const auto fail = [&](const std::string& message) { PITH_THROW(config_error, file.path() + ": " + message); };
    const std::string& model = file.get_string("tokenizer.ggml.model");
    if (model == "gpt2")
      fail("tokenizer.ggml.model = 'gpt2' is byte-level BPE: read it with pith::load_tokenizer or "
           "pith::bpe_tokenizer::from_gguf (pith/io/tokenizer_bpe.hpp, CMake target pith::bpe)");
    if (model != "llama")
      fail("tokenizer.ggml.model = " + detail::quoted(model) +
           " is not supported (pith reads SentencePiece 'llama' and byte-level BPE 'gpt2' vocabularies)");
    spm_tokenizer out;
    out.pieces_ = file.get_array<std::string>("tokenizer.ggml.tokens");
    const std::size_t size = out.pieces_.size();
    if (size < 1 || size > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
      fail("tokenizer.ggml.tokens holds " + std::to_string(size) + " tokens");
    if (file.has("tokenizer.ggml.scores")) {
      out.scores_ = file.get_array<float>("tokenizer.ggml.scores");
      if (out.scores_.size() != size)
        fail("tokenizer.ggml.scores has " + std::to_string(out.scores_.size()) + " entries for " +
             std::to_string(size) + " tokens");
    } else {
      out.scores_.assign(size, 0.0f);
    }
    out.kinds_.assign(size, token_kind::normal);
    if (file.has("tokenizer.ggml.token_type")) {
      const auto& types = file.get_array<std::int32_t>("tokenizer.ggml.token_type");
      if (types.size() != size)
        fail("tokenizer.ggml.token_type has " + std::to_string(types.size()) + " entries for " + std::to_string(size) +
             " tokens");
      for (std::size_t id = 0; id < size; ++id) {
        if (types[id] < 1 || types[id] > 6)
          fail("tokenizer.ggml.token_type[" + std::to_string(id) + "] = " + std::to_string(types[id]) +
               " is not a token type (1..6)");
        out.kinds_[id] = static_cast<token_kind>(types[id]);
      }
    }
    const auto id_of = [&](const char* key, std::int64_t fallback) {
      const std::int64_t id = file.has(key) ? file.get_integer(key) : fallback;
      if (id < 0 || id >= static_cast<std::int64_t>(size))
        fail(std::string(key) + " = " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(size));
      return static_cast<std::int32_t>(id);
    };
    out.bos_ = id_of("tokenizer.ggml.bos_token_id", 1);
    out.eos_ = id_of("tokenizer.ggml.eos_token_id", 2);
    out.unk_ = id_of("tokenizer.ggml.unknown_token_id", 0);
    out.add_bos_ = file.get_or<bool>("tokenizer.ggml.add_bos_token", true);
    out.add_space_prefix_ = file.get_or<bool>("tokenizer.ggml.add_space_prefix", true);
    out.escape_whitespace_ = true;
    out.merge_unknown_characters_ = true;
    out.merge_all_kinds_ = false;  // SentencePiece never matches control, byte or unused pieces in text
    out.build_indexes(true);
    return out;
  }

  /// The ids of `text`, after BOS when `add_bos`. `parse_special` false keeps the text of control
  /// and unknown tokens as text (for untrusted input); user-defined tokens are always cut out (llama.cpp).
  std::vector<std::int32_t> encode(std::string_view text, bool add_bos, bool parse_special = true) const {
    std::vector<std::int32_t> out;
    if (add_bos) out.push_back(bos_);
    encode_text(text, true, parse_special, out);
    return out;
  }

  /// Appends the tokens of `text`, one part of a longer text, to `out`: steps 2 to 5 above, with
  /// the dummy prefix only when `first` (the part that starts the text). When the text was cut only
  /// between characters whose pair joined_pairs() does not hold, encoding the parts in order gives
  /// the tokens of the whole text (no BOS here).
  void encode_part(std::string_view text, bool first, std::vector<std::int32_t>& out) const {
    encode_text(text, first, true, out);
  }

  /// Whether a text may be cut between the UTF-8 characters `left` and `right` without changing
  /// its tokens, given `joined` = joined_pairs(): no merge crosses the cut, no token text named in
  /// the text spans it, and `left` does not end such a token (the dummy prefix that follows one
  /// belongs to the text after it).
  bool can_cut(std::string_view left, std::string_view right, const std::vector<std::uint64_t>& joined) const {
    if (std::binary_search(joined.begin(), joined.end(), pair_key(left, right))) return false;
    return !(add_space_prefix_ && !added_.empty() &&
             std::binary_search(added_last_characters_.begin(), added_last_characters_.end(), left));
  }

 private:
  // Cuts out the named tokens (GGUF), then encodes each stretch of text between them (steps 2-5).
  void encode_text(std::string_view text, bool first, bool parse_special, std::vector<std::int32_t>& out) const {
    bool prefix = first;
    std::size_t position = 0;
    while (position < text.size() && !added_.empty()) {
      auto found = added_.find(text, position);
      // With parse_special off, control and unknown tokens' text stays text.
      while (!parse_special && found.id >= 0 && kinds_[static_cast<std::size_t>(found.id)] != token_kind::user_defined)
        found = added_.find(text, found.begin + 1);
      if (found.id < 0) break;
      encode_stretch(text.substr(position, found.begin - position), prefix, out);
      out.push_back(found.id);
      prefix = true;
      position = found.end;
    }
    encode_stretch(text.substr(position), prefix, out);
  }

  void encode_stretch(std::string_view text, bool first, std::vector<std::int32_t>& out) const {
    if (text.empty()) return;

    std::string normalized;
    normalized.reserve(text.size() + text.size() / 2 + 3);
    if (add_space_prefix_ && first)
      normalized += escape_whitespace_ ? std::string_view(space_mark) : std::string_view(" ");
    for (const char c : text) {
      if (c == ' ' && escape_whitespace_)
        normalized += space_mark;
      else
        normalized += c;
    }

    struct symbol {
      std::size_t start;
      std::size_t length;  // 0 once merged into its left neighbour
      std::int32_t prev;
      std::int32_t next;
      bool frozen;  // an unknown character that may not merge (llama2.c)
    };
    std::vector<symbol> symbols;
    symbols.reserve(normalized.size());
    for (std::size_t start = 0; start < normalized.size();) {
      const std::size_t length = detail::utf8_sequence_length(std::string_view(normalized).substr(start));
      const auto index = static_cast<std::int32_t>(symbols.size());
      const bool frozen =
          !merge_unknown_characters_ && find_mergeable(std::string_view(normalized).substr(start, length)) < 0;
      symbols.push_back({start, length, index - 1, index + 1, frozen});
      start += length;
    }
    symbols.back().next = -1;

    struct candidate {
      float score;
      std::int32_t left;
      std::int32_t right;
      std::size_t left_length;  // lengths when queued: a mismatch later means the pair is stale
      std::size_t right_length;
    };
    const auto lower_priority = [](const candidate& a, const candidate& b) {
      return a.score < b.score || (a.score == b.score && a.left > b.left);
    };
    std::priority_queue<candidate, std::vector<candidate>, decltype(lower_priority)> queue(lower_priority);
    const auto try_pair = [&](std::int32_t left, std::int32_t right) {
      if (left < 0 || right < 0) return;
      const symbol& a = symbols[static_cast<std::size_t>(left)];
      const symbol& b = symbols[static_cast<std::size_t>(right)];
      if (a.frozen || b.frozen) return;
      const std::int32_t id = find_mergeable(std::string_view(normalized).substr(a.start, a.length + b.length));
      if (id >= 0) queue.push({scores_[static_cast<std::size_t>(id)], left, right, a.length, b.length});
    };
    for (std::size_t i = 1; i < symbols.size(); ++i)
      try_pair(static_cast<std::int32_t>(i - 1), static_cast<std::int32_t>(i));

    while (!queue.empty()) {
      const candidate best = queue.top();
      queue.pop();
      symbol& left = symbols[static_cast<std::size_t>(best.left)];
      symbol& right = symbols[static_cast<std::size_t>(best.right)];
      if (left.length != best.left_length || right.length != best.right_length) continue;
      left.length += right.length;
      right.length = 0;
      left.next = right.next;
      if (right.next >= 0) symbols[static_cast<std::size_t>(right.next)].prev = best.left;
      try_pair(left.prev, best.left);
      try_pair(best.left, left.next);
    }

    for (std::int32_t i = 0; i >= 0; i = symbols[static_cast<std::size_t>(i)].next) {
      const symbol& s = symbols[static_cast<std::size_t>(i)];
      const std::string_view piece = std::string_view(normalized).substr(s.start, s.length);
      const std::int32_t id = s.frozen ? -1 : find_mergeable(piece);
      if (id >= 0) {
        out.push_back(id);
      } else {
        for (const char c : piece) out.push_back(byte_tokens_[static_cast<unsigned char>(c)]);
      }
    }
  }


 public:
  /// The character pairs that stand side by side inside some mergeable piece, as sorted keys of
  /// pair_key. A merge only ever builds a mergeable piece, so no merge crosses the boundary between
  /// two characters whose pair is absent: the text may be cut there and its parts encoded apart
  /// (encode_part). The keys are 64-bit hashes: a collision only forbids a harmless cut.
  std::vector<std::uint64_t> joined_pairs() const {
    std::vector<std::uint64_t> keys;
    std::vector<std::string_view> texts;
    for (const auto& [piece, id] : mergeable_) {
      (void)id;
      texts.push_back(piece);
    }
    for (const std::string& text : added_texts_) texts.push_back(text);
    for (const std::string_view piece : texts) {
      std::size_t previous = 0, previous_length = 0;
      for (std::size_t i = 0; i < piece.size();) {
        const std::size_t length = detail::utf8_sequence_length(std::string_view(piece).substr(i));
        if (i > 0)
          keys.push_back(normalized_pair_key(piece.substr(previous, previous_length), piece.substr(i, length)));
        previous = i;
        previous_length = length;
        i += length;
      }
    }
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    return keys;
  }

  /// The key of the characters `left` and `right` (each one UTF-8 character of the raw text) as
  /// they appear after normalisation (a space is "▁" in GGUF vocabularies).
  std::uint64_t pair_key(std::string_view left, std::string_view right) const noexcept {
    const auto normal = [&](std::string_view c) { return escape_whitespace_ && c == " " ? space_mark : c; };
    return normalized_pair_key(normal(left), normal(right));
  }

  /// Text of `token` following `prev_token` (see the class comment); argument_error for an id
  /// outside the vocabulary.
  std::string decode(std::int32_t prev_token, std::int32_t token) const {
    check_id(token);
    const auto id = static_cast<std::size_t>(token);
    const std::string& piece = pieces_[id];
    switch (kinds_[id]) {
      case token_kind::control:
        return {};
      case token_kind::byte: {
        const int value = byte_piece_value(piece);
        if (value >= 0) return std::string(1, static_cast<char>(value));
        break;  // a byte-typed token not spelled <0xHH>: decode its text
      }
      default:
        break;
    }
    std::string text;
    if (escape_whitespace_) {
      text.reserve(piece.size());
      for (std::size_t i = 0; i < piece.size();) {
        if (piece.compare(i, space_mark.size(), space_mark) == 0) {
          text += ' ';
          i += space_mark.size();
        } else {
          text += piece[i++];
        }
      }
    } else {
      text = piece;
    }
    if (prev_token == bos_ && !text.empty() && text.front() == ' ') text.erase(0, 1);
    return text;
  }

  std::int32_t vocab_size() const noexcept { return static_cast<std::int32_t>(pieces_.size()); }
  std::int32_t bos_id() const noexcept { return bos_; }
  std::int32_t eos_id() const noexcept { return eos_; }
  std::int32_t unk_id() const noexcept { return unk_; }
  /// Whether the vocabulary asks for BOS at the start of a sequence (GGUF add_bos_token).
  bool add_bos() const noexcept { return add_bos_; }

  /// The stored piece (GGUF pieces keep "▁" for spaces).
  const std::string& piece(std::int32_t id) const {
    check_id(id);
    return pieces_[static_cast<std::size_t>(id)];
  }
  float score(std::int32_t id) const {
    check_id(id);
    return scores_[static_cast<std::size_t>(id)];
  }
  token_kind kind(std::int32_t id) const {
    check_id(id);
    return kinds_[static_cast<std::size_t>(id)];
  }

  /// The first id whose piece is exactly `text` (any kind: "<s>", "[INST]", "▁world").
  std::optional<std::int32_t> token_id(std::string_view text) const {
    const auto found = piece_ids_.find(text);
    if (found == piece_ids_.end()) return std::nullopt;
    return found->second;
  }
  const std::string& token_text(std::int32_t id) const { return piece(id); }
  /// Control and unknown tokens (special) and user-defined ones (not special), in id order.
  std::vector<special_token> special_tokens() const {
    std::vector<special_token> out;
    for (std::size_t id = 0; id < pieces_.size(); ++id) {
      const token_kind k = kinds_[id];
      if (k == token_kind::control || k == token_kind::unknown || k == token_kind::user_defined)
        out.push_back({static_cast<std::int32_t>(id), pieces_[id], k != token_kind::user_defined});
    }
    return out;
  }

 private:
  static constexpr std::string_view space_mark = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

  struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view text) const noexcept { return std::hash<std::string_view>{}(text); }
  };

  spm_tokenizer() = default;

  /// The byte a piece spelled exactly "<0xHH>" (upper- or lower-case hex) stands for, else -1.
  static int byte_piece_value(std::string_view piece) noexcept {
    if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
    int value = 0;
    for (const char c : piece.substr(3, 2)) {
      int digit = -1;
      if (c >= '0' && c <= '9')
        digit = c - '0';
      else if (c >= 'A' && c <= 'F')
        digit = c - 'A' + 10;
      else if (c >= 'a' && c <= 'f')
        digit = c - 'a' + 10;
      if (digit < 0) return -1;
      value = value * 16 + digit;
    }
    return value;
  }

  void check_id(std::int32_t id) const {
    if (id < 0 || id >= vocab_size())
      PITH_THROW(argument_error, "spm_tokenizer: token id " + std::to_string(id) + " is outside the vocabulary of " +
                                     std::to_string(vocab_size()));
  }

  static std::uint64_t normalized_pair_key(std::string_view left, std::string_view right) noexcept {
    return detail::token_pair_key(left, right);
  }

  std::int32_t find_mergeable(std::string_view text) const {
    const auto found = mergeable_.find(text);
    return found == mergeable_.end() ? -1 : found->second;
  }

  void build_indexes(bool parse_named_tokens) {
    piece_ids_.clear();
    piece_ids_.reserve(pieces_.size());
    for (std::size_t id = 0; id < pieces_.size(); ++id) piece_ids_.emplace(pieces_[id], static_cast<std::int32_t>(id));
    added_ = {};
    added_texts_.clear();
    added_last_characters_.clear();
    if (parse_named_tokens) {
      for (std::size_t id = 0; id < pieces_.size(); ++id) {
        const token_kind k = kinds_[id];
        if (pieces_[id].empty() || (k != token_kind::control && k != token_kind::unknown && k != token_kind::user_defined))
          continue;
        added_.add(pieces_[id], static_cast<std::int32_t>(id));
        added_texts_.push_back(pieces_[id]);
        std::size_t last = 0;
        for (std::size_t i = 0; i < pieces_[id].size(); i += detail::utf8_sequence_length(std::string_view(pieces_[id]).substr(i)))
          last = i;
        added_last_characters_.push_back(pieces_[id].substr(last));
      }
      std::sort(added_last_characters_.begin(), added_last_characters_.end());
    }
    mergeable_.clear();
    mergeable_.reserve(pieces_.size());
    for (std::size_t id = 0; id < pieces_.size(); ++id) {
      const token_kind k = kinds_[id];
      if (merge_all_kinds_ || k == token_kind::normal || k == token_kind::user_defined)
        mergeable_.emplace(pieces_[id], static_cast<std::int32_t>(id));  // the first of equal pieces wins
    }
    byte_tokens_.assign(256, unk_);
    std::vector<bool> seen(256, false);
    for (std::size_t id = 0; id < pieces_.size(); ++id) {
      if (kinds_[id] != token_kind::byte) continue;
      const int value = byte_piece_value(pieces_[id]);
      if (value >= 0 && !seen[static_cast<std::size_t>(value)]) {
        seen[static_cast<std::size_t>(value)] = true;
        byte_tokens_[static_cast<std::size_t>(value)] = static_cast<std::int32_t>(id);
      }
    }
  }

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::vector<token_kind> kinds_;
  std::unordered_map<std::string, std::int32_t, string_hash, std::equal_to<>> mergeable_;
  std::unordered_map<std::string, std::int32_t, string_hash, std::equal_to<>> piece_ids_;  // every piece → first id
  added_token_matcher added_;                      // control, unknown and user-defined texts (GGUF)
  std::vector<std::string> added_texts_;           // the same texts
  std::vector<std::string> added_last_characters_;  // their last UTF-8 characters, sorted
  std::vector<std::int32_t> byte_tokens_;  // [256] byte → token id (unk_ when the vocabulary lacks it)
  std::int32_t bos_ = 1;
  std::int32_t eos_ = 2;
  std::int32_t unk_ = 0;
  bool add_bos_ = true;
  bool add_space_prefix_ = true;
  bool escape_whitespace_ = false;
  bool merge_unknown_characters_ = false;
  bool merge_all_kinds_ = false;
};

}  // namespace pith
