// SPDX-License-Identifier: MIT
// model_config: the immutable hyper-parameters of a Llama-family model, parsed and validated.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pith/core/error.hpp"
#include "pith/kernels/rope.hpp"

// GCC 12 warns, depending on what else the translation unit inlines, that "literal" + std::string
// overlaps in memcpy (a false positive, GCC bug 105651); the error messages below build strings so.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wrestrict"
#define PITH_CONFIG_RESTRICT_PUSHED 1
#endif

namespace pith {

/// How sub-layer outputs reach later layers (docs/layers.md, notes/attention_residuals.md).
enum class residual_mode { standard, block, full };

/// The token mixer of one layer (docs/layers.md, notes/deconstructing_attention.md §3).
enum class mixer_kind { standard, mlp, approximate, non_approximate, rnd_emb_qk, fixed_seq_qk, static_emb_qk };

inline const char* mixer_name(mixer_kind kind) noexcept {
  switch (kind) {
    case mixer_kind::standard: return "standard";
    case mixer_kind::mlp: return "mlp";
    case mixer_kind::approximate: return "approximate";
    case mixer_kind::non_approximate: return "non_approximate";
    case mixer_kind::rnd_emb_qk: return "rnd_emb_qk";
    case mixer_kind::fixed_seq_qk: return "fixed_seq_qk";
    case mixer_kind::static_emb_qk: return "static_emb_qk";
  }
  return "?";
}

/// Whether a mixer keeps a KV cache (and so takes part in eviction).
inline bool mixer_uses_kv_cache(mixer_kind kind) noexcept {
  return kind == mixer_kind::standard || kind == mixer_kind::rnd_emb_qk || kind == mixer_kind::fixed_seq_qk ||
         kind == mixer_kind::static_emb_qk;
}

/// Whether a mixer has q/k/v/o projections.
inline bool mixer_has_attention_weights(mixer_kind kind) noexcept { return kind != mixer_kind::mlp; }

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
  residual_mode residual = residual_mode::standard;
  std::size_t attn_res_block_size = 0;  // decoder layers per block (block mode)
  bool attn_res_two_phase = true;       // batched block scoring + online merge (notes §4.2) in block mode
  std::vector<mixer_kind> mixers;        // one per layer; empty means all standard
  bool approximate_outer = false;        // second-order term: outer product instead of element-wise square
  bool approximate_per_term = false;     // three separately normalised terms instead of joint normalisation
  std::size_t mixer_mlp_intermediate_size = 0;
  std::string source;  // file the configuration came from, for error messages

  mixer_kind mixer(std::size_t layer) const noexcept { return mixers.empty() ? mixer_kind::standard : mixers[layer]; }
  /// Number of block snapshots a token can hold in block mode (the embedding included).
  std::size_t attn_res_blocks() const noexcept {
    return attn_res_block_size == 0 ? 0 : (num_layers + attn_res_block_size - 1) / attn_res_block_size;
  }

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
    if (residual == residual_mode::block && attn_res_block_size == 0)
      fail("attn_res_block_size", "must be at least 1 in block mode");
    if (!mixers.empty() && mixers.size() != num_layers)
      fail("token_mixers", "lists " + std::to_string(mixers.size()) + " layers, the model has " + std::to_string(num_layers));
    for (std::size_t i = 0; i < mixers.size(); ++i)
      if (mixers[i] == mixer_kind::mlp && mixer_mlp_intermediate_size == 0)
        fail("mixer_mlp_intermediate_size", "must be positive for the mlp mixer of layer " + std::to_string(i));
    if (num_layers > 65536) fail("num_hidden_layers", "is implausibly large (" + std::to_string(num_layers) + ")");
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
  PITH_TRY {
    if constexpr (std::is_same_v<T, std::size_t>) {
      if (!it->is_number_integer() || it->get<std::int64_t>() < 0)
        PITH_THROW(config_error, source + ": key '" + key + "' must be a non-negative integer, got " + it->dump());
    } else if constexpr (std::is_same_v<T, float>) {
      if (!it->is_number()) PITH_THROW(config_error, source + ": key '" + key + "' must be a number, got " + it->dump());
    } else if constexpr (std::is_same_v<T, bool>) {
      if (!it->is_boolean()) PITH_THROW(config_error, source + ": key '" + key + "' must be true or false, got " + it->dump());
    }
    return it->get<T>();
  } PITH_CATCH(const nlohmann::json::exception&, e) {
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

inline mixer_kind parse_mixer_name(const std::string& name, const std::string& source, const std::string& key) {
  for (auto kind : {mixer_kind::standard, mixer_kind::mlp, mixer_kind::approximate, mixer_kind::non_approximate,
                    mixer_kind::rnd_emb_qk, mixer_kind::fixed_seq_qk, mixer_kind::static_emb_qk})
    if (name == mixer_name(kind)) return kind;
  PITH_THROW(config_error, source + ": key '" + key + "': unknown token mixer '" + name +
                               "' (standard, mlp, approximate, non_approximate, rnd_emb_qk, fixed_seq_qk, static_emb_qk)");
}

/// Per-layer mixers from a layout preset naming where standard attention stays (docs/layers.md).
inline std::vector<mixer_kind> mixer_layout(const std::string& layout, mixer_kind variant, std::size_t layers,
                                            const std::string& source) {
  std::vector<mixer_kind> mixers(layers, variant);
  const std::size_t l = layers;
  for (std::size_t i = 0; i < l; ++i) {
    bool standard = false;
    if (layout == "even") standard = i % 2 == 1;
    else if (layout == "odd") standard = i % 2 == 0;
    else if (layout == "top") standard = i < l / 2;
    else if (layout == "bottom") standard = i >= l - l / 2;
    else if (layout == "middle") standard = i < l / 4 || i >= l - l / 4;
    else if (layout == "quarter") standard = (i + 1) % 4 == 0;
    else if (layout == "first") standard = i == 0;
    else if (layout == "last") standard = i + 1 == l;
    else if (layout == "first_last") standard = i == 0 || i + 1 == l;
    else
      PITH_THROW(config_error, source + ": key 'token_mixers.layout': unknown layout '" + layout +
                                   "' (even, odd, top, middle, bottom, quarter, first, last, first_last)");
    if (standard) mixers[i] = mixer_kind::standard;
  }
  return mixers;
}

/// pith's keys for residual modes and token mixers (docs/layers.md).
inline void parse_layer_keys(const nlohmann::json& json, model_config& c) {
  const std::string& source = c.source;
  using detail::json_get_or;
  const auto mode = json.find("attn_res_mode");
  const bool has_block_size = json.contains("attn_res_block_size") && !json["attn_res_block_size"].is_null();
  if (mode != json.end() && !mode->is_null()) {
    if (!mode->is_string()) PITH_THROW(config_error, source + ": key 'attn_res_mode' must be a string");
    const auto name = mode->get<std::string>();
    if (name == "standard") c.residual = residual_mode::standard;
    else if (name == "block") c.residual = residual_mode::block;
    else if (name == "full") c.residual = residual_mode::full;
    else PITH_THROW(config_error, source + ": key 'attn_res_mode': unknown mode '" + name + "' (standard, block, full)");
  } else if (has_block_size) {
    c.residual = residual_mode::block;
  }
  c.attn_res_block_size = json_get_or<std::size_t>(json, "attn_res_block_size", 0, source);
  c.attn_res_two_phase = json_get_or<bool>(json, "attn_res_two_phase", true, source);
  c.mixer_mlp_intermediate_size = json_get_or<std::size_t>(json, "mixer_mlp_intermediate_size", 4 * c.hidden_size / 3, source);
  if (json.contains("approximate_order2")) {
    const auto& v = json["approximate_order2"];
    if (v == "outer") c.approximate_outer = true;
    else if (v == "elementwise") c.approximate_outer = false;
    else PITH_THROW(config_error, source + ": key 'approximate_order2' must be \"elementwise\" or \"outer\"");
  }
  if (json.contains("approximate_norm")) {
    const auto& v = json["approximate_norm"];
    if (v == "per_term") c.approximate_per_term = true;
    else if (v == "joint") c.approximate_per_term = false;
    else PITH_THROW(config_error, source + ": key 'approximate_norm' must be \"joint\" or \"per_term\"");
  }
  const auto mixers = json.find("token_mixers");
  if (mixers == json.end() || mixers->is_null()) return;
  if (mixers->is_array()) {
    for (std::size_t i = 0; i < mixers->size(); ++i) {
      const auto key = "token_mixers[" + std::to_string(i) + "]";
      if (!(*mixers)[i].is_string()) PITH_THROW(config_error, source + ": key '" + key + "' must be a string");
      c.mixers.push_back(parse_mixer_name((*mixers)[i].get<std::string>(), source, key));
    }
  } else if (mixers->is_object()) {
    const auto layout = mixers->find("layout"), variant = mixers->find("variant");
    if (layout == mixers->end() || !layout->is_string())
      PITH_THROW(config_error, source + ": key 'token_mixers.layout' is missing or not a string");
    if (variant == mixers->end() || !variant->is_string())
      PITH_THROW(config_error, source + ": key 'token_mixers.variant' is missing or not a string");
    c.mixers = mixer_layout(layout->get<std::string>(),
                            parse_mixer_name(variant->get<std::string>(), source, "token_mixers.variant"), c.num_layers,
                            source);
  } else {
    PITH_THROW(config_error, source + ": key 'token_mixers' must be a list of names or {\"layout\", \"variant\"}");
  }
}

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
  parse_layer_keys(json, c);
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
  PITH_TRY {
    json = nlohmann::json::parse(text.str());
  } PITH_CATCH(const nlohmann::json::exception&, e) {
    PITH_THROW(config_error, path.string() + ": not valid JSON: " + e.what());
  }
  return config_from_json(json, path.string());
}

}  // namespace pith

#if defined(PITH_CONFIG_RESTRICT_PUSHED)
#pragma GCC diagnostic pop
#undef PITH_CONFIG_RESTRICT_PUSHED
#endif
