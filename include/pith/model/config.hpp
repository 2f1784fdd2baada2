// SPDX-License-Identifier: MIT
// model_config: the immutable hyper-parameters of a Llama-family model, parsed and validated.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "pith/core/error.hpp"
#include "pith/kernels/rope.hpp"

namespace pith {

struct model_config {
  std::size_t hidden_size = 0;
  std::size_t intermediate_size = 0;
  std::size_t num_layers = 0;
  std::size_t num_heads = 0;
  std::size_t num_kv_heads = 0;
  std::size_t head_dim = 0;
  std::size_t vocab_size = 0;
  float rms_norm_eps = 1e-6f;
  float rope_theta = 10000.0f;
  bool tie_word_embeddings = false;
  std::size_t max_position_embeddings = 2048;
  kernels::rope_layout rope = kernels::rope_layout::half;
  std::int32_t bos_token_id = 1;
  std::int32_t eos_token_id = 2;
  std::string source;  // file the configuration came from, for error messages

  std::size_t q_size() const noexcept { return num_heads * head_dim; }
  std::size_t kv_size() const noexcept { return num_kv_heads * head_dim; }

  /// Cross-field invariants; throws config_error naming the key.
  void validate() const {
    auto fail = [&](const std::string& key, const std::string& why) {
      PITH_THROW(config_error, source + ": key '" + key + "' " + why);
    };
    if (hidden_size == 0) fail("hidden_size", "must be positive");
    if (intermediate_size == 0) fail("intermediate_size", "must be positive");
    if (num_layers == 0) fail("num_hidden_layers", "must be positive");
    if (num_heads == 0) fail("num_attention_heads", "must be positive");
    if (num_kv_heads == 0) fail("num_key_value_heads", "must be positive");
    if (num_heads % num_kv_heads != 0)
      fail("num_key_value_heads", "(" + std::to_string(num_kv_heads) + ") must divide num_attention_heads (" +
                                      std::to_string(num_heads) + ")");
    if (head_dim == 0 || head_dim % 2 != 0) fail("head_dim", "must be positive and even, got " + std::to_string(head_dim));
    if (vocab_size == 0) fail("vocab_size", "must be positive");
    if (!(rms_norm_eps > 0.0f)) fail("rms_norm_eps", "must be positive");
    if (!(rope_theta > 0.0f)) fail("rope_theta", "must be positive");
    if (max_position_embeddings == 0) fail("max_position_embeddings", "must be positive");
    constexpr std::size_t limit = std::size_t{1} << 24;
    for (auto [key, value] : {std::pair{"hidden_size", hidden_size}, {"intermediate_size", intermediate_size},
                              {"num_attention_heads", num_heads}, {"head_dim", head_dim}, {"vocab_size", vocab_size}})
      if (value > limit) fail(key, "is implausibly large (" + std::to_string(value) + ")");
  }
};

namespace detail {
template <class T>
T json_get(const nlohmann::json& json, const char* key, const std::string& source) {
  const auto it = json.find(key);
  if (it == json.end() || it->is_null()) PITH_THROW(config_error, source + ": key '" + key + "' is missing");
  try {
    if constexpr (std::is_same_v<T, std::size_t>) {
      if (!it->is_number_integer() || it->get<std::int64_t>() < 0)
        PITH_THROW(config_error, source + ": key '" + key + "' must be a non-negative integer, got " + it->dump());
    } else if constexpr (std::is_same_v<T, float>) {
      if (!it->is_number()) PITH_THROW(config_error, source + ": key '" + key + "' must be a number, got " + it->dump());
    } else if constexpr (std::is_same_v<T, bool>) {
      if (!it->is_boolean()) PITH_THROW(config_error, source + ": key '" + key + "' must be true or false, got " + it->dump());
    }
    return it->get<T>();
  } catch (const nlohmann::json::exception& e) {
    PITH_THROW(config_error, source + ": key '" + key + "': " + e.what());
  }
}

template <class T>
T json_get_or(const nlohmann::json& json, const char* key, T fallback, const std::string& source) {
  const auto it = json.find(key);
  if (it == json.end() || it->is_null()) return fallback;
  return json_get<T>(json, key, source);
}
}  // namespace detail

/// Parses a Hugging Face `config.json` (Llama keys). Missing optional keys take the Hugging Face
/// defaults: num_key_value_heads = num_attention_heads, head_dim = hidden_size / num_attention_heads,
/// rms_norm_eps 1e-6, rope_theta 10000, tie_word_embeddings false, max_position_embeddings 2048.
inline model_config config_from_json(const nlohmann::json& json, const std::string& source) {
  if (!json.is_object()) PITH_THROW(config_error, source + ": the configuration is not a JSON object");
  model_config c;
  c.source = source;
  using detail::json_get;
  using detail::json_get_or;
  c.hidden_size = json_get<std::size_t>(json, "hidden_size", source);
  c.intermediate_size = json_get<std::size_t>(json, "intermediate_size", source);
  c.num_layers = json_get<std::size_t>(json, "num_hidden_layers", source);
  c.num_heads = json_get<std::size_t>(json, "num_attention_heads", source);
  c.vocab_size = json_get<std::size_t>(json, "vocab_size", source);
  c.num_kv_heads = json_get_or<std::size_t>(json, "num_key_value_heads", c.num_heads, source);
  if (c.num_heads == 0) PITH_THROW(config_error, source + ": key 'num_attention_heads' must be positive");
  c.head_dim = json_get_or<std::size_t>(json, "head_dim", c.hidden_size / c.num_heads, source);
  c.rms_norm_eps = json_get_or<float>(json, "rms_norm_eps", 1e-6f, source);
  c.rope_theta = json_get_or<float>(json, "rope_theta", 10000.0f, source);
  c.tie_word_embeddings = json_get_or<bool>(json, "tie_word_embeddings", false, source);
  c.max_position_embeddings = json_get_or<std::size_t>(json, "max_position_embeddings", 2048, source);
  if (json.contains("bos_token_id") && json["bos_token_id"].is_number_integer())
    c.bos_token_id = json["bos_token_id"].get<std::int32_t>();
  if (json.contains("eos_token_id") && json["eos_token_id"].is_number_integer())
    c.eos_token_id = json["eos_token_id"].get<std::int32_t>();
  if (json.contains("rope_scaling") && !json["rope_scaling"].is_null())
    PITH_THROW(config_error, source + ": key 'rope_scaling' is not supported (only plain RoPE)");
  if (json.contains("hidden_act") && json["hidden_act"] != "silu")
    PITH_THROW(config_error, source + ": key 'hidden_act' must be \"silu\", got " + json["hidden_act"].dump());
  c.rope = kernels::rope_layout::half;
  c.validate();
  return c;
}

/// Reads and parses a `config.json` file.
inline model_config load_config_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) PITH_THROW(io_error, path.string() + ": cannot open the configuration");
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    PITH_THROW(config_error, path.string() + ": not valid JSON: " + e.what());
  }
  return config_from_json(json, path.string());
}

}  // namespace pith
