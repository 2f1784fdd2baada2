// SPDX-License-Identifier: MIT
// The embedding example's loader: a Llama-family checkpoint with block attention residuals
// (safetensors + config.json, Hugging Face names) read into arrays the engine owns. This is the
// only part of the example that touches files and JSON; engine.hpp includes neither.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include <pith/io/safetensors.hpp>

#include "engine.hpp"

namespace embed {

namespace detail {

inline std::size_t positive(const nlohmann::json& j, const char* key, const std::string& file) {
  if (!j.contains(key) || !j[key].is_number_unsigned() || j[key].get<std::size_t>() == 0)
    throw pith::config_error(file + ": '" + key + "' must be a positive integer");
  return j[key].get<std::size_t>();
}

// The tensor `name`, which must have `shape`, converted to float into `out`.
inline void take(const pith::safetensors_file& file, const std::string& name, std::vector<std::int64_t> shape,
                 buffer& out) {
  const pith::file_tensor tensor = file.tensor(name);
  if (tensor.shape != shape) {
    std::string expected, actual;
    for (auto e : shape) expected += (expected.empty() ? "" : ", ") + std::to_string(e);
    for (auto e : tensor.shape) actual += (actual.empty() ? "" : ", ") + std::to_string(e);
    throw pith::shape_error(file.path() + ": tensor '" + name + "' has shape [" + actual + "], expected [" + expected + "]");
  }
  out.resize(static_cast<std::size_t>(tensor.element_count()));
  pith::to_float(tensor, std::span(out.data(), out.size()));
}

}  // namespace detail

/// Reads `folder`/config.json and `folder`/model.safetensors. Throws pith::config_error for a
/// configuration this engine does not run (it runs standard attention with block attention
/// residuals, two-phase), pith::format_error / shape_error / io_error for the files.
inline weights load(const std::filesystem::path& folder) {
  const std::string config_path = (folder / "config.json").string();
  std::ifstream in(config_path);
  if (!in) throw pith::io_error(config_path + ": cannot open the configuration");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw pith::config_error(config_path + ": " + e.what());
  }
  if (j.value("attn_res_mode", std::string("standard")) != "block" || !j.value("attn_res_two_phase", true) ||
      j.value("tie_word_embeddings", false) || j.contains("token_mixers"))
    throw pith::config_error(config_path + ": this engine runs untied Llama layers with two-phase block attention residuals");
  weights w;
  config& c = w.c;
  c.hidden = detail::positive(j, "hidden_size", config_path);
  c.intermediate = detail::positive(j, "intermediate_size", config_path);
  c.layers = detail::positive(j, "num_hidden_layers", config_path);
  c.heads = detail::positive(j, "num_attention_heads", config_path);
  c.kv_heads = detail::positive(j, "num_key_value_heads", config_path);
  c.head_dim = detail::positive(j, "head_dim", config_path);
  c.vocab = detail::positive(j, "vocab_size", config_path);
  c.block_size = detail::positive(j, "attn_res_block_size", config_path);
  c.eps = j.value("rms_norm_eps", 1e-5f);
  c.rope_theta = j.value("rope_theta", 10000.0f);
  if (c.heads % c.kv_heads != 0 || c.head_dim % 2 != 0)
    throw pith::config_error(config_path + ": heads must be a multiple of kv heads and head_dim even");

  const pith::safetensors_file file(folder / "model.safetensors");
  const auto h = static_cast<std::int64_t>(c.hidden), f = static_cast<std::int64_t>(c.intermediate);
  const auto q = static_cast<std::int64_t>(c.heads * c.head_dim), kv = static_cast<std::int64_t>(c.kv_heads * c.head_dim);
  const auto v = static_cast<std::int64_t>(c.vocab);
  // q_eff = RMSNorm gain ⊙ projection, folded once (notes/attention_residuals.md §1).
  const auto pseudo_query = [&](const std::string& prefix, buffer& out) {
    buffer projection;
    detail::take(file, prefix + "_norm.weight", {h}, out);
    detail::take(file, prefix + "_proj.weight", {1, h}, projection);
    for (std::size_t i = 0; i < out.size(); ++i) out[i] *= projection[i];
  };
  detail::take(file, "model.embed_tokens.weight", {v, h}, w.embedding);
  w.layers.resize(c.layers);
  for (std::size_t l = 0; l < c.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    layer_weights& lw = w.layers[l];
    detail::take(file, p + "input_layernorm.weight", {h}, lw.attn_norm);
    detail::take(file, p + "self_attn.q_proj.weight", {q, h}, lw.wq);
    detail::take(file, p + "self_attn.k_proj.weight", {kv, h}, lw.wk);
    detail::take(file, p + "self_attn.v_proj.weight", {kv, h}, lw.wv);
    detail::take(file, p + "self_attn.o_proj.weight", {h, q}, lw.wo);
    detail::take(file, p + "post_attention_layernorm.weight", {h}, lw.mlp_norm);
    detail::take(file, p + "mlp.gate_proj.weight", {f, h}, lw.gate);
    detail::take(file, p + "mlp.up_proj.weight", {f, h}, lw.up);
    detail::take(file, p + "mlp.down_proj.weight", {h, f}, lw.down);
    if (l > 0) pseudo_query(p + "self_attention_res", lw.attn_query);  // layer 0's site is never mixed
    pseudo_query(p + "mlp_res", lw.mlp_query);
  }
  pseudo_query("model.output_attn_res", w.output_query);
  detail::take(file, "model.norm.weight", {h}, w.final_norm);
  detail::take(file, "lm_head.weight", {v, h}, w.lm_head);
  return w;
}

}  // namespace embed
