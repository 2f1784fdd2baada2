// SPDX-License-Identifier: MIT
// The BPE tokenizer against the reference's ids: tests/data/tokenizers (Llama 3, Qwen3, Gemma 3 on a 718-string corpus) and llama.cpp's GPT-2 vectors.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <pith/io/tokenizer_bpe.hpp>
#include <pith/io/tokenizer_stream.hpp>

#include "bpe_test_util.hpp"
#include "test_util.hpp"

namespace {

using ids = std::vector<std::int32_t>;

std::filesystem::path vectors_dir() { return std::filesystem::path(PITH_TEST_DATA_DIR) / "tokenizers"; }

// The corpus as bytes: JSON strings, or {"hex": ...} for bytes that are not valid UTF-8.
const std::vector<std::string>& corpus() {
  static const std::vector<std::string> lines = [] {
    std::vector<std::string> out;
    std::istringstream in(pith_test::read_file(vectors_dir() / "corpus.jsonl"));
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      const nlohmann::json value = nlohmann::json::parse(line);
      if (value.is_string()) {
        out.push_back(value.get<std::string>());
        continue;
      }
      const std::string hex = value.at("hex").get<std::string>();
      std::string bytes;
      for (std::size_t i = 0; i + 1 < hex.size(); i += 2) bytes += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
      out.push_back(bytes);
    }
    return out;
  }();
  return lines;
}

struct reference {
  nlohmann::json header;
  std::vector<ids> ids_of;                          // per corpus line
  std::map<std::size_t, std::string> decoded_of;  // lines whose decode differs from the input text
};

reference read_reference(const std::string& name) {
  reference out;
  std::istringstream in(pith_test::read_file(vectors_dir() / (name + ".jsonl")));
  std::string line;
  std::getline(in, line);
  out.header = nlohmann::json::parse(line);
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const nlohmann::json entry = nlohmann::json::parse(line);
    if (entry.contains("decoded")) out.decoded_of[out.ids_of.size()] = entry["decoded"].get<std::string>();
    out.ids_of.push_back(entry.at("ids").get<ids>());
  }
  return out;
}

// Every corpus string: the same ids as the reference, with and without the special tokens, and the
// reference's decoded text (special tokens left out).
void expect_reference_ids(const std::string& name) {
  PITH_REAL_BPE_OR_SKIP(tok, name);
  const reference expected = read_reference(name);
  const auto& texts = corpus();
  ASSERT_EQ(expected.ids_of.size(), texts.size()) << name << ".jsonl has one line per corpus string";
  ASSERT_EQ(expected.header.at("strings").get<std::size_t>(), texts.size());
  const ids prefix = expected.header.at("special_prefix").get<ids>();
  const ids suffix = expected.header.at("special_suffix").get<ids>();
  EXPECT_EQ(tok->special_prefix(), prefix);
  EXPECT_EQ(tok->special_suffix(), suffix);
  std::size_t equal = 0, decoded_equal = 0;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const ids actual = tok->encode(texts[i], false);
    EXPECT_EQ(actual, expected.ids_of[i]) << name << " corpus line " << i + 1 << ": " << nlohmann::json(pith::utf8_repair(texts[i]));
    equal += actual == expected.ids_of[i];
    ids with_special = prefix;
    with_special.insert(with_special.end(), expected.ids_of[i].begin(), expected.ids_of[i].end());
    with_special.insert(with_special.end(), suffix.begin(), suffix.end());
    EXPECT_EQ(tok->encode(texts[i], true), with_special) << name << " corpus line " << i + 1;
    const auto found = expected.decoded_of.find(i);
    const std::string want = found != expected.decoded_of.end() ? found->second : pith::utf8_repair(texts[i]);
    const std::string got = pith::utf8_repair(tok->decode_all(expected.ids_of[i]));
    EXPECT_EQ(got, want) << name << " decode of corpus line " << i + 1;
    decoded_equal += got == want;
  }
  EXPECT_EQ(equal, texts.size());
  EXPECT_EQ(decoded_equal, texts.size());
  std::printf("%s: ids equal for %zu of %zu strings, decode equal for %zu\n", name.c_str(), equal, texts.size(), decoded_equal);
}

TEST(BpeVectors, Llama3MatchesTheReferenceOnTheCorpus) { expect_reference_ids("llama3"); }
TEST(BpeVectors, Qwen3MatchesTheReferenceOnTheCorpus) { expect_reference_ids("qwen3"); }
TEST(BpeVectors, Gemma3MatchesTheReferenceOnTheCorpus) { expect_reference_ids("gemma3"); }

// The corpus, joined by line feeds and fed to streaming_encoder in small windows, gives the whole
// text's ids: the cuts the BPE tokenizer allows do not change them.
TEST(BpeVectors, StreamedCorpusEqualsTheWholeText) {
  std::string text;
  for (const std::string& line : corpus()) text += line + "\n";
  for (const char* name : {"llama3", "qwen3", "gemma3"}) {
    SCOPED_TRACE(name);
    PITH_REAL_BPE_OR_SKIP(tok, name);
    const ids whole = tok->encode(text, true);
    pith::streaming_encoder encoder(*tok, true, 2048);
    ids streamed;
    for (std::size_t i = 0; i < text.size(); i += 97) encoder.push(std::string_view(text).substr(i, 97), streamed);
    encoder.finish(streamed);
    EXPECT_EQ(streamed, whole);
    EXPECT_EQ(encoder.forced_cuts(), 0u);
  }
}

// llama.cpp's vectors for its GPT-2 vocabulary (tokenizer.ggml.pre = gpt-2): 46 strings, no BOS.
TEST(BpeVectors, GgufGpt2ReproducesLlamaCppVectors) {
  PITH_SHARED_MODEL_OR_SKIP(vocab, "ggml-vocab/ggml-vocab-gpt-2.gguf");
  PITH_SHARED_MODEL_OR_SKIP(inp, "ggml-vocab/ggml-vocab-gpt-2.gguf.inp");
  PITH_SHARED_MODEL_OR_SKIP(out, "ggml-vocab/ggml-vocab-gpt-2.gguf.out");
  const pith::tokenizer tok = pith::load_tokenizer(vocab);
  ASSERT_NE(tok.as_model(), nullptr);
  EXPECT_EQ(tok.vocab_size(), 50257);
  const std::string inputs = pith_test::read_file(inp);
  const std::string separator = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (std::size_t start = 0; start < inputs.size();) {
    const std::size_t end = inputs.find(separator, start);
    if (end == std::string::npos) break;
    texts.push_back(inputs.substr(start, end - start));
    start = end + separator.size();
  }
  std::istringstream lines(pith_test::read_file(out));
  std::size_t index = 0, equal = 0;
  for (std::string line; std::getline(lines, line) && index < texts.size(); ++index) {
    ids expected;
    std::istringstream numbers(line);
    for (std::int32_t id = 0; numbers >> id;) expected.push_back(id);
    const ids actual = tok.encode(texts[index], false);
    EXPECT_EQ(actual, expected) << "case " << index << ": " << nlohmann::json(texts[index]);
    equal += actual == expected;
    EXPECT_EQ(tok.decode_all(actual), texts[index]) << "case " << index;  // byte-level BPE is lossless
  }
  EXPECT_EQ(texts.size(), 46u);
  EXPECT_EQ(equal, texts.size());
}

}  // namespace
