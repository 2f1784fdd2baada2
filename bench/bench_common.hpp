// SPDX-License-Identifier: MIT
// What the model-level benchmarks share: the random ~30M-parameter Llama they all run and a main
// that prints each binary's ratio table after the usual console output.
#pragma once

#include <pith/model/random_weights.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

namespace pith::bench {

/// hidden 512, 8 layers, 8 heads, 2 KV heads (head_dim 64), intermediate 1376, vocab 32000.
inline model_config config_30m() {
  model_config c;
  c.hidden_size = 512;
  c.intermediate_size = 1376;
  c.num_layers = 8;
  c.num_heads = 8;
  c.num_kv_heads = 2;
  c.head_dim = 64;
  c.vocab_size = 32000;
  c.rms_norm_eps = 1e-5f;
  c.max_position_embeddings = 4096;
  c.mixer_mlp_intermediate_size = 4 * 512 / 3;
  c.source = "random 30M configuration";
  return c;
}

/// The float32 model of config_30m() drawn with seed 7, built once.
inline const model_weights& bench_weights() {
  static const model_weights weights = random_weights(config_30m(), 7);
  return weights;
}

/// n token ids below 32000, a fixed sequence for each salt (documents, instructions).
inline std::vector<std::int32_t> tokens(std::size_t n, std::size_t salt) {
  std::vector<std::int32_t> ids(n);
  for (std::size_t i = 0; i < n; ++i) ids[i] = static_cast<std::int32_t>((i * 7919 + salt * 104729 + 13) % 32000);
  return ids;
}

/// A ConsoleReporter that keeps each run's counters under "name[/args]:counter" for the ratio table
/// a binary prints in Finalize; get() gives 0 for a run that did not take place.
class counter_reporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& run : runs) {
      if (run.run_type != Run::RT_Iteration || run.error_occurred) continue;
      std::string key = run.run_name.function_name;
      if (!run.run_name.args.empty()) key += "/" + run.run_name.args;
      for (const auto& [name, counter] : run.counters) values_[key + ":" + name] = counter.value;
    }
    ConsoleReporter::ReportRuns(runs);
  }

 protected:
  double get(const std::string& key) const {
    const auto it = values_.find(key);
    return it == values_.end() ? 0.0 : it->second;
  }

 private:
  std::map<std::string, double> values_;
};

/// Runs the registered benchmarks with `Reporter` (a ConsoleReporter that adds a table).
template <class Reporter>
int run_benchmarks(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  Reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}

}  // namespace pith::bench
