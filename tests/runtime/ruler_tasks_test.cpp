// SPDX-License-Identifier: MIT
// The C++ RULER generator reproduces tools/ruler_tasks.py character for character
// (tests/data/ruler/documents.json, lengths in whitespace-separated words), and RULER's scoring.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include <pith/runtime/ruler_tasks.hpp>

namespace {

nlohmann::json vectors() {
  std::ifstream in(std::string(PITH_TEST_DATA_DIR) + "/ruler/documents.json");
  if (!in) return {};
  std::stringstream text;
  text << in.rdbuf();
  return nlohmann::json::parse(text.str());
}

TEST(RulerTasks, NamesRoundTrip) {
  for (const auto task : pith::all_ruler_tasks) EXPECT_EQ(pith::parse_ruler_task(pith::ruler_task_name(task)), task);
  EXPECT_FALSE(pith::find_ruler_task("kv").has_value());
  EXPECT_THROW(pith::parse_ruler_task("niah_single_4"), pith::argument_error);
}

TEST(RulerTasks, DocumentsMatchPythonCharacterForCharacter) {
  const auto data = vectors();
  ASSERT_FALSE(data.is_null()) << "tests/data/ruler/documents.json is missing";
  ASSERT_GE(data["cases"].size(), 20u);
  for (const auto task : pith::all_ruler_tasks) {
    bool covered = false;
    for (const auto& c : data["cases"]) covered = covered || c["task"] == pith::ruler_task_name(task);
    EXPECT_TRUE(covered) << pith::ruler_task_name(task) << " has no vector";
  }
  for (const auto& c : data["cases"]) {
    const auto task = pith::parse_ruler_task(c["task"].get<std::string>());
    const auto length = c["length"].get<std::size_t>();
    const std::uint64_t seed = std::stoull(c["seed"].get<std::string>());
    pith::ruler_options options;
    if (!c["depth"].is_null()) options.depth = c["depth"].get<double>();
    if (c.contains("chains")) options.vt_chains = c["chains"].get<std::size_t>();
    SCOPED_TRACE(c["task"].get<std::string>() + " length " + std::to_string(length) + " seed " + std::to_string(seed));
    const auto doc = pith::make_ruler_document(task, length, seed, pith::ruler_word_count, options);
    EXPECT_EQ(doc.haystack, c["haystack"].get<std::size_t>());
    EXPECT_EQ(doc.tokens, c["tokens"].get<std::size_t>());
    EXPECT_LE(doc.tokens, length);
    EXPECT_EQ(doc.document, c["document"].get<std::string>());
    EXPECT_EQ(doc.question, c["question"].get<std::string>());
    EXPECT_EQ(doc.answer_prefix, c["answer_prefix"].get<std::string>());
    EXPECT_EQ(doc.gold, c["gold"].get<std::vector<std::string>>());
    EXPECT_EQ(doc.gold_offsets, c["gold_offsets"].get<std::vector<std::size_t>>());
    EXPECT_EQ(doc.depth.has_value(), !c["document_depth"].is_null());
    if (doc.depth) {
      EXPECT_EQ(*doc.depth, c["document_depth"].get<double>());
    }
  }
}

TEST(RulerTasks, ScoringMatchesPython) {
  const auto data = vectors();
  ASSERT_FALSE(data.is_null());
  for (const auto& s : data["scoring"]) {
    const auto gold = s["gold"].get<std::vector<std::string>>();
    const auto prediction = s["prediction"].get<std::string>();
    EXPECT_DOUBLE_EQ(pith::string_match_all(prediction, gold), s["all"].get<double>()) << prediction;
    EXPECT_DOUBLE_EQ(pith::string_match_part(prediction, gold), s["part"].get<double>()) << prediction;
  }
  EXPECT_EQ(pith::ruler_postprocess("\t a\x01 b \n"), "a\n b");
}

// Each gold string is in the document, a needle holding gold sits where its offset says, and a
// needle at depth d sits about d of the way through the document.
TEST(RulerTasks, GoldIsInTheDocumentAndTheDepthIsWhereItSays) {
  // The depth counts haystack units, the check bytes: the preamble (~130 bytes of ~18,000), the
  // other needles (multikey_1's three, placed at random) and filler sentences of unequal length
  // move the byte fraction (by at most 0.011 over 30 seeds of every task with a depth).
  constexpr double depth_tolerance = 0.03;
  for (const auto task : pith::all_ruler_tasks) {
    for (std::uint64_t seed = 0; seed < 3; ++seed) {
      pith::ruler_options options;
      if (pith::ruler_task_has_depth(task)) options.depth = 0.5 * static_cast<double>(seed);  // 0, 0.5, 1
      const auto doc = pith::make_ruler_document(task, 3000, seed, pith::ruler_word_count, options);
      SCOPED_TRACE(std::string(pith::ruler_task_name(task)) + " seed " + std::to_string(seed));
      for (const auto& g : doc.gold) EXPECT_NE(doc.document.find(g), std::string::npos) << g;
      EXPECT_EQ(pith::string_match_all(doc.instruction() + " " + doc.document, doc.gold), 1.0);
      for (const std::size_t offset : doc.gold_offsets)
        EXPECT_TRUE(doc.document.compare(offset, 4, "VAR ") == 0 || doc.document.compare(offset, 6, "One of") == 0);
      EXPECT_EQ(doc.depth.has_value(), pith::ruler_task_has_depth(task));
      if (doc.depth) {
        ASSERT_EQ(doc.gold_offsets.size(), 1u);
        const double where = static_cast<double>(doc.gold_offsets[0]) / static_cast<double>(doc.document.size());
        EXPECT_NEAR(where, *doc.depth, depth_tolerance) << "depth " << *doc.depth;
      }
      // The haystack is the largest the search found: one unit more is longer than the target.
      const auto longer = pith::make_ruler_document_units(task, doc.haystack + 1, seed, 3000, options);
      EXPECT_GT(pith::ruler_word_count(longer.document), 3000u);
    }
  }
}

TEST(RulerTasks, SameSeedSameQuestionAtEveryLengthAndDepth) {
  const auto a = pith::make_ruler_document(pith::ruler_task::niah_multikey_2, 500, 7, pith::ruler_word_count, {0.0, 1});
  const auto b = pith::make_ruler_document(pith::ruler_task::niah_multikey_2, 4000, 7, pith::ruler_word_count, {0.9, 1});
  EXPECT_EQ(a.question, b.question);
  EXPECT_EQ(a.gold, b.gold);
  EXPECT_LT(a.gold_offsets[0], 200u);
}

TEST(RulerTasks, RejectsImpossibleRequests) {
  EXPECT_THROW(pith::make_ruler_document(pith::ruler_task::niah_single_1, 10, 1, pith::ruler_word_count),
               pith::argument_error);
  EXPECT_THROW(pith::make_ruler_document(pith::ruler_task::niah_single_1, 1000, 1, pith::ruler_word_count, {1.5, 1}),
               pith::argument_error);
  EXPECT_THROW(pith::make_ruler_document(pith::ruler_task::vt, 1000, 1, pith::ruler_word_count, {std::nullopt, 0}),
               pith::argument_error);
  // A counter that never grows cannot size a document.
  EXPECT_THROW(pith::make_ruler_document(pith::ruler_task::vt, 100, 1, [](std::string_view) { return std::size_t{1}; }),
               pith::argument_error);
  EXPECT_THROW(pith::make_ruler_document(pith::ruler_task::vt, 100, 1, pith::ruler_token_counter{}), pith::argument_error);
}

}  // namespace
