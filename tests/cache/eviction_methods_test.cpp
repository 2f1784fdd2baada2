// SPDX-License-Identifier: MIT
// The selection rules of the method table (docs/eviction.md): random, KnormPress, KeyDiff,
// ObservedAttention, ChunkKV, max pooling for the SnapKV family, PyramidKV's per-layer budgets and
// FinchPress's query weights, CriticalKV's two stages and ExpectedAttention's scores, on hand-made data with known answers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include <pith/cache/eviction_blocks.hpp>
#include <pith/core/aligned_buffer.hpp>
#include <pith/kernels/rope.hpp>
#include <pith/kernels/softmax_importance.hpp>

namespace {

using slots = std::vector<std::uint32_t>;

bool sorted_unique_below(const slots& keep, std::size_t n) {
  for (std::size_t i = 0; i < keep.size(); ++i)
    if (keep[i] >= n || (i > 0 && keep[i] <= keep[i - 1])) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------------
// Names

TEST(EvictionMethods, EveryBuiltInPolicyParsesByItsNameAndTheErrorListsThemAll) {
  for (const auto kind : pith::builtin_policies) EXPECT_EQ(pith::parse_policy(pith::policy_name(kind)), kind);
  try {
    pith::parse_policy("lru");
    FAIL() << "parse_policy accepted 'lru'";
  } catch (const pith::argument_error& e) {
    const std::string message = e.what();
    for (const auto kind : pith::builtin_policies) EXPECT_NE(message.find(pith::policy_name(kind)), std::string::npos) << message;
  }
  EXPECT_EQ(pith::parse_pool_mode("avg"), pith::pool_mode::average);
  EXPECT_EQ(pith::parse_pool_mode("max"), pith::pool_mode::max);
  EXPECT_THROW(pith::parse_pool_mode("min"), pith::argument_error);
}

// ---------------------------------------------------------------------------------------------------
// random

TEST(EvictionMethods, SplitMix64GivesTheReferenceSequence) {
  // Vigna's splitmix64.c from state 0.
  pith::splitmix64 rng(0);
  EXPECT_EQ(rng.next(), 0xE220A8397B1DCDAFull);
  EXPECT_EQ(rng.next(), 0x6E789E6AA1B965F4ull);
}

TEST(EvictionMethods, RandomIsDeterministicInRangeAndUniform) {
  pith::selection_scratch scratch;
  slots a, b, c;
  pith::splitmix64 first(42), second(42), other(43);
  pith::select_random(100, 30, first, a, scratch);
  pith::select_random(100, 30, second, b, scratch);
  pith::select_random(100, 30, other, c, scratch);
  EXPECT_EQ(a, b);  // the same seed, the same slots
  EXPECT_NE(a, c);
  EXPECT_EQ(a.size(), 30u);
  EXPECT_TRUE(sorted_unique_below(a, 100));
  // The next cut draws anew: another selection from the same generator.
  pith::select_random(100, 30, first, b, scratch);
  EXPECT_NE(a, b);
  // Within the budget: every slot, and nothing is drawn.
  pith::splitmix64 untouched(7), reference(7);
  pith::select_random(5, 8, untouched, a, scratch);
  EXPECT_EQ(a, (slots{0, 1, 2, 3, 4}));
  EXPECT_EQ(untouched.next(), reference.next());
  // Uniform: over 20000 cuts of 10 slots keeping 3, each slot is kept 3/10 of the time (binomial sd
  // sqrt(20000 * 0.3 * 0.7) = 65 around 6000; 5 sd allowed).
  std::vector<std::size_t> kept(10, 0);
  pith::splitmix64 rng(1);
  for (int i = 0; i < 20000; ++i) {
    pith::select_random(10, 3, rng, a, scratch);
    ASSERT_EQ(a.size(), 3u);
    ASSERT_TRUE(sorted_unique_below(a, 10));
    for (const auto j : a) ++kept[j];
  }
  for (std::size_t j = 0; j < kept.size(); ++j) EXPECT_NEAR(static_cast<double>(kept[j]), 6000.0, 325.0) << "slot " << j;
}

// ---------------------------------------------------------------------------------------------------
// Keys

TEST(EvictionMethods, KnormKeepsTheLowestNormKeys) {
  // 5 keys of head_dim 2, norms 5, 1, 2, 0.5, 3.
  const std::vector<float> keys{3, 4, 1, 0, 0, 2, 0.3f, 0.4f, 0, 3};
  std::vector<float> scores(5);
  pith::key_norm_scores(keys, 2, scores);
  EXPECT_FLOAT_EQ(scores[0], -5.0f);
  EXPECT_FLOAT_EQ(scores[3], -0.5f);
  pith::selection_scratch scratch;
  slots keep;
  pith::select_knorm(keys, 2, 3, keep, scratch);
  EXPECT_EQ(keep, (slots{1, 2, 3}));
  // A norm is rotation-invariant: the keys rotated by any angle keep the same slots.
  std::vector<float> rotated(keys.size());
  for (std::size_t j = 0; j < 5; ++j) {
    const float angle = 0.7f * static_cast<float>(j + 1), x = keys[2 * j], y = keys[2 * j + 1];
    rotated[2 * j] = x * std::cos(angle) - y * std::sin(angle);
    rotated[2 * j + 1] = x * std::sin(angle) + y * std::cos(angle);
  }
  pith::select_knorm(rotated, 2, 3, keep, scratch);
  EXPECT_EQ(keep, (slots{1, 2, 3}));
  EXPECT_THROW(pith::select_knorm(std::span(keys).first(9), 2, 3, keep, scratch), pith::shape_error);
}

TEST(EvictionMethods, KeyDiffKeepsTheKeysLeastLikeTheMeanDirection) {
  // Three keys near (1, 0) and one along (0, 1): the odd one out has the lowest cosine to the anchor.
  const std::vector<float> keys{1, 0, 2, 0.2f, 3, -0.3f, 0, 1};
  std::vector<float> scores(4);
  std::vector<double> anchor;
  pith::keydiff_scores(keys, 2, scores, anchor);
  // anchor = mean of the unit vectors; score = -cos(k_j, anchor), in [-1, 1]
  for (const float s : scores) EXPECT_LE(std::abs(s), 1.0f + 1e-6f);
  pith::selection_scratch scratch;
  slots keep;
  pith::select_keydiff(keys, 2, 1, keep, scratch);
  EXPECT_EQ(keep, (slots{3}));
  // Scale does not matter: only directions count.
  std::vector<float> scaled = keys;
  for (std::size_t i = 0; i < 2; ++i) scaled[6 + i] *= 100.0f;
  pith::select_keydiff(scaled, 2, 1, keep, scratch);
  EXPECT_EQ(keep, (slots{3}));
}

// ---------------------------------------------------------------------------------------------------
// Attention statistics

TEST(EvictionMethods, ObservedAttentionDividesBySeeingQueries) {
  // Slot 0 got 3.0 from 10 queries (0.3 each), slot 1 got 2.0 from 4 (0.5), slot 2 got 0.9 from 1.
  // H2O's raw sums would keep 0 and 1; the averages keep 2 and 1.
  const std::vector<float> sums{3.0f, 2.0f, 0.9f}, counts{10.0f, 4.0f, 1.0f};
  pith::selection_scratch scratch;
  slots keep;
  pith::select_observed_attention(sums, counts, 2, keep, scratch);
  EXPECT_EQ(keep, (slots{1, 2}));
  std::vector<float> bad(2);
  EXPECT_THROW(pith::observed_attention_scores(sums, counts, bad), pith::shape_error);
}

TEST(EvictionMethods, ObservedAttentionOverRunningScoresAveragesOverTheQueriesThatSawEachSlot) {
  // One unit, one query head. Chunk 0: one query, its own key (probability 1). Chunk 1: 2 queries over
  // that old slot and their own 2 keys, mean probabilities 0.5, 0.25, 0.25.
  pith::running_scores running(1, false);
  const std::vector<float> first{1.0f}, second{0.5f, 0.25f, 0.25f};
  running.add(0, {first, 1, 1, 1}, {}, 1, 0);
  running.add(0, {second, 1, 3, 3}, {}, 2, 1);
  // sums: 1 + 2 * 0.5, 2 * 0.25, 2 * 0.25; counts: 1 + 2, 2 (its own query and the next), 1
  EXPECT_EQ(std::vector<float>(running.counts(0).begin(), running.counts(0).end()), (std::vector<float>{3, 2, 1}));
  std::vector<float> scores(3);
  pith::observed_attention_scores(running.sums(0), running.counts(0), scores);
  EXPECT_FLOAT_EQ(scores[0], 2.0f / 3.0f);
  EXPECT_EQ(scores[1], 0.25f);
  EXPECT_EQ(scores[2], 0.5f);
}

// ---------------------------------------------------------------------------------------------------
// Pooling and chunks

TEST(EvictionMethods, MaxPoolingTakesTheLargestOfTheClippedWindow) {
  const std::vector<float> scores{-1.0f, -3.0f, -2.0f, 5.0f, -4.0f};
  std::vector<float> out;
  pith::max_pool(scores, 3, out);
  // No zero padding: the first slot's window is {-1, -3}, not {0, -1, -3}.
  EXPECT_EQ(out, (std::vector<float>{-1.0f, -1.0f, 5.0f, 5.0f, 5.0f}));
  pith::pool_scores(scores, 1, pith::pool_mode::max, out);
  EXPECT_EQ(out, scores);
  EXPECT_THROW(pith::max_pool(scores, 2, out), pith::argument_error);
  // select_snapkv with max pooling: slot 3's neighbours share its score (equal: the lower slots first).
  pith::selection_scratch scratch;
  slots keep;
  pith::select_snapkv(scores, 2, 3, keep, scratch, pith::pool_mode::max);
  EXPECT_EQ(keep, (slots{2, 3}));
  // Average pooling (zero padding): -4/3, -2, 0, -1/3, 1/3: slots 4 and 2.
  pith::select_snapkv(scores, 2, 3, keep, scratch);
  EXPECT_EQ(keep, (slots{2, 4}));
}

TEST(EvictionMethods, ChunkKvKeepsWholeChunksAndFillsTheBudgetFromTheNext) {
  pith::selection_scratch scratch;
  slots keep;
  // Chunks of 3 over 10 slots (the last has 1): means 1, 5, 2, 9. Budget 6: chunk 3 (slot 9), chunk 1
  // (3..5), then room 2 in chunk 2 (6..8 scoring 3, 1, 2): its two best, 6 and 8.
  const std::vector<float> scores{1, 1, 1, 5, 5, 5, 3, 1, 2, 9};
  pith::select_chunks(scores, 6, 3, keep, scratch);
  EXPECT_EQ(keep, (slots{3, 4, 5, 6, 8, 9}));
  // A budget of whole chunks keeps whole chunks only.
  pith::select_chunks(scores, 4, 3, keep, scratch);
  EXPECT_EQ(keep, (slots{3, 4, 5, 9}));
  // Every selection has exactly the budget, and every chunk but at most one is kept whole or not at all.
  std::vector<float> noisy(97);
  for (std::size_t j = 0; j < noisy.size(); ++j) noisy[j] = static_cast<float>((j * 37) % 23);
  for (const std::size_t budget : {1, 19, 20, 40, 55, 96}) {
    pith::select_chunks(noisy, budget, 20, keep, scratch);
    ASSERT_EQ(keep.size(), budget);
    ASSERT_TRUE(sorted_unique_below(keep, noisy.size()));
    std::size_t partial = 0;
    for (std::size_t c = 0; c < noisy.size(); c += 20) {
      const std::size_t size = std::min<std::size_t>(20, noisy.size() - c);
      const auto in = static_cast<std::size_t>(
          std::count_if(keep.begin(), keep.end(), [&](std::uint32_t j) { return j >= c && j < c + size; }));
      partial += in != 0 && in != size;
    }
    EXPECT_LE(partial, 1u) << "budget " << budget;
  }
  // Within the budget: everything.
  pith::select_chunks(scores, 10, 3, keep, scratch);
  EXPECT_EQ(keep.size(), 10u);
  EXPECT_THROW(pith::select_chunks(scores, 4, 0, keep, scratch), pith::argument_error);
  // select_chunkkv pools first (kernel 1: the scores themselves).
  pith::select_chunkkv(scores, 6, 1, pith::pool_mode::average, 3, keep, scratch);
  EXPECT_EQ(keep, (slots{3, 4, 5, 6, 8, 9}));
}

// ---------------------------------------------------------------------------------------------------
// PyramidKV

TEST(EvictionMethods, PyramidBudgetsDecreaseLinearlyAndSumToBudgetTimesLayers) {
  // k = 24, 3 layers: k_min = 24 / 20 = 1.2, k_max = 48 - 1.2 = 46.8 -> 47, 24, 1.
  EXPECT_EQ(pith::pyramid_budgets(24, 3), (std::vector<std::size_t>{47, 24, 1}));
  EXPECT_EQ(pith::pyramid_budgets(24, 1), (std::vector<std::size_t>{24}));
  EXPECT_TRUE(pith::pyramid_budgets(24, 0).empty());
  EXPECT_EQ(pith::pyramid_budgets(24, 3, 1), (std::vector<std::size_t>{24, 24, 24}));  // beta 1: uniform
  for (const std::size_t k : {1, 2, 7, 24, 100, 768, 4096})
    for (const std::size_t layers : {1, 2, 3, 5, 16, 28, 32, 80}) {
      const auto b = pith::pyramid_budgets(k, layers);
      ASSERT_EQ(b.size(), layers);
      EXPECT_EQ(std::accumulate(b.begin(), b.end(), std::size_t{0}), k * layers) << k << " x " << layers;
      for (std::size_t l = 1; l < layers; ++l) EXPECT_LE(b[l], b[l - 1]) << k << " x " << layers << " layer " << l;
      // Within a rounding of kvpress's real-valued formula.
      const double k_min = static_cast<double>(k) / 20.0, k_max = 2.0 * static_cast<double>(k) - k_min;
      for (std::size_t l = 0; l < layers && layers > 1; ++l)
        EXPECT_NEAR(static_cast<double>(b[l]), k_max - static_cast<double>(l) * (k_max - k_min) / static_cast<double>(layers - 1),
                    0.5 + 1e-9);
    }
  EXPECT_THROW(pith::pyramid_budgets(24, 3, 0), pith::argument_error);
}

// ---------------------------------------------------------------------------------------------------
// FinchPress: each scoring query's probabilities count as many times as it sees keys (the session's
// attention_scoring::count_weighted through the kernel's importance_weights).

// The kernel's importance over keys [0, old) of `m` queries that see the old keys and, causally, their
// own: query i sees old + i + 1 keys. d-dimensional rows, scale 1.
std::vector<float> importance(const std::vector<float>& queries, const std::vector<float>& keys, std::size_t m,
                              std::size_t old, std::size_t d, const float* weights) {
  std::vector<float> out(old);
  pith::kernels::softmax_importance_args a;
  a.queries = queries.data();
  a.query_stride = d;
  a.keys = keys.data();
  a.key_stride = d;
  a.m = m;
  a.n = old + m;
  a.d = d;
  a.causal = true;
  a.causal_offset = old;
  a.importance = out.data();
  a.importance_end = old;
  a.importance_weights = weights;
  pith::aligned_buffer<float> scratch(pith::kernels::softmax_importance_scratch_size(m, a.n, d));
  pith::kernels::softmax_importance(a, scratch.data());
  return out;
}

TEST(EvictionMethods, FinchCountWeightingChangesTheKeptSlot) {
  // d = 1, two old keys (+1, -1) and the pass's own keys (0, 0); query 0 (+1) sees 3 keys and prefers
  // slot 0, query 1 (-1) sees 4 and prefers slot 1. Plain means: slot 0 0.369, slot 1 0.312; weighted by
  // 3 and 4: 1.143 against 1.204.
  const std::vector<float> queries{1.0f, -1.0f}, keys{1.0f, -1.0f, 0.0f, 0.0f};
  const std::vector<float> counts{3.0f, 4.0f};
  pith::selection_scratch scratch;
  slots keep;
  const auto plain = importance(queries, keys, 2, 2, 1, nullptr);
  pith::select_snapkv(plain, 1, 1, keep, scratch);
  EXPECT_EQ(keep, (slots{0}));
  const auto weighted = importance(queries, keys, 2, 2, 1, counts.data());
  pith::select_snapkv(weighted, 1, 1, keep, scratch);
  EXPECT_EQ(keep, (slots{1}));
  const double e = std::exp(1.0), z0 = e + 1.0 / e + 1.0, z1 = e + 1.0 / e + 2.0;
  // float softmax (exp within 2 ulp) of a few terms against double
  constexpr double tolerance = 1e-5;
  EXPECT_NEAR(weighted[0], (3.0 * e / z0 + 4.0 / e / z1) / 2.0, tolerance);
  EXPECT_NEAR(weighted[1], (3.0 / e / z0 + 4.0 * e / z1) / 2.0, tolerance);
}

TEST(EvictionMethods, FinchWeightsMatchADoubleReferenceInTheBlockedPath) {
  // 40 queries (the kernel's blocked path on every ISA) over 10 old keys and their own, d = 8.
  const std::size_t m = 40, old = 10, d = 8, n = old + m;
  std::vector<float> queries(m * d), keys(n * d), counts(m);
  for (std::size_t i = 0; i < queries.size(); ++i) queries[i] = static_cast<float>((i * 37) % 19) / 19.0f - 0.5f;
  for (std::size_t i = 0; i < keys.size(); ++i) keys[i] = static_cast<float>((i * 53) % 23) / 23.0f - 0.5f;
  for (std::size_t i = 0; i < m; ++i) counts[i] = static_cast<float>(old + i + 1);
  const auto got = importance(queries, keys, m, old, d, counts.data());
  std::vector<double> expected(old, 0.0);
  for (std::size_t i = 0; i < m; ++i) {
    std::vector<double> s(old + i + 1);
    double largest = -1e300, total = 0.0;
    for (std::size_t j = 0; j < s.size(); ++j) {
      s[j] = 0.0;
      for (std::size_t c = 0; c < d; ++c) s[j] += static_cast<double>(queries[i * d + c]) * keys[j * d + c];
      largest = std::max(largest, s[j]);
    }
    for (double& x : s) total += x = std::exp(x - largest);
    for (std::size_t j = 0; j < old; ++j) expected[j] += counts[i] * s[j] / total / static_cast<double>(m);
  }
  // float sums of 40 weighted probabilities of magnitude ~1 each
  constexpr double tolerance = 1e-5;
  for (std::size_t j = 0; j < old; ++j) EXPECT_NEAR(got[j], expected[j], tolerance * std::max(1.0, expected[j])) << j;
  // Weights with squares are refused.
  pith::kernels::softmax_importance_args a;
  float sink = 0.0f;
  a.importance = &sink;
  a.importance_squares = &sink;
  a.importance_weights = counts.data();
  EXPECT_NE(pith::kernels::validate_softmax_importance(a), nullptr);
}

// ---------------------------------------------------------------------------------------------------
// CriticalKV

TEST(EvictionMethods, CriticalKvProtectsHalfTheBudgetThenWeighsTheRestByTheirValues) {
  pith::selection_scratch scratch;
  slots keep;
  // Budget 2: slot 0 (the best score) is kept by the first stage; the second ranks (score + 1e-4) x
  // weight: slot 3 (0.1101 x 10) beats slot 1 (0.3001 x 1). Without the weights slots 0 and 1 win.
  const std::vector<float> scores{0.5f, 0.3f, 0.2f, 0.11f}, weights{1.0f, 1.0f, 1.0f, 10.0f}, flat(4, 1.0f);
  pith::select_criticalkv(scores, weights, 2, 1, pith::pool_mode::average, keep, scratch);
  EXPECT_EQ(keep, (slots{0, 3}));
  pith::select_criticalkv(scores, flat, 2, 1, pith::pool_mode::average, keep, scratch);
  EXPECT_EQ(keep, (slots{0, 1}));
  // The first stage is protected whatever its weight: a weight of 0 on the best slot keeps it.
  const std::vector<float> zero_first{0.0f, 1.0f, 1.0f, 10.0f};
  pith::select_criticalkv(scores, zero_first, 3, 1, pith::pool_mode::average, keep, scratch);
  EXPECT_EQ(keep, (slots{0, 1, 3}));  // first stage {0}; second: slot 3 (1.1), slot 1 (0.3001)
  // Budget 1: no first stage (1 / 2 = 0), the one slot by score x weight.
  pith::select_criticalkv(scores, weights, 1, 1, pith::pool_mode::average, keep, scratch);
  EXPECT_EQ(keep, (slots{3}));
  // Within the budget: everything; sizes that disagree are refused.
  pith::select_criticalkv(scores, weights, 4, 1, pith::pool_mode::average, keep, scratch);
  EXPECT_EQ(keep, (slots{0, 1, 2, 3}));
  EXPECT_THROW(pith::select_criticalkv(scores, std::span(weights).first(3), 2, 1, pith::pool_mode::average, keep, scratch),
               pith::shape_error);
}

TEST(EvictionMethods, CriticalValueWeightsAreTheMeanL1NormOverTheGroup) {
  // Two heads, two values, three outputs: value 0 projects to (1, -2, 0) and (0, 0, 4), value 1 to
  // (-1, -1, -1) and (3, 0, 0): means (3 + 4) / 2 and (3 + 3) / 2.
  const std::vector<float> projected{1, -2, 0, -1, -1, -1, 0, 0, 4, 3, 0, 0};
  std::vector<float> out(2);
  pith::critical_value_weights(projected, 2, 2, 3, out);
  EXPECT_EQ(out, (std::vector<float>{3.5f, 3.0f}));
  EXPECT_THROW(pith::critical_value_weights(projected, 2, 2, 2, out), pith::shape_error);
}

// ---------------------------------------------------------------------------------------------------
// ExpectedAttention

TEST(EvictionMethods, QueryMomentsGiveTheMeanAndTheBiasedCovariance) {
  pith::query_moments m(2, 2);
  const std::vector<float> q{1, 2, 3, 6};  // unit 1: (1, 2) and (3, 6)
  m.add(1, q.data(), 2, 2);
  std::vector<double> mean, covariance;
  m.moments(1, mean, covariance);
  EXPECT_EQ(m.count(1), 2u);
  EXPECT_EQ(mean, (std::vector<double>{2, 4}));
  EXPECT_EQ(covariance, (std::vector<double>{1, 2, 2, 4}));  // ((1-2)^2 + (3-2)^2) / 2, ...
  m.moments(0, mean, covariance);                             // no query yet: zeros
  EXPECT_EQ(mean, (std::vector<double>{0, 0}));
  EXPECT_THROW(m.add(2, q.data(), 1, 2), pith::argument_error);
}

TEST(EvictionMethods, ExpectedAttentionScoresMatchADoubleReference) {
  // Two query heads of one KV head, head_dim 8, 30 queries, 12 slots (4 sinks), the rotation averaged
  // over positions 100..611; the reference builds R from pith's RoPE kernel applied to the basis
  // vectors at every position and computes everything else in double from the definition.
  const std::size_t d = 8, heads = 2, queries = 30, n = 12, sink = 4, first = 100, count = 512;
  const auto wave = [](std::size_t i, std::size_t a, std::size_t b) {
    return static_cast<float>(std::sin(0.37 * static_cast<double>(i * a + b) + 0.1 * static_cast<double>(b)));
  };
  std::vector<float> q(heads * queries * d), keys(n * d), values(n * d);
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = 0.5f + wave(i, 7, 3);
  for (std::size_t i = 0; i < keys.size(); ++i) keys[i] = 2.0f * wave(i, 5, 1);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = wave(i, 3, 2);
  std::vector<float> frequencies(d / 2);
  pith::kernels::rope_inverse_frequencies(10000.0f, d, frequencies.data());
  for (const auto layout : {pith::kernels::rope_layout::half, pith::kernels::rope_layout::interleaved}) {
    // pith: the blocks as the reader composes them (float logits)
    pith::query_moments moments(heads, d);
    for (std::size_t h = 0; h < heads; ++h) moments.add(h, q.data() + h * queries * d, queries, d);
    std::vector<double> cos, sin, mean, covariance;
    pith::average_rotation(frequencies, first, count, cos, sin);
    std::vector<float> logits(heads * n), m(d), c(d * d), norms(n), got(n);
    for (std::size_t h = 0; h < heads; ++h) {
      moments.moments(h, mean, covariance);
      pith::rotate_moments(layout, cos, sin, mean, covariance, m, c);
      for (std::size_t j = 0; j < n; ++j) {
        float linear = 0.0f, quadratic = 0.0f;
        for (std::size_t a = 0; a < d; ++a) {
          linear += keys[j * d + a] * m[a];
          for (std::size_t b = 0; b < d; ++b) quadratic += keys[j * d + a] * c[a * d + b] * keys[j * d + b];
        }
        logits[h * n + j] = linear / std::sqrt(static_cast<float>(d)) + quadratic / static_cast<float>(2 * d);
      }
    }
    for (std::size_t j = 0; j < n; ++j) {
      double squares = 0.0;
      for (std::size_t a = 0; a < d; ++a) squares += static_cast<double>(values[j * d + a]) * values[j * d + a];
      norms[j] = static_cast<float>(std::sqrt(squares));
    }
    pith::expected_attention_scores(logits, heads, sink, norms, got);
    // the reference: R = mean over p of RoPE(p) as a matrix (column b: the rotated basis vector e_b)
    std::vector<double> rotation(d * d, 0.0);
    std::vector<float> basis(d), cos_p(d / 2), sin_p(d / 2);
    for (std::size_t p = first; p < first + count; ++p) {
      pith::kernels::rope_angles(static_cast<double>(p), frequencies.data(), d, cos_p.data(), sin_p.data());
      for (std::size_t b = 0; b < d; ++b) {
        std::fill(basis.begin(), basis.end(), 0.0f);
        basis[b] = 1.0f;
        pith::kernels::apply_rope(layout, basis.data(), 1, d, d, cos_p.data(), sin_p.data());
        for (std::size_t a = 0; a < d; ++a) rotation[a * d + b] += basis[a] / static_cast<double>(count);
      }
    }
    std::vector<double> expected(n, 0.0);
    for (std::size_t h = 0; h < heads; ++h) {
      std::vector<double> mu(d, 0.0), sigma(d * d, 0.0), rm(d, 0.0), rs(d * d, 0.0), rsr(d * d, 0.0), z(n);
      for (std::size_t i = 0; i < queries; ++i)
        for (std::size_t a = 0; a < d; ++a) mu[a] += q[(h * queries + i) * d + a] / static_cast<double>(queries);
      for (std::size_t i = 0; i < queries; ++i)
        for (std::size_t a = 0; a < d; ++a)
          for (std::size_t b = 0; b < d; ++b)
            sigma[a * d + b] += (q[(h * queries + i) * d + a] - mu[a]) * (q[(h * queries + i) * d + b] - mu[b]) /
                                static_cast<double>(queries);
      for (std::size_t a = 0; a < d; ++a)
        for (std::size_t b = 0; b < d; ++b) {
          rm[a] += rotation[a * d + b] * mu[b];
          for (std::size_t e = 0; e < d; ++e) rs[a * d + b] += rotation[a * d + e] * sigma[e * d + b];
        }
      for (std::size_t a = 0; a < d; ++a)
        for (std::size_t b = 0; b < d; ++b)
          for (std::size_t e = 0; e < d; ++e) rsr[a * d + b] += rs[a * d + e] * rotation[b * d + e];
      double total = 0.0;
      for (std::size_t j = sink; j < n; ++j) {
        double linear = 0.0, quadratic = 0.0;
        for (std::size_t a = 0; a < d; ++a) {
          linear += keys[j * d + a] * rm[a];
          for (std::size_t b = 0; b < d; ++b) quadratic += keys[j * d + a] * rsr[a * d + b] * keys[j * d + b];
        }
        total += z[j] = std::exp(linear / std::sqrt(static_cast<double>(d)) + quadratic / (2.0 * static_cast<double>(d)));
      }
      for (std::size_t j = sink; j < n; ++j) expected[j] += z[j] / total / static_cast<double>(heads);
    }
    // float logits of size ~1 (sums of 64 products) and RoPE's float angles at positions up to 612
    // (2^-24 relative, 4e-5 rad): the scores agree to 1e-4 of their size
    constexpr double tolerance = 1e-4;
    for (std::size_t j = 0; j < sink; ++j) EXPECT_TRUE(std::isinf(got[j]) && got[j] > 0) << j;
    for (std::size_t j = sink; j < n; ++j) {
      const double want = expected[j] * norms[j];
      EXPECT_NEAR(got[j], want, tolerance * want) << "slot " << j << (layout == pith::kernels::rope_layout::half ? " half" : " interleaved");
    }
  }
  std::vector<float> out(3);
  EXPECT_THROW(pith::expected_attention_scores(std::vector<float>(5), 2, 0, std::vector<float>(3), out), pith::shape_error);
}

// ---------------------------------------------------------------------------------------------------
// AdaKV

// Three KV heads with 6, 4 and 8 old slots, k = 5, alpha = 0.4: floor(0.4 x 5) = 2 per head, then the
// layer's 15 minus the 6 guaranteed go to the 9 best of the rest across heads (worked by hand below).
TEST(EvictionMethods, AdaKvGivesEachHeadItsFloorThenTheLayersBestAcrossHeads) {
  const std::vector<float> h0{0.9f, 0.1f, 0.8f, 0.7f, 0.05f, 0.6f};
  const std::vector<float> h1{0.2f, 0.3f, 0.1f, 0.25f};
  const std::vector<float> h2{0.5f, 0.95f, 0.4f, 0.45f, 0.85f, 0.3f, 0.02f, 0.65f};
  const std::vector<std::span<const float>> heads{h0, h1, h2};
  std::vector<slots> keep;
  pith::selection_scratch scratch;
  pith::select_adakv(heads, 5, 0.4, keep, scratch);
  // Floors: head 0 slots 0, 2; head 1 slots 1, 3; head 2 slots 1, 4. The rest ranked: 0.7 (0:3),
  // 0.65 (2:7), 0.6 (0:5), 0.5 (2:0), 0.45 (2:3), 0.4 (2:2), 0.3 (2:5), 0.2 (1:0), then 0.1 twice:
  // head 0's slot 1 before head 1's slot 2 (the lower head). Evicted: 1:2, 0:4 and 2:6.
  ASSERT_EQ(keep.size(), 3u);
  EXPECT_EQ(keep[0], (slots{0, 1, 2, 3, 5}));
  EXPECT_EQ(keep[1], (slots{0, 1, 3}));
  EXPECT_EQ(keep[2], (slots{0, 1, 2, 3, 4, 5, 7}));
  EXPECT_EQ(keep[0].size() + keep[1].size() + keep[2].size(), 3u * 5u);
  // The floor protects a head whose scores are all below the others': with k = 4 (a layer budget of
  // 12 of 18) head 1 keeps its top floor(0.5 x 4) = 2 at alpha 0.5, and nothing at alpha 0, where the
  // six lowest scores go: head 1's four, head 2's 0.02 (slot 6) and head 0's 0.05 (slot 4).
  const std::vector<float> low{0.001f, 0.003f, 0.002f, 0.004f};
  const std::vector<std::span<const float>> skewed{h0, low, h2};
  pith::select_adakv(skewed, 4, 0.5, keep, scratch);
  EXPECT_EQ(keep[1], (slots{1, 3}));
  EXPECT_EQ(keep[0].size() + keep[1].size() + keep[2].size(), 12u);
  pith::select_adakv(skewed, 4, 0.0, keep, scratch);
  EXPECT_TRUE(keep[1].empty());
  EXPECT_EQ(keep[0], (slots{0, 1, 2, 3, 5}));
  EXPECT_EQ(keep[2], (slots{0, 1, 2, 3, 4, 5, 7}));
  // At most the layer's budget: everything stays.
  pith::select_adakv(heads, 6, 0.2, keep, scratch);
  EXPECT_EQ(keep[0], (slots{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(keep[2].size(), 8u);
}

TEST(EvictionMethods, AdaKvAtAlphaOneIsAPerHeadTopKAndItsBoundsAreChecked) {
  std::vector<std::vector<float>> rows(4, std::vector<float>(30));
  for (std::size_t g = 0; g < rows.size(); ++g)
    for (std::size_t j = 0; j < 30; ++j) rows[g][j] = std::sin(static_cast<float>(7 * j + 13 * g)) + 10.0f * static_cast<float>(g);
  const std::vector<std::span<const float>> heads(rows.begin(), rows.end());
  std::vector<slots> keep;
  pith::selection_scratch scratch;
  pith::select_adakv(heads, 10, 1.0, keep, scratch);
  for (std::size_t g = 0; g < rows.size(); ++g) {
    slots own;
    pith::select_top_k(rows[g], 10, own, scratch);
    EXPECT_EQ(keep[g], own) << "head " << g;
  }
  // Head g's scores lie in [10 g - 1, 10 g + 1]: at alpha 0.2 every head keeps floor(2), head 3 then
  // takes all of its other 28 (it could take up to 40 - 3 x 2 = 34) and head 2 the last 4 of the 40.
  pith::select_adakv(heads, 10, 0.2, keep, scratch);
  EXPECT_EQ(keep[3].size(), 30u);
  EXPECT_EQ(keep[2].size(), 6u);
  EXPECT_EQ(keep[1].size(), 2u);
  EXPECT_EQ(keep[0].size(), 2u);
  EXPECT_EQ(pith::adakv_floor(10, 0.2), 2u);
  EXPECT_EQ(pith::adakv_floor(7, 0.2), 1u);   // floor(1.4)
  EXPECT_EQ(pith::adakv_head_budget(10, 4, 0.2), 34u);  // 4 x 10 - 3 x 2
  EXPECT_EQ(pith::adakv_head_budget(10, 1, 0.2), 10u);
  for (const double alpha : {-0.1, 1.5, std::nan("")}) {
    try {
      pith::select_adakv(heads, 10, alpha, keep, scratch);
      FAIL() << "alpha " << alpha << " was accepted";
    } catch (const pith::argument_error& e) {
      EXPECT_NE(std::string(e.what()).find("adakv_alpha"), std::string::npos) << e.what();
    }
  }
}

TEST(EvictionMethods, AdaKvLabelsNameThePolicyTheyWrap) {
  const auto label = pith::parse_policy_label("adakv(snapkv)");
  EXPECT_EQ(label.kind, pith::policy_kind::snapkv);
  EXPECT_TRUE(label.head_adaptive);
  EXPECT_FALSE(pith::parse_policy_label("snapkv").head_adaptive);
  EXPECT_EQ(pith::policy_label_name(pith::policy_kind::citrus_shared, true), "adakv(citrus-shared)");
  for (const auto kind : pith::builtin_policies) {
    const std::string name = pith::policy_label_name(kind, true);
    if (pith::combines_with_adakv(kind)) {
      EXPECT_EQ(pith::parse_policy_label(name).kind, kind);
      continue;
    }
    try {
      pith::parse_policy_label(name);
      FAIL() << name << " was accepted";
    } catch (const pith::argument_error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(pith::parse_policy_label("adakv(snapkv"), pith::argument_error);
  EXPECT_THROW(pith::parse_policy_label("adakv()"), pith::argument_error);
  EXPECT_THROW(pith::parse_policy_label("adakv(lru)"), pith::argument_error);
}

}  // namespace
