// SPDX-License-Identifier: MIT
// model_config: the immutable hyper-parameters of a Llama-family model, parsed and validated.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "pith/core/error.hpp"
#include "pith/io/detail.hpp"
#include "pith/io/mmap.hpp"
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

/// Where a configuration was read from; error messages name keys the way that format spells them.
enum class config_format : std::uint8_t { json, gguf, llama2c };

/// The decoder family a configuration describes (notes/model_families.md). Each family is a set of
/// switches of model_config (biases, q/k norms, norm placement, activation, embedding scale, windows);
/// the enum names the family in messages and chooses the tensor names.
enum class model_family : std::uint8_t { llama, mistral, qwen2, qwen3, gemma3 };

inline const char* family_name(model_family family) noexcept {
  switch (family) {
    case model_family::llama: return "llama";
    case model_family::mistral: return "mistral";
    case model_family::qwen2: return "qwen2";
    case model_family::qwen3: return "qwen3";
    case model_family::gemma3: return "gemma3";
  }
  return "?";
}

/// How RoPE's inverse frequencies are rescaled for long contexts (transformers' modeling_rope_utils).
enum class rope_scaling_kind : std::uint8_t { none, linear, llama3 };

struct rope_scaling {
  rope_scaling_kind kind = rope_scaling_kind::none;
  float factor = 1.0f;                        // linear: inv / factor; llama3: s
  float low_freq_factor = 1.0f;               // llama3: lf
  float high_freq_factor = 4.0f;              // llama3: hf
  float original_max_position_embeddings = 8192.0f;  // llama3: L
};

/// The MLP's gated activation: SwiGLU (silu) or GeGLU with the tanh GELU (Gemma).
enum class ffn_activation : std::uint8_t { silu, gelu_tanh };

/// Inverse RoPE frequencies [head_dim / 2] of base `theta`, rescaled by `scaling`, in double:
/// linear divides every frequency by the factor; llama3 keeps the high frequencies (wavelength below
/// L / hf), divides the low ones (wavelength above L / lf) by s and blends in between with
/// t = (L / wavelength - lf) / (hf - lf): (1 - t) inv / s + t inv (notes/model_families.md §1.3).
inline std::vector<float> rope_frequencies(float theta, std::size_t head_dim, const rope_scaling& scaling) {
  constexpr double two_pi = 6.283185307179586476925286766559;
  std::vector<float> out(head_dim / 2);
  for (std::size_t i = 0; i < head_dim / 2; ++i) {
    // The base frequency in float as kernels::rope_inverse_frequencies forms it (unscaled models
    // keep their frequencies bit for bit).
    const float base = 1.0f / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(head_dim));
    double inv = base;
    if (scaling.kind == rope_scaling_kind::linear) {
      inv = base / static_cast<double>(scaling.factor);
    } else if (scaling.kind == rope_scaling_kind::llama3) {
      const double s = scaling.factor, lf = scaling.low_freq_factor, hf = scaling.high_freq_factor;
      const double L = scaling.original_max_position_embeddings;
      const double wavelength = two_pi / inv;
      if (wavelength > L / lf) {
        inv = inv / s;
      } else if (wavelength >= L / hf) {
        const double t = (L / wavelength - lf) / (hf - lf);
        inv = (1.0 - t) * inv / s + t * inv;
      }
    }
    out[i] = static_cast<float>(inv);
  }
  return out;
}

/// The name of a configuration key in `format`, from its Hugging Face name (`num_hidden_layers`
/// is `llama.block_count` in GGUF and the header field `n_layers` in llama2.c).
inline std::string config_key(config_format format, std::string_view key) {
  static constexpr std::string_view names[][3] = {
      {"hidden_size", "llama.embedding_length", "dim"},
      {"intermediate_size", "llama.feed_forward_length", "hidden_dim"},
      {"num_hidden_layers", "llama.block_count", "n_layers"},
      {"num_attention_heads", "llama.attention.head_count", "n_heads"},
      {"num_key_value_heads", "llama.attention.head_count_kv", "n_kv_heads"},
      {"head_dim", "llama.attention.key_length", "dim / n_heads"},
      {"vocab_size", "llama.vocab_size", "vocab_size"},
      {"rms_norm_eps", "llama.attention.layer_norm_rms_epsilon", "rms_norm_eps"},
      {"rope_theta", "llama.rope.freq_base", "rope_theta"},
      {"max_position_embeddings", "llama.context_length", "seq_len"},
      {"attn_res_block_size", "llama.attn_res_block_size", "attn_res_block_size"},
      {"attn_res_mode", "llama.attn_res_mode", "attn_res_mode"},
      {"bos_token_id", "tokenizer.ggml.bos_token_id", "bos_token_id"},
      {"eos_token_id", "tokenizer.ggml.eos_token_id", "eos_token_id"},
  };
  if (format != config_format::json)
    for (const auto& row : names)
      if (row[0] == key) return std::string(row[format == config_format::gguf ? 1 : 2]);
  return std::string(key);
}

/// The largest values a configuration may hold. They keep every buffer-size product of two
/// dimensions below 2^48 and leave ample room above released models (widest hidden size 16384 =
/// 2^14, largest vocabulary 262144 = 2^18, longest context about 10M < 2^24, deepest 126 layers).
struct config_limits {
  static constexpr std::size_t dimension = std::size_t{1} << 24;  // widths, head counts, vocabulary
  static constexpr std::size_t layers = 65536;
  static constexpr std::size_t positions = std::size_t{1} << 24;  // max_position_embeddings
  // rms_norm_eps: released models use 1e-6 to 1e-5; above 1 the norm no longer normalises.
  static constexpr float min_rms_norm_eps = 1e-30f, max_rms_norm_eps = 1.0f;
  // rope_theta: released models use 1e4 to 1e7; below 1 the frequencies grow along the head.
  static constexpr float min_rope_theta = 1.0f, max_rope_theta = 1e12f;
};

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
  std::int32_t eos_token_id = 2;            // the first of eos_token_ids when the file lists several
  std::vector<std::int32_t> eos_token_ids;  // every end-of-sequence id the file gives (empty: none given)
  residual_mode residual = residual_mode::standard;
  std::size_t attn_res_block_size = 0;  // decoder layers per block (block mode)
  bool attn_res_two_phase = true;       // batched block scoring + online merge (notes §4.2) in block mode
  std::vector<mixer_kind> mixers;        // one per layer; empty means all standard
  bool approximate_outer = false;        // second-order term: outer product instead of element-wise square
  bool approximate_per_term = false;     // three separately normalised terms instead of joint normalisation
  std::size_t mixer_mlp_intermediate_size = 0;
  // Families (notes/model_families.md). The defaults are Llama 2's.
  model_family family = model_family::llama;
  rope_scaling rope_scale;               // applies to the full-attention layers
  float rope_theta_windowed = 0.0f;      // RoPE base of the sliding-window layers (0: rope_theta, scaled alike)
  std::vector<std::size_t> sliding_windows;  // per layer: 0 full attention, W: keys i - j < W (empty: all full)
  bool attention_bias = false;           // q, k, v projections add a bias (Qwen2)
  bool qk_norm = false;                  // per-head RMSNorm of q and k before RoPE (Qwen3, Gemma 3)
  bool sandwich_norms = false;           // RMSNorm on the attention and MLP outputs too (Gemma 3)
  bool norm_plus_one = false;            // the checkpoint's norm weights w act as 1 + w (Gemma safetensors)
  ffn_activation activation = ffn_activation::silu;
  float embedding_scale = 1.0f;          // token embeddings are multiplied by it (Gemma: sqrt(hidden))
  float attention_scale = 0.0f;          // attention scores' scale (0: 1 / sqrt(head_dim))
  std::string gguf_architecture = "llama";  // the GGUF key prefix error messages use
  bool multimodal = false;  // Gemma3ForConditionalGeneration: the text model of a multimodal checkpoint
  std::string source;                          // file the configuration came from, for error messages
  config_format format = config_format::json;  // how error messages spell the keys

  mixer_kind mixer(std::size_t layer) const noexcept { return mixers.empty() ? mixer_kind::standard : mixers[layer]; }
  /// Whether some layer's token mixer is `kind`.
  bool uses_mixer(mixer_kind kind) const noexcept {
    if (mixers.empty()) return kind == mixer_kind::standard;
    for (const mixer_kind m : mixers)
      if (m == kind) return true;
    return false;
  }
  /// Number of block snapshots a token can hold in block mode (the embedding included).
  std::size_t attn_res_blocks() const noexcept {
    return attn_res_block_size == 0 ? 0 : (num_layers + attn_res_block_size - 1) / attn_res_block_size;
  }

  /// Sliding window of `layer` (0: full attention).
  std::size_t sliding_window(std::size_t layer) const noexcept {
    return sliding_windows.empty() ? 0 : sliding_windows[layer];
  }
  bool has_sliding_windows() const noexcept {
    for (const std::size_t w : sliding_windows)
      if (w != 0) return true;
    return false;
  }
  /// Whether layer `layer` rotates with the sliding-window layers' own RoPE table.
  bool uses_windowed_rope(std::size_t layer) const noexcept {
    return rope_theta_windowed > 0.0f && sliding_window(layer) != 0;
  }
  float attention_scale_or_default() const noexcept {
    return attention_scale > 0.0f ? attention_scale : 1.0f / std::sqrt(static_cast<float>(head_dim));
  }

  std::size_t q_size() const noexcept { return num_heads * head_dim; }
  std::size_t kv_size() const noexcept { return num_kv_heads * head_dim; }

  /// `hugging_face_key` as the format the configuration came from spells it.
  std::string key(std::string_view hugging_face_key) const {
    std::string name = config_key(format, hugging_face_key);
    if (format == config_format::gguf && gguf_architecture != "llama" && name.starts_with("llama."))
      name = gguf_architecture + name.substr(5);
    return name;
  }

  /// Ranges (config_limits) and cross-field invariants; throws config_error naming the key as the
  /// configuration's format spells it, with the accepted range.
  void validate() const {
    auto fail = [&](std::string_view name, const std::string& why) {
      PITH_THROW(config_error, source + (format == config_format::llama2c ? ": header field '" : ": key '") + key(name) +
                                   "' " + why);
    };
    auto bounded = [&](std::string_view name, std::size_t value, std::size_t low, std::size_t high) {
      if (value < low || value > high)
        fail(name, "must be in [" + std::to_string(low) + ", " + std::to_string(high) + "], got " + std::to_string(value));
    };
    constexpr std::size_t dimension = config_limits::dimension;
    bounded("hidden_size", hidden_size, 1, dimension);
    bounded("intermediate_size", intermediate_size, 1, dimension);
    bounded("num_hidden_layers", num_layers, 1, config_limits::layers);
    bounded("num_attention_heads", num_heads, 1, dimension);
    bounded("num_key_value_heads", num_kv_heads, 1, num_heads);
    if (num_heads % num_kv_heads != 0)
      fail("num_key_value_heads", "(" + std::to_string(num_kv_heads) + ") must divide " + key("num_attention_heads") +
                                      " (" + std::to_string(num_heads) + ")");
    if (head_dim == 0 || head_dim % 2 != 0 || head_dim > dimension)
      fail("head_dim", "must be even and in [2, " + std::to_string(dimension) + "], got " + std::to_string(head_dim));
    bounded("vocab_size", vocab_size, 1, dimension);
    auto in_range = [&](std::string_view name, float value, float low, float high) {
      if (!(value >= low && value <= high))  // also true for NaN
        fail(name, "must be a finite number in [" + shortest(low) + ", " + shortest(high) + "], got " + shortest(value));
    };
    in_range("rms_norm_eps", rms_norm_eps, config_limits::min_rms_norm_eps, config_limits::max_rms_norm_eps);
    in_range("rope_theta", rope_theta, config_limits::min_rope_theta, config_limits::max_rope_theta);
    bounded("max_position_embeddings", max_position_embeddings, 1, config_limits::positions);
    // A block of the model's depth or more is one block holding every layer (notes/attention_residuals.md
    // §3); residual_stream sizes its sites by min(block size, layers), so the bound only keeps the value sane.
    if (residual == residual_mode::block)
      bounded("attn_res_block_size", attn_res_block_size, 1, config_limits::layers);
    if (!mixers.empty() && mixers.size() != num_layers)
      fail("token_mixers", "lists " + std::to_string(mixers.size()) + " layers, the model has " + std::to_string(num_layers));
    for (std::size_t i = 0; i < mixers.size(); ++i)
      if (mixers[i] == mixer_kind::mlp && mixer_mlp_intermediate_size == 0)
        fail("mixer_mlp_intermediate_size", "must be positive for the mlp mixer of layer " + std::to_string(i));
    bounded("mixer_mlp_intermediate_size", mixer_mlp_intermediate_size, 0, dimension);
    if (!sliding_windows.empty() && sliding_windows.size() != num_layers)
      fail("sliding_window", "is given for " + std::to_string(sliding_windows.size()) + " layers, the model has " +
                                 std::to_string(num_layers));
    for (const std::size_t w : sliding_windows) bounded("sliding_window", w, 0, config_limits::positions);
    if (rope_scale.kind != rope_scaling_kind::none) {
      in_range("rope_scaling", rope_scale.factor, 1e-6f, 1e6f);
      if (rope_scale.kind == rope_scaling_kind::llama3) {
        in_range("rope_scaling", rope_scale.low_freq_factor, 1e-6f, 1e6f);
        in_range("rope_scaling", rope_scale.original_max_position_embeddings, 1.0f, 1e9f);
        if (!(rope_scale.high_freq_factor > rope_scale.low_freq_factor) || !(rope_scale.high_freq_factor < 1e6f))
          fail("rope_scaling", "high_freq_factor must exceed low_freq_factor");
      }
    }
    if (rope_theta_windowed != 0.0f)
      in_range("rope_local_base_freq", rope_theta_windowed, config_limits::min_rope_theta, config_limits::max_rope_theta);
    if (attention_scale != 0.0f) in_range("query_pre_attn_scalar", attention_scale, 1e-12f, 1e6f);
    in_range("embedding_scale", embedding_scale, 1e-12f, 1e12f);
  }

 private:
  static std::string shortest(float value) {
    char text[32];
    std::snprintf(text, sizeof text, "%g", static_cast<double>(value));
    return text;
  }
};

namespace detail {

[[noreturn]] inline void json_key_error(const std::string& source, std::string_view key, const std::string& why) {
  PITH_THROW(config_error, source + ": key '" + std::string(key) + "' " + why);
}

/// The integer `value` of `key`, in [low, high]; no other type converts (64.0, "64" and true are
/// errors naming the key and the range).
inline std::int64_t json_integer(const nlohmann::json& value, std::string_view key, std::int64_t low,
                                 std::int64_t high, const std::string& source) {
  const auto fail = [&](const std::string& got) {
    json_key_error(source, key, "must be an integer in [" + std::to_string(low) + ", " + std::to_string(high) +
                                    "], got " + got);
  };
  if (!value.is_number_integer()) fail(json_excerpt(value));
  if (value.is_number_unsigned()) {
    const auto unsigned_value = value.get<std::uint64_t>();
    if (unsigned_value > static_cast<std::uint64_t>(high) ||
        (low > 0 && unsigned_value < static_cast<std::uint64_t>(low)))
      fail(std::to_string(unsigned_value));
    return static_cast<std::int64_t>(unsigned_value);
  }
  const auto signed_value = value.get<std::int64_t>();
  if (signed_value < low || signed_value > high) fail(std::to_string(signed_value));
  return signed_value;
}

/// The size under `key`, in [low, high]; `fallback` when the key is absent or null (config_error
/// "is missing" without one).
inline std::size_t json_size(const nlohmann::json& json, const char* key, std::size_t low, std::size_t high,
                             std::optional<std::size_t> fallback, const std::string& source) {
  const auto it = json.find(key);
  if (it == json.end() || it->is_null()) {
    if (!fallback) json_key_error(source, key, "is missing");
    return *fallback;
  }
  return static_cast<std::size_t>(
      json_integer(*it, key, static_cast<std::int64_t>(low), static_cast<std::int64_t>(high), source));
}

/// The number under `key` as float, `fallback` when absent or null. Its range is validate()'s; a
/// value beyond float's range becomes ±inf, which validate() refuses.
inline float json_float(const nlohmann::json& json, const char* key, float fallback, const std::string& source) {
  const auto it = json.find(key);
  if (it == json.end() || it->is_null()) return fallback;
  if (!it->is_number()) json_key_error(source, key, "must be a number, got " + json_excerpt(*it));
  return static_cast<float>(it->get<double>());
}

inline bool json_bool(const nlohmann::json& json, const char* key, bool fallback, const std::string& source) {
  const auto it = json.find(key);
  if (it == json.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) json_key_error(source, key, "must be true or false, got " + json_excerpt(*it));
  return it->get<bool>();
}

/// A token id under `key`: an integer in [0, vocab_size).
inline std::int32_t json_token_id(const nlohmann::json& value, std::string_view key, std::size_t vocab_size,
                                  const std::string& source) {
  return static_cast<std::int32_t>(json_integer(value, key, 0, static_cast<std::int64_t>(vocab_size) - 1, source));
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
  const auto mode = json.find("attn_res_mode");
  const bool has_block_size = json.contains("attn_res_block_size") && !json["attn_res_block_size"].is_null();
  if (mode != json.end() && !mode->is_null()) {
    if (!mode->is_string()) PITH_THROW(config_error, source + ": key 'attn_res_mode' must be a string");
    const auto name = mode->get<std::string>();
    if (name == "standard") c.residual = residual_mode::standard;
    else if (name == "block") c.residual = residual_mode::block;
    else if (name == "full") c.residual = residual_mode::full;
    else PITH_THROW(config_error, source + ": key 'attn_res_mode': unknown mode " + detail::json_excerpt(*mode) +
                                      " (standard, block, full)");
  } else if (has_block_size) {
    c.residual = residual_mode::block;
  }
  c.attn_res_block_size = detail::json_size(json, "attn_res_block_size", 0, config_limits::layers, 0, source);
  c.attn_res_two_phase = detail::json_bool(json, "attn_res_two_phase", true, source);
  c.mixer_mlp_intermediate_size = detail::json_size(json, "mixer_mlp_intermediate_size", 0, config_limits::dimension,
                                                    4 * c.hidden_size / 3, source);
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

namespace detail {

/// The family of a Hugging Face config: `architectures[0]` (or `model_type` when there is no
/// architectures list; neither: Llama). Anything else is refused by name.
inline model_family json_family(const nlohmann::json& json, const std::string& source) {
  struct known {
    const char* architecture;
    const char* model_type;
    model_family family;
  };
  static constexpr known families[] = {
      {"LlamaForCausalLM", "llama", model_family::llama},      {"MistralForCausalLM", "mistral", model_family::mistral},
      {"Qwen2ForCausalLM", "qwen2", model_family::qwen2},      {"Qwen3ForCausalLM", "qwen3", model_family::qwen3},
      {"Gemma3ForCausalLM", "gemma3_text", model_family::gemma3},
  };
  const char* supported = "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Gemma3ForCausalLM, "
                          "Gemma3ForConditionalGeneration (its text model)";
  if (const auto list = json.find("architectures"); list != json.end() && !list->is_null()) {
    if (!list->is_array() || list->empty() || !(*list)[0].is_string())
      json_key_error(source, "architectures", "must be a list of names, got " + json_excerpt(*list));
    const auto name = (*list)[0].get<std::string>();
    for (const auto& f : families)
      if (name == f.architecture) return f.family;
    json_key_error(source, "architectures", "names '" + name + "', which pith does not implement (supported: " +
                                                std::string(supported) + ")");
  }
  if (const auto type = json.find("model_type"); type != json.end() && type->is_string()) {
    const auto name = type->get<std::string>();
    for (const auto& f : families)
      if (name == f.model_type) return f.family;
    json_key_error(source, "model_type", "is '" + name + "', which pith does not implement (supported: llama, mistral, "
                                         "qwen2, qwen3, gemma3_text)");
  }
  return model_family::llama;
}

/// A rope_scaling / rope_parameters object: rope_type (or type) default, linear or llama3 with its
/// parameters; any other type is refused by name.
inline rope_scaling json_rope_scaling(const nlohmann::json& value, const std::string& key, const std::string& source) {
  rope_scaling r;
  if (value.is_null()) return r;
  if (!value.is_object()) json_key_error(source, key, "must be an object or null, got " + json_excerpt(value));
  auto type_it = value.find("rope_type");
  if (type_it == value.end()) type_it = value.find("type");
  const std::string type = type_it == value.end() ? "default" : type_it->is_string() ? type_it->get<std::string>() : "";
  const std::string k = key;
  auto number = [&](const char* name, std::optional<float> fallback) {
    const auto it = value.find(name);
    if (it == value.end() || it->is_null()) {
      if (!fallback) json_key_error(source, k + "." + name, "is missing (rope type '" + type + "')");
      return *fallback;
    }
    if (!it->is_number()) json_key_error(source, k + "." + name, "must be a number, got " + json_excerpt(*it));
    return static_cast<float>(it->get<double>());
  };
  if (type == "default") return r;
  if (type == "linear") {
    r.kind = rope_scaling_kind::linear;
    r.factor = number("factor", std::nullopt);
  } else if (type == "llama3") {
    r.kind = rope_scaling_kind::llama3;
    r.factor = number("factor", std::nullopt);
    r.low_freq_factor = number("low_freq_factor", std::nullopt);
    r.high_freq_factor = number("high_freq_factor", std::nullopt);
    r.original_max_position_embeddings = number("original_max_position_embeddings", std::nullopt);
  } else {
    json_key_error(source, k, "has rope type " + (type_it == value.end() ? std::string("?") : json_excerpt(*type_it)) +
                                  ", which pith does not implement (default, linear, llama3)");
  }
  return r;
}

/// The family switches of a Hugging Face config: rope scaling, sliding windows, biases, q/k norms,
/// Gemma 3's norms, activation, embedding and attention scales. Keys a family does not implement
/// (YaRN, soft-capping, MoE, partial rotary, biases where the family has none) are refused by name.
inline void parse_family_keys(const nlohmann::json& json, model_config& c) {
  const std::string& source = c.source;
  const model_family f = c.family;
  const bool gemma = f == model_family::gemma3;
  for (const char* key : {"num_experts", "num_local_experts", "attn_logit_softcapping", "final_logit_softcapping",
                          "interleaved_sliding_window"})
    if (const auto it = json.find(key); it != json.end() && !it->is_null())
      json_key_error(source, key, "is set to " + json_excerpt(*it) + ", which pith does not implement");
  if (const auto it = json.find("partial_rotary_factor"); it != json.end() && !it->is_null() &&
                                                          !(it->is_number() && it->get<double>() == 1.0))
    json_key_error(source, "partial_rotary_factor", "must be 1 (RoPE on the whole head), got " + json_excerpt(*it));
  if (json_bool(json, "mlp_bias", false, source)) json_key_error(source, "mlp_bias", "is true; pith has no MLP biases");
  const bool attention_bias = json_bool(json, "attention_bias", false, source);
  if (attention_bias && f != model_family::qwen2)
    json_key_error(source, "attention_bias", "is true; pith implements attention biases for Qwen2 only");
  c.attention_bias = f == model_family::qwen2;
  c.qk_norm = f == model_family::qwen3 || gemma;

  // Activation: silu everywhere but Gemma (tanh GELU; Gemma spells the key hidden_activation).
  const char* act_key = gemma && json.contains("hidden_activation") ? "hidden_activation" : "hidden_act";
  const std::string expected_act = gemma ? "gelu_pytorch_tanh" : "silu";
  if (const auto it = json.find(act_key); it != json.end() && !it->is_null() && *it != expected_act)
    json_key_error(source, act_key, "must be \"" + expected_act + "\", got " + json_excerpt(*it));
  if (gemma) {
    c.activation = ffn_activation::gelu_tanh;
    c.sandwich_norms = true;
    c.norm_plus_one = true;
    c.embedding_scale = static_cast<float>(std::sqrt(static_cast<double>(c.hidden_size)));
    const float scalar = json_float(json, "query_pre_attn_scalar", 256.0f, source);
    if (!(scalar > 0.0f)) json_key_error(source, "query_pre_attn_scalar", "must be positive");
    c.attention_scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(scalar)));
  }

  // RoPE: rope_theta + rope_scaling, or the newer rope_parameters (for Gemma 3 keyed by layer type).
  if (const auto params = json.find("rope_parameters"); params != json.end() && !params->is_null()) {
    if (!params->is_object()) json_key_error(source, "rope_parameters", "must be an object");
    auto theta_of = [&](const nlohmann::json& p, const std::string& key, float fallback) {
      return json_float(p, "rope_theta", fallback, source + " (" + key + ")");
    };
    if (params->contains("full_attention") || params->contains("sliding_attention")) {
      if (const auto full = params->find("full_attention"); full != params->end()) {
        c.rope_scale = json_rope_scaling(*full, "rope_parameters.full_attention", source);
        c.rope_theta = theta_of(*full, "rope_parameters.full_attention", c.rope_theta);
      }
      if (const auto local = params->find("sliding_attention"); local != params->end()) {
        if (json_rope_scaling(*local, "rope_parameters.sliding_attention", source).kind != rope_scaling_kind::none)
          json_key_error(source, "rope_parameters.sliding_attention", "scales RoPE; pith scales full-attention layers only");
        c.rope_theta_windowed = theta_of(*local, "rope_parameters.sliding_attention", 10000.0f);
      }
    } else {
      c.rope_scale = json_rope_scaling(*params, "rope_parameters", source);
      c.rope_theta = theta_of(*params, "rope_parameters", c.rope_theta);
    }
  } else if (const auto scaling = json.find("rope_scaling"); scaling != json.end()) {
    c.rope_scale = json_rope_scaling(*scaling, "rope_scaling", source);
  }
  if (c.rope_scale.kind == rope_scaling_kind::linear && !gemma)
    json_key_error(source, "rope_scaling", "is linear; pith implements linear scaling for Gemma 3 only");
  if (gemma && c.rope_theta_windowed == 0.0f) c.rope_theta_windowed = json_float(json, "rope_local_base_freq", 10000.0f, source);

  // Sliding windows: Mistral one window for every layer; Qwen layers from max_window_layers on when
  // use_sliding_window; Gemma 3 by layer_types or every sliding_window_pattern-th layer global.
  const std::size_t L = c.num_layers;
  const std::size_t window = json_size(json, "sliding_window", 0, config_limits::positions, 0, source);
  std::vector<bool> windowed(L, false);
  bool any = false;
  if (const auto types = json.find("layer_types"); types != json.end() && !types->is_null()) {
    if (!types->is_array() || types->size() != L)
      json_key_error(source, "layer_types", "must list one type per layer (" + std::to_string(L) + ")");
    for (std::size_t i = 0; i < L; ++i) {
      const auto& t = (*types)[i];
      if (t == "sliding_attention") windowed[i] = any = true;
      else if (t != "full_attention")
        json_key_error(source, "layer_types[" + std::to_string(i) + "]",
                       "must be \"full_attention\" or \"sliding_attention\", got " + json_excerpt(t));
    }
  } else if (gemma) {
    const std::size_t pattern = json_size(json, "sliding_window_pattern", 1, config_limits::layers, 6, source);
    for (std::size_t i = 0; i < L; ++i) windowed[i] = (i + 1) % pattern != 0;
  } else if (f == model_family::mistral) {
    for (std::size_t i = 0; i < L; ++i) windowed[i] = window != 0;
  } else if (f == model_family::qwen2 || f == model_family::qwen3) {
    // As transformers: without a window (null) use_sliding_window leaves every layer full.
    if (json_bool(json, "use_sliding_window", false, source) && window != 0) {
      const std::size_t first = json_size(json, "max_window_layers", 0, config_limits::layers, L, source);
      for (std::size_t i = first; i < L; ++i) windowed[i] = true;
    }
  }
  for (const bool w : windowed) any = any || w;
  if (any) {
    if (window == 0) json_key_error(source, "sliding_window", "is missing; the configuration has sliding-window layers");
    c.sliding_windows.assign(L, 0);
    for (std::size_t i = 0; i < L; ++i)
      if (windowed[i]) c.sliding_windows[i] = window;
  }
  if (!gemma) c.rope_theta_windowed = 0.0f;
}

}  // namespace detail

/// Parses a Hugging Face `config.json` of a supported family (model_family: Llama, Mistral, Qwen2,
/// Qwen3, Gemma 3 text; dispatched on architectures[0]). Missing optional keys take the Hugging
/// Face defaults: num_key_value_heads = num_attention_heads, head_dim = hidden_size /
/// num_attention_heads, rms_norm_eps 1e-6, rope_theta 10000, tie_word_embeddings false (Gemma: true),
/// max_position_embeddings 2048. Every integer is read as an integer in its range (config_limits)
/// before it sizes anything; bos_token_id and eos_token_id must be ids of the vocabulary,
/// eos_token_id may be a list of them.
inline model_config config_from_json(const nlohmann::json& json, const std::string& source) {
  if (!json.is_object()) PITH_THROW(config_error, source + ": the configuration is not a JSON object");
  if (const auto list = json.find("architectures"); list != json.end() && list->is_array() && !list->empty() &&
                                                    (*list)[0] == "Gemma3ForConditionalGeneration") {
    // The text model of a multimodal Gemma 3 (4B, 12B, 27B): text_config, whose missing keys take
    // transformers' Gemma3TextConfig defaults; the token ids may sit at the top level.
    const auto text = json.find("text_config");
    if (text == json.end() || !text->is_object())
      detail::json_key_error(source, "text_config", "must be an object (Gemma3ForConditionalGeneration)");
    nlohmann::json merged = {{"vocab_size", 262208}, {"hidden_size", 2304}, {"intermediate_size", 9216},
                             {"num_hidden_layers", 26}, {"num_attention_heads", 8}, {"num_key_value_heads", 4},
                             {"head_dim", 256}, {"max_position_embeddings", 131072}, {"rms_norm_eps", 1e-6},
                             {"rope_theta", 1000000.0}, {"query_pre_attn_scalar", 256}, {"sliding_window", 4096},
                             {"rope_local_base_freq", 10000.0}};
    for (const char* key : {"bos_token_id", "eos_token_id", "tie_word_embeddings"})
      if (json.contains(key)) merged[key] = json[key];
    for (const auto& [key, value] : text->items()) merged[key] = value;
    merged["architectures"] = nlohmann::json::array({"Gemma3ForCausalLM"});
    model_config c = config_from_json(merged, source + " (text_config)");
    c.multimodal = true;
    return c;
  }
  model_config c;
  c.source = source;
  c.format = config_format::json;
  c.family = detail::json_family(json, source);
  using detail::json_size;
  constexpr std::size_t dimension = config_limits::dimension;
  c.hidden_size = json_size(json, "hidden_size", 1, dimension, std::nullopt, source);
  c.intermediate_size = json_size(json, "intermediate_size", 1, dimension, std::nullopt, source);
  c.num_layers = json_size(json, "num_hidden_layers", 1, config_limits::layers, std::nullopt, source);
  c.num_heads = json_size(json, "num_attention_heads", 1, dimension, std::nullopt, source);
  c.vocab_size = json_size(json, "vocab_size", 1, dimension, std::nullopt, source);
  c.num_kv_heads = json_size(json, "num_key_value_heads", 1, dimension, c.num_heads, source);
  c.head_dim = json_size(json, "head_dim", 0, dimension, c.hidden_size / c.num_heads, source);
  c.rms_norm_eps = detail::json_float(json, "rms_norm_eps", 1e-6f, source);
  c.rope_theta = detail::json_float(json, "rope_theta", 10000.0f, source);
  c.tie_word_embeddings = detail::json_bool(json, "tie_word_embeddings", c.family == model_family::gemma3, source);
  c.max_position_embeddings = json_size(json, "max_position_embeddings", 1, config_limits::positions, 2048, source);
  if (const auto bos = json.find("bos_token_id"); bos != json.end() && !bos->is_null())
    c.bos_token_id = detail::json_token_id(*bos, "bos_token_id", c.vocab_size, source);
  if (const auto eos = json.find("eos_token_id"); eos != json.end() && !eos->is_null()) {
    if (eos->is_array()) {
      if (eos->empty()) detail::json_key_error(source, "eos_token_id", "is an empty list");
      for (std::size_t i = 0; i < eos->size(); ++i)
        c.eos_token_ids.push_back(
            detail::json_token_id((*eos)[i], "eos_token_id[" + std::to_string(i) + "]", c.vocab_size, source));
    } else {
      c.eos_token_ids.push_back(detail::json_token_id(*eos, "eos_token_id", c.vocab_size, source));
    }
    c.eos_token_id = c.eos_token_ids.front();
  }
  c.rope = kernels::rope_layout::half;
  detail::parse_family_keys(json, c);
  parse_layer_keys(json, c);
  c.validate();
  return c;
}

/// Reads and parses a `config.json` file: io_error when it cannot be read or is not a regular
/// file (a directory, a FIFO), config_error when it is not JSON (or nests deeper than
/// detail::max_json_depth) or violates the rules of config_from_json.
inline model_config load_config_json(const std::filesystem::path& path) {
  const std::string text = read_regular_file(path);
  nlohmann::json json;
  const std::string reason = detail::try_parse_json(text, json);
  if (!reason.empty()) PITH_THROW(config_error, path.string() + ": not valid JSON: " + reason);
  return config_from_json(json, path.string());
}

}  // namespace pith

#if defined(PITH_CONFIG_RESTRICT_PUSHED)
#pragma GCC diagnostic pop
#undef PITH_CONFIG_RESTRICT_PUSHED
#endif
