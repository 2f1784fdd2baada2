// SPDX-License-Identifier: MIT
// Block-quantized weights: GGUF files of every quantized type load in place (the matrices are views
// into the mapping), run, and match a float32 model of the dequantized weights; quantization at
// load (load_options::quantize_to) writes the reference quantizers' bytes; files of types pith
// lacks, or cut short inside a tensor, are refused by name.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <limits>
#include <memory>
#include <string>
#include <unistd.h>
#include <vector>

#include <nlohmann/json.hpp>

#include <pith/core/quantize.hpp>
#include <pith/io/gguf.hpp>
#include <pith/model/random_weights.hpp>
#include <pith/model/sampler.hpp>
#include <pith/model/transformer.hpp>

#include "../io/test_util.hpp"

namespace {

using pith::dtype;

const std::filesystem::path quant_models = std::filesystem::path(PITH_TEST_DATA_DIR) / "quant" / "models";

// Same weights, another summation order: the model of the dequantized weights in float32 against
// the quantized one through the reference path (each row dequantized, a float32 dot product).
// Logits of |10| from sums of a few hundred products differ by a few ulps of the partial sums.
constexpr float same_values_tolerance = 1e-4f;

// The integer kernels quantize each activation row to 8 bits per block (Q8_0 / Q8_K, note §3.3):
// an element moves by at most half a step, amax / 254 of its block. For a block of near-Gaussian
// values amax ≈ 2.5 rms (32 elements) to 3.5 rms (256), so a product's relative rms error is about
// 3.5 / (254 · √3) ≈ 0.8% per matrix; the residual stream of these two-layer models passes at most
// 5 products in sequence before the head, whose errors add in quadrature (≈ 1.8%). 4% of the
// largest |logit| leaves room for the unlucky blocks without hiding a wrong scale (≥ 10%).
constexpr float activation_quantization_tolerance = 0.04f;

/// A small Llama whose every matrix has rows of 256 (K-quant super-blocks fit).
pith::model_config quant_config(bool tied) {
  pith::model_config c;
  c.hidden_size = 256;
  c.intermediate_size = 512;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 64;
  c.vocab_size = 96;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.max_position_embeddings = 64;
  c.tie_word_embeddings = tied;
  c.rope = pith::kernels::rope_layout::interleaved;
  c.validate();
  return c;
}

/// The rows of `view` as float32.
std::vector<float> floats_of(const pith::tensor_view& view) {
  std::vector<float> out(view.rows() * view.cols());
  for (std::size_t r = 0; r < view.rows(); ++r) pith::row_to_float(view, r, out.data() + r * view.cols());
  return out;
}

/// Bytes of `values` ([rows, cols] float32) in `type` (F32 copied, block types by quantize_row).
std::string encode(const std::vector<float>& values, std::size_t rows, std::size_t cols, dtype type) {
  std::string out(rows * pith::dtype_row_bytes(type, cols), '\0');
  if (type == dtype::f32) {
    std::memcpy(out.data(), values.data(), values.size() * 4);
    return out;
  }
  for (std::size_t r = 0; r < rows; ++r)
    pith::quant::quantize_row(type, values.data() + r * cols, cols,
                              reinterpret_cast<std::byte*>(out.data()) + r * pith::dtype_row_bytes(type, cols));
  return out;
}

struct gguf_tensor {
  std::string name;
  std::vector<std::uint64_t> ne;  // ne[0] = row length
  std::uint32_t ggml_type;
  std::string bytes;
};

/// A GGUF v3 file of architecture "llama" for `c` holding `tensors`.
std::string gguf_model_bytes(const pith::model_config& c, const std::vector<gguf_tensor>& tensors) {
  constexpr std::uint32_t u32 = 4, f32 = 6;
  pith_test::gguf_builder b;
  b.header(tensors.size(), 10).kv_string("general.architecture", "llama");
  b.kv<std::uint32_t>("llama.embedding_length", u32, static_cast<std::uint32_t>(c.hidden_size));
  b.kv<std::uint32_t>("llama.feed_forward_length", u32, static_cast<std::uint32_t>(c.intermediate_size));
  b.kv<std::uint32_t>("llama.block_count", u32, static_cast<std::uint32_t>(c.num_layers));
  b.kv<std::uint32_t>("llama.attention.head_count", u32, static_cast<std::uint32_t>(c.num_heads));
  b.kv<std::uint32_t>("llama.attention.head_count_kv", u32, static_cast<std::uint32_t>(c.num_kv_heads));
  b.kv<float>("llama.attention.layer_norm_rms_epsilon", f32, c.rms_norm_eps);
  b.kv<float>("llama.rope.freq_base", f32, c.rope_theta);
  b.kv<std::uint32_t>("llama.context_length", u32, static_cast<std::uint32_t>(c.max_position_embeddings));
  b.kv<std::uint32_t>("llama.vocab_size", u32, static_cast<std::uint32_t>(c.vocab_size));
  std::uint64_t offset = 0;
  for (const auto& t : tensors) {
    b.tensor_info(t.name, t.ne, t.ggml_type, offset);
    offset += (t.bytes.size() + 31) / 32 * 32;
  }
  b.align();
  for (const auto& t : tensors) {
    b.data(t.bytes);
    b.align();
  }
  return b.bytes();
}

/// The GGUF of random weights (seed `seed`) with every matrix in `type(name)` and the norms in F32.
template <class TypeOf>
std::string random_gguf(const pith::model_config& c, std::uint64_t seed, TypeOf&& type_of) {
  const auto w = pith::random_weights(c, seed);
  std::vector<gguf_tensor> tensors;
  auto matrix = [&](const std::string& name, const pith::tensor_view& view) {
    const dtype t = type_of(name);
    tensors.push_back({name, {view.cols(), view.rows()}, pith::dtype_ggml_id(t),
                       encode(floats_of(view), view.rows(), view.cols(), t)});
  };
  auto vector = [&](const std::string& name, const pith::aligned_buffer<float>& v) {
    std::vector<float> values(v.begin(), v.end());
    // Norm gains around 1, different per element, so a misread gain shows.
    for (std::size_t i = 0; i < values.size(); ++i) values[i] = 1.0f + 0.25f * std::sin(static_cast<float>(i));
    tensors.push_back({name, {values.size()}, 0, encode(values, 1, values.size(), dtype::f32)});
  };
  matrix("token_embd.weight", w.token_embedding);
  for (std::size_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    const auto& l = w.layers[i];
    vector(p + "attn_norm.weight", l.attn_norm);
    matrix(p + "attn_q.weight", l.wq);
    matrix(p + "attn_k.weight", l.wk);
    matrix(p + "attn_v.weight", l.wv);
    matrix(p + "attn_output.weight", l.wo);
    vector(p + "ffn_norm.weight", l.mlp_norm);
    matrix(p + "ffn_gate.weight", l.w_gate);
    matrix(p + "ffn_up.weight", l.w_up);
    matrix(p + "ffn_down.weight", l.w_down);
  }
  vector("output_norm.weight", w.final_norm);
  if (!c.tie_word_embeddings) matrix("output.weight", w.lm_head_storage);
  return gguf_model_bytes(c, tensors);
}

/// Every weight matrix of `w` with its GGUF name.
std::vector<std::pair<std::string, const pith::tensor_view*>> matrices(const pith::model_weights& w) {
  std::vector<std::pair<std::string, const pith::tensor_view*>> out{{"token_embd.weight", &w.token_embedding}};
  for (std::size_t l = 0; l < w.layers.size(); ++l) {
    const auto& layer = w.layers[l];
    const std::string p = "blk." + std::to_string(l) + ".";
    for (const auto& [name, view] :
         {std::pair{"attn_q", &layer.wq}, {"attn_k", &layer.wk}, {"attn_v", &layer.wv}, {"attn_output", &layer.wo},
          {"ffn_gate", &layer.w_gate}, {"ffn_up", &layer.w_up}, {"ffn_down", &layer.w_down}})
      out.emplace_back(p + name + ".weight", view);
  }
  if (!w.lm_head_storage.empty()) out.emplace_back("output.weight", &w.lm_head_storage);
  return out;
}

std::vector<float> logits_of(const pith::model_weights& w, const std::vector<std::int32_t>& ids) {
  pith::session s(w, {64, 64});
  std::vector<float> logits(ids.size() * w.config.vocab_size);
  s.forward(ids, logits.data(), true);
  return logits;
}

std::vector<std::int32_t> greedy_of(const pith::model_weights& w, const std::vector<std::int32_t>& ids,
                                    std::size_t count) {
  pith::session s(w, {64, 16});
  std::vector<float> logits(w.config.vocab_size);
  s.forward(ids, logits.data());
  std::vector<std::int32_t> produced;
  for (std::size_t i = 0; i < count; ++i) {
    produced.push_back(pith::sampler::argmax(logits));
    s.forward(std::span(&produced.back(), 1), logits.data());
  }
  return produced;
}

// One greedy step of `reference`, fed its own choices, beside `other` fed the same tokens: the two
// choices and the reference's margin between its best and second-best logit.
struct greedy_step {
  std::int32_t reference, other;
  float margin;
};

std::vector<greedy_step> teacher_forced_greedy(const pith::model_weights& reference, const pith::model_weights& other,
                                               const std::vector<std::int32_t>& ids, std::size_t count) {
  pith::session r(reference, {64, 16}), o(other, {64, 16});
  std::vector<float> lr(reference.config.vocab_size), lo(other.config.vocab_size);
  r.forward(ids, lr.data());
  o.forward(ids, lo.data());
  std::vector<greedy_step> steps;
  for (std::size_t i = 0; i < count; ++i) {
    const std::int32_t best = pith::sampler::argmax(lr);
    float second = -std::numeric_limits<float>::infinity();
    for (std::size_t t = 0; t < lr.size(); ++t)
      if (static_cast<std::int32_t>(t) != best) second = std::max(second, lr[t]);
    steps.push_back({best, pith::sampler::argmax(lo), lr[static_cast<std::size_t>(best)] - second});
    r.forward(std::span(&best, 1), lr.data());
    o.forward(std::span(&best, 1), lo.data());
  }
  return steps;
}

float max_difference(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float worst = 0.0f;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst;
}

float max_magnitude(const std::vector<float>& a) {
  float m = 0.0f;
  for (const float v : a) m = std::max(m, std::abs(v));
  return m;
}

const std::vector<std::int32_t> prompt{1, 17, 42, 5, 88, 23, 9, 64};

const dtype quantized_types[] = {dtype::q4_0, dtype::q4_1, dtype::q5_0, dtype::q5_1, dtype::q8_0, dtype::q2_k,
                                 dtype::q3_k, dtype::q4_k, dtype::q5_k, dtype::q6_k, dtype::iq4_nl, dtype::iq4_xs};

/// A file in the temporary folder named after the type (parameterized test names hold a '/').
class typed_file {
 public:
  typed_file(dtype type, std::string_view what)
      : path_(std::filesystem::temp_directory_path() / ("pith_quant_" + std::to_string(::getpid()) + "_" +
                                                         std::string(what) + "_" + std::string(pith::dtype_name(type)) +
                                                         ".gguf")) {}
  typed_file(const typed_file&) = delete;
  typed_file& operator=(const typed_file&) = delete;
  ~typed_file() {
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }
  const std::filesystem::path& path() const noexcept { return path_; }
  void write(std::string_view bytes) const {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw std::runtime_error("cannot write " + path_.string());
  }

 private:
  std::filesystem::path path_;
};

class QuantizedGguf : public ::testing::TestWithParam<dtype> {
 protected:
  void SetUp() override {
    file_ = std::make_unique<typed_file>(GetParam(), "model");
    file_->write(random_gguf(quant_config(false), 11, [&](const std::string&) { return GetParam(); }));
  }
  std::filesystem::path path() const { return file_->path(); }

 private:
  std::unique_ptr<typed_file> file_;
};

TEST_P(QuantizedGguf, MatricesAreViewsIntoTheMapping) {
  const dtype type = GetParam();
  const auto w = pith::load_model(path());
  const auto file = std::static_pointer_cast<const pith::gguf_file>(w.layers[0].wq.owner());
  ASSERT_NE(file, nullptr);
  std::size_t matrix_bytes = 0;
  for (const auto& [name, view] : matrices(w)) {
    EXPECT_EQ(view->type(), type) << name;
    EXPECT_EQ(view->owner(), w.layers[0].wq.owner()) << name << ": every matrix shares the one mapping";
    EXPECT_EQ(view->data(), file->tensor(name).bytes.data()) << name << " is not in place";
    EXPECT_EQ(view->bytes(), file->info(name).byte_size) << name;
    matrix_bytes += view->bytes();
  }
  // Block bytes, not elements: Q4_K's 144 bytes per 256 weights, scales included.
  const std::size_t vectors = (2 * w.layers.size() + 1) * w.config.hidden_size * sizeof(float);
  EXPECT_EQ(w.parameter_bytes(), matrix_bytes + vectors);
  // A decoded token reads every matrix but the (untied) embedding table, of which it reads one row.
  EXPECT_EQ(w.bytes_read_per_token(), matrix_bytes - w.token_embedding.bytes() + vectors);
  EXPECT_EQ(w.layers[1].w_down.bytes(), 256 * pith::dtype_row_bytes(type, 512));
  // The norm gains are float32, as stored.
  EXPECT_FLOAT_EQ(w.layers[0].attn_norm[1], 1.0f + 0.25f * std::sin(1.0f));
}

TEST_P(QuantizedGguf, LogitsMatchTheDequantizedModelAndTheGreedyContinuationIsEqual) {
  const auto quantized = pith::load_model(path());
  const auto dequantized = pith::load_model(path(), {dtype::f32});
  // Widening is the dequantization, element for element.
  const auto a = floats_of(quantized.layers[1].w_up), b = floats_of(dequantized.layers[1].w_up);
  ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0);
  const auto reference = logits_of(dequantized, prompt);
  const auto got = logits_of(quantized, prompt);
  const float scale = max_magnitude(reference);
  ASSERT_GT(scale, 0.5f);
  const float difference = max_difference(got, reference);
  const float bound = same_values_tolerance + activation_quantization_tolerance * scale;
  EXPECT_LE(difference, bound);
  RecordProperty("max_abs_logit_difference", std::to_string(difference));
  // Greedy choices agree wherever the reference's margin exceeds what the bound can move (2 · bound:
  // its best logit down and the runner-up up). These random models are not trained, so some steps
  // are closer than that (Q2_K's bound is wide); each step is fed the reference's token so that one
  // close call does not decide the steps after it.
  for (const auto& step : teacher_forced_greedy(dequantized, quantized, prompt, 8))
    if (step.margin > 2.0f * bound) {
      EXPECT_EQ(step.other, step.reference) << "margin " << step.margin;
    }
}

// Quantizing the float32 checkpoint at load writes the reference quantizer's bytes: the matrices
// equal those of the file quantized ahead of time, so the logits are the same to the bit.
TEST_P(QuantizedGguf, QuantizationAtLoadEqualsTheQuantizedFile) {
  const dtype type = GetParam();
  const typed_file f32_file(type, "f32");
  f32_file.write(random_gguf(quant_config(false), 11, [](const std::string&) { return dtype::f32; }));
  pith::load_options options;
  options.quantize_to = type;
  const auto at_load = pith::load_model(f32_file.path(), options);
  const auto ahead = pith::load_model(path());
  const auto ahead_matrices = matrices(ahead);
  const auto load_matrices = matrices(at_load);
  ASSERT_EQ(ahead_matrices.size(), load_matrices.size());
  for (std::size_t i = 0; i < ahead_matrices.size(); ++i) {
    const auto& [name, view] = load_matrices[i];
    ASSERT_EQ(view->type(), type) << name;
    EXPECT_EQ(std::memcmp(view->data(), ahead_matrices[i].second->data(), view->bytes()), 0) << name;
  }
  EXPECT_EQ(logits_of(at_load, prompt), logits_of(ahead, prompt));
}

INSTANTIATE_TEST_SUITE_P(Types, QuantizedGguf, ::testing::ValuesIn(quantized_types),
                         [](const auto& info) { return std::string(pith::dtype_name(info.param)); });

TEST(QuantizedGgufTied, TheQuantizedEmbeddingTableIsAlsoTheHead) {
  const pith_test::temp_file file(".gguf");
  file.write(random_gguf(quant_config(true), 5, [](const std::string&) { return dtype::q6_k; }));
  const auto w = pith::load_model(file.path());
  ASSERT_TRUE(w.lm_head_storage.empty());
  EXPECT_EQ(w.lm_head().type(), dtype::q6_k);
  EXPECT_EQ(w.lm_head().data(), w.token_embedding.data());
  const auto dequantized = pith::load_model(file.path(), {dtype::f32});
  const auto reference = logits_of(dequantized, prompt);
  EXPECT_LE(max_difference(logits_of(w, prompt), reference),
            same_values_tolerance + activation_quantization_tolerance * max_magnitude(reference));
}

// A mixed file (llama-quantize's Q4_K_M layout) loads each matrix in its own type.
TEST(QuantizedGgufMixed, EachMatrixKeepsItsType) {
  const pith_test::temp_file file(".gguf");
  auto type_of = [](const std::string& name) {
    if (name == "output.weight" || name.find("attn_v") != std::string::npos) return dtype::q6_k;
    if (name.find("ffn_down") != std::string::npos) return dtype::q8_0;
    return dtype::q4_k;
  };
  file.write(random_gguf(quant_config(false), 3, type_of));
  const auto w = pith::load_model(file.path());
  for (const auto& [name, view] : matrices(w)) EXPECT_EQ(view->type(), type_of(name)) << name;
  const auto reference = logits_of(pith::load_model(file.path(), {dtype::f32}), prompt);
  EXPECT_LE(max_difference(logits_of(w, prompt), reference),
            same_values_tolerance + activation_quantization_tolerance * max_magnitude(reference));
}

// note §5: Q4_K_M gives Q6_K to the head and to attn_v / ffn_down of use_more_bits layers, Q4_K
// elsewhere; rows that are not whole super-blocks fall back (Q4_K → Q5_0, Q6_K → Q8_0, and F16
// when not even whole 32-blocks).
TEST(QuantizationMixture, Q4KMFollowsLlamaQuantize) {
  const auto mix = pith::quantization_from_name("q4_k_m");
  ASSERT_TRUE(mix.has_value());
  EXPECT_EQ(mix->name(), "Q4_K_M");
  using pith::matrix_role;
  EXPECT_EQ(mix->type_for(matrix_role::output, 0, 32, 4096, false), dtype::q6_k);
  EXPECT_EQ(mix->type_for(matrix_role::token_embedding, 0, 32, 4096, false), dtype::q4_k);
  EXPECT_EQ(mix->type_for(matrix_role::token_embedding, 0, 32, 4096, true), dtype::q6_k);
  EXPECT_EQ(mix->type_for(matrix_role::attn_q, 0, 32, 4096, false), dtype::q4_k);
  // n = 32: {0-3, 6, 9, ..., 27, 28-31} get more bits.
  std::vector<std::size_t> more;
  for (std::size_t i = 0; i < 32; ++i)
    if (mix->type_for(matrix_role::ffn_down, i, 32, 4096, false) == dtype::q6_k) more.push_back(i);
  EXPECT_EQ(more, (std::vector<std::size_t>{0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31}));
  EXPECT_EQ(mix->type_for(matrix_role::attn_v, 5, 32, 4096, false), dtype::q4_k);
  EXPECT_EQ(mix->type_for(matrix_role::attn_v, 6, 32, 4096, false), dtype::q6_k);
  // Fallbacks by row length.
  EXPECT_EQ(mix->type_for(matrix_role::attn_q, 1, 32, 96, false), dtype::q5_0);
  EXPECT_EQ(mix->type_for(matrix_role::output, 0, 32, 96, false), dtype::q8_0);
  EXPECT_EQ(mix->type_for(matrix_role::attn_q, 1, 32, 48, false), dtype::f16);
  EXPECT_EQ(pith::quantization_from_name("Q5_K_M")->type_for(matrix_role::ffn_up, 1, 32, 160, false), dtype::q5_1);
  EXPECT_EQ(pith::quantization(dtype::iq4_xs).type_for(matrix_role::ffn_up, 1, 32, 160, false), dtype::iq4_nl);
  EXPECT_EQ(pith::quantization(dtype::q8_0).type_for(matrix_role::ffn_up, 1, 32, 100, false), dtype::f16);
  // Names.
  EXPECT_EQ(pith::quantization_from_name("Q8_0")->type, dtype::q8_0);
  EXPECT_FALSE(pith::quantization_from_name("q8_k").has_value());   // activations only
  EXPECT_FALSE(pith::quantization_from_name("f16").has_value());    // not a quantization
  EXPECT_FALSE(pith::quantization_from_name("q8_0_m").has_value());  // no such mixture
  EXPECT_NE(pith::quantization_names().find("q4_k_m"), std::string::npos);
}

TEST(QuantizationMixture, AppliedAtLoad) {
  auto c = quant_config(false);
  c.num_layers = 8;  // use_more_bits: layers 0, 3, 6, 7 of 8
  const pith_test::temp_file file(".gguf");
  file.write(random_gguf(c, 2, [](const std::string&) { return dtype::f32; }));
  pith::load_options options;
  options.quantize_to = pith::quantization_from_name("q4_k_m");
  const auto w = pith::load_model(file.path(), options);
  EXPECT_EQ(w.lm_head_storage.type(), dtype::q6_k);
  EXPECT_EQ(w.token_embedding.type(), dtype::q4_k);
  for (std::size_t i = 0; i < 8; ++i) {
    const bool more = i == 0 || i == 3 || i == 6 || i == 7;
    EXPECT_EQ(w.layers[i].wv.type(), more ? dtype::q6_k : dtype::q4_k) << i;
    EXPECT_EQ(w.layers[i].w_down.type(), more ? dtype::q6_k : dtype::q4_k) << i;
    EXPECT_EQ(w.layers[i].wq.type(), dtype::q4_k) << i;
  }
  pith::load_options both;
  both.convert_to = dtype::f16;
  both.quantize_to = dtype::q8_0;
  PITH_EXPECT_THROW_WITH(pith::load_model(file.path(), both), pith::argument_error, "exclude each other");
}

// Safetensors and llama2.c checkpoints quantize at load too; rows of 48 are not whole blocks of 32,
// so the small safetensors golden falls back to F16 as llama-quantize would.
TEST(QuantizationAtLoad, OtherFormatsAndTheFallback) {
  const auto dir = std::filesystem::path(PITH_TEST_DATA_DIR) / "llama" / "gqa_untied";  // hidden 48
  pith::load_options options;
  options.quantize_to = dtype::q8_0;
  const auto w = pith::load_model(dir, options);
  EXPECT_EQ(w.layers[0].wq.type(), dtype::f16);
  EXPECT_EQ(w.token_embedding.type(), dtype::f16);
  const auto stories = pith_test::shared_model("stories260K/stories260K.bin");
  if (!std::filesystem::exists(stories)) GTEST_SKIP() << "no " << stories;
  const auto in_place = pith::load_model(stories);
  const auto q8 = pith::load_model(stories, options);  // dim 64: whole Q8_0 blocks
  EXPECT_EQ(q8.layers[0].wq.type(), dtype::q8_0);
  EXPECT_EQ(q8.token_embedding.type(), dtype::q8_0);
  const auto reference = logits_of(in_place, {1, 5, 9, 2});
  // Q8_0 weights: each weight moves by at most half a step of amax/127 of its block, a relative
  // rms error of about 0.5% per matrix (measured 0.54% on Gaussian rows): allow 3% of the logits.
  constexpr float q8_0_weight_tolerance = 0.03f;
  EXPECT_LE(max_difference(logits_of(q8, {1, 5, 9, 2}), reference), q8_0_weight_tolerance * max_magnitude(reference));
}

// ---- refusals -------------------------------------------------------------------------------------

std::string one_tensor_file(std::uint32_t ggml_type, std::vector<std::uint64_t> ne, std::size_t data_bytes) {
  pith_test::gguf_builder b;
  b.header(1, 0).tensor_info("blk.0.attn_q.weight", ne, ggml_type, 0).align().data(std::string(data_bytes, '\0'));
  return b.bytes();
}

TEST(QuantizedGgufErrors, TypesPithLacksAreRefusedByName) {
  const pith_test::temp_file file(".gguf");
  const std::pair<std::uint32_t, const char*> cases[] = {
      {17, "IQ2_XS"}, {16, "IQ2_XXS"}, {21, "IQ3_S"}, {35, "TQ2_0"}, {9, "Q8_1"}, {15, "Q8_K"}, {24, "I8"}};
  for (const auto& [id, name] : cases) {
    const auto* info = pith::find_ggml_type(id);
    ASSERT_NE(info, nullptr);
    file.write(one_tensor_file(id, {256, 2}, 2 * info->block_bytes * (256 / info->block_size)));
    try {
      const pith::gguf_file g(file.path());
      ADD_FAILURE() << name << " accepted";
    } catch (const pith::format_error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(file.path().string()), std::string::npos) << what;
      EXPECT_NE(what.find("'blk.0.attn_q.weight'"), std::string::npos) << what;
      EXPECT_NE(what.find(std::string("type ") + name + " "), std::string::npos) << what;
    }
  }
  // Q8_1 is 36 bytes per block (f16 d and s), not gguf-py's 40.
  EXPECT_EQ(pith::find_ggml_type(9)->block_bytes, 36u);
}

TEST(QuantizedGgufErrors, TruncatedAndPartialBlocksAreRefusedByName) {
  const pith_test::temp_file file(".gguf");
  // Two Q4_K rows need 288 bytes; the file holds 200.
  file.write(one_tensor_file(12, {256, 2}, 200));
  PITH_EXPECT_THROW_WITH(pith::gguf_file(file.path()), pith::format_error,
                         "tensor 'blk.0.attn_q.weight' occupies bytes 0 to 288 of a data section of 200 bytes");
  // Rows of 100 elements are not whole Q8_0 blocks.
  file.write(one_tensor_file(8, {100, 2}, 256));
  PITH_EXPECT_THROW_WITH(pith::gguf_file(file.path()), pith::format_error,
                         "'blk.0.attn_q.weight' has rows of 100 elements, not a multiple of the Q8_0 block size 32");
  // A whole model cut inside its last quantized matrix.
  std::string model = random_gguf(quant_config(false), 1, [](const std::string&) { return dtype::q5_k; });
  model.resize(model.size() - 1000);
  file.write(model);
  PITH_EXPECT_THROW_WITH(pith::load_model(file.path()), pith::format_error, "tensor 'output.weight' occupies");
}

// A quantized 1-D tensor (a norm gain) is dequantized to float32 at load.
TEST(QuantizedGgufVectors, AQuantizedNormIsDequantized) {
  const auto c = quant_config(false);
  const std::string bytes = random_gguf(c, 4, [](const std::string&) { return dtype::q8_0; });
  const pith_test::temp_file original(".gguf");
  original.write(bytes);
  const pith::gguf_file g(original.path());
  // Rewrite blk.1.ffn_norm.weight as Q8_0 blocks of the same values.
  std::vector<gguf_tensor> tensors;
  std::vector<float> gains;
  for (const auto& info : g.tensor_infos()) {
    const auto t = g.tensor(info.name);
    std::vector<std::uint64_t> ne(info.ne.begin(), info.ne.end());
    if (info.name == "blk.1.ffn_norm.weight") {
      gains = pith::to_float(t);
      tensors.push_back({info.name, ne, 8, encode(gains, 1, gains.size(), dtype::q8_0)});
    } else {
      tensors.push_back({info.name, ne, info.type, std::string(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size())});
    }
  }
  const pith_test::temp_file rewritten(".gguf");
  rewritten.write(gguf_model_bytes(c, tensors));
  const auto w = pith::load_model(rewritten.path());
  std::vector<float> expected(gains.size());
  const std::string q = encode(gains, 1, gains.size(), dtype::q8_0);
  pith::quant::dequantize_row(dtype::q8_0, reinterpret_cast<const std::byte*>(q.data()), gains.size(), expected.data());
  ASSERT_EQ(w.layers[1].mlp_norm.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(w.layers[1].mlp_norm[i], expected[i]) << i;
}

// ---- the twin's quantized goldens (tests/data/quant/models/<type>) ---------------------------------

std::vector<std::string> golden_models() {
  std::vector<std::string> out;
  if (std::filesystem::is_directory(quant_models))
    for (const auto& entry : std::filesystem::directory_iterator(quant_models))
      if (std::filesystem::exists(entry.path() / "model.gguf")) out.push_back(entry.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

class QuantizedGolden : public ::testing::TestWithParam<std::string> {
 protected:
  std::filesystem::path dir() const { return quant_models / GetParam(); }
  nlohmann::json expected() const {
    std::ifstream in(dir() / "expected.json");
    return nlohmann::json::parse(in);
  }
};

// Each matrix is a view into the mapped file, in the type the twin wrote (a mixture's too).
TEST_P(QuantizedGolden, LoadsInPlaceInTheTypesOfTheFile) {
  const auto json = expected();
  const auto w = pith::load_model(dir() / "model.gguf");
  const auto file = std::static_pointer_cast<const pith::gguf_file>(w.layers[0].wq.owner());
  ASSERT_NE(file, nullptr);
  const auto types = json.at("tensor_types").get<std::map<std::string, std::string>>();
  for (const auto& [tensor, view] : matrices(w)) {
    EXPECT_EQ(view->data(), file->tensor(tensor).bytes.data()) << tensor << " is not in place";
    EXPECT_EQ(pith::dtype_name(view->type()), types.at(tensor)) << tensor;
  }
  // Quantizing at load to the file's own type (or mixture) keeps every matrix in place.
  const auto file_type = json.at("file_type").get<std::string>();
  pith::load_options options;
  options.quantize_to = pith::quantization_from_name(file_type);
  ASSERT_TRUE(options.quantize_to.has_value()) << file_type;
  const auto again = pith::load_model(dir() / "model.gguf", options);
  const auto mapping = std::static_pointer_cast<const pith::gguf_file>(again.layers[0].wq.owner());
  ASSERT_NE(mapping, nullptr);
  for (const auto& [tensor, view] : matrices(again))
    EXPECT_EQ(view->data(), mapping->tensor(tensor).bytes.data()) << tensor << ": the " << file_type << " choice differs";
}

// Logits at every prompt position against the twin's float32 forward pass over the dequantized
// weights, and the greedy continuation (the twin's top-2 margins are all ≥ 0.75).
TEST_P(QuantizedGolden, LogitsAndGreedyContinuationMatchTheTwin) {
  const auto json = expected();
  const auto w = pith::load_model(dir() / "model.gguf");
  const auto ids = json.at("ids").get<std::vector<std::int32_t>>();
  const auto logits = json.at("logits").get<std::vector<std::vector<float>>>();
  const auto got = logits_of(w, ids);
  const std::size_t vocab = w.config.vocab_size;
  ASSERT_EQ(logits.size(), ids.size());
  float worst = 0.0f, scale = 0.0f;
  for (std::size_t t = 0; t < ids.size(); ++t) {
    ASSERT_EQ(logits[t].size(), vocab);
    for (std::size_t v = 0; v < vocab; ++v) {
      worst = std::max(worst, std::abs(got[t * vocab + v] - logits[t][v]));
      scale = std::max(scale, std::abs(logits[t][v]));
    }
  }
  EXPECT_LE(worst, same_values_tolerance + activation_quantization_tolerance * scale);
  RecordProperty("max_abs_logit_difference", std::to_string(worst));
  ASSERT_EQ(json.at("greedy_from").get<std::size_t>(), ids.size());
  const auto greedy = json.at("greedy").get<std::vector<std::int32_t>>();
  EXPECT_EQ(greedy_of(w, ids, greedy.size()), greedy);
}

// The legacy symmetric types are fixed points of their reference quantizer (the extreme element of
// each block maps back to the same scale, the others to their levels), so quantizing the file's
// dequantized matrices at load reproduces the twin's bytes and the logits to the bit.
TEST(QuantizedGoldenRequantized, LegacySymmetricFilesAreFixedPointsOfTheirQuantizer) {
  for (const auto& [name, type] : {std::pair{"q8_0", dtype::q8_0}, {"q4_0", dtype::q4_0}, {"q5_0", dtype::q5_0}}) {
    const auto path = quant_models / name / "model.gguf";
    if (!std::filesystem::exists(path)) GTEST_SKIP() << "no " << path;
    const auto w = pith::load_model(path);
    const auto widened = pith::load_model(path, {dtype::f32});
    const auto original = matrices(w), floats = matrices(widened);
    for (std::size_t i = 0; i < original.size(); ++i) {
      const auto requantized = pith::convert_tensor(*floats[i].second, type);
      EXPECT_EQ(std::memcmp(requantized.data(), original[i].second->data(), requantized.bytes()), 0)
          << name << " " << original[i].first;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(TwinModels, QuantizedGolden, ::testing::ValuesIn(golden_models()),
                         [](const auto& info) { return info.param; });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(QuantizedGolden);

}  // namespace
