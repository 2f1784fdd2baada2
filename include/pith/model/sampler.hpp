// SPDX-License-Identifier: MIT
// sampler: greedy, temperature and nucleus (top-p) sampling from a row of logits, seeded.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "pith/core/error.hpp"

namespace pith {

struct sampler_options {
  float temperature = 0.0f;  // 0: greedy (argmax, lowest id on ties)
  float top_p = 1.0f;        // in (0, 1]; 1 samples from the whole distribution
  std::uint64_t seed = 1;
  // A NaN or infinite logit means the model's arithmetic broke (non-finite weights or overflow):
  // sample() throws argument_error naming the token id. true: such entries are never chosen
  // (probability 0) and the others are sampled as usual; all entries non-finite still throws.
  bool allow_nonfinite = false;
};

class sampler {
 public:
  explicit sampler(sampler_options options = {}) : options_(options), state_(options.seed == 0 ? 1 : options.seed) {
    if (!(options_.temperature >= 0.0f) || !std::isfinite(options_.temperature))
      PITH_THROW(argument_error, "sampler: temperature must be a finite number >= 0");
    if (!(options_.top_p > 0.0f && options_.top_p <= 1.0f))
      PITH_THROW(argument_error, "sampler: top_p must be in (0, 1]");
  }

  /// The first entry that is NaN or infinite, or logits.size() when every entry is finite.
  static std::size_t first_nonfinite(std::span<const float> logits) noexcept {
    for (std::size_t i = 0; i < logits.size(); ++i)
      if (!std::isfinite(logits[i])) return i;
    return logits.size();
  }

  /// The id of the largest logit (the lowest id on ties). Non-finite logits throw argument_error
  /// naming the token id, unless `skip_nonfinite`, in which case they are never chosen.
  static std::int32_t argmax(std::span<const float> logits, bool skip_nonfinite = false) {
    check_finite(logits, skip_nonfinite);
    std::size_t best = first_finite(logits);
    for (std::size_t i = best + 1; i < logits.size(); ++i)
      if (std::isfinite(logits[i]) && logits[i] > logits[best]) best = i;
    return static_cast<std::int32_t>(best);
  }

  std::int32_t sample(std::span<const float> logits) {
    if (logits.empty()) PITH_THROW(argument_error, "sampler: empty logits");
    if (options_.temperature == 0.0f) return argmax(logits, options_.allow_nonfinite);
    check_finite(logits, options_.allow_nonfinite);
    probabilities_.resize(logits.size());
    float top = logits[first_finite(logits)];
    for (const float logit : logits)
      if (std::isfinite(logit)) top = std::max(top, logit);
    double total = 0.0;
    for (std::size_t i = 0; i < logits.size(); ++i) {
      probabilities_[i] = std::isfinite(logits[i]) ? std::exp((logits[i] - top) / options_.temperature) : 0.0f;
      total += probabilities_[i];
    }
    for (float& p : probabilities_) p = static_cast<float>(p / total);
    const float coin = next_uniform();
    if (options_.top_p >= 1.0f) return draw(probabilities_, coin);
    // Nucleus: the smallest set of most probable tokens whose mass exceeds top_p.
    order_.resize(logits.size());
    std::iota(order_.begin(), order_.end(), 0);
    std::sort(order_.begin(), order_.end(), [&](std::int32_t a, std::int32_t b) {
      return probabilities_[a] > probabilities_[b] || (probabilities_[a] == probabilities_[b] && a < b);
    });
    float mass = 0.0f;
    std::size_t kept = 0;
    while (kept < order_.size()) {
      mass += probabilities_[order_[kept++]];
      if (mass > options_.top_p) break;
    }
    float target = coin * mass, cumulative = 0.0f;
    for (std::size_t i = 0; i < kept; ++i) {
      cumulative += probabilities_[order_[i]];
      if (target < cumulative) return order_[i];
    }
    return order_[kept - 1];
  }

 private:
  static std::size_t first_finite(std::span<const float> logits) noexcept {
    std::size_t i = 0;
    while (i < logits.size() && !std::isfinite(logits[i])) ++i;
    return i;
  }

  // Throws unless every logit is finite, or `skip` and at least one is.
  static void check_finite(std::span<const float> logits, bool skip) {
    if (logits.empty()) PITH_THROW(argument_error, "sampler: empty logits");
    const std::size_t bad = first_nonfinite(logits);
    if (bad == logits.size()) return;
    std::size_t count = 0;
    for (const float logit : logits) count += std::isfinite(logit) ? 0 : 1;
    if (skip && count < logits.size()) return;
    const float value = logits[bad];
    PITH_THROW(argument_error, "sampler: the logit of token id " + std::to_string(bad) + " is " +
                                   (std::isnan(value) ? "nan" : value > 0 ? "+inf" : "-inf") + " (" +
                                   std::to_string(count) + " of " + std::to_string(logits.size()) +
                                   " logits are not finite)");
  }

  static std::int32_t draw(const std::vector<float>& probabilities, float coin) {
    // Rounding can leave the total just below the coin: fall back to the last id with a
    // non-zero probability (never a skipped non-finite entry).
    float cumulative = 0.0f;
    std::size_t last = 0;
    for (std::size_t i = 0; i < probabilities.size(); ++i) {
      if (probabilities[i] > 0.0f) last = i;
      cumulative += probabilities[i];
      if (coin < cumulative) return static_cast<std::int32_t>(i);
    }
    return static_cast<std::int32_t>(last);
  }
  // xorshift64*: a uniform float in [0, 1) from the top 24 bits.
  float next_uniform() noexcept {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    const std::uint64_t bits = state_ * 0x2545F4914F6CDD1DULL;
    return static_cast<float>(bits >> 40) / 16777216.0f;
  }

  sampler_options options_;
  std::uint64_t state_;
  std::vector<float> probabilities_;
  std::vector<std::int32_t> order_;
};

}  // namespace pith
