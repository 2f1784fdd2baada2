// SPDX-License-Identifier: MIT
// KV caches stored as F32, F16, BF16 and Q8_0: rounding on write, byte counts, refusals,
// compaction of stored rows, re-rotation error per type, and a session running on each type.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <pith/cache/compaction.hpp>
#include <pith/cache/kv_cache.hpp>
#include <pith/cache/kv_type.hpp>
#include <pith/kernels/rope.hpp>
#include <pith/model/random_weights.hpp>
#include <pith/model/transformer.hpp>

namespace {

using pith::dtype;

constexpr dtype all_kv_types[] = {dtype::f32, dtype::f16, dtype::bf16, dtype::q8_0};

// Relative rounding of one element written as F16 / BF16: half an ulp of an 11- / 8-bit significand.
constexpr double f16_relative_rounding = 0x1p-11;
constexpr double bf16_relative_rounding = 0x1p-8;
// Q8_0: half a quant step d / 2 (d = amax / 127) plus the f16 rounding of d, 127 * d * 2^-11.
constexpr double q8_0_steps_of_error = 0.5 + 127.0 * 0x1p-11;
// Float rotations: angles up to max_test_angle radians carry a float error of angle * 2^-24, once
// for the first rotation and once for the re-rotation's delta, plus the roundings of the products;
// four of them, relative to the key's norm.
constexpr double max_test_angle = 130.0;
constexpr double float_rotation_relative = 4 * max_test_angle * 0x1p-24;

std::vector<float> random_row(std::mt19937& rng, std::size_t d, float spread = 1.0f) {
  std::uniform_real_distribution<float> uniform(-spread, spread);
  std::vector<float> x(d);
  for (auto& v : x) v = uniform(rng);
  return x;
}

// sqrt(sum of squared per-element error bounds) of writing x as t: a bound of the error's norm.
double error_norm_bound(dtype t, const std::vector<float>& x) {
  double sum = 0.0;
  if (t == dtype::f16 || t == dtype::bf16) {
    const double rel = t == dtype::f16 ? f16_relative_rounding : bf16_relative_rounding;
    for (const float v : x) sum += (v * rel) * (v * rel);
  } else if (t == dtype::q8_0) {
    for (std::size_t b = 0; b < x.size(); b += 32) {
      double amax = 0.0;
      for (std::size_t c = b; c < b + 32; ++c) amax = std::max(amax, static_cast<double>(std::fabs(x[c])));
      const double e = amax / 127.0 * q8_0_steps_of_error;
      sum += 32 * e * e;
    }
  }
  return std::sqrt(sum);
}

double norm(const std::vector<float>& x) {
  double s = 0.0;
  for (const float v : x) s += static_cast<double>(v) * v;
  return std::sqrt(s);
}

double distance(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) s += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
  return std::sqrt(s);
}

TEST(KvType, RowsAreWrittenWithTheTypesRoundingAndReadBackExactly) {
  std::mt19937 rng(3);
  for (const dtype t : all_kv_types) {
    SCOPED_TRACE(pith::dtype_name(t));
    for (int trial = 0; trial < 50; ++trial) {
      const auto x = random_row(rng, 64, trial % 2 == 0 ? 1.0f : 300.0f);
      std::vector<std::byte> row(pith::kv_row_bytes(t, 64));
      pith::kv_encode_row(t, x.data(), 64, row.data());
      std::vector<float> y(64);
      pith::kv_decode_row(t, row.data(), 64, y.data());
      if (t == dtype::f32) {
        ASSERT_EQ(x, y);
        continue;
      }
      for (std::size_t b = 0; b < 64; b += 32) {
        double amax = 0.0;
        for (std::size_t c = b; c < b + 32; ++c) amax = std::max(amax, static_cast<double>(std::fabs(x[c])));
        for (std::size_t c = b; c < b + 32; ++c) {
          const double bound = t == dtype::f16    ? std::fabs(x[c]) * f16_relative_rounding
                               : t == dtype::bf16 ? std::fabs(x[c]) * bf16_relative_rounding
                                                  : amax / 127.0 * q8_0_steps_of_error;
          ASSERT_LE(std::fabs(static_cast<double>(y[c]) - x[c]), bound) << c;
        }
      }
      // Writing what was read changes nothing for the element types.
      if (t != dtype::q8_0) {
        std::vector<std::byte> again(row.size());
        pith::kv_encode_row(t, y.data(), 64, again.data());
        EXPECT_EQ(std::memcmp(row.data(), again.data(), row.size()), 0);
      }
    }
  }
}

TEST(KvType, F16RowsEqualTheScalarConversionBitForBit) {
  // Rows are converted 8 elements at a time where the CPU has a conversion instruction: every bit
  // pattern (normal, subnormal, overflowing, infinite, NaN) must come out as float_to_half's.
  std::mt19937 rng(13);
  std::vector<float> x(1000);
  for (auto& v : x) v = std::bit_cast<float>(static_cast<std::uint32_t>(rng()));
  for (std::size_t i = 0; i < 64; ++i) x[i] = std::ldexp(static_cast<float>(i) - 32.0f, -20 - static_cast<int>(i % 8));
  std::vector<std::byte> row(2 * x.size());
  pith::kv_encode_row(dtype::f16, x.data(), x.size(), row.data());
  std::vector<float> back(x.size());
  pith::kv_decode_row(dtype::f16, row.data(), x.size(), back.data());
  for (std::size_t i = 0; i < x.size(); ++i) {
    std::uint16_t h;
    std::memcpy(&h, row.data() + 2 * i, 2);
    ASSERT_EQ(h, pith::float_to_half(x[i])) << i << ": " << x[i];
    ASSERT_EQ(std::bit_cast<std::uint32_t>(back[i]), std::bit_cast<std::uint32_t>(pith::half_to_float(h))) << i;
  }
}

TEST(KvType, SixteenBitTypesRoundTiesToEven) {
  // 1 + 2^-11 lies halfway between two halves (1 and 1 + 2^-10): the even one, 1, wins; 1 + 3 * 2^-11
  // rounds up to 1 + 2^-9. BF16 likewise at 2^-8.
  const float x[4] = {1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f};
  std::vector<std::byte> row(8);
  float y[4];
  pith::kv_encode_row(dtype::f16, x, 4, row.data());
  pith::kv_decode_row(dtype::f16, row.data(), 4, y);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], 1.0f + 0x1p-9f);
  pith::kv_encode_row(dtype::bf16, x + 2, 2, row.data());
  pith::kv_decode_row(dtype::bf16, row.data(), 2, y);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], 1.0f + 0x1p-6f);
}

TEST(KvType, Q80BlocksFollowTheReferenceQuantizer) {
  // amax 127 gives d = 1 exactly: x * (1 / d) = x, and roundf takes halves away from zero.
  float x[32] = {};
  x[0] = 127.0f;
  x[1] = 2.5f;
  x[2] = -2.5f;
  x[3] = 0.49f;
  x[4] = -126.5f;
  const auto b = pith::quantize_block_q8_0(x);
  EXPECT_EQ(b.d, pith::float_to_half(1.0f));
  EXPECT_EQ(b.qs[0], 127);
  EXPECT_EQ(b.qs[1], 3);
  EXPECT_EQ(b.qs[2], -3);
  EXPECT_EQ(b.qs[3], 0);
  EXPECT_EQ(b.qs[4], -127);
  // A zero block: d = 0, quants 0.
  const float zero[32] = {};
  const auto z = pith::quantize_block_q8_0(zero);
  EXPECT_EQ(z.d, 0);
  for (const auto q : z.qs) EXPECT_EQ(q, 0);
}

// A key with a NaN or an infinity (a broken model's arithmetic) cannot be scaled to int8: its
// block reads back as NaNs (a float cache would give non-finite scores too), never as a silently
// finite row; a block too small to scale reads back as zeros.
TEST(KvType, Q80NonFiniteBlocksReadBackAsNaNAndTinyBlocksAsZeros) {
  std::vector<float> x(96, 0.5f);
  x[7] = std::numeric_limits<float>::quiet_NaN();
  x[40] = -std::numeric_limits<float>::infinity();
  for (std::size_t i = 64; i < 96; ++i) x[i] = 1e-41f;
  std::vector<std::byte> row(pith::kv_row_bytes(dtype::q8_0, x.size()));
  pith::kv_encode_row(dtype::q8_0, x.data(), x.size(), row.data());
  std::vector<float> y(x.size());
  pith::kv_decode_row(dtype::q8_0, row.data(), x.size(), y.data());
  for (std::size_t i = 0; i < 64; ++i) EXPECT_TRUE(std::isnan(y[i])) << "element " << i;
  for (std::size_t i = 64; i < 96; ++i) EXPECT_EQ(y[i], 0.0f) << "element " << i;
}

TEST(KvType, BytesPerRowAndPerCacheAreExact) {
  constexpr std::size_t layers = 3, heads = 2, d = 64, capacity = 10;
  const std::size_t f32_row = d * 4;
  EXPECT_EQ(pith::kv_row_bytes(dtype::f32, d), f32_row);
  EXPECT_EQ(pith::kv_row_bytes(dtype::f16, d), f32_row / 2);
  EXPECT_EQ(pith::kv_row_bytes(dtype::bf16, d), f32_row / 2);
  EXPECT_EQ(pith::kv_row_bytes(dtype::q8_0, d), f32_row * 34 / 128);  // 34 bytes per 32 elements
  for (const dtype t : all_kv_types) {
    SCOPED_TRACE(pith::dtype_name(t));
    pith::kv_cache cache(layers, heads, d, capacity, t);
    EXPECT_EQ(cache.kv_type(), t);
    EXPECT_EQ(cache.row_bytes(), pith::kv_row_bytes(t, d));
    const std::size_t per_layer = capacity * heads * (2 * pith::kv_row_bytes(t, d) + sizeof(std::int64_t));
    EXPECT_EQ(cache.layer_bytes_allocated(1), per_layer);
    EXPECT_EQ(cache.bytes_allocated(), layers * per_layer);
    cache.set_size(0, 0, 4);
    cache.set_size(2, 1, 3);
    EXPECT_EQ(cache.bytes_used(), 7 * (2 * pith::kv_row_bytes(t, d) + sizeof(std::int64_t)));
  }
}

TEST(KvType, OtherTypesAndQ80WithAHeadSizeNotAMultipleOf32AreRefused) {
  try {
    pith::kv_cache cache(1, 1, 64, 4, dtype::q4_k);
    FAIL() << "q4_k accepted";
  } catch (const pith::argument_error& e) {
    EXPECT_NE(std::string(e.what()).find("kv_type"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("Q4_K"), std::string::npos) << e.what();
  }
  try {
    pith::kv_cache cache(1, 1, 24, 4, dtype::q8_0);
    FAIL() << "q8_0 with head_dim 24 accepted";
  } catch (const pith::argument_error& e) {
    EXPECT_NE(std::string(e.what()).find("head_dim 24"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("q8_0"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(pith::kv_cache(1, 1, 24, 4, dtype::f16));
  EXPECT_EQ(pith::parse_kv_type("f16"), dtype::f16);
  EXPECT_EQ(pith::parse_kv_type("Q8_0"), dtype::q8_0);
  EXPECT_THROW(pith::parse_kv_type("q4_0"), pith::argument_error);
  EXPECT_THROW(pith::parse_kv_type("f64"), pith::argument_error);
}

TEST(KvType, CompactionKeepsTheSamePositionsStoredBytes) {
  constexpr std::size_t d = 64, rows = 20;
  std::mt19937 rng(5);
  for (const dtype t : all_kv_types) {
    SCOPED_TRACE(pith::dtype_name(t));
    pith::kv_cache cache(2, 2, d, rows, t);
    for (std::size_t i = 0; i < rows; ++i) {
      const auto k = random_row(rng, d), v = random_row(rng, d);
      cache.write(1, 1, i, k.data(), v.data());
      cache.positions(1, 1)[i] = static_cast<std::int64_t>(100 + i);
    }
    cache.set_size(1, 1, rows);
    std::vector<std::byte> keys_before(cache.key_data(1, 1), cache.key_data(1, 1) + rows * cache.row_bytes());
    std::vector<std::byte> values_before(cache.value_data(1, 1), cache.value_data(1, 1) + rows * cache.row_bytes());
    const std::vector<std::uint32_t> keep = {0, 3, 4, 9, 17, 19};
    pith::compact(cache, 1, 1, keep);
    ASSERT_EQ(cache.size(1, 1), keep.size());
    for (std::size_t i = 0; i < keep.size(); ++i) {
      EXPECT_EQ(cache.positions(1, 1)[i], static_cast<std::int64_t>(100 + keep[i]));
      EXPECT_EQ(std::memcmp(cache.key_data(1, 1) + i * cache.row_bytes(), keys_before.data() + keep[i] * cache.row_bytes(),
                            cache.row_bytes()),
                0)
          << "key " << i;
      EXPECT_EQ(std::memcmp(cache.value_data(1, 1) + i * cache.row_bytes(),
                            values_before.data() + keep[i] * cache.row_bytes(), cache.row_bytes()),
                0)
          << "value " << i;
    }
    EXPECT_THROW(pith::compact(cache, 1, 1, std::vector<std::uint32_t>{2, 1}), pith::argument_error);
  }
}

// Keys rotated to their positions, written as t, compacted, renumbered: each key read back against
// the exact (double) rotation of the original key to its new position. The error is the write's
// rounding, carried through the rotation (norm-preserving), plus the re-write's rounding.
TEST(KvType, ReRotationRoundTripErrorIsBoundedByTwoRoundingsOfTheType) {
  constexpr std::size_t d = 64, rows = 40;
  constexpr float theta = 10000.0f;
  std::vector<float> inv_freq(d / 2);
  pith::kernels::rope_inverse_frequencies(theta, d, inv_freq.data());
  for (const auto layout : {pith::kernels::rope_layout::half, pith::kernels::rope_layout::interleaved}) {
    for (const dtype t : all_kv_types) {
      SCOPED_TRACE(pith::dtype_name(t));
      std::mt19937 rng(7);
      pith::kv_cache cache(1, 1, d, rows, t);
      std::vector<std::vector<float>> originals, written;
      for (std::size_t i = 0; i < rows; ++i) {
        auto key = random_row(rng, d);
        originals.push_back(key);
        std::vector<float> cos(d / 2), sin(d / 2);
        const auto position = static_cast<std::int64_t>(10 + 3 * i);  // angles below max_test_angle
        pith::kernels::rope_angles(static_cast<double>(position), inv_freq.data(), d, cos.data(), sin.data());
        pith::kernels::apply_rope(layout, key.data(), 1, d, d, cos.data(), sin.data());
        const auto value = random_row(rng, d);
        written.push_back(key);
        cache.write(0, 0, i, key.data(), value.data());
        cache.positions(0, 0)[i] = position;
      }
      cache.set_size(0, 0, rows);
      std::vector<std::uint32_t> keep;
      for (std::uint32_t i = 0; i < rows; i += 2) keep.push_back(i);
      pith::compact(cache, 0, 0, keep);
      pith::rerotator rotate(d, inv_freq, layout, rows);
      rotate.renumber(cache, 0, 0);
      double worst_ratio = 0.0, worst_relative = 0.0;
      for (std::size_t i = 0; i < keep.size(); ++i) {
        ASSERT_EQ(cache.positions(0, 0)[i], static_cast<std::int64_t>(i));
        // The exact key at position i, in double.
        std::vector<float> exact(d);
        const auto& x = originals[keep[i]];
        for (std::size_t p = 0; p < d / 2; ++p) {
          const double angle = static_cast<double>(i) * inv_freq[p];
          const std::size_t a = layout == pith::kernels::rope_layout::half ? p : 2 * p;
          const std::size_t b = layout == pith::kernels::rope_layout::half ? p + d / 2 : 2 * p + 1;
          exact[a] = static_cast<float>(x[a] * std::cos(angle) - x[b] * std::sin(angle));
          exact[b] = static_cast<float>(x[a] * std::sin(angle) + x[b] * std::cos(angle));
        }
        std::vector<float> stored(d);
        cache.read_key(0, 0, i, stored.data());
        // First rounding: of the key written at its old position; second: of the re-rotated key, whose
        // bound is taken from the stored row (its block maxima differ from the unrounded ones by at
        // most one rounding: the 1.01).
        const double bound = error_norm_bound(t, written[keep[i]]) + error_norm_bound(t, stored) * 1.01 +
                             float_rotation_relative * norm(x);
        const double error = distance(stored, exact);
        ASSERT_LE(error, bound) << "key " << i;
        worst_ratio = std::max(worst_ratio, error / bound);
        worst_relative = std::max(worst_relative, error / norm(x));
      }
      std::cout << "[ kv_type ] re-rotation " << (layout == pith::kernels::rope_layout::half ? "half" : "interleaved")
                << " " << pith::dtype_name(t) << ": worst key error / key norm " << worst_relative
                << ", / bound " << worst_ratio << "\n";
    }
  }
}

pith::model_config session_config(std::size_t head_dim) {
  pith::model_config c;
  c.hidden_size = 4 * head_dim;
  c.intermediate_size = 96;
  c.num_layers = 3;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = head_dim;
  c.vocab_size = 53;
  c.rms_norm_eps = 1e-5f;
  c.max_position_embeddings = 256;
  c.source = "kv_type test config";
  return c;
}

TEST(KvTypeSession, MemoryReportShowsTheTypesBytesExactly) {
  const auto c = session_config(64);
  const auto weights = pith::random_weights(c, 9);
  std::size_t f32_bytes = 0;
  for (const dtype t : all_kv_types) {
    SCOPED_TRACE(pith::dtype_name(t));
    pith::session_options o;
    o.max_context = 100;
    o.kv_type = t;
    pith::session s(weights, o);
    std::size_t total = 0;
    for (const auto& layer : s.memory_report()) {
      EXPECT_EQ(layer.kv_type, t);
      EXPECT_EQ(layer.kv_cache_bytes, 100 * c.num_kv_heads * (2 * pith::kv_row_bytes(t, 64) + sizeof(std::int64_t)));
      total += layer.kv_cache_bytes;
    }
    if (t == dtype::f32) f32_bytes = total;
    // Keys and values: f16 and bf16 halve them, q8_0 stores 34 bytes per 128 of f32; positions stay.
    const std::size_t positions = c.num_layers * 100 * c.num_kv_heads * sizeof(std::int64_t);
    const std::size_t f32_kv = f32_bytes - positions;
    if (t == dtype::f16 || t == dtype::bf16) {
      EXPECT_EQ(total - positions, f32_kv / 2);
    }
    if (t == dtype::q8_0) {
      EXPECT_EQ(total - positions, f32_kv / 128 * 34);
    }
  }
}

TEST(KvTypeSession, RefusesOtherTypesAndQ80ForAHeadSizeNotAMultipleOf32) {
  const auto c = session_config(24);
  const auto weights = pith::random_weights(c, 9);
  pith::session_options o;
  o.kv_type = dtype::q8_0;
  try {
    pith::session s(weights, o);
    FAIL() << "q8_0 with head_dim 24 accepted";
  } catch (const pith::argument_error& e) {
    EXPECT_NE(std::string(e.what()).find("session_options::kv_type"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("head_dim 24"), std::string::npos) << e.what();
  }
  o.kv_type = dtype::q4_k;
  EXPECT_THROW(pith::session(weights, o), pith::argument_error);
  o.kv_type = dtype::bf16;
  EXPECT_NO_THROW(pith::session(weights, o));
}

// Logits of a session on each type against the F32 session, token by token after a prefill: a random
// model's logits are O(1); each type's relative rounding, amplified through 3 layers, bounds them.
TEST(KvTypeSession, LogitsFollowTheF32CacheWithinTheTypesRounding) {
  // Largest logit difference seen as a multiple of the type's relative rounding (F16 2^-11, BF16 2^-8,
  // Q8_0 1/254 of a block's maximum): the rounding enters each layer's attention once.
  constexpr double amplification = 64.0;
  const auto c = session_config(64);
  const auto weights = pith::random_weights(c, 21);
  std::vector<std::int32_t> prompt(90);
  for (std::size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<std::int32_t>((i * 13 + 5) % c.vocab_size);
  auto run = [&](dtype t) {
    pith::session_options o;
    o.max_context = 128;
    o.max_chunk = 32;
    o.kv_type = t;
    pith::session s(weights, o);
    std::vector<float> logits(c.vocab_size);
    s.forward(prompt, logits.data());
    std::vector<float> all = logits;
    for (std::int32_t token : {3, 7, 11}) {
      s.forward(std::span(&token, 1), logits.data());
      all.insert(all.end(), logits.begin(), logits.end());
    }
    return all;
  };
  const auto reference = run(dtype::f32);
  for (const dtype t : {dtype::f16, dtype::bf16, dtype::q8_0}) {
    SCOPED_TRACE(pith::dtype_name(t));
    const double rounding = t == dtype::f16 ? f16_relative_rounding : t == dtype::bf16 ? bf16_relative_rounding : 1.0 / 254;
    const auto logits = run(t);
    double scale = 0.0, worst = 0.0;
    for (std::size_t i = 0; i < logits.size(); ++i) {
      scale = std::max(scale, static_cast<double>(std::fabs(reference[i])));
      worst = std::max(worst, static_cast<double>(std::fabs(logits[i] - reference[i])));
    }
    EXPECT_LE(worst, amplification * rounding * scale);
    EXPECT_GT(worst, 0.0);  // the type is really used
    std::cout << "[ kv_type ] session logits " << pith::dtype_name(t) << ": worst difference " << worst
              << " (logit scale " << scale << ")\n";
  }
}

}  // namespace
