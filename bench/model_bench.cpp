// SPDX-License-Identifier: MIT
// pith_bench_model: decode and prefill speed of a random ~30M-parameter Llama (hidden 512, 8 layers,
// 8 heads, 2 KV heads, intermediate 1376, vocab 32000) with its matrices stored as F32, F16 and BF16,
// on 1 and 2 threads, beside the machine's limits measured by the same binary (streaming read
// bandwidth, FMA peak); prints a ratio table.
#include <pith/model/random_weights.hpp>
#include "bench_common.hpp"
#include <pith/model/transformer.hpp>

#include "machine_limits.hpp"

#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace {

constexpr pith::dtype types[] = {pith::dtype::f32, pith::dtype::f16, pith::dtype::bf16};

// The same draws (seed 7) stored as F32, F16 or BF16: benchmark argument `type` indexes `types`.
const pith::model_weights& bench_weights(std::int64_t type = 0) {
  static const pith::model_weights weights[] = {pith::random_weights(pith::bench::config_30m(), 7, types[0]),
                                                pith::random_weights(pith::bench::config_30m(), 7, types[1]),
                                                pith::random_weights(pith::bench::config_30m(), 7, types[2])};
  return weights[type];
}

std::vector<std::int32_t> prompt(std::size_t length) {
  std::vector<std::int32_t> ids(length);
  for (std::size_t i = 0; i < length; ++i) ids[i] = static_cast<std::int32_t>((i * 7919 + 13) % 32000);
  return ids;
}

// Multiply-adds of the weight matrices for `tokens` tokens whose logits are not all needed.
double matmul_flops(const pith::model_config& c, std::size_t tokens, std::size_t logit_rows) {
  const double per_layer = static_cast<double>(c.hidden_size) * (2 * c.q_size() + 2 * c.kv_size()) +
                           3.0 * static_cast<double>(c.hidden_size) * static_cast<double>(c.intermediate_size);
  return 2.0 * (static_cast<double>(tokens) * per_layer * static_cast<double>(c.num_layers) +
                static_cast<double>(logit_rows) * static_cast<double>(c.vocab_size * c.hidden_size));
}

constexpr std::size_t decode_context = 64;  // tokens already in the cache when decoding starts

void BM_decode(benchmark::State& state) {
  pith::set_num_threads(static_cast<std::size_t>(state.range(0)));
  const auto& w = bench_weights(state.range(1));
  pith::session s(w, {1024, decode_context});
  std::vector<float> logits(w.config.vocab_size);
  const auto ids = prompt(decode_context);
  s.forward(ids, logits.data());
  std::int32_t token = 5;
  for (auto _ : state) {
    if (s.position() + 1 >= 1024) {
      state.PauseTiming();
      s.reset();
      s.forward(ids, logits.data());
      state.ResumeTiming();
    }
    s.forward(std::span(&token, 1), logits.data());
    token = (token * 31 + 7) % 32000;
  }
  state.counters["tok_per_s"] = benchmark::Counter(1.0, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["weight_GBps"] =
      benchmark::Counter(static_cast<double>(w.bytes_read_per_token()) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  pith::set_num_threads(0);
}

constexpr std::size_t prefill_chunk = 512;

void BM_prefill(benchmark::State& state) {
  pith::set_num_threads(static_cast<std::size_t>(state.range(0)));
  const auto& w = bench_weights(state.range(1));
  pith::session s(w, {prefill_chunk, prefill_chunk});
  std::vector<float> logits(w.config.vocab_size);
  const auto ids = prompt(prefill_chunk);
  for (auto _ : state) {
    s.reset();
    s.forward(ids, logits.data());
  }
  state.counters["tok_per_s"] =
      benchmark::Counter(static_cast<double>(prefill_chunk), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["matmul_GFLOPs"] =
      benchmark::Counter(matmul_flops(w.config, prefill_chunk, 1) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  pith::set_num_threads(0);
}

BENCHMARK(pith::bench::BM_fma_peak);
BENCHMARK(pith::bench::BM_read_bandwidth)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_decode)->ArgNames({"threads", "type"})->ArgsProduct({{1, 2}, {0, 1, 2}})->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_prefill)->ArgNames({"threads", "type"})->ArgsProduct({{1, 2}, {0, 1, 2}})->UseRealTime()->MinTime(2.0);

class ratio_reporter : public pith::bench::counter_reporter {
 public:
  void Finalize() override {
    ConsoleReporter::Finalize();
    const double peak = get("pith::bench::BM_fma_peak:GFLOPs"), bandwidth = get("pith::bench::BM_read_bandwidth:GBps");
    const auto mib = static_cast<double>(bench_weights(0).bytes_read_per_token()) / (1 << 20);
    std::printf("\nlimits: FMA peak %.1f GFLOP/s (1 core), read bandwidth %.1f GB/s (1 core); F32 weights %.1f MiB\n",
                peak, bandwidth, mib);
    auto at = [&](const char* bench, int threads, int type, const char* counter) {
      return get(std::string(bench) + "/threads:" + std::to_string(threads) + "/type:" + std::to_string(type) + ":" + counter);
    };
    const double d32 = at("BM_decode", 1, 0, "tok_per_s"), p32 = at("BM_prefill", 1, 0, "tok_per_s");
    std::printf("%-5s %-22s %9s %8s %9s %8s %8s\n", "type", "", "tok/s", "vs F32", "GB/s", "of bw", "2 thr");
    for (int type = 0; type < 3; ++type) {
      const std::string name(pith::dtype_name(types[type]));
      const double d1 = at("BM_decode", 1, type, "tok_per_s"), d2 = at("BM_decode", 2, type, "tok_per_s");
      const double g1 = at("BM_decode", 1, type, "weight_GBps");
      std::printf("%-5s decode  1 thread       %9.1f %7.2fx %9.1f %8.2f %7.2fx\n", name.c_str(), d1,
                  d32 > 0 ? d1 / d32 : 0.0, g1, bandwidth > 0 ? g1 / bandwidth : 0.0, d1 > 0 ? d2 / d1 : 0.0);
    }
    for (int type = 0; type < 3; ++type) {
      const std::string name(pith::dtype_name(types[type]));
      const double p1 = at("BM_prefill", 1, type, "tok_per_s"), p2 = at("BM_prefill", 2, type, "tok_per_s");
      const double f1 = at("BM_prefill", 1, type, "matmul_GFLOPs");
      std::printf("%-5s prefill 1 thread       %9.1f %7.2fx %6.1f GFLOP/s = %.2f x FMA peak %5.2fx\n", name.c_str(), p1,
                  p32 > 0 ? p1 / p32 : 0.0, f1, peak > 0 ? f1 / peak : 0.0, p1 > 0 ? p2 / p1 : 0.0);
    }
    std::printf("(vs F32: the same run's F32 figure; of bw: weight bytes per token / time against the read bandwidth;\n"
                " 2 thr: 2 threads against 1)\n");
  }

};

}  // namespace

int main(int argc, char** argv) { return pith::bench::run_benchmarks<ratio_reporter>(argc, argv); }
