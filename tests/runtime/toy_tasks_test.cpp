// SPDX-License-Identifier: MIT
// The C++ toy-task generator reproduces tools/toy_tasks.py token for token (tests/data/toy/documents.json),
// and its vocabulary is the one the toy checkpoints ship.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include <pith/io/tokenizer_words.hpp>
#include <pith/runtime/toy_tasks.hpp>

namespace {

nlohmann::json golden() {
  std::ifstream in(std::string(PITH_TEST_DATA_DIR) + "/toy/documents.json");
  if (!in) return {};
  std::stringstream text;
  text << in.rdbuf();
  return nlohmann::json::parse(text.str());
}

TEST(ToyTasks, SplitMix64MatchesPython) {
  const auto data = golden();
  ASSERT_FALSE(data.is_null()) << "tests/data/toy/documents.json is missing";
  pith::splitmix64 rng(0);
  for (const auto& value : data["splitmix64_seed0_first4"]) EXPECT_EQ(rng.next(), std::stoull(value.get<std::string>()));
}

TEST(ToyTasks, VocabularyMatchesPythonAndTheShippedFile) {
  const auto data = golden();
  ASSERT_FALSE(data.is_null());
  EXPECT_EQ(pith::toy_vocabulary(), data["vocabulary"].get<std::vector<std::string>>());
  const auto tok = pith::word_tokenizer::load(std::string(PITH_TEST_DATA_DIR) + "/toy/vocab.json");
  ASSERT_EQ(static_cast<std::size_t>(tok.vocab_size()), pith::toy_vocabulary().size());
  for (std::int32_t id = 0; id < tok.vocab_size(); ++id)
    EXPECT_EQ(tok.token_text(id), pith::toy_vocabulary()[static_cast<std::size_t>(id)]);
}

TEST(ToyTasks, DocumentsMatchPythonTokenForToken) {
  const auto data = golden();
  ASSERT_FALSE(data.is_null());
  ASSERT_GE(data["cases"].size(), 6u);
  for (const auto& c : data["cases"]) {
    const auto task = pith::parse_toy_task(c["task"].get<std::string>());
    const auto length = c["length"].get<std::size_t>();
    const std::uint64_t seed = std::stoull(c["seed"].get<std::string>());
    SCOPED_TRACE(c["task"].get<std::string>() + " length " + std::to_string(length) + " seed " + std::to_string(seed));
    const auto doc = pith::make_toy_document(task, length, seed, c["facts"].get<std::size_t>());
    EXPECT_EQ(doc.ids.size(), length);
    EXPECT_EQ(doc.ids, c["ids"].get<std::vector<std::int32_t>>());
    EXPECT_EQ(doc.instruction, c["instruction"].get<std::vector<std::int32_t>>());
    EXPECT_EQ(doc.answer, c["answer"].get<std::vector<std::int32_t>>());
    EXPECT_EQ(doc.fact_offsets, c["fact_offsets"].get<std::vector<std::size_t>>());
  }
}

TEST(ToyTasks, TextRoundTripsThroughTheWordTokenizer) {
  const auto tok = pith::word_tokenizer::load(std::string(PITH_TEST_DATA_DIR) + "/toy/vocab.json");
  for (const auto task : {pith::toy_task::passkey, pith::toy_task::kv, pith::toy_task::hop}) {
    const auto doc = pith::make_toy_document(task, 700, 42);
    EXPECT_EQ(tok.encode(pith::toy_text(doc.ids), true), doc.ids);
    EXPECT_EQ(tok.encode(pith::toy_text(doc.instruction), false), doc.instruction);
  }
}

TEST(ToyTasks, FactsSitAtSentenceBoundariesAndAnswersAreInTheDocument) {
  for (std::uint64_t seed = 0; seed < 50; ++seed) {
    const auto doc = pith::make_toy_document(pith::toy_task::kv, 400 + seed, seed);
    ASSERT_EQ(doc.fact_offsets.size(), pith::toy_default_facts);
    // Facts go before a filler sentence (after BOS or a "."), or after the whole filler, whose last
    // sentence may be cut (specification step 4): those trailing facts run to the end of the document.
    constexpr std::size_t kv_fact_words = 10;
    std::size_t tail_start = doc.ids.size();
    for (auto it = doc.fact_offsets.rbegin(); it != doc.fact_offsets.rend() && *it + kv_fact_words == tail_start; ++it)
      tail_start = *it;
    for (const std::size_t offset : doc.fact_offsets) {
      EXPECT_TRUE(offset == 1 || doc.ids[offset - 1] == 3 || offset >= tail_start)
          << "a fact starts mid-sentence at " << offset << " (seed " << seed << ")";  // 3 = "."
    }
    // The asked name's fact holds the answer's digits right after "is".
    const std::int32_t name = doc.instruction[5];
    bool found = false;
    for (const std::size_t offset : doc.fact_offsets)
      if (doc.ids[offset + 3] == name)
        found = std::equal(doc.answer.begin(), doc.answer.end(), doc.ids.begin() + static_cast<std::ptrdiff_t>(offset) + 5);
    EXPECT_TRUE(found);
  }
}

TEST(ToyTasks, RejectsImpossibleRequests) {
  EXPECT_THROW(pith::make_toy_document(pith::toy_task::kv, 20, 1, 8), pith::argument_error);
  EXPECT_THROW(pith::make_toy_document(pith::toy_task::kv, 2000, 1, 0), pith::argument_error);
  EXPECT_THROW(pith::make_toy_document(pith::toy_task::hop, 2000, 1, 32), pith::argument_error);
  EXPECT_THROW(pith::parse_toy_task("nope"), pith::argument_error);
  EXPECT_NO_THROW(pith::make_toy_document(pith::toy_task::kv, 11, 1, 1));
}

}  // namespace
