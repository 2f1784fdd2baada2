// SPDX-License-Identifier: MIT
// checked_size: products of buffer sizes that throw instead of wrapping around.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "pith/core/error.hpp"

namespace pith {

/// The product of `factors`, or nothing when it does not fit in std::size_t (an empty list is 1).
constexpr std::optional<std::size_t> checked_product(std::initializer_list<std::size_t> factors) noexcept {
  std::size_t product = 1;
  bool zero = false;
  bool overflow = false;
  for (const std::size_t factor : factors) {
    if (factor == 0) zero = true;
    // Overflow of the non-zero factors alone decides nothing when another factor is 0.
    if (!overflow && product != 0 && factor > std::numeric_limits<std::size_t>::max() / product) overflow = true;
    if (!overflow) product *= factor;
  }
  if (zero) return 0;
  if (overflow) return std::nullopt;
  return product;
}

/// The product of `factors`; throws argument_error "<what>: a x b x ... elements do not fit in
/// memory" when it does not fit in std::size_t, so a size never wraps to a small allocation.
inline std::size_t checked_size(std::string_view what, std::initializer_list<std::size_t> factors) {
  if (const auto product = checked_product(factors)) return *product;
  std::string text;
  for (const std::size_t factor : factors) text += (text.empty() ? "" : " x ") + std::to_string(factor);
  PITH_THROW(argument_error, std::string(what) + ": " + text + " elements do not fit in memory");
}

}  // namespace pith
