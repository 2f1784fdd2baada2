// SPDX-License-Identifier: MIT
// exp over any primitive set, written once: Cody-Waite range reduction and a degree-6 polynomial.
#pragma once

namespace pith::simd {

/// Range of exp_approx. Below `exp_lower_bound` the result is flushed to 0 (the exact result
/// would be under 2^-125 ≈ 2.35e-38, at the bottom of the normal range); above `exp_upper_bound`
/// (ln FLT_MAX) it is +inf. -inf gives 0, +inf gives +inf, NaN gives NaN.
inline constexpr float exp_lower_bound = -86.643397569993164f;  // -125 ln 2
inline constexpr float exp_upper_bound = 88.722839052068352f;   // ln FLT_MAX

/// Maximum relative error of exp_approx over [exp_lower_bound, exp_upper_bound], measured
/// against double-precision exp on a dense sweep (tests/simd/exp_test.cpp): 2 ulp of float.
inline constexpr float exp_max_relative_error = 2.0f * 1.1920929e-7f;

/// e^x lane by lane. x = n ln2 + r with |r| <= ln2/2, n = round(x / ln2); ln2 is split in two
/// parts (Cody-Waite) so that r is exact to float precision; e^r is a degree-6 polynomial with
/// the Cephes expf coefficients; 2^n enters through the exponent field, applied as 2^(n-1) * 2 so
/// that n = 128 (x near ln FLT_MAX) stays representable.
template <class Ops>
inline typename Ops::vec exp_approx(typename Ops::vec x) noexcept {
  using vec = typename Ops::vec;
  const vec lower = Ops::set1(exp_lower_bound);
  const vec upper = Ops::set1(exp_upper_bound);
  // max(lower, x) and min(upper, .) return their second operand for NaN on every ISA: NaN survives.
  const vec clamped = Ops::min(upper, Ops::max(lower, x));
  const vec n = Ops::round(Ops::mul(clamped, Ops::set1(1.44269504088896341f)));
  vec r = Ops::fmadd(n, Ops::set1(-0.693359375f), clamped);
  r = Ops::fmadd(n, Ops::set1(2.12194440e-4f), r);
  vec p = Ops::set1(1.9875691500e-4f);
  p = Ops::fmadd(p, r, Ops::set1(1.3981999507e-3f));
  p = Ops::fmadd(p, r, Ops::set1(8.3334519073e-3f));
  p = Ops::fmadd(p, r, Ops::set1(4.1665795894e-2f));
  p = Ops::fmadd(p, r, Ops::set1(1.6666665459e-1f));
  p = Ops::fmadd(p, r, Ops::set1(5.0000001201e-1f));
  p = Ops::fmadd(p, Ops::mul(r, r), Ops::add(r, Ops::set1(1.0f)));
  const vec two = Ops::set1(2.0f);
  vec result = Ops::mul(Ops::mul(p, Ops::pow2n(Ops::sub(n, Ops::set1(1.0f)))), two);
  result = Ops::select_less(x, lower, Ops::zero(), result);
  result = Ops::select_less(upper, x, Ops::set1(__builtin_inff()), result);
  return Ops::select_nan(x, x, result);
}

}  // namespace pith::simd
