// SPDX-License-Identifier: MIT
// How the heavy kernel entry points are compiled.
//
// pith is header-only: by default each entry point below is an inline function, compiled in every
// translation unit that calls it. The native instantiations of the fused softmax-importance
// kernel (four KV storage types), the GEMMs and the quantized products are most of the machine
// code of a unit that runs a model: a program of many units can compile them once instead.
// Define PITH_COMPILED_KERNELS in every unit, and PITH_KERNELS_IMPLEMENTATION as well in exactly
// one unit that includes <pith/pith.hpp> (with the same compiler flags, so that the kernels'
// ISA namespace matches; a unit built for another ISA names other symbols and fails to link
// instead of calling the wrong code). The entry points so compiled:
//   kernels::softmax_importance, kernels::gemm_transposed, kernels::matmul_transposed_eigen,
//   kernels::matmul_transposed_range (typed W), kernels::quant_matmul_range.
#pragma once

#if defined(PITH_KERNELS_IMPLEMENTATION)
#define PITH_KERNEL_ENTRY
#define PITH_KERNEL_DEFINITIONS 1
#elif defined(PITH_COMPILED_KERNELS)
#define PITH_KERNEL_ENTRY
#define PITH_KERNEL_DEFINITIONS 0
#else
#define PITH_KERNEL_ENTRY inline
#define PITH_KERNEL_DEFINITIONS 1
#endif
