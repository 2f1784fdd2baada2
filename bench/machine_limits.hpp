// SPDX-License-Identifier: MIT
// The machine's limits, measured by the benchmark binaries beside what they compare with them:
// BM_fma_peak (independent FMA chains on one core) and BM_read_bandwidth (streaming read from DRAM).
#pragma once

#include <pith/core/aligned_buffer.hpp>
#include <pith/simd/simd.hpp>

#include <benchmark/benchmark.h>

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
