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

}  // namespace
