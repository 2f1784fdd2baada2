// SPDX-License-Identifier: MIT
// The machine's limits, measured by the benchmark binaries beside what they compare with them:
// BM_fma_peak (independent FMA chains on one core), BM_int8_dot_peak (independent chains of 8-bit
// integer dot products: vpdpbusd with AVX512-VNNI, else vpmaddubsw + vpmaddwd on AVX2) and
// BM_read_bandwidth (streaming read from DRAM).
#pragma once

#include <pith/core/aligned_buffer.hpp>
#include <pith/simd/simd.hpp>

#include <benchmark/benchmark.h>

#include <cstring>

namespace pith::bench {

// Independent FMA chains, enough of them to cover the FMA latency on both FMA pipes.
inline void BM_fma_peak(benchmark::State& state) {
  using ops = simd::native::ops;
  constexpr int chains = 16;
  constexpr int iterations = 4096;
  float seed = 1.0f, multiplier = 0.999999f, addend = 1e-7f;
  benchmark::DoNotOptimize(seed);
  benchmark::DoNotOptimize(multiplier);
  benchmark::DoNotOptimize(addend);
  for (auto _ : state) {
    typename ops::vec acc[chains];
    for (int c = 0; c < chains; ++c) acc[c] = ops::set1(seed + static_cast<float>(c));
    const auto b = ops::set1(multiplier), c0 = ops::set1(addend);
    for (int i = 0; i < iterations; ++i)
      for (int c = 0; c < chains; ++c) acc[c] = ops::fmadd(acc[c], b, c0);
    float sink = 0.0f;
    for (int c = 0; c < chains; ++c) sink += ops::reduce_add(acc[c]);
    benchmark::DoNotOptimize(sink);
  }
  const double flops = 2.0 * ops::width * chains * iterations;
  state.counters["GFLOPs"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Independent chains of u8 x s8 dot products into int32 lanes, the instruction quantized
// prefill is built on; GOPs counts a multiply and an add per byte pair (as GFLOPs counts an FMA
// as two). With AVX512-VNNI, 512-bit vpdpbusd; on AVX2 vpmaddubsw + vpmaddwd (+ vpaddd) per 32
// pairs; elsewhere not measured (no counter).
inline void BM_int8_dot_peak(benchmark::State& state) {
#if defined(__AVX512VNNI__) && defined(__AVX512F__)
  using vec = __m512i;
  constexpr int pairs = 64;
  const auto step = [](vec acc, vec a, vec b) { return _mm512_dpbusd_epi32(acc, a, b); };
  const auto splat = [](int v) { return _mm512_set1_epi32(v); };
#elif defined(__AVX2__)
  using vec = __m256i;
  constexpr int pairs = 32;
  const auto step = [](vec acc, vec a, vec b) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1)));
  };
  const auto splat = [](int v) { return _mm256_set1_epi32(v); };
#endif
#if defined(__AVX2__)
  constexpr int chains = 12;
  constexpr int iterations = 4096;
  int seed = 0x01020304;
  benchmark::DoNotOptimize(seed);
  for (auto _ : state) {
    vec acc[chains];
    for (int c = 0; c < chains; ++c) acc[c] = splat(c);
    const vec a = splat(seed), b = splat(seed ^ 0x7f7f);
    for (int i = 0; i < iterations; ++i)
      for (int c = 0; c < chains; ++c) acc[c] = step(acc[c], a, b);
    alignas(64) int lanes[sizeof(vec) / sizeof(int)];
    int sink = 0;
    for (int c = 0; c < chains; ++c) {
      std::memcpy(lanes, &acc[c], sizeof(vec));
      sink += lanes[0];
    }
    benchmark::DoNotOptimize(sink);
  }
  const double ops = 2.0 * pairs * chains * iterations;
  state.counters["GOPs"] = benchmark::Counter(ops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
#else
  for (auto _ : state) {
  }
#endif
}

// Sums a 512 MiB buffer (far beyond the caches) with vector loads: the rate at which one core
// streams data from memory, the bound of decoding (which reads every weight once per token).
inline void BM_read_bandwidth(benchmark::State& state) {
  using ops = simd::native::ops;
  constexpr std::size_t floats = std::size_t{128} << 20;
  static aligned_buffer<float> buffer(floats);
  for (auto _ : state) {
    typename ops::vec acc[4] = {ops::zero(), ops::zero(), ops::zero(), ops::zero()};
    for (std::size_t i = 0; i + 4 * ops::width <= floats; i += 4 * ops::width)
      for (std::size_t k = 0; k < 4; ++k) acc[k] = ops::add(acc[k], ops::load(buffer.data() + i + k * ops::width));
    float sink = ops::reduce_add(ops::add(ops::add(acc[0], acc[1]), ops::add(acc[2], acc[3])));
    benchmark::DoNotOptimize(sink);
  }
  state.counters["GBps"] = benchmark::Counter(floats * sizeof(float) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace pith::bench
