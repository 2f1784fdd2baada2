// SPDX-License-Identifier: MIT
// Weights in their checkpoint's type: matrices are views into the mapped file (no copy), the
// conversion at load is an explicit option, and a session over F16/BF16 views answers as one over
// the same values widened to float32.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <pith/io/gguf.hpp>
#include <pith/io/llama2c.hpp>
#include <pith/io/safetensors.hpp>
#include <pith/model/random_weights.hpp>
#include <pith/model/transformer.hpp>

#include "../io/test_util.hpp"

namespace {

const std::filesystem::path typed_data = std::filesystem::path(PITH_TEST_DATA_DIR) / "llama";
const std::filesystem::path shared_models = std::filesystem::path(PITH_SHARED_MODELS_DIR);

// Same values, other summation orders: the typed kernels convert F16/BF16 exactly and accumulate in
// float32 like the float32 kernels, in another order (row-wise dot products against Eigen's GEMV).
// Logits of |10| from sums of a few hundred products differ by a few ulps of the partial sums.
constexpr float same_values_tolerance = 1e-4f;

std::vector<float> logits_of(const pith::model_weights& w, const std::vector<std::int32_t>& ids) {
  pith::session s(w, {64, 64});
  std::vector<float> logits(ids.size() * w.config.vocab_size);
  s.forward(ids, logits.data(), true);
  return logits;
}

float typed_max_difference(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float worst = 0.0f;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst;
}

/// Every weight matrix of `w`, with its name.
std::vector<std::pair<std::string, const pith::tensor_view*>> matrices(const pith::model_weights& w) {
  std::vector<std::pair<std::string, const pith::tensor_view*>> out{{"token_embedding", &w.token_embedding}};
  for (std::size_t l = 0; l < w.layers.size(); ++l) {
    const auto& layer = w.layers[l];
    const std::string p = "layer " + std::to_string(l) + " ";
    for (const auto& [name, view] : {std::pair{"wq", &layer.wq}, {"wk", &layer.wk}, {"wv", &layer.wv}, {"wo", &layer.wo},
                                     {"w_gate", &layer.w_gate}, {"w_up", &layer.w_up}, {"w_down", &layer.w_down}})
      out.emplace_back(p + name, view);
  }
  if (!w.lm_head_storage.empty()) out.emplace_back("lm_head", &w.lm_head_storage);
  return out;
}

class StoredType : public ::testing::TestWithParam<std::pair<const char*, pith::dtype>> {};

TEST_P(StoredType, SafetensorsMatricesAreViewsIntoTheMappedFile) {
  const auto [name, type] = GetParam();
  const auto w = pith::load_model(typed_data / name);
  const auto file = std::static_pointer_cast<const pith::safetensors_file>(w.layers[0].wq.owner());
  ASSERT_NE(file, nullptr);
  for (const auto& [label, view] : matrices(w)) {
    EXPECT_EQ(view->type(), type) << label;
    EXPECT_EQ(view->owner(), w.layers[0].wq.owner()) << label << ": every matrix shares the one mapping";
  }
  // The bytes are the file's own: the view points at the mapped tensor.
  EXPECT_EQ(w.layers[0].wq.data(), file->tensor("model.layers.0.self_attn.q_proj.weight").bytes.data());
  EXPECT_EQ(w.layers[1].w_down.data(), file->tensor("model.layers.1.mlp.down_proj.weight").bytes.data());
  // Bytes per decoded token follow the stored type: half of the float32 conversion's matrices.
  const auto widened = pith::load_model(typed_data / name, {pith::dtype::f32});
  std::size_t stored = 0, as_float = 0;
  for (const auto& [label, view] : matrices(w)) stored += view->bytes();
  for (const auto& [label, view] : matrices(widened)) as_float += view->bytes();
  EXPECT_EQ(2 * stored, as_float);
}

TEST_P(StoredType, ConversionAtLoadIsAnOptionAndGivesTheSameLogits) {
  const auto [name, type] = GetParam();
  const auto in_place = pith::load_model(typed_data / name);
  const auto widened = pith::load_model(typed_data / name, {pith::dtype::f32});
  for (const auto& [label, view] : matrices(widened)) {
    EXPECT_EQ(view->type(), pith::dtype::f32) << label;
    EXPECT_NE(view->owner(), in_place.layers[0].wq.owner()) << label << ": a converted matrix owns its copy";
  }
  // Widening is exact: every element of the converted copy equals the stored value.
  std::vector<float> a(in_place.layers[0].wq.cols()), b(a.size());
  for (std::size_t r = 0; r < in_place.layers[0].wq.rows(); ++r) {
    pith::row_to_float(in_place.layers[0].wq, r, a.data());
    pith::row_to_float(widened.layers[0].wq, r, b.data());
    ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << "row " << r;
  }
  const std::vector<std::int32_t> ids{1, 5, 9, 2, 7, 3};
  EXPECT_LE(typed_max_difference(logits_of(in_place, ids), logits_of(widened, ids)), same_values_tolerance);
}

INSTANTIATE_TEST_SUITE_P(Types, StoredType,
                         ::testing::Values(std::pair{"f16", pith::dtype::f16}, std::pair{"bf16", pith::dtype::bf16}),
                         [](const auto& info) { return std::string(info.param.first); });

TEST(StoredTypeFloat32, SafetensorsAndLlama2cFloat32AreViewsToo) {
  const auto w = pith::load_model(typed_data / "gqa_untied");
  const auto file = std::static_pointer_cast<const pith::safetensors_file>(w.layers[0].wq.owner());
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(w.layers[0].wq.type(), pith::dtype::f32);
  EXPECT_EQ(w.lm_head().data(), file->tensor("lm_head.weight").bytes.data());
  const auto checkpoint = shared_models / "stories260K" / "stories260K.bin";
  if (!std::filesystem::exists(checkpoint)) GTEST_SKIP() << checkpoint << " is absent (see ../shared/models/README.md)";
  const auto l2c = pith::load_model(checkpoint);
  const auto source = std::static_pointer_cast<const pith::llama2c_checkpoint>(l2c.token_embedding.owner());
  ASSERT_NE(source, nullptr);
  EXPECT_EQ(static_cast<const void*>(l2c.token_embedding.data()), static_cast<const void*>(source->weights().token_embedding.data()));
}

TEST(StoredTypeGguf, F16GgufMatricesStayF16InTheMapping) {
  const auto path = shared_models / "llama2-tiny-random-gguf" / "llama-2-tiny-random.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is absent (see ../shared/models/README.md)";
  const auto w = pith::load_model(path);
  const auto file = std::static_pointer_cast<const pith::gguf_file>(w.layers[0].wq.owner());
  ASSERT_NE(file, nullptr);
  std::size_t f16 = 0;
  for (const auto& [label, view] : matrices(w)) {
    if (view->type() == pith::dtype::f16) ++f16;
    EXPECT_EQ(view->owner(), w.layers[0].wq.owner()) << label;
  }
  EXPECT_GT(f16, 0u) << "the file stores F16 matrices";
  EXPECT_EQ(w.layers[0].wq.data(), file->tensor("blk.0.attn_q.weight").bytes.data());
  // And the session runs on them as it runs on their float32 conversion.
  const auto widened = pith::load_model(path, {pith::dtype::f32});
  const std::vector<std::int32_t> ids{1, 2, 3, 4};
  EXPECT_LE(typed_max_difference(logits_of(w, ids), logits_of(widened, ids)), same_values_tolerance);
}

// Rounding every weight to F16 (11 significant bits) or BF16 (8) moves a logit by roughly
// |logit| · 2^-p · sqrt(path length): a model of unit-variance matrices keeps logits within a
// few units, so F16 stays within 0.05 and BF16 within 0.4 of the float32 model.
constexpr float f16_rounding_tolerance = 0.05f;
constexpr float bf16_rounding_tolerance = 0.4f;

TEST(StoredTypeRandom, RandomWeightsInEachTypeAreTheSameDrawsRounded) {
  pith::model_config c;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.vocab_size = 101;
  c.rms_norm_eps = 1e-5f;
  c.max_position_embeddings = 64;
  c.source = "test config";
  const auto f32 = pith::random_weights(c, 11);
  const auto f16 = pith::random_weights(c, 11, pith::dtype::f16);
  const auto bf16 = pith::random_weights(c, 11, pith::dtype::bf16);
  EXPECT_EQ(f16.layers[1].w_up.type(), pith::dtype::f16);
  EXPECT_EQ(bf16.token_embedding.type(), pith::dtype::bf16);
  std::size_t f32_bytes = 0, f16_bytes = 0;
  for (const auto& [label, view] : matrices(f32)) f32_bytes += view->bytes();
  for (const auto& [label, view] : matrices(f16)) f16_bytes += view->bytes();
  EXPECT_EQ(2 * f16_bytes, f32_bytes) << "F16 matrices take half the bytes";
  std::vector<float> a(c.hidden_size);
  pith::row_to_float(f16.layers[0].wq, 3, a.data());
  std::vector<float> b(c.hidden_size);
  pith::row_to_float(f32.layers[0].wq, 3, b.data());
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], pith::half_to_float(pith::float_to_half(b[i])));
  const std::vector<std::int32_t> ids{3, 1, 4, 1, 5, 9, 2, 6};
  const auto reference = logits_of(f32, ids);
  EXPECT_LE(typed_max_difference(logits_of(f16, ids), reference), f16_rounding_tolerance);
  EXPECT_LE(typed_max_difference(logits_of(bf16, ids), reference), bf16_rounding_tolerance);
  EXPECT_GT(typed_max_difference(logits_of(bf16, ids), reference), 0.0f) << "BF16 rounding must show";
}

TEST(StoredTypeErrors, AMatrixOfAnotherTypeIsRefusedByName) {
  const auto original = typed_data / "gqa_untied";
  const pith::safetensors_file source(original / "model.safetensors");
  std::vector<std::vector<std::byte>> storage;
  std::vector<pith::safetensors_entry> entries;
  for (const auto& name : source.names()) {
    const auto tensor = source.tensor(name);
    if (name == "model.layers.1.mlp.up_proj.weight") {
      // The same shape as 64-bit integers: a type pith cannot multiply by.
      storage.emplace_back(static_cast<std::size_t>(tensor.element_count()) * 8, std::byte{0});
      entries.push_back({name, "I64", tensor.shape, storage.back()});
    } else {
      storage.emplace_back(tensor.bytes.begin(), tensor.bytes.end());
      entries.push_back({name, std::string(tensor.dtype_name), tensor.shape, storage.back()});
    }
  }
  const auto directory = std::filesystem::temp_directory_path() / ("pith_typed_" + std::to_string(::getpid()));
  std::filesystem::create_directories(directory);
  std::filesystem::copy_file(original / "config.json", directory / "config.json",
                             std::filesystem::copy_options::overwrite_existing);
  pith::write_safetensors(directory / "model.safetensors", entries);
  PITH_EXPECT_THROW_WITH(pith::load_model(directory), pith::format_error,
                         "'model.layers.1.mlp.up_proj.weight' has dtype I64");
  std::filesystem::remove_all(directory);
}

TEST(TensorView, BorrowOwnAndRowsViews) {
  const std::vector<float> values{1, 2, 3, 4, 5, 6};
  const auto view = pith::tensor_view::borrow(values.data(), 3, 2);
  EXPECT_EQ(view.owner(), nullptr);
  EXPECT_EQ(view.f32(), values.data());
  EXPECT_EQ(view.bytes(), 24u);
  const auto tail = view.rows_view(1, 2);
  float row[2];
  pith::row_to_float(tail, 1, row);
  EXPECT_EQ(row[0], 5.0f);
  EXPECT_EQ(row[1], 6.0f);
  PITH_EXPECT_THROW_WITH((void)view.rows_view(2, 2), pith::argument_error, "rows [2, 4) of 3");
  // Strided rows: the F32 fast path is only for packed rows.
  const auto strided = pith::tensor_view::borrow(values.data(), pith::dtype::f32, 2, 2, 12);
  EXPECT_EQ(strided.f32(), nullptr);
  pith::row_to_float(strided, 1, row);
  EXPECT_EQ(row[0], 4.0f);
  PITH_EXPECT_THROW_WITH((void)pith::tensor_view::borrow(values.data(), pith::dtype::f32, 2, 3, 8), pith::shape_error,
                         "overlap");
  pith::aligned_buffer<float> small(3);
  PITH_EXPECT_THROW_WITH((void)pith::tensor_view::own(std::move(small), pith::dtype::f32, 2, 2), pith::shape_error,
                         "holds 12 bytes");
  pith::aligned_buffer<float> owned(4);
  owned[3] = 7.0f;
  const auto kept = pith::tensor_view::own(std::move(owned), pith::dtype::f32, 2, 2);
  const auto copy = kept;
  EXPECT_EQ(copy.owner(), kept.owner());
  pith::row_to_float(copy, 1, row);
  EXPECT_EQ(row[1], 7.0f);
}

}  // namespace
