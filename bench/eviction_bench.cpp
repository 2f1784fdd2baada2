// SPDX-License-Identifier: MIT
// pith_bench_eviction: what eviction costs per chunk (scoring beyond attention, selection,
// compaction, re-rotation; knorm and keydiff read the cached keys; AdaKV over snapkv and citrus-shared)
// relative to the chunk's forward pass, for chunk 256 and budget 768 on
// the random ~30M Llama of pith_bench_model; and reading 10K, 100K and 1M-token documents with
// citrus-shared on 2 threads (tokens/s, memory). The per-chunk figures are single-threaded.
// KV types: the fused attention kernel over one head's cache and the document readings with the
// cache stored as F32, F16, BF16 or Q8_0, with each type's time against F32's in the same run.
#include <pith/model/random_weights.hpp>
#include "bench_common.hpp"
#include <pith/core/memory.hpp>
#include <pith/kernels/softmax_importance.hpp>
#include <pith/runtime/reader.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace {

constexpr std::size_t chunk = 256, budget = 768;

using pith::bench::bench_weights;
using pith::bench::tokens;

const std::vector<std::int32_t> instruction = tokens(16, 99);

// The baseline: one chunk forward over a full cache (budget + chunk old states), no scoring, then
// the cache is cut back to where it was so every iteration sees the same state.
void BM_chunk_forward(benchmark::State& state) {
  pith::set_num_threads(1);
  const auto& w = bench_weights();
  pith::session s(w, {budget + 2 * chunk + 1, chunk});
  s.forward(tokens(budget + chunk, 1), nullptr);
  pith::session_mark before;
  s.mark(before);
  const auto next = tokens(chunk, 2);
  for (auto _ : state) {
    s.forward(next, nullptr);
    s.rollback(before);
  }
  state.counters["tok_per_s"] = benchmark::Counter(static_cast<double>(chunk), benchmark::Counter::kIsIterationInvariantRate);
  pith::set_num_threads(0);
}

// A reader in steady state (budget + chunk states), one chunk per iteration with the policy (under
// AdaKV's head-adaptive budgets when head_adaptive: the layer's kv heads x budget shared by its heads).
void chunk_with_policy(benchmark::State& state, pith::policy_kind policy, bool head_adaptive) {
  pith::set_num_threads(1);
  pith::reader_options o;
  o.policy = policy;
  o.head_adaptive = head_adaptive;
  o.budget = budget;
  o.chunk_size = chunk;
  o.max_answer_tokens = 16;
  pith::reader r(bench_weights(), o, instruction);
  r.feed(tokens(budget + 2 * chunk, 3));
  const auto next = tokens(chunk, 4);
  const double eviction_before = r.stats().eviction_seconds, instruction_before = r.stats().instruction_seconds;
  for (auto _ : state) r.feed(next);
  state.SetLabel(pith::policy_label_name(policy, head_adaptive));
  state.counters["tok_per_s"] = benchmark::Counter(static_cast<double>(chunk), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["eviction_ms_per_chunk"] =
      (r.stats().eviction_seconds - eviction_before) * 1e3 / static_cast<double>(state.iterations());
  state.counters["instruction_ms_per_chunk"] =
      (r.stats().instruction_seconds - instruction_before) * 1e3 / static_cast<double>(state.iterations());
  pith::set_num_threads(0);
}

void BM_chunk_with_policy(benchmark::State& state) {
  chunk_with_policy(state, pith::builtin_policies[state.range(0)], false);
}

// AdaKV (docs/eviction.md, "AdaKV") over these scorers.
constexpr pith::policy_kind adakv_scorers[] = {pith::policy_kind::snapkv, pith::policy_kind::citrus_shared};

void BM_chunk_with_adakv(benchmark::State& state) { chunk_with_policy(state, adakv_scorers[state.range(0)], true); }

constexpr pith::dtype kv_types[] = {pith::dtype::f32, pith::dtype::f16, pith::dtype::bf16, pith::dtype::q8_0};
const char* kv_label(pith::dtype t) {
  return t == pith::dtype::f16 ? "f16" : t == pith::dtype::bf16 ? "bf16" : t == pith::dtype::q8_0 ? "q8_0" : "f32";
}

// One head's fused attention with importance, as a reading step runs it: `queries` queries over
// budget + chunk + queries keys (queries = chunk: a chunk's step; 1: a decode step), head_dim 64,
// keys and values stored as the type. Single-threaded.
void BM_attention_kv_type(benchmark::State& state) {
  const auto m = static_cast<std::size_t>(state.range(0));
  const pith::dtype type = kv_types[state.range(1)];
  constexpr std::size_t d = 64;
  const std::size_t n = budget + chunk + m;
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> q(m * d), k(n * d), v(n * d), out(m * d), importance(n);
  for (auto* x : {&q, &k, &v})
    for (auto& e : *x) e = uniform(rng);
  const std::size_t row = pith::kv_row_bytes(type, d);
  std::vector<std::byte> ks(n * row), vs(n * row);
  for (std::size_t j = 0; j < n; ++j) {
    pith::kv_encode_row(type, k.data() + j * d, d, ks.data() + j * row);
    pith::kv_encode_row(type, v.data() + j * d, d, vs.data() + j * row);
  }
  pith::kernels::softmax_importance_args a;
  a.queries = q.data();
  a.query_stride = d;
  if (type == pith::dtype::f32) {
    a.keys = k.data();
    a.values = v.data();
  } else {
    a.kv_type = type;
    a.key_data = ks.data();
    a.value_data = vs.data();
  }
  a.key_stride = a.value_stride = d;
  a.m = m;
  a.n = n;
  a.d = d;
  a.scale = 1.0f / std::sqrt(static_cast<float>(d));
  a.causal = true;
  a.causal_offset = n - m;
  a.output = out.data();
  a.output_stride = d;
  a.importance = importance.data();
  pith::aligned_buffer<float> scratch(pith::kernels::softmax_importance_scratch_size(m, n, d));
  for (auto _ : state) {
    pith::kernels::softmax_importance(a, scratch.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetLabel(std::string(m == 1 ? "decode/" : "chunk/") + kv_label(type));
  state.counters["kv_bytes"] = static_cast<double>(2 * n * row);
}

void BM_read_document(benchmark::State& state) {
  const auto length = static_cast<std::size_t>(state.range(0));
  pith::set_num_threads(static_cast<std::size_t>(state.range(1)));
  const pith::dtype type = kv_types[state.range(2)];
  const auto document = tokens(length, 5);
  for (auto _ : state) {
    pith::reader_options o;
    o.kv_type = type;
    o.budget = budget;
    o.chunk_size = chunk;
    o.max_answer_tokens = 16;
    pith::reader r(bench_weights(), o, instruction);
    r.feed(document);
    pith::sampler greedy;
    benchmark::DoNotOptimize(r.answer(8, greedy));
    state.counters["state_MiB"] = static_cast<double>(r.state_bytes()) / (1 << 20);
    std::size_t kv_bytes = 0;
    for (const auto& layer : r.memory_report()) kv_bytes += layer.kv_cache_bytes;
    state.counters["kv_cache_MiB"] = static_cast<double>(kv_bytes) / (1 << 20);
  }
  state.SetLabel(std::to_string(length) + "/" + kv_label(type));
  state.counters["tok_per_s"] = benchmark::Counter(static_cast<double>(length), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["peak_rss_MiB"] = static_cast<double>(pith::peak_resident_bytes()) / (1 << 20);
  pith::set_num_threads(0);
}

BENCHMARK(BM_chunk_forward)->UseRealTime()->MinTime(2.0);
// Every evicting built-in policy (index 0 is full, which grows with the document: no steady state).
BENCHMARK(BM_chunk_with_policy)
    ->DenseRange(1, static_cast<std::int64_t>(std::size(pith::builtin_policies)) - 1)
    ->ArgName("policy")
    ->UseRealTime()
    ->MinTime(2.0);
BENCHMARK(BM_chunk_with_adakv)
    ->DenseRange(0, static_cast<std::int64_t>(std::size(adakv_scorers)) - 1)
    ->ArgName("scorer")
    ->UseRealTime()
    ->MinTime(2.0);
BENCHMARK(BM_attention_kv_type)->ArgNames({"queries", "kv"})->ArgsProduct({{chunk, 1}, {0, 1, 2, 3}})->MinTime(1.0);
BENCHMARK(BM_read_document)
    ->ArgNames({"tokens", "threads", "kv"})
    ->Args({10000, 2, 0})
    ->Args({10000, 2, 1})
    ->Args({10000, 2, 2})
    ->Args({10000, 2, 3})
    ->Args({100000, 2, 0})
    ->Args({100000, 2, 1})
    ->Args({1000000, 2, 0})
    ->Args({1000000, 2, 1})
    ->Iterations(1)
    ->UseRealTime()
    ->MeasureProcessCPUTime()
    ->Unit(benchmark::kSecond);

class ratio_reporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& run : runs) {
      if (run.run_type != Run::RT_Iteration || run.error_occurred) continue;
      std::string key = run.run_name.function_name + "/" + (run.report_label.empty() ? run.run_name.args : run.report_label);
      for (const auto& [name, counter] : run.counters) values_[key + ":" + name] = counter.value;
      // Repetitions (--benchmark_repetitions, best with --benchmark_enable_random_interleaving on a
      // shared machine) keep their fastest time: what other processes add is never negative.
      const double unit = run.time_unit == benchmark::kSecond ? 1.0 : 1e-9;
      const double real = run.GetAdjustedRealTime() * unit, cpu = run.GetAdjustedCPUTime() * unit;
      seconds_[key] = seconds_.count(key) != 0 ? std::min(seconds_[key], real) : real;
      cpu_seconds_[key] = cpu_seconds_.count(key) != 0 ? std::min(cpu_seconds_[key], cpu) : cpu;
    }
    ConsoleReporter::ReportRuns(runs);
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    const double base = seconds_["BM_chunk_forward/"];
    if (base > 0) print_policies(base);
    print_kv_types();
  }

  void print_policies(double base) {
    // CPU time beside real time: on a shared host, waiting for a core inflates real time alone.
    const double base_cpu = cpu_seconds_["BM_chunk_forward/"];
    std::printf("\nchunk %zu, budget %zu: a plain chunk forward takes %.2f ms (CPU time %.2f ms)\n", chunk, budget,
                base * 1e3, base_cpu * 1e3);
    std::printf("%-21s %10s %10s %12s %14s %10s %12s\n", "policy", "ms/chunk", "overhead", "eviction ms", "instruction ms",
                "CPU ms", "CPU overhead");
    const auto row = [&](const std::string& key, const std::string& label) {
      if (seconds_.count(key) == 0) return;  // not run (--benchmark_filter)
      const double t = seconds_[key];
      const double cpu = cpu_seconds_[key];
      std::printf("%-21s %10.2f %+9.1f%% %12.3f %14.3f %10.2f %+11.1f%%\n", label.c_str(), t * 1e3,
                  base > 0 ? 100.0 * (t / base - 1.0) : 0.0, values_[key + ":eviction_ms_per_chunk"],
                  values_[key + ":instruction_ms_per_chunk"], cpu * 1e3, base_cpu > 0 ? 100.0 * (cpu / base_cpu - 1.0) : 0.0);
    };
    for (const auto policy : pith::builtin_policies) {
      if (policy == pith::policy_kind::full) continue;  // grows with the document: no steady state
      row(std::string("BM_chunk_with_policy/") + pith::policy_name(policy), pith::policy_name(policy));
    }
    for (const auto policy : adakv_scorers) {
      const std::string label = pith::policy_label_name(policy, true);
      row("BM_chunk_with_adakv/" + label, label);
    }
    std::printf("instruction of %zu tokens / chunk of %zu = %.1f%% of a chunk\n", instruction.size(), chunk,
                100.0 * static_cast<double>(instruction.size()) / chunk);
  }

  void print_kv_types() {
    // KV types: time of each type / time of F32 in this run (below 1: faster).
    std::printf("\nKV type: time / F32 time (attention kernel of one head, budget %zu + chunk %zu keys; readings)\n",
                budget, chunk);
    for (const char* step : {"chunk", "decode"})
      for (const auto type : kv_types) {
        const std::string base_key = std::string("BM_attention_kv_type/") + step + "/f32";
        const std::string key = std::string("BM_attention_kv_type/") + step + "/" + kv_label(type);
        if (seconds_.count(key) == 0 || seconds_[base_key] <= 0) continue;
        std::printf("  attention %-6s %-5s %8.1f us  %5.2fx  (CPU time %5.2fx)\n", step, kv_label(type),
                    seconds_[key] * 1e6, seconds_[key] / seconds_[base_key], cpu_seconds_[key] / cpu_seconds_[base_key]);
      }
    for (const char* length : {"10000", "100000", "1000000"})
      for (const auto type : kv_types) {
        const std::string base_key = std::string("BM_read_document/") + length + "/f32";
        const std::string key = std::string("BM_read_document/") + length + "/" + kv_label(type);
        if (seconds_.count(key) == 0 || seconds_[base_key] <= 0) continue;
        std::printf("  read %-8s tokens %-5s %8.2f s  %5.2fx  (CPU time of both threads %5.2fx)  KV cache %.1f MiB\n",
                    length, kv_label(type), seconds_[key], seconds_[key] / seconds_[base_key],
                    cpu_seconds_[key] / cpu_seconds_[base_key], values_[key + ":kv_cache_MiB"]);
      }
  }

 private:
  std::map<std::string, double> values_, seconds_, cpu_seconds_;
};

}  // namespace

int main(int argc, char** argv) { return pith::bench::run_benchmarks<ratio_reporter>(argc, argv); }
