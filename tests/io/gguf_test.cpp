// SPDX-License-Identifier: MIT
// Tests of the GGUF reader: every value type, tensor layout checks, real files, truncation and gguf_corruption.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <pith/io/gguf.hpp>

#include "test_util.hpp"

namespace {

using pith_test::gguf_builder;
using pith_test::temp_file;

enum : std::uint32_t {
  t_u8 = 0,
  t_i8,
  t_u16,
  t_i16,
  t_u32,
  t_i32,
  t_f32,
  t_bool,
  t_string,
  t_array,
  t_u64,
  t_i64,
  t_f64
};

// A small valid file: one key of every scalar type, arrays, and three tensors (F32, F16, BF16).
std::string every_type_file() {
  gguf_builder b;
  b.header(3, 17)
      .kv<std::uint8_t>("u8", t_u8, 200)
      .kv<std::int8_t>("i8", t_i8, -100)
      .kv<std::uint16_t>("u16", t_u16, 60000)
      .kv<std::int16_t>("i16", t_i16, -30000)
      .kv<std::uint32_t>("u32", t_u32, 4000000000u)
      .kv<std::int32_t>("i32", t_i32, -2000000000)
      .kv<float>("f32", t_f32, 1.5f)
      .kv<std::uint8_t>("flag", t_bool, 1)
      .kv_string("name", "pith \xE2\x96\x81 test")
      .kv<std::uint64_t>("u64", t_u64, 1ull << 40)
      .kv<std::int64_t>("i64", t_i64, -(1ll << 40))
      .kv<double>("f64", t_f64, 0.1)
      .kv_array<std::int32_t>("ints", t_i32, {3, -1, 4})
      .kv_array<float>("floats", t_f32, {0.5f, -0.25f})
      .kv_string_array("strings", {"a", "", "\xE2\x96\x81hello"})
      .kv_array<std::uint8_t>("bools", t_bool, {1, 0, 1})
      .kv_array<std::uint64_t>("empty", t_u64, {});
  b.tensor_info("f32.weight", {3, 2}, 0, 0)     // 24 bytes at 0
      .tensor_info("f16.weight", {4}, 1, 32)    // 8 bytes at 32
      .tensor_info("bf16.weight", {2}, 30, 64)  // 4 bytes at 64
      .align();
  std::string data = pith_test::le_bytes<float>({1, 2, 3, 4, 5, 6});
  data.append(8, '\0');
  data += pith_test::le_bytes<std::uint16_t>({0x3c00, 0x0001, 0xfc00, 0x7bff});
  data.append(24, '\0');
  data += pith_test::le_bytes<std::uint16_t>({0x3f80, 0xc040});
  b.data(data);
  return b.bytes();
}

TEST(Gguf, ReadsEveryValueType) {
  const temp_file file(".gguf");
  file.write(every_type_file());
  const pith::gguf_file g(file.path());
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.metadata().size(), 17u);
  EXPECT_EQ(g.metadata().front().first, "u8");  // file order
  EXPECT_EQ(g.get_uint8("u8"), 200);
  EXPECT_EQ(g.get_int8("i8"), -100);
  EXPECT_EQ(g.get_uint16("u16"), 60000);
  EXPECT_EQ(g.get_int16("i16"), -30000);
  EXPECT_EQ(g.get_uint32("u32"), 4000000000u);
  EXPECT_EQ(g.get_int32("i32"), -2000000000);
  EXPECT_EQ(g.get_float("f32"), 1.5f);
  EXPECT_TRUE(g.get_bool("flag"));
  EXPECT_EQ(g.get_string("name"), "pith \xE2\x96\x81 test");
  EXPECT_EQ(g.get_uint64("u64"), 1ull << 40);
  EXPECT_EQ(g.get_int64("i64"), -(1ll << 40));
  EXPECT_EQ(g.get_double("f64"), 0.1);
  EXPECT_EQ(g.get_array<std::int32_t>("ints"), (std::vector<std::int32_t>{3, -1, 4}));
  EXPECT_EQ(g.get_array<float>("floats"), (std::vector<float>{0.5f, -0.25f}));
  EXPECT_EQ(g.get_array<std::string>("strings"), (std::vector<std::string>{"a", "", "\xE2\x96\x81hello"}));
  EXPECT_EQ(g.get_array<bool>("bools"), (std::vector<bool>{true, false, true}));
  EXPECT_EQ(g.get_array("empty").size(), 0u);
  EXPECT_EQ(g.get_array("empty").element_type(), pith::gguf_type::uint64);
  EXPECT_EQ(g.get_array("strings").element_type(), pith::gguf_type::string);
  EXPECT_EQ(pith::type_of(g.get("ints")), pith::gguf_type::array);
  EXPECT_EQ(pith::describe_type(g.get("ints")), "array of int32");

  EXPECT_EQ(g.get_integer("u8"), 200);
  EXPECT_EQ(g.get_integer("i64"), -(1ll << 40));
  EXPECT_EQ(g.get_integer("u32"), 4000000000ll);
  EXPECT_EQ(g.get_or<std::uint32_t>("u32", 7), 4000000000u);
  EXPECT_EQ(g.get_or<std::uint32_t>("absent", 7), 7u);
  EXPECT_TRUE(g.has("f64"));
  EXPECT_FALSE(g.has("F64"));
}

TEST(Gguf, GettersThrowConfigErrorNamingTheKey) {
  const temp_file file(".gguf");
  file.write(every_type_file());
  const pith::gguf_file g(file.path());
  PITH_EXPECT_THROW_WITH(g.get_uint32("llama.block_count"), pith::config_error, "'llama.block_count' is missing");
  PITH_EXPECT_THROW_WITH(g.get_uint32("llama.block_count"), pith::config_error, file.name());
  PITH_EXPECT_THROW_WITH(g.get_uint32("i32"), pith::config_error, "'i32' has type int32, expected uint32");
  PITH_EXPECT_THROW_WITH(g.get_float("f64"), pith::config_error, "'f64' has type float64");
  PITH_EXPECT_THROW_WITH(g.get_string("u8"), pith::config_error, "expected string");
  PITH_EXPECT_THROW_WITH(g.get_array<float>("ints"), pith::config_error, "array of int32, expected array of float32");
  PITH_EXPECT_THROW_WITH(g.get_array<float>("f32"), pith::config_error, "'f32'");
  PITH_EXPECT_THROW_WITH(g.get_array("name"), pith::config_error, "'name'");
  PITH_EXPECT_THROW_WITH(g.get_integer("flag"), pith::config_error, "expected an integer");
  PITH_EXPECT_THROW_WITH(g.get_or<float>("u8", 1.0f), pith::config_error, "'u8'");
}

TEST(Gguf, TensorsAreRowMajorViewsThatConvert) {
  const temp_file file(".gguf");
  file.write(every_type_file());
  const pith::gguf_file g(file.path());
  EXPECT_EQ(g.alignment(), 32u);
  EXPECT_EQ(g.data_offset() % 32, 0u);
  EXPECT_EQ(g.tensor_count(), 3u);
  EXPECT_EQ(g.names(), (std::vector<std::string>{"f32.weight", "f16.weight", "bf16.weight"}));
  const auto& info = g.info("f32.weight");
  EXPECT_EQ(info.ne, (std::vector<std::int64_t>{3, 2}));
  EXPECT_EQ(info.shape(), (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(info.byte_size, 24u);
  const auto f32 = g.tensor("f32.weight");
  EXPECT_EQ(f32.shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(f32.dtype_name, "F32");
  EXPECT_EQ(pith::to_float(f32), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  const auto f16 = pith::to_float(g.tensor("f16.weight"));
  EXPECT_EQ(f16, (std::vector<float>{1.0f, std::ldexp(1.0f, -24), -std::numeric_limits<float>::infinity(), 65504.0f}));
  EXPECT_EQ(pith::to_float(g.tensor("bf16.weight")), (std::vector<float>{1.0f, -3.0f}));
  PITH_EXPECT_THROW_WITH(g.tensor("token_embd.weight"), pith::format_error, "'token_embd.weight'");
  PITH_EXPECT_THROW_WITH(g.info("token_embd.weight"), pith::format_error, file.name());
}

TEST(Gguf, CustomAlignmentMovesTheDataSection) {
  gguf_builder b;
  b.header(1, 1).kv<std::uint32_t>("general.alignment", t_u32, 64).tensor_info("w", {2}, 0, 0).align(64);
  b.data(pith_test::le_bytes<float>({7, 8}));
  const temp_file file(".gguf");
  file.write(b.bytes());
  const pith::gguf_file g(file.path());
  EXPECT_EQ(g.alignment(), 64u);
  EXPECT_EQ(g.data_offset() % 64, 0u);
  EXPECT_EQ(pith::to_float(g.tensor("w")), (std::vector<float>{7, 8}));
}

TEST(Gguf, QuantizedTensorsAreViewedAndDequantized) {
  gguf_builder b;
  b.header(1, 0).tensor_info("blk.0.ffn_up.weight", {64, 2}, 2, 0).align();  // Q4_0: 2 blocks per row
  // Each block: d = 1.0 (f16 0x3c00), quants 0x98: low nibbles 8 (elements 0-15: 0), high 9 (16-31: 1).
  std::string block = pith_test::le_bytes<std::uint16_t>({0x3c00});
  block.append(16, '\x98');
  for (int i = 0; i < 4; ++i) b.data(block);
  const temp_file file(".gguf");
  file.write(b.bytes());
  const pith::gguf_file g(file.path());
  const auto tensor = g.tensor("blk.0.ffn_up.weight");
  EXPECT_EQ(tensor.dtype, pith::element_type::other);
  EXPECT_EQ(tensor.storage, pith::dtype::q4_0);
  EXPECT_EQ(tensor.dtype_name, "Q4_0");
  EXPECT_EQ(tensor.bytes.size(), 4u * 18u);
  EXPECT_EQ(tensor.element_count(), 128);
  const auto values = pith::to_float(tensor);
  ASSERT_EQ(values.size(), 128u);
  for (std::size_t i = 0; i < values.size(); ++i) EXPECT_EQ(values[i], i % 32 < 16 ? 0.0f : 1.0f) << i;
}

TEST(Gguf, VocabularyOnlyFileWithoutPaddingIsValid) {
  gguf_builder b;
  b.header(0, 1).kv_string("general.architecture", "llama");  // ends unaligned, no data section
  const temp_file file(".gguf");
  file.write(b.bytes());
  const pith::gguf_file g(file.path());
  EXPECT_EQ(g.tensor_count(), 0u);
  EXPECT_EQ(g.get_string("general.architecture"), "llama");
}

struct gguf_corruption {
  const char* what;
  std::string bytes;
  const char* needle;
};

TEST(Gguf, CorruptFilesAreFormatErrorsNamingTheFile) {
  const auto one_tensor = [](std::vector<std::uint64_t> ne, std::uint32_t type, std::uint64_t offset,
                             std::size_t data) {
    gguf_builder b;
    b.header(1, 0).tensor_info("w", ne, type, offset).align().data(std::string(data, '\0'));
    return b.bytes();
  };
  const std::vector<gguf_corruption> cases = {
      {"empty file", "", "magic"},
      {"bad magic", "GGML\x03\0\0\0", "not a GGUF file"},
      {"version 2", gguf_builder().header(0, 0, 2).bytes(), "version 2 is not supported"},
      {"version 1", gguf_builder().header(0, 0, 1).bytes(), "version 1 is not supported"},
      {"big-endian", gguf_builder().header(0, 0, 0x03000000u).bytes(), "big-endian"},
      {"truncated counts", gguf_builder().header(0, 0).bytes().substr(0, 20), "truncated"},
      {"kv count beyond the file", gguf_builder().header(0, 1000).bytes(), "metadata entries cannot fit"},
      {"tensor count beyond the file", gguf_builder().header(1ull << 60, 0).bytes(), "tensor infos cannot fit"},
      {"huge key length", gguf_builder().header(0, 1).raw_u64(~0ull).raw_u32(0).put<std::uint8_t>(0).bytes(),
       "truncated"},
      {"huge string value", gguf_builder().header(0, 1).raw_string("k").raw_u32(t_string).raw_u64(1ull << 62).bytes(),
       "truncated"},
      {"huge array count",
       gguf_builder().header(0, 1).raw_string("k").raw_u32(t_array).raw_u32(t_u64).raw_u64(1ull << 40).bytes(),
       "claims 1099511627776 elements"},
      {"huge string array count",
       gguf_builder()
           .header(0, 1)
           .raw_string("k")
           .raw_u32(t_array)
           .raw_u32(t_string)
           .raw_u64(1000)
           .raw_string("x")
           .bytes(),
       "claims 1000 elements"},
      {"array string truncated",
       gguf_builder()
           .header(0, 1)
           .raw_string("k")
           .raw_u32(t_array)
           .raw_u32(t_string)
           .raw_u64(1)
           .raw_u64(50)
           .raw_u64(0)
           .bytes(),
       "truncated"},
      {"nested array",
       gguf_builder().header(0, 1).raw_string("k").raw_u32(t_array).raw_u32(t_array).raw_u64(0).raw_u64(0).bytes(),
       "array of arrays"},
      {"unknown array type",
       gguf_builder().header(0, 1).raw_string("k").raw_u32(t_array).raw_u32(13).raw_u64(0).raw_u64(0).bytes(),
       "unknown type 13"},
      {"unknown value type", gguf_builder().header(0, 1).raw_string("k").raw_u32(99).raw_u64(0).bytes(),
       "unknown value type 99"},
      {"bool that is 2", gguf_builder().header(0, 1).kv<std::uint8_t>("k", t_bool, 2).raw_u64(0).bytes(),
       "neither 0 nor 1"},
      {"duplicate key",
       gguf_builder().header(0, 2).kv<std::uint8_t>("k", t_u8, 1).kv<std::uint8_t>("k", t_u8, 2).raw_u64(0).bytes(),
       "duplicate metadata key 'k'"},
      {"truncated value",
       gguf_builder().header(0, 1).raw_string("k").raw_u32(t_u64).raw_u32(0).put<std::uint8_t>(0).bytes(), "truncated"},
      {"alignment not a power of two",
       gguf_builder().header(0, 1).kv<std::uint32_t>("general.alignment", t_u32, 48).raw_u64(0).bytes(),
       "power of two"},
      {"alignment zero",
       gguf_builder().header(0, 1).kv<std::uint32_t>("general.alignment", t_u32, 0).raw_u64(0).bytes(), "power of two"},
      {"alignment of the wrong type",
       gguf_builder().header(0, 1).kv<std::uint64_t>("general.alignment", t_u64, 32).raw_u64(0).bytes(),
       "expected uint32"},
      {"five dimensions", one_tensor({1, 1, 1, 1, 1}, 0, 0, 4), "5 dimensions"},
      {"unknown ggml type", one_tensor({4}, 77, 0, 16), "unknown ggml type 77"},
      {"retired ggml type", one_tensor({32}, 4, 0, 32), "unknown ggml type 4"},
      {"row not a multiple of the block", one_tensor({31, 2}, 2, 0, 64), "block size 32"},
      {"dimension beyond int64", one_tensor({0, 1ull << 63}, 0, 0, 0), "63 bits"},
      {"element count overflows", one_tensor({1ull << 32, 1ull << 32}, 0, 0, 0), "63 bits"},
      {"byte count overflows", one_tensor({1ull << 62}, 0, 0, 0), "2^64"},
      {"misaligned offset", one_tensor({4}, 0, 4, 64), "not a multiple of the alignment"},
      {"tensor beyond the data", one_tensor({4}, 0, 0, 12), "data section of 12 bytes"},
      {"offset beyond the data", one_tensor({4}, 0, 1ull << 40, 16), "truncated or corrupt"},
      {"offset near 2^64", one_tensor({16}, 0, ~0ull - 31, 64), "beyond 2^64"},
      {"duplicate tensor",
       gguf_builder()
           .header(2, 0)
           .tensor_info("w", {4}, 0, 0)
           .tensor_info("w", {4}, 0, 32)
           .align()
           .data(std::string(64, '\0'))
           .bytes(),
       "duplicate tensor 'w'"},
      {"overlapping tensors",
       gguf_builder()
           .header(2, 0)
           .tensor_info("a", {16}, 0, 0)
           .tensor_info("b", {4}, 0, 32)
           .align()
           .data(std::string(64, '\0'))
           .bytes(),
       "overlap"},
      {"truncated tensor info",
       gguf_builder().header(1, 0).raw_string("w").raw_u32(2).raw_u64(4).raw_u64(4).raw_u32(0).bytes(), "truncated"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    const temp_file file(".gguf");
    file.write(c.bytes);
    PITH_EXPECT_THROW_WITH(pith::gguf_file{file.path()}, pith::format_error, file.name());
    PITH_EXPECT_THROW_WITH(pith::gguf_file{file.path()}, pith::format_error, c.needle);
  }
}

// Deterministic mutations of a small valid file: each must parse or throw a pith::error, never
// crash (the sanitizer build checks memory safety).
TEST(Gguf, RandomByteCorruptionNeverCrashes) {
  const std::string valid = every_type_file();
  const temp_file file(".gguf");
  std::uint64_t state = 0x9e3779b97f4a7c15ull;
  const auto next = [&] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  int parsed = 0;
  int rejected = 0;
  for (int iteration = 0; iteration < 1500; ++iteration) {
    std::string bytes = valid;
    const int flips = 1 + static_cast<int>(next() % 4);
    for (int i = 0; i < flips; ++i) {
      const std::size_t at = next() % bytes.size();
      bytes[at] = static_cast<char>(next() % 3 == 0 ? 0xff : next() & 0xff);
    }
    if (next() % 4 == 0) bytes.resize(next() % bytes.size());
    file.write(bytes);
    try {
      const pith::gguf_file g(file.path());
      for (const auto& info : g.tensor_infos()) {
        const auto tensor = g.tensor(info.name);
        if (tensor.dtype != pith::element_type::other) (void)pith::to_float(tensor);
      }
      ++parsed;
    } catch (const pith::format_error&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 0);
  EXPECT_GT(parsed, 0);
}

TEST(Gguf, Stories260K) {
  PITH_SHARED_MODEL_OR_SKIP(path, "stories260K/stories260K.gguf");
  const pith::gguf_file g(path);
  EXPECT_EQ(g.tensor_count(), 48u);
  EXPECT_EQ(g.alignment(), 32u);
  EXPECT_EQ(g.data_offset() % 32, 0u);
  EXPECT_EQ(g.get_string("general.architecture"), "llama");
  EXPECT_EQ(g.get_uint32("llama.block_count"), 5u);
  EXPECT_EQ(g.get_uint32("llama.embedding_length"), 64u);
  EXPECT_EQ(g.get_uint32("llama.feed_forward_length"), 172u);
  EXPECT_EQ(g.get_uint32("llama.attention.head_count"), 8u);
  EXPECT_EQ(g.get_uint32("llama.attention.head_count_kv"), 4u);
  EXPECT_EQ(g.get_uint32("llama.rope.dimension_count"), 8u);
  EXPECT_EQ(g.get_uint32("llama.context_length"), 2048u);
  EXPECT_FLOAT_EQ(g.get_float("llama.attention.layer_norm_rms_epsilon"), 1e-5f);
  EXPECT_FALSE(g.has("llama.rope.freq_base"));
  EXPECT_EQ(g.get_string("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(g.get_array<std::string>("tokenizer.ggml.tokens").size(), 512u);
  EXPECT_EQ(g.get_array<float>("tokenizer.ggml.scores").size(), 512u);
  EXPECT_EQ(g.get_array<std::int32_t>("tokenizer.ggml.token_type").size(), 512u);
  EXPECT_EQ(g.get_array<std::string>("tokenizer.ggml.tokens")[1], "<s>");
  EXPECT_EQ(g.get_integer("tokenizer.ggml.bos_token_id"), 1);
  EXPECT_EQ(g.get_uint32("tokenizer.ggml.padding_token_id"), 0xffffffffu);  // "none"

  for (const auto& info : g.tensor_infos()) {
    EXPECT_EQ(info.type, 0u) << info.name;
    EXPECT_EQ(info.offset % 32, 0u) << info.name;
  }
  const auto embedding = g.tensor("token_embd.weight");
  EXPECT_EQ(g.info("token_embd.weight").ne, (std::vector<std::int64_t>{64, 512}));
  EXPECT_EQ(embedding.shape, (std::vector<std::int64_t>{512, 64}));
  EXPECT_EQ(embedding.dtype, pith::element_type::f32);
  const auto values = pith::to_float(embedding);
  ASSERT_EQ(values.size(), 512u * 64u);
  for (const float v : values) ASSERT_TRUE(std::isfinite(v));
  EXPECT_EQ(g.tensor("blk.0.attn_k.weight").shape, (std::vector<std::int64_t>{32, 64}));
  EXPECT_EQ(g.tensor("blk.4.ffn_down.weight").shape, (std::vector<std::int64_t>{64, 172}));
  EXPECT_EQ(g.tensor("output_norm.weight").shape, (std::vector<std::int64_t>{64}));
}

TEST(Gguf, TinyRandomLlamaF16TensorsConvert) {
  PITH_SHARED_MODEL_OR_SKIP(path, "llama2-tiny-random-gguf/llama-2-tiny-random.gguf");
  const pith::gguf_file g(path);
  EXPECT_EQ(g.tensor_count(), 12u);
  EXPECT_EQ(g.get_uint32("llama.embedding_length"), 8u);
  EXPECT_EQ(g.get_uint32("general.file_type"), 1u);
  int f16_tensors = 0;
  for (const auto& info : g.tensor_infos()) {
    const auto tensor = g.tensor(info.name);
    const auto values = pith::to_float(tensor);
    ASSERT_EQ(values.size(), static_cast<std::size_t>(tensor.element_count()));
    if (tensor.dtype == pith::element_type::f16) {
      ++f16_tensors;
      for (std::size_t i = 0; i < values.size(); i += 97) {
        std::uint16_t raw;
        std::memcpy(&raw, tensor.bytes.data() + 2 * i, 2);
        ASSERT_EQ(std::bit_cast<std::uint32_t>(values[i]), std::bit_cast<std::uint32_t>(pith::half_to_float(raw)));
      }
    }
    for (const float v : values) ASSERT_TRUE(std::isfinite(v)) << info.name;
  }
  EXPECT_EQ(f16_tensors, 9);
  EXPECT_EQ(g.tensor("token_embd.weight").shape, (std::vector<std::int64_t>{32000, 8}));
  EXPECT_EQ(g.tensor("token_embd.weight").dtype_name, "F16");
  EXPECT_EQ(g.tensor("blk.0.attn_norm.weight").dtype, pith::element_type::f32);
}

TEST(Gguf, VocabularyOnlyLlamaSpm) {
  PITH_SHARED_MODEL_OR_SKIP(path, "ggml-vocab/ggml-vocab-llama-spm.gguf");
  const pith::gguf_file g(path);
  EXPECT_EQ(g.tensor_count(), 0u);
  EXPECT_EQ(g.get_uint32("llama.vocab_size"), 32000u);
  EXPECT_TRUE(g.get_bool("tokenizer.ggml.add_bos_token"));
  EXPECT_FALSE(g.get_bool("tokenizer.ggml.add_eos_token"));
  EXPECT_EQ(g.get_array<std::string>("tokenizer.ggml.tokens")[15043], "\xE2\x96\x81Hello");
}

// Every prefix of the header and tensor-info region, and prefixes cutting the data section, must be
// rejected with a format_error naming the file.
TEST(Gguf, TruncatedRealFileIsAFormatErrorAtEveryOffset) {
  PITH_SHARED_MODEL_OR_SKIP(path, "stories260K/stories260K.gguf");
  const std::string bytes = pith_test::read_file(path);
  std::uint64_t data_offset = 0;
  {
    const pith::gguf_file g(path);
    data_offset = g.data_offset();
  }
  std::vector<std::size_t> lengths;
  for (std::size_t length = 0; length < 256; ++length) lengths.push_back(length);
  for (std::size_t length = 256; length < data_offset + 64; length += 11) lengths.push_back(length);
  for (std::size_t length = data_offset + 64; length < bytes.size(); length += 65521) lengths.push_back(length);
  lengths.push_back(bytes.size() - 1);
  const temp_file file(".gguf");
  for (const std::size_t length : lengths) {
    SCOPED_TRACE(length);
    file.write(std::string_view(bytes).substr(0, length));
    PITH_EXPECT_THROW_WITH(pith::gguf_file{file.path()}, pith::format_error, file.name());
  }
}

}  // namespace
