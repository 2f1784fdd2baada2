// SPDX-License-Identifier: MIT
// A program outside pith's tree that uses the installed or embedded package.
#include <cstdio>

#include <pith/pith.hpp>

int main() {
  pith::aligned_buffer<float> buffer(32);
  std::size_t sum = 0;
  pith::thread_pool pool(2);
  pool.parallel_for(buffer.size(), [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) buffer[i] = static_cast<float>(i);
  });
  for (float value : buffer) sum += static_cast<std::size_t>(value);
  std::printf("pith %s: sum %zu\n", pith::version_string, sum);
  return sum == 31 * 32 / 2 ? 0 : 1;
}
