// SPDX-License-Identifier: MIT
// The F16 / BF16 conversions moved to pith/core/half.hpp; this header keeps old includes working.
#pragma once

#include "pith/core/half.hpp"
