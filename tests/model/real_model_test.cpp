// SPDX-License-Identifier: MIT
// Real tiny checkpoints from ../shared/models: exact greedy golden, .bin and .gguf agreement,
// prefill and decode agreement. Skipped with a message when the folder is absent.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <pith/io/tokenizer.hpp>
#include <pith/model/sampler.hpp>
#include <pith/model/transformer.hpp>

namespace {

const std::filesystem::path models = PITH_SHARED_MODELS_DIR;

#define REQUIRE_FILE(path)                                                                         \
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "not found: " << (path).string()             \
                                                   << " (real-model tests need ../shared/models)"

// Largest difference between logits of the same model stored in two formats: both are float32
// copies of the same numbers run through the same code, so they must agree exactly.
constexpr float same_weights_tolerance = 0.0f;
// Prefill (many queries per kernel call, blocked path) and decode (one query, row path) sum in
// different orders; logits are O(10), float rounding over 5 layers stays far below 1e-3.
constexpr float prefill_decode_tolerance = 1e-3f;

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::int32_t> greedy(pith::session& s, std::int32_t first, std::size_t steps) {
  std::vector<std::int32_t> out{first};
  std::vector<float> logits(s.config().vocab_size);
  for (std::size_t i = 0; i < steps; ++i) {
    s.forward(std::span(&out.back(), 1), logits.data());
    out.push_back(pith::sampler::argmax(logits));
  }
  return out;
}

TEST(Stories260K, GreedyFromBosReproducesTheLlama2cGolden) {
  const auto bin = models / "stories260K" / "stories260K.bin";
  REQUIRE_FILE(bin);
  const auto weights = pith::load_model(bin);
  const auto tokenizer = pith::tokenizer::load_llama2c(models / "stories260K" / "tok512.bin", 512);
  pith::session s(weights);
  const auto ids = greedy(s, 1, 200);
  const std::string text = tokenizer.decode_all(ids);
  // llama2.c ends its output with a newline after the last token.
  const std::string golden = read_text(models / "stories260K" / "golden_greedy_bos_200.txt");
  EXPECT_EQ(ids[1], 403);
  EXPECT_EQ(text + "\n", golden);
}

TEST(Stories260K, BinAndGgufGiveIdenticalLogits) {
  const auto bin = models / "stories260K" / "stories260K.bin";
  const auto gguf = models / "stories260K" / "stories260K.gguf";
  REQUIRE_FILE(bin);
  REQUIRE_FILE(gguf);
  const auto a = pith::load_model(bin);
  const auto b = pith::load_model(gguf);
  pith::session sa(a), sb(b);
  const std::vector<std::int32_t> ids{1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395};
  std::vector<float> la(ids.size() * 512), lb(ids.size() * 512);
  sa.forward(ids, la.data(), true);
  sb.forward(ids, lb.data(), true);
  float worst = 0.0f;
  for (std::size_t i = 0; i < la.size(); ++i) worst = std::max(worst, std::abs(la[i] - lb[i]));
  EXPECT_LE(worst, same_weights_tolerance);
  // First position's logits as llama2.c prints them.
  EXPECT_NEAR(la[0], -6.222911f, 1e-4f);
  EXPECT_NEAR(la[1], 8.404342f, 1e-4f);
}

TEST(Stories260K, PrefillEqualsTokenByTokenDecode) {
  const auto bin = models / "stories260K" / "stories260K.bin";
  REQUIRE_FILE(bin);
  const auto w = pith::load_model(bin);
  pith::session whole(w), steps(w);
  std::vector<std::int32_t> ids;
  for (int i = 0; i < 100; ++i) ids.push_back(1 + (i * 37) % 500);
  std::vector<float> all(ids.size() * 512), one(512);
  whole.forward(ids, all.data(), true);
  float worst = 0.0f;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    steps.forward(std::span(ids).subspan(i, 1), one.data());
    for (std::size_t v = 0; v < 512; ++v) worst = std::max(worst, std::abs(one[v] - all[i * 512 + v]));
  }
  EXPECT_LE(worst, prefill_decode_tolerance);
}

TEST(Aidreams260K, LoadsAndRuns) {
  const auto bin = models / "aidreams260K" / "aidreams260K.bin";
  REQUIRE_FILE(bin);
  const auto w = pith::load_model(bin);
  EXPECT_EQ(w.config.num_layers, 4u);
  EXPECT_EQ(w.config.num_heads, 4u);
  EXPECT_EQ(w.config.head_dim, 16u);
  pith::session s(w);
  const auto ids = greedy(s, 1, 40);
  const auto tokenizer = pith::tokenizer::load_llama2c(models / "aidreams260K" / "tok512.bin",
                                                       static_cast<std::int32_t>(w.config.vocab_size));
  const std::string text = tokenizer.decode_all(ids);
  EXPECT_GT(text.size(), 40u);
  EXPECT_EQ(s.position(), 40u);
}

}  // namespace
