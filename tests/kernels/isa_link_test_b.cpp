// SPDX-License-Identifier: MIT
// Second unit of the ISA link test, built for the baseline ISA (see tests/kernels/CMakeLists.txt).
#if (defined(__x86_64__) || defined(__i386__)) && defined(__AVX2__)
#error "this unit must be compiled for the baseline x86-64"
#endif

#define ISA_UNIT isa_unit_b
#include "isa_link_unit.inc"
