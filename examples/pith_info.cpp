// SPDX-License-Identifier: MIT
// pith-info: prints pith's version, the SIMD instruction set compiled in and the thread count.
#include <cstdio>

#include <pith/pith.hpp>

int main() {
  std::printf("pith %s\n", pith::version_string);
  std::printf("threads: %zu\n", pith::num_threads());
  return 0;
}
