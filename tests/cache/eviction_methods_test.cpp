// SPDX-License-Identifier: MIT
// The selection rules of the method table (docs/eviction.md): random, KnormPress, KeyDiff,
// ObservedAttention, ChunkKV, max pooling for the SnapKV family and PyramidKV's per-layer budgets, on
// hand-made data with known answers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include <pith/cache/eviction_blocks.hpp>

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
