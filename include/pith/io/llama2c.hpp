// SPDX-License-Identifier: MIT
// llama2.c legacy (version 0) checkpoint reader: the 7-int header and float spans into the mapping.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>

#include "pith/core/error.hpp"
#include "pith/io/detail.hpp"
#include "pith/io/mmap.hpp"

namespace pith {

/// The header of a llama2.c checkpoint. vocab_size is stored here as a positive count;
/// the file's sign (negative = separate classifier) is `shared_classifier`.
struct llama2c_config {
  std::int32_t dim = 0;         // transformer width
  std::int32_t hidden_dim = 0;  // FFN inner width
  std::int32_t n_layers = 0;
  std::int32_t n_heads = 0;     // query heads
  std::int32_t n_kv_heads = 0;  // key/value heads (grouped-query attention when < n_heads)
  std::int32_t vocab_size = 0;
  std::int32_t seq_len = 0;  // trained context length
  bool shared_classifier = true;

  std::int32_t head_size() const noexcept { return dim / n_heads; }
  std::int32_t kv_dim() const noexcept { return dim / n_heads * n_kv_heads; }
};

/// Float32 views of a llama2.c checkpoint, in file order. Row-major shapes; L = n_layers,
/// kv_dim = dim · n_kv_heads / n_heads. Matrices are [out, in] (y = W x), and the Q/K rows use the
/// adjacent-pair RoPE layout (run.c rotates elements 2i, 2i+1 of each head).
struct llama2c_weights {
  std::span<const float> token_embedding;  // [vocab_size, dim]
  std::span<const float> rms_att;          // [L, dim]
  std::span<const float> wq;               // [L, dim, dim]
  std::span<const float> wk;               // [L, kv_dim, dim]
  std::span<const float> wv;               // [L, kv_dim, dim]
  std::span<const float> wo;               // [L, dim, dim]
  std::span<const float> rms_ffn;          // [L, dim]
  std::span<const float> w1;               // [L, hidden_dim, dim]  gate
  std::span<const float> w2;               // [L, dim, hidden_dim]  down
  std::span<const float> w3;               // [L, hidden_dim, dim]  up
  std::span<const float> rms_final;        // [dim]
  std::span<const float> freq_cis_real;    // [seq_len, head_size / 2]  (run.c ignores it)
  std::span<const float> freq_cis_imag;    // [seq_len, head_size / 2]  (run.c ignores it)
  std::span<const float> wcls;             // [vocab_size, dim]; the same span as token_embedding when shared
};

/// Layer `layer` of a tensor stacked over `n_layers` layers (e.g. wq → [dim, dim] of that layer).
inline std::span<const float> layer_slice(std::span<const float> stacked, std::int32_t n_layers, std::int32_t layer) {
  if (n_layers <= 0 || layer < 0 || layer >= n_layers || stacked.size() % static_cast<std::size_t>(n_layers) != 0)
    PITH_THROW(argument_error, "layer_slice: layer " + std::to_string(layer) + " of " + std::to_string(n_layers) +
                                   " layers, stacked size " + std::to_string(stacked.size()));
  const std::size_t per_layer = stacked.size() / static_cast<std::size_t>(n_layers);
  return stacked.subspan(per_layer * static_cast<std::size_t>(layer), per_layer);
}

/// A memory-mapped llama2.c version-0 checkpoint (`export.py --version 0`, the format run.c reads):
/// 7 little-endian int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len)
/// followed by float32 tensors in the order of llama2c_weights, wcls present only when
/// vocab_size is negative. The constructor validates the header (positive values, n_heads divides
/// dim, n_kv_heads divides n_heads, even head size) and that the file size is exactly what the
/// header implies; violations throw format_error naming the file.
class llama2c_checkpoint {
 public:
  static constexpr std::size_t header_bytes = 7 * sizeof(std::int32_t);

  explicit llama2c_checkpoint(const std::filesystem::path& path) : file_(path) { parse(); }

  const std::string& path() const noexcept { return file_.path(); }
  const llama2c_config& config() const noexcept { return config_; }
  /// Views into the mapping: valid while this object lives (moving it keeps them valid).
  const llama2c_weights& weights() const noexcept { return weights_; }

 private:
  [[noreturn]] void fail(const std::string& message) const { PITH_THROW(format_error, path() + ": " + message); }

  void parse() {
    if constexpr (std::endian::native != std::endian::little)
      fail("llama2.c checkpoints are little-endian float32; this host is big-endian");
    if (file_.size() < header_bytes)
      fail("file of " + std::to_string(file_.size()) + " bytes is shorter than the 28-byte llama2.c header");
    std::int32_t header[7];
    for (int i = 0; i < 7; ++i) header[i] = detail::load_little_endian<std::int32_t>(file_.data() + 4 * i);
    if (static_cast<std::uint32_t>(header[0]) == 0x616b3432u)  // "ak42": export.py versions 1 and 2
      fail("llama2.c export version " + std::to_string(header[1]) +
           " is not supported; pith reads the legacy version-0 format (export.py --version 0)");

    static constexpr const char* names[7] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                             "n_kv_heads", "vocab_size", "seq_len"};
    for (int i = 0; i < 7; ++i) {
      const bool valid = i == 5 ? header[i] != 0 && header[i] != INT32_MIN : header[i] > 0;
      if (!valid)
        fail(std::string("header field ") + names[i] + " = " + std::to_string(header[i]) +
             (i == 5 ? " must be non-zero" : " must be positive"));
    }
    llama2c_config& c = config_;
    c.dim = header[0];
    c.hidden_dim = header[1];
    c.n_layers = header[2];
    c.n_heads = header[3];
    c.n_kv_heads = header[4];
    c.shared_classifier = header[5] > 0;
    c.vocab_size = header[5] > 0 ? header[5] : -header[5];
    c.seq_len = header[6];
    if (c.dim % c.n_heads != 0)
      fail("dim " + std::to_string(c.dim) + " is not a multiple of n_heads " + std::to_string(c.n_heads));
    if (c.n_heads % c.n_kv_heads != 0)
      fail("n_heads " + std::to_string(c.n_heads) + " is not a multiple of n_kv_heads " + std::to_string(c.n_kv_heads));
    if (c.head_size() % 2 != 0) fail("head size " + std::to_string(c.head_size()) + " is odd; RoPE rotates pairs");

    // All sizes in floats; int32 inputs keep every partial product below 2^93, so check each step.
    const std::uint64_t dim = static_cast<std::uint64_t>(c.dim);
    const std::uint64_t hidden = static_cast<std::uint64_t>(c.hidden_dim);
    const std::uint64_t layers = static_cast<std::uint64_t>(c.n_layers);
    const std::uint64_t kv_dim = static_cast<std::uint64_t>(c.kv_dim());
    const std::uint64_t vocab = static_cast<std::uint64_t>(c.vocab_size);
    const std::uint64_t half_head = static_cast<std::uint64_t>(c.head_size() / 2);
    const std::uint64_t seq = static_cast<std::uint64_t>(c.seq_len);
    const auto product = [&](std::uint64_t a, std::uint64_t b, std::uint64_t d = 1) {
      const auto ab = detail::checked_mul(a, b);
      const auto abd = ab ? detail::checked_mul(*ab, d) : std::nullopt;
      if (!abd) fail("header describes more weights than fit in 64 bits");
      return *abd;
    };
    const std::uint64_t sizes[14] = {product(vocab, dim),
                                     product(layers, dim),
                                     product(layers, dim, dim),
                                     product(layers, kv_dim, dim),
                                     product(layers, kv_dim, dim),
                                     product(layers, dim, dim),
                                     product(layers, dim),
                                     product(layers, hidden, dim),
                                     product(layers, dim, hidden),
                                     product(layers, hidden, dim),
                                     dim,
                                     product(seq, half_head),
                                     product(seq, half_head),
                                     c.shared_classifier ? 0 : product(vocab, dim)};
    std::uint64_t total = 0;
    for (const std::uint64_t size : sizes) {
      const auto sum = detail::checked_add(total, size);
      if (!sum) fail("header describes more weights than fit in 64 bits");
      total = *sum;
    }
    const auto expected = detail::checked_mul(total, sizeof(float));
    const auto expected_bytes = expected ? detail::checked_add(*expected, header_bytes) : std::nullopt;
    if (!expected_bytes || *expected_bytes != file_.size())
      fail("header (dim " + std::to_string(c.dim) + ", hidden_dim " + std::to_string(c.hidden_dim) + ", n_layers " +
           std::to_string(c.n_layers) + ", n_heads " + std::to_string(c.n_heads) + ", n_kv_heads " +
           std::to_string(c.n_kv_heads) + ", vocab_size " + std::to_string(header[5]) + ", seq_len " +
           std::to_string(c.seq_len) + ") implies " +
           (expected_bytes ? std::to_string(*expected_bytes) : std::string("more than 2^64")) +
           " bytes, the file has " + std::to_string(file_.size()));

    // The mapping is page-aligned and the header is 28 bytes, so every float is 4-byte aligned.
    const float* cursor = reinterpret_cast<const float*>(file_.data() + header_bytes);
    std::span<const float>* targets[14] = {&weights_.token_embedding,
                                           &weights_.rms_att,
                                           &weights_.wq,
                                           &weights_.wk,
                                           &weights_.wv,
                                           &weights_.wo,
                                           &weights_.rms_ffn,
                                           &weights_.w1,
                                           &weights_.w2,
                                           &weights_.w3,
                                           &weights_.rms_final,
                                           &weights_.freq_cis_real,
                                           &weights_.freq_cis_imag,
                                           &weights_.wcls};
    for (int i = 0; i < 14; ++i) {
      *targets[i] = {cursor, static_cast<std::size_t>(sizes[i])};
      cursor += sizes[i];
    }
    if (c.shared_classifier) weights_.wcls = weights_.token_embedding;
  }

  mapped_file file_;
  llama2c_config config_;
  llama2c_weights weights_;
};

}  // namespace pith
