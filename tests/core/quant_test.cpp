// SPDX-License-Identifier: MIT
// The block formats against the numpy twin (tests/data/quant, tools/pith_quant.py): dequantization
// bit for bit on random and edge blocks, the reference quantizers byte for byte, and their errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include <pith/core/quant.hpp>
#include <pith/core/quantize.hpp>
#include <pith/core/tensor.hpp>

namespace {

const std::filesystem::path quant_data = std::filesystem::path(PITH_TEST_DATA_DIR) / "quant";

std::vector<char> read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<float> read_floats(const std::filesystem::path& path) {
  const auto bytes = read_bytes(path);
  std::vector<float> out(bytes.size() / 4);
  std::memcpy(out.data(), bytes.data(), out.size() * 4);
  return out;
}

nlohmann::json index_json() {
  std::ifstream in(quant_data / "index.json");
  return nlohmann::json::parse(in);
}

std::uint32_t bits_of(float v) {
  std::uint32_t b;
  std::memcpy(&b, &v, 4);
  return b;
}

// The weight types with a reference quantizer (note §4).
const pith::dtype weight_types[] = {pith::dtype::q4_0, pith::dtype::q4_1, pith::dtype::q5_0,  pith::dtype::q5_1,
                                    pith::dtype::q8_0, pith::dtype::q2_k, pith::dtype::q3_k,  pith::dtype::q4_k,
                                    pith::dtype::q5_k, pith::dtype::q6_k, pith::dtype::iq4_nl, pith::dtype::iq4_xs};

class EveryBlockType : public ::testing::TestWithParam<pith::dtype> {};

// Every dequantizer (weights and the Q8_1 / Q8_K activation formats) equals the twin bit for bit,
// on random blocks and on the edge blocks: zero bytes, the largest f16 scale, −0, subnormal
// scales, negative scales, extreme quant bytes.
TEST_P(EveryBlockType, DequantizationEqualsTheTwinBitForBit) {
  const pith::dtype type = GetParam();
  const auto entry = index_json()["blocks"][std::string(pith::dtype_name(type))];
  const auto blocks = read_bytes(quant_data / entry["bytes"].get<std::string>());
  const auto expected = read_floats(quant_data / entry["values"].get<std::string>());
  const auto count = entry["count"].get<std::size_t>();
  const auto labels = entry["labels"].get<std::vector<std::string>>();
  const std::size_t n = pith::dtype_block_elements(type), bytes = pith::dtype_block_bytes(type);
  ASSERT_EQ(entry["block_bytes"].get<std::size_t>(), bytes);
  ASSERT_EQ(blocks.size(), count * bytes);
  ASSERT_EQ(expected.size(), count * n);
  ASSERT_GE(count, 32u);  // random blocks and the edge cases
  std::vector<float> out(n);
  for (std::size_t b = 0; b < count; ++b) {
    pith::quant::visit_quantized(type, [&](auto t) {
      pith::quant::dequantize_block<decltype(t)::value>(reinterpret_cast<const std::byte*>(blocks.data()) + b * bytes,
                                                         out.data());
    });
    for (std::size_t e = 0; e < n; ++e)
      ASSERT_EQ(bits_of(out[e]), bits_of(expected[b * n + e]))
          << pith::dtype_name(type) << " block " << b << " (" << labels[b] << ") element " << e << ": " << out[e]
          << " vs " << expected[b * n + e];
  }
  // The row function agrees with the block function (all blocks as one row).
  std::vector<float> row(count * n);
  pith::quant::dequantize_row(type, reinterpret_cast<const std::byte*>(blocks.data()), count * n, row.data());
  EXPECT_EQ(std::memcmp(row.data(), expected.data(), row.size() * 4), 0);
}

INSTANTIATE_TEST_SUITE_P(Types, EveryBlockType,
                         ::testing::Values(pith::dtype::q4_0, pith::dtype::q4_1, pith::dtype::q5_0, pith::dtype::q5_1,
                                           pith::dtype::q8_0, pith::dtype::q8_1, pith::dtype::q2_k, pith::dtype::q3_k,
                                           pith::dtype::q4_k, pith::dtype::q5_k, pith::dtype::q6_k, pith::dtype::q8_k,
                                           pith::dtype::iq4_nl, pith::dtype::iq4_xs),
                         [](const auto& info) { return std::string(pith::dtype_name(info.param)); });

class WeightType : public ::testing::TestWithParam<pith::dtype> {};

// quantize_row writes the twin's reference bytes for every row: random rows of several scales,
// .5 ties (roundf away from zero in Q8_0, nearest-even elsewhere), ±0, spikes, equal magnitudes of
// opposite sign, constant rows, values below GROUP_MAX_EPS and float32 subnormals.
TEST_P(WeightType, QuantizerBytesEqualTheTwin) {
  const pith::dtype type = GetParam();
  const auto index = index_json()["quantize"];
  const auto rows = index["rows"].get<std::size_t>(), cols = index["cols"].get<std::size_t>();
  const auto labels = index["row_labels"].get<std::vector<std::string>>();
  const auto input = read_floats(quant_data / index["input"].get<std::string>());
  const auto output = index["outputs"][std::string(pith::dtype_name(type))];
  const auto expected = read_bytes(quant_data / output["bytes"].get<std::string>());
  const std::size_t row_bytes = pith::dtype_row_bytes(type, cols);
  ASSERT_EQ(output["row_bytes"].get<std::size_t>(), row_bytes);
  ASSERT_EQ(input.size(), rows * cols);
  ASSERT_EQ(expected.size(), rows * row_bytes);
  std::vector<std::byte> out(row_bytes);
  for (std::size_t r = 0; r < rows; ++r) {
    pith::quant::quantize_row(type, input.data() + r * cols, cols, out.data());
    const auto* want = reinterpret_cast<const std::byte*>(expected.data()) + r * row_bytes;
    if (std::memcmp(out.data(), want, row_bytes) != 0) {
      std::size_t first = 0;
      while (out[first] == want[first]) ++first;
      ADD_FAILURE() << pith::dtype_name(type) << " row " << r << " (" << labels[r] << "): first differing byte "
                    << first << " (block " << first / pith::dtype_block_bytes(type) << ", offset "
                    << first % pith::dtype_block_bytes(type) << "): " << static_cast<int>(out[first]) << " vs "
                    << static_cast<int>(want[first]);
    }
  }
}

// Quantize → dequantize error on Gaussian rows: the relative RMS error of each format lies in a
// band around its expected size, so a quantizer that silently degrades (a wrong scale search, a
// lost high bit) fails even where no twin bytes exist.
TEST_P(WeightType, RoundTripErrorIsTheFormatsOwn) {
  const pith::dtype type = GetParam();
  // Upper bounds of ‖x − dequant(quant(x))‖ / ‖x‖ for unit Gaussian rows, about 1.3x the values
  // measured on these draws (Q8_0 0.0054, Q6_K 0.018, Q5_x 0.036-0.043, Q4_x 0.071-0.086, Q3_K
  // 0.15, Q2_K 0.30): a format's error is set by its bits per weight.
  auto bound = [](pith::dtype t) {
    switch (t) {
      case pith::dtype::q8_0: return 0.0075;
      case pith::dtype::q6_k: return 0.025;
      case pith::dtype::q5_0:
      case pith::dtype::q5_1:
      case pith::dtype::q5_k: return 0.057;
      case pith::dtype::q2_k: return 0.39;
      case pith::dtype::q3_k: return 0.2;
      default: return 0.115;  // the 4-bit formats
    }
  };
  const std::size_t cols = 4096;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(cols), back(cols);
  for (auto& v : x) v = normal(rng);
  std::vector<std::byte> q(pith::dtype_row_bytes(type, cols));
  pith::quant::quantize_row(type, x.data(), cols, q.data());
  pith::quant::dequantize_row(type, q.data(), cols, back.data());
  double error = 0, norm = 0;
  for (std::size_t i = 0; i < cols; ++i) {
    error += (double(back[i]) - x[i]) * (double(back[i]) - x[i]);
    norm += double(x[i]) * x[i];
  }
  const double relative = std::sqrt(error / norm);
  EXPECT_LT(relative, bound(type)) << pith::dtype_name(type);
  EXPECT_GT(relative, bound(type) / 4) << pith::dtype_name(type) << ": suspiciously exact";
  // Deterministic, and blocks are independent: quantizing block by block gives the same bytes.
  std::vector<std::byte> again(q.size());
  const std::size_t n = pith::dtype_block_elements(type), bytes = pith::dtype_block_bytes(type);
  for (std::size_t b = 0; b < cols / n; ++b) pith::quant::quantize_row(type, x.data() + b * n, n, again.data() + b * bytes);
  EXPECT_EQ(std::memcmp(q.data(), again.data(), q.size()), 0);
}

// A zero row quantizes to blocks that dequantize to zeros (IQ4_XS stores a −0 scale, as llama.cpp).
TEST_P(WeightType, ZeroRowsStayZero) {
  const pith::dtype type = GetParam();
  const std::size_t cols = 512;
  std::vector<float> x(cols, 0.0f), back(cols, 1.0f);
  std::vector<std::byte> q(pith::dtype_row_bytes(type, cols));
  pith::quant::quantize_row(type, x.data(), cols, q.data());
  pith::quant::dequantize_row(type, q.data(), cols, back.data());
  for (std::size_t i = 0; i < cols; ++i) ASSERT_EQ(back[i], 0.0f) << pith::dtype_name(type) << " element " << i;
}

INSTANTIATE_TEST_SUITE_P(Types, WeightType, ::testing::ValuesIn(weight_types),
                         [](const auto& info) { return std::string(pith::dtype_name(info.param)); });

// Q8_0 by hand (quantize_row_q8_0_ref): d = amax / 127, q = roundf(x / d) with ties away from
// zero, on a block whose exact halves would round to even under nint.
TEST(Quantize, Q8_0FollowsTheReferenceFormula) {
  float x[32];
  for (int i = 0; i < 32; ++i) x[i] = static_cast<float>(i - 16) + 0.5f;  // ±0.5, ±1.5, ..., 15.5
  x[31] = 127.0f;                                                         // amax = 127: d = 1, id = 1
  pith::quant::block_q8_0 block;
  pith::quant::quantize_row(pith::dtype::q8_0, x, 32, reinterpret_cast<std::byte*>(&block));
  EXPECT_EQ(pith::half_to_float(block.d), 1.0f);
  for (int i = 0; i < 31; ++i) EXPECT_EQ(block.qs[i], static_cast<int>(std::roundf(x[i]))) << i;
  EXPECT_EQ(block.qs[16], 1);    // 0.5 → 1 (away from zero; nint would give 0)
  EXPECT_EQ(block.qs[15], -1);   // −0.5 → −1
  EXPECT_EQ(block.qs[18], 3);    // 2.5 → 3
  EXPECT_EQ(block.qs[31], 127);
}

TEST(Quantize, TypesWithoutAQuantizerAndPartialBlocksAreRefused) {
  std::vector<float> x(256, 1.0f);
  std::vector<std::byte> out(1024);
  for (const pith::dtype t : {pith::dtype::f32, pith::dtype::f16, pith::dtype::bf16, pith::dtype::q8_1, pith::dtype::q8_k}) {
    EXPECT_FALSE(pith::quant::dtype_has_quantizer(t));
    try {
      pith::quant::quantize_row(t, x.data(), 256, out.data());
      ADD_FAILURE() << pith::dtype_name(t) << " accepted";
    } catch (const pith::argument_error& e) {
      EXPECT_NE(std::string(e.what()).find(pith::dtype_name(t)), std::string::npos) << e.what();
    }
  }
  try {
    pith::quant::quantize_row(pith::dtype::q4_k, x.data(), 96, out.data());
    ADD_FAILURE() << "96 values accepted as Q4_K blocks";
  } catch (const pith::argument_error& e) {
    EXPECT_NE(std::string(e.what()).find("96 values are not whole Q4_K blocks of 256"), std::string::npos) << e.what();
  }
}

}  // namespace
