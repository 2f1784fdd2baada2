// SPDX-License-Identifier: MIT
// libFuzzer target: pith::load_model on fuzzed GGUF, safetensors + config.json or llama2.c bytes, then a session and a short forward.
//
// Input: one selector byte (modulo 3), then
//   0: a GGUF file;
//   1: a little-endian uint16 n, n bytes of config.json, then the model.safetensors file;
//   2: a llama2.c checkpoint.
// A model that loads gets a session with a small context and runs a 3-token chunk and one decode
// step, unless its activations and state would exceed max_session_floats (a valid but large model:
// skipped so the fuzzer measures crashes, not the machine's memory). A pith::error anywhere is the
// expected rejection; anything else is a crash.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <pith/core/error.hpp>
#include <pith/model/transformer.hpp>
#include <pith/model/weights.hpp>

#include "fuzz_common.hpp"

namespace {

constexpr std::size_t max_context = 8;  // cache rows per head: the chunk, one decode step and room
constexpr std::size_t max_chunk = 4;
/// Most floats a fuzzed model's session may allocate (64 MiB), far below -rss_limit_mb.
constexpr double max_session_floats = 16.0 * 1024 * 1024;

/// About how many floats session(weights, {max_context, max_chunk}) allocates, in double so that
/// no product overflows: activations, KV cache, scores, residual-stream snapshots and the mixers'
/// fixed-size states (an upper bound for each).
double session_floats(const pith::model_config& c) {
  const double t = max_chunk, h = static_cast<double>(c.hidden_size), layers = static_cast<double>(c.num_layers);
  const double heads = static_cast<double>(c.num_heads), kv_heads = static_cast<double>(c.num_kv_heads);
  const double d = static_cast<double>(c.head_dim), f = static_cast<double>(c.intermediate_size);
  const double m = c.uses_mixer(pith::mixer_kind::mlp) ? static_cast<double>(c.mixer_mlp_intermediate_size) : 0.0;
  const double activations = t * (4 * h + 2 * heads * d + 2 * kv_heads * d + std::max(f, m) + f + m + d);
  const double cache = layers * kv_heads * max_context * (2 * d + 2);
  const double scores = 2 * layers * heads * max_context;
  const double residual = (2 * layers + 3) * t * (h + 1) * 2;
  const double states = layers * heads * (d * d + 4 * d);
  return activations + cache + scores + residual + states;
}

void run_session(const pith::model_weights& weights) {
  const pith::model_config& c = weights.config;
  if (session_floats(c) > max_session_floats) return;
  pith::session_options options;
  options.max_context = max_context;
  options.max_chunk = max_chunk;
  pith::session session(weights, options);
  const auto vocab = static_cast<std::int32_t>(c.vocab_size);
  const std::vector<std::int32_t> chunk = {0, vocab - 1, vocab / 2};
  std::vector<float> logits(c.vocab_size);
  try {
    session.forward(chunk, logits.data());
  } catch (const pith::argument_error&) {
    return;  // e.g. a fixed q/k stream shorter than the chunk: checked before anything runs
  }
  const std::int32_t next = static_cast<std::int32_t>(
      std::max_element(logits.begin(), logits.end()) - logits.begin());  // any id in [0, vocab)
  if (next < 0 || next >= vocab) pith_fuzz::fail("greedy token outside the vocabulary");
  session.forward(std::span<const std::int32_t>(&next, 1), logits.data());
  pith_fuzz::keep(logits.front());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const pith_fuzz::input_file gguf("model", ".gguf");
  static const pith_fuzz::input_file llama2c("model", ".bin");
  static const pith_fuzz::input_directory directory("model");
  if (size < 1) return 0;
  const std::span<const std::uint8_t> input(data + 1, size - 1);
  std::filesystem::path path;
  switch (data[0] % 3) {
    case 0:
      path = gguf.write(input);
      break;
    case 1: {
      if (input.size() < 2) return 0;
      const std::size_t config_size = std::min<std::size_t>(input[0] | (std::size_t{input[1]} << 8), input.size() - 2);
      directory.write("config.json", input.subspan(2, config_size));
      directory.write("model.safetensors", input.subspan(2 + config_size));
      path = directory.path();
      break;
    }
    default:
      path = llama2c.write(input);
      break;
  }
  std::optional<pith::model_weights> weights;
  try {
    weights.emplace(pith::load_model(path));
  } catch (const pith::error&) {
    return 0;  // rejected input: the expected outcome for most mutations
  }
  pith_fuzz::keep(weights->bytes_read_per_token());
  // A model that loaded must run or be refused with a pith::error; never crash.
  try {
    run_session(*weights);
  } catch (const pith::error&) {
  }
  return 0;
}
