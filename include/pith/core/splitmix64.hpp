// SPDX-License-Identifier: MIT
// splitmix64 (Steele, Lea and Flood, 2014): the small generator pith's C++ and its Python twins share
// (the toy tasks' documents, the `random` eviction policy). Every step is exact 64-bit arithmetic, so
// tools/toy_tasks.py and tools/pith_eviction.py reproduce it with Python integers.
#pragma once

#include <cstdint>

namespace pith {

/// state += 0x9E3779B97F4A7C15; z = state; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
/// z = (z ^ (z >> 27)) * 0x94D049BB133111EB; next() = z ^ (z >> 31) (all modulo 2^64).
class splitmix64 {
 public:
  explicit splitmix64(std::uint64_t seed = 0) noexcept : state_(seed) {}
  std::uint64_t next() noexcept {
    state_ += 0x9E3779B97F4A7C15ull;
    std::uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  /// next() % n (the specification accepts the modulo bias, < 2^-50 for these n).
  std::uint64_t below(std::uint64_t n) noexcept { return next() % n; }

 private:
  std::uint64_t state_;
};

}  // namespace pith
