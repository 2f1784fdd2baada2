// SPDX-License-Identifier: MIT
// tokenizer: one value type over pith's vocabularies (llama2.c tokenizer.bin, GGUF "llama", pith JSON words/chars).
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "pith/io/gguf.hpp"
#include "pith/io/tokenizer_spm.hpp"
#include "pith/io/tokenizer_words.hpp"

namespace pith {

/// A tokenizer of any supported vocabulary. Copyable; encode and decode are const and may run
/// concurrently. decode(prev, token) follows llama2.c: pass the previous token (or -1 at the start)
/// so the leading space after BOS can be dropped; byte tokens decode to raw bytes, which may be
/// partial UTF-8 characters until the following tokens arrive.
class tokenizer {
 public:
  explicit tokenizer(spm_tokenizer impl) : impl_(std::move(impl)) {}
  explicit tokenizer(word_tokenizer impl) : impl_(std::move(impl)) {}

  /// llama2.c tokenizer.bin; `vocab_size` comes from the model's header.
  static tokenizer load_llama2c(const std::filesystem::path& path, std::int32_t vocab_size) {
    return tokenizer(spm_tokenizer::load_llama2c(path, vocab_size));
  }
  /// The vocabulary embedded in a GGUF file (tokenizer.ggml.model "llama").
  static tokenizer from_gguf(const gguf_file& file) { return tokenizer(spm_tokenizer::from_gguf(file)); }
  /// pith's JSON word/character vocabulary (format in tokenizer_words.hpp).
  static tokenizer load_words(const std::filesystem::path& path) { return tokenizer(word_tokenizer::load(path)); }

  std::vector<std::int32_t> encode(std::string_view text, bool add_bos) const {
    return std::visit([&](const auto& impl) { return impl.encode(text, add_bos); }, impl_);
  }
  std::string decode(std::int32_t prev_token, std::int32_t token) const {
    return std::visit([&](const auto& impl) { return impl.decode(prev_token, token); }, impl_);
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
    return std::visit([](const auto& impl) { return impl.vocab_size(); }, impl_);
  }
  std::int32_t bos_id() const noexcept {
    return std::visit([](const auto& impl) { return impl.bos_id(); }, impl_);
  }
  std::int32_t eos_id() const noexcept {
    return std::visit([](const auto& impl) { return impl.eos_id(); }, impl_);
  }

  /// The concrete tokenizer, or nullptr when it is of another kind.
  const spm_tokenizer* as_spm() const noexcept { return std::get_if<spm_tokenizer>(&impl_); }
  const word_tokenizer* as_words() const noexcept { return std::get_if<word_tokenizer>(&impl_); }

 private:
  std::variant<spm_tokenizer, word_tokenizer> impl_;
};

}  // namespace pith
