// SPDX-License-Identifier: MIT
// Rows of IEEE binary16 values converted to and from float. Where the compiler targets F16C, eight
// at a time with vcvtps2ph / vcvtph2ps; the rest (and every element elsewhere) with core/half.hpp's
// scalar conversions. Both round to nearest even and quiet NaNs alike, so the bytes written and the
// floats read do not depend on the path taken.
#pragma once

#include "pith/core/half.hpp"
#include "pith/simd/simd.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__F16C__) && !defined(PITH_DISABLE_SIMD)
#include "pith/simd/x86_intrinsics.hpp"
#define PITH_SIMD_F16C_ROWS 1
#endif

namespace pith::simd {
inline namespace PITH_ISA_NAMESPACE {  // the bodies depend on the unit's target (simd.hpp)

/// Writes n floats as n binary16 values: 2n bytes at `out`, which needs no alignment.
inline void store_f16_row(const float* x, std::size_t n, std::byte* out) noexcept {
  std::size_t i = 0;
#if defined(PITH_SIMD_F16C_ROWS)
  for (const std::size_t body = n - n % 8; i < body; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
  for (; i < n; ++i) {
    const std::uint16_t h = float_to_half(x[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
}

/// Reads n binary16 values (2n bytes at `in`, any alignment) into floats; exact.
inline void load_f16_row(const std::byte* in, std::size_t n, float* x) noexcept {
  std::size_t i = 0;
#if defined(PITH_SIMD_F16C_ROWS)
  for (const std::size_t body = n - n % 8; i < body; i += 8)
    _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 2 * i))));
#endif
  for (; i < n; ++i) {
    std::uint16_t h;
    std::memcpy(&h, in + 2 * i, 2);
    x[i] = half_to_float(h);
  }
}

}  // namespace PITH_ISA_NAMESPACE
}  // namespace pith::simd
