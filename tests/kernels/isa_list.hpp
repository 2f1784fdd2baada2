// SPDX-License-Identifier: MIT
// The primitive sets compiled into a test binary, for running one test on every ISA the CPU has.
// Link tests/kernels/isa_list.cpp with the test.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <pith/kernels/gemm.hpp>
#include <pith/kernels/softmax_importance.hpp>
#include <pith/kernels/typed_matmul.hpp>

namespace pith::testing {

struct compiled_isa {
  std::string name;
  std::size_t width;
  bool supported;  // the running CPU can execute it
  void (*softmax_importance)(const kernels::softmax_importance_args&, float*);
  void (*gemm_transposed)(const float*, std::size_t, std::size_t, std::size_t, const float*, std::size_t, std::size_t,
                          float*, std::size_t, bool, float*);
  void (*typed_matmul)(const float*, std::size_t, std::size_t, const tensor_view&, std::size_t, std::size_t, float*,
                       std::size_t, bool, kernels::bf16_decode);
  bool bf16_dot;  // bf16_decode::dot_pairs takes vdpbf16ps (AVX512_BF16 compiled in)
  void (*load_f16)(const std::uint16_t*, std::size_t count, float* lanes);   // count <= width: partial below
  void (*load_bf16)(const std::uint16_t*, std::size_t count, float* lanes);
  void (*load_s8)(const std::int8_t*, std::size_t count, float* lanes);
};

/// Every primitive set compiled into the binary, scalar first (isa_list.cpp: the kernels of all of
/// them are instantiated there once, not in every test file that runs them).
std::vector<compiled_isa> compiled_isas();

/// Widest vector of the compiled ISAs: the tail sweeps cover 0 .. 3 * widest + 1.
inline std::size_t widest_vector() {
  std::size_t width = 1;
  for (const auto& isa : compiled_isas()) width = std::max(width, isa.width);
  return width;
}

}  // namespace pith::testing
