// SPDX-License-Identifier: MIT
// libFuzzer target: pith::llama2c_checkpoint and load_model on arbitrary bytes; every weight span it accepts is touched.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include <pith/core/error.hpp>
#include <pith/io/llama2c.hpp>
#include <pith/model/weights.hpp>

#include "fuzz_common.hpp"

namespace {

void touch(std::span<const float> weights, const char* name, std::size_t expected_size) {
  if (weights.size() != expected_size)
    pith_fuzz::fail(std::string(name) + " has " + std::to_string(weights.size()) + " floats, the header implies " +
                    std::to_string(expected_size));
  if (!weights.empty()) {
    pith_fuzz::keep(weights.front());
    pith_fuzz::keep(weights.back());
  }
}

void exercise(const pith::llama2c_checkpoint& checkpoint) {
  const pith::llama2c_config& c = checkpoint.config();
  const auto dim = static_cast<std::size_t>(c.dim), hidden = static_cast<std::size_t>(c.hidden_dim),
             layers = static_cast<std::size_t>(c.n_layers), kv_dim = static_cast<std::size_t>(c.kv_dim()),
             vocab = static_cast<std::size_t>(c.vocab_size), seq = static_cast<std::size_t>(c.seq_len),
             half_head = static_cast<std::size_t>(c.head_size() / 2);
  const pith::llama2c_weights& w = checkpoint.weights();
  touch(w.token_embedding, "token_embedding", vocab * dim);
  touch(w.rms_att, "rms_att", layers * dim);
  touch(w.wq, "wq", layers * dim * dim);
  touch(w.wk, "wk", layers * kv_dim * dim);
  touch(w.wv, "wv", layers * kv_dim * dim);
  touch(w.wo, "wo", layers * dim * dim);
  touch(w.rms_ffn, "rms_ffn", layers * dim);
  touch(w.w1, "w1", layers * hidden * dim);
  touch(w.w2, "w2", layers * dim * hidden);
  touch(w.w3, "w3", layers * hidden * dim);
  touch(w.rms_final, "rms_final", dim);
  touch(w.freq_cis_real, "freq_cis_real", seq * half_head);
  touch(w.freq_cis_imag, "freq_cis_imag", seq * half_head);
  touch(w.wcls, "wcls", vocab * dim);
  for (const std::int32_t layer : {0, c.n_layers - 1}) {
    touch(pith::layer_slice(w.wq, c.n_layers, layer), "wq layer", dim * dim);
    touch(pith::layer_slice(w.w2, c.n_layers, layer), "w2 layer", dim * hidden);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const pith_fuzz::input_file input("llama2c", ".bin");
  const auto& path = input.write({data, size});
  std::optional<pith::llama2c_checkpoint> checkpoint;
  try {
    checkpoint.emplace(path);
  } catch (const pith::error&) {
    return 0;  // rejected input: the expected outcome for most mutations
  }
  exercise(*checkpoint);  // outside the try: touching an accepted checkpoint must not throw
  // The checkpoint is valid: the model loader built on it must accept it or reject it with a pith::error.
  try {
    const pith::model_weights weights = pith::load_model(path);
    pith_fuzz::keep(weights.bytes_read_per_token());
  } catch (const pith::error&) {
  }
  return 0;
}
