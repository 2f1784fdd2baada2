// SPDX-License-Identifier: MIT
// Llama 3, Qwen2, Qwen3, Mistral and Gemma 3 against the PyTorch twin (tools/pith_reference.py,
// goldens by tools/make_family_goldens.py): logits at every prompt position, token-by-token decode and
// greedy continuations, from the safetensors checkpoint and from the GGUF file made of it.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <pith/model/sampler.hpp>
#include <pith/model/transformer.hpp>

namespace family_golden {

const std::filesystem::path data = std::filesystem::path(PITH_TEST_DATA_DIR) / "families";

// The twin computes in float32 with PyTorch's summation order and float64 RoPE angles; its own
// float32-vs-float64 difference on these models is at most 4.4e-6 at logits up to |10|
// (expected.json's float64_difference). pith's float32 sums in another order: 1e-4 leaves room for
// both, as for the Llama goldens, and is far below the smallest greedy margin (0.05).
constexpr float logit_tolerance = 1e-4f;

struct golden {
  std::vector<std::int32_t> ids, greedy;
  std::vector<std::vector<float>> logits;
};

golden read_golden(const std::filesystem::path& path) {
  std::ifstream in(path);
  const auto json = nlohmann::json::parse(in);
  return {json.at("ids").get<std::vector<std::int32_t>>(), json.at("greedy").get<std::vector<std::int32_t>>(),
          json.at("logits").get<std::vector<std::vector<float>>>()};
}

struct source {
  const char* name;
  bool gguf;
};

std::string source_name(const ::testing::TestParamInfo<source>& info) {
  return std::string(info.param.name) + (info.param.gguf ? "_gguf" : "_safetensors");
}

class FamilyGolden : public ::testing::TestWithParam<source> {
 protected:
  pith::model_weights load() const {
    const auto dir = data / GetParam().name;
    return GetParam().gguf ? pith::load_model(dir / "model.gguf") : pith::load_model(dir);
  }
  golden expected() const { return read_golden(data / GetParam().name / "expected.json"); }
};

float worst_difference(const std::vector<float>& logits, std::size_t row, const golden& g, std::size_t vocab) {
  float worst = 0.0f;
  for (std::size_t v = 0; v < vocab; ++v) worst = std::max(worst, std::abs(logits[row * vocab + v] - g.logits[row][v]));
  return worst;
}

TEST_P(FamilyGolden, PrefillLogitsMatchTheTwin) {
  const auto weights = load();
  const auto g = expected();
  const std::size_t vocab = weights.config.vocab_size;
  pith::session s(weights, {64, 64});
  std::vector<float> logits(g.ids.size() * vocab);
  s.forward(g.ids, logits.data(), true);
  float worst = 0.0f;
  for (std::size_t t = 0; t < g.ids.size(); ++t) {
    ASSERT_EQ(g.logits[t].size(), vocab);
    worst = std::max(worst, worst_difference(logits, t, g, vocab));
  }
  EXPECT_LE(worst, logit_tolerance);
  RecordProperty("max_abs_logit_difference", std::to_string(worst));
}

TEST_P(FamilyGolden, DecodeAndChunksMatchTheTwin) {
  const auto weights = load();
  const auto g = expected();
  const std::size_t vocab = weights.config.vocab_size;
  // One token at a time, and chunks of 3 (a chunk that straddles a sliding window's edge).
  for (const std::size_t chunk : {std::size_t{1}, std::size_t{3}}) {
    pith::session s(weights, {64, chunk});
    std::vector<float> logits(g.ids.size() * vocab);
    s.forward(g.ids, logits.data(), true);
    float worst = 0.0f;
    for (std::size_t t = 0; t < g.ids.size(); ++t) worst = std::max(worst, worst_difference(logits, t, g, vocab));
    EXPECT_LE(worst, logit_tolerance) << "chunks of " << chunk;
  }
}

TEST_P(FamilyGolden, GreedyContinuationMatchesTheTwin) {
  const auto weights = load();
  const auto g = expected();
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

INSTANTIATE_TEST_SUITE_P(Families, FamilyGolden,
                         ::testing::Values(source{"llama3_tied", false}, source{"llama3_tied", true},
                                           source{"qwen2_bias", false}, source{"qwen2_bias", true},
                                           source{"qwen3_head_dim", false}, source{"qwen3_head_dim", true},
                                           source{"mistral_window", false}, source{"gemma3", false},
                                           source{"gemma3", true}, source{"gemma3_layer_types", false},
                                           source{"gemma3_reader", false}, source{"gemma3_reader", true}),
                         source_name);

// The families' matrices through the quantized views (Q8_0 at load; rows that are not whole blocks
// fall back as llama-quantize does), biases and norms in float32: the twin's greedy tokens still come
// out and the logits stay within Q8_0's error. Q8_0 rounds each weight to 1/254 of its block's largest
// magnitude; through the quantized embedding, two layers and the head these logits (up to |10.5|)
// move by at most 0.37 (measured): 0.5 is 5% of the largest logit.
constexpr float q8_0_logit_tolerance = 0.5f;

TEST(FamilyQuantized, Q8_0WeightsKeepTheTwinsAnswers) {
  for (const char* name : {"qwen2_bias", "llama3_tied"}) {
    pith::load_options options;
    options.quantize_to = pith::dtype::q8_0;
    const auto weights = pith::load_model(data / name / "model.gguf", options);
    bool quantized = false;
    for (const auto& l : weights.layers) quantized = quantized || l.wq.type() == pith::dtype::q8_0;
    EXPECT_TRUE(quantized) << name;
    const auto g = read_golden(data / name / "expected.json");
    const std::size_t vocab = weights.config.vocab_size;
    pith::session s(weights, {64, 64});
    std::vector<float> logits(g.ids.size() * vocab);
    s.forward(g.ids, logits.data(), true);
    float worst = 0.0f;
    for (std::size_t t = 0; t < g.ids.size(); ++t) worst = std::max(worst, worst_difference(logits, t, g, vocab));
    EXPECT_LE(worst, q8_0_logit_tolerance) << name;
    // Every position where the twin's best token leads by more than twice the bound picks it too.
    for (std::size_t t = 0; t < g.ids.size(); ++t) {
      std::vector<float> row(g.logits[t]);
      const auto best = static_cast<std::size_t>(pith::sampler::argmax(row));
      float second = -1e30f;
      for (std::size_t v = 0; v < vocab; ++v)
        if (v != best) second = std::max(second, row[v]);
      if (row[best] - second > 2 * q8_0_logit_tolerance) {
        EXPECT_EQ(static_cast<std::size_t>(pith::sampler::argmax(std::span(logits).subspan(t * vocab, vocab))), best)
            << name << " position " << t;
      }
    }
  }
}

// Gemma3ForConditionalGeneration: the text model under language_model.model.*, text_config with
// some keys left to their defaults, two vision tensors not used: the gemma3 case's model and logits.
TEST(FamilyMultimodal, TheTextModelOfAGemma3ConditionalGenerationCheckpoint) {
  const auto weights = pith::load_model(data / "gemma3_multimodal");
  EXPECT_TRUE(weights.config.multimodal);
  EXPECT_FLOAT_EQ(weights.config.rope_theta_windowed, 10000.0f);  // rope_local_base_freq's default
  const auto g = read_golden(data / "gemma3" / "expected.json");
  const std::size_t vocab = weights.config.vocab_size;
  pith::session s(weights, {64, 64});
  std::vector<float> logits(g.ids.size() * vocab);
  s.forward(g.ids, logits.data(), true);
  float worst = 0.0f;
  for (std::size_t t = 0; t < g.ids.size(); ++t) worst = std::max(worst, worst_difference(logits, t, g, vocab));
  EXPECT_LE(worst, logit_tolerance);
}

// What each family's loader reads from its files.
TEST(FamilyConfig, FilesSetTheFamilySwitches) {
  const auto llama3 = pith::load_model(data / "llama3_tied" / "model.gguf");
  EXPECT_EQ(llama3.config.family, pith::model_family::llama);
  EXPECT_EQ(llama3.rope_frequency_divisors.size(), llama3.config.head_dim / 2);
  EXPECT_TRUE(llama3.config.tie_word_embeddings);
  const auto qwen2 = pith::load_model(data / "qwen2_bias");
  EXPECT_TRUE(qwen2.config.attention_bias);
  EXPECT_EQ(qwen2.layers[0].q_bias.size(), qwen2.config.q_size());
  const auto qwen3 = pith::load_model(data / "qwen3_head_dim" / "model.gguf");
  EXPECT_EQ(qwen3.config.head_dim, 12u);
  EXPECT_EQ(qwen3.config.rope, pith::kernels::rope_layout::half);
  const auto gemma = pith::load_model(data / "gemma3" / "model.gguf");
  ASSERT_EQ(gemma.config.sliding_windows.size(), 6u);
  for (std::size_t l = 0; l < 6; ++l) EXPECT_EQ(gemma.config.sliding_window(l), l == 5 ? 0u : 4u) << l;
  EXPECT_EQ(gemma.config.rope_scale.kind, pith::rope_scaling_kind::linear);
  const auto mistral = pith::load_model(data / "mistral_window");
  EXPECT_EQ(mistral.config.sliding_window(1), 5u);
}

// A sliding-window layer holds a fixed number of rows however long the context: W (or
// max_context when smaller) between calls, and a chunk more while one runs.
TEST(FamilyWindows, SlidingWindowLayersKeepTheirLastRows) {
  const auto weights = pith::load_model(data / "gemma3");
  pith::session s(weights, {64, 4});
  std::vector<std::int32_t> ids(40);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::int32_t>(i % 60);
  s.forward(ids, nullptr);
  const auto report = s.memory_report();
  for (std::size_t l = 0; l < 6; ++l) {
    EXPECT_EQ(s.cache().size(l, 0), l == 5 ? 40u : 4u) << l;
    EXPECT_EQ(report[l].window, l == 5 ? 0u : 4u);
    if (l != 5) {
      EXPECT_LT(report[l].kv_cache_bytes, report[5].kv_cache_bytes);
    }
  }
}

// A window wider than the session's max_context is never cut short: the layer is bounded like a
// full-attention one, and forward refuses what would not fit rather than drop rows of the window.
TEST(FamilyWindows, AWindowWiderThanTheContextIsNotCutShort) {
  const auto weights = pith::load_model(data / "mistral_window");  // every layer a window of 5
  const std::vector<std::int32_t> ids = {1, 2, 3, 4, 5, 6, 7};
  pith::session narrow(weights, {4, 1});
  narrow.forward(std::span(ids).first(4), nullptr);
  EXPECT_EQ(narrow.cache().size(0, 0), 4u);
  EXPECT_THROW(narrow.forward(std::span(ids).subspan(4, 1), nullptr), pith::argument_error);
  // With the window inside max_context, the same layers read on and keep 5 rows.
  pith::session wide(weights, {5, 1});
  wide.forward(ids, nullptr);
  EXPECT_EQ(wide.cache().size(0, 0), 5u);
}

}  // namespace family_golden
