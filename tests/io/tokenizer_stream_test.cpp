// SPDX-License-Identifier: MIT
// Tests of streaming_encoder (a text tokenized block by block gives the whole text's tokens, with bounded memory) and streaming_decoder.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <pith/core/memory.hpp>
#include <pith/io/tokenizer_stream.hpp>
#include <pith/io/tokenizer_utf8.hpp>

#include "test_util.hpp"

namespace {

using ids = std::vector<std::int32_t>;

// A text with sentences, line breaks, a tab, runs of spaces, punctuation and 2-, 3- and 4-byte characters.
const std::string& mixed_text() {
  static const std::string text =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.\n"
      "Lily's mom said, \"Lily, let's go to the park.\"\nLily was sad and didn't know what to do.\n"
      "  two leading spaces, a tab\tand trailing spaces  \n"
      "Unicode: caf\xC3\xA9, \xE2\x98\x83, \xE6\x97\xA5\xE6\x9C\xAC, \xF0\x9F\x98\x80!\n\n"
      "The end.";
  return text;
}

// Pushes `text` in blocks of `block` bytes (the first block `first` bytes when given), then finishes.
ids streamed(const pith::tokenizer& tok, std::string_view text, std::size_t window, std::size_t block,
             std::size_t first = 0, std::size_t* forced = nullptr) {
  pith::streaming_encoder encoder(tok, true, window);
  ids out;
  if (first > 0) {
    encoder.push(text.substr(0, first), out);
    text.remove_prefix(first);
  }
  for (std::size_t i = 0; i < text.size(); i += block) encoder.push(text.substr(i, block), out);
  encoder.finish(out);
  if (forced) *forced = encoder.forced_cuts();
  return out;
}

// The SentencePiece vocabularies in ../shared/models that are present.
std::vector<std::pair<std::string, pith::tokenizer>> spm_vocabularies() {
  std::vector<std::pair<std::string, pith::tokenizer>> found;
  if (const auto p = pith_test::shared_model("stories260K/tok512.bin"); !p.empty())
    found.emplace_back("tok512.bin", pith::tokenizer::load_llama2c(p, 512));
  if (const auto p = pith_test::shared_model("stories260K/stories260K.gguf"); !p.empty())
    found.emplace_back("stories260K.gguf", pith::tokenizer::from_gguf(pith::gguf_file(p)));
  if (const auto p = pith_test::shared_model("llama2-tokenizer/tokenizer.bin"); !p.empty())
    found.emplace_back("llama2 tokenizer.bin", pith::tokenizer::load_llama2c(p, 32000));
  if (const auto p = pith_test::shared_model("ggml-vocab/ggml-vocab-llama-spm.gguf"); !p.empty())
    found.emplace_back("ggml-vocab-llama-spm.gguf", pith::tokenizer::from_gguf(pith::gguf_file(p)));
  return found;
}

// A window so small that the encoder cuts every line several times: only safe cuts keep the tokens.
constexpr std::size_t small_window = 32;

TEST(streaming_encoder_5, spm_streamed_equals_whole_at_every_block_offset) {
  const auto vocabularies = spm_vocabularies();
  if (vocabularies.empty()) GTEST_SKIP() << "no SentencePiece vocabulary under " << PITH_SHARED_MODELS_DIR;
  const std::string& text = mixed_text();
  std::string long_text;  // several default windows
  while (long_text.size() < 3 * pith::streaming_encoder::default_window) long_text += text + "\n";
  for (const auto& [name, tok] : vocabularies) {
    SCOPED_TRACE(name);
    const ids whole = tok.encode(text, true);
    for (std::size_t first = 1; first < text.size(); ++first) {
      std::size_t forced = 1;
      ASSERT_EQ(streamed(tok, text, small_window, text.size(), first, &forced), whole) << "cut at " << first;
      EXPECT_EQ(forced, 0u);
    }
    for (std::size_t block = 1; block <= 7; ++block)
      ASSERT_EQ(streamed(tok, text, small_window, block), whole) << "blocks of " << block;
    const ids long_whole = tok.encode(long_text, true);
    for (const std::size_t block : {std::size_t{1}, std::size_t{4099}, long_text.size()}) {
      std::size_t forced = 1;
      ASSERT_EQ(streamed(tok, long_text, pith::streaming_encoder::default_window, block, 0, &forced), long_whole)
          << "blocks of " << block;
      EXPECT_EQ(forced, 0u);
    }
  }
}

TEST(streaming_encoder_5, llama_cpp_vectors_stream_like_the_whole_text) {
  PITH_SHARED_MODEL_OR_SKIP(vocab, "ggml-vocab/ggml-vocab-llama-spm.gguf");
  PITH_SHARED_MODEL_OR_SKIP(inp, "ggml-vocab/ggml-vocab-llama-spm.gguf.inp");
  const auto tok = pith::tokenizer::from_gguf(pith::gguf_file(vocab));
  const std::string inputs = pith_test::read_file(inp);
  const std::string separator = "\n__ggml_vocab_test__\n";
  int cases = 0, exact_with_small_window = 0;
  for (std::size_t start = 0, end; (end = inputs.find(separator, start)) != std::string::npos;
       start = end + separator.size()) {
    const std::string text = inputs.substr(start, end - start);
    SCOPED_TRACE(text);
    ++cases;
    const ids whole = tok.encode(text, true);
    for (const std::size_t block : {1, 3}) {
      std::size_t forced = 1;
      EXPECT_EQ(streamed(tok, text, pith::streaming_encoder::default_window, block, 0, &forced), whole);
      EXPECT_EQ(forced, 0u);
      // With a tiny window a run without a safe cut is cut by force: the text still round-trips.
      const ids tiny = streamed(tok, text, pith::streaming_encoder::min_window, block, 0, &forced);
      EXPECT_EQ(tok.decode_all(tiny), text);
      if (forced == 0) {
        EXPECT_EQ(tiny, whole);
      }
      if (block == 1) exact_with_small_window += forced == 0;
    }
  }
  EXPECT_EQ(cases, 46);
  EXPECT_GT(exact_with_small_window, 0);
}

// Encoding the parts separately would put a dummy prefix before each; the stream puts one at the start.
TEST(streaming_encoder_5, dummy_prefix_only_at_the_start) {
  PITH_SHARED_MODEL_OR_SKIP(vocab, "llama2-tokenizer/tokenizer.bin");
  const auto tok = pith::tokenizer::load_llama2c(vocab, 32000);
  const ids whole = tok.encode("Hello world", true);
  EXPECT_EQ(whole, (ids{1, 15043, 3186}));
  EXPECT_EQ(streamed(tok, "Hello world", 8, 5), whole);
  ids separately = tok.encode("Hello", true);
  const ids rest = tok.encode(" world", false);
  separately.insert(separately.end(), rest.begin(), rest.end());
  EXPECT_NE(separately, whole);
  // Forced cuts in a run without spaces: still one leading space in the whole decoded text.
  const std::string run(200, 'x');
  std::size_t forced = 0;
  const ids cut = streamed(tok, run, pith::streaming_encoder::min_window, 3, 0, &forced);
  EXPECT_GT(forced, 10u);
  std::string decoded;
  for (std::size_t i = 1; i < cut.size(); ++i) decoded += tok.decode(0, cut[i]);  // 0: keep leading spaces
  EXPECT_EQ(decoded, " " + run);
}

// A cut forced in a run of 3-byte characters falls between characters: no character becomes bytes.
// "──" is a piece of the Llama vocabulary, so a run of "─" (U+2500) has no safe cut.
TEST(streaming_encoder_5, forced_cuts_keep_multibyte_characters_whole) {
  PITH_SHARED_MODEL_OR_SKIP(vocab, "ggml-vocab/ggml-vocab-llama-spm.gguf");
  const auto tok = pith::tokenizer::from_gguf(pith::gguf_file(vocab));
  std::string run;
  for (int i = 0; i < 120; ++i) run += "\xE2\x94\x80";
  const auto has_byte_token = [&](const ids& tokens) {
    for (const auto id : tokens)
      if (tok.as_spm()->kind(id) == pith::token_kind::byte) return true;
    return false;
  };
  ASSERT_FALSE(has_byte_token(tok.encode(run, true)));
  for (std::size_t block = 1; block <= 7; ++block) {
    std::size_t forced = 0;
    const ids cut = streamed(tok, run, 10, block, 0, &forced);
    EXPECT_GT(forced, 30u);
    EXPECT_FALSE(has_byte_token(cut)) << "blocks of " << block;
    EXPECT_EQ(tok.decode_all(cut), run);
  }
}

TEST(streaming_encoder_5, word_and_character_vocabularies_stream_like_the_whole_text) {
  const auto words = pith::tokenizer::load_words(std::filesystem::path(PITH_TEST_DATA_DIR) / "io" / "toy_words.json");
  const std::string sentence = "The cat  sat\ton the mat.\nA dog's (mat), don't! the zebra and the cat.";
  const ids whole_words = words.encode(sentence, true);
  const auto chars = pith::tokenizer(pith::word_tokenizer::parse(
      R"({"type":"pith-chars","tokens":["<unk>","<s>","</s>","h","\u00e9","l","o"," ","\u2603"],"unk":0,"bos":1,"eos":2})",
      "chars.json"));
  const std::string snowmen = "h\xC3\xA9llo \xE2\x98\x83\xE2\x98\x83\xE2\x98\x83 \xF0\x9F\x98\x80h\xC3\xA9\xC3\xA9\xC3\xA9llo";
  const ids whole_chars = chars.encode(snowmen, true);
  for (std::size_t first = 1; first < sentence.size(); ++first) {
    std::size_t forced = 1;
    EXPECT_EQ(streamed(words, sentence, pith::streaming_encoder::min_window, 3, first, &forced), whole_words) << first;
    EXPECT_EQ(forced, 0u);
  }
  for (std::size_t first = 1; first < snowmen.size(); ++first) {
    std::size_t forced = 1;
    EXPECT_EQ(streamed(chars, snowmen, pith::streaming_encoder::min_window, 2, first, &forced), whole_chars) << first;
    EXPECT_EQ(forced, 0u);
  }
}

// The whole-text encoder holds about 70 bytes per byte of a run (the normalized text, its symbols
// and merge queue): 284 MiB measured for this 4 MiB line. The stream holds one window and its
// encoding (about 1 MiB), so 16 MiB of growth leaves room for the allocator and fails at 6% of
// the old cost.
constexpr std::size_t line_bytes = std::size_t{4} << 20;
constexpr std::size_t bounded_growth = std::size_t{16} << 20;

// "ll" is a piece of tok512, so a line of "l" has no safe cut: every window is cut by force.
TEST(streaming_encoder_5, long_run_without_spaces_keeps_memory_bounded) {
  PITH_SHARED_MODEL_OR_SKIP(vocab, "stories260K/tok512.bin");
  const auto tok = pith::tokenizer::load_llama2c(vocab, 512);
  const std::string block(std::size_t{64} << 10, 'l');
  ASSERT_EQ(line_bytes % block.size(), 0u);
  pith::streaming_encoder encoder(tok, true);
  ids out;
  encoder.push(block, out);  // the first window's work: the baseline below includes it
  std::size_t tokens = out.size();
  out.clear();
  const std::size_t before = pith::peak_resident_bytes();
  for (std::size_t pushed = block.size(); pushed < line_bytes; pushed += block.size()) {
    encoder.push(block, out);
    tokens += out.size();
    out.clear();
  }
  encoder.finish(out);
  tokens += out.size();
  EXPECT_EQ(encoder.bytes_pushed(), line_bytes);
  EXPECT_GE(encoder.forced_cuts(), line_bytes / encoder.window() - 1);
  EXPECT_GT(tokens, line_bytes / 8);
#if defined(__SANITIZE_ADDRESS__)
  (void)before;
  GTEST_SKIP() << "AddressSanitizer keeps freed memory in quarantine: resident size says nothing here";
#else
  const std::size_t after = pith::peak_resident_bytes();
  if (before == 0) GTEST_SKIP() << "no /proc/self/status: peak resident size unknown";
  EXPECT_LE(after - before, bounded_growth) << "peak resident size grew from " << before << " to " << after;
#endif
}

TEST(streaming_encoder_5, misuse_is_an_argument_error) {
  const auto words = pith::tokenizer::load_words(std::filesystem::path(PITH_TEST_DATA_DIR) / "io" / "toy_words.json");
  PITH_EXPECT_THROW_WITH(pith::streaming_encoder(words, true, 4), pith::argument_error, "window 4");
  pith::streaming_encoder encoder(words, false);
  ids out;
  encoder.push("the cat", out);
  encoder.finish(out);
  EXPECT_EQ(out, words.encode("the cat", false));
  PITH_EXPECT_THROW_WITH(encoder.push("sat", out), pith::argument_error, "finished");
  pith::streaming_encoder empty(words, true);
  empty.finish(out);
  EXPECT_EQ(empty.forced_cuts(), 0u);
}

// ---- streaming_decoder ------------------------------------------------------------------------

// Byte tokens that split characters: every piece printed is valid UTF-8, and the pieces together are
// the whole decode (an unfinished character at the end becomes U+FFFD).
TEST(streaming_decoder, never_prints_part_of_a_character) {
  const auto found = spm_vocabularies();
  if (found.empty()) GTEST_SKIP() << "no SentencePiece vocabulary in ../shared/models";
  for (const auto& [name, tok] : found) {
    SCOPED_TRACE(name);
    // "é☃日😀" as byte tokens one byte at a time, then a normal token.
    const std::string text = "\xC3\xA9\xE2\x98\x83\xE6\x97\xA5\xF0\x9F\x98\x80";
    const auto byte_id = [&](unsigned char b) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "<0x%02X>", b);
      return *tok.token_id(hex);
    };
    ids tokens;
    for (const char c : text) tokens.push_back(byte_id(static_cast<unsigned char>(c)));
    pith::streaming_decoder decoder(tok);
    std::string printed;
    std::size_t pieces_with_text = 0;
    for (const std::int32_t token : tokens) {
      const std::string piece = decoder.push(token);
      EXPECT_TRUE(pith::utf8_is_valid(piece)) << "after token " << token;
      pieces_with_text += !piece.empty();
      printed += piece;
    }
    EXPECT_EQ(pieces_with_text, 4u);  // one per character, when its last byte arrives
    EXPECT_EQ(decoder.held_bytes(), 0u);
    EXPECT_EQ(printed, text);
    // An unfinished character: held, then U+FFFD at the end; a stray continuation byte: U+FFFD at once.
    EXPECT_EQ(decoder.push(byte_id(0xE2)), "");
    EXPECT_EQ(decoder.push(byte_id(0x98)), "");
    EXPECT_EQ(decoder.held_bytes(), 2u);
    EXPECT_EQ(decoder.finish(), "\xEF\xBF\xBD");
    EXPECT_EQ(decoder.push(byte_id(0x80)), "\xEF\xBF\xBD");
    // A character cut short by the next one: the lead byte alone is U+FFFD, the next character prints.
    EXPECT_EQ(decoder.push(byte_id(0xE6)), "");
    EXPECT_EQ(decoder.push(byte_id('a')), "\xEF\xBF\xBD" "a");
  }
}

TEST(streaming_decoder, utf8_steps_follow_maximal_subparts) {
  EXPECT_EQ(pith::utf8_repair("a\xF0\x9F\x98"), "a\xEF\xBF\xBD");                    // truncated: one subpart
  EXPECT_EQ(pith::utf8_repair("\xE0\x80\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong: 3
  EXPECT_EQ(pith::utf8_repair("\xED\xA0\x80x"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDx");  // surrogate
  EXPECT_EQ(pith::utf8_repair("\xF4\x90\x80\x80"), std::string(4 * 3, ' ').replace(0, 12, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"));
  EXPECT_EQ(pith::utf8_repair("\xC0\xAF\xFF"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(pith::utf8_repair("ok \xC3\xA9"), "ok \xC3\xA9");
  EXPECT_EQ(pith::utf8_complete_prefix("ab\xE2\x98"), 2u);
  EXPECT_EQ(pith::utf8_complete_prefix("ab\xE2\x98\x83"), 5u);
  EXPECT_EQ(pith::utf8_complete_prefix("ab\xE2x"), 4u);        // ill-formed already: nothing to wait for
  EXPECT_EQ(pith::utf8_complete_prefix("\xF0\x9F\x98"), 0u);
  EXPECT_EQ(pith::utf8_complete_prefix("\x80\x80\x80"), 3u);
  EXPECT_TRUE(pith::utf8_is_valid("\xF0\x9F\x98\x80"));
  EXPECT_FALSE(pith::utf8_is_valid("\xF0\x9F\x98"));
}

}  // namespace
