// SPDX-License-Identifier: MIT
// tokenizer: one value type over pith's vocabularies (llama2.c tokenizer.bin, GGUF "llama", pith JSON words/chars, and byte-level BPE through tokenizer_model).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "pith/core/error.hpp"
#include "pith/io/gguf.hpp"
#include "pith/io/tokenizer_added.hpp"
#include "pith/io/tokenizer_spm.hpp"
#include "pith/io/tokenizer_words.hpp"

namespace pith {

/// A tokenizer implemented outside this header, reached through `tokenizer` by a shared pointer.
/// The byte-level BPE tokenizer (io/tokenizer_bpe.hpp: tokenizer.json of Llama 3, Qwen2/3, Gemma 3
/// and GGUF "gpt2" vocabularies) is one: it needs PCRE2 and utf8proc, which the CMake target
/// pith::bpe brings, so this header (and pith::pith) must not name it. An interface instead of a
/// variant alternative added when that header is included first: the class `tokenizer` then has
/// one definition in every translation unit of a program, whatever each includes (one definition
/// rule), and programs that never tokenize with BPE need neither library.
/// The calls are per text or per token, never in a hot loop, so a virtual call costs nothing.
class tokenizer_model {
 public:
  virtual ~tokenizer_model() = default;

  /// The ids of `text`; with `add_special`, the tokens the vocabulary puts around a text
  /// (special_prefix() and special_suffix()); with `parse_special` false, the text of special
  /// tokens is encoded as text (added tokens that are not special are still found).
  virtual std::vector<std::int32_t> encode(std::string_view text, bool add_special, bool parse_special) const = 0;
  /// Appends the ids of `text`, one part of a longer text cut only where can_cut allows, without
  /// the special prefix or suffix; `first` is true for the part that starts the text.
  virtual void encode_part(std::string_view text, bool first, std::vector<std::int32_t>& out) const = 0;
  /// Whether a text may be cut between the UTF-8 characters `left` and `right` without changing
  /// its tokens (streaming_encoder looks for such places).
  virtual bool can_cut(std::string_view left, std::string_view right) const = 0;
  /// The bytes of `token` (which may be part of a UTF-8 character); `prev_token` is the previous
  /// token or -1. Special tokens decode to "" (their text is token_text()).
  virtual std::string decode(std::int32_t prev_token, std::int32_t token) const = 0;

  virtual std::int32_t vocab_size() const noexcept = 0;
  /// -1 when the vocabulary has no such token (Qwen has no BOS).
  virtual std::int32_t bos_id() const noexcept = 0;
  virtual std::int32_t eos_id() const noexcept = 0;
  virtual std::vector<std::int32_t> special_prefix() const = 0;
  virtual std::vector<std::int32_t> special_suffix() const = 0;

  /// The id whose text is exactly `text`: an added or special token by its content, else a
  /// vocabulary entry as the vocabulary spells it. nullopt when there is none.
  virtual std::optional<std::int32_t> token_id(std::string_view text) const = 0;
  /// The text of `id` as token_id() takes it; argument_error outside the vocabulary.
  virtual std::string token_text(std::int32_t id) const = 0;
  /// The tokens matched as a whole in text before anything else (added and special tokens).
  virtual std::vector<special_token> special_tokens() const = 0;
};

/// A tokenizer of any supported vocabulary. Copyable; encode and decode are const and may run
/// concurrently. decode(prev, token) follows llama2.c: pass the previous token (or -1 at the start)
/// so the leading space after BOS can be dropped (SentencePiece only); byte tokens decode to raw
/// bytes, which may be partial UTF-8 characters until the following tokens arrive
/// (streaming_decoder in tokenizer_stream.hpp holds them back).
class tokenizer {
  using model_pointer = std::shared_ptr<const tokenizer_model>;

  // Calls `function` with the concrete tokenizer (a tokenizer_model through its pointer).
  template <class Function>
  decltype(auto) visit(Function&& function) const {
    return std::visit(
        [&](const auto& impl) -> decltype(auto) {
          if constexpr (std::is_same_v<std::decay_t<decltype(impl)>, model_pointer>)
            return function(*impl);
          else
            return function(impl);
        },
        impl_);
  }

 public:
  explicit tokenizer(spm_tokenizer impl) : impl_(std::move(impl)) {}
  explicit tokenizer(word_tokenizer impl) : impl_(std::move(impl)) {}
  /// A tokenizer implemented outside this header (pith::bpe_tokenizer); null is argument_error.
  explicit tokenizer(std::shared_ptr<const tokenizer_model> impl) : impl_(std::move(impl)) {
    if (!std::get<model_pointer>(impl_)) PITH_THROW(argument_error, "tokenizer: the tokenizer_model is null");
  }

  /// llama2.c tokenizer.bin; `vocab_size` comes from the model's header.
  static tokenizer load_llama2c(const std::filesystem::path& path, std::int32_t vocab_size) {
    return tokenizer(spm_tokenizer::load_llama2c(path, vocab_size));
  }
  /// The vocabulary embedded in a GGUF file whose tokenizer.ggml.model is "llama" (SentencePiece).
  /// A "gpt2" (byte-level BPE) vocabulary is config_error here: it is read by
  /// pith::bpe_tokenizer::from_gguf or pith::load_tokenizer (io/tokenizer_bpe.hpp, target pith::bpe).
  static tokenizer from_gguf(const gguf_file& file) { return tokenizer(spm_tokenizer::from_gguf(file)); }
  /// pith's JSON word/character vocabulary (format in tokenizer_words.hpp).
  static tokenizer load_words(const std::filesystem::path& path) { return tokenizer(word_tokenizer::load(path)); }

  /// The ids of `text`. `add_special` adds the tokens the vocabulary puts around a text:
  /// SentencePiece, llama2.c and word vocabularies BOS; tokenizer.json its post-processor's tokens
  /// (Gemma 3 BOS, Qwen nothing); GGUF "gpt2" BOS when add_bos_token says so.
  /// The text of special tokens ("<|eot_id|>", "<start_of_turn>") becomes those tokens, so a
  /// rendered chat template encodes as the model expects; `parse_special` false encodes it as
  /// plain text instead (for untrusted text). A llama2.c tokenizer.bin parses none.
  std::vector<std::int32_t> encode(std::string_view text, bool add_special, bool parse_special = true) const {
    return visit([&](const auto& impl) { return impl.encode(text, add_special, parse_special); });
  }
  std::string decode(std::int32_t prev_token, std::int32_t token) const {
    return visit([&](const auto& impl) { return impl.decode(prev_token, token); });
  }
  /// Concatenated decode of a whole sequence (the first token is decoded with prev_token = -1).
  std::string decode_all(std::span<const std::int32_t> tokens) const {
    std::string text;
    std::int32_t prev = -1;
    for (const std::int32_t token : tokens) {
      text += decode(prev, token);
      prev = token;
    }
    return text;
  }
  std::int32_t vocab_size() const noexcept {
    return visit([](const auto& impl) { return impl.vocab_size(); });
  }
  /// -1 when the vocabulary has none (Qwen's tokenizer.json has no BOS).
  std::int32_t bos_id() const noexcept {
    return visit([](const auto& impl) { return impl.bos_id(); });
  }
  std::int32_t eos_id() const noexcept {
    return visit([](const auto& impl) { return impl.eos_id(); });
  }
  /// The tokens encode(text, true) puts before and after the text's own.
  std::vector<std::int32_t> special_prefix() const {
    if (const tokenizer_model* model = as_model()) return model->special_prefix();
    return {bos_id()};
  }
  std::vector<std::int32_t> special_suffix() const {
    if (const tokenizer_model* model = as_model()) return model->special_suffix();
    return {};
  }

  /// The id whose text is exactly `text`, for chat formats and stop tokens:
  /// token_id("<|eot_id|>"), token_id("<end_of_turn>"), token_id("</s>"). Added and special
  /// tokens are found by their content; other entries as the vocabulary spells them (SentencePiece
  /// "▁world", byte-level BPE "Ġworld"). nullopt when the vocabulary has no such token.
  std::optional<std::int32_t> token_id(std::string_view text) const {
    return visit([&](const auto& impl) { return impl.token_id(text); });
  }
  /// The text of `id` as token_id() takes it (the stored piece); argument_error outside the vocabulary.
  std::string token_text(std::int32_t id) const {
    return visit([&](const auto& impl) { return std::string(impl.token_text(id)); });
  }
  /// The special and added tokens: control tokens (special = true) and the other tokens the text
  /// may name as a whole, in id order.
  std::vector<special_token> special_tokens() const {
    return visit([](const auto& impl) { return impl.special_tokens(); });
  }

  /// The concrete tokenizer, or nullptr when it is of another kind.
  const spm_tokenizer* as_spm() const noexcept { return std::get_if<spm_tokenizer>(&impl_); }
  const word_tokenizer* as_words() const noexcept { return std::get_if<word_tokenizer>(&impl_); }
  const tokenizer_model* as_model() const noexcept {
    const auto* model = std::get_if<model_pointer>(&impl_);
    return model != nullptr ? model->get() : nullptr;
  }

 private:

  std::variant<spm_tokenizer, word_tokenizer, model_pointer> impl_;
};

}  // namespace pith
