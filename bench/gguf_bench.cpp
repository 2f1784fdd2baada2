// SPDX-License-Identifier: MIT
// pith_bench_gguf: decode and prefill speed of GGUF checkpoints as people download them (F16, Q8_0,
// Q4_0, Q4_K_M, ...), used in place from the mapped file, beside the machine's limits measured by
// the same binary (single-core read bandwidth, FMA peak).
//
// The files come from the directory in the environment variable PITH_BENCH_GGUF_DIR: every
// `*.gguf` there is benchmarked (tools/make_bench_gguf.py writes the 1.1B-parameter random Llama of
// TinyLlama's shape in each type). Without it the binary says so and runs only the limits.
//   PITH_BENCH_GGUF_DIR=/data/bench ./pith_bench_gguf
#include <pith/model/transformer.hpp>
#include <pith/model/weights.hpp>

#include "bench_common.hpp"
#include "machine_limits.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace {

struct bench_file {
  std::string name;  // file stem: "q4_k_m"
  std::filesystem::path path;
  std::uintmax_t bytes = 0;
};

std::vector<bench_file>& files() {
  static std::vector<bench_file> list;
  return list;
}

// Each file's weights, loaded once (mapped: the first pass over them reads the file).
const pith::model_weights& weights_of(const bench_file& file) {
  static std::map<std::string, std::unique_ptr<pith::model_weights>> loaded;
  auto& slot = loaded[file.name];
  if (!slot) slot = std::make_unique<pith::model_weights>(pith::load_model(file.path));
  return *slot;
}

// Multiply-adds of the weight matrices for `tokens` tokens of which `logit_rows` need logits.
double matmul_flops(const pith::model_config& c, std::size_t tokens, std::size_t logit_rows) {
  const double per_layer = static_cast<double>(c.hidden_size) * (2 * c.q_size() + 2 * c.kv_size()) +
                           3.0 * static_cast<double>(c.hidden_size) * static_cast<double>(c.intermediate_size);
  return 2.0 * (static_cast<double>(tokens) * per_layer * static_cast<double>(c.num_layers) +
                static_cast<double>(logit_rows) * static_cast<double>(c.vocab_size * c.hidden_size));
}

constexpr std::size_t decode_context = 64;  // tokens in the cache when decoding starts
constexpr std::size_t decode_limit = 256;   // the cache is refilled when it reaches this
constexpr std::size_t prefill_chunk = 512;

void decode(benchmark::State& state, const bench_file& file, std::size_t threads) {
  pith::set_num_threads(threads);
  const auto& w = weights_of(file);
  pith::session s(w, {decode_limit, decode_context});
  std::vector<float> logits(w.config.vocab_size);
  const auto ids = pith::bench::tokens(decode_context, 1);
  const auto vocab = static_cast<std::int32_t>(w.config.vocab_size);
  s.forward(ids, logits.data());
  std::int32_t token = 5;
  for (auto _ : state) {
    if (s.position() + 1 >= decode_limit) {
      state.PauseTiming();
      s.reset();
      s.forward(ids, logits.data());
      state.ResumeTiming();
    }
    s.forward(std::span(&token, 1), logits.data());
    token = (token * 31 + 7) % vocab;
  }
  state.counters["tok_per_s"] = benchmark::Counter(1.0, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["weight_GBps"] = benchmark::Counter(static_cast<double>(w.bytes_read_per_token()) * 1e-9,
                                                     benchmark::Counter::kIsIterationInvariantRate);
  pith::set_num_threads(0);
}

void prefill(benchmark::State& state, const bench_file& file, std::size_t threads) {
  pith::set_num_threads(threads);
  const auto& w = weights_of(file);
  pith::session s(w, {prefill_chunk, prefill_chunk});
  std::vector<float> logits(w.config.vocab_size);
  auto ids = pith::bench::tokens(prefill_chunk, 2);
  for (auto& id : ids) id %= static_cast<std::int32_t>(w.config.vocab_size);
  for (auto _ : state) {
    s.reset();
    s.forward(ids, logits.data());
  }
  state.counters["tok_per_s"] =
      benchmark::Counter(static_cast<double>(prefill_chunk), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["matmul_GOPs"] =
      benchmark::Counter(matmul_flops(w.config, prefill_chunk, 1) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  pith::set_num_threads(0);
}

class gguf_reporter : public pith::bench::counter_reporter {
 public:
  void Finalize() override {
    ConsoleReporter::Finalize();
    const double peak = get("pith::bench::BM_fma_peak:GFLOPs"), int8_peak = get("pith::bench::BM_int8_dot_peak:GOPs");
    const double bandwidth = get("pith::bench::BM_read_bandwidth:GBps");
    std::printf("\nlimits (1 core): read bandwidth %.1f GB/s, FMA peak %.1f GFLOP/s, int8 dot peak %.1f GOP/s\n",
                bandwidth, peak, int8_peak);
    if (files().empty()) {
      std::printf("no GGUF files: set PITH_BENCH_GGUF_DIR to a directory of *.gguf (tools/make_bench_gguf.py)\n");
      return;
    }
    std::printf("%-8s %8s | %-15s %8s %7s | %-15s %9s %7s %7s\n", "file", "GB", "decode tok/s", "GB/s", "of bw",
                "prefill tok/s", "GOP/s", "of FMA", "of int8");
    for (const auto& f : files()) {
      auto at = [&](const char* kind, int threads, const char* counter) {
        return get(std::string(kind) + "/" + f.name + "/threads:" + std::to_string(threads) + ":" + counter);
      };
      const double d1 = at("decode", 1, "tok_per_s"), d2 = at("decode", 2, "tok_per_s");
      const double g1 = at("decode", 1, "weight_GBps");
      const double p1 = at("prefill", 1, "tok_per_s"), p2 = at("prefill", 2, "tok_per_s");
      const double o1 = at("prefill", 1, "matmul_GOPs");
      std::printf("%-8s %8.2f | %6.1f / %6.1f %8.1f %7.2f | %6.1f / %6.1f %9.1f %7.2f %7.2f\n", f.name.c_str(),
                  static_cast<double>(f.bytes) * 1e-9, d1, d2, g1, bandwidth > 0 ? g1 / bandwidth : 0.0, p1, p2, o1,
                  peak > 0 ? o1 / peak : 0.0, int8_peak > 0 ? o1 / int8_peak : 0.0);
    }
    std::printf("(tok/s on 1 / 2 threads; GB/s: weight bytes streamed per token / decode time on 1 thread, against\n"
                " the read bandwidth; GOP/s: multiply-adds x 2 of the 512-token prefill on 1 thread, against the\n"
                " FMA and int8 dot-product peaks)\n");
  }

};

}  // namespace

BENCHMARK(pith::bench::BM_fma_peak);
BENCHMARK(pith::bench::BM_int8_dot_peak);
BENCHMARK(pith::bench::BM_read_bandwidth)->UseRealTime()->MinTime(1.0);

int main(int argc, char** argv) {
  if (const char* dir = std::getenv("PITH_BENCH_GGUF_DIR")) {
    for (const auto& entry : std::filesystem::directory_iterator(dir))
      if (entry.path().extension() == ".gguf")
        files().push_back({entry.path().stem().string(), entry.path(), entry.file_size()});
    std::sort(files().begin(), files().end(), [](const auto& a, const auto& b) { return a.bytes > b.bytes; });
  }
  for (const auto& f : files()) {
    for (std::size_t threads : {1, 2}) {
      benchmark::RegisterBenchmark(("decode/" + f.name + "/threads:" + std::to_string(threads)).c_str(),
                                   [&f, threads](benchmark::State& s) { decode(s, f, threads); })
          ->UseRealTime()
          ->MinTime(2.0);
      benchmark::RegisterBenchmark(("prefill/" + f.name + "/threads:" + std::to_string(threads)).c_str(),
                                   [&f, threads](benchmark::State& s) { prefill(s, f, threads); })
          ->UseRealTime()
          ->MinTime(2.0);
    }
  }
  return pith::bench::run_benchmarks<gguf_reporter>(argc, argv);
}
