// SPDX-License-Identifier: MIT
// pith_bench_layers: the cost of block attention residuals and of the deconstructed token mixers on
// the random ~30M Llama of pith_bench_model (hidden 512, 8 layers, 8 heads, 2 KV heads), decode and
// prefill, single thread, all in one run; prints the overheads relative to standard layers.
#include <pith/model/random_weights.hpp>
#include "bench_common.hpp"
#include <pith/model/transformer.hpp>

#include <benchmark/benchmark.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace {

enum variant : int { standard, block8, hybrid_approximate, hybrid_non_approximate, hybrid_mlp, variant_count };
const char* const variant_names[] = {"standard", "block_attnres_8", "hybrid_approximate", "hybrid_non_approximate",
                                     "hybrid_mlp"};

pith::model_config config_of(int v) {
  pith::model_config c = pith::bench::config_30m();
  if (v == block8) {
    c.residual = pith::residual_mode::block;
    c.attn_res_block_size = 1;  // 8 layers in 8 blocks
  }
  if (v == hybrid_approximate) c.mixers = pith::mixer_layout("even", pith::mixer_kind::approximate, 8, "bench");
  if (v == hybrid_non_approximate) c.mixers = pith::mixer_layout("even", pith::mixer_kind::non_approximate, 8, "bench");
  if (v == hybrid_mlp) c.mixers = pith::mixer_layout("even", pith::mixer_kind::mlp, 8, "bench");
  return c;
}

const pith::model_weights& weights_of(int v) {
  static std::map<int, pith::model_weights> cache;
  auto it = cache.find(v);
  if (it == cache.end()) it = cache.emplace(v, pith::random_weights(config_of(v), 7)).first;
  return it->second;
}

std::vector<std::int32_t> prompt(std::size_t length) {
  std::vector<std::int32_t> ids(length);
  for (std::size_t i = 0; i < length; ++i) ids[i] = static_cast<std::int32_t>((i * 7919 + 13) % 32000);
  return ids;
}

void BM_decode(benchmark::State& state) {
  pith::set_num_threads(1);
  const auto& w = weights_of(static_cast<int>(state.range(0)));
  pith::session s(w, {1024, 64});
  std::vector<float> logits(w.config.vocab_size);
  const auto ids = prompt(64);
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
  state.SetLabel(variant_names[state.range(0)]);
  state.counters["tok_per_s"] = benchmark::Counter(1.0, benchmark::Counter::kIsIterationInvariantRate);
  pith::set_num_threads(0);
}

void BM_prefill(benchmark::State& state) {
  pith::set_num_threads(1);
  const auto& w = weights_of(static_cast<int>(state.range(0)));
  pith::session s(w, {512, 512});
  std::vector<float> logits(w.config.vocab_size);
  const auto ids = prompt(512);
  for (auto _ : state) {
    s.reset();
    s.forward(ids, logits.data());
  }
  state.SetLabel(variant_names[state.range(0)]);
  state.counters["tok_per_s"] = benchmark::Counter(512.0, benchmark::Counter::kIsIterationInvariantRate);
  pith::set_num_threads(0);
}

void variants(benchmark::internal::Benchmark* b) {
  b->ArgName("variant");
  for (int v = 0; v < variant_count; ++v) b->Arg(v);
}
BENCHMARK(BM_decode)->Apply(variants)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_prefill)->Apply(variants)->UseRealTime()->MinTime(2.0);

class ratio_reporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& run : runs)
      if (run.run_type == Run::RT_Iteration && !run.error_occurred)
        rates_[run.run_name.function_name + "/" + run.report_label] = run.counters.at("tok_per_s").value;
    ConsoleReporter::ReportRuns(runs);
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    std::printf("\n%-24s %12s %10s %12s %10s\n", "layers", "decode tok/s", "vs std", "prefill tok/s", "vs std");
    for (const char* name : variant_names) {
      const double d = rates_["BM_decode/" + std::string(name)], p = rates_["BM_prefill/" + std::string(name)];
      const double d0 = rates_["BM_decode/standard"], p0 = rates_["BM_prefill/standard"];
      std::printf("%-24s %12.1f %+9.1f%% %12.1f %+9.1f%%\n", name, d, d0 > 0 ? 100.0 * (d0 / d - 1.0) : 0.0, p,
                  p0 > 0 ? 100.0 * (p0 / p - 1.0) : 0.0);
    }
    std::printf("(vs std: extra time per token relative to standard residuals and attention)\n");
  }

 private:
  std::map<std::string, double> rates_;
};

}  // namespace

int main(int argc, char** argv) { return pith::bench::run_benchmarks<ratio_reporter>(argc, argv); }
