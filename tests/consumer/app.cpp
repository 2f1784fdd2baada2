// SPDX-License-Identifier: MIT
// A program outside pith's tree that uses the installed or embedded package: the thread pool, and a
// typed matrix product over F16 weights the program owns.
#include <cstdint>
#include <cstdio>
#include <vector>

#include <pith/core/half.hpp>
#include <pith/core/tensor.hpp>
#include <pith/kernels/typed_matmul.hpp>
#include <pith/pith.hpp>

int main() {
  pith::aligned_buffer<float> buffer(32);
  std::size_t sum = 0;
  pith::thread_pool pool(2);
  pool.parallel_for(buffer.size(), [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) buffer[i] = static_cast<float>(i);
  });
  for (float value : buffer) sum += static_cast<std::size_t>(value);

  // y = x Wᵀ with W [3, 4] stored as F16 by this program: row r holds r + 1 everywhere.
  std::vector<std::uint16_t> w(12);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = pith::float_to_half(static_cast<float>(i / 4 + 1));
  const float x[4] = {1.0f, 2.0f, 3.0f, 4.0f};
  float y[3] = {};
  pith::kernels::matmul_transposed(x, 1, 4, pith::tensor_view::borrow(w.data(), pith::dtype::f16, 3, 4), y, 3);
  const bool product_ok = y[0] == 10.0f && y[1] == 20.0f && y[2] == 30.0f;

  std::printf("pith %s: sum %zu, F16 product %g %g %g\n", pith::version_string, sum, static_cast<double>(y[0]),
              static_cast<double>(y[1]), static_cast<double>(y[2]));
  return sum == 31 * 32 / 2 && product_ok ? 0 : 1;
}
