// SPDX-License-Identifier: MIT
// model_weights: the parameters of a Llama-family model, and their loaders for Hugging Face
// safetensors directories, GGUF files and llama2.c checkpoints.
//
// Weight matrices keep the checkpoint's storage type (F32, F16, BF16) and are used in place: a
// matrix is a tensor_view into the mapped file, which the views keep alive. Loading a checkpoint
// therefore reads its header and maps it; pages come in as the first forward pass touches them. The
// small vectors (norm gains, attention-residual pseudo-queries) and the fixed query/key streams are
// converted to float32 at load. load_options::convert_to converts every matrix at load instead.
//
// GGUF's block-quantized matrices (Q4_0 ... Q6_K, IQ4_NL, IQ4_XS) are used in place like F16:
// their rows are runs of blocks in the mapping. A quantized 1-D tensor (a norm gain; llama-quantize
// never writes one) is dequantized to float32 like the other small vectors. The token embedding
// table stays in its type and one row is dequantized per lookup; tied to the output head it is the
// head's weight matrix too. load_options::quantize_to quantizes the matrices of any checkpoint at
// load (note §4's reference quantizers, llama-quantize's Q4_K_M / Q5_K_M mixtures of note §5).
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "pith/core/aligned_buffer.hpp"
#include "pith/core/error.hpp"
#include "pith/core/parallel.hpp"
#include "pith/core/quantize.hpp"
#include "pith/core/tensor.hpp"
#include "pith/io/gguf.hpp"
#include "pith/io/llama2c.hpp"
#include "pith/io/safetensors.hpp"
#include "pith/model/config.hpp"

namespace pith {

struct layer_weights {
  aligned_buffer<float> attn_norm;  // [hidden]
  tensor_view wq;                   // [heads * head_dim, hidden]
  tensor_view wk;                   // [kv_heads * head_dim, hidden]
  tensor_view wv;                   // [kv_heads * head_dim, hidden]
  tensor_view wo;                   // [hidden, heads * head_dim]
  aligned_buffer<float> mlp_norm;   // [hidden]: the norm before the MLP
  // Families (empty when the family has none): q/k/v biases (Qwen2), per-head q/k norms (Qwen3,
  // Gemma 3), the norms of the attention and MLP outputs (Gemma 3). Norm gains hold the factor the
  // formula multiplies by: Gemma's 1 + w is added at load.
  aligned_buffer<float> q_bias;          // [heads * head_dim]
  aligned_buffer<float> k_bias;          // [kv_heads * head_dim]
  aligned_buffer<float> v_bias;          // [kv_heads * head_dim]
  aligned_buffer<float> q_norm;          // [head_dim]
  aligned_buffer<float> k_norm;          // [head_dim]
  aligned_buffer<float> post_attn_norm;  // [hidden]
  aligned_buffer<float> post_mlp_norm;   // [hidden]
  tensor_view w_gate;               // [intermediate, hidden]
  tensor_view w_up;                 // [intermediate, hidden]
  tensor_view w_down;               // [hidden, intermediate]
  // Attention residuals (block and full modes): folded pseudo-queries q_eff = norm_gain ⊙ proj.
  aligned_buffer<float> attn_res_query;  // [hidden]
  aligned_buffer<float> mlp_res_query;   // [hidden]
  // The mlp token mixer (in place of attention).
  tensor_view mixer_gate;  // [mixer_intermediate, hidden]
  tensor_view mixer_up;    // [mixer_intermediate, hidden]
  tensor_view mixer_down;  // [hidden, mixer_intermediate]
  // rnd_emb_qk / fixed_seq_qk: the fixed stream's queries and keys, row p for position p.
  aligned_buffer<float> fixed_q;  // [fixed_length, heads * head_dim]
  aligned_buffer<float> fixed_k;  // [fixed_length, kv_heads * head_dim]
  std::size_t fixed_length = 0;
};

/// Read-only after loading: any number of sessions on any number of threads may share one.
struct model_weights {
  model_config config;
  tensor_view token_embedding;  // [vocab, hidden]; rows are converted to float (dequantized) on lookup
  std::vector<layer_weights> layers;  // [num_layers]
  aligned_buffer<float> final_norm;   // [hidden]
  tensor_view lm_head_storage;        // [vocab, hidden]; empty when tied to token_embedding
  aligned_buffer<float> output_res_query;  // [hidden]; the final attention-residual site (block, full)
  // Llama 3.1+ GGUF files: llama.cpp's `rope_freqs.weight`, the divisor of each RoPE frequency of the
  // full-attention layers ([head_dim / 2]; empty: the configuration's rope_scaling alone).
  aligned_buffer<float> rope_frequency_divisors;

  const tensor_view& lm_head() const noexcept { return lm_head_storage.empty() ? token_embedding : lm_head_storage; }

  /// Bytes of parameters one decoded token reads (every matrix once, in its storage type; the
  /// embedding row is negligible).
  std::size_t bytes_read_per_token() const noexcept {
    std::size_t bytes = (final_norm.size() + output_res_query.size()) * sizeof(float) + lm_head().bytes();
    for (const auto& l : layers) {
      bytes += (l.attn_norm.size() + l.mlp_norm.size() + l.attn_res_query.size() + l.mlp_res_query.size() +
                l.q_bias.size() + l.k_bias.size() + l.v_bias.size() + l.q_norm.size() + l.k_norm.size() +
                l.post_attn_norm.size() + l.post_mlp_norm.size()) * sizeof(float);
      for (const tensor_view* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down, &l.mixer_gate, &l.mixer_up,
                                   &l.mixer_down})
        bytes += m->bytes();
    }
    return bytes;
  }
  /// Bytes of every parameter as stored (the embedding table counted once when tied).
  std::size_t parameter_bytes() const noexcept {
    std::size_t bytes = bytes_read_per_token() + (lm_head_storage.empty() ? 0 : token_embedding.bytes());
    for (const auto& l : layers) bytes += (l.fixed_q.size() + l.fixed_k.size()) * sizeof(float);
    return bytes;
  }
};

/// What a weight matrix is for: load-time quantization mixtures choose its type by role (note §5).
enum class matrix_role : std::uint8_t {
  token_embedding,
  output,  // the output head (lm_head.weight, output.weight)
  attn_q,
  attn_k,
  attn_v,
  attn_output,
  ffn_gate,
  ffn_up,
  ffn_down,
  mixer,  // the mlp token mixer's matrices
};

/// Quantization at load: every matrix to one type (`mixture` false, like `llama-quantize --pure`),
/// or llama-quantize's Q4_K_M / Q5_K_M mixture (`mixture` true with type Q4_K / Q5_K; note §5).
/// Implicit from a dtype: `options.quantize_to = dtype::q8_0`.
struct quantization {
  dtype type = dtype::q8_0;
  bool mixture = false;

  quantization() = default;
  quantization(dtype t, bool mix = false) : type(t), mixture(mix) {}  // implicit on purpose

  /// "Q8_0", "Q4_K_M", ...
  std::string name() const { return std::string(dtype_name(type)) + (mixture ? "_M" : ""); }

  /// note §5: use_more_bits(i, n) selects about half the layers (the first and last eighth, and
  /// every third layer between) for more bits in attn_v and ffn_down.
  static bool use_more_bits(std::size_t layer, std::size_t layers) noexcept {
    return layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;
  }

  /// The type of a matrix with rows of `cols` elements: the mixture's choice for its role (layer
  /// `layer` of `layers`; `tied`: the token embedding is also the output head), then note §5's
  /// fallback when `cols` is not a whole number of blocks: Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0,
  /// Q2_K / Q3_K / IQ4_XS → IQ4_NL, and F16 when `cols` is not a multiple of 32 either.
  dtype type_for(matrix_role role, std::size_t layer, std::size_t layers, std::size_t cols, bool tied) const noexcept {
    dtype t = type;
    if (mixture) {
      if (role == matrix_role::output || (role == matrix_role::token_embedding && tied))
        t = dtype::q6_k;
      else if ((role == matrix_role::attn_v || role == matrix_role::ffn_down) && use_more_bits(layer, layers))
        t = dtype::q6_k;
    }
    if (cols % dtype_block_elements(t) != 0) {
      switch (t) {
        case dtype::q4_k: t = dtype::q5_0; break;
        case dtype::q5_k: t = dtype::q5_1; break;
        case dtype::q6_k: t = dtype::q8_0; break;
        case dtype::q2_k:
        case dtype::q3_k:
        case dtype::iq4_xs: t = dtype::iq4_nl; break;
        default: break;
      }
      if (cols % dtype_block_elements(t) != 0) t = dtype::f16;
    }
    return t;
  }
};

/// The quantization named `name` (case-insensitive): a type with a weight quantizer ("q8_0",
/// "Q4_K", "iq4_xs") or a mixture ("q4_k_m", "q5_k_m"); nullopt for anything else.
inline std::optional<quantization> quantization_from_name(std::string_view name) {
  if (name.size() > 2 && (name.ends_with("_m") || name.ends_with("_M"))) {
    const auto base = dtype_from_name(name.substr(0, name.size() - 2));
    if (base == dtype::q4_k || base == dtype::q5_k) return quantization(*base, true);
    return std::nullopt;
  }
  const auto t = dtype_from_name(name);
  if (t && quant::dtype_has_quantizer(*t)) return quantization(*t);
  return std::nullopt;
}

/// "q4_0, q4_1, ..., q4_k_m, q5_k_m": the names quantization_from_name accepts, for messages.
inline std::string quantization_names() {
  std::string list;
  for (const dtype t : all_dtypes)
    if (quant::dtype_has_quantizer(t)) {
      std::string n(dtype_name(t));
      for (char& ch : n) ch = static_cast<char>(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
      list += (list.empty() ? "" : ", ") + n;
    }
  return list + ", q4_k_m, q5_k_m";
}

/// How a loader treats the checkpoint's weight matrices.
struct load_options {
  /// Convert every matrix to this type at load (an owned copy, 2x the file for F16 to F32);
  /// unset: use each matrix in place, in the checkpoint's own type.
  std::optional<dtype> convert_to;
  /// Quantize the matrices at load: owned copies in the block type quantization::type_for chooses
  /// (a matrix already in that type stays in place). Deterministic: llama.cpp's reference
  /// quantizers (note §4) over the matrix as float32. Not together with convert_to (argument_error).
  /// Cost, per thread of the pool (measured on one x86-64 core): Q8_0 and Q4_0 above 150 M
  /// weights/s, the K-quants' searches 10-25 M/s (Q3_K 55), IQ4_NL / IQ4_XS about 3 M/s; while it
  /// runs, the source file's pages are resident besides the quantized copies.
  std::optional<quantization> quantize_to = std::nullopt;
};

/// Converts `source` to a packed matrix of type `to`, owned by the result. F32 to F16/BF16 rounds to
/// nearest even; to a block type each row is quantized by quant::quantize_row (note §4); every
/// other conversion is exact. Throws shape_error when the rows are not whole blocks of `to` and
/// argument_error for a type without a weight quantizer (Q8_1, Q8_K).
inline tensor_view convert_tensor(const tensor_view& source, dtype to) {
  const std::size_t rows = source.rows(), cols = source.cols();
  if (cols % dtype_block_elements(to) != 0)
    PITH_THROW(shape_error, "convert_tensor: rows of " + std::to_string(cols) + " elements are not whole " +
                                std::string(dtype_name(to)) + " blocks of " +
                                std::to_string(dtype_block_elements(to)));
  if (dtype_is_quantized(to) && !quant::dtype_has_quantizer(to))
    PITH_THROW(argument_error, "convert_tensor: no conversion to " + std::string(dtype_name(to)));
  const std::size_t row_bytes = dtype_row_bytes(to, cols);
  aligned_buffer<std::byte> out(rows * row_bytes);
  // Rows are independent (blocks never straddle rows), so any split gives the same bytes. The
  // K-quant and IQ4 searches cost a few hundred operations per weight: worth the pool's threads.
  const std::size_t work_per_row = cols * (dtype_is_quantized(to) ? 256 : 1);
  parallel_for(
      rows,
      [&](std::size_t begin, std::size_t end) {
        std::vector<float> row(cols);
        for (std::size_t r = begin; r < end; ++r) {
          row_to_float(source, r, row.data());
          std::byte* target = out.data() + r * row_bytes;
          if (dtype_is_quantized(to)) {
            quant::quantize_row(to, row.data(), cols, target);
            continue;
          }
          for (std::size_t i = 0; i < cols; ++i) {
            switch (to) {
              case dtype::f32: std::memcpy(target + 4 * i, &row[i], 4); break;
              case dtype::f16: {
                const std::uint16_t bits = float_to_half(row[i]);
                std::memcpy(target + 2 * i, &bits, 2);
                break;
              }
              case dtype::bf16: {
                const std::uint16_t bits = float_to_bfloat16(row[i]);
                std::memcpy(target + 2 * i, &bits, 2);
                break;
              }
              default: break;
            }
          }
        }
      },
      grain_for_work(work_per_row));
  return tensor_view::own(std::move(out), to, rows, cols);
}

/// Where a matrix sits in the model, for load-time quantization mixtures.
struct matrix_place {
  matrix_role role = matrix_role::mixer;
  std::size_t layer = 0;
  std::size_t layers = 1;
  bool tied = false;  // the token embedding doubles as the output head
};

/// The type a matrix [.., cols] of type `type` at `place` gets under `options`.
inline dtype load_target_type(dtype type, std::size_t cols, const matrix_place& place, const load_options& options) {
  if (options.convert_to && options.quantize_to)
    PITH_THROW(argument_error, "load_options: convert_to (" + std::string(dtype_name(*options.convert_to)) +
                                   ") and quantize_to (" + options.quantize_to->name() + ") exclude each other");
  if (options.quantize_to) return options.quantize_to->type_for(place.role, place.layer, place.layers, cols, place.tied);
  return options.convert_to.value_or(type);
}

namespace detail {

/// A checkpoint tensor with what keeps its bytes alive (the reader of the file that holds it).
struct owned_tensor {
  file_tensor tensor;
  std::shared_ptr<const void> owner;
};

/// Throws shape_error naming the file and the tensor unless `tensor` has the `expected` shape (a
/// vector may be stored as [n] or [1, n]; matrices must match exactly).
inline void check_shape(const file_tensor& tensor, std::vector<std::int64_t> expected) {
  auto shape_text = [](const std::vector<std::int64_t>& shape) {
    std::string text = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
    return text + "]";
  };
  std::vector<std::int64_t> actual = tensor.shape;
  if (expected.size() == 1 && actual.size() == 2 && actual[0] == 1) actual.erase(actual.begin());
  if (actual != expected)
    PITH_THROW(shape_error, std::string(tensor.file) + ": tensor '" + std::string(tensor.name) + "' has shape " +
                                shape_text(tensor.shape) + ", the configuration requires " + shape_text(expected));
}

/// Converts a tensor to float32 into `out` after checking its shape.
inline void take_tensor(const file_tensor& tensor, std::vector<std::int64_t> expected, aligned_buffer<float>& out) {
  check_shape(tensor, expected);
  std::size_t count = 1;
  for (auto extent : expected) count *= static_cast<std::size_t>(extent);
  out.resize(count);
  to_float(tensor, out.span());
}
inline void take_tensor(const owned_tensor& tensor, std::vector<std::int64_t> expected, aligned_buffer<float>& out) {
  take_tensor(tensor.tensor, std::move(expected), out);
}

/// `view` (the matrix `name` of `file`) in the type `options` choose for it at `place`: itself when
/// it already has that type, else an owned conversion (quantization: note §4). Errors name the tensor.
inline tensor_view convert_for_load(tensor_view view, std::string_view file, std::string_view name,
                                    const matrix_place& place, const load_options& options) {
  const dtype target = load_target_type(view.type(), view.cols(), place, options);
  if (view.type() == target) return view;
  if (view.cols() % dtype_block_elements(target) != 0)
    PITH_THROW(shape_error, std::string(file) + ": tensor " + quoted(name) + " has rows of " +
                                std::to_string(view.cols()) + " elements, not whole " +
                                std::string(dtype_name(target)) + " blocks of " +
                                std::to_string(dtype_block_elements(target)));
  return convert_tensor(view, target);
}

/// A matrix [rows, cols] in its storage type, in place in the file when the bytes can be used as
/// they are (a little-endian host and rows aligned for their element type; block types are read
/// with memcpy and need no alignment); an owned copy otherwise or when `options` asks for a
/// conversion or a quantization. Errors name the file and the tensor.
inline tensor_view take_matrix(const owned_tensor& source, std::int64_t rows, std::int64_t cols,
                               const load_options& options, const matrix_place& place = {}) {
  const file_tensor& tensor = source.tensor;
  check_shape(tensor, {rows, cols});
  dtype type = dtype::f32;
  switch (tensor.dtype) {
    case element_type::f32: type = dtype::f32; break;
    case element_type::f16: type = dtype::f16; break;
    case element_type::bf16: type = dtype::bf16; break;
    case element_type::other:
      if (const auto block = quantized_storage(tensor)) {
        type = *block;
        break;
      }
      PITH_THROW(format_error, std::string(tensor.file) + ": tensor " + quoted(tensor.name) + " has dtype " +
                                   std::string(tensor.dtype_name) +
                                   ", which pith cannot use (supported: F32, F16, BF16 and GGUF's " +
                                   "block-quantized types)");
  }
  const auto r = static_cast<std::size_t>(rows), c = static_cast<std::size_t>(cols);
  if (tensor.bytes.size() != r * dtype_row_bytes(type, c))
    PITH_THROW(format_error, std::string(tensor.file) + ": tensor " + quoted(tensor.name) + " holds " +
                                 std::to_string(tensor.bytes.size()) + " bytes, [" + std::to_string(r) + ", " +
                                 std::to_string(c) + "] " + std::string(dtype_name(type)) + " needs " +
                                 std::to_string(r * dtype_row_bytes(type, c)));
  const std::size_t alignment = dtype_is_quantized(type) ? 1 : dtype_block_bytes(type);
  const bool in_place = std::endian::native == std::endian::little &&
                        reinterpret_cast<std::uintptr_t>(tensor.bytes.data()) % alignment == 0;
  tensor_view view;
  if (in_place) {
    view = tensor_view(source.owner, tensor.bytes.data(), type, r, c, dtype_row_bytes(type, c));
  } else {
    // Little-endian bytes of the element type, copied to an aligned buffer (and byte-swapped on a
    // big-endian host through to_float).
    if constexpr (std::endian::native == std::endian::little) {
      aligned_buffer<std::byte> copy(tensor.bytes.size());
      std::copy(tensor.bytes.begin(), tensor.bytes.end(), copy.begin());
      view = tensor_view::own(std::move(copy), type, r, c);
    } else {
      aligned_buffer<float> floats;
      to_float(tensor, floats);
      view = tensor_view::own(std::move(floats), dtype::f32, r, c);
    }
  }
  return convert_for_load(std::move(view), tensor.file, tensor.name, place, options);
}

/// A float32 matrix [rows, cols] of a llama2.c checkpoint, in place (or copied when misaligned).
inline tensor_view take_floats(std::span<const float> source, std::size_t rows, std::size_t cols,
                               const std::shared_ptr<const void>& owner, const load_options& options,
                               std::string_view file = {}, std::string_view name = {},
                               const matrix_place& place = {}) {
  tensor_view view = tensor_view(owner, reinterpret_cast<const std::byte*>(source.data()), dtype::f32, rows, cols,
                                 cols * sizeof(float));
  return convert_for_load(std::move(view), file, name, place, options);
}

inline void take_span(std::span<const float> source, std::size_t count, aligned_buffer<float>& out) {
  out.resize(count);
  std::copy(source.begin(), source.begin() + static_cast<std::ptrdiff_t>(count), out.begin());
}

}  // namespace detail

/// Loads weights through `lookup(name) -> detail::owned_tensor` (which throws when the tensor is
/// missing) with Hugging Face or GGUF names; returns the names the configuration accounts for
/// (those it read, and the q/k projections a fixed-stream layer may keep without using).
template <class Lookup, class Contains>
std::set<std::string> load_named_weights(model_weights& w, Lookup&& lookup_tensor, Contains&& contains, bool gguf_names,
                                         const load_options& options) {
  std::set<std::string> used;
  auto lookup = [&](const std::string& tensor_name) {
    used.insert(tensor_name);
    return lookup_tensor(tensor_name);
  };
  const auto& c = w.config;
  const auto h = static_cast<std::int64_t>(c.hidden_size), q = static_cast<std::int64_t>(c.q_size()),
             kv = static_cast<std::int64_t>(c.kv_size()), f = static_cast<std::int64_t>(c.intermediate_size),
             v = static_cast<std::int64_t>(c.vocab_size);
  auto name = [&](const char* hf, const char* gg, std::size_t layer) {
    std::string pattern = gguf_names ? gg : hf;
    const auto at = pattern.find("{}");
    if (at != std::string::npos) pattern.replace(at, 2, std::to_string(layer));
    return pattern;
  };
  const std::string head = name("lm_head.weight", "output.weight", 0);
  const bool tied = c.tie_word_embeddings && !contains(head);
  auto place = [&](matrix_role role, std::size_t layer) { return matrix_place{role, layer, c.num_layers, tied}; };
  w.token_embedding = detail::take_matrix(lookup(name("model.embed_tokens.weight", "token_embd.weight", 0)), v, h,
                                          options, place(matrix_role::token_embedding, 0));
  w.layers.resize(c.num_layers);
  // q_eff = norm ⊙ proj, folded once (GGUF stores it folded already).
  auto res_query = [&](const char* hf_norm, const char* hf_proj, const char* gg, std::size_t i, aligned_buffer<float>& out) {
    if (gguf_names) {
      detail::take_tensor(lookup(name("", gg, i)), {h}, out);
      return;
    }
    aligned_buffer<float> proj;
    detail::take_tensor(lookup(name(hf_norm, "", i)), {h}, out);
    detail::take_tensor(lookup(name(hf_proj, "", i)), {1, h}, proj);
    for (std::size_t k = 0; k < out.size(); ++k) out[k] *= proj[k];
  };
  for (std::size_t i = 0; i < c.num_layers; ++i) {
    auto& l = w.layers[i];
    const mixer_kind mixer = c.mixer(i);
    detail::take_tensor(lookup(name("model.layers.{}.input_layernorm.weight", "blk.{}.attn_norm.weight", i)), {h}, l.attn_norm);
    if (mixer_has_attention_weights(mixer)) {
      if (mixer != mixer_kind::rnd_emb_qk && mixer != mixer_kind::fixed_seq_qk) {
        l.wq = detail::take_matrix(lookup(name("model.layers.{}.self_attn.q_proj.weight", "blk.{}.attn_q.weight", i)), q, h, options, place(matrix_role::attn_q, i));
        l.wk = detail::take_matrix(lookup(name("model.layers.{}.self_attn.k_proj.weight", "blk.{}.attn_k.weight", i)), kv, h, options, place(matrix_role::attn_k, i));
      }
      l.wv = detail::take_matrix(lookup(name("model.layers.{}.self_attn.v_proj.weight", "blk.{}.attn_v.weight", i)), kv, h, options, place(matrix_role::attn_v, i));
      l.wo = detail::take_matrix(lookup(name("model.layers.{}.self_attn.o_proj.weight", "blk.{}.attn_output.weight", i)), h, q, options, place(matrix_role::attn_output, i));
      if (c.attention_bias) {
        detail::take_tensor(lookup(name("model.layers.{}.self_attn.q_proj.bias", "blk.{}.attn_q.bias", i)), {q}, l.q_bias);
        detail::take_tensor(lookup(name("model.layers.{}.self_attn.k_proj.bias", "blk.{}.attn_k.bias", i)), {kv}, l.k_bias);
        detail::take_tensor(lookup(name("model.layers.{}.self_attn.v_proj.bias", "blk.{}.attn_v.bias", i)), {kv}, l.v_bias);
      }
      if (c.qk_norm) {
        const auto d = static_cast<std::int64_t>(c.head_dim);
        detail::take_tensor(lookup(name("model.layers.{}.self_attn.q_norm.weight", "blk.{}.attn_q_norm.weight", i)), {d}, l.q_norm);
        detail::take_tensor(lookup(name("model.layers.{}.self_attn.k_norm.weight", "blk.{}.attn_k_norm.weight", i)), {d}, l.k_norm);
      }
    }
    if (mixer == mixer_kind::rnd_emb_qk || mixer == mixer_kind::fixed_seq_qk) {
      // The q/k projections that made the fixed stream may stay in the checkpoint, unused.
      used.insert(name("model.layers.{}.self_attn.q_proj.weight", "blk.{}.attn_q.weight", i));
      used.insert(name("model.layers.{}.self_attn.k_proj.weight", "blk.{}.attn_k.weight", i));
      const auto fq = lookup(name("model.layers.{}.self_attn.fixed_q", "blk.{}.fixed_q", i));
      const std::int64_t rows = fq.tensor.shape.empty() ? 0 : fq.tensor.shape.front();
      if (rows <= 0)
        PITH_THROW(shape_error, std::string(fq.tensor.file) + ": tensor '" + std::string(fq.tensor.name) + "' must be [fixed_length, " +
                                    std::to_string(q) + "] with fixed_length > 0");
      detail::take_tensor(fq, {rows, q}, l.fixed_q);
      detail::take_tensor(lookup(name("model.layers.{}.self_attn.fixed_k", "blk.{}.fixed_k", i)), {rows, kv}, l.fixed_k);
      l.fixed_length = static_cast<std::size_t>(rows);
    }
    if (mixer == mixer_kind::mlp) {
      const auto m = static_cast<std::int64_t>(c.mixer_mlp_intermediate_size);
      l.mixer_gate = detail::take_matrix(lookup(name("model.layers.{}.mixer_mlp.gate_proj.weight", "blk.{}.mixer_gate.weight", i)), m, h, options, place(matrix_role::mixer, i));
      l.mixer_up = detail::take_matrix(lookup(name("model.layers.{}.mixer_mlp.up_proj.weight", "blk.{}.mixer_up.weight", i)), m, h, options, place(matrix_role::mixer, i));
      l.mixer_down = detail::take_matrix(lookup(name("model.layers.{}.mixer_mlp.down_proj.weight", "blk.{}.mixer_down.weight", i)), h, m, options, place(matrix_role::mixer, i));
    }
    if (c.sandwich_norms) {
      // Gemma: post_attention_layernorm normalises the attention output; pre_feedforward_layernorm
      // is the MLP's input norm (GGUF ffn_norm).
      detail::take_tensor(lookup(name("model.layers.{}.post_attention_layernorm.weight", "blk.{}.post_attention_norm.weight", i)), {h}, l.post_attn_norm);
      detail::take_tensor(lookup(name("model.layers.{}.pre_feedforward_layernorm.weight", "blk.{}.ffn_norm.weight", i)), {h}, l.mlp_norm);
      detail::take_tensor(lookup(name("model.layers.{}.post_feedforward_layernorm.weight", "blk.{}.post_ffw_norm.weight", i)), {h}, l.post_mlp_norm);
    } else {
      detail::take_tensor(lookup(name("model.layers.{}.post_attention_layernorm.weight", "blk.{}.ffn_norm.weight", i)), {h},
                          l.mlp_norm);
    }
    l.w_gate = detail::take_matrix(lookup(name("model.layers.{}.mlp.gate_proj.weight", "blk.{}.ffn_gate.weight", i)), f, h, options, place(matrix_role::ffn_gate, i));
    l.w_up = detail::take_matrix(lookup(name("model.layers.{}.mlp.up_proj.weight", "blk.{}.ffn_up.weight", i)), f, h, options, place(matrix_role::ffn_up, i));
    l.w_down = detail::take_matrix(lookup(name("model.layers.{}.mlp.down_proj.weight", "blk.{}.ffn_down.weight", i)), h, f, options, place(matrix_role::ffn_down, i));
    if (c.residual != residual_mode::standard) {
      // Layer 0's attention site is never used in block mode (identity) and is the identity in full mode.
      if (i > 0 || (contains(name("model.layers.{}.self_attention_res_norm.weight", "blk.{}.attn_res_score.weight", i))))
        res_query("model.layers.{}.self_attention_res_norm.weight", "model.layers.{}.self_attention_res_proj.weight",
                  "blk.{}.attn_res_score.weight", i, l.attn_res_query);
      res_query("model.layers.{}.mlp_res_norm.weight", "model.layers.{}.mlp_res_proj.weight", "blk.{}.ffn_res_score.weight",
                i, l.mlp_res_query);
    }
  }
  if (c.residual != residual_mode::standard)
    res_query("model.output_attn_res_norm.weight", "model.output_attn_res_proj.weight", "output_res_score.weight", 0,
              w.output_res_query);
  detail::take_tensor(lookup(name("model.norm.weight", "output_norm.weight", 0)), {h}, w.final_norm);
  if (gguf_names && contains("rope_freqs.weight")) {
    detail::take_tensor(lookup("rope_freqs.weight"), {static_cast<std::int64_t>(c.head_dim / 2)}, w.rope_frequency_divisors);
    for (const float r : w.rope_frequency_divisors)
      if (!(r > 0.0f && r < 1e30f))
        PITH_THROW(format_error, c.source + ": tensor 'rope_freqs.weight' holds " + std::to_string(r) +
                                     "; RoPE frequency divisors must be positive and finite");
  }
  if (c.norm_plus_one) {
    // Gemma's RMSNorm multiplies by 1 + w (Hugging Face stores w; llama.cpp's converter stores 1 + w).
    auto plus_one = [](aligned_buffer<float>& gain) {
      for (float& g : gain) g += 1.0f;
    };
    plus_one(w.final_norm);
    for (auto& l : w.layers)
      for (auto* gain : {&l.attn_norm, &l.mlp_norm, &l.q_norm, &l.k_norm, &l.post_attn_norm, &l.post_mlp_norm})
        plus_one(*gain);
  }
  if (!c.tie_word_embeddings || contains(head)) {
    if (!contains(head) && !gguf_names)
      PITH_THROW(format_error, c.source + ": tensor 'lm_head.weight' is missing and tie_word_embeddings is false");
    if (contains(head)) w.lm_head_storage = detail::take_matrix(lookup(head), v, h, options, place(matrix_role::output, 0));
  }
  return used;
}

namespace detail {

/// Tensors a checkpoint may hold that pith recomputes instead of reading: the rotary inverse
/// frequencies of older Hugging Face exports and their GGUF name (derived from rope_theta and head_dim).
inline bool is_recomputed_buffer(std::string_view name) noexcept {
  return name.ends_with(".rotary_emb.inv_freq") || (name.starts_with("blk.") && name.ends_with(".rot_embd"));
}

/// format_error listing the first few tensors of `names` that loading did not use (`used`): a
/// configuration with fewer layers than the checkpoint, or weights of a feature pith does not
/// implement (QK norms, biases, Llama 3 frequency factors), would otherwise be silently ignored.
inline void reject_unused_tensors(const model_config& c, const std::string& source, const std::vector<std::string>& names,
                                  const std::set<std::string>& used) {
  constexpr std::size_t listed = 5;
  std::vector<std::string_view> unused;
  for (const auto& name : names)
    if (used.find(name) == used.end() && !is_recomputed_buffer(name)) unused.push_back(name);
  if (unused.empty()) return;
  std::string list;
  for (std::size_t i = 0; i < std::min(unused.size(), listed); ++i) list += (i ? ", " : "") + quoted(unused[i]);
  if (unused.size() > listed) list += ", ...";
  PITH_THROW(format_error, source + ": the checkpoint holds " + std::to_string(unused.size()) +
                               " tensors the configuration does not use: " + list + " (" + c.key("num_hidden_layers") +
                               " = " + std::to_string(c.num_layers) +
                               "; a configuration with fewer layers than the checkpoint, other token mixers, or "
                               "weights of a feature pith does not implement)");
}

}  // namespace detail

/// A Hugging Face model directory: config.json and one or more *.safetensors files. The matrices
/// stay in the mapped files (see load_options).
inline model_weights load_safetensors_model(const std::filesystem::path& directory, const load_options& options = {}) {
  model_weights w;
  w.config = load_config_json(directory / "config.json");
  std::vector<std::shared_ptr<const safetensors_file>> files;
  if (std::filesystem::exists(directory / "model.safetensors")) {
    files.push_back(std::make_shared<const safetensors_file>(directory / "model.safetensors"));
  } else {
    std::vector<std::filesystem::path> shards;
    for (const auto& entry : std::filesystem::directory_iterator(directory))
      if (entry.path().extension() == ".safetensors") shards.push_back(entry.path());
    std::sort(shards.begin(), shards.end());
    for (const auto& shard : shards) files.push_back(std::make_shared<const safetensors_file>(shard));
  }
  if (files.empty()) PITH_THROW(io_error, directory.string() + ": no *.safetensors file in the model directory");
  auto contains = [&](const std::string& name) {
    for (const auto& file : files)
      if (file->contains(name)) return true;
    return false;
  };
  auto find = [&](const std::string& name) {
    for (const auto& file : files)
      if (file->contains(name)) return detail::owned_tensor{file->tensor(name), file};
    PITH_THROW(format_error, directory.string() + ": tensor '" + name + "' is missing from the checkpoint");
  };
  std::vector<std::string> names;
  for (const auto& file : files)
    for (auto& name : file->names()) names.push_back(std::move(name));
  if (!w.config.multimodal) {
    const auto used = load_named_weights(w, find, contains, false, options);
    detail::reject_unused_tensors(w.config, directory.string(), names, used);
    return w;
  }
  // Gemma3ForConditionalGeneration: the text model's tensors under language_model.model.* (and
  // language_model.lm_head) or, as newer transformers save them, model.language_model.* (and lm_head);
  // the vision tower and the projector are not used.
  std::string prefix, head;
  if (contains("language_model.model.embed_tokens.weight")) {
    prefix = "language_model.model.";
    head = "language_model.lm_head.weight";
  } else if (contains("model.language_model.embed_tokens.weight")) {
    prefix = "model.language_model.";
    head = "lm_head.weight";
  } else {
    PITH_THROW(format_error, directory.string() + ": neither 'language_model.model.embed_tokens.weight' nor "
                                                  "'model.language_model.embed_tokens.weight' is in the checkpoint "
                                                  "(the text model of Gemma3ForConditionalGeneration)");
  }
  const auto stored = [&](const std::string& name) {
    return name == "lm_head.weight" ? head : name.starts_with("model.") ? prefix + name.substr(6) : name;
  };
  std::set<std::string> used;
  auto lookup = [&](const std::string& name) {
    used.insert(stored(name));
    return find(stored(name));
  };
  auto has = [&](const std::string& name) { return contains(stored(name)); };
  load_named_weights(w, lookup, has, false, options);
  std::erase_if(names, [](const std::string& name) {
    for (const char* vision : {"vision_tower.", "multi_modal_projector.", "model.vision_tower.", "model.multi_modal_projector."})
      if (name.starts_with(vision)) return true;
    return false;
  });
  detail::reject_unused_tensors(w.config, directory.string(), names, used);
  return w;
}

/// The configuration stored in a GGUF file's metadata: general.architecture `llama` (Llama, Mistral,
/// SmolLM2: q/k rows permuted for adjacent-pair RoPE), `qwen2` (q/k/v biases), `qwen3` (q/k norms),
/// `gemma3` (llama.cpp's conventions: norms stored as 1 + w, every sixth layer global, local RoPE
/// base 10000, sliding window from `gemma3.attention.sliding_window`); the others keep Hugging
/// Face's half-split RoPE (llama.cpp's NEOX mode). Every integer key is range-checked as read (any
/// GGUF integer type; a wider value is never truncated), and errors name the GGUF key
/// (`qwen3.block_count`, not `num_hidden_layers`).
inline model_config config_from_gguf(const gguf_file& file) {
  model_config c;
  c.source = file.path();
  c.format = config_format::gguf;
  const std::string& arch = file.get_string("general.architecture");
  if (arch == "llama") c.family = model_family::llama;
  else if (arch == "qwen2") c.family = model_family::qwen2;
  else if (arch == "qwen3") c.family = model_family::qwen3;
  else if (arch == "gemma3") c.family = model_family::gemma3;
  else
    PITH_THROW(config_error, file.path() + ": general.architecture is '" + arch +
                                 "', which pith does not implement (llama, qwen2, qwen3, gemma3)");
  c.gguf_architecture = arch;
  const std::string p = arch + ".";
  auto integer = [&](const std::string& key, std::size_t high) {
    const std::int64_t value = file.get_integer(key);  // config_error for other types
    if (value < 0 || static_cast<std::uint64_t>(value) > high)
      PITH_THROW(config_error, file.path() + ": key '" + key + "' must be in [0, " + std::to_string(high) + "], got " +
                                   std::to_string(value));
    return static_cast<std::size_t>(value);
  };
  constexpr std::size_t dimension = config_limits::dimension;
  c.hidden_size = integer(p + "embedding_length", dimension);
  c.intermediate_size = integer(p + "feed_forward_length", dimension);
  c.num_layers = integer(p + "block_count", config_limits::layers);
  c.num_heads = integer(p + "attention.head_count", dimension);
  c.num_kv_heads = file.has(p + "attention.head_count_kv") ? integer(p + "attention.head_count_kv", dimension) : c.num_heads;
  if (c.num_heads == 0) PITH_THROW(config_error, file.path() + ": key '" + p + "attention.head_count' must be positive");
  c.head_dim = file.has(p + "attention.key_length") ? integer(p + "attention.key_length", dimension)
                                                     : c.hidden_size / c.num_heads;
  if (file.has(p + "attention.value_length") && integer(p + "attention.value_length", dimension) != c.head_dim)
    PITH_THROW(config_error, file.path() + ": key '" + p + "attention.value_length' differs from '" + p +
                                 "attention.key_length'; pith needs equal key and value widths");
  c.rms_norm_eps = file.has(p + "attention.layer_norm_rms_epsilon") ? file.get_float(p + "attention.layer_norm_rms_epsilon")
                                                                    : 1e-5f;
  c.rope_theta = file.has(p + "rope.freq_base") ? file.get_float(p + "rope.freq_base") : 10000.0f;
  c.max_position_embeddings = file.has(p + "context_length") ? integer(p + "context_length", config_limits::positions) : 2048;
  if (file.has(p + "vocab_size"))
    c.vocab_size = integer(p + "vocab_size", dimension);
  else if (file.has("tokenizer.ggml.tokens"))
    c.vocab_size = file.get_array("tokenizer.ggml.tokens").size();
  else {
    const auto shape = file.info("token_embd.weight").shape();
    if (shape.size() != 2)
      PITH_THROW(format_error, file.path() + ": tensor 'token_embd.weight' must be a matrix [vocab, hidden]");
    c.vocab_size = static_cast<std::size_t>(shape.front());
  }
  c.tie_word_embeddings = !file.contains("output.weight");
  if (file.has(p + "attn_res_block_size")) {
    c.residual = residual_mode::block;
    c.attn_res_block_size = integer(p + "attn_res_block_size", config_limits::layers);
  }
  if (file.has(p + "attn_res_mode")) {
    const std::string& mode = file.get_string(p + "attn_res_mode");
    if (mode == "standard") c.residual = residual_mode::standard;
    else if (mode == "block") c.residual = residual_mode::block;
    else if (mode == "full") c.residual = residual_mode::full;
    else PITH_THROW(config_error, file.path() + ": key '" + p + "attn_res_mode': unknown mode '" + mode + "'");
  }
  for (const char* key : {"final_logit_softcapping", "attn_logit_softcapping", "expert_count"})
    if (file.has(p + key)) PITH_THROW(config_error, file.path() + ": key '" + p + key + "' is set; pith does not implement it");
  if (file.has(p + "rope.scaling.type")) {
    const std::string& type = file.get_string(p + "rope.scaling.type");
    if (type == "linear") {
      c.rope_scale.kind = rope_scaling_kind::linear;
      c.rope_scale.factor = file.get_float(p + "rope.scaling.factor");
    } else if (type != "none") {
      PITH_THROW(config_error, file.path() + ": key '" + p + "rope.scaling.type' is '" + type +
                                   "', which pith does not implement (none, linear; Llama 3's schedule comes as "
                                   "the tensor rope_freqs.weight)");
    }
  }
  // llama.cpp's converter permutes the q/k rows of `llama` files for adjacent-pair RoPE; qwen2,
  // qwen3 and gemma3 keep Hugging Face's rows and rotate half-split pairs.
  c.rope = arch == "llama" ? kernels::rope_layout::interleaved : kernels::rope_layout::half;
  c.attention_bias = c.family == model_family::qwen2;
  c.qk_norm = c.family == model_family::qwen3 || c.family == model_family::gemma3;
  if (c.family == model_family::gemma3) {
    c.activation = ffn_activation::gelu_tanh;
    c.sandwich_norms = true;
    c.norm_plus_one = false;  // the converter stored 1 + w
    c.embedding_scale = static_cast<float>(std::sqrt(static_cast<double>(c.hidden_size)));
    // llama.cpp: 1/sqrt(head_dim), except the 27B (62 layers) whose query_pre_attn_scalar is hidden / heads.
    const std::size_t scalar = c.num_layers == 62 ? c.hidden_size / c.num_heads : c.head_dim;
    c.attention_scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(scalar)));
    c.rope_theta_windowed = 10000.0f;
    if (file.has(p + "attention.sliding_window")) {
      const std::size_t window = integer(p + "attention.sliding_window", config_limits::positions);
      c.sliding_windows.assign(c.num_layers, 0);
      for (std::size_t i = 0; i < c.num_layers; ++i)
        if ((i + 1) % 6 != 0) c.sliding_windows[i] = window;
    }
  } else if (c.rope_scale.kind == rope_scaling_kind::linear) {
    PITH_THROW(config_error, file.path() + ": key '" + p + "rope.scaling.type' is linear; pith scales Gemma 3 only");
  }
  c.validate();
  // Token ids are checked against the validated vocabulary.
  if (file.has("tokenizer.ggml.bos_token_id"))
    c.bos_token_id = static_cast<std::int32_t>(integer("tokenizer.ggml.bos_token_id", c.vocab_size - 1));
  if (file.has("tokenizer.ggml.eos_token_id")) {
    c.eos_token_id = static_cast<std::int32_t>(integer("tokenizer.ggml.eos_token_id", c.vocab_size - 1));
    c.eos_token_ids = {c.eos_token_id};
  }
  return c;
}

/// A GGUF file (architecture "llama"); the matrices stay in the mapped file (see load_options).
inline model_weights load_gguf_model(const std::filesystem::path& path, const load_options& options = {}) {
  auto file = std::make_shared<const gguf_file>(path);
  model_weights w;
  w.config = config_from_gguf(*file);
  auto lookup = [&](const std::string& name) { return detail::owned_tensor{file->tensor(name), file}; };
  auto contains = [&](const std::string& name) { return file->contains(name); };
  const auto used = load_named_weights(w, lookup, contains, true, options);
  detail::reject_unused_tensors(w.config, file->path(), file->names(), used);
  return w;
}

/// A llama2.c checkpoint (legacy version 0): RMSNorm eps 1e-5, RoPE theta 10000 on adjacent pairs.
inline model_weights load_llama2c_model(const std::filesystem::path& path, const load_options& options = {}) {
  auto file = std::make_shared<const llama2c_checkpoint>(path);
  const llama2c_checkpoint& checkpoint = *file;
  const auto& h = checkpoint.config();
  model_weights w;
  auto& c = w.config;
  c.source = path.string();
  c.format = config_format::llama2c;
  c.hidden_size = static_cast<std::size_t>(h.dim);
  c.intermediate_size = static_cast<std::size_t>(h.hidden_dim);
  c.num_layers = static_cast<std::size_t>(h.n_layers);
  c.num_heads = static_cast<std::size_t>(h.n_heads);
  c.num_kv_heads = static_cast<std::size_t>(h.n_kv_heads);
  c.head_dim = static_cast<std::size_t>(h.head_size());
  c.vocab_size = static_cast<std::size_t>(h.vocab_size);
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.tie_word_embeddings = h.shared_classifier;
  c.max_position_embeddings = static_cast<std::size_t>(h.seq_len);
  c.rope = kernels::rope_layout::interleaved;
  c.validate();
  const auto& src = checkpoint.weights();
  const std::size_t hidden = c.hidden_size, q = c.q_size(), kv = c.kv_size(), f = c.intermediate_size;
  const auto layers = static_cast<std::int32_t>(c.num_layers);
  auto matrix = [&](std::span<const float> source, std::size_t rows, std::size_t cols, const char* what,
                    matrix_role role, std::size_t layer) {
    const matrix_place place{role, layer, c.num_layers, h.shared_classifier};
    return detail::take_floats(source.first(rows * cols), rows, cols, file, options, c.source, what, place);
  };
  w.token_embedding = matrix(src.token_embedding, c.vocab_size, hidden, "token_embedding_table", matrix_role::token_embedding, 0);
  w.layers.resize(c.num_layers);
  for (std::int32_t i = 0; i < layers; ++i) {
    const auto l_index = static_cast<std::size_t>(i);
    auto& l = w.layers[l_index];
    detail::take_span(layer_slice(src.rms_att, layers, i), hidden, l.attn_norm);
    l.wq = matrix(layer_slice(src.wq, layers, i), q, hidden, "wq", matrix_role::attn_q, l_index);
    l.wk = matrix(layer_slice(src.wk, layers, i), kv, hidden, "wk", matrix_role::attn_k, l_index);
    l.wv = matrix(layer_slice(src.wv, layers, i), kv, hidden, "wv", matrix_role::attn_v, l_index);
    l.wo = matrix(layer_slice(src.wo, layers, i), hidden, q, "wo", matrix_role::attn_output, l_index);
    detail::take_span(layer_slice(src.rms_ffn, layers, i), hidden, l.mlp_norm);
    l.w_gate = matrix(layer_slice(src.w1, layers, i), f, hidden, "w1", matrix_role::ffn_gate, l_index);
    l.w_up = matrix(layer_slice(src.w3, layers, i), f, hidden, "w3", matrix_role::ffn_up, l_index);
    l.w_down = matrix(layer_slice(src.w2, layers, i), hidden, f, "w2", matrix_role::ffn_down, l_index);
  }
  detail::take_span(src.rms_final, hidden, w.final_norm);
  if (!h.shared_classifier) w.lm_head_storage = matrix(src.wcls, c.vocab_size, hidden, "wcls", matrix_role::output, 0);
  return w;
}

/// Loads a model from a safetensors directory, a `.gguf` file or a llama2.c `.bin` checkpoint,
/// its matrices in place in their own type unless `options` asks for a conversion.
inline model_weights load_model(const std::filesystem::path& path, const load_options& options = {}) {
  if (std::filesystem::is_directory(path)) return load_safetensors_model(path, options);
  if (!std::filesystem::exists(path)) PITH_THROW(io_error, path.string() + ": no such file or directory");
  const auto extension = path.extension().string();
  if (extension == ".gguf") return load_gguf_model(path, options);
  if (extension == ".bin") return load_llama2c_model(path, options);
  if (path.filename() == "config.json") return load_safetensors_model(path.parent_path(), options);
  PITH_THROW(argument_error, path.string() + ": unknown model format (expected a directory with config.json, "
                                             "a .gguf file or a llama2.c .bin checkpoint)");
}

}  // namespace pith
