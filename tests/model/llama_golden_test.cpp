// SPDX-License-Identifier: MIT
// The Llama forward pass against the PyTorch twin (tools/pith_reference.py): logits at every prompt
// position, token-by-token decode, and greedy continuations of random safetensors checkpoints.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <pith/model/sampler.hpp>
#include <pith/model/transformer.hpp>

namespace {

const std::filesystem::path data = std::filesystem::path(PITH_TEST_DATA_DIR) / "llama";

// The twin runs in float32 too, with another summation order (PyTorch's BLAS) and RoPE angles in
// double; its own float32-vs-float64 error is 1.2e-5 at logits of |12|. 1e-4 leaves room for both.
constexpr float logit_tolerance = 1e-4f;

struct golden {
  std::vector<std::int32_t> ids, greedy;
  std::vector<std::vector<float>> logits;
};

golden read_golden(const std::filesystem::path& path) {
  std::ifstream in(path);
  const auto json = nlohmann::json::parse(in);
  golden g;
  g.ids = json.at("ids").get<std::vector<std::int32_t>>();
  g.greedy = json.at("greedy").get<std::vector<std::int32_t>>();
  g.logits = json.at("logits").get<std::vector<std::vector<float>>>();
  return g;
}

class LlamaGolden : public ::testing::TestWithParam<const char*> {};

TEST_P(LlamaGolden, PrefillLogitsMatchTheTwin) {
  const auto dir = data / GetParam();
  const auto weights = pith::load_model(dir);
  const auto g = read_golden(dir / "expected.json");
  const std::size_t vocab = weights.config.vocab_size;
  pith::session s(weights, {64, 64});
  std::vector<float> logits(g.ids.size() * vocab);
  s.forward(g.ids, logits.data(), true);
  float worst = 0.0f;
  for (std::size_t t = 0; t < g.ids.size(); ++t) {
    ASSERT_EQ(g.logits[t].size(), vocab);
    for (std::size_t v = 0; v < vocab; ++v) worst = std::max(worst, std::abs(logits[t * vocab + v] - g.logits[t][v]));
  }
  EXPECT_LE(worst, logit_tolerance);
  RecordProperty("max_abs_logit_difference", std::to_string(worst));
}

TEST_P(LlamaGolden, DecodeOneTokenAtATimeMatchesTheTwin) {
  const auto dir = data / GetParam();
  const auto weights = pith::load_model(dir);
  const auto g = read_golden(dir / "expected.json");
  const std::size_t vocab = weights.config.vocab_size;
  pith::session s(weights, {64, 1});
  std::vector<float> logits(vocab);
  float worst = 0.0f;
  for (std::size_t t = 0; t < g.ids.size(); ++t) {
    s.forward(std::span(g.ids).subspan(t, 1), logits.data());
    for (std::size_t v = 0; v < vocab; ++v) worst = std::max(worst, std::abs(logits[v] - g.logits[t][v]));
  }
  EXPECT_LE(worst, logit_tolerance);
}

TEST_P(LlamaGolden, GreedyContinuationMatchesTheTwin) {
  const auto dir = data / GetParam();
  const auto weights = pith::load_model(dir);
  const auto g = read_golden(dir / "expected.json");
  pith::session s(weights, {64, 16});
  std::vector<float> logits(weights.config.vocab_size);
  s.forward(g.ids, logits.data());
  std::vector<std::int32_t> produced;
  for (std::size_t i = 0; i < g.greedy.size(); ++i) {
    produced.push_back(pith::sampler::argmax(logits));
    s.forward(std::span(&produced.back(), 1), logits.data());
  }
  EXPECT_EQ(produced, g.greedy);
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, LlamaGolden,
                         ::testing::Values("gqa_untied", "head_dim_24", "mha_tied_odd", "f16", "bf16"));

// Attention residuals and token mixers (docs/layers.md) against the twin's goldens.
const std::filesystem::path layer_data = std::filesystem::path(PITH_TEST_DATA_DIR) / "layers";

// The twin's own float32 error on these models reaches 6e-5 at logits up to |16| (tools/README.md);
// pith's float32 sums in another order. 4e-4 is 2.5e-5 of the largest logit.
constexpr float layer_logit_tolerance = 4e-4f;

class LayerGolden : public ::testing::TestWithParam<const char*> {};

pith::model_weights load_case(const std::filesystem::path& dir) {
  return std::filesystem::exists(dir / "model.gguf") ? pith::load_model(dir / "model.gguf") : pith::load_model(dir);
}

TEST_P(LayerGolden, LogitsDecodeAndGreedyMatchTheTwin) {
  const auto dir = layer_data / GetParam();
  const auto weights = load_case(dir);
  const auto g = read_golden(dir / "expected.json");
  const std::size_t vocab = weights.config.vocab_size;
  std::vector<float> logits(g.ids.size() * vocab), one(vocab);
  pith::session prefill(weights, {64, 64}), decode(weights, {64, 1});
  prefill.forward(g.ids, logits.data(), true);
  float worst = 0.0f, worst_decode = 0.0f;
  for (std::size_t t = 0; t < g.ids.size(); ++t) {
    decode.forward(std::span(g.ids).subspan(t, 1), one.data());
    for (std::size_t v = 0; v < vocab; ++v) {
      worst = std::max(worst, std::abs(logits[t * vocab + v] - g.logits[t][v]));
      worst_decode = std::max(worst_decode, std::abs(one[v] - g.logits[t][v]));
    }
  }
  EXPECT_LE(worst, layer_logit_tolerance);
  EXPECT_LE(worst_decode, layer_logit_tolerance);
  std::vector<std::int32_t> produced;
  std::copy(logits.end() - static_cast<std::ptrdiff_t>(vocab), logits.end(), one.begin());
  for (std::size_t i = 0; i < g.greedy.size(); ++i) {
    produced.push_back(pith::sampler::argmax(one));
    prefill.forward(std::span(&produced.back(), 1), one.data());
  }
  EXPECT_EQ(produced, g.greedy);
}

INSTANTIATE_TEST_SUITE_P(Layers, LayerGolden,
                         ::testing::Values("block_bs2_l5", "block_bs1_l3", "full_l3", "mixer_mlp", "mixer_approximate",
                                           "mixer_approximate_outer_per_term", "mixer_non_approximate",
                                           "mixer_rnd_emb_qk", "mixer_fixed_seq_qk", "mixer_static_emb_qk",
                                           "hybrid_even_non_approximate", "hybrid_block_static", "block_gguf"));

}  // namespace
