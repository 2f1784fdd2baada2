// SPDX-License-Identifier: MIT
// Tests of the BPE tokenizer: merges by rank, added tokens, the real files' special tokens and chat prompts, streaming, GGUF and tokenizer.json errors.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <pith/io/tokenizer_bpe.hpp>
#include <pith/io/tokenizer_stream.hpp>

#include "bpe_test_util.hpp"
#include "test_util.hpp"

namespace {

using ids = std::vector<std::int32_t>;
using pith_test::gguf_builder;
using pith_test::temp_file;

// A byte-level tokenizer.json: the 256 byte characters (ids 0-255 in byte order), then `merges`
// (each "left right" makes the next id), GPT-2's regex, and `added` tokens.
nlohmann::json byte_level_json(const std::vector<std::pair<std::string, std::string>>& merges,
                               const nlohmann::json& added = nlohmann::json::array()) {
  const auto& alphabet = pith::bpe_detail::alphabet();
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[alphabet.text[static_cast<std::size_t>(b)]] = b;
  nlohmann::json merge_list = nlohmann::json::array();
  int next = 256;
  for (const auto& [left, right] : merges) {
    vocab[left + right] = next++;
    merge_list.push_back(left + " " + right);
  }
  return {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}}},
          {"added_tokens", added},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
          {"decoder", {{"type", "ByteLevel"}}}};
}

pith::tokenizer parse(const nlohmann::json& json, const std::string& config = "") {
  return pith::make_tokenizer(pith::bpe_tokenizer::parse_json(json.dump(), config, "test.json"));
}

const std::string space = "\xC4\xA0";  // "Ġ", the byte-level character of a space

// The lowest rank merges first; among equal ranks the leftmost pair; a merge can enable another.
TEST(BpeTokenizer, MergesByRankThenLeftmost) {
  // 256 "ab", 257 "bc", 258 "abc"
  const auto abc = parse(byte_level_json({{"a", "b"}, {"b", "c"}, {"ab", "c"}}));
  EXPECT_EQ(abc.encode("abc", false), (ids{258}));
  const auto bc_first = parse(byte_level_json({{"b", "c"}, {"a", "b"}}));  // 256 "bc", 257 "ab"
  EXPECT_EQ(bc_first.encode("abc", false), (ids{'a', 256}));
  const auto repeated = parse(byte_level_json({{"a", "a"}}));  // 256 "aa": "aaa" is "aa" + "a", leftmost first
  EXPECT_EQ(repeated.encode("aaa", false), (ids{256, 'a'}));
  // GPT-2's regex: " abc" is one word, "Ġ" + "abc" merge only within it.
  const auto words = parse(byte_level_json({{"a", "b"}, {"ab", "c"}, {space, "abc"}}));
  EXPECT_EQ(words.encode("abc abc", false), (ids{257, 258}));
  EXPECT_EQ(words.decode_all(words.encode("abc abc\xF0\x9F\xA6\x99", false)), "abc abc\xF0\x9F\xA6\x99");
  EXPECT_EQ(words.bos_id(), -1);  // no tokenizer_config.json
  EXPECT_TRUE(words.special_prefix().empty());
}

// Added tokens are found before the regex, leftmost-longest; special ones only when parsed; lstrip
// and rstrip take the whitespace beside them; special ones decode to nothing.
TEST(BpeTokenizer, AddedTokensAreCutOutFirst) {
  const nlohmann::json added = {
      {{"id", 300}, {"content", "<x>"}, {"special", true}, {"rstrip", true}},
      {{"id", 301}, {"content", "<x><y>"}, {"special", true}},
      {{"id", 302}, {"content", "<think>"}, {"special", false}, {"lstrip", true}},
  };
  const auto tok = parse(byte_level_json({}, added), R"({"bos_token": "<x>", "eos_token": {"content": "<x><y>"}})");
  EXPECT_EQ(tok.encode("a<x>   b", false), (ids{'a', 300, 'b'}));
  EXPECT_EQ(tok.encode("<x><y><x>", false), (ids{301, 300}));
  EXPECT_EQ(tok.encode("a  <think>", false), (ids{'a', 302}));
  // Not parsed: "<x>" is text (its bytes), "<think>" (not special) is still found.
  EXPECT_EQ(tok.encode("<x><think>", false, false), (ids{'<', 'x', '>', 302}));
  EXPECT_EQ(tok.decode_all(ids{'a', 300, 302}), "a<think>");
  EXPECT_EQ(tok.bos_id(), 300);
  EXPECT_EQ(tok.eos_id(), 301);
  EXPECT_EQ(tok.token_id("<x><y>"), 301);
  EXPECT_EQ(tok.token_id(space), 32);
  EXPECT_EQ(tok.token_text(302), "<think>");
  const auto specials = tok.special_tokens();
  ASSERT_EQ(specials.size(), 3u);
  EXPECT_TRUE(specials[0].special);
  EXPECT_FALSE(specials[2].special);
  EXPECT_EQ(tok.vocab_size(), 303);
  EXPECT_EQ(tok.decode(-1, 299), "");  // an id between the vocabulary and the added tokens
  EXPECT_THROW((void)tok.decode(-1, 303), pith::argument_error);
}

// Ill-formed UTF-8 is read as U+FFFD, each maximal ill-formed subpart once.
TEST(BpeTokenizer, IllFormedUtf8IsReadAsReplacementCharacters) {
  const auto tok = parse(byte_level_json({}));
  EXPECT_EQ(tok.encode("a\xFF\xC3", false), tok.encode("a\xEF\xBF\xBD\xEF\xBF\xBD", false));
  EXPECT_EQ(tok.encode("\xE2\x82(", false), tok.encode("\xEF\xBF\xBD(", false));
}

// The real files: special tokens by name, BOS and EOS from tokenizer_config.json, the chat prompts
// the models' templates render (notes/tokenizers.md §5.1), and the Vietnamese words ignore_merges keeps whole.
TEST(BpeTokenizer, RealFilesNameTheirSpecialTokens) {
  PITH_REAL_BPE_OR_SKIP(llama3, "llama3");
  PITH_REAL_BPE_OR_SKIP(qwen3, "qwen3");
  PITH_REAL_BPE_OR_SKIP(gemma3, "gemma3");
  EXPECT_EQ(llama3->token_id("<|eot_id|>"), 128009);
  EXPECT_EQ(llama3->token_id("<|start_header_id|>"), 128006);
  EXPECT_EQ(llama3->bos_id(), 128000);
  EXPECT_EQ(llama3->eos_id(), 128001);
  EXPECT_EQ(llama3->special_tokens().size(), 256u);
  EXPECT_EQ(qwen3->token_id("<|im_end|>"), 151645);
  EXPECT_EQ(qwen3->token_id("<think>"), 151667);
  EXPECT_EQ(qwen3->bos_id(), -1);
  EXPECT_EQ(qwen3->eos_id(), 151645);
  EXPECT_EQ(qwen3->special_tokens().size(), 26u);
  EXPECT_EQ(gemma3->token_id("<end_of_turn>"), 106);
  EXPECT_EQ(gemma3->token_id("<start_of_turn>"), 105);
  EXPECT_EQ(gemma3->bos_id(), 2);
  EXPECT_EQ(gemma3->eos_id(), 106);
  EXPECT_EQ(gemma3->vocab_size(), 262145);

  EXPECT_EQ(llama3->encode("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
                           "<|start_header_id|>assistant<|end_header_id|>\n\n", false),
            (ids{128000, 128006, 882, 128007, 271, 9906, 128009, 128006, 78191, 128007, 271}));
  EXPECT_EQ(qwen3->encode("<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n", false),
            (ids{151644, 872, 198, 9707, 151645, 198, 151644, 77091, 198, 151667, 271, 151668, 271}));
  EXPECT_EQ(gemma3->encode("<bos><start_of_turn>user\nBe brief.\n\nHello<end_of_turn>\n<start_of_turn>model\n", false),
            (ids{2, 105, 2364, 107, 3912, 8652, 236761, 108, 9259, 106, 107, 105, 4368, 107}));
  EXPECT_EQ(llama3->encode(" l\xC3\xA0m vi\xE1\xBB\x87" "c", false), (ids{100724, 100769}));
}

// A 4-byte emoji spread over three Llama 3 tokens prints once, whole, with the last of them.
TEST(BpeTokenizer, StreamingDecoderHoldsPartialCharacters) {
  PITH_REAL_BPE_OR_SKIP(llama3, "llama3");
  pith::streaming_decoder decoder(*llama3);
  EXPECT_EQ(decoder.push(9468), "");
  EXPECT_EQ(decoder.push(99), "");
  EXPECT_EQ(decoder.push(247), "\xF0\x9F\xA6\x99");
  EXPECT_EQ(decoder.push(128009), "");  // a special token prints nothing
  EXPECT_EQ(decoder.push(9906), "Hello");
  EXPECT_EQ(decoder.finish(), "");
}

// Byte-level tokenizers cut a streamed text after a line feed before a letter or number; Gemma's
// after "\n", an added token; none cuts inside an added token.
TEST(BpeTokenizer, SafeCutsForStreaming) {
  PITH_REAL_BPE_OR_SKIP(llama3, "llama3");
  PITH_REAL_BPE_OR_SKIP(gemma3, "gemma3");
  const auto* llama = llama3->as_model();
  EXPECT_TRUE(llama->can_cut("\n", "a"));
  EXPECT_TRUE(llama->can_cut("\n", "7"));
  EXPECT_FALSE(llama->can_cut("\n", " "));
  EXPECT_FALSE(llama->can_cut("a", "b"));
  EXPECT_FALSE(llama->can_cut("|", ">"));  // inside <|eot_id|>
  const auto* gemma = gemma3->as_model();
  EXPECT_TRUE(gemma->can_cut("\n", "a"));
  EXPECT_FALSE(gemma->can_cut("\n", "\n"));  // "\n\n" is an added token
  EXPECT_FALSE(gemma->can_cut(" ", "a"));
}

// Parts of tokenizer.json pith does not implement are named; so are malformed ones.
TEST(BpeTokenizer, UnsupportedOrMalformedPartsAreNamed) {
  const nlohmann::json valid = byte_level_json({{"a", "b"}});
  const auto expect_error = [&](nlohmann::json json, const std::string& needle) {
    SCOPED_TRACE(needle);
    PITH_EXPECT_THROW_WITH(parse(json), pith::config_error, needle);
    PITH_EXPECT_THROW_WITH(parse(json), pith::config_error, "test.json");
  };
  auto json = valid;
  json["model"]["type"] = "WordPiece";
  expect_error(json, "model.type = 'WordPiece' is not supported");
  json = valid;
  json["normalizer"] = {{"type", "BertNormalizer"}};
  expect_error(json, "normalizer.type = 'BertNormalizer'");
  json = valid;
  json["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {{{"type", "Whitespace"}}}}};
  expect_error(json, "pre_tokenizer.pretokenizers[0].type = 'Whitespace'");
  json = valid;
  json["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  expect_error(json, "does not compile");
  json = valid;
  json["decoder"] = {{"type", "CTC"}};
  expect_error(json, "decoder.type = 'CTC'");
  json = valid;
  json["post_processor"] = {{"type", "Mystery"}};
  expect_error(json, "post_processor.type = 'Mystery'");
  json = valid;  // a template token beyond the vocabulary would reach the model as an id it has no row for
  json["post_processor"] = {{"type", "TemplateProcessing"},
                            {"single", {{{"SpecialToken", {{"id", "<x>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}}}}}},
                            {"special_tokens", {{"<x>", {{"id", "<x>"}, {"ids", {100000}}}}}}};
  expect_error(json, "post_processor adds token id 100000, outside the vocabulary");
  json = valid;
  json["post_processor"] = {{"type", "RobertaProcessing"}, {"cls", {"<s>", -3}}, {"sep", {"</s>", 0}}};
  expect_error(json, "post_processor adds token id -3");
  json = valid;
  json["model"]["merges"] = {"ab"};
  expect_error(json, "model.merges[0]");
  json = valid;
  json["model"]["dropout"] = 0.1;
  expect_error(json, "model.dropout");
  json = valid;
  json["model"]["vocab"]["x"] = "one";
  expect_error(json, "model.vocab[\"x\"]");
  json = valid;
  json["added_tokens"] = {{{"content", "<x>"}}};
  expect_error(json, "added_tokens[0].id");
  json = valid;
  json.erase("model");
  expect_error(json, "'model' is missing");
  PITH_EXPECT_THROW_WITH(pith::bpe_tokenizer::parse_json("{\"model\": ", "", "test.json"), pith::format_error, "test.json");
  PITH_EXPECT_THROW_WITH(pith::bpe_tokenizer::parse_json(valid.dump(), R"({"bos_token": "<nope>"})", "test.json"),
                         pith::config_error, "bos_token");
  const temp_file missing(".json");
  PITH_EXPECT_THROW_WITH(pith::load_tokenizer(missing.path()), pith::io_error, missing.name());
}

// A GGUF byte-level vocabulary: tokens, merges and tokenizer.ggml.pre; bad keys are named.
TEST(BpeTokenizer, GgufVocabulary) {
  const auto& alphabet = pith::bpe_detail::alphabet();
  std::vector<std::string> tokens(alphabet.text.begin(), alphabet.text.end());
  tokens.push_back("ab");
  tokens.push_back("<|end|>");
  std::vector<std::int32_t> types(tokens.size(), 1);
  types.back() = 3;
  const auto gguf = [&](const std::string& pre, bool with_merges) {
    gguf_builder b;
    b.header(0, with_merges ? 5 : 4)
        .kv_string("tokenizer.ggml.model", "gpt2")
        .kv_string("tokenizer.ggml.pre", pre)
        .kv_string_array("tokenizer.ggml.tokens", tokens);
    b.kv_array<std::int32_t>("tokenizer.ggml.token_type", 5, types);
    if (with_merges) b.kv_string_array("tokenizer.ggml.merges", {"a b"});
    return b.bytes();
  };
  const temp_file file(".gguf");
  file.write(gguf("qwen2", true));
  const auto tok = pith::load_tokenizer(file.path());
  EXPECT_EQ(tok.encode("ab<|end|>a\xCC\x81", false), tok.encode("ab<|end|>\xC3\xA1", false));  // NFC as Qwen's
  EXPECT_EQ(tok.encode("ab<|end|>", false), (ids{256, 257}));
  EXPECT_EQ(tok.decode_all(ids{256, 257, 32}), "ab ");
  EXPECT_EQ(tok.token_id("<|end|>"), 257);
  file.write(gguf("mystery-pre", true));
  PITH_EXPECT_THROW_WITH(pith::load_tokenizer(file.path()), pith::config_error, "tokenizer.ggml.pre = 'mystery-pre'");
  file.write(gguf("gpt-2", false));
  PITH_EXPECT_THROW_WITH(pith::load_tokenizer(file.path()), pith::config_error, "tokenizer.ggml.merges");
}

}  // namespace
