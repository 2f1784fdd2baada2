// SPDX-License-Identifier: MIT
// pith-info: prints pith's version, the SIMD instruction set compiled in, the thread count, and
// checks the fused kernel on a small random head against the double-precision reference.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include <pith/kernels/reference.hpp>
#include <pith/pith.hpp>

int main() {
  std::printf("pith %s\n", pith::version_string);
  std::printf("simd: %s (%zu float lanes)\n", pith::simd::native::ops::name, pith::simd::native::ops::width);
  std::printf("threads: %zu\n", pith::num_threads());

  constexpr std::size_t m = 64, n = 1000, d = 64;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> q(m * d), k(n * d), v(n * d), out(m * d), ref_out(m * d), imp(n), ref_imp(n);
  for (auto* x : {&q, &k, &v})
    for (float& value : *x) value = u(rng);
  pith::kernels::softmax_importance_args args;
  args.queries = q.data();
  args.query_stride = d;
  args.keys = k.data();
  args.key_stride = d;
  args.values = v.data();
  args.value_stride = d;
  args.m = m;
  args.n = n;
  args.d = d;
  args.scale = 1.0f / std::sqrt(static_cast<float>(d));
  args.causal = true;
  args.causal_offset = n - m;
  args.output = out.data();
  args.output_stride = d;
  args.importance = imp.data();
  pith::aligned_buffer<float> scratch(pith::kernels::softmax_importance_scratch_size(m, n, d));
  pith::kernels::softmax_importance(args, scratch.data());
  args.output = ref_out.data();
  args.importance = ref_imp.data();
  pith::kernels::reference::softmax_importance(args);
  double worst_output = 0.0, worst_importance = 0.0;
  for (std::size_t i = 0; i < out.size(); ++i) worst_output = std::max(worst_output, double(std::abs(out[i] - ref_out[i])));
  for (std::size_t j = 0; j < n; ++j) worst_importance = std::max(worst_importance, double(std::abs(imp[j] - ref_imp[j])));
  std::printf("softmax_importance (m=%zu, n=%zu, d=%zu, causal): max |output - reference| = %.2e, "
              "max |importance - reference| = %.2e\n", m, n, d, worst_output, worst_importance);
  return worst_output < 1e-4 && worst_importance < 1e-6 ? 0 : 1;
}
