// SPDX-License-Identifier: MIT
// --kv-type f32|f16|bf16|q8_0: what a program's KV cache stores keys and values as.
#pragma once

#include <optional>
#include <string>

#include <pith/cache/kv_type.hpp>

#include "common.hpp"

namespace pith::examples {

/// The option's value (absent: f32). Throws usage_error for anything but f32, f16, bf16, q8_0.
inline pith::dtype parse_kv_type_option(const std::optional<std::string>& text) {
  if (!text) return pith::dtype::f32;
  if (*text == "f32") return pith::dtype::f32;
  if (*text == "f16") return pith::dtype::f16;
  if (*text == "bf16") return pith::dtype::bf16;
  if (*text == "q8_0") return pith::dtype::q8_0;
  throw usage_error("--kv-type must be f32, f16, bf16 or q8_0, not '" + *text + "'");
}

/// "f32", "f16", "bf16" or "q8_0", as the option spells it.
inline std::string kv_type_name(pith::dtype t) {
  switch (t) {
    case pith::dtype::f16: return "f16";
    case pith::dtype::bf16: return "bf16";
    case pith::dtype::q8_0: return "q8_0";
    default: return "f32";
  }
}

}  // namespace pith::examples
