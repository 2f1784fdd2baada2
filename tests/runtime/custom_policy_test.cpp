// SPDX-License-Identifier: MIT
// User-defined policies that ask for more than the chunk's attention (policy_request): the
// instruction's attention, a final cut, pooled scores. Re-implemented over the eviction blocks, a
// custom policy keeps exactly what citrus-shared keeps; one that asks for nothing extra behaves as
// custom policies always did.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <pith/cache/eviction_blocks.hpp>
#include <pith/model/weights.hpp>
#include <pith/runtime/reader.hpp>
#include <pith/runtime/toy_tasks.hpp>

namespace {

const std::filesystem::path models = PITH_EXAMPLE_MODELS_DIR;

// Largest difference allowed between the instruction's scores from citrus-shared's fused pass (the
// instruction rides in the chunk's forward) and from a separate instruction pass: the same
// probabilities, multiplied in other GEMM tiles on some ISAs (float sums in another order; each
// probability is at most 1, so a few float ulps of 1).
constexpr float fused_score_tolerance = 1e-5f;

const pith::model_weights* toy_standard() {
  static const std::unique_ptr<pith::model_weights> weights = [] {
    const auto folder = models / "toy-standard";
    return std::filesystem::exists(folder / "model.safetensors") ? std::make_unique<pith::model_weights>(pith::load_model(folder))
                                                                   : nullptr;
  }();
  return weights.get();
}

pith::reader_options options(std::size_t pool = 1) {
  pith::reader_options o;
  o.budget = 48;
  o.chunk_size = 32;
  o.max_answer_tokens = 8;
  o.citrus_pool = pool;
  return o;
}

const pith::toy_document& document() {
  static const auto doc = pith::make_toy_document(pith::toy_task::kv, 400, 777);
  return doc;
}

// Every (layer, KV head)'s document positions.
std::vector<std::vector<std::int64_t>> kept(const pith::reader& r, const pith::model_config& c) {
  std::vector<std::vector<std::int64_t>> all;
  for (std::size_t l = 0; l < c.num_layers; ++l)
    for (std::size_t g = 0; g < c.num_kv_heads; ++g) all.push_back(r.document_positions(l, g));
  return all;
}

// What the views a policy saw held.
struct seen_views {
  std::vector<std::vector<float>> scores, instruction_scores;
  std::vector<std::size_t> heads;
  std::size_t final_cuts = 0;
};

// citrus-shared's rule over the view: the top of the instruction's scores, with the final cut.
struct instruction_top_k {
  static constexpr pith::policy_request request{.chunk_scores = false, .instruction_scores = true, .final_cut = true};
  seen_views* seen;
  pith::selection_scratch scratch;
  void select(const pith::eviction_view& view, std::vector<std::uint32_t>& keep) {
    seen->scores.emplace_back(view.scores.begin(), view.scores.end());
    seen->instruction_scores.emplace_back(view.instruction_scores.begin(), view.instruction_scores.end());
    seen->final_cuts += view.final_cut;
    pith::select_top_k(view.instruction_scores, view.budget, keep, scratch);
  }
};
static_assert(pith::request_of<instruction_top_k>().instruction_scores);

// A policy that ignores its scores (keeps the most recent old slots) and records them.
struct recent_recorder {
  seen_views* seen;
  void select(const pith::eviction_view& view, std::vector<std::uint32_t>& keep) {
    seen->scores.emplace_back(view.scores.begin(), view.scores.end());
    seen->instruction_scores.emplace_back(view.instruction_scores.begin(), view.instruction_scores.end());
    seen->heads.push_back(view.head);
    seen->final_cuts += view.final_cut;
    keep.clear();
    for (std::size_t j = view.old_slots - view.budget; j < view.old_slots; ++j) keep.push_back(static_cast<std::uint32_t>(j));
  }
};
static_assert(!pith::request_of<recent_recorder>().instruction_scores);

// Feeds the document chunk by chunk; after each, every (layer, KV head)'s kept positions.
std::vector<std::vector<std::vector<std::int64_t>>> read(pith::reader& r, const pith::model_config& c) {
  std::vector<std::vector<std::vector<std::int64_t>>> steps;
  const auto& ids = document().ids;
  for (std::size_t fed = 0; fed < ids.size(); fed += r.options().chunk_size) {
    r.feed(std::span(ids).subspan(fed, std::min(r.options().chunk_size, ids.size() - fed)));
    r.finish_document();
    steps.push_back(kept(r, c));
  }
  return steps;
}

class InstructionAwareCustomPolicy : public ::testing::TestWithParam<std::size_t> {};

TEST_P(InstructionAwareCustomPolicy, KeepsExactlyWhatCitrusSharedKeeps) {
  const auto* w = toy_standard();
  if (w == nullptr) GTEST_SKIP() << "examples/models/toy-standard is absent";
  const std::size_t pool = GetParam();
  auto o = options(pool);
  o.policy = pith::policy_kind::citrus_shared;
  pith::reader builtin(*w, o, document().instruction);
  o.policy = pith::policy_kind::citrus_cse;  // replaced by use_policy
  pith::reader custom(*w, o, document().instruction);
  seen_views seen;
  custom.use_policy(instruction_top_k{&seen, {}});
  const auto expected = read(builtin, w->config);
  const auto actual = read(custom, w->config);
  ASSERT_EQ(actual.size(), expected.size());
  for (std::size_t step = 0; step < expected.size(); ++step) EXPECT_EQ(actual[step], expected[step]) << "after chunk " << step;
  pith::sampler greedy;
  const auto expected_answer = builtin.answer(8, greedy);
  EXPECT_EQ(custom.answer(8, greedy), expected_answer);
  EXPECT_EQ(kept(custom, w->config), kept(builtin, w->config)) << "after the final cut";
  EXPECT_EQ(custom.answer_logits(), builtin.answer_logits());
  EXPECT_EQ(custom.document_positions(0, 0).size(), o.budget);
  // The policy saw the instruction's scores only, and made the final cut once per layer.
  ASSERT_FALSE(seen.instruction_scores.empty());
  for (std::size_t i = 0; i < seen.scores.size(); ++i) {
    EXPECT_TRUE(seen.scores[i].empty());
    EXPECT_FALSE(seen.instruction_scores[i].empty());
  }
  EXPECT_EQ(seen.final_cuts, w->config.num_layers);
}

INSTANTIATE_TEST_SUITE_P(Pools, InstructionAwareCustomPolicy, ::testing::Values(std::size_t{1}, std::size_t{5}),
                         [](const auto& info) { return "pool" + std::to_string(info.param); });

// The same views with citrus_pool 1 and 5 (the policy's choice ignores them, so both readers read
// the same caches): the pooled ones are the raw ones averaged over 5 neighbours, zero-padded.
TEST(CustomPolicy, PoolingAppliesToEveryScoreTheCustomPolicyGets) {
  const auto* w = toy_standard();
  if (w == nullptr) GTEST_SKIP() << "examples/models/toy-standard is absent";
  const pith::policy_request both{.chunk_scores = true, .instruction_scores = true};
  seen_views raw, pooled;
  pith::reader plain(*w, options(1), document().instruction), with_pool(*w, options(5), document().instruction);
  plain.use_policy(recent_recorder{&raw}, both);
  with_pool.use_policy(recent_recorder{&pooled}, both);
  plain.feed(document().ids);
  with_pool.feed(document().ids);
  ASSERT_EQ(raw.scores.size(), pooled.scores.size());
  ASSERT_FALSE(raw.scores.empty());
  const auto pool5 = [](const std::vector<float>& x) {
    std::vector<float> out(x.size());
    for (std::size_t j = 0; j < x.size(); ++j) {
      float total = 0.0f;
      for (std::size_t t = j >= 2 ? j - 2 : 0; t <= std::min(x.size() - 1, j + 2); ++t) total += x[t];
      out[j] = total / 5.0f;
    }
    return out;
  };
  for (std::size_t i = 0; i < raw.scores.size(); ++i) {
    ASSERT_FALSE(raw.scores[i].empty());
    ASSERT_FALSE(raw.instruction_scores[i].empty());
    EXPECT_EQ(pooled.scores[i], pool5(raw.scores[i])) << "view " << i;
    EXPECT_EQ(pooled.instruction_scores[i], pool5(raw.instruction_scores[i])) << "view " << i;
    EXPECT_NE(pooled.scores[i], raw.scores[i]);
    // The first slot's pooled score: itself and its two right neighbours over 5 (zeros on the left).
    const auto& x = raw.instruction_scores[i];
    EXPECT_EQ(pooled.instruction_scores[i][0], (x[0] + x[1] + x[2]) / 5.0f);
  }
  EXPECT_EQ(kept(plain, w->config), kept(with_pool, w->config));
}

// A policy that asks for nothing gets the defaults: the chunk's scores per layer,
// no instruction pass, no final cut. Choosing by those scores it keeps what citrus-cse keeps while
// reading (citrus-cse alone makes the final cut).
struct chunk_top_k {
  seen_views* seen;
  pith::selection_scratch scratch;
  void select(const pith::eviction_view& view, std::vector<std::uint32_t>& keep) {
    seen->scores.emplace_back(view.scores.begin(), view.scores.end());
    seen->instruction_scores.emplace_back(view.instruction_scores.begin(), view.instruction_scores.end());
    seen->final_cuts += view.final_cut;
    pith::select_top_k(view.scores, view.budget, keep, scratch);
  }
};

TEST(CustomPolicy, APolicyWithoutARequestGetsTheChunksScoresOnly) {
  const auto* w = toy_standard();
  if (w == nullptr) GTEST_SKIP() << "examples/models/toy-standard is absent";
  auto o = options();
  o.policy = pith::policy_kind::citrus_cse;
  pith::reader builtin(*w, o, document().instruction), custom(*w, o, document().instruction);
  seen_views seen;
  custom.use_policy(chunk_top_k{&seen, {}});
  EXPECT_EQ(custom.options().policy, pith::policy_kind::custom);
  EXPECT_EQ(read(custom, w->config), read(builtin, w->config));
  pith::sampler greedy;
  custom.answer(2, greedy);
  const std::size_t last_chunk = document().ids.size() % o.chunk_size;
  EXPECT_EQ(custom.document_positions(0, 0).size(), o.budget + (last_chunk != 0 ? last_chunk : o.chunk_size))
      << "no final cut";
  ASSERT_FALSE(seen.scores.empty());
  for (std::size_t i = 0; i < seen.scores.size(); ++i) {
    EXPECT_FALSE(seen.scores[i].empty());
    EXPECT_TRUE(seen.instruction_scores[i].empty());
  }
  EXPECT_EQ(seen.final_cuts, 0u);
  EXPECT_EQ(custom.stats().instruction_seconds, 0.0);
}

// Asking for both: the chunk's scores are those a default policy sees, the instruction's those an
// instruction-only policy sees (from the fused pass there, a separate pass here).
TEST(CustomPolicy, BothScoresMatchWhatEachRequestAloneSees) {
  const auto* w = toy_standard();
  if (w == nullptr) GTEST_SKIP() << "examples/models/toy-standard is absent";
  seen_views chunk_only, instruction_only, both;
  pith::reader a(*w, options(), document().instruction), b(*w, options(), document().instruction),
      c(*w, options(), document().instruction);
  a.use_policy(recent_recorder{&chunk_only});
  b.use_policy(recent_recorder{&instruction_only}, {.chunk_scores = false, .instruction_scores = true});
  c.use_policy(recent_recorder{&both}, {.chunk_scores = true, .instruction_scores = true});
  a.feed(document().ids);
  b.feed(document().ids);
  c.feed(document().ids);
  ASSERT_EQ(both.scores.size(), chunk_only.scores.size());
  ASSERT_EQ(both.scores.size(), instruction_only.scores.size());
  for (std::size_t i = 0; i < both.scores.size(); ++i) {
    EXPECT_EQ(both.scores[i], chunk_only.scores[i]) << "view " << i;
    EXPECT_TRUE(instruction_only.scores[i].empty());
    ASSERT_EQ(both.instruction_scores[i].size(), instruction_only.instruction_scores[i].size());
    for (std::size_t j = 0; j < both.instruction_scores[i].size(); ++j)
      EXPECT_NEAR(both.instruction_scores[i][j], instruction_only.instruction_scores[i][j], fused_score_tolerance)
          << "view " << i << " slot " << j;
  }
}

// per_head: one view per KV head, each with its own selection.
TEST(CustomPolicy, PerHeadRequestsSeeEveryKvHead) {
  const auto* w = toy_standard();
  if (w == nullptr) GTEST_SKIP() << "examples/models/toy-standard is absent";
  seen_views seen;
  pith::reader r(*w, options(), document().instruction);
  r.use_policy(recent_recorder{&seen}, {.chunk_scores = true, .instruction_scores = true, .per_head = true});
  r.feed(document().ids);
  const auto& c = w->config;
  ASSERT_FALSE(seen.heads.empty());
  ASSERT_EQ(seen.heads.size() % (c.num_layers * c.num_kv_heads), 0u);
  for (std::size_t i = 0; i < seen.heads.size(); ++i) EXPECT_EQ(seen.heads[i], i % c.num_kv_heads);
  // Group means differ between the two KV heads; each head's keep list is applied to it alone.
  EXPECT_NE(seen.scores[0], seen.scores[1]);
  EXPECT_EQ(r.document_positions(0, 0).size(), r.document_positions(0, 1).size());
}

TEST(CustomPolicy, RequestsTheReaderCannotServeAreRefused) {
  const auto* w = toy_standard();
  if (w == nullptr) GTEST_SKIP() << "examples/models/toy-standard is absent";
  seen_views seen;
  auto o = options();
  o.policy = pith::policy_kind::citrus_cse;
  pith::reader no_instruction(*w, o, {});
  EXPECT_THROW(no_instruction.use_policy(instruction_top_k{&seen, {}}), pith::argument_error);
  EXPECT_THROW(no_instruction.use_policy(recent_recorder{&seen}, {.final_cut = true}), pith::argument_error);
  pith::reader started(*w, o, document().instruction);
  started.feed(document().ids);
  EXPECT_THROW(started.use_policy(recent_recorder{&seen}), pith::argument_error);
  o.citrus_pool = 5;
  pith::reader pooled_without_scores(*w, o, document().instruction);
  pooled_without_scores.use_policy(recent_recorder{&seen}, {.chunk_scores = false});
  pooled_without_scores.feed(document().ids);  // nothing to pool: the views are empty and the rule needs none
  ASSERT_FALSE(seen.scores.empty());
  EXPECT_TRUE(seen.scores.back().empty());
}

}  // namespace

namespace {

// KnormPress over the view's keys (policy_request::keys): the lowest-norm keys of each KV head.
struct lowest_key_norms {
  static constexpr pith::policy_request request{.chunk_scores = false, .per_head = true, .keys = true};
  std::size_t* views;
  pith::selection_scratch scratch;
  void select(const pith::eviction_view& view, std::vector<std::uint32_t>& keep) {
    ++*views;
    EXPECT_EQ(view.key_heads, 1u);
    EXPECT_EQ(view.keys.size(), view.old_slots * view.head_dim);
    EXPECT_TRUE(view.scores.empty());
    pith::select_knorm(view.keys, view.head_dim, view.budget, keep, scratch);
  }
};

// The keys of every KV head of the layer in a per-layer view: keeps what the first head's norms choose.
struct first_head_norms {
  static constexpr pith::policy_request request{.chunk_scores = false, .keys = true};
  std::size_t kv_heads = 0;
  pith::selection_scratch scratch;
  void select(const pith::eviction_view& view, std::vector<std::uint32_t>& keep) {
    EXPECT_EQ(view.key_heads, kv_heads);
    EXPECT_EQ(view.keys.size(), kv_heads * view.old_slots * view.head_dim);
    pith::select_knorm(view.keys.first(view.old_slots * view.head_dim), view.head_dim, view.budget, keep, scratch);
  }
};

TEST(CustomPolicy, KeysInTheViewReproduceKnorm) {
  const auto* w = toy_standard();
  if (w == nullptr) GTEST_SKIP() << "examples/models/toy-standard is absent";
  for (const pith::dtype kv_type : {pith::dtype::f32, pith::dtype::f16}) {  // read in place; decoded
    auto o = options();
    o.kv_type = kv_type;
    o.policy = pith::policy_kind::knorm;
    pith::reader builtin(*w, o, document().instruction);
    o.policy = pith::policy_kind::citrus_cse;  // replaced by use_policy
    pith::reader custom(*w, o, document().instruction);
    std::size_t views = 0;
    custom.use_policy(lowest_key_norms{&views, {}});
    EXPECT_EQ(read(custom, w->config), read(builtin, w->config));
    EXPECT_GT(views, 0u);
    // A per-layer view carries every KV head's keys, head after head.
    o.policy = pith::policy_kind::citrus_cse;
    pith::reader per_layer(*w, o, document().instruction);
    per_layer.use_policy(first_head_norms{w->config.num_kv_heads, {}});
    const auto steps = read(per_layer, w->config);
    ASSERT_FALSE(steps.empty());
    const auto& c = w->config;
    for (std::size_t l = 0; l < c.num_layers; ++l)  // one keep list per layer: every head holds the same slots
      EXPECT_EQ(per_layer.document_positions(l, 0), per_layer.document_positions(l, c.num_kv_heads - 1));
  }
}

}  // namespace
