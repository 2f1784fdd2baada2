// SPDX-License-Identifier: MIT
// The kernel entry points of pith/kernels/linkage.hpp, compiled once for pith's own tests,
// benchmarks and examples (target pith_compiled_kernels; the other units declare them only).
#define PITH_KERNELS_IMPLEMENTATION
#include <pith/pith.hpp>
#include <pith/kernels/typed_matmul.hpp>
