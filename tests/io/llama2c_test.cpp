// SPDX-License-Identifier: MIT
// Tests of the llama2.c checkpoint reader: real headers, the GGUF twin byte for byte, synthetic and corrupt files.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <pith/io/gguf.hpp>
#include <pith/io/llama2c.hpp>

#include "test_util.hpp"

namespace {

using pith_test::temp_file;

std::string header_bytes(std::vector<std::int32_t> header) { return pith_test::le_bytes(header); }

// A checkpoint whose float i (counting from the first tensor) has the value i.
std::string synthetic_checkpoint(std::int32_t dim, std::int32_t hidden, std::int32_t layers, std::int32_t heads,
                                 std::int32_t kv_heads, std::int32_t vocab, std::int32_t seq_len) {
  const std::int64_t kv_dim = dim / heads * kv_heads;
  const std::int64_t v = vocab < 0 ? -vocab : vocab;
  std::int64_t floats = v * dim + layers * dim + layers * dim * dim + 2 * layers * kv_dim * dim + layers * dim * dim +
                        layers * dim + 3 * layers * hidden * dim + dim + 2 * seq_len * (dim / heads / 2);
  if (vocab < 0) floats += v * dim;
  std::vector<float> values(static_cast<std::size_t>(floats));
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
  return header_bytes({dim, hidden, layers, heads, kv_heads, vocab, seq_len}) + pith_test::le_bytes(values);
}

TEST(Llama2c, SyntheticUnsharedCheckpointLaysTensorsOutInOrder) {
  const temp_file file(".bin");
  // dim 8, hidden 12, 2 layers, 4 heads, 2 kv heads (kv_dim 4), vocab 10 unshared, seq_len 3.
  file.write(synthetic_checkpoint(8, 12, 2, 4, 2, -10, 3));
  const pith::llama2c_checkpoint checkpoint(file.path());
  const auto& c = checkpoint.config();
  EXPECT_EQ(c.dim, 8);
  EXPECT_EQ(c.hidden_dim, 12);
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.vocab_size, 10);
  EXPECT_EQ(c.seq_len, 3);
  EXPECT_FALSE(c.shared_classifier);
  EXPECT_EQ(c.head_size(), 2);
  EXPECT_EQ(c.kv_dim(), 4);

  const auto& w = checkpoint.weights();
  std::size_t offset = 0;
  const auto expect_next = [&](std::span<const float> span, std::size_t size, const char* name) {
    EXPECT_EQ(span.size(), size) << name;
    if (!span.empty()) {
      EXPECT_EQ(span.front(), static_cast<float>(offset)) << name;
    }
    offset += size;
  };
  expect_next(w.token_embedding, 80, "token_embedding");
  expect_next(w.rms_att, 16, "rms_att");
  expect_next(w.wq, 128, "wq");
  expect_next(w.wk, 64, "wk");
  expect_next(w.wv, 64, "wv");
  expect_next(w.wo, 128, "wo");
  expect_next(w.rms_ffn, 16, "rms_ffn");
  expect_next(w.w1, 192, "w1");
  expect_next(w.w2, 192, "w2");
  expect_next(w.w3, 192, "w3");
  expect_next(w.rms_final, 8, "rms_final");
  expect_next(w.freq_cis_real, 3, "freq_cis_real");
  expect_next(w.freq_cis_imag, 3, "freq_cis_imag");
  expect_next(w.wcls, 80, "wcls");
  EXPECT_NE(w.wcls.data(), w.token_embedding.data());

  const auto wk1 = pith::layer_slice(w.wk, c.n_layers, 1);
  EXPECT_EQ(wk1.size(), 32u);
  EXPECT_EQ(wk1.data(), w.wk.data() + 32);
  EXPECT_THROW((void)pith::layer_slice(w.wk, c.n_layers, 2), pith::argument_error);
}

struct llama2c_corruption {
  const char* what;
  std::string bytes;
  const char* needle;
};

TEST(Llama2c, InvalidHeadersAndSizesAreFormatErrorsNamingTheFile) {
  const std::string valid = synthetic_checkpoint(8, 12, 2, 4, 2, 10, 3);
  const std::vector<llama2c_corruption> cases = {
      {"empty", "", "shorter than the 28-byte"},
      {"truncated header", valid.substr(0, 27), "shorter than the 28-byte"},
      {"header only", valid.substr(0, 28), "implies"},
      {"one float missing", valid.substr(0, valid.size() - 4), "implies"},
      {"one byte missing", valid.substr(0, valid.size() - 1), "implies"},
      {"one byte extra", valid + "x", "implies"},
      {"unshared but no wcls", header_bytes({8, 12, 2, 4, 2, -10, 3}) + valid.substr(28), "implies"},
      {"dim zero", header_bytes({0, 12, 2, 4, 2, 10, 3}), "dim = 0 must be positive"},
      {"negative hidden", header_bytes({8, -12, 2, 4, 2, 10, 3}), "hidden_dim = -12"},
      {"no layers", header_bytes({8, 12, 0, 4, 2, 10, 3}), "n_layers = 0"},
      {"no heads", header_bytes({8, 12, 2, 0, 2, 10, 3}), "n_heads = 0"},
      {"no kv heads", header_bytes({8, 12, 2, 4, 0, 10, 3}), "n_kv_heads = 0"},
      {"vocab zero", header_bytes({8, 12, 2, 4, 2, 0, 3}), "vocab_size = 0 must be non-zero"},
      {"vocab INT32_MIN", header_bytes({8, 12, 2, 4, 2, INT32_MIN, 3}), "vocab_size"},
      {"seq_len zero", header_bytes({8, 12, 2, 4, 2, 10, 0}), "seq_len = 0"},
      {"heads do not divide dim", header_bytes({8, 12, 2, 3, 1, 10, 3}), "not a multiple of n_heads"},
      {"kv heads do not divide heads", header_bytes({8, 12, 2, 4, 3, 10, 3}), "not a multiple of n_kv_heads"},
      {"odd head size", header_bytes({12, 12, 2, 4, 2, 10, 3}), "head size 3 is odd"},
      {"huge header", header_bytes({1 << 30, 1 << 30, 1 << 30, 2, 2, 1 << 30, 1 << 30}), "fit in 64 bits"},
      {"version 2 export", header_bytes({0x616b3432, 2, 0, 0, 0, 0, 0}), "export version 2 is not supported"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    const temp_file file(".bin");
    file.write(c.bytes);
    PITH_EXPECT_THROW_WITH(pith::llama2c_checkpoint{file.path()}, pith::format_error, file.name());
    PITH_EXPECT_THROW_WITH(pith::llama2c_checkpoint{file.path()}, pith::format_error, c.needle);
  }
}

TEST(Llama2c, Stories260KHeader) {
  PITH_SHARED_MODEL_OR_SKIP(path, "stories260K/stories260K.bin");
  const pith::llama2c_checkpoint checkpoint(path);
  const auto& c = checkpoint.config();
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.hidden_dim, 172);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_TRUE(c.shared_classifier);
  EXPECT_EQ(c.seq_len, 512);
  EXPECT_EQ(c.head_size(), 8);
  EXPECT_EQ(c.kv_dim(), 32);
  const auto& w = checkpoint.weights();
  EXPECT_EQ(w.wcls.data(), w.token_embedding.data());
  EXPECT_EQ(w.wk.size(), 5u * 32u * 64u);
  EXPECT_EQ(w.freq_cis_real.size(), 512u * 4u);
  EXPECT_EQ(w.freq_cis_imag.data() + w.freq_cis_imag.size(),
            reinterpret_cast<const float*>(reinterpret_cast<const char*>(w.token_embedding.data()) + 1056540 - 28));
}

TEST(Llama2c, AiDreams260KHeader) {
  PITH_SHARED_MODEL_OR_SKIP(path, "aidreams260K/aidreams260K.bin");
  const pith::llama2c_checkpoint checkpoint(path);
  const auto& c = checkpoint.config();
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.hidden_dim, 172);
  EXPECT_EQ(c.n_layers, 4);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_TRUE(c.shared_classifier);
  EXPECT_EQ(c.seq_len, 128);
  EXPECT_EQ(c.head_size(), 16);
}

// llama.cpp's convert-llama2c-to-ggml copies llama2.c weights unchanged: llama2.c already uses the
// adjacent-pair RoPE layout GGUF expects, so attn_q/attn_k are NOT permuted here (only conversions
// from Hugging Face's half-rotation layout permute them). Every GGUF tensor must equal its slice.
TEST(Llama2c, Stories260KTensorsEqualTheGgufByteForByte) {
  PITH_SHARED_MODEL_OR_SKIP(bin_path, "stories260K/stories260K.bin");
  PITH_SHARED_MODEL_OR_SKIP(gguf_path, "stories260K/stories260K.gguf");
  const pith::llama2c_checkpoint checkpoint(bin_path);
  const pith::gguf_file gguf(gguf_path);
  const auto& w = checkpoint.weights();
  const std::int32_t layers = checkpoint.config().n_layers;
  const auto expect_same = [&](const std::string& name, std::span<const float> expected) {
    const auto tensor = gguf.tensor(name);
    ASSERT_EQ(tensor.bytes.size(), expected.size_bytes()) << name;
    EXPECT_EQ(std::memcmp(tensor.bytes.data(), expected.data(), expected.size_bytes()), 0) << name;
  };
  int compared = 0;
  const auto check = [&](const std::string& name, std::span<const float> expected) {
    expect_same(name, expected);
    ++compared;
  };
  check("token_embd.weight", w.token_embedding);
  check("output_norm.weight", w.rms_final);
  check("output.weight", w.wcls);
  for (std::int32_t l = 0; l < layers; ++l) {
    const std::string prefix = "blk." + std::to_string(l) + ".";
    check(prefix + "attn_norm.weight", pith::layer_slice(w.rms_att, layers, l));
    check(prefix + "attn_q.weight", pith::layer_slice(w.wq, layers, l));
    check(prefix + "attn_k.weight", pith::layer_slice(w.wk, layers, l));
    check(prefix + "attn_v.weight", pith::layer_slice(w.wv, layers, l));
    check(prefix + "attn_output.weight", pith::layer_slice(w.wo, layers, l));
    check(prefix + "ffn_norm.weight", pith::layer_slice(w.rms_ffn, layers, l));
    check(prefix + "ffn_gate.weight", pith::layer_slice(w.w1, layers, l));
    check(prefix + "ffn_down.weight", pith::layer_slice(w.w2, layers, l));
    check(prefix + "ffn_up.weight", pith::layer_slice(w.w3, layers, l));
  }
  EXPECT_EQ(compared, 48);
  EXPECT_EQ(static_cast<std::size_t>(compared), gguf.tensor_count());
  // Shapes agree too: GGUF's row-major shape is llama2.c's [out, in].
  EXPECT_EQ(gguf.tensor("blk.0.ffn_down.weight").shape, (std::vector<std::int64_t>{64, 172}));
  EXPECT_EQ(gguf.tensor("blk.0.attn_k.weight").shape, (std::vector<std::int64_t>{32, 64}));
}

TEST(Llama2c, TruncatedRealCheckpointIsAFormatError) {
  PITH_SHARED_MODEL_OR_SKIP(path, "stories260K/stories260K.bin");
  const std::string bytes = pith_test::read_file(path);
  const temp_file file(".bin");
  for (const std::size_t length : {std::size_t{0}, std::size_t{4}, std::size_t{28}, std::size_t{1000}, bytes.size() / 2,
                                   bytes.size() - 4, bytes.size() - 1}) {
    SCOPED_TRACE(length);
    file.write(std::string_view(bytes).substr(0, length));
    PITH_EXPECT_THROW_WITH(pith::llama2c_checkpoint{file.path()}, pith::format_error, file.name());
  }
}

}  // namespace
