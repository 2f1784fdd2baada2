// SPDX-License-Identifier: MIT
// Attention residuals and token mixers on random models: the two-phase block computation equals the
// direct formula, prefill equals decode for every mixer, fixed-state mixers hold constant memory,
// layout presets, and configuration errors.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <pith/model/random_weights.hpp>
#include <pith/model/transformer.hpp>

namespace {

pith::model_config small_config() {
  pith::model_config c;
  c.hidden_size = 48;
  c.intermediate_size = 64;
  c.num_layers = 5;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 12;
  c.vocab_size = 61;
  c.rms_norm_eps = 1e-5f;
  c.max_position_embeddings = 96;
  c.mixer_mlp_intermediate_size = 40;
  c.source = "test config";
  return c;
}

std::vector<std::int32_t> some_tokens(std::size_t n, std::int32_t salt = 0) {
  std::vector<std::int32_t> ids(n);
  for (std::size_t i = 0; i < n; ++i) ids[i] = static_cast<std::int32_t>((i * 17 + 3 + static_cast<std::size_t>(salt)) % 61);
  return ids;
}

std::vector<float> all_logits(const pith::model_weights& w, const std::vector<std::int32_t>& ids, std::size_t chunk) {
  pith::session s(w, {96, chunk});
  std::vector<float> logits(ids.size() * w.config.vocab_size);
  if (chunk >= ids.size()) {
    s.forward(ids, logits.data(), true);
  } else {
    for (std::size_t i = 0; i < ids.size(); ++i)
      s.forward(std::span(ids).subspan(i, 1), logits.data() + i * w.config.vocab_size);
  }
  return logits;
}

float max_difference(const std::vector<float>& a, const std::vector<float>& b) {
  float worst = 0.0f;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst;
}

// Float32 sums in another order (online rescaling in phase one, per-token recurrences against
// batched prefill) over logits of magnitude ~10: differences stay near 1e-6.
constexpr float reorder_tolerance = 2e-4f;

TEST(AttentionResiduals, TwoPhaseEqualsTheDirectFormula) {
  for (std::size_t block_size : {1u, 2u, 3u, 7u}) {
    auto c = small_config();
    c.residual = pith::residual_mode::block;
    c.attn_res_block_size = block_size;
    auto direct = pith::random_weights(c, 11);
    direct.config.attn_res_two_phase = false;
    auto two_phase = pith::random_weights(c, 11);
    two_phase.config.attn_res_two_phase = true;
    const auto ids = some_tokens(20);
    for (std::size_t chunk : {1u, 20u}) {
      const auto a = all_logits(direct, ids, chunk), b = all_logits(two_phase, ids, chunk);
      EXPECT_LE(max_difference(a, b), reorder_tolerance) << "block size " << block_size << " chunk " << chunk;
    }
  }
}

TEST(AttentionResiduals, AMissingPseudoQueryIsNamed) {
  auto c = small_config();
  c.residual = pith::residual_mode::block;
  c.attn_res_block_size = 2;
  const auto w = pith::random_weights(c, 4);
  auto queries = pith::residual_queries_of(w);
  EXPECT_NO_THROW(pith::residual_stream(c, 4, queries));
  const auto message_of = [&](const pith::residual_queries& q) {
    try {
      pith::residual_stream stream(c, 4, q);
    } catch (const pith::argument_error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  auto missing_mlp = queries;
  missing_mlp.mlp[2] = nullptr;
  EXPECT_NE(message_of(missing_mlp).find("layer 2's MLP site"), std::string::npos) << message_of(missing_mlp);
  auto missing_output = queries;
  missing_output.output = nullptr;
  EXPECT_NE(message_of(missing_output).find("the output site"), std::string::npos) << message_of(missing_output);
  auto short_list = queries;
  short_list.attn.pop_back();
  EXPECT_NE(message_of(short_list).find("4 attention and 5 MLP pseudo-queries for 5 layers"), std::string::npos)
      << message_of(short_list);
  auto layer0 = queries;
  layer0.attn[0] = nullptr;  // layer 0's attention site is never mixed
  EXPECT_NO_THROW(pith::residual_stream(c, 4, layer0));
}

TEST(AttentionResiduals, ModesDiffer) {
  auto c = small_config();
  const auto standard = pith::random_weights(c, 3);
  c.residual = pith::residual_mode::block;
  c.attn_res_block_size = 2;
  const auto block = pith::random_weights(c, 3);
  c.residual = pith::residual_mode::full;
  const auto full = pith::random_weights(c, 3);
  const auto ids = some_tokens(8);
  const auto a = all_logits(standard, ids, 8), b = all_logits(block, ids, 8), f = all_logits(full, ids, 8);
  EXPECT_GT(max_difference(a, b), 1e-2f);
  EXPECT_GT(max_difference(b, f), 1e-2f);
}

class MixerTest : public ::testing::TestWithParam<pith::mixer_kind> {};

TEST_P(MixerTest, PrefillEqualsDecodeAlone) {
  auto c = small_config();
  c.mixers.assign(c.num_layers, GetParam());
  const auto w = pith::random_weights(c, 5);
  const auto ids = some_tokens(24);
  EXPECT_LE(max_difference(all_logits(w, ids, 24), all_logits(w, ids, 1)), reorder_tolerance);
}

TEST_P(MixerTest, PrefillEqualsDecodeInAHybridWithBlockResiduals) {
  auto c = small_config();
  c.mixers = pith::mixer_layout("even", GetParam(), c.num_layers, "test");
  c.residual = pith::residual_mode::block;
  c.attn_res_block_size = 2;
  const auto w = pith::random_weights(c, 6);
  const auto ids = some_tokens(24);
  EXPECT_LE(max_difference(all_logits(w, ids, 24), all_logits(w, ids, 1)), reorder_tolerance);
}

INSTANTIATE_TEST_SUITE_P(Mixers, MixerTest,
                         ::testing::Values(pith::mixer_kind::standard, pith::mixer_kind::mlp,
                                           pith::mixer_kind::approximate, pith::mixer_kind::non_approximate,
                                           pith::mixer_kind::rnd_emb_qk, pith::mixer_kind::fixed_seq_qk,
                                           pith::mixer_kind::static_emb_qk),
                         [](const auto& info) { return std::string(pith::mixer_name(info.param)); });

TEST(Mixers, UniformMlpIgnoresTheContext) {
  auto c = small_config();
  c.mixers.assign(c.num_layers, pith::mixer_kind::mlp);
  const auto w = pith::random_weights(c, 8);
  auto a = some_tokens(10, 0), b = some_tokens(10, 5);
  b.back() = a.back();
  const auto la = all_logits(w, a, 10), lb = all_logits(w, b, 10);
  const std::size_t v = c.vocab_size;
  for (std::size_t i = 0; i < v; ++i) EXPECT_EQ(la[9 * v + i], lb[9 * v + i]);
}

TEST(Mixers, ApproximateOptionsChangeTheResult) {
  auto c = small_config();
  c.mixers.assign(c.num_layers, pith::mixer_kind::approximate);
  const auto ids = some_tokens(12);
  const auto base = all_logits(pith::random_weights(c, 9), ids, 12);
  c.approximate_outer = true;
  const auto outer = all_logits(pith::random_weights(c, 9), ids, 12);
  c.approximate_per_term = true;
  const auto per_term = all_logits(pith::random_weights(c, 9), ids, 12);
  EXPECT_GT(max_difference(base, outer), 1e-4f);
  EXPECT_GT(max_difference(outer, per_term), 1e-4f);
}

TEST(Mixers, FixedStateMixersHoldConstantMemory) {
  auto c = small_config();
  c.mixers = {pith::mixer_kind::standard, pith::mixer_kind::mlp, pith::mixer_kind::approximate,
              pith::mixer_kind::non_approximate, pith::mixer_kind::static_emb_qk};
  const auto w = pith::random_weights(c, 10);
  pith::session s(w, {64, 8});
  const auto report = s.memory_report();
  ASSERT_EQ(report.size(), 5u);
  EXPECT_GT(report[0].kv_cache_bytes, 0u);
  EXPECT_EQ(report[1].kv_cache_bytes + report[1].state_bytes, 0u);
  EXPECT_EQ(report[2].kv_cache_bytes, 0u);
  EXPECT_GT(report[2].state_bytes, 0u);
  EXPECT_EQ(report[3].kv_cache_bytes, 0u);
  EXPECT_EQ(report[3].state_bytes, c.num_heads * (c.head_dim + 2) * sizeof(float));
  EXPECT_GT(report[4].kv_cache_bytes, 0u);
  // Decoding fills the caches of the cached layers only.
  std::vector<float> logits(c.vocab_size);
  const auto ids = some_tokens(30);
  for (std::size_t i = 0; i < ids.size(); ++i) s.forward(std::span(ids).subspan(i, 1), logits.data());
  EXPECT_EQ(s.cache().size(0, 0), 30u);
  EXPECT_EQ(s.cache().size(2, 0), 0u);
  EXPECT_EQ(s.memory_report()[2].state_bytes, report[2].state_bytes);
}

TEST(Mixers, FixedStreamEndsWithAClearError) {
  auto c = small_config();
  c.mixers.assign(c.num_layers, pith::mixer_kind::rnd_emb_qk);
  c.max_position_embeddings = 16;
  const auto w = pith::random_weights(c, 12);
  pith::session s(w, {32, 32});
  std::vector<float> logits(c.vocab_size);
  const auto ids = some_tokens(20);
  try {
    s.forward(ids, logits.data());
    FAIL() << "no error past the fixed stream";
  } catch (const pith::argument_error& e) {
    EXPECT_NE(std::string(e.what()).find("fixed stream of 16 positions"), std::string::npos) << e.what();
  }
}

TEST(Threads, OneAndTwoThreadsGiveTheSameLogits) {
  // Large enough that both the projections and the attention heads are split across two threads
  // (each part above pith::min_work_per_thread), in a hybrid so every path runs.
  pith::model_config c = small_config();
  c.hidden_size = 256;
  c.intermediate_size = 512;
  c.num_layers = 3;
  c.head_dim = 64;
  c.vocab_size = 300;
  c.max_position_embeddings = 512;
  c.mixers = pith::mixer_layout("odd", pith::mixer_kind::approximate, c.num_layers, "test");
  c.residual = pith::residual_mode::block;
  c.attn_res_block_size = 2;
  ASSERT_GE(c.q_size() / 2 * 128 * 128 * 2, pith::min_work_per_thread);  // one part's attention work
  const auto w = pith::random_weights(c, 21);
  std::vector<std::int32_t> ids(256);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::int32_t>((i * 37 + 5) % 300);
  auto logits_on = [&](std::size_t threads) {
    pith::set_num_threads(threads);
    pith::session s(w, {512, 128});
    std::vector<float> logits(ids.size() * c.vocab_size);
    for (std::size_t start = 0; start < ids.size(); start += 128)
      s.forward(std::span(ids).subspan(start, 128), logits.data() + start * c.vocab_size, true);
    return logits;
  };
  const auto one = logits_on(1);
  const auto two = logits_on(2);
  pith::set_num_threads(0);
  // Every output element is computed by the same code on either thread count; only a GEMM panel
  // boundary can move, which changes no sum's order. Allow float noise anyway.
  constexpr float thread_split_tolerance = 1e-5f;
  EXPECT_LE(max_difference(one, two), thread_split_tolerance);
}

TEST(Layouts, MatchTheAblationTableFor24Layers) {
  // notes/deconstructing_attention.md §4: 1-indexed standard layers of each layout.
  const std::vector<std::pair<std::string, std::vector<int>>> table{
      {"even", {2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24}},
      {"odd", {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23}},
      {"top", {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
      {"middle", {1, 2, 3, 4, 5, 6, 19, 20, 21, 22, 23, 24}},
      {"bottom", {13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24}},
      {"quarter", {4, 8, 12, 16, 20, 24}},
      {"first", {1}},
      {"last", {24}},
      {"first_last", {1, 24}}};
  for (const auto& [layout, standard] : table) {
    const auto mixers = pith::mixer_layout(layout, pith::mixer_kind::approximate, 24, "test");
    std::vector<int> found;
    for (std::size_t i = 0; i < mixers.size(); ++i)
      if (mixers[i] == pith::mixer_kind::standard) found.push_back(static_cast<int>(i) + 1);
    EXPECT_EQ(found, standard) << layout;
  }
  EXPECT_THROW(pith::mixer_layout("sideways", pith::mixer_kind::mlp, 4, "test"), pith::config_error);
}

TEST(LayerConfig, ErrorsNameTheKey) {
  nlohmann::json json{{"hidden_size", 48}, {"intermediate_size", 64}, {"num_hidden_layers", 3},
                      {"num_attention_heads", 4}, {"vocab_size", 50}};
  auto error_of = [](const nlohmann::json& j) {
    try {
      pith::config_from_json(j, "config.json");
    } catch (const pith::config_error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  auto j = json;
  j["token_mixers"] = {"standard", "mlp"};
  EXPECT_NE(error_of(j).find("token_mixers"), std::string::npos);
  j["token_mixers"] = {"standard", "mlp", "softmax2"};
  EXPECT_NE(error_of(j).find("softmax2"), std::string::npos);
  j = json;
  j["token_mixers"] = {{"layout", "even"}};
  EXPECT_NE(error_of(j).find("token_mixers.variant"), std::string::npos);
  j = json;
  j["attn_res_mode"] = "block";
  EXPECT_NE(error_of(j).find("attn_res_block_size"), std::string::npos);
  j["attn_res_mode"] = "deep";
  EXPECT_NE(error_of(j).find("attn_res_mode"), std::string::npos);
  j = json;
  j["attn_res_block_size"] = 2;
  j["token_mixers"] = {{"layout", "odd"}, {"variant", "static_emb_qk"}};
  const auto c = pith::config_from_json(j, "config.json");
  EXPECT_EQ(c.residual, pith::residual_mode::block);
  EXPECT_EQ(c.mixer(0), pith::mixer_kind::standard);
  EXPECT_EQ(c.mixer(1), pith::mixer_kind::static_emb_qk);
}

}  // namespace
