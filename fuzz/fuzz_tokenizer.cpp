// SPDX-License-Identifier: MIT
// libFuzzer target: pith::tokenizer loaders (llama2.c tokenizer.bin, GGUF vocabulary, JSON words, tokenizer.json BPE) on arbitrary bytes.
//
// Input: one selector byte (taken modulo 4), then
//   0: a uint16 little-endian vocab_size and a llama2.c tokenizer.bin;
//   1: a GGUF file holding a vocabulary (SentencePiece, or byte-level BPE when built with pith::bpe);
//   2: a pith JSON word/character vocabulary;
//   3: a Hugging Face tokenizer.json (BPE; only when built with pith::bpe, PITH_FUZZ_BPE).
// A vocabulary that loads encodes a few texts (every id must be in the vocabulary and decode) and
// decodes every id after -1, BOS and the previous id.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <pith/core/error.hpp>
#include <pith/io/gguf.hpp>
#include <pith/io/tokenizer.hpp>
#if defined(PITH_FUZZ_BPE)
#include <pith/io/tokenizer_bpe.hpp>
#endif

#include "fuzz_common.hpp"

namespace {

constexpr std::string_view texts[] = {
    "",
    "Once upon a time, there was a little cat.",
    "  two  spaces\tand\na newline ",
    "Don't (stop) [now]!? 100% {ok}; a:b",
    "h\xC3\xA9llo \xE6\x97\xA5\xE6\x9C\xAC \xE2\x96\x81 \xF0\x9F\x98\x80",  // é, 日本, ▁, an emoji
    "broken \xFF\xFE \xC3 \xE2\x96 \x80 utf-8",
    "<s> </s> <unk> <0x41>",
    "<|eot|> it's 12345 \r\n\t  e\xCC\x81 \xE6\x97\xA5\xE6\x9C\xAC",
};

void exercise(const pith::tokenizer& tokenizer) {
  const std::int32_t vocab = tokenizer.vocab_size();
  if (vocab <= 0) pith_fuzz::fail("empty vocabulary accepted");
  // BPE vocabularies may have no BOS or EOS (-1).
  const std::int32_t lowest = tokenizer.as_model() != nullptr ? -1 : 0;
  for (const std::int32_t special : {tokenizer.bos_id(), tokenizer.eos_id()})
    if (special < lowest || special >= vocab) pith_fuzz::fail("special id " + std::to_string(special) + " outside vocabulary");
  for (const std::string_view text : texts) {
    for (const bool add_bos : {false, true}) {
      std::vector<std::int32_t> ids;
      if (tokenizer.as_model() != nullptr) {
        // A regex from the file may give up on a text (PCRE2's match limit): a format_error, not a crash.
        try {
          ids = tokenizer.encode(text, add_bos);
        } catch (const pith::format_error&) {
          continue;
        }
      } else {
        ids = tokenizer.encode(text, add_bos);
      }
      for (const std::int32_t id : ids)
        if (id < 0 || id >= vocab) pith_fuzz::fail("encode produced id " + std::to_string(id) + " of " + std::to_string(vocab));
      pith_fuzz::keep(tokenizer.decode_all(ids).size());
    }
  }
  for (std::int32_t id = 0; id < vocab; ++id) {
    pith_fuzz::keep(tokenizer.decode(-1, id).size());
    pith_fuzz::keep(tokenizer.decode(tokenizer.bos_id(), id).size());
    pith_fuzz::keep(tokenizer.decode(id == 0 ? vocab - 1 : id - 1, id).size());
    const std::string text = tokenizer.token_text(id);  // empty for an id no token uses
    const auto found = text.empty() ? std::optional<std::int32_t>(id) : tokenizer.token_id(text);
    if (!found || *found < 0 || *found >= vocab) pith_fuzz::fail("token_id(token_text(" + std::to_string(id) + ")) is no id");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const pith_fuzz::input_file llama2c_input("tokenizer", ".tokenizer.bin");
  static const pith_fuzz::input_file gguf_input("tokenizer", ".gguf");
  static const pith_fuzz::input_file words_input("tokenizer", ".json");
  static const pith_fuzz::input_file bpe_input("tokenizer", ".tokenizer.json");
  if (size < 1) return 0;
  const std::span<const std::uint8_t> bytes(data, size);
  std::optional<pith::tokenizer> tokenizer;
  try {
    switch (bytes[0] % 4) {
      case 0: {
        if (size < 3) return 0;
        const std::int32_t vocab_size = bytes[1] | (bytes[2] << 8);
        tokenizer = pith::tokenizer::load_llama2c(llama2c_input.write(bytes.subspan(3)), vocab_size);
        break;
      }
      case 1: {
        const pith::gguf_file file(gguf_input.write(bytes.subspan(1)));
#if defined(PITH_FUZZ_BPE)
        if (file.has("tokenizer.ggml.model") && file.get_string("tokenizer.ggml.model") == "gpt2") {
          tokenizer = pith::make_tokenizer(pith::bpe_tokenizer::from_gguf(file));
          break;
        }
#endif
        tokenizer = pith::tokenizer::from_gguf(file);
        break;
      }
      case 2:
        tokenizer = pith::tokenizer::load_words(words_input.write(bytes.subspan(1)));
        break;
      default:
#if defined(PITH_FUZZ_BPE)
        tokenizer = pith::make_tokenizer(pith::bpe_tokenizer::load_json(bpe_input.write(bytes.subspan(1))));
        break;
#else
        return 0;
#endif
    }
  } catch (const pith::error&) {
    return 0;  // rejected input: the expected outcome for most mutations
  }
  exercise(*tokenizer);  // outside the try: a loaded vocabulary must not throw
  return 0;
}
