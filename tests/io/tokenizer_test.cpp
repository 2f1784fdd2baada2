// SPDX-License-Identifier: MIT
// Tests of the tokenizers: llama.cpp's 46 SentencePiece vectors, llama2.c tokenizer.bin, GGUF vocabularies, pith JSON.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <pith/io/tokenizer.hpp>

#include "test_util.hpp"

namespace {

using pith_test::gguf_builder;
using pith_test::temp_file;
using ids = std::vector<std::int32_t>;

struct vocab_case {
  std::string text;
  ids expected;
};

// llama.cpp's tokenizer test vectors: inputs separated by "\n__ggml_vocab_test__\n" (also after the
// last one), one output line of space-separated ids per input, without BOS.
std::vector<vocab_case> read_vocab_cases(const std::filesystem::path& inp, const std::filesystem::path& out) {
  const std::string inputs = pith_test::read_file(inp);
  const std::string separator = "\n__ggml_vocab_test__\n";
  std::vector<vocab_case> cases;
  for (std::size_t start = 0; start < inputs.size();) {
    const std::size_t end = inputs.find(separator, start);
    if (end == std::string::npos) break;
    cases.push_back({inputs.substr(start, end - start), {}});
    start = end + separator.size();
  }
  std::istringstream lines(pith_test::read_file(out));
  std::string line;
  std::size_t index = 0;
  while (std::getline(lines, line)) {
    if (index < cases.size()) {
      std::istringstream numbers(line);
      std::int32_t id = 0;
      while (numbers >> id) cases[index].expected.push_back(id);
    }
    ++index;
  }
  EXPECT_EQ(index, cases.size()) << "one output line per input";
  return cases;
}

void expect_all_vectors(const pith::tokenizer& tokenizer, const std::vector<vocab_case>& cases) {
  ASSERT_EQ(cases.size(), 46u);
  int matched = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const ids actual = tokenizer.encode(cases[i].text, false);
    EXPECT_EQ(actual, cases[i].expected) << "case " << i << ": \"" << cases[i].text << "\"";
    matched += actual == cases[i].expected;
    // SentencePiece with byte fallback is lossless: decoding after BOS gives the text back.
    const ids with_bos = tokenizer.encode(cases[i].text, true);
    EXPECT_EQ(with_bos.front(), tokenizer.bos_id());
    EXPECT_EQ(tokenizer.decode_all(with_bos), cases[i].text) << "case " << i;
  }
  EXPECT_EQ(matched, 46);
}

TEST(Tokenizer, GgufLlamaSpmReproducesLlamaCppVectors) {
  PITH_SHARED_MODEL_OR_SKIP(vocab, "ggml-vocab/ggml-vocab-llama-spm.gguf");
  PITH_SHARED_MODEL_OR_SKIP(inp, "ggml-vocab/ggml-vocab-llama-spm.gguf.inp");
  PITH_SHARED_MODEL_OR_SKIP(out, "ggml-vocab/ggml-vocab-llama-spm.gguf.out");
  const pith::gguf_file file(vocab);
  const auto tokenizer = pith::tokenizer::from_gguf(file);
  EXPECT_EQ(tokenizer.vocab_size(), 32000);
  EXPECT_EQ(tokenizer.bos_id(), 1);
  EXPECT_EQ(tokenizer.eos_id(), 2);
  ASSERT_NE(tokenizer.as_spm(), nullptr);
  EXPECT_TRUE(tokenizer.as_spm()->add_bos());
  EXPECT_EQ(tokenizer.as_spm()->unk_id(), 0);
  expect_all_vectors(tokenizer, read_vocab_cases(inp, out));
}

TEST(Tokenizer, Llama2cTokenizerBinReproducesLlamaCppVectors) {
  PITH_SHARED_MODEL_OR_SKIP(vocab, "llama2-tokenizer/tokenizer.bin");
  PITH_SHARED_MODEL_OR_SKIP(inp, "ggml-vocab/ggml-vocab-llama-spm.gguf.inp");
  PITH_SHARED_MODEL_OR_SKIP(out, "ggml-vocab/ggml-vocab-llama-spm.gguf.out");
  const auto tokenizer = pith::tokenizer::load_llama2c(vocab, 32000);
  expect_all_vectors(tokenizer, read_vocab_cases(inp, out));
}

TEST(Tokenizer, Llama2cHelloWorld) {
  PITH_SHARED_MODEL_OR_SKIP(vocab, "llama2-tokenizer/tokenizer.bin");
  const auto tokenizer = pith::tokenizer::load_llama2c(vocab, 32000);
  const ids tokens = tokenizer.encode("Hello world", true);
  EXPECT_EQ(tokens, (ids{1, 15043, 3186}));
  EXPECT_EQ(tokenizer.decode(1, 15043), "Hello");  // the dummy-prefix space is dropped after BOS
  EXPECT_EQ(tokenizer.decode(15043, 3186), " world");
  EXPECT_EQ(tokenizer.decode(3186, 15043), " Hello");
  EXPECT_EQ(tokenizer.decode_all(tokens), "Hello world");
  EXPECT_EQ(tokenizer.decode(15043, 13), "\n");  // <0x0A> is the raw byte
  EXPECT_EQ(tokenizer.decode(15043, 1), "");     // control tokens are empty
  EXPECT_EQ(tokenizer.decode(15043, 2), "");
  EXPECT_EQ(tokenizer.encode("", true), (ids{1}));
  EXPECT_EQ(tokenizer.encode("", false), (ids{}));
  EXPECT_THROW((void)tokenizer.decode(1, 32000), pith::argument_error);
  EXPECT_THROW((void)tokenizer.decode(1, -1), pith::argument_error);
}

const std::vector<std::string>& sample_texts() {
  static const std::vector<std::string> texts = {
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.",
      "Lily's mom said, \"Lily, let's go to the park.\"\nLily was sad and didn't know what to do.",
      "  two leading spaces, a tab\tand trailing spaces  ",
      "Unicode: caf\xC3\xA9, \xE2\x98\x83, \xE6\x97\xA5\xE6\x9C\xAC, \xF0\x9F\x98\x80!",
      "x",
      "",
  };
  return texts;
}

TEST(Tokenizer, Stories260KTok512RoundTrips) {
  PITH_SHARED_MODEL_OR_SKIP(vocab, "stories260K/tok512.bin");
  const auto tokenizer = pith::tokenizer::load_llama2c(vocab, 512);
  EXPECT_EQ(tokenizer.vocab_size(), 512);
  for (const auto& text : sample_texts()) {
    const ids tokens = tokenizer.encode(text, true);
    ASSERT_FALSE(tokens.empty());
    EXPECT_EQ(tokens.front(), 1);
    for (const auto id : tokens) EXPECT_TRUE(id >= 0 && id < 512);
    EXPECT_EQ(tokenizer.decode_all(tokens), text);
  }
  // "☃" is not a piece: three byte tokens (byte + 3), after the dummy prefix " ".
  const ids snowman = tokenizer.encode("\xE2\x98\x83", false);
  EXPECT_EQ(snowman, (ids{tokenizer.encode(" ", false).front(), 0xE2 + 3, 0x98 + 3, 0x83 + 3}));
  // Merges make the text shorter than its characters.
  EXPECT_LT(tokenizer.encode(sample_texts()[0], false).size(), sample_texts()[0].size() / 2);
}

TEST(Tokenizer, Stories260KGgufVocabularyMatchesTok512) {
  PITH_SHARED_MODEL_OR_SKIP(bin, "stories260K/tok512.bin");
  PITH_SHARED_MODEL_OR_SKIP(gguf_path, "stories260K/stories260K.gguf");
  const auto from_bin = pith::tokenizer::load_llama2c(bin, 512);
  const pith::gguf_file file(gguf_path);
  const auto from_gguf = pith::tokenizer::from_gguf(file);
  EXPECT_EQ(from_gguf.vocab_size(), 512);
  EXPECT_EQ(from_gguf.bos_id(), 1);
  EXPECT_EQ(from_gguf.eos_id(), 2);
  for (const auto& text : sample_texts()) {
    const ids tokens = from_gguf.encode(text, true);
    EXPECT_EQ(tokens, from_bin.encode(text, true)) << text;
    EXPECT_EQ(from_gguf.decode_all(tokens), text);
  }
  for (std::int32_t id = 3; id < 512; ++id) EXPECT_EQ(from_gguf.decode(0, id), from_bin.decode(0, id)) << id;
}

TEST(Tokenizer, TinyRandomGgufEmbedsTheLlamaVocabulary) {
  PITH_SHARED_MODEL_OR_SKIP(path, "llama2-tiny-random-gguf/llama-2-tiny-random.gguf");
  const pith::gguf_file file(path);
  const auto tokenizer = pith::tokenizer::from_gguf(file);
  EXPECT_EQ(tokenizer.vocab_size(), 32000);
  EXPECT_EQ(tokenizer.encode("Hello world", false), (ids{15043, 3186}));
  EXPECT_EQ(tokenizer.decode(1, 15043), "Hello");
  EXPECT_EQ(tokenizer.decode(15043, 3186), " world");
  EXPECT_EQ(tokenizer.as_spm()->piece(3186), "\xE2\x96\x81world");
  EXPECT_EQ(tokenizer.as_spm()->kind(13), pith::token_kind::byte);
  EXPECT_EQ(tokenizer.as_spm()->kind(1), pith::token_kind::control);
}

// tokenizer::from_gguf reads SentencePiece vocabularies; a byte-level one names the header that reads it.
TEST(Tokenizer, GptTwoVocabularyNamesTheBpeTokenizer) {
  PITH_SHARED_MODEL_OR_SKIP(path, "ggml-vocab/ggml-vocab-gpt-2.gguf");
  const pith::gguf_file file(path);
  PITH_EXPECT_THROW_WITH(pith::tokenizer::from_gguf(file), pith::config_error, "tokenizer_bpe.hpp");
  PITH_EXPECT_THROW_WITH(pith::tokenizer::from_gguf(file), pith::config_error, "ggml-vocab-gpt-2.gguf");
}

// ---- synthetic vocabularies ---------------------------------------------------------------------

struct piece {
  std::string text;
  float score;
};

// 3 specials, 256 byte tokens, then `extra`.
std::vector<piece> vocabulary_with(const std::vector<piece>& extra, const std::string& bos_text) {
  std::vector<piece> pieces = {{"<unk>", 0}, {bos_text, 0}, {bos_text == "<s>" ? "</s>" : "\n</s>\n", 0}};
  const char* hex = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) pieces.push_back({std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">", 0});
  pieces.insert(pieces.end(), extra.begin(), extra.end());
  return pieces;
}

std::string llama2c_tokenizer_bytes(const std::vector<piece>& pieces) {
  std::string out;
  std::int32_t max_length = 0;
  for (const auto& p : pieces) max_length = std::max(max_length, static_cast<std::int32_t>(p.text.size()));
  pith::detail::append_little_endian(out, max_length);
  for (const auto& p : pieces) {
    pith::detail::append_little_endian(out, p.score);
    pith::detail::append_little_endian(out, static_cast<std::int32_t>(p.text.size()));
    out += p.text;
  }
  return out;
}

// Token types: 0 unknown, 1-2 control, 3-258 byte, the rest normal unless `types` says otherwise.
std::string spm_gguf_bytes(const std::vector<piece>& pieces, bool with_types = true,
                           const std::vector<std::pair<std::size_t, std::int32_t>>& types_of = {}) {
  std::vector<std::string> texts;
  std::vector<float> scores;
  std::vector<std::int32_t> types;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    texts.push_back(pieces[i].text);
    scores.push_back(pieces[i].score);
    types.push_back(i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1);
  }
  for (const auto& [index, type] : types_of) types[index] = type;
  gguf_builder b;
  b.header(0, with_types ? 4 : 3)
      .kv_string("tokenizer.ggml.model", "llama")
      .kv_string_array("tokenizer.ggml.tokens", texts);
  b.kv_array<float>("tokenizer.ggml.scores", 6, scores);
  if (with_types) b.kv_array<std::int32_t>("tokenizer.ggml.token_type", 5, types);
  return b.bytes();
}

TEST(Tokenizer, HighestScoreMergesFirstAndTiesGoLeft) {
  const temp_file file(".bin");
  const auto encode = [&](const std::vector<piece>& extra, const std::string& text) {
    const auto pieces = vocabulary_with(extra, "\n<s>\n");
    file.write(llama2c_tokenizer_bytes(pieces));
    return pith::tokenizer::load_llama2c(file.path(), static_cast<std::int32_t>(pieces.size())).encode(text, false);
  };
  // ids: 259 " ", 260 "a", 261 "b", 262 "ab", 263 "bb"
  EXPECT_EQ(encode({{" ", -10}, {"a", -1}, {"b", -1}, {"ab", -5}, {"bb", -5}}, "abb"), (ids{259, 262, 261}));
  EXPECT_EQ(encode({{" ", -10}, {"a", -1}, {"b", -1}, {"ab", -5}, {"bb", -4}}, "abb"), (ids{259, 260, 263}));
  // A merge can enable a longer one: " a" then " ab".
  EXPECT_EQ(encode({{" ", -10}, {"a", -1}, {"b", -1}, {" a", -2}, {" ab", -3}}, "ab"), (ids{263}));
}

// run.c turns an unknown character into bytes before merging; SentencePiece (GGUF) keeps it as
// text, so "▁é" can merge even though "é" alone is not a piece.
TEST(Tokenizer, UnknownCharactersMergeOnlyInSentencePieceMode) {
  const std::vector<piece> extra_bin = {{" ", -10}, {" \xC3\xA9", -1}};
  const std::vector<piece> extra_gguf = {{"\xE2\x96\x81", -10}, {"\xE2\x96\x81\xC3\xA9", -1}};
  const temp_file bin(".bin");
  const auto bin_pieces = vocabulary_with(extra_bin, "\n<s>\n");
  bin.write(llama2c_tokenizer_bytes(bin_pieces));
  const auto llama2c = pith::tokenizer::load_llama2c(bin.path(), static_cast<std::int32_t>(bin_pieces.size()));
  EXPECT_EQ(llama2c.encode("\xC3\xA9", false), (ids{259, 0xC3 + 3, 0xA9 + 3}));

  const temp_file gguf(".gguf");
  gguf.write(spm_gguf_bytes(vocabulary_with(extra_gguf, "<s>")));
  const pith::gguf_file file(gguf.path());
  const auto spm = pith::tokenizer::from_gguf(file);
  EXPECT_EQ(spm.encode("\xC3\xA9", false), (ids{260}));
  EXPECT_EQ(spm.decode_all(spm.encode("\xC3\xA9 \xC3\xA9", true)), "\xC3\xA9 \xC3\xA9");
  // Defaults when the optional keys are absent: bos 1, eos 2, add_bos true.
  EXPECT_TRUE(spm.as_spm()->add_bos());
}

// A GGUF vocabulary finds its control and user-defined tokens in the text (llama.cpp's special-token
// parsing), with the dummy prefix before the text after each; a llama2.c tokenizer.bin does not.
TEST(Tokenizer, GgufSpecialTokensAreFoundInText) {
  // ids: 259 "▁", 260 "a", 261 "[INST]" (control), 262 "<think>" (user-defined), 263 "▁a"
  const std::vector<piece> extra = {{"\xE2\x96\x81", -10}, {"a", -1}, {"[INST]", 0}, {"<think>", 0}, {"\xE2\x96\x81" "a", -2}};
  const temp_file gguf(".gguf");
  gguf.write(spm_gguf_bytes(vocabulary_with(extra, "<s>"), true, {{261, 3}, {262, 4}}));
  const pith::gguf_file file(gguf.path());
  const auto tok = pith::tokenizer::from_gguf(file);
  EXPECT_EQ(tok.encode("<s>a[INST]a<think>", false), (ids{1, 263, 261, 263, 262}));
  EXPECT_EQ(tok.encode("a[INST]", true), (ids{1, 263, 261}));
  // Not parsed: control and unknown tokens' text is text ("[" and "]" become byte tokens), user-defined ones still count.
  const ids plain = tok.encode("[INST]<think>", false, false);
  ASSERT_GE(plain.size(), 2u);
  EXPECT_NE(plain.front(), 261);
  EXPECT_EQ(plain.back(), 262);
  EXPECT_EQ(tok.decode_all(plain), " [INST]<think>");  // the dummy prefix, kept without BOS before it

  EXPECT_EQ(tok.token_id("[INST]"), 261);
  EXPECT_EQ(tok.token_id("<s>"), 1);
  EXPECT_EQ(tok.token_id("\xE2\x96\x81" "a"), 263);
  EXPECT_EQ(tok.token_id("missing"), std::nullopt);
  EXPECT_EQ(tok.token_text(261), "[INST]");
  const auto specials = tok.special_tokens();
  ASSERT_EQ(specials.size(), 5u);  // <unk>, <s>, </s>, [INST], <think>
  EXPECT_EQ(specials[3].id, 261);
  EXPECT_TRUE(specials[3].special);
  EXPECT_EQ(specials[4].text, "<think>");
  EXPECT_FALSE(specials[4].special);
  EXPECT_EQ(tok.special_prefix(), (ids{1}));
  EXPECT_TRUE(tok.special_suffix().empty());

  // llama2.c's run.c finds no special token in text.
  const temp_file bin(".bin");
  const auto bin_pieces = vocabulary_with({{" ", -10}, {"a", -1}, {"[INST]", 0}}, "<s>");
  bin.write(llama2c_tokenizer_bytes(bin_pieces));
  const auto llama2c = pith::tokenizer::load_llama2c(bin.path(), static_cast<std::int32_t>(bin_pieces.size()));
  // " " then the bytes of "[INST]": no piece joins its characters, so run.c never reaches 261.
  EXPECT_EQ(llama2c.encode("[INST]", false), (ids{259, 3 + '[', 3 + 'I', 3 + 'N', 3 + 'S', 3 + 'T', 3 + ']'}));
  EXPECT_EQ(llama2c.token_id("[INST]"), 261);
  EXPECT_EQ(llama2c.special_tokens().size(), 3u);
}

TEST(Tokenizer, Llama2cFileErrorsNameTheFile) {
  const auto pieces = vocabulary_with({{" ", -1}, {"a", -2}}, "\n<s>\n");
  const std::string valid = llama2c_tokenizer_bytes(pieces);
  const auto size = static_cast<std::int32_t>(pieces.size());
  const temp_file file(".bin");
  for (const std::size_t length :
       {std::size_t{0}, std::size_t{3}, std::size_t{4}, std::size_t{10}, valid.size() / 2, valid.size() - 1}) {
    SCOPED_TRACE(length);
    file.write(valid.substr(0, length));
    PITH_EXPECT_THROW_WITH(pith::tokenizer::load_llama2c(file.path(), size), pith::format_error, file.name());
  }
  file.write(valid);
  PITH_EXPECT_THROW_WITH(pith::tokenizer::load_llama2c(file.path(), size - 1), pith::format_error, "vocab_size");
  PITH_EXPECT_THROW_WITH(pith::tokenizer::load_llama2c(file.path(), size + 1), pith::format_error, "truncated");
  PITH_EXPECT_THROW_WITH(pith::tokenizer::load_llama2c(file.path(), 2), pith::argument_error, file.name());

  std::string bad_max = valid;
  bad_max[0] = bad_max[1] = bad_max[2] = bad_max[3] = '\0';
  file.write(bad_max);
  PITH_EXPECT_THROW_WITH(pith::tokenizer::load_llama2c(file.path(), size), pith::format_error, "max_token_length 0");

  std::string too_long = valid;
  too_long[0] = 3;  // max_token_length 3, but "<unk>" has 5 bytes
  file.write(too_long);
  PITH_EXPECT_THROW_WITH(pith::tokenizer::load_llama2c(file.path(), size), pith::format_error, "token 0 has length 5");

  const temp_file missing(".bin");
  PITH_EXPECT_THROW_WITH(pith::tokenizer::load_llama2c(missing.path(), size), pith::io_error, missing.name());
}

TEST(Tokenizer, GgufVocabularyErrorsNameTheFileAndKey) {
  const auto pieces = vocabulary_with({{"\xE2\x96\x81", -1}}, "<s>");
  const std::vector<std::string> texts = {"<unk>", "<s>", "</s>"};
  struct bad_case {
    const char* what;
    std::string bytes;
    const char* needle;
  };
  const std::vector<bad_case> cases = {
      {"no model", gguf_builder().header(0, 1).kv_string_array("tokenizer.ggml.tokens", texts).bytes(),
       "'tokenizer.ggml.model' is missing"},
      {"no tokens", gguf_builder().header(0, 1).kv_string("tokenizer.ggml.model", "llama").bytes(),
       "'tokenizer.ggml.tokens' is missing"},
      {"tokens of the wrong type",
       gguf_builder()
           .header(0, 2)
           .kv_string("tokenizer.ggml.model", "llama")
           .kv_array<std::int32_t>("tokenizer.ggml.tokens", 5, {1, 2})
           .bytes(),
       "expected array of string"},
      {"scores of the wrong length",
       gguf_builder()
           .header(0, 3)
           .kv_string("tokenizer.ggml.model", "llama")
           .kv_string_array("tokenizer.ggml.tokens", texts)
           .kv_array<float>("tokenizer.ggml.scores", 6, {0, 0})
           .bytes(),
       "tokenizer.ggml.scores has 2 entries for 3 tokens"},
      {"bad token type",
       gguf_builder()
           .header(0, 3)
           .kv_string("tokenizer.ggml.model", "llama")
           .kv_string_array("tokenizer.ggml.tokens", texts)
           .kv_array<std::int32_t>("tokenizer.ggml.token_type", 5, {2, 3, 9})
           .bytes(),
       "token_type[2] = 9"},
      {"bos outside",
       gguf_builder()
           .header(0, 3)
           .kv_string("tokenizer.ggml.model", "llama")
           .kv_string_array("tokenizer.ggml.tokens", texts)
           .kv<std::uint32_t>("tokenizer.ggml.bos_token_id", 4, 3)
           .bytes(),
       "tokenizer.ggml.bos_token_id = 3 is outside"},
      {"add_bos of the wrong type",
       gguf_builder()
           .header(0, 3)
           .kv_string("tokenizer.ggml.model", "llama")
           .kv_string_array("tokenizer.ggml.tokens", texts)
           .kv<std::uint32_t>("tokenizer.ggml.add_bos_token", 4, 1)
           .bytes(),
       "'tokenizer.ggml.add_bos_token' has type uint32"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    const temp_file file(".gguf");
    file.write(c.bytes);
    const pith::gguf_file g(file.path());
    PITH_EXPECT_THROW_WITH(pith::tokenizer::from_gguf(g), pith::config_error, file.name());
    PITH_EXPECT_THROW_WITH(pith::tokenizer::from_gguf(g), pith::config_error, c.needle);
  }
}

// ---- pith JSON vocabularies ---------------------------------------------------------------------

TEST(WordTokenizer, ToyWordsFileEncodesAndDecodes) {
  const std::filesystem::path path = std::filesystem::path(PITH_TEST_DATA_DIR) / "io" / "toy_words.json";
  const auto tokenizer = pith::tokenizer::load_words(path);
  ASSERT_NE(tokenizer.as_words(), nullptr);
  EXPECT_EQ(tokenizer.as_spm(), nullptr);
  EXPECT_EQ(tokenizer.vocab_size(), 19);
  EXPECT_EQ(tokenizer.bos_id(), 1);
  EXPECT_EQ(tokenizer.eos_id(), 2);
  const ids sentence = tokenizer.encode("The cat  sat\ton the mat.", true);
  EXPECT_EQ(sentence, (ids{1, 3, 4, 5, 6, 3, 7, 8}));
  EXPECT_EQ(tokenizer.decode_all(sentence), "the cat sat on the mat.");
  const ids tricky = tokenizer.encode("A dog's (mat), don't!", false);
  EXPECT_EQ(tricky, (ids{10, 11, 12, 13, 14, 7, 15, 9, 17, 12, 18, 16}));
  EXPECT_EQ(tokenizer.decode_all(tricky), "a dog's (mat), don't!");
  EXPECT_EQ(tokenizer.encode("the zebra", false), (ids{3, 0}));
  EXPECT_EQ(tokenizer.decode(3, 0), " <unk>");
  EXPECT_EQ(tokenizer.decode(3, 2), "");
  EXPECT_EQ(tokenizer.decode(1, 4), "cat");
  EXPECT_EQ(tokenizer.encode("<s>", false), (ids{0, 13, 0}));  // specials are not parsed from text: "<" "s" ">"
  EXPECT_EQ(tokenizer.encode("", true), (ids{1}));
  EXPECT_THROW((void)tokenizer.decode(1, 19), pith::argument_error);
  EXPECT_EQ(tokenizer.token_id("cat"), 4);
  EXPECT_EQ(tokenizer.token_id("<s>"), 1);
  EXPECT_EQ(tokenizer.token_id("zebra"), std::nullopt);
  EXPECT_EQ(tokenizer.token_text(4), "cat");
  ASSERT_EQ(tokenizer.special_tokens().size(), 3u);
  EXPECT_EQ(tokenizer.special_tokens()[2].text, "</s>");
  EXPECT_THROW((void)tokenizer.token_text(19), pith::argument_error);
}

TEST(WordTokenizer, CharacterVocabulary) {
  const auto tokenizer = pith::word_tokenizer::parse(
      R"({"type":"pith-chars","tokens":["<unk>","<s>","</s>","h","\u00e9","l","o"," ","\u2603"],"unk":0,"bos":1,"eos":2})",
      "chars.json");
  EXPECT_EQ(tokenizer.granularity(), pith::word_tokenizer::level::characters);
  const ids tokens = tokenizer.encode("h\xC3\xA9llo \xE2\x98\x83x", true);
  EXPECT_EQ(tokens, (ids{1, 3, 4, 5, 5, 6, 7, 8, 0}));
  EXPECT_EQ(pith::tokenizer(tokenizer).decode_all(ids(tokens.begin(), tokens.end() - 1)), "h\xC3\xA9llo \xE2\x98\x83");
}

TEST(WordTokenizer, ContinuationPiecesSpellUnknownWordsAndJoinersDecodeWithoutSpaces) {
  const auto tokenizer = pith::word_tokenizer::parse(
      R"({"type":"pith-words","tokens":["<unk>","<s>","</s>","is",":",".","-","1","##2","##3","a","##b","key","x"],)"
      R"("unk":0,"bos":1,"eos":2,"lowercase":true,"continuation":"##","joiners":"-"})",
      "pieces.json");
  const pith::tokenizer tok(tokenizer);
  EXPECT_EQ(tokenizer.encode("Key-AB is: 123.", false), (ids{12, 6, 10, 11, 3, 4, 7, 8, 9, 5}));
  EXPECT_EQ(tok.decode_all(tokenizer.encode("Key-AB is: 123.", false)), "key-ab is: 123.");
  EXPECT_EQ(tokenizer.encode("a", false), (ids{10}));     // a single character is the character's token
  EXPECT_EQ(tokenizer.encode("ba 124", false), (ids{0, 0}));  // "b" and "##4" missing: the whole word is unk
  EXPECT_EQ(tokenizer.encode("x##2", false), (ids{13, 0, 0, 0}));  // pieces are never spelled by text: "#" is unk
  EXPECT_EQ(tokenizer.decode(7, 8), "2");
  EXPECT_EQ(tokenizer.decode(6, 12), "key");
  EXPECT_EQ(tokenizer.decode(12, 6), "-");
}

// Ids of RULER documents, instructions and answers in the toy-ruler vocabulary, written by
// tools/ruler_train.py --vectors with its Python tokenizer (the one the model was trained with).
TEST(WordTokenizer, ToyRulerVocabularyMatchesTheTrainingTokenizer) {
  const std::filesystem::path path = std::filesystem::path(PITH_TEST_DATA_DIR) / "ruler" / "toy_ruler_ids.json";
  const auto vectors = nlohmann::json::parse(pith_test::read_file(path));
  const pith::tokenizer tok(pith::word_tokenizer::parse(vectors.at("vocabulary").dump(), path.string()));
  ASSERT_GE(vectors.at("cases").size(), 14u);
  for (const auto& c : vectors.at("cases")) {
    const std::string text = c.at("text").get<std::string>();
    const ids got = tok.encode(text, false);
    EXPECT_EQ(got, c.at("ids").get<ids>()) << text.substr(0, 80);
    EXPECT_EQ(tok.decode_all(got), c.at("decoded").get<std::string>()) << text.substr(0, 80);
  }
}

TEST(WordTokenizer, InvalidVocabulariesNameTheSource) {
  const auto parse = [](const std::string& json) { return pith::word_tokenizer::parse(json, "toy.json"); };
  const std::string specials = R"("unk":0,"bos":1,"eos":2)";
  PITH_EXPECT_THROW_WITH(parse("{\"type\": "), pith::format_error, "toy.json");
  PITH_EXPECT_THROW_WITH(parse("[1]"), pith::config_error, "toy.json");
  PITH_EXPECT_THROW_WITH(parse(R"({"tokens":["a","b","c"],)" + specials + "}"), pith::config_error, "'type'");
  PITH_EXPECT_THROW_WITH(parse(R"({"type":"bpe","tokens":["a","b","c"],)" + specials + "}"), pith::config_error,
                         "'type'");
  PITH_EXPECT_THROW_WITH(parse(R"({"type":"pith-words",)" + specials + "}"), pith::config_error, "'tokens'");
  PITH_EXPECT_THROW_WITH(parse(R"({"type":"pith-words","tokens":[],)" + specials + "}"), pith::config_error,
                         "'tokens'");
  PITH_EXPECT_THROW_WITH(parse(R"({"type":"pith-words","tokens":["a","b",3],)" + specials + "}"), pith::config_error,
                         "'tokens'[2]");
  PITH_EXPECT_THROW_WITH(parse(R"({"type":"pith-words","tokens":["a","b","c"],"unk":0,"bos":1})"), pith::config_error,
                         "'eos'");
  PITH_EXPECT_THROW_WITH(parse(R"({"type":"pith-words","tokens":["a","b","c"],"unk":0,"bos":3,"eos":2})"),
                         pith::config_error, "'bos' = 3 is outside");
  PITH_EXPECT_THROW_WITH(parse(R"({"type":"pith-words","tokens":["a","b","c","d","d"],)" + specials + "}"),
                         pith::config_error, "appears twice");
  PITH_EXPECT_THROW_WITH(parse(R"({"type":"pith-words","tokens":["a","b","c","two words"],)" + specials + "}"),
                         pith::config_error, "whitespace");
  PITH_EXPECT_THROW_WITH(parse(R"({"type":"pith-words","tokens":["a","b","c",""],)" + specials + "}"),
                         pith::config_error, "empty");
  PITH_EXPECT_THROW_WITH(parse(R"({"type":"pith-chars","tokens":["a","b","c","de"],)" + specials + "}"),
                         pith::config_error, "one UTF-8 character");
  PITH_EXPECT_THROW_WITH(parse(R"({"type":"pith-words","tokens":["a","b","c"],"lowercase":1,)" + specials + "}"),
                         pith::config_error, "'lowercase'");
  PITH_EXPECT_THROW_WITH(parse(R"({"type":"pith-words","tokens":["a","b","c"],"continuation":7,)" + specials + "}"),
                         pith::config_error, "'continuation'");
  PITH_EXPECT_THROW_WITH(parse(R"({"type":"pith-words","tokens":["a","b","c"],"continuation":"",)" + specials + "}"),
                         pith::config_error, "'continuation' is empty");
  PITH_EXPECT_THROW_WITH(parse(R"({"type":"pith-chars","tokens":["a","b","c"],"continuation":"##",)" + specials + "}"),
                         pith::config_error, "pith-words");
  PITH_EXPECT_THROW_WITH(parse(R"({"type":"pith-words","tokens":["a","b","c"],"joiners":"-x",)" + specials + "}"),
                         pith::config_error, "'joiners'");
  const temp_file missing(".json");
  PITH_EXPECT_THROW_WITH(pith::word_tokenizer::load(missing.path()), pith::io_error, missing.name());
}

}  // namespace
