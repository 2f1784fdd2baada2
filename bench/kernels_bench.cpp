// SPDX-License-Identifier: MIT
// pith_bench_kernels: the fused softmax-importance kernel and the matmul against the scalar path, the
// plain Eigen formulation and this core's FMA peak, and the matmul over F16/BF16 weights against
// float32 and the read bandwidth, and the integer dot products over block-quantized weights
// against the read bandwidth (decode) and the int8 peak (prefill), all measured in one run;
// prints ratio tables at the end.
// pith first: its x86 intrinsics header silences GCC 12's false warnings in <immintrin.h>.
#include <pith/core/aligned_buffer.hpp>
#include <pith/kernels/matmul.hpp>
#include <pith/kernels/softmax_importance.hpp>
#include <pith/core/quant.hpp>
#include <pith/kernels/typed_matmul.hpp>

#include "bench_common.hpp"
#include "machine_limits.hpp"

#include <benchmark/benchmark.h>

#include <Eigen/Core>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace {

using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

using pith::bench::BM_fma_peak;
using pith::bench::BM_int8_dot_peak;
using pith::bench::BM_read_bandwidth;
BENCHMARK(BM_fma_peak);
BENCHMARK(BM_int8_dot_peak);
BENCHMARK(BM_read_bandwidth)->Unit(benchmark::kMillisecond);

// ------------------------------------------------------------------ problems
struct problem {
  std::size_t m, n, d;
  row_matrix q, k, v, out, s;
  Eigen::VectorXf importance;
  pith::aligned_buffer<float> scratch;

  problem(std::size_t m_, std::size_t n_, std::size_t d_) : m(m_), n(n_), d(d_) {
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    q.resize(static_cast<Eigen::Index>(m), static_cast<Eigen::Index>(d));
    k.resize(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(d));
    v.resize(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(d));
    for (auto* x : {&q, &k, &v})
      for (Eigen::Index i = 0; i < x->size(); ++i) x->data()[i] = u(rng);
    out.resize(static_cast<Eigen::Index>(m), static_cast<Eigen::Index>(d));
    s.resize(static_cast<Eigen::Index>(m), static_cast<Eigen::Index>(n));
    importance.resize(static_cast<Eigen::Index>(n));
    scratch.resize(pith::kernels::softmax_importance_scratch_size(m, n, d));
  }

  pith::kernels::softmax_importance_args args(bool with_output) {
    pith::kernels::softmax_importance_args a;
    a.queries = q.data();
    a.query_stride = d;
    a.keys = k.data();
    a.key_stride = d;
    a.values = v.data();
    a.value_stride = d;
    a.m = m;
    a.n = n;
    a.d = d;
    a.scale = 1.0f / std::sqrt(static_cast<float>(d));
    a.output = with_output ? out.data() : nullptr;
    a.output_stride = d;
    a.importance = importance.data();
    return a;
  }
};

void set_flops(benchmark::State& state, double flops) {
  state.counters["GFLOPs"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

template <class Ops, bool WithOutput>
void BM_pith(benchmark::State& state) {
  problem p(static_cast<std::size_t>(state.range(0)), static_cast<std::size_t>(state.range(1)),
            static_cast<std::size_t>(state.range(2)));
  const auto args = p.args(WithOutput);
  for (auto _ : state) {
    pith::kernels::softmax_importance_with<Ops>(args, p.scratch.data());
    benchmark::DoNotOptimize(p.importance.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, (WithOutput ? 4.0 : 2.0) * static_cast<double>(p.m * p.n * p.d));
}

// What a user would write with Eigen: scores, row softmax with array ops, column mean, P V.
template <bool WithOutput>
void BM_eigen(benchmark::State& state) {
  problem p(static_cast<std::size_t>(state.range(0)), static_cast<std::size_t>(state.range(1)),
            static_cast<std::size_t>(state.range(2)));
  const float scale = 1.0f / std::sqrt(static_cast<float>(p.d));
  for (auto _ : state) {
    p.s.noalias() = (p.q * p.k.transpose()) * scale;
    p.s = (p.s.colwise() - p.s.rowwise().maxCoeff()).array().exp();
    p.s.array().colwise() /= p.s.rowwise().sum().array();
    p.importance = p.s.colwise().mean().transpose();
    if (WithOutput) p.out.noalias() = p.s * p.v;
    benchmark::DoNotOptimize(p.importance.data());
    benchmark::DoNotOptimize(p.out.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, (WithOutput ? 4.0 : 2.0) * static_cast<double>(p.m * p.n * p.d));
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"m", "n", "d"});
  for (auto [m, n, d] : std::vector<std::array<long, 3>>{
           {1, 4096, 128}, {32, 4096, 128}, {256, 1024, 64}, {256, 1024, 128}, {256, 4096, 128}})
    b->Args({m, n, d});
}

using native_ops = pith::simd::native::ops;
using scalar_ops = pith::simd::scalar::ops;
BENCHMARK(BM_pith<native_ops, true>)->Name("BM_softmax_importance_native")->Apply(shapes);
BENCHMARK(BM_pith<scalar_ops, true>)->Name("BM_softmax_importance_scalar")->Apply(shapes);
BENCHMARK(BM_eigen<true>)->Name("BM_softmax_importance_eigen")->Apply(shapes);
BENCHMARK(BM_pith<native_ops, false>)->Name("BM_softmax_importance_only_native")->Apply(shapes);
BENCHMARK(BM_pith<scalar_ops, false>)->Name("BM_softmax_importance_only_scalar")->Apply(shapes);
BENCHMARK(BM_eigen<false>)->Name("BM_softmax_importance_only_eigen")->Apply(shapes);

// ------------------------------------------------------------------ matmul
// Y = X W^T on one thread for X [rows, in], W [out, in]: Eigen (pith's previous path), pith's
// matmul_transposed_range (GEMM from gemm_min_rows rows, Eigen below) and the GEMM alone.
struct matmul_problem {
  std::size_t rows, in, out;
  pith::aligned_buffer<float> x, w, y, scratch;

  explicit matmul_problem(const benchmark::State& state)
      : rows(static_cast<std::size_t>(state.range(0))),
        in(static_cast<std::size_t>(state.range(1))),
        out(static_cast<std::size_t>(state.range(2))),
        x(rows * in),
        w(out * in),
        y(rows * out),
        scratch(pith::kernels::gemm_transposed_scratch_size()) {
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (auto* buffer : {&x, &w})
      for (float& value : *buffer) value = u(rng);
  }
  double flops() const { return 2.0 * static_cast<double>(rows * in * out); }
};

enum class matmul_variant { eigen, pith, gemm };

template <matmul_variant Variant>
void BM_matmul(benchmark::State& state) {
  matmul_problem p(state);
  for (auto _ : state) {
    if constexpr (Variant == matmul_variant::eigen)
      pith::kernels::matmul_transposed_eigen(p.x.data(), p.rows, p.in, p.in, p.w.data(), 0, p.out, p.y.data(), p.out, false);
    else if constexpr (Variant == matmul_variant::pith)
      pith::kernels::matmul_transposed_range(p.x.data(), p.rows, p.in, p.in, p.w.data(), 0, p.out, p.y.data(), p.out, false);
    else
      pith::kernels::gemm_transposed(p.x.data(), p.rows, p.in, p.in, p.w.data(), 0, p.out, p.y.data(), p.out, false,
                                     p.scratch.data());
    benchmark::DoNotOptimize(p.y.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, p.flops());
}

void matmul_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"rows", "in", "out"});
  for (auto [rows, in, out] : std::vector<std::array<long, 3>>{{512, 512, 512}, {512, 512, 1376}, {512, 1376, 512}, {1, 512, 32000}})
    b->Args({rows, in, out});
}

// Few rows: where the GEMM overtakes Eigen (gemm_min_rows), with W in cache (2.8 MB) and not (65 MB).
void matmul_row_sweep(benchmark::internal::Benchmark* b) {
  b->ArgNames({"rows", "in", "out"});
  for (long out : {1376, 32000})
    for (long rows : {1, 2, 3, 4, 8, 16, 64}) b->Args({rows, 512, out});
}

BENCHMARK(BM_matmul<matmul_variant::eigen>)->Name("BM_matmul_eigen")->Apply(matmul_shapes);
BENCHMARK(BM_matmul<matmul_variant::pith>)->Name("BM_matmul_pith")->Apply(matmul_shapes);
BENCHMARK(BM_matmul<matmul_variant::gemm>)->Name("BM_matmul_gemm")->Apply(matmul_shapes);
BENCHMARK(BM_matmul<matmul_variant::eigen>)->Name("BM_matmul_eigen")->Apply(matmul_row_sweep);
BENCHMARK(BM_matmul<matmul_variant::gemm>)->Name("BM_matmul_gemm")->Apply(matmul_row_sweep);

// ------------------------------------------------------------------ typed weights
// Y = X W^T on one thread with W [out, in] in F32, F16 or BF16 through the typed entry point
// (matmul_transposed_range over a tensor_view): F32 takes matmul.hpp's float kernels (Eigen's
// matrix-vector product for one row, the GEMM from gemm_min_rows), F16 and BF16 the kernels that
// convert W in registers (the matrix-vector kernel below typed_gemm_min_rows, the GEMM from there). GBps counts W's bytes: one row of X reads W once.
enum class typed_variant { f32, f16, bf16, bf16_dot };

template <typed_variant Variant>
void BM_typed(benchmark::State& state) {
  constexpr pith::dtype type = Variant == typed_variant::f32   ? pith::dtype::f32
                               : Variant == typed_variant::f16 ? pith::dtype::f16
                                                               : pith::dtype::bf16;
  const auto rows = static_cast<std::size_t>(state.range(0)), in = static_cast<std::size_t>(state.range(1)),
             out = static_cast<std::size_t>(state.range(2));
  pith::aligned_buffer<float> x(rows * in), y(rows * out);
  pith::aligned_buffer<std::uint32_t> storage((out * pith::dtype_row_bytes(type, in) + 3) / 4);
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (float& value : x) value = u(rng);
  auto* bytes = reinterpret_cast<unsigned char*>(storage.data());
  for (std::size_t i = 0; i < out * in; ++i) {
    const float value = u(rng);
    if constexpr (type == pith::dtype::f32) {
      std::memcpy(bytes + 4 * i, &value, 4);
    } else {
      const std::uint16_t bits = type == pith::dtype::f16 ? pith::float_to_half(value) : pith::float_to_bfloat16(value);
      std::memcpy(bytes + 2 * i, &bits, 2);
    }
  }
  const auto w = pith::tensor_view::borrow(storage.data(), type, out, in);
  for (auto _ : state) {
    if constexpr (Variant == typed_variant::bf16_dot)
      pith::kernels::matmul_transposed_range_with<native_ops>(x.data(), rows, in, w, 0, out, y.data(), out, false,
                                                              pith::kernels::bf16_decode::dot_pairs);
    else if constexpr (Variant == typed_variant::bf16)
      pith::kernels::matmul_transposed_range_with<native_ops>(x.data(), rows, in, w, 0, out, y.data(), out, false,
                                                              pith::kernels::bf16_decode::shift_fma);
    else
      pith::kernels::matmul_transposed_range(x.data(), rows, in, w, 0, out, y.data(), out, false);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, 2.0 * static_cast<double>(rows * in * out));
  state.counters["GBps"] = benchmark::Counter(static_cast<double>(w.bytes()) * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

// The benchmark model's products (hidden 512, intermediate 1376, vocab 32000): decode (one row)
// with W in L2 (1376 x 512) and far beyond the caches (32000 x 512), prefill chunks of 64 to 512 rows.
void typed_decode_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"rows", "in", "out"});
  for (auto [in, out] : std::vector<std::array<long, 2>>{{512, 1376}, {1376, 512}, {512, 32000}}) b->Args({1, in, out});
}
void typed_prefill_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"rows", "in", "out"});
  for (long rows : {64, 512})
    for (auto [in, out] : std::vector<std::array<long, 2>>{{512, 512}, {512, 1376}, {1376, 512}}) b->Args({rows, in, out});
}

BENCHMARK(BM_typed<typed_variant::f32>)->Name("BM_matvec_f32")->Apply(typed_decode_shapes);
BENCHMARK(BM_typed<typed_variant::f16>)->Name("BM_matvec_f16")->Apply(typed_decode_shapes);
BENCHMARK(BM_typed<typed_variant::bf16>)->Name("BM_matvec_bf16")->Apply(typed_decode_shapes);
BENCHMARK(BM_typed<typed_variant::bf16_dot>)->Name("BM_matvec_bf16_dot")->Apply(typed_decode_shapes);
BENCHMARK(BM_typed<typed_variant::f32>)->Name("BM_gemm_f32")->Apply(typed_prefill_shapes);
BENCHMARK(BM_typed<typed_variant::f16>)->Name("BM_gemm_f16")->Apply(typed_prefill_shapes);
BENCHMARK(BM_typed<typed_variant::bf16>)->Name("BM_gemm_bf16")->Apply(typed_prefill_shapes);

// ------------------------------------------------------------------ quantized weights
// Y = X W^T on one thread with W [out, in] block-quantized (random valid blocks: random bytes,
// finite f16 scales), through matmul_transposed_range: X quantized to 8 bits, integer dot
// products. GBps counts W's bytes (one row of X reads W once); GOPs counts 2 rows·in·out.
template <pith::dtype T>
void BM_quant(benchmark::State& state) {
  const auto rows = static_cast<std::size_t>(state.range(0)), in = static_cast<std::size_t>(state.range(1)),
             out = static_cast<std::size_t>(state.range(2));
  pith::aligned_buffer<float> x(rows * in), y(rows * out);
  const std::size_t row_bytes = pith::dtype_row_bytes(T, in);
  pith::aligned_buffer<std::byte> storage(out * row_bytes);
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (float& value : x) value = u(rng);
  using block = pith::quant::block_t<T>;
  for (std::size_t b = 0; b < out * row_bytes / sizeof(block); ++b) {
    block blk;
    auto* bytes = reinterpret_cast<unsigned char*>(&blk);
    for (std::size_t i = 0; i < sizeof(blk); ++i) bytes[i] = static_cast<unsigned char>(rng());
    blk.d = pith::float_to_half(0.01f * u(rng));
    if constexpr (requires { blk.dmin; }) blk.dmin = pith::float_to_half(0.01f * u(rng));
    if constexpr (requires { blk.m; }) blk.m = pith::float_to_half(0.01f * u(rng));
    std::memcpy(storage.data() + b * sizeof(block), &blk, sizeof(blk));
  }
  const auto w = pith::tensor_view::borrow(storage.data(), T, out, in);
  for (auto _ : state) {
    pith::kernels::matmul_transposed_range(x.data(), rows, in, w, 0, out, y.data(), out, false);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.counters["GOPs"] =
      benchmark::Counter(2.0 * static_cast<double>(rows * in * out) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GBps"] = benchmark::Counter(static_cast<double>(w.bytes()) * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

// The same through matmul_transposed on `threads` threads of the pool (activations quantized once
// on the calling thread, output rows split across the threads); real time.
template <pith::dtype T>
void BM_quant_pool(benchmark::State& state) {
  const auto rows = static_cast<std::size_t>(state.range(0)), in = static_cast<std::size_t>(state.range(1)),
             out = static_cast<std::size_t>(state.range(2));
  pith::set_num_threads(static_cast<std::size_t>(state.range(3)));
  pith::aligned_buffer<float> x(rows * in), y(rows * out);
  const std::size_t row_bytes = pith::dtype_row_bytes(T, in);
  pith::aligned_buffer<std::byte> storage(out * row_bytes);
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (float& value : x) value = u(rng);
  auto* raw = reinterpret_cast<unsigned char*>(storage.data());
  for (std::size_t i = 0; i < out * row_bytes; ++i) raw[i] = static_cast<unsigned char>(rng() & 0x3B);  // finite f16 scales
  const auto w = pith::tensor_view::borrow(storage.data(), T, out, in);
  for (auto _ : state) {
    pith::kernels::matmul_transposed(x.data(), rows, in, w, y.data(), out);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  pith::set_num_threads(0);
  state.counters["GOPs"] =
      benchmark::Counter(2.0 * static_cast<double>(rows * in * out) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GBps"] = benchmark::Counter(static_cast<double>(w.bytes()) * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

// TinyLlama-1.1B's products (hidden 2048, intermediate 5632, vocab 32000): decode with W of
// 6-24 MB (beyond L2, partly in L3) and the LM head (36-70 MB, beyond every cache); prefill of
// 512 rows.
void quant_decode_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"rows", "in", "out"});
  for (auto [in, out] : std::vector<std::array<long, 2>>{{2048, 5632}, {5632, 2048}, {2048, 32000}}) b->Args({1, in, out});
}
void quant_prefill_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"rows", "in", "out"});
  b->Args({512, 2048, 2048});
  b->Args({64, 2048, 2048});  // one chunk of a chunked reading
  b->Unit(benchmark::kMillisecond);
}

// A W larger than any last-level cache (Q4_0 0.46 GB, Q8_0 0.87 GB): the decode kernels' DRAM rate,
// with W prefetched 8 KB ahead into L2 and with none (kernels::set_quant_prefetch_bytes), the two
// settings quant_prefetch_bytes() chooses between by CPU.
template <pith::dtype T>
void BM_quant_dram(benchmark::State& state) {
  const std::size_t saved = pith::kernels::quant_prefetch_bytes();
  pith::kernels::set_quant_prefetch_bytes(static_cast<std::size_t>(state.range(3)));
  BM_quant<T>(state);
  pith::kernels::set_quant_prefetch_bytes(saved);
}
void quant_dram_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"rows", "in", "out", "prefetch"});
  for (long prefetch : {8192, 0}) b->Args({1, 2048, 400000, prefetch});
  b->Unit(benchmark::kMillisecond);
}
BENCHMARK(BM_quant<pith::dtype::q8_0>)->Name("BM_qmatvec_q8_0")->Apply(quant_decode_shapes);
BENCHMARK(BM_quant<pith::dtype::q4_0>)->Name("BM_qmatvec_q4_0")->Apply(quant_decode_shapes);
BENCHMARK(BM_quant<pith::dtype::q4_k>)->Name("BM_qmatvec_q4_k")->Apply(quant_decode_shapes);
BENCHMARK(BM_quant<pith::dtype::q5_k>)->Name("BM_qmatvec_q5_k")->Apply(quant_decode_shapes);
BENCHMARK(BM_quant<pith::dtype::q6_k>)->Name("BM_qmatvec_q6_k")->Apply(quant_decode_shapes);
BENCHMARK(BM_quant_dram<pith::dtype::q8_0>)->Name("BM_qmatvec_dram_q8_0")->Apply(quant_dram_shapes);
BENCHMARK(BM_quant_dram<pith::dtype::q4_0>)->Name("BM_qmatvec_dram_q4_0")->Apply(quant_dram_shapes);
void quant_pool_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"rows", "in", "out", "threads"});
  for (long threads : {1, 2}) b->Args({1, 2048, 32000, threads});
  b->UseRealTime();
}
BENCHMARK(BM_quant_pool<pith::dtype::q8_0>)->Name("BM_qmatvec_pool_q8_0")->Apply(quant_pool_shapes);
BENCHMARK(BM_quant_pool<pith::dtype::q4_k>)->Name("BM_qmatvec_pool_q4_k")->Apply(quant_pool_shapes);
BENCHMARK(BM_quant_pool<pith::dtype::q6_k>)->Name("BM_qmatvec_pool_q6_k")->Apply(quant_pool_shapes);
BENCHMARK(BM_quant<pith::dtype::q8_0>)->Name("BM_qgemm_q8_0")->Apply(quant_prefill_shapes);
BENCHMARK(BM_quant<pith::dtype::q4_0>)->Name("BM_qgemm_q4_0")->Apply(quant_prefill_shapes);
BENCHMARK(BM_quant<pith::dtype::q4_k>)->Name("BM_qgemm_q4_k")->Apply(quant_prefill_shapes);
BENCHMARK(BM_quant<pith::dtype::q5_k>)->Name("BM_qgemm_q5_k")->Apply(quant_prefill_shapes);
BENCHMARK(BM_quant<pith::dtype::q6_k>)->Name("BM_qgemm_q6_k")->Apply(quant_prefill_shapes);

// ------------------------------------------------------------------ ratio table
// Console output as usual, then one table: GFLOP/s, fraction of BM_fma_peak, ratios to Eigen and scalar.
class ratio_reporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& run : runs) {
      if (run.run_type != Run::RT_Iteration || run.error_occurred) continue;
      const auto it = run.counters.find("GFLOPs");
      if (it != run.counters.end()) rates_[run.benchmark_name()] = it->second.value;
      const auto bytes = run.counters.find("GBps");
      if (bytes != run.counters.end()) bandwidths_[run.benchmark_name()] = bytes->second.value;
      const auto ops = run.counters.find("GOPs");
      if (ops != run.counters.end()) integer_rates_[run.benchmark_name()] = ops->second.value;
    }
    ConsoleReporter::ReportRuns(runs);
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    const double peak = rates_.count("BM_fma_peak") ? rates_["BM_fma_peak"] : 0.0;
    std::printf("\nFMA peak (%s): %.1f GFLOP/s\n", native_ops::name, peak);
    std::printf("%-8s %-20s %10s %10s %10s %8s %10s\n", "variant", "shape m/n/d", "native", "eigen", "scalar",
                "of peak", "vs eigen");
    for (const char* variant : {"", "only_"}) {
      for (const auto& [name, rate] : rates_) {
        const std::string prefix = std::string("BM_softmax_importance_") + variant + "native/";
        if (name.rfind(prefix, 0) != 0) continue;
        const std::string shape = name.substr(prefix.size());
        const double eigen = lookup(std::string("BM_softmax_importance_") + variant + "eigen/" + shape);
        const double scalar = lookup(std::string("BM_softmax_importance_") + variant + "scalar/" + shape);
        std::printf("%-8s %-20s %10.1f %10.1f %10.1f %8.2f %10.2f\n", *variant ? "imp" : "attn+imp",
                    shape.c_str(), rate, eigen, scalar, peak > 0 ? rate / peak : 0.0, eigen > 0 ? rate / eigen : 0.0);
      }
    }
    std::printf("\n%-22s %10s %10s %10s %8s %10s\n", "matmul rows/in/out", "pith", "eigen", "gemm", "of peak",
                "vs eigen");
    for (const auto& [name, rate] : rates_) {
      const std::string prefix = "BM_matmul_eigen/";
      if (name.rfind(prefix, 0) != 0) continue;
      const std::string shape = name.substr(prefix.size());
      const double pith_rate = lookup("BM_matmul_pith/" + shape), gemm = lookup("BM_matmul_gemm/" + shape);
      const double best = pith_rate > 0 ? pith_rate : gemm;
      std::printf("%-22s %10.1f %10.1f %10.1f %8.2f %10.2f\n", shape.c_str(), pith_rate, rate, gemm,
                  peak > 0 ? best / peak : 0.0, rate > 0 ? best / rate : 0.0);
    }
    // Typed weights: speed of each storage type relative to F32 on the same shape (time F32 /
    // time type), and the rate W streams at as a fraction of BM_read_bandwidth.
    const double read = bandwidths_.count("BM_read_bandwidth") ? bandwidths_["BM_read_bandwidth"] : 0.0;
    std::printf("\nRead bandwidth: %.1f GB/s (one core)\n", read);
    std::printf("%-6s %-18s %9s %9s %9s %9s %8s %8s %8s %9s %9s %9s\n", "op", "rows/in/out", "f32 GF/s", "f16 GF/s",
                "bf16 GF/s", "dot GF/s", "f16/f32", "bf16/f32", "dot/f32", "f16 of bw", "bf16 ofbw", "dot of bw");
    for (const char* op : {"matvec", "gemm"}) {
      for (const auto& [name, rate] : rates_) {
        const std::string prefix = std::string("BM_") + op + "_f32/";
        if (name.rfind(prefix, 0) != 0) continue;
        const std::string shape = name.substr(prefix.size());
        const std::string base = std::string("BM_") + op + "_";
        const double f16 = lookup(base + "f16/" + shape), bf16 = lookup(base + "bf16/" + shape),
                     dot = lookup(base + "bf16_dot/" + shape);
        // Only a single row of X reads each weight once per product: the bound for matvec alone.
        const auto fraction = [&](const std::string& variant) {
          const auto it = bandwidths_.find(base + variant + "/" + shape);
          return it == bandwidths_.end() || read <= 0 || std::string(op) != "matvec" ? 0.0 : it->second / read;
        };
        std::printf("%-6s %-18s %9.1f %9.1f %9.1f %9.1f %8.2f %8.2f %8.2f %9.2f %9.2f %9.2f\n", op, shape.c_str(), rate,
                    f16, bf16, dot, f16 / rate, bf16 / rate, dot / rate, fraction("f16"), fraction("bf16"),
                    fraction("bf16_dot"));
      }
    }
    // Quantized weights: decode as a fraction of the read bandwidth, prefill of the int8 and FMA peaks.
    const double int8_peak = integer_rates_.count("BM_int8_dot_peak") ? integer_rates_["BM_int8_dot_peak"] : 0.0;
    std::printf("\nint8 dot peak: %.1f GOP/s, FMA peak %.1f GFLOP/s (one core)\n", int8_peak, peak);
    std::printf("%-34s %9s %9s %9s %9s %9s\n", "quantized rows/in/out", "GB/s", "of bw", "GOP/s", "of int8", "of fma");
    for (const auto& [name, rate] : integer_rates_) {
      if (name.rfind("BM_qmatvec", 0) != 0 && name.rfind("BM_qgemm_", 0) != 0) continue;
      const double gbps = bandwidths_.count(name) ? bandwidths_.at(name) : 0.0;
      const bool decode = name.rfind("BM_qmatvec_", 0) == 0;
      std::printf("%-34s %9.1f %9.2f %9.1f %9.2f %9.2f\n", name.c_str(), gbps, decode && read > 0 ? gbps / read : 0.0,
                  rate, int8_peak > 0 ? rate / int8_peak : 0.0, peak > 0 ? rate / peak : 0.0);
    }
  }

 private:
  double lookup(const std::string& name) const {
    const auto it = rates_.find(name);
    return it == rates_.end() ? 0.0 : it->second;
  }
  std::map<std::string, double> rates_;
  std::map<std::string, double> bandwidths_;
  std::map<std::string, double> integer_rates_;
};

}  // namespace

int main(int argc, char** argv) { return pith::bench::run_benchmarks<ratio_reporter>(argc, argv); }
