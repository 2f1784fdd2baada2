// SPDX-License-Identifier: MIT
// The reader against the PyTorch twin (tools/pith_eviction.py): the same document positions kept per
// layer (per KV head) after every chunk and after the final cut, the same answer and its first logits,
// per policy, on a standard and on hybrid (recurrent token mixer) layouts; pyramidkv's layers each keep
// their own budget; the oneshot protocol's one cut at a compression ratio, with and without the
// question; finch's count-weighted instruction scores, criticalkv's value weights through W_o and
// expected-attention's query statistics.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <pith/runtime/reader.hpp>

namespace {

const std::filesystem::path data = PITH_TEST_DATA_DIR;

// Largest |logit - twin's logit| of the first answer step: the same float32 model computed by PyTorch
// and by pith's kernels, sums in other orders over a few dozen positions of a 4-layer model.
constexpr float answer_logit_tolerance = 1e-3f;

// The golden's model (a folder relative to tests/data), loaded once.
const pith::model_weights& twin_model(const std::string& folder) {
  static std::map<std::string, pith::model_weights> loaded;
  auto it = loaded.find(folder);
  if (it == loaded.end()) it = loaded.emplace(folder, pith::load_model(data / folder)).first;
  return it->second;
}

// kept[layer] (per layer) or kept[layer][head] (per head), as lists of document positions.
void expect_kept(const pith::reader& r, const nlohmann::json& kept, bool per_head, bool instruction_cache,
                 const std::string& where, const pith::model_config& c) {
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
  const auto& model = twin_model(g.at("model").get<std::string>());
  pith::reader_options o;
  // "NAME" or "adakv(NAME)" (AdaKV's head-adaptive budgets, docs/eviction.md "AdaKV")
  const auto label = pith::parse_policy_label(g.at("policy").get<std::string>());
  o.policy = label.kind;
  o.head_adaptive = label.head_adaptive;
  o.adakv_alpha = g.value("adakv_alpha", 0.2);
  o.budget = g.at("budget").get<std::size_t>();
  o.chunk_size = g.at("chunk").get<std::size_t>();
  o.positions = g.at("positions") == "original" ? pith::position_mode::original : pith::position_mode::reindexed;
  o.citrus_pool = g.value("citrus_pool", std::size_t{1});
  o.snapkv_kernel = g.value("pool_kernel", std::size_t{7});
  o.snapkv_pool = pith::parse_pool_mode(g.value("pool_mode", std::string("avg")));
  o.chunkkv_size = g.value("chunkkv_size", std::size_t{20});
  o.random_seed = g.value("random_seed", std::uint64_t{0});
  o.max_answer_tokens = 8;
  o.max_context = 256;
  // The oneshot protocol (docs/eviction.md, "Protocols"): the document in one pass, no steps.
  const bool oneshot = g.value("protocol", std::string("chunked")) == "oneshot";
  if (oneshot) {
    o.protocol = pith::reading_protocol::oneshot;
    o.ratio = g.at("ratio").get<double>();
    o.question_in_cut = g.at("question_in_cut").get<bool>();
  }
  const auto document = g.at("document").get<std::vector<std::int32_t>>();
  const auto instruction = g.at("instruction").get<std::vector<std::int32_t>>();
  if (o.budget == 0) {
    // pith refuses a budget that keeps nothing of the document (the twin keeps only the newest chunk).
    EXPECT_THROW(pith::reader(model, o, instruction), pith::argument_error);
    return;
  }
  const bool per_head = g.at("selection") == "per_head";
  const bool separate = o.policy == pith::policy_kind::citrus_separate;
  pith::reader r(model, o, instruction);
  const auto& steps = g.at("steps");
  std::size_t fed = 0;
  if (oneshot) {
    ASSERT_TRUE(steps.empty());
    r.feed(document);
    fed = document.size();
  }
  for (const auto& step : steps) {
    const std::size_t n = std::min(o.chunk_size, document.size() - fed);
    r.feed(std::span(document).subspan(fed, n));
    fed += n;
    r.finish_document();
    const std::string where = "after chunk " + std::to_string(step.at("chunk_index").get<int>());
    expect_kept(r, step.at("kept"), per_head, separate, where, model.config);
    if (separate) expect_kept(r, step.at("kept_lm"), per_head, false, where + " (C_lm)", model.config);
    if (HasFailure()) return;
  }
  ASSERT_EQ(fed, document.size());
  pith::sampler greedy;
  const auto answer = r.answer(8, greedy);
  expect_kept(r, g.at("final_kept"), per_head, separate, "after the final cut", model.config);
  EXPECT_EQ(answer, g.at("answer").get<std::vector<std::int32_t>>());
  const auto expected_logits = g.at("answer_logits_first").get<std::vector<float>>();
  ASSERT_EQ(r.answer_logits().size(), expected_logits.size());
  float largest = 0.0f;
  for (std::size_t i = 0; i < expected_logits.size(); ++i)
    largest = std::max(largest, std::abs(r.answer_logits()[i] - expected_logits[i]));
  EXPECT_LE(largest, answer_logit_tolerance);
}

INSTANTIATE_TEST_SUITE_P(Policies, EvictionGolden,
                         ::testing::Values("full", "streaming", "h2o", "tova", "snapkv", "roco", "citrus_cse",
                                           "citrus_shared", "citrus_separate", "citrus_shared_original",
                                           "citrus_cse_budget0", "citrus_cse_budget1", "citrus_cse_budget30",
                                           "citrus_shared_pool7", "citrus_separate_pool5", "citrus_shared_hybrid",
                                           "citrus_separate_hybrid", "h2o_hybrid", "citrus_shared_qwen3", "snapkv_qwen3",
                                           "random", "knorm", "observed_attention", "chunkkv", "chunkkv_size6",
                                           "snapkv_question", "keydiff", "pyramidkv", "pyramidkv_hybrid",
                                           "snapkv_max5", "snapkv_oneshot", "citrus_shared_oneshot_seen",
                                           "h2o_oneshot", "finch", "criticalkv", "expected_attention",
                                           "finch_oneshot", "criticalkv_oneshot", "expected_attention_oneshot",
                                           "adakv_snapkv", "adakv_citrus_shared", "adakv_snapkv_oneshot"));

// Perplexity under eviction (tests/data/eviction/perplexity.json): a golden's document read again, then
// one continuation scored by reader::log_likelihood, against the twin's log-probabilities.
// Per token |log p - twin's log p|: each log-softmax takes two logits within answer_logit_tolerance of
// the twin's (the token's and, through the normalizer, all of them), so twice that bounds it.
constexpr double log_prob_tolerance = 2.0 * answer_logit_tolerance;

TEST(EvictionGolden, PerplexityAfterReadingEqualsTheTwins) {
  std::ifstream in(data / "eviction" / "perplexity.json");
  const auto g = nlohmann::json::parse(in);
  const auto& model = twin_model(g.at("model").get<std::string>());
  const auto continuation = g.at("continuation").get<std::vector<std::int32_t>>();
  ASSERT_FALSE(g.at("cases").empty());
  for (const auto& c : g.at("cases")) {
    const std::string name = c.at("case").get<std::string>();
    pith::reader_options o;
    o.policy = pith::parse_policy(c.at("policy").get<std::string>());
    o.budget = g.at("budget").get<std::size_t>();
    o.chunk_size = g.at("chunk").get<std::size_t>();
    o.max_answer_tokens = continuation.size();
    o.max_context = 256;
    pith::reader r(model, o, {});
    r.feed(c.at("document").get<std::vector<std::int32_t>>());
    const auto scored = r.log_likelihood(continuation);
    // The continuation was scored against the cache the twin kept (positions checked before the pass
    // appended its rows: the continuation's own rows have none).
    expect_kept(r, c.at("final_kept"), c.at("selection") == "per_head", false, name, model.config);
    EXPECT_EQ(scored.tokens, continuation.size()) << name;
    const auto expected = c.at("log_probs").get<std::vector<double>>();
    ASSERT_EQ(expected.size(), continuation.size()) << name;
    EXPECT_NEAR(scored.sum, c.at("log_likelihood").get<double>(), log_prob_tolerance * static_cast<double>(expected.size()))
        << name;
    EXPECT_NEAR(std::log(scored.perplexity()), std::log(c.at("perplexity").get<double>()), log_prob_tolerance) << name;
  }
}

}  // namespace

namespace family_reader {

// Reading a document with an evicting policy on Gemma 3 (five sliding-window layers of 8, one global):
// the policy acts on the global layer, the windowed layers keep their last 8 states, and neither
// grows with the document: after every chunk the cache sizes and the session's bytes are the same.
void read_flat(pith::policy_kind policy) {
  const auto weights = pith::load_model(std::filesystem::path(PITH_TEST_DATA_DIR) / "families" / "gemma3_reader");
  const auto& c = weights.config;
  pith::reader_options o;
  o.policy = policy;
  o.budget = 16;
  o.chunk_size = 16;
  o.max_answer_tokens = 4;
  const std::vector<std::int32_t> instruction = {20, 17, 18, 29, 5};
  pith::reader r(weights, o, instruction);
  std::vector<std::int32_t> document(400);
  for (std::size_t i = 0; i < document.size(); ++i) document[i] = static_cast<std::int32_t>(3 + (i * 37) % 150);
  std::size_t bytes = 0;
  for (std::size_t start = 0; start < document.size(); start += o.chunk_size) {
    r.feed(std::span(document).subspan(start, o.chunk_size));
    const auto& cache = r.main_session().cache();
    for (std::size_t l = 0; l < c.num_layers; ++l) {
      if (c.sliding_window(l) != 0) {
        EXPECT_EQ(cache.size(l, 0), std::min<std::size_t>(8, start + o.chunk_size)) << "layer " << l;
        EXPECT_TRUE(r.document_positions(l, 0).empty());
      } else {
        EXPECT_LE(cache.size(l, 0), o.budget + o.chunk_size) << "layer " << l;
        EXPECT_EQ(r.document_positions(l, 0).size(), cache.size(l, 0));
      }
    }
    // From the fourth chunk on, every buffer exists (scores from the second, the rotation tables
    // from the first eviction in the third).
    if (start == 3 * o.chunk_size) bytes = r.state_bytes();
    if (start >= 3 * o.chunk_size) {
      EXPECT_EQ(r.state_bytes(), bytes) << "after " << start + o.chunk_size << " tokens";
    }
  }
  const auto report = r.memory_report();
  ASSERT_EQ(report.size(), c.num_layers);
  for (std::size_t l = 0; l < c.num_layers; ++l) {
    EXPECT_EQ(report[l].window, c.sliding_window(l));
    if (l != 5) {
      EXPECT_LT(report[l].kv_cache_bytes, report[5].kv_cache_bytes) << "layer " << l;
    }
  }
  pith::sampler greedy;
  const auto answer = r.answer(4, greedy);
  EXPECT_EQ(answer.size(), 4u);
  EXPECT_EQ(r.state_bytes(), bytes);
}

TEST(FamilyReader, CitrusSharedOnGemma3KeepsMemoryFlatInBothKindsOfLayers) { read_flat(pith::policy_kind::citrus_shared); }
TEST(FamilyReader, CitrusSeparateOnGemma3KeepsMemoryFlat) { read_flat(pith::policy_kind::citrus_separate); }
TEST(FamilyReader, H2oOnGemma3KeepsMemoryFlat) { read_flat(pith::policy_kind::h2o); }

// With a budget above the document nothing is evicted: the reader's answer logits equal one session's
// forward pass over the document and the instruction (the windowed layers trimmed chunk by chunk
// compute what the whole-sequence pass computes).
TEST(FamilyReader, WithoutEvictionTheReaderComputesTheModel) {
  const auto weights = pith::load_model(std::filesystem::path(PITH_TEST_DATA_DIR) / "families" / "gemma3_reader");
  pith::reader_options o;
  o.policy = pith::policy_kind::citrus_shared;
  o.budget = 200;
  o.chunk_size = 16;
  o.max_answer_tokens = 4;
  const std::vector<std::int32_t> instruction = {20, 17, 18, 29, 5};
  std::vector<std::int32_t> document(64);
  for (std::size_t i = 0; i < document.size(); ++i) document[i] = static_cast<std::int32_t>(3 + (i * 37) % 150);
  pith::reader r(weights, o, instruction);
  r.feed(document);
  pith::sampler greedy;
  r.answer(1, greedy);
  std::vector<std::int32_t> all = document;
  all.insert(all.end(), instruction.begin(), instruction.end());
  pith::session s(weights, {128, 128});
  std::vector<float> logits(weights.config.vocab_size);
  s.forward(all, logits.data());
  float largest = 0.0f;
  for (std::size_t v = 0; v < logits.size(); ++v) largest = std::max(largest, std::abs(logits[v] - r.answer_logits()[v]));
  EXPECT_LE(largest, answer_logit_tolerance);
}

}  // namespace family_reader
