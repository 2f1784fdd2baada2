// SPDX-License-Identifier: MIT
// Umbrella header: the one include a user of pith needs.
#pragma once

#include "pith/version.hpp"
#include "pith/core/aligned_buffer.hpp"
#include "pith/core/assert.hpp"
#include "pith/core/error.hpp"
#include "pith/core/parallel.hpp"
