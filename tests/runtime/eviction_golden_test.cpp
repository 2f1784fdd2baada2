// SPDX-License-Identifier: MIT
// The reader against the PyTorch twin (tools/pith_eviction.py): the same document positions kept per
// layer (per KV head) after every chunk and after the final cut, and the same answer, per policy.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <pith/runtime/reader.hpp>

namespace {

const std::filesystem::path data = PITH_TEST_DATA_DIR;

const pith::model_weights& twin_model() {
  static const pith::model_weights w = pith::load_model(data / "llama" / "gqa_untied");
  return w;
}

// kept[layer] (per layer) or kept[layer][head] (per head), as lists of document positions.
void expect_kept(const pith::reader& r, const nlohmann::json& kept, bool per_head, bool instruction_cache,
                 const std::string& where) {
  const auto& c = twin_model().config;
  ASSERT_EQ(kept.size(), c.num_layers) << where;
  for (std::size_t l = 0; l < c.num_layers; ++l)
    for (std::size_t g = 0; g < c.num_kv_heads; ++g) {
      const auto expected = per_head ? kept[l][g].get<std::vector<std::int64_t>>() : kept[l].get<std::vector<std::int64_t>>();
      EXPECT_EQ(r.document_positions(l, g, instruction_cache), expected) << where << " layer " << l << " head " << g;
    }
}

class EvictionGolden : public ::testing::TestWithParam<const char*> {};

TEST_P(EvictionGolden, KeepsTheSameStatesAsTheTwin) {
  std::ifstream in(data / "eviction" / GetParam() / "expected.json");
  const auto g = nlohmann::json::parse(in);
  pith::reader_options o;
  o.policy = pith::parse_policy(g.at("policy").get<std::string>());
  o.budget = g.at("budget").get<std::size_t>();
  o.chunk_size = g.at("chunk").get<std::size_t>();
  o.positions = g.at("positions") == "original" ? pith::position_mode::original : pith::position_mode::reindexed;
  o.citrus_pool = g.value("citrus_pool", std::size_t{1});
  o.max_answer_tokens = 8;
  o.max_context = 256;
  const auto document = g.at("document").get<std::vector<std::int32_t>>();
  const auto instruction = g.at("instruction").get<std::vector<std::int32_t>>();
  if (o.budget == 0) {
    // pith refuses a budget that keeps nothing of the document (the twin keeps only the newest chunk).
    EXPECT_THROW(pith::reader(twin_model(), o, instruction), pith::argument_error);
    return;
  }
  const bool per_head = g.at("selection") == "per_head";
  const bool separate = o.policy == pith::policy_kind::citrus_separate;
  pith::reader r(twin_model(), o, instruction);
  const auto& steps = g.at("steps");
  std::size_t fed = 0;
  for (const auto& step : steps) {
    const std::size_t n = std::min(o.chunk_size, document.size() - fed);
    r.feed(std::span(document).subspan(fed, n));
    fed += n;
    r.finish_document();
    const std::string where = "after chunk " + std::to_string(step.at("chunk_index").get<int>());
    expect_kept(r, step.at("kept"), per_head, separate, where);
    if (separate) expect_kept(r, step.at("kept_lm"), per_head, false, where + " (C_lm)");
    if (HasFailure()) return;
  }
  ASSERT_EQ(fed, document.size());
  pith::sampler greedy;
  const auto answer = r.answer(8, greedy);
  expect_kept(r, g.at("final_kept"), per_head, separate, "after the final cut");
  EXPECT_EQ(answer, g.at("answer").get<std::vector<std::int32_t>>());
}

INSTANTIATE_TEST_SUITE_P(Policies, EvictionGolden,
                         ::testing::Values("full", "streaming", "h2o", "tova", "snapkv", "roco", "citrus_cse",
                                           "citrus_shared", "citrus_separate", "citrus_shared_original",
                                           "citrus_cse_budget0", "citrus_cse_budget1", "citrus_cse_budget30",
                                           "citrus_shared_pool7", "citrus_separate_pool5"));

}  // namespace
