// SPDX-License-Identifier: MIT
// model_config parsing and validation: every missing or mistyped key is named in the error.
#include <gtest/gtest.h>

#include <string>

#include <filesystem>

#include <pith/model/config.hpp>
#include <pith/model/weights.hpp>

namespace {

nlohmann::json valid() {
  return {{"hidden_size", 64}, {"intermediate_size", 128}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
          {"num_key_value_heads", 2}, {"vocab_size", 100}, {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0}};
}

std::string error_of(const nlohmann::json& json) {
  try {
    pith::config_from_json(json, "config.json");
  } catch (const pith::config_error& e) {
    return e.what();
  }
  return "";
}

TEST(Config, DefaultsFollowHuggingFace) {
  auto json = valid();
  json.erase("num_key_value_heads");
  const auto c = pith::config_from_json(json, "config.json");
  EXPECT_EQ(c.num_kv_heads, 4u);
  EXPECT_EQ(c.head_dim, 16u);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.rope, pith::kernels::rope_layout::half);
}

TEST(Config, ExplicitHeadDimIsIndependentOfHiddenSize) {
  auto json = valid();
  json["head_dim"] = 24;
  EXPECT_EQ(pith::config_from_json(json, "config.json").head_dim, 24u);
}

TEST(Config, MissingKeysAreNamed) {
  for (const char* key : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"}) {
    auto json = valid();
    json.erase(key);
    const auto message = error_of(json);
    EXPECT_NE(message.find(key), std::string::npos) << message;
    EXPECT_NE(message.find("config.json"), std::string::npos) << message;
  }
}

TEST(Config, WrongTypesAndValuesAreNamed) {
  auto json = valid();
  json["hidden_size"] = "64";
  EXPECT_NE(error_of(json).find("hidden_size"), std::string::npos);
  json = valid();
  json["num_key_value_heads"] = 3;
  EXPECT_NE(error_of(json).find("num_key_value_heads"), std::string::npos);
  json = valid();
  json["tie_word_embeddings"] = 1;
  EXPECT_NE(error_of(json).find("tie_word_embeddings"), std::string::npos);
  json = valid();
  json["rms_norm_eps"] = -1.0;
  EXPECT_NE(error_of(json).find("rms_norm_eps"), std::string::npos);
  json = valid();
  json["num_hidden_layers"] = -2;
  EXPECT_NE(error_of(json).find("num_hidden_layers"), std::string::npos);
  json = valid();
  json["head_dim"] = 7;
  EXPECT_NE(error_of(json).find("head_dim"), std::string::npos);
  json = valid();
  json["rope_scaling"] = {{"type", "linear"}};
  EXPECT_NE(error_of(json).find("rope_scaling"), std::string::npos);
  EXPECT_NE(error_of(nlohmann::json::array()).find("not a JSON object"), std::string::npos);
}

TEST(Config, MissingFileIsAnIoError) {
  EXPECT_THROW(pith::load_config_json("/nonexistent/config.json"), pith::io_error);
}

}  // namespace

// Inputs the GGUF fuzzer found: each must be a pith::error, not an allocation failure or a crash.
TEST(ModelLoading, FuzzerFindingsAreErrors) {
  const std::filesystem::path folder = std::filesystem::path(PITH_TEST_DATA_DIR) / ".." / ".." / "fuzz" / "model_bugs";
  for (const char* name : {"gguf_block_count_2e31.gguf", "gguf_scalar_token_embd.gguf"}) {
    const auto path = folder / name;
    ASSERT_TRUE(std::filesystem::exists(path)) << path;
    EXPECT_THROW(pith::load_model(path), pith::error) << name;
  }
}
