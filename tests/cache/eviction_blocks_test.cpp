// SPDX-License-Identifier: MIT
// The eviction building blocks on hand-made data with known answers: head aggregation over GQA groups,
// running statistics, pooling at the edges, every selection rule, compaction with RoPE re-rotation of a
// cache that is not pith's kv_cache, and the errors bad sizes raise.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include <pith/cache/eviction_blocks.hpp>
#include <pith/cache/kv_cache.hpp>

namespace {

using slots = std::vector<std::uint32_t>;

// ---------------------------------------------------------------------------------------------------
// Aggregation

// 4 query heads, 2 KV heads (groups {0, 1} and {2, 3}), 3 slots, rows 5 floats apart (the padding
// holds values that must not be read). Every value and mean is exact in float.
const std::vector<float> four_heads{
    0.50f, 0.25f, 0.25f, 99.0f, 99.0f,  // head 0
    0.25f, 0.25f, 0.50f, 99.0f, 99.0f,  // head 1
    1.00f, 0.00f, 0.00f, 99.0f, 99.0f,  // head 2
    0.00f, 0.50f, 0.50f,                // head 3 (the last row needs no padding)
};

TEST(EvictionBlocks, MeanOverGroupsAveragesEachKvHeadsQueryHeads) {
  const pith::head_scores scores{four_heads, 4, 3, 5};
  std::vector<float> out(6, -1.0f);
  pith::mean_over_groups(scores, 2, out);
  EXPECT_EQ(out, (std::vector<float>{0.375f, 0.25f, 0.375f, 0.5f, 0.25f, 0.25f}));
  // One KV head: the group is every query head (multi-query attention), the same as mean_over_heads.
  std::vector<float> one(3), all(3);
  pith::mean_over_groups(scores, 1, one);
  pith::mean_over_heads(scores, all);
  EXPECT_EQ(all, (std::vector<float>{0.4375f, 0.25f, 0.3125f}));
  EXPECT_EQ(one, all);
  // As many KV heads as query heads: each row unchanged.
  std::vector<float> each(12);
  pith::mean_over_groups(scores, 4, each);
  EXPECT_EQ(each[6], 1.0f);
  EXPECT_EQ(each[11], 0.5f);
}

TEST(EvictionBlocks, AggregationRejectsSizesThatDisagree) {
  std::vector<float> out(6);
  EXPECT_THROW(pith::mean_over_groups({four_heads, 4, 3, 5}, 3, out), pith::shape_error);  // 4 heads, 3 groups
  EXPECT_THROW(pith::mean_over_groups({four_heads, 4, 3, 5}, 0, out), pith::shape_error);
  EXPECT_THROW(pith::mean_over_groups({four_heads, 4, 3, 5}, 1, out), pith::shape_error);  // out: 6 for 3
  EXPECT_THROW(pith::mean_over_heads({four_heads, 5, 3, 5}, std::span(out).first(3)), pith::shape_error);  // 5 rows
  EXPECT_THROW(pith::mean_over_heads({four_heads, 4, 3, 2}, std::span(out).first(3)), pith::shape_error);  // stride < slots
  EXPECT_THROW(pith::mean_over_heads({four_heads, 0, 3, 5}, std::span(out).first(3)), pith::shape_error);
}

TEST(EvictionBlocks, RunningScoresAccumulateSumsSquaresAndCounts) {
  pith::running_scores running(2, true);
  // Chunk 0 of 2 queries over an empty cache: 2 slots, 2 query heads in the group.
  const std::vector<float> means{0.5f, 0.5f, 0.25f, 0.75f};    // [heads 2, slots 2]
  const std::vector<float> squares{0.5f, 0.25f, 0.25f, 0.5f};  // [heads 2, slots 2]
  running.add(1, {means, 2, 2}, {squares, 2, 2}, 2, 0);
  // S = mean over heads of (mean * queries): slot 0 (0.5 + 0.25) / 2 * 2 = 0.75, slot 1 1.25.
  EXPECT_EQ(std::vector<float>(running.sums(1).begin(), running.sums(1).end()), (std::vector<float>{0.75f, 1.25f}));
  EXPECT_EQ(std::vector<float>(running.squares(1).begin(), running.squares(1).end()), (std::vector<float>{0.75f, 0.75f}));
  // Slot 1 is the chunk's second token: only the second query saw it.
  EXPECT_EQ(std::vector<float>(running.counts(1).begin(), running.counts(1).end()), (std::vector<float>{2.0f, 1.0f}));
  EXPECT_EQ(running.size(0), 0u);
  // A second chunk of 1 query over the 2 old slots plus its own.
  const std::vector<float> next{1.0f, 0.0f, 0.0f, 1.0f, 0.0f, 0.0f};
  running.add(1, {next, 2, 3}, {next, 2, 3}, 1, 2);
  EXPECT_EQ(running.sums(1)[0], 1.75f);
  EXPECT_EQ(running.counts(1)[0], 3.0f);
  EXPECT_EQ(running.counts(1)[2], 1.0f);
  running.gather(1, slots{0, 2});
  EXPECT_EQ(running.size(1), 2u);
  EXPECT_EQ(running.counts(1)[1], 1.0f);
  // The pass must name the slots the unit holds, and squares must match the means.
  EXPECT_THROW(running.add(1, {next, 2, 3}, {next, 2, 3}, 1, 3), pith::shape_error);
  EXPECT_THROW(running.add(1, {next, 2, 3}, {next, 1, 3}, 1, 2), pith::shape_error);
  EXPECT_THROW(running.add(2, {next, 2, 3}, {next, 2, 3}, 1, 0), pith::argument_error);
  EXPECT_THROW(running.gather(1, slots{1, 0}), pith::argument_error);
}

// ---------------------------------------------------------------------------------------------------
// Pooling

TEST(EvictionBlocks, AveragePoolingPadsWithZerosAndDividesByTheKernel) {
  const std::vector<float> scores{3.0f, 6.0f, 9.0f, 12.0f};
  std::vector<float> out;
  pith::average_pool(scores, 3, out);
  EXPECT_EQ(out, (std::vector<float>{3.0f, 6.0f, 9.0f, 7.0f}));  // (0+3+6)/3, (3+6+9)/3, (6+9+12)/3, (9+12+0)/3
  pith::average_pool(scores, 1, out);
  EXPECT_EQ(out, scores);
  // A kernel wider than the scores: every slot sums all of them, still divided by the kernel.
  pith::average_pool(std::span(scores).first(2), 9, out);
  EXPECT_EQ(out, (std::vector<float>{1.0f, 1.0f}));
  pith::average_pool(std::span<const float>{}, 5, out);
  EXPECT_TRUE(out.empty());
  EXPECT_THROW(pith::average_pool(scores, 4, out), pith::argument_error);
  EXPECT_THROW(pith::average_pool(scores, 0, out), pith::argument_error);
  std::vector<float> small(3);
  EXPECT_THROW(pith::average_pool(scores, 3, std::span<float>(small)), pith::shape_error);
}

// ---------------------------------------------------------------------------------------------------
// Selection rules

TEST(EvictionBlocks, TopKPrefersHigherScoresThenLowerSlots) {
  pith::selection_scratch scratch;
  slots keep;
  const std::vector<float> scores{0.5f, 0.9f, 0.5f, 0.9f, 0.1f};
  pith::select_top_k(scores, 2, keep, scratch);
  EXPECT_EQ(keep, (slots{1, 3}));
  pith::select_top_k(scores, 3, keep, scratch);
  EXPECT_EQ(keep, (slots{0, 1, 3}));
  pith::select_top_k(scores, 0, keep, scratch);
  EXPECT_TRUE(keep.empty());
}

TEST(EvictionBlocks, StreamingKeepsSinksAndTheMostRecent) {
  slots keep;
  pith::select_streaming(10, 6, 4, keep);
  EXPECT_EQ(keep, (slots{0, 1, 2, 3, 8, 9}));
  pith::select_streaming(10, 3, 4, keep);  // sink clamped to the budget
  EXPECT_EQ(keep, (slots{0, 1, 2}));
  pith::select_streaming(5, 6, 4, keep);  // within the budget: everything
  EXPECT_EQ(keep, (slots{0, 1, 2, 3, 4}));
}

TEST(EvictionBlocks, H2oProtectsSinksAndRecentThenKeepsTheHeaviest) {
  // 30 old slots, budget 20: 4 sinks and 20/10 = 2 recent slots protected, 14 heavy hitters among 4..27.
  std::vector<float> sums(30);
  for (std::size_t j = 0; j < sums.size(); ++j) sums[j] = 100.0f - static_cast<float>(j);
  sums[0] = sums[1] = sums[2] = sums[3] = 0.0f;  // protected however light
  sums[20] = 1000.0f;                           // the heaviest of all
  pith::selection_scratch scratch;
  slots keep;
  pith::select_h2o(sums, 20, 4, keep, scratch);
  slots expected{0, 1, 2, 3};
  for (std::uint32_t j = 4; j < 17; ++j) expected.push_back(j);  // 13 heaviest by position ...
  expected.push_back(20);                                        // ... and slot 20
  expected.push_back(28);
  expected.push_back(29);
  EXPECT_EQ(keep, expected);
  const auto protection = pith::h2o_protection(20, 4);
  EXPECT_EQ(protection.sink, 4u);
  EXPECT_EQ(protection.recent, 2u);
  EXPECT_EQ(pith::h2o_protection(3, 4).sink, 3u);
  EXPECT_EQ(pith::h2o_protection(3, 4).recent, 0u);
}

TEST(EvictionBlocks, RocoEvictsTheLowestMeansAmongTheSteadiest) {
  // 8 old slots, budget 6, 1 sink, no recent slot (6 / 10 = 0): candidates 1..7, room 5, 2 to evict.
  // counts 1, so mean = sum and std = sqrt(square - mean²).
  //   slot   1     2     3     4     5     6     7
  //   mean  0.10  0.05  0.20  0.30  0.15  0.40  0.50
  //   std   0     0.5   0.1   0.1   0.2   0.6   0.05
  // The 5 steadiest are 1, 7, 3, 4, 5; of those 1 and 5 have the lowest means. Slot 2 has the lowest
  // mean of all but varies too much to be a candidate.
  const std::vector<float> mean{9.0f, 0.10f, 0.05f, 0.20f, 0.30f, 0.15f, 0.40f, 0.50f};
  const std::vector<float> deviation{0.0f, 0.0f, 0.5f, 0.1f, 0.1f, 0.2f, 0.6f, 0.05f};
  std::vector<float> squares(8), counts(8, 1.0f);
  for (std::size_t j = 0; j < 8; ++j) squares[j] = deviation[j] * deviation[j] + mean[j] * mean[j];
  pith::selection_scratch scratch;
  slots keep;
  pith::select_roco(mean, squares, counts, 6, 1, keep, scratch);
  EXPECT_EQ(keep, (slots{0, 2, 3, 4, 6, 7}));
  // Equal stds: the lower slots are the candidates (1..5); equal means: the higher slot goes first.
  const std::vector<float> flat(8, 0.25f);
  std::vector<float> flat_squares(8, 0.0625f);
  pith::select_roco(flat, flat_squares, counts, 6, 1, keep, scratch);
  EXPECT_EQ(keep, (slots{0, 1, 2, 3, 6, 7}));
  EXPECT_THROW(pith::select_roco(mean, std::span(squares).first(7), counts, 6, 1, keep, scratch), pith::shape_error);
}

TEST(EvictionBlocks, PoolingKeepsNeighboursOfTheStrongestRegion) {
  // A lone spike (slot 2) against a pair (slots 6, 7): unpooled the spike wins, pooled the pair does.
  const std::vector<float> scores{0.0f, 0.0f, 1.0f, 0.0f, 0.0f, 0.0f, 0.9f, 0.9f, 0.0f};
  pith::selection_scratch scratch;
  slots keep;
  pith::select_citrus(scores, 2, 1, keep, scratch);
  EXPECT_EQ(keep, (slots{2, 6}));
  pith::select_citrus(scores, 2, 3, keep, scratch);
  EXPECT_EQ(keep, (slots{6, 7}));
  pith::select_snapkv(scores, 2, 3, keep, scratch);
  EXPECT_EQ(keep, (slots{6, 7}));
  EXPECT_THROW(pith::select_citrus(scores, 2, 0, keep, scratch), pith::argument_error);
  EXPECT_THROW(pith::select_snapkv(scores, 2, 2, keep, scratch), pith::argument_error);
}

TEST(EvictionBlocks, CitrusCutsRankByTheChunkOrTheInstruction) {
  const std::vector<float> chunk{1.0f}, instruction{2.0f};
  using pith::citrus_cut;
  using pith::policy_kind;
  const auto source = [&](policy_kind policy, citrus_cut cut) {
    return pith::citrus_cut_scores(policy, cut, chunk, instruction).data();
  };
  EXPECT_EQ(source(policy_kind::citrus_cse, citrus_cut::reading), chunk.data());
  EXPECT_EQ(source(policy_kind::citrus_shared, citrus_cut::reading), instruction.data());
  EXPECT_EQ(source(policy_kind::citrus_separate, citrus_cut::reading), chunk.data());
  EXPECT_EQ(source(policy_kind::citrus_separate, citrus_cut::instruction_cache), instruction.data());
  for (const auto policy : {policy_kind::citrus_cse, policy_kind::citrus_shared, policy_kind::citrus_separate})
    EXPECT_EQ(source(policy, citrus_cut::final_cut), instruction.data());
  EXPECT_THROW(source(policy_kind::h2o, citrus_cut::reading), pith::argument_error);
  EXPECT_THROW(source(policy_kind::citrus_shared, citrus_cut::instruction_cache), pith::argument_error);
}

TEST(EvictionBlocks, KeepNewestAppendsTheChunk) {
  slots keep{1, 4};
  pith::keep_newest(keep, 6, 9);
  EXPECT_EQ(keep, (slots{1, 4, 6, 7, 8}));
  EXPECT_THROW(pith::keep_newest(keep, 6, 5), pith::argument_error);
}

// ---------------------------------------------------------------------------------------------------
// Compaction and re-rotation over a cache that is not pith's kv_cache

// An engine's own cache: one std::vector per (layer, KV head), rows of head_dim floats.
class engine_cache {
 public:
  engine_cache(std::size_t layers, std::size_t heads, std::size_t head_dim, std::size_t rows)
      : layers_(layers), heads_(heads), head_dim_(head_dim), keys_(layers * heads, std::vector<float>(rows * head_dim)),
        values_(keys_), positions_(layers * heads, std::vector<std::int64_t>(rows)), sizes_(layers * heads, rows) {}
  std::size_t layers() const { return layers_; }
  std::size_t kv_heads() const { return heads_; }
  std::size_t head_dim() const { return head_dim_; }
  std::size_t size(std::size_t layer, std::size_t head) const { return sizes_[layer * heads_ + head]; }
  void set_size(std::size_t layer, std::size_t head, std::size_t rows) { sizes_[layer * heads_ + head] = rows; }
  float* keys(std::size_t layer, std::size_t head) { return keys_[layer * heads_ + head].data(); }
  float* values(std::size_t layer, std::size_t head) { return values_[layer * heads_ + head].data(); }
  std::int64_t* positions(std::size_t layer, std::size_t head) { return positions_[layer * heads_ + head].data(); }

 private:
  std::size_t layers_, heads_, head_dim_;
  std::vector<std::vector<float>> keys_, values_;
  std::vector<std::vector<std::int64_t>> positions_;
  std::vector<std::size_t> sizes_;
};
static_assert(pith::kv_store<engine_cache>);
static_assert(pith::kv_store<pith::kv_cache>);
static_assert(!pith::kv_store<std::vector<float>>);

// Re-rotating a key rotated at p to q composes two float rotations (p, then q - p) where rotating
// the unrotated key at q is one: the angles p·f, (q - p)·f and q·f are each rounded in float (relative
// 6e-8 of angles up to ~60 rad here, ~4e-6 rad) and every rotation adds a few ulps of |key| <= 1.
constexpr float rotation_tolerance = 2e-5f;
constexpr float theta = 10000.0f;
constexpr std::size_t head_dim = 8;

// A key's unrotated value: row `row` of (layer, head), deterministic and of magnitude below 1.
float unrotated(std::size_t head, std::size_t row, std::size_t i) {
  return std::sin(0.7f * static_cast<float>(head * 31 + row * 7 + i) + 0.3f);
}

std::vector<float> rotated(std::size_t head, std::size_t row, std::int64_t position, pith::kernels::rope_layout layout) {
  std::vector<float> key(head_dim), inv(head_dim / 2), c(head_dim / 2), s(head_dim / 2);
  for (std::size_t i = 0; i < head_dim; ++i) key[i] = unrotated(head, row, i);
  pith::kernels::rope_inverse_frequencies(theta, head_dim, inv.data());
  pith::kernels::rope_angles(static_cast<double>(position), inv.data(), head_dim, c.data(), s.data());
  pith::kernels::apply_rope(layout, key.data(), 1, head_dim, head_dim, c.data(), s.data());
  return key;
}

class CompactionTest : public ::testing::TestWithParam<pith::kernels::rope_layout> {};

TEST_P(CompactionTest, CompactedAndRenumberedKeysEqualKeysRotatedAtTheirNewPositions) {
  const auto layout = GetParam();
  engine_cache cache(2, 2, head_dim, 6);
  for (std::size_t l = 0; l < 2; ++l)
    for (std::size_t g = 0; g < 2; ++g)
      for (std::size_t r = 0; r < 6; ++r) {
        const auto position = static_cast<std::int64_t>(20 + 7 * r);  // document positions 20, 27, ..., 55
        const auto key = rotated(g, r, position, layout);
        std::copy(key.begin(), key.end(), cache.keys(l, g) + r * head_dim);
        for (std::size_t i = 0; i < head_dim; ++i) cache.values(l, g)[r * head_dim + i] = static_cast<float>(100 * r + i);
        cache.positions(l, g)[r] = position;
      }
  pith::rerotator rotate(head_dim, theta, layout, 64);
  const slots keep{1, 3, 4};
  for (std::size_t g = 0; g < 2; ++g) {
    pith::compact(cache, 1, g, keep);
    rotate.renumber(cache, 1, g);
  }
  for (std::size_t g = 0; g < 2; ++g) {
    ASSERT_EQ(cache.size(1, g), 3u);
    ASSERT_EQ(cache.size(0, g), 6u);  // the other layer is untouched
    for (std::size_t i = 0; i < keep.size(); ++i) {
      EXPECT_EQ(cache.positions(1, g)[i], static_cast<std::int64_t>(i));
      const auto expected = rotated(g, keep[i], static_cast<std::int64_t>(i), layout);
      for (std::size_t d = 0; d < head_dim; ++d) {
        EXPECT_NEAR(cache.keys(1, g)[i * head_dim + d], expected[d], rotation_tolerance) << g << "," << i << "," << d;
        EXPECT_EQ(cache.values(1, g)[i * head_dim + d], static_cast<float>(100 * keep[i] + d));  // moved exactly
      }
    }
  }
  // Explicit positions, one outside the table (computed angles) and one moving forward.
  const std::vector<std::int64_t> targets{0, 500, 3};
  rotate.rerotate(cache, 1, 0, targets);
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const auto expected = rotated(0, keep[i], targets[i], layout);
    for (std::size_t d = 0; d < head_dim; ++d)
      EXPECT_NEAR(cache.keys(1, 0)[i * head_dim + d], expected[d], 10 * rotation_tolerance) << i << "," << d;
  }
  EXPECT_EQ(rotate.bytes_allocated(), (head_dim / 2 * 3 + 64 * head_dim) * sizeof(float));
}

INSTANTIATE_TEST_SUITE_P(Layouts, CompactionTest,
                         ::testing::Values(pith::kernels::rope_layout::half, pith::kernels::rope_layout::interleaved),
                         [](const auto& info) {
                           return info.param == pith::kernels::rope_layout::half ? "half" : "interleaved";
                         });

// The usage comment at the top of eviction_blocks.hpp, as written there, on an engine's own cache:
// 6 old slots and a chunk of 2 just appended, 4 query heads over 2 KV heads, budget 3.
TEST(EvictionBlocks, TheHeadersUsageStepRunsOnAnEnginesCache) {
  const std::size_t num_heads = 4, num_kv_heads = 2, old_slots = 6, budget = 3, layer = 0, stride = 8;
  engine_cache cache(1, num_kv_heads, head_dim, old_slots + 2);
  for (std::size_t g = 0; g < num_kv_heads; ++g)
    for (std::size_t r = 0; r < old_slots + 2; ++r) cache.positions(layer, g)[r] = static_cast<std::int64_t>(r);
  // Slot 4 is the most attended, then 1, then 5.
  std::vector<float> storage(num_heads * stride, 0.0f);
  for (std::size_t h = 0; h < num_heads; ++h) {
    storage[h * stride + 4] = 0.5f;
    storage[h * stride + 1] = 0.25f;
    storage[h * stride + 5] = 0.125f;
  }
  const std::span<const float> probs(storage);
  pith::rerotator rotate(head_dim, theta, pith::kernels::rope_layout::half, 64);

  const pith::head_scores heads{probs, num_heads, old_slots, stride};
  std::vector<float> scores(old_slots);
  pith::mean_over_heads(heads, scores);
  std::vector<std::uint32_t> keep;
  pith::selection_scratch scratch;
  if (old_slots > budget) {
    pith::select_citrus(scores, budget, /*pool*/ 1, keep, scratch);
    pith::keep_newest(keep, old_slots, cache.size(layer, 0));
    for (std::size_t g = 0; g < num_kv_heads; ++g) {
      pith::compact(cache, layer, g, keep);
      rotate.renumber(cache, layer, g);
    }
  }

  EXPECT_EQ(keep, (slots{1, 4, 5, 6, 7}));
  for (std::size_t g = 0; g < num_kv_heads; ++g) {
    ASSERT_EQ(cache.size(layer, g), 5u);
    for (std::size_t i = 0; i < 5; ++i) EXPECT_EQ(cache.positions(layer, g)[i], static_cast<std::int64_t>(i));
  }
}

TEST(EvictionBlocks, KvCacheCompactsThroughTheSameBlock) {
  pith::kv_cache cache(1, 1, 2, 4);
  cache.set_size(0, 0, 4);
  for (std::size_t r = 0; r < 4; ++r) {
    cache.keys(0, 0)[2 * r] = static_cast<float>(r);
    cache.positions(0, 0)[r] = static_cast<std::int64_t>(10 + r);
  }
  pith::compact(cache, 0, 0, slots{0, 3});
  EXPECT_EQ(cache.size(0, 0), 2u);
  EXPECT_EQ(cache.keys(0, 0)[2], 3.0f);
  EXPECT_EQ(cache.positions(0, 0)[1], 13);
}

TEST(EvictionBlocks, CompactionAndRotationRejectBadInput) {
  engine_cache cache(1, 2, head_dim, 4);
  EXPECT_THROW(pith::compact(cache, 0, 0, slots{2, 1}), pith::argument_error);  // not sorted
  EXPECT_THROW(pith::compact(cache, 0, 0, slots{1, 1}), pith::argument_error);  // not unique
  EXPECT_THROW(pith::compact(cache, 0, 0, slots{4}), pith::argument_error);     // beyond the size
  EXPECT_THROW(pith::compact(cache, 1, 0, slots{0}), pith::argument_error);     // no layer 1
  EXPECT_THROW(pith::compact(cache, 0, 2, slots{0}), pith::argument_error);     // no KV head 2
  EXPECT_EQ(cache.size(0, 0), 4u);
  pith::rerotator rotate(head_dim, theta, pith::kernels::rope_layout::half, 16);
  const std::vector<std::int64_t> three{0, 1, 2};
  EXPECT_THROW(rotate.rerotate(cache, 0, 0, three), pith::shape_error);  // 3 positions for 4 rows
  pith::rerotator other_width(4, theta, pith::kernels::rope_layout::half, 16);
  EXPECT_THROW(other_width.renumber(cache, 0, 0), pith::shape_error);  // head_dim 4 against 8
  const std::vector<float> frequencies(3);
  EXPECT_THROW(pith::rerotator(head_dim, frequencies, pith::kernels::rope_layout::half, 16), pith::argument_error);
  pith::rerotator unset;
  EXPECT_THROW(unset.renumber(cache, 0, 0), pith::argument_error);
  std::vector<std::int64_t> gather{5, 6, 7};
  pith::gather_kept(gather, slots{0, 2});
  EXPECT_EQ(gather, (std::vector<std::int64_t>{5, 7}));
  EXPECT_THROW(pith::gather_kept(gather, slots{2}), pith::argument_error);
}

}  // namespace
