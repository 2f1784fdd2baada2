// SPDX-License-Identifier: MIT
// streaming_encoder and streaming_decoder: tokenize a text that arrives in blocks with bounded memory, and print tokens without breaking a UTF-8 character.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pith/core/error.hpp"
#include "pith/io/detail.hpp"
#include "pith/io/tokenizer.hpp"
#include "pith/io/tokenizer_utf8.hpp"

namespace pith {

/// Encodes a text given in blocks of any size (a file read piece by piece, a pipe) with memory
/// bounded by `window` bytes, whatever the text's length.
///
/// The encoder holds back the text it has not encoded yet. When `window` bytes are held, it encodes
/// them up to the last *safe cut*: a boundary between two UTF-8 characters where the tokenizer may
/// cut a text without changing its tokens (spm_tokenizer: two characters that no mergeable piece
/// holds side by side, so no merge can cross the cut; word vocabularies: next to whitespace or
/// punctuation; character vocabularies: any character boundary). Characters are split exactly as
/// the whole text would be (a character is decided once the bytes its first byte announces are
/// held, or at the end), the dummy prefix goes only before the first part and BOS (if asked) is the first token.
/// So for text whose every run of `window` bytes holds a safe cut (any text with spaces or line
/// breaks at least that often), the tokens are exactly those of tokenizer::encode on the whole text.
///
/// The one exception: a run of `window` bytes without a safe cut (a 10 MB line of letters) is cut
/// at the last character boundary in the window, and the tokens of that run may differ from the
/// whole text's there (forced_cuts() counts these cuts). This bounds every piece the tokenizer
/// builds, and so its memory, by `window`.
///
/// The tokenizer must outlive the encoder. One encoder belongs to one thread at a time.
class streaming_encoder {
 public:
  /// Large enough that text with spaces or line breaks never needs a forced cut, small enough that
  /// the tokenizer's work on one window (about 100 bytes per byte for spm) stays near 2 MiB.
  static constexpr std::size_t default_window = 16384;
  /// Below this a window could not hold a 4-byte character and the one before it.
  static constexpr std::size_t min_window = 8;

  explicit streaming_encoder(const tokenizer& tok, bool add_bos, std::size_t window = default_window)
      : tok_(tok), window_(window), add_bos_(add_bos) {
    if (window_ < min_window)
      PITH_THROW(argument_error, "streaming_encoder: window " + std::to_string(window_) + " is below " +
                                     std::to_string(min_window) + " bytes");
    if (const spm_tokenizer* spm = tok_.as_spm()) joined_ = spm->joined_pairs();
    prefix_ = add_bos_ ? tok_.special_prefix() : std::vector<std::int32_t>{};
    suffix_ = add_bos_ ? tok_.special_suffix() : std::vector<std::int32_t>{};
    held_.reserve(window_);
  }

  /// Appends to `out` the tokens of `bytes` (following what was pushed before) that no later byte
  /// can change; the rest is held back.
  void push(std::string_view bytes, std::vector<std::int32_t>& out) {
    if (finished_) PITH_THROW(argument_error, "streaming_encoder::push: the text was already finished");
    start(out);
    while (!bytes.empty()) {
      const std::size_t take = std::min(bytes.size(), window_ - held_.size());
      held_.append(bytes.substr(0, take));
      bytes.remove_prefix(take);
      if (held_.size() == window_) emit(false, out);
    }
  }

  /// Appends the tokens of the text held back; the text is then complete.
  void finish(std::vector<std::int32_t>& out) {
    if (finished_) return;
    start(out);
    emit(true, out);
    out.insert(out.end(), suffix_.begin(), suffix_.end());
    finished_ = true;
  }

  /// Cuts made at the window's end for lack of a safe cut (where tokens may differ from the whole text's).
  std::size_t forced_cuts() const noexcept { return forced_cuts_; }
  /// Bytes given to push() so far.
  std::size_t bytes_pushed() const noexcept { return bytes_pushed_ + held_.size(); }
  std::size_t window() const noexcept { return window_; }

 private:
  void start(std::vector<std::int32_t>& out) {
    if (started_) return;
    started_ = true;
    out.insert(out.end(), prefix_.begin(), prefix_.end());
  }

  bool can_cut(std::string_view left, std::string_view right) const {
    if (const spm_tokenizer* spm = tok_.as_spm()) return spm->can_cut(left, right, joined_);
    if (const tokenizer_model* model = tok_.as_model()) return model->can_cut(left, right);
    return tok_.as_words()->can_cut(left, right);
  }

  void encode(std::string_view part, std::vector<std::int32_t>& out) {
    if (part.empty()) return;
    if (const spm_tokenizer* spm = tok_.as_spm())
      spm->encode_part(part, first_part_, out);
    else if (const tokenizer_model* model = tok_.as_model())
      model->encode_part(part, first_part_, out);
    else
      tok_.as_words()->encode_part(part, first_part_, out);
    first_part_ = false;
  }

  // Scans the held text's character boundaries from where the last scan stopped, then encodes up
  // to the last safe cut (everything at the end; the last decided boundary when no cut is safe).
  void emit(bool at_end, std::vector<std::int32_t>& out) {
    const std::string_view held(held_);
    while (scanned_ < held.size() && (at_end || held.size() - scanned_ >= declared_length(held[scanned_]))) {
      const std::size_t length = detail::utf8_sequence_length(held.substr(scanned_));
      if (scanned_ > 0 && can_cut(held.substr(previous_, scanned_ - previous_), held.substr(scanned_, length)))
        last_safe_ = scanned_;
      previous_ = scanned_;
      scanned_ += length;
    }
    std::size_t cut = at_end ? held.size() : last_safe_;
    if (cut == 0 && !at_end) {
      cut = scanned_;  // no safe cut in a full window: cut at the last character boundary decided
      ++forced_cuts_;
    }
    encode(held.substr(0, cut), out);
    bytes_pushed_ += cut;
    held_.erase(0, cut);
    // Boundaries up to scanned_ are known; none of those after the cut was safe (the cut was the
    // last safe one), except after a forced cut, where the first kept character starts the part.
    scanned_ -= cut;
    previous_ = previous_ >= cut ? previous_ - cut : 0;
    last_safe_ = 0;
  }

  // The bytes detail::utf8_sequence_length reads for a character starting with `lead`: once they
  // are held, the character is split as in the whole text.
  static std::size_t declared_length(char lead) noexcept {
    const auto byte = static_cast<unsigned char>(lead);
    return byte >= 0xf8 || byte < 0xc0 ? 1 : byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : 2;
  }

  const tokenizer& tok_;
  std::size_t window_;
  bool add_bos_;
  std::vector<std::uint64_t> joined_;  // spm_tokenizer::joined_pairs()
  std::vector<std::int32_t> prefix_;   // the special tokens before the text (BOS) when asked for
  std::vector<std::int32_t> suffix_;   // and after it
  std::string held_;                   // text not yet encoded, at most window_ bytes
  std::size_t scanned_ = 0;            // held_'s character boundaries before this are examined
  std::size_t previous_ = 0;           // start of the character that ends at scanned_
  std::size_t last_safe_ = 0;          // the last safe cut found in held_ (0: none)
  std::size_t bytes_pushed_ = 0;       // bytes encoded so far
  std::size_t forced_cuts_ = 0;
  bool started_ = false;
  bool first_part_ = true;
  bool finished_ = false;
};

/// Turns generated tokens into text a terminal can print at once: a token may end inside a UTF-8
/// character (a byte token, or a byte-level BPE token holding part of an emoji), so the bytes of an
/// unfinished character are held until the tokens that complete it arrive. Bytes that can no
/// longer form a character become U+FFFD, as a lossy UTF-8 decode of the whole text would make them
/// (each maximal ill-formed subpart once), so the concatenated output is always valid UTF-8 and
/// equals utf8_repair(tokenizer::decode_all(tokens)).
/// The tokenizer must outlive the decoder. One decoder belongs to one thread at a time.
class streaming_decoder {
 public:
  explicit streaming_decoder(const tokenizer& tok) : tok_(tok) {}

  /// The text that `token` completes (possibly empty); argument_error for an id outside the vocabulary.
  std::string push(std::int32_t token) {
    held_ += tok_.decode(previous_, token);
    previous_ = token;
    const std::size_t complete = utf8_complete_prefix(held_);
    std::string out = utf8_repair(std::string_view(held_).substr(0, complete));
    held_.erase(0, complete);
    return out;
  }

  /// The bytes still held (an unfinished character, as U+FFFD); the next push starts a new text.
  std::string finish() {
    std::string out = utf8_repair(held_);
    held_.clear();
    previous_ = -1;
    return out;
  }

  /// Bytes held back for a character not yet complete (0 to 3).
  std::size_t held_bytes() const noexcept { return held_.size(); }

 private:
  const tokenizer& tok_;
  std::string held_;
  std::int32_t previous_ = -1;
};

}  // namespace pith
