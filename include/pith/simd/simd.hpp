// SPDX-License-Identifier: MIT
// The primitive sets compiled for this target and `native`, the widest of them (chosen at compile time).
//
// Every primitive set is a struct `ops` in its own namespace (scalar, avx2, avx512, neon) with:
//   vec, width, name; zero, set1, load/store (unaligned), load_partial/store_partial (first `count`
//   lanes, count < width, other lanes read as 0 and left untouched); add, sub, mul, fmadd(a,b,c)=a*b+c;
//   max(a,b)/min(a,b) (when either is NaN the result is b, or NaN on NEON); reduce_add, reduce_max;
//   round (to nearest, ties to even); pow2n(n) = 2^n for integral n in [-126, 127];
//   select_less(a,b,t,f) = a<b ? t : f; select_equal; select_nan(a,t,f) = isnan(a) ? t : f;
//   lane_index() = (0, 1, ..., width-1); transpose(vec (&rows)[width]): the width x width block
//   transposed in place (lane j of rows[i] becomes lane i of rows[j]); registers: how many vector
//   registers the ISA has, for sizing register tiles.
//   Storage types, converted exactly to float lanes: load_f16 / load_bf16 (width IEEE binary16 or
//   bfloat16 values from a const std::uint16_t*), load_unaligned (width floats at any byte
//   address), each with a _partial(p, count) variant reading only the first `count` < width
//   elements (other lanes 0).
//   load_s8 / load_s8_partial(p, count): width (or the first `count` < width) int8 values from a
//   const std::int8_t*, converted exactly to float lanes (other lanes 0).
// Separate namespaces keep inline functions compiled for different ISAs from being merged by the
// linker. PITH_DISABLE_SIMD makes `native` the scalar set whatever the compiler flags.
//
// PITH_ISA_NAMESPACE names `native` (isa_scalar, isa_avx2, isa_avx512, isa_neon). Every
// non-template function that calls `native` (kernels::softmax_importance, gemm_transposed,
// matmul_transposed, session, reader) sits in an inline namespace of that name, as Highway's
// HWY_NAMESPACE does: two translation units compiled with different -march flags then get two
// different symbols instead of one that the linker picks for both (the One Definition Rule).
// Source code names them without it (pith::kernels::gemm_transposed, pith::session).
#pragma once

#include "pith/simd/avx2.hpp"
#include "pith/simd/avx512.hpp"
#include "pith/simd/exp.hpp"
#include "pith/simd/neon.hpp"
#include "pith/simd/scalar.hpp"

#include <cstddef>
#include <string_view>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <cpuid.h>
#endif

namespace pith::simd {

#if defined(PITH_DISABLE_SIMD)
namespace native = scalar;
#define PITH_ISA_NAMESPACE isa_scalar
#elif defined(PITH_SIMD_HAS_AVX512)
namespace native = avx512;
#define PITH_ISA_NAMESPACE isa_avx512
#elif defined(PITH_SIMD_HAS_AVX2)
namespace native = avx2;
#define PITH_ISA_NAMESPACE isa_avx2
#elif defined(PITH_SIMD_HAS_NEON)
namespace native = neon;
#define PITH_ISA_NAMESPACE isa_neon
#else
namespace native = scalar;
#define PITH_ISA_NAMESPACE isa_scalar
#endif

/// GCC 12's loop vectoriser turns the scalar set's register-tiled loops (over a dimension read
/// with a runtime row stride) into code that loads rows past the loop's last iteration, which
/// faults at the end of a mapping. An empty asm statement on the loop index keeps the scalar loops
/// scalar; vector ISAs are unaffected (their loops are already written in vectors) and emit
/// nothing for it. Call it first thing in the loop body with the set's width.
template <std::size_t W>
inline void keep_scalar_loop(std::size_t& index) noexcept {
  if constexpr (W == 1) {
#if defined(__GNUC__)
    asm("" : "+r"(index));
#endif
  }
}

/// Whether the running CPU can execute the primitive set `Ops` (compiled sets only).
template <class Ops>
inline bool cpu_supports() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  const std::string_view name = Ops::name;
  if (name == "avx512") return __builtin_cpu_supports("avx512f");
  if (name == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return true;
}

/// The running x86 CPU's vendor and family (CPUID leaf 1, the extended family added where the base
/// family is 0xF, as AMD and Intel define it: 0x19 is Zen 3/4, 0x1A Zen 5); {false, 0} elsewhere.
struct cpu_family {
  bool amd = false;
  unsigned family = 0;
};
inline cpu_family x86_cpu_family() noexcept {
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(0, &a, &b, &c, &d) == 0) return {};
  const bool amd = b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u;  // "AuthenticAMD"
  if (__get_cpuid(1, &a, &b, &c, &d) == 0) return {};
  unsigned family = (a >> 8) & 0xFu;
  if (family == 0xFu) family += (a >> 20) & 0xFFu;
  return {amd, family};
#else
  return {};
#endif
}

/// Whether the running CPU has AVX512_BF16 (vdpbf16ps); false off x86.
inline bool cpu_supports_bf16_dot() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  return __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

}  // namespace pith::simd
