// SPDX-License-Identifier: MIT
// What each unit of the ISA link test sees: its ISA, the kernels it calls and the session type it names.
#pragma once

#include <cstdint>

struct isa_unit {
  const char* compiled;        // simd::native::ops::name, fixed when the unit was compiled
  const char* reported;        // kernels::isa_name() called from the unit (through its symbol at -O0)
  std::uintptr_t softmax_importance;  // addresses of the non-template entry points the unit calls
  std::uintptr_t gemm_transposed;
  std::uintptr_t matmul_transposed;
  const char* session_type;    // typeid(pith::session).name(), which carries the inline namespace
  const char* reader_type;
  float product;               // a 3 x 70 by 70 x 5 product through matmul_transposed, element [2, 4]
};

isa_unit isa_unit_a();  // built with the project's flags (-march=native where the preset sets it)
isa_unit isa_unit_b();  // built for the baseline x86-64 (other targets: PITH_DISABLE_SIMD)
