// SPDX-License-Identifier: MIT
// pith_bench_executor: total reading throughput of the same two documents read by one reader at a
// time on one thread, by two readers on two threads each on its own 1-thread executor, and by one
// reader at a time on the process-wide 2-thread pool (citrus-shared, chunk 256, budget 768, the
// random ~30M Llama of pith_bench_model); prints the ratios.
#include <pith/model/random_weights.hpp>
#include "bench_common.hpp"
#include <pith/runtime/reader.hpp>

#include <benchmark/benchmark.h>

#include <time.h>

#include <array>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr std::size_t chunk = 256, budget = 768, document_tokens = 8 * chunk, answer_tokens = 4;

using pith::bench::bench_weights;
using pith::bench::tokens;

const std::vector<std::int32_t> instruction = tokens(16, 99);
const std::array<std::vector<std::int32_t>, 2> documents = {tokens(document_tokens, 1), tokens(document_tokens, 2)};

// Reads `document` and answers a few tokens with a reader computing on `on` (nullptr: the pool).
void read_document(const std::vector<std::int32_t>& document, std::shared_ptr<pith::executor> on) {
  pith::reader_options o;
  o.policy = pith::policy_kind::citrus_shared;
  o.budget = budget;
  o.chunk_size = chunk;
  o.max_answer_tokens = answer_tokens;
  o.executor = std::move(on);
  pith::reader r(bench_weights(), o, instruction);
  r.feed(document);
  pith::sampler greedy;
  benchmark::DoNotOptimize(r.answer(answer_tokens, greedy));
}

// CPU seconds of every thread of the process so far.
double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

// tok_per_s: both documents' tokens per second of wall time; cores: the process's CPU time over
// the wall time, the cores the variant obtained (below 2 when other processes share the machine).
void set_rate(benchmark::State& state, double cpu_start) {
  state.counters["tok_per_s"] =
      benchmark::Counter(static_cast<double>(documents.size() * document_tokens), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["cores"] = benchmark::Counter(process_cpu_seconds() - cpu_start, benchmark::Counter::kIsRate);
}

// Both documents in turn on the calling thread alone.
void BM_read_one_thread(benchmark::State& state) {
  bench_weights();
  const double cpu_start = process_cpu_seconds();
  const auto serial = std::make_shared<pith::inline_executor>();
  for (auto _ : state)
    for (const auto& document : documents) read_document(document, serial);
  set_rate(state, cpu_start);
}

// Each document on its own thread with its own 1-thread executor, both at once.
void BM_read_two_threads_own_executors(benchmark::State& state) {
  bench_weights();
  const double cpu_start = process_cpu_seconds();
  for (auto _ : state) {
    std::vector<std::thread> threads;
    for (const auto& document : documents)
      threads.emplace_back([&document] { read_document(document, std::make_shared<pith::thread_pool>(1)); });
    for (auto& thread : threads) thread.join();
  }
  set_rate(state, cpu_start);
}

// Both documents in turn, each reader splitting its kernels over the process-wide 2-thread pool.
void BM_read_one_thread_on_pool(benchmark::State& state) {
  bench_weights();
  const double cpu_start = process_cpu_seconds();
  pith::set_num_threads(2);
  for (auto _ : state)
    for (const auto& document : documents) read_document(document, nullptr);
  set_rate(state, cpu_start);
  pith::set_num_threads(0);
}

BENCHMARK(BM_read_one_thread)->UseRealTime()->MinTime(4.0)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_read_two_threads_own_executors)->UseRealTime()->MinTime(4.0)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_read_one_thread_on_pool)->UseRealTime()->MinTime(4.0)->Unit(benchmark::kMillisecond);

class ratio_reporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& run : runs) {
      if (run.run_type != Run::RT_Iteration || run.error_occurred) continue;
      for (const auto& [name, counter] : run.counters) values_[run.run_name.function_name + ":" + name] = counter.value;
    }
    ConsoleReporter::ReportRuns(runs);
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    const double one = get("BM_read_one_thread:tok_per_s"), two = get("BM_read_two_threads_own_executors:tok_per_s"),
                 pool = get("BM_read_one_thread_on_pool:tok_per_s");
    const double one_cores = get("BM_read_one_thread:cores"), two_cores = get("BM_read_two_threads_own_executors:cores"),
                 pool_cores = get("BM_read_one_thread_on_pool:cores");
    std::printf("\n2 documents x %zu tokens, citrus-shared, chunk %zu, budget %zu, %u hardware threads\n",
                document_tokens, chunk, budget, std::thread::hardware_concurrency());
    std::printf("one reader at a time, 1 thread:                    %8.1f tok/s on %.2f cores\n", one, one_cores);
    std::printf("two readers on 2 threads, own 1-thread executors:  %8.1f tok/s on %.2f cores = %.2f x 1 thread\n", two,
                two_cores, one > 0 ? two / one : 0.0);
    std::printf("one reader at a time, process-wide 2-thread pool:  %8.1f tok/s on %.2f cores = %.2f x 1 thread\n", pool,
                pool_cores, one > 0 ? pool / one : 0.0);
  }

 private:
  double get(const std::string& key) const {
    const auto it = values_.find(key);
    return it == values_.end() ? 0.0 : it->second;
  }
  std::map<std::string, double> values_;
};

}  // namespace

int main(int argc, char** argv) { return pith::bench::run_benchmarks<ratio_reporter>(argc, argv); }
