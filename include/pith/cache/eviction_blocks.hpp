// SPDX-License-Identifier: MIT
// Eviction as building blocks over the caller's own scores and KV cache: head aggregation, running
// statistics, score pooling, every built-in selection rule, compaction and RoPE re-rotation
// (docs/eviction.md, "Building blocks"). pith::reader is a composition of these; an engine with its
// own attention and cache can use them without a pith session or pith weights.
//
// Usage, one chunked eviction step of one layer (the caller has just appended a chunk of new rows
// after `old_slots` cached ones, and kept its attention probabilities):
//
//   #include <pith/cache/eviction_blocks.hpp>
//
//   // probs (std::span<const float>), probs[h * stride + j]: query head h's softmax probability of
//   // cached slot j, averaged over the scoring queries (normalised over every key the query saw,
//   // never over a subset): kernels::softmax_importance's `importance` output for that head, with
//   // importance_end = old_slots, gives exactly this row alongside the attention output.
//   const pith::head_scores heads{probs, num_heads, old_slots, stride};
//   std::vector<float> scores(old_slots);
//   pith::mean_over_heads(heads, scores);       // one score per slot: per-layer policies (CItruS, TOVA)
//   // pith::mean_over_groups(heads, num_kv_heads, per_kv_head) for per-KV-head policies (SnapKV, H2O)
//
//   std::vector<std::uint32_t> keep;            // old slots to keep, in slot order
//   pith::selection_scratch scratch;            // reused across calls: no allocation once warm
//   if (old_slots > budget) {
//     pith::select_citrus(scores, budget, /*pool*/ 1, keep, scratch);  // or select_streaming, _h2o, ...
//     pith::keep_newest(keep, old_slots, cache.size(layer, 0));        // the new chunk always stays
//     for (std::size_t g = 0; g < num_kv_heads; ++g) {
//       pith::compact(cache, layer, g, keep);   // `cache`: any type modelling pith::kv_store
//       rotate.renumber(cache, layer, g);       // positions 0..n-1, keys re-rotated to them
//     }
//   }
//
// with `pith::rerotator rotate(head_dim, rope_theta, pith::kernels::rope_layout::half, max_context);`
// made once per model (table_rows = max_context covers every delta renumbering produces). The next
// tokens then take positions from cache.size(layer, 0) on. A cache that keeps keys before RoPE (as
// CItruS's official code does) needs no rerotator: compact, then rewrite the positions.
//
// For CItruS (notes/citrus_and_kv_eviction.md §A.1, §A.2) the scores come from the chunk's queries
// (citrus-cse) or from a separate pass of the instruction's queries over the same old slots
// (citrus-shared); citrus_cut_scores says which cut uses which. H2O and RoCo keep per-slot statistics
// across chunks in a running_scores, gathered with the same keep list.
//
// Every function checks its sizes and throws pith::shape_error or pith::argument_error naming what is
// wrong; none needs exceptions to be enabled (PITH_THROW aborts with the message without them).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "pith/cache/compaction.hpp"
#include "pith/cache/eviction.hpp"
#include "pith/core/error.hpp"
#include "pith/core/splitmix64.hpp"
#include "pith/kernels/rope.hpp"

namespace pith {

// ---------------------------------------------------------------------------------------------------
// Scores per query head, and their means over heads

/// One layer's per-query-head scores, in the caller's storage: row h (h < heads) starts at
/// data[h * stride] and holds `slots` floats (stride 0 means `slots`, rows packed).
struct head_scores {
  std::span<const float> data;
  std::size_t heads = 0;
  std::size_t slots = 0;
  std::size_t stride = 0;

  std::size_t row_stride() const noexcept { return stride == 0 ? slots : stride; }
  /// Throws shape_error when the rows do not fit in `data` or overlap.
  void check(const char* who) const {
    const std::size_t step = row_stride();
    if (step < slots)
      PITH_THROW(shape_error, std::string(who) + ": row stride " + std::to_string(step) + " is below the " +
                                  std::to_string(slots) + " slots of a row");
    bool fits = true;
    if (heads > 0 && data.size() < slots) fits = false;
    if (heads > 0 && fits && step > 0 && heads - 1 > (data.size() - slots) / step) fits = false;
    if (!fits)
      PITH_THROW(shape_error, std::string(who) + ": " + std::to_string(heads) + " rows of " + std::to_string(slots) +
                                  " slots " + std::to_string(step) + " apart do not fit in " +
                                  std::to_string(data.size()) + " floats");
  }
  const float* row(std::size_t head) const noexcept { return data.data() + head * row_stride(); }
};

/// out[j] = mean over all query heads of scores.row(h)[j] (accumulated in head order, each row
/// multiplied by 1/heads). out [slots]; throws shape_error on mismatched sizes or zero heads.
inline void mean_over_heads(const head_scores& scores, std::span<float> out) {
  scores.check("pith::mean_over_heads");
  if (scores.heads == 0 || out.size() != scores.slots)
    PITH_THROW(shape_error, "pith::mean_over_heads: " + std::to_string(scores.heads) + " heads of " +
                                std::to_string(scores.slots) + " slots into " + std::to_string(out.size()) +
                                " outputs (at least one head, one output per slot)");
  std::fill(out.begin(), out.end(), 0.0f);
  const float weight = 1.0f / static_cast<float>(scores.heads);
  for (std::size_t h = 0; h < scores.heads; ++h) {
    const float* source = scores.row(h);
    for (std::size_t j = 0; j < scores.slots; ++j) out[j] += source[j] * weight;
  }
}

/// Grouped-query attention: KV head g serves query heads [g * G, (g + 1) * G), G = heads / kv_heads.
/// out[g * slots + j] = mean over those G query heads of scores.row(h)[j]. out [kv_heads, slots];
/// throws shape_error when heads is not a positive multiple of kv_heads or out has the wrong size.
inline void mean_over_groups(const head_scores& scores, std::size_t kv_heads, std::span<float> out) {
  scores.check("pith::mean_over_groups");
  if (kv_heads == 0 || scores.heads == 0 || scores.heads % kv_heads != 0)
    PITH_THROW(shape_error, "pith::mean_over_groups: " + std::to_string(scores.heads) +
                                " query heads do not split into groups of " + std::to_string(kv_heads) + " KV heads");
  if (out.size() != kv_heads * scores.slots)
    PITH_THROW(shape_error, "pith::mean_over_groups: " + std::to_string(out.size()) + " outputs for " +
                                std::to_string(kv_heads) + " KV heads of " + std::to_string(scores.slots) + " slots");
  const std::size_t group = scores.heads / kv_heads;
  std::fill(out.begin(), out.end(), 0.0f);
  const float weight = 1.0f / static_cast<float>(group);
  for (std::size_t h = 0; h < scores.heads; ++h) {
    float* target = out.data() + (h / group) * scores.slots;
    const float* source = scores.row(h);
    for (std::size_t j = 0; j < scores.slots; ++j) target[j] += source[j] * weight;
  }
}

// ---------------------------------------------------------------------------------------------------
// Running statistics across chunks (H2O, RoCo)

/// Per (unit, slot) running sums of the attention a slot received from every query that saw it:
/// S += mean over the group's heads of Σ_q p, Q += the same of Σ_q p² (when squares are kept), and the
/// count c of those queries (docs/eviction.md, h2o and roco). A unit is whatever owns a selection,
/// usually (layer, KV head). Slots follow the cache: gather() with the keep list of every compaction.
class running_scores {
 public:
  running_scores() = default;
  running_scores(std::size_t units, bool squares) : squares_on_(squares), sums_(units), squares_(units), counts_(units) {}

  std::size_t units() const noexcept { return sums_.size(); }
  bool keeps_squares() const noexcept { return squares_on_; }
  /// Slots the unit holds statistics for.
  std::size_t size(std::size_t unit) const { return sums_[check(unit, "size")].size(); }

  /// Adds one chunk pass. means: the unit's query heads (the KV head's group), row h = mean over the
  /// pass's `queries` queries of each slot's probability, for slots [0, means.slots): the `old_slots`
  /// the unit held before the chunk, then the chunk's own slots (slot old_slots + r was seen by
  /// queries - r of them, causally). mean_squares: the same for squared probabilities, required when
  /// squares are kept (ignored otherwise). Throws on a unit out of range or sizes that disagree.
  void add(std::size_t unit, const head_scores& means, const head_scores& mean_squares, std::size_t queries,
           std::size_t old_slots) {
    check(unit, "add");
    means.check("pith::running_scores::add");
    if (means.heads == 0 || old_slots != sums_[unit].size() || means.slots < old_slots)
      PITH_THROW(shape_error, "pith::running_scores::add: unit " + std::to_string(unit) + " holds " +
                                  std::to_string(sums_[unit].size()) + " slots, the pass names " +
                                  std::to_string(old_slots) + " old slots of " + std::to_string(means.slots) + " over " +
                                  std::to_string(means.heads) + " heads");
    if (squares_on_) {
      mean_squares.check("pith::running_scores::add");
      if (mean_squares.heads != means.heads || mean_squares.slots != means.slots)
        PITH_THROW(shape_error, "pith::running_scores::add: squares of " + std::to_string(mean_squares.heads) +
                                    " heads x " + std::to_string(mean_squares.slots) + " slots for means of " +
                                    std::to_string(means.heads) + " x " + std::to_string(means.slots));
    }
    const std::size_t total = means.slots;
    const float m = static_cast<float>(queries), group = static_cast<float>(means.heads);
    auto& sums = sums_[unit];
    auto& squares = squares_[unit];
    auto& counts = counts_[unit];
    sums.resize(total, 0.0f);
    squares.resize(total, 0.0f);
    counts.resize(total, 0.0f);
    for (std::size_t h = 0; h < means.heads; ++h) {
      const float* p = means.row(h);
      for (std::size_t j = 0; j < total; ++j) sums[j] += p[j] * m / group;
      if (squares_on_) {
        const float* p2 = mean_squares.row(h);
        for (std::size_t j = 0; j < total; ++j) squares[j] += p2[j] * m / group;
      }
    }
    for (std::size_t j = 0; j < total; ++j) counts[j] += j < old_slots ? m : m - static_cast<float>(j - old_slots);
  }

  std::span<const float> sums(std::size_t unit) const { return sums_[check(unit, "sums")]; }
  std::span<const float> squares(std::size_t unit) const { return squares_[check(unit, "squares")]; }
  std::span<const float> counts(std::size_t unit) const { return counts_[check(unit, "counts")]; }

  /// Keeps the statistics of slots keep[0] < keep[1] < ..., moved to 0, 1, ... (as pith::compact).
  void gather(std::size_t unit, std::span<const std::uint32_t> keep) {
    check(unit, "gather");
    gather_kept(sums_[unit], keep);
    gather_kept(squares_[unit], keep);
    gather_kept(counts_[unit], keep);
  }

  void clear() noexcept {
    for (auto* list : {&sums_, &squares_, &counts_})
      for (auto& unit : *list) unit.clear();
  }

 private:
  std::size_t check(std::size_t unit, const char* what) const {
    if (unit >= sums_.size())
      PITH_THROW(argument_error, std::string("pith::running_scores::") + what + ": unit " + std::to_string(unit) +
                                     " of " + std::to_string(sums_.size()));
    return unit;
  }

  bool squares_on_ = false;
  std::vector<std::vector<float>> sums_, squares_, counts_;  // [units][slots]
};

// ---------------------------------------------------------------------------------------------------
// Pooling

/// out[j] = (scores[j - kernel/2] + ... + scores[j + kernel/2]) / kernel with zeros beyond both ends
/// (SnapKV's average pooling; pith's citrus_pool). Sums run left to right. kernel must be odd (a
/// window centred on the slot); out must have scores.size() elements and must not alias scores.
inline void average_pool(std::span<const float> scores, std::size_t kernel, std::span<float> out) {
  if (kernel % 2 == 0)
    PITH_THROW(argument_error, "pith::average_pool: kernel " + std::to_string(kernel) +
                                   " must be odd (a window centred on the slot)");
  if (out.size() != scores.size())
    PITH_THROW(shape_error, "pith::average_pool: " + std::to_string(out.size()) + " outputs for " +
                                std::to_string(scores.size()) + " scores");
  const std::size_t n = scores.size(), half = kernel / 2;
  for (std::size_t j = 0; j < n; ++j) {
    float total = 0.0f;
    for (std::size_t t = j >= half ? j - half : 0; t <= std::min(n - 1, j + half); ++t) total += scores[t];
    out[j] = total / static_cast<float>(kernel);
  }
}

/// The same into a vector resized to scores.size().
inline void average_pool(std::span<const float> scores, std::size_t kernel, std::vector<float>& out) {
  out.resize(scores.size());
  average_pool(scores, kernel, std::span<float>(out));
}

/// out[j] = max(scores[j - kernel/2], ..., scores[j + kernel/2]) over the slots that exist (the window
/// clipped at both ends: PyTorch's max_pool1d with padding kernel/2, which pads with -inf; SnapKV's
/// max pooling). kernel must be odd; out must have scores.size() elements and must not alias scores.
inline void max_pool(std::span<const float> scores, std::size_t kernel, std::span<float> out) {
  if (kernel % 2 == 0)
    PITH_THROW(argument_error, "pith::max_pool: kernel " + std::to_string(kernel) +
                                   " must be odd (a window centred on the slot)");
  if (out.size() != scores.size())
    PITH_THROW(shape_error, "pith::max_pool: " + std::to_string(out.size()) + " outputs for " +
                                std::to_string(scores.size()) + " scores");
  const std::size_t n = scores.size(), half = kernel / 2;
  for (std::size_t j = 0; j < n; ++j) {
    float best = scores[j];
    for (std::size_t t = j >= half ? j - half : 0; t <= std::min(n - 1, j + half); ++t) best = std::max(best, scores[t]);
    out[j] = best;
  }
}

/// The same into a vector resized to scores.size().
inline void max_pool(std::span<const float> scores, std::size_t kernel, std::vector<float>& out) {
  out.resize(scores.size());
  max_pool(scores, kernel, std::span<float>(out));
}

/// average_pool or max_pool by `mode` (the SnapKV family's pooling, reader_options::snapkv_pool).
inline void pool_scores(std::span<const float> scores, std::size_t kernel, pool_mode mode, std::vector<float>& out) {
  if (mode == pool_mode::max)
    max_pool(scores, kernel, out);
  else
    average_pool(scores, kernel, out);
}

// ---------------------------------------------------------------------------------------------------
// Selection rules: each fills `keep` with the old slots [0, old_slots) to keep, sorted, at most
// `budget` of them; with old_slots <= budget every slot is kept, with budget 0 none. The newest chunk
// is not a candidate (keep_newest appends it). Ties: the higher score first, equal scores by the
// lower slot.

/// Scratch the rules reuse, so that a warm selection allocates nothing.
struct selection_scratch {
  std::vector<std::uint32_t> order, candidates, eligible, guarded;
  std::vector<float> values, mean, deviation, chunk_means;
  std::vector<std::uint8_t> gone;
  std::vector<std::uint64_t> draws;
  std::vector<double> anchor;
  std::vector<std::uint64_t> pooled;  // select_adakv: (head, slot) pairs competing for the layer's budget
};

namespace detail {
inline bool keep_all(std::size_t old_slots, std::size_t budget, std::vector<std::uint32_t>& keep) {
  if (old_slots > budget) return false;
  keep.resize(old_slots);
  std::iota(keep.begin(), keep.end(), 0u);
  return true;
}
inline void check_slots(std::size_t old_slots, const char* who) {
  if (old_slots > std::size_t{0xFFFFFFFFu})
    PITH_THROW(argument_error, std::string(who) + ": " + std::to_string(old_slots) + " slots exceed 32-bit slot indices");
}
}  // namespace detail

/// Appends the slots [old_slots, total) (the chunk just appended) to a selection of old slots.
inline void keep_newest(std::vector<std::uint32_t>& keep, std::size_t old_slots, std::size_t total) {
  if (total < old_slots)
    PITH_THROW(argument_error, "pith::keep_newest: " + std::to_string(total) + " slots in all, fewer than the " +
                                   std::to_string(old_slots) + " old ones");
  detail::check_slots(total, "pith::keep_newest");
  for (std::size_t j = old_slots; j < total; ++j) keep.push_back(static_cast<std::uint32_t>(j));
}

/// The k highest scores (pith::top_k). TOVA: the chunk's last query, mean over all heads, per layer.
inline void select_top_k(std::span<const float> scores, std::size_t budget, std::vector<std::uint32_t>& keep,
                         selection_scratch& scratch) {
  detail::check_slots(scores.size(), "pith::select_top_k");
  top_k(scores, budget, keep, scratch.order);
}

/// TOVA's rule (select_top_k over the last query's attention, mean over all query heads, per layer).
inline void select_tova(std::span<const float> scores, std::size_t budget, std::vector<std::uint32_t>& keep,
                        selection_scratch& scratch) {
  select_top_k(scores, budget, keep, scratch);
}

/// The k highest scores after pool_scores(scores, kernel, mode) (average pooling unless told). SnapKV:
/// the last w queries of the chunk, mean over the KV head's group, kernel 7 in pith (5 in SnapKV's code
/// and kvpress).
inline void select_pooled_top_k(std::span<const float> scores, std::size_t budget, std::size_t kernel,
                                std::vector<std::uint32_t>& keep, selection_scratch& scratch,
                                pool_mode mode = pool_mode::average) {
  detail::check_slots(scores.size(), "pith::select_pooled_top_k");
  pool_scores(scores, kernel, mode, scratch.values);
  top_k(scratch.values, budget, keep, scratch.order);
}

/// SnapKV's rule (select_pooled_top_k with the SnapKV kernel and pooling mode). Also question-aware
/// SnapKV (the scores are the instruction's attention) and PyramidKV (the budget is the layer's).
inline void select_snapkv(std::span<const float> scores, std::size_t budget, std::size_t kernel,
                          std::vector<std::uint32_t>& keep, selection_scratch& scratch,
                          pool_mode mode = pool_mode::average) {
  select_pooled_top_k(scores, budget, kernel, keep, scratch, mode);
}

/// ChunkKV's rule over per-slot scores: the old slots are cut into chunks of `chunk_length`
/// consecutive slots ([0, L), [L, 2L), ...; the last may be shorter), each scored by the mean of its
/// slots' scores (summed left to right, divided by its size); chunks are taken whole in rank order
/// (higher mean first, equal means: the lower chunk) while they fit in the budget; the first chunk
/// that does not fit gives its highest-scoring slots to fill the budget exactly (select_top_k's tie
/// rule) and the selection stops there. Exactly min(budget, old_slots) slots are kept.
inline void select_chunks(std::span<const float> scores, std::size_t budget, std::size_t chunk_length,
                          std::vector<std::uint32_t>& keep, selection_scratch& scratch) {
  if (chunk_length == 0) PITH_THROW(argument_error, "pith::select_chunks: chunk_length 0 (chunks of at least 1 slot)");
  const std::size_t n = scores.size();
  detail::check_slots(n, "pith::select_chunks");
  if (detail::keep_all(n, budget, keep)) return;
  const std::size_t chunks = (n + chunk_length - 1) / chunk_length;
  auto& means = scratch.chunk_means;
  means.resize(chunks);
  for (std::size_t c = 0; c < chunks; ++c) {
    const std::size_t first = c * chunk_length, last = std::min(n, first + chunk_length);
    float total = 0.0f;
    for (std::size_t j = first; j < last; ++j) total += scores[j];
    means[c] = total / static_cast<float>(last - first);
  }
  auto& order = scratch.eligible;
  order.resize(chunks);
  std::iota(order.begin(), order.end(), 0u);
  std::sort(order.begin(), order.end(),
            [&](std::uint32_t a, std::uint32_t b) { return means[a] > means[b] || (means[a] == means[b] && a < b); });
  keep.clear();
  std::size_t room = budget;
  for (const std::uint32_t c : order) {
    const std::size_t first = c * chunk_length, size = std::min(n, first + chunk_length) - first;
    if (size <= room) {
      for (std::size_t j = first; j < first + size; ++j) keep.push_back(static_cast<std::uint32_t>(j));
      room -= size;
    } else {
      // The part of this chunk that fits: its `room` highest-scoring slots.
      top_k(scores.subspan(first, size), room, scratch.candidates, scratch.order);
      for (const std::uint32_t j : scratch.candidates) keep.push_back(static_cast<std::uint32_t>(first + j));
      room = 0;
    }
    if (room == 0) break;
  }
  std::sort(keep.begin(), keep.end());
}

/// ChunkKV over SnapKV's scores: pool_scores(scores, kernel, mode), then select_chunks.
inline void select_chunkkv(std::span<const float> scores, std::size_t budget, std::size_t kernel, pool_mode mode,
                           std::size_t chunk_length, std::vector<std::uint32_t>& keep, selection_scratch& scratch) {
  detail::check_slots(scores.size(), "pith::select_chunkkv");
  pool_scores(scores, kernel, mode, scratch.values);  // select_chunks does not use scratch.values
  select_chunks(scratch.values, budget, chunk_length, keep, scratch);
}

/// CriticalKV's second-stage epsilon (kvpress's): a slot ranks by (score + epsilon) x its value weight,
/// so a slot the window ignores still ranks by what its value would add to the output.
inline constexpr float criticalkv_epsilon = 1e-4f;

/// CriticalKV's rule (docs/eviction.md): after pool_scores(scores, kernel, mode), the floor(budget / 2)
/// highest pooled scores are kept (the first stage), then the remaining budget - floor(budget / 2) slots
/// among the others by (pooled score + criticalkv_epsilon) x value_weights[j] (the second stage), both
/// with pith's tie rule (the higher first, equal values: the lower slot). value_weights[j]: the L1 norm
/// of slot j's value through the output projection, ||W_o^h v_j||_1, averaged over the KV head's group
/// of query heads (critical_value_weights).
inline void select_criticalkv(std::span<const float> scores, std::span<const float> value_weights, std::size_t budget,
                              std::size_t kernel, pool_mode mode, std::vector<std::uint32_t>& keep,
                              selection_scratch& scratch) {
  const std::size_t n = scores.size();
  if (value_weights.size() != n)
    PITH_THROW(shape_error, "pith::select_criticalkv: " + std::to_string(n) + " scores and " +
                                std::to_string(value_weights.size()) + " value weights (one of each per slot)");
  detail::check_slots(n, "pith::select_criticalkv");
  if (detail::keep_all(n, budget, keep)) return;
  pool_scores(scores, kernel, mode, scratch.values);
  top_k(scratch.values, budget / 2, keep, scratch.order);  // the first stage, in slot order
  auto& gone = scratch.gone;
  gone.assign(n, 0);
  for (const std::uint32_t j : keep) gone[j] = 1;
  auto& rescaled = scratch.mean;
  rescaled.resize(n);
  auto& rest = scratch.candidates;
  rest.clear();
  for (std::size_t j = 0; j < n; ++j) {
    rescaled[j] = (scratch.values[j] + criticalkv_epsilon) * value_weights[j];
    if (gone[j] == 0) rest.push_back(static_cast<std::uint32_t>(j));
  }
  const std::size_t second = budget - budget / 2;  // < rest.size() since n > budget
  std::partial_sort(rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(second), rest.end(),
                    [&](std::uint32_t a, std::uint32_t b) {
                      return rescaled[a] > rescaled[b] || (rescaled[a] == rescaled[b] && a < b);
                    });
  keep.insert(keep.end(), rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(second));
  std::sort(keep.begin(), keep.end());
}

/// CriticalKV's value weights of `rows` values from their projections through each query head of the
/// group: projected[h][j][hidden] = W_o^h v_j (W_o's columns of query head h times value j); out[j] = the
/// mean over the `heads` heads of sum_r |projected[h][j][r]|, summed in double, rounded to float.
inline void critical_value_weights(std::span<const float> projected, std::size_t heads, std::size_t rows,
                                   std::size_t hidden, std::span<float> out) {
  if (projected.size() != heads * rows * hidden || out.size() != rows || heads == 0)
    PITH_THROW(shape_error, "pith::critical_value_weights: " + std::to_string(projected.size()) + " projections for " +
                                std::to_string(heads) + " heads x " + std::to_string(rows) + " values x " +
                                std::to_string(hidden) + " outputs, " + std::to_string(out.size()) + " outputs");
  for (std::size_t j = 0; j < rows; ++j) {
    double total = 0.0;
    for (std::size_t h = 0; h < heads; ++h) {
      const float* y = projected.data() + (h * rows + j) * hidden;
      for (std::size_t r = 0; r < hidden; ++r) total += std::abs(static_cast<double>(y[r]));
    }
    out[j] = static_cast<float>(total / static_cast<double>(heads));
  }
}

/// ExpectedAttention's query statistics: per unit (a layer's query head) the count N of queries seen,
/// their sum and the sum of their outer products, in double ([dim] and [dim][dim], the upper triangle
/// accumulated and mirrored when read). Memory: units x (dim + dim^2 + 1) doubles; each query adds
/// dim (dim + 3) / 2 multiply-adds.
class query_moments {
 public:
  query_moments() = default;
  query_moments(std::size_t units, std::size_t dim)
      : dim_(dim), counts_(units, 0), sums_(units * dim, 0.0), products_(units * dim * dim, 0.0) {}

  std::size_t units() const noexcept { return counts_.size(); }
  std::size_t dim() const noexcept { return dim_; }
  std::size_t count(std::size_t unit) const { return counts_.at(unit); }
  std::size_t bytes() const noexcept {
    return counts_.size() * sizeof(std::size_t) + (sums_.size() + products_.size()) * sizeof(double);
  }

  /// Adds `rows` queries of `unit`: row i at q + i * stride, dim floats each.
  void add(std::size_t unit, const float* q, std::size_t rows, std::size_t stride) {
    if (unit >= counts_.size())
      PITH_THROW(argument_error, "pith::query_moments::add: unit " + std::to_string(unit) + " of " + std::to_string(counts_.size()));
    double* sum = sums_.data() + unit * dim_;
    double* products = products_.data() + unit * dim_ * dim_;
    for (std::size_t i = 0; i < rows; ++i) {
      const float* x = q + i * stride;
      for (std::size_t a = 0; a < dim_; ++a) {
        const double xa = x[a];
        sum[a] += xa;
        double* row = products + a * dim_;
        for (std::size_t b = a; b < dim_; ++b) row[b] += xa * static_cast<double>(x[b]);
      }
    }
    counts_[unit] += rows;
  }

  /// The mean [dim] and the covariance [dim][dim] (biased: the products / N - mean mean^T) of `unit`'s
  /// queries; zeros before any query.
  void moments(std::size_t unit, std::vector<double>& mean, std::vector<double>& covariance) const {
    const std::size_t n = count(unit);
    mean.assign(dim_, 0.0);
    covariance.assign(dim_ * dim_, 0.0);
    if (n == 0) return;
    const double inv = 1.0 / static_cast<double>(n);
    for (std::size_t a = 0; a < dim_; ++a) mean[a] = sums_[unit * dim_ + a] * inv;
    const double* products = products_.data() + unit * dim_ * dim_;
    for (std::size_t a = 0; a < dim_; ++a)
      for (std::size_t b = a; b < dim_; ++b)
        covariance[a * dim_ + b] = covariance[b * dim_ + a] = products[a * dim_ + b] * inv - mean[a] * mean[b];
  }

 private:
  std::size_t dim_ = 0;
  std::vector<std::size_t> counts_;
  std::vector<double> sums_, products_;
};

/// The RoPE rotation averaged over positions [first, first + count): per frequency i of `frequencies`
/// (a head's inverse frequencies), cos_out[i] = mean over p of cos(p f_i) and sin_out[i] the same of
/// sin, in double (angles p f_i formed in double from the float frequencies).
inline void average_rotation(std::span<const float> frequencies, std::size_t first, std::size_t count,
                             std::vector<double>& cos_out, std::vector<double>& sin_out) {
  if (count == 0) PITH_THROW(argument_error, "pith::average_rotation: no positions to average over");
  cos_out.assign(frequencies.size(), 0.0);
  sin_out.assign(frequencies.size(), 0.0);
  for (std::size_t i = 0; i < frequencies.size(); ++i) {
    double c = 0.0, s = 0.0;
    for (std::size_t p = first; p < first + count; ++p) {
      const double angle = static_cast<double>(p) * static_cast<double>(frequencies[i]);
      c += std::cos(angle);
      s += std::sin(angle);
    }
    cos_out[i] = c / static_cast<double>(count);
    sin_out[i] = s / static_cast<double>(count);
  }
}

/// R mean and R covariance R^T as floats, R the averaged rotation (average_rotation) acting on RoPE's
/// pairs of `layout` (half: (i, i + dim/2); interleaved: (2i, 2i + 1)) as RoPE rotates a pair:
/// (x, y) -> (c x - s y, s x + c y). mean [dim], covariance [dim][dim] (double), the outputs [dim] and
/// [dim][dim].
inline void rotate_moments(kernels::rope_layout layout, std::span<const double> cos, std::span<const double> sin,
                           std::span<const double> mean, std::span<const double> covariance, std::span<float> mean_out,
                           std::span<float> covariance_out) {
  const std::size_t d = mean.size(), half = d / 2;
  if (d % 2 != 0 || cos.size() != half || sin.size() != half || covariance.size() != d * d || mean_out.size() != d ||
      covariance_out.size() != d * d)
    PITH_THROW(shape_error, "pith::rotate_moments: a mean of " + std::to_string(d) + ", " + std::to_string(cos.size()) +
                                " rotation pairs, " + std::to_string(covariance.size()) + " covariance entries");
  // R is block-diagonal in the pairs: (R x)[a] = c x[a] + sign(a) s x[partner(a)], sign -1 for a pair's
  // first index and +1 for its second; R S R^T then takes four terms per entry (O(d^2), in double).
  std::vector<std::size_t> partner(d), frequency(d);
  std::vector<double> sign(d);
  for (std::size_t i = 0; i < half; ++i) {
    const std::size_t x = layout == kernels::rope_layout::half ? i : 2 * i;
    const std::size_t y = layout == kernels::rope_layout::half ? i + half : 2 * i + 1;
    partner[x] = y;
    partner[y] = x;
    frequency[x] = frequency[y] = i;
    sign[x] = -1.0;
    sign[y] = 1.0;
  }
  const auto rotated = [&](std::size_t a, double value, double other) {
    return cos[frequency[a]] * value + sign[a] * sin[frequency[a]] * other;
  };
  for (std::size_t a = 0; a < d; ++a) mean_out[a] = static_cast<float>(rotated(a, mean[a], mean[partner[a]]));
  std::vector<double> t(d * d);  // S R^T: t[e][b] = (R S[e, :])[b]
  for (std::size_t e = 0; e < d; ++e)
    for (std::size_t b = 0; b < d; ++b) t[e * d + b] = rotated(b, covariance[e * d + b], covariance[e * d + partner[b]]);
  for (std::size_t a = 0; a < d; ++a)
    for (std::size_t b = 0; b < d; ++b)
      covariance_out[a * d + b] = static_cast<float>(rotated(a, t[a * d + b], t[partner[a] * d + b]));
}

/// ExpectedAttention's scores of one KV head (docs/eviction.md) from each query head's logits
/// [heads][n] (k_j . R mu / sqrt(d) + k_j^T R S R^T k_j / (2 d)): a softmax per head over the slots
/// [sink, n), the mean over the heads, times value_norms[j] (||v_j||_2); in double, rounded to float.
/// The first `sink` slots score +infinity (always kept, as kvpress's sinks).
inline void expected_attention_scores(std::span<const float> logits, std::size_t heads, std::size_t sink,
                                      std::span<const float> value_norms, std::span<float> out) {
  const std::size_t n = value_norms.size();
  if (heads == 0 || logits.size() != heads * n || out.size() != n || sink > n)
    PITH_THROW(shape_error, "pith::expected_attention_scores: " + std::to_string(logits.size()) + " logits for " +
                                std::to_string(heads) + " heads x " + std::to_string(n) + " slots, " +
                                std::to_string(out.size()) + " outputs, sink " + std::to_string(sink));
  std::fill(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(sink), std::numeric_limits<float>::infinity());
  if (sink == n) return;
  std::vector<double> mean(n - sink, 0.0);
  for (std::size_t h = 0; h < heads; ++h) {
    const float* row = logits.data() + h * n;
    double largest = -std::numeric_limits<double>::infinity(), total = 0.0;
    for (std::size_t j = sink; j < n; ++j) largest = std::max(largest, static_cast<double>(row[j]));
    for (std::size_t j = sink; j < n; ++j) total += std::exp(static_cast<double>(row[j]) - largest);
    for (std::size_t j = sink; j < n; ++j) mean[j - sink] += std::exp(static_cast<double>(row[j]) - largest) / total;
  }
  for (std::size_t j = sink; j < n; ++j)
    out[j] = static_cast<float>(mean[j - sink] / static_cast<double>(heads) * static_cast<double>(value_norms[j]));
}

/// Uniformly random old slots: draws one rng.next() (pith::splitmix64) per old slot, in slot order, and keeps the
/// `budget` slots with the largest draws (equal draws: the lower slot), so every subset of that size
/// is equally likely. With old_slots <= budget every slot is kept and nothing is drawn.
inline void select_random(std::size_t old_slots, std::size_t budget, splitmix64& rng, std::vector<std::uint32_t>& keep,
                          selection_scratch& scratch) {
  detail::check_slots(old_slots, "pith::select_random");
  if (detail::keep_all(old_slots, budget, keep)) return;
  auto& draws = scratch.draws;
  draws.resize(old_slots);
  for (auto& draw : draws) draw = rng.next();
  auto& order = scratch.order;
  order.resize(old_slots);
  std::iota(order.begin(), order.end(), 0u);
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(budget), order.end(),
                    [&](std::uint32_t a, std::uint32_t b) { return draws[a] > draws[b] || (draws[a] == draws[b] && a < b); });
  keep.assign(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(budget));
  std::sort(keep.begin(), keep.end());
}

namespace detail {
inline std::size_t key_rows(std::span<const float> keys, std::size_t head_dim, const char* who) {
  if (head_dim == 0 || keys.size() % head_dim != 0)
    PITH_THROW(shape_error, std::string(who) + ": " + std::to_string(keys.size()) + " floats are not rows of head_dim " +
                                std::to_string(head_dim));
  return keys.size() / head_dim;
}
inline double norm(const float* x, std::size_t d) noexcept {
  double total = 0.0;
  for (std::size_t i = 0; i < d; ++i) total += static_cast<double>(x[i]) * x[i];
  return std::sqrt(total);
}
}  // namespace detail

/// KnormPress: out[j] = -||k_j||₂ (summed in double, rounded to float), keys [slots, head_dim]
/// row-major. A rotation leaves a norm unchanged, so keys before or after RoPE score alike (up to
/// rounding). out [keys.size() / head_dim].
inline void key_norm_scores(std::span<const float> keys, std::size_t head_dim, std::span<float> out) {
  const std::size_t n = detail::key_rows(keys, head_dim, "pith::key_norm_scores");
  if (out.size() != n)
    PITH_THROW(shape_error, "pith::key_norm_scores: " + std::to_string(out.size()) + " outputs for " + std::to_string(n) + " keys");
  for (std::size_t j = 0; j < n; ++j) out[j] = static_cast<float>(-detail::norm(keys.data() + j * head_dim, head_dim));
}

/// KeyDiff: out[j] = -cos(k_j, a), a = the mean over the slots of k_j / max(||k_j||, 1e-12) (the anchor),
/// cos(x, a) = x·a / (max(||x||, 1e-8) max(||a||, 1e-8)); computed in double, rounded to float. Keys
/// after RoPE (a rotation changes the directions: the anchor depends on where the keys sit). keys
/// [slots, head_dim] row-major; out [slots]; `anchor` is reused storage.
inline void keydiff_scores(std::span<const float> keys, std::size_t head_dim, std::span<float> out,
                           std::vector<double>& anchor) {
  const std::size_t n = detail::key_rows(keys, head_dim, "pith::keydiff_scores");
  if (out.size() != n)
    PITH_THROW(shape_error, "pith::keydiff_scores: " + std::to_string(out.size()) + " outputs for " + std::to_string(n) + " keys");
  anchor.assign(head_dim, 0.0);
  for (std::size_t j = 0; j < n; ++j) {
    const float* k = keys.data() + j * head_dim;
    const double scale = 1.0 / std::max(detail::norm(k, head_dim), 1e-12);
    for (std::size_t i = 0; i < head_dim; ++i) anchor[i] += k[i] * scale;
  }
  double anchor_norm = 0.0;
  for (auto& a : anchor) {
    a /= static_cast<double>(n);
    anchor_norm += a * a;
  }
  anchor_norm = std::max(std::sqrt(anchor_norm), 1e-8);
  for (std::size_t j = 0; j < n; ++j) {
    const float* k = keys.data() + j * head_dim;
    double dot = 0.0;
    for (std::size_t i = 0; i < head_dim; ++i) dot += k[i] * anchor[i];
    out[j] = static_cast<float>(-dot / (std::max(detail::norm(k, head_dim), 1e-8) * anchor_norm));
  }
}

/// KnormPress's rule: the `budget` old slots whose keys have the lowest L2 norm (the top of
/// key_norm_scores). keys [old_slots, head_dim] of one KV head.
inline void select_knorm(std::span<const float> keys, std::size_t head_dim, std::size_t budget,
                         std::vector<std::uint32_t>& keep, selection_scratch& scratch) {
  const std::size_t n = detail::key_rows(keys, head_dim, "pith::select_knorm");
  detail::check_slots(n, "pith::select_knorm");
  if (detail::keep_all(n, budget, keep)) return;
  scratch.values.resize(n);
  key_norm_scores(keys, head_dim, scratch.values);
  top_k(scratch.values, budget, keep, scratch.order);
}

/// KeyDiff's rule: the `budget` old slots whose keys are least similar to the anchor (the top of
/// keydiff_scores over the old slots). keys [old_slots, head_dim] of one KV head.
inline void select_keydiff(std::span<const float> keys, std::size_t head_dim, std::size_t budget,
                           std::vector<std::uint32_t>& keep, selection_scratch& scratch) {
  const std::size_t n = detail::key_rows(keys, head_dim, "pith::select_keydiff");
  detail::check_slots(n, "pith::select_keydiff");
  if (detail::keep_all(n, budget, keep)) return;
  scratch.values.resize(n);
  keydiff_scores(keys, head_dim, scratch.values, scratch.anchor);
  top_k(scratch.values, budget, keep, scratch.order);
}

/// ObservedAttention: out[j] = sums[j] / max(counts[j], 1), the attention a slot received, summed over
/// every query that saw it (running_scores::sums), divided by how many did (running_scores::counts).
inline void observed_attention_scores(std::span<const float> sums, std::span<const float> counts, std::span<float> out) {
  if (counts.size() != sums.size() || out.size() != sums.size())
    PITH_THROW(shape_error, "pith::observed_attention_scores: " + std::to_string(sums.size()) + " sums, " +
                                std::to_string(counts.size()) + " counts and " + std::to_string(out.size()) +
                                " outputs (one of each per slot)");
  for (std::size_t j = 0; j < sums.size(); ++j) out[j] = sums[j] / std::max(counts[j], 1.0f);
}

/// ObservedAttention's rule: the top `budget` of observed_attention_scores (no protected slots).
inline void select_observed_attention(std::span<const float> sums, std::span<const float> counts, std::size_t budget,
                                      std::vector<std::uint32_t>& keep, selection_scratch& scratch) {
  detail::check_slots(sums.size(), "pith::select_observed_attention");
  scratch.values.resize(sums.size());
  observed_attention_scores(sums, counts, scratch.values);
  top_k(scratch.values, budget, keep, scratch.order);
}

/// PyramidKV's budgets of `layers` layers around an average `budget` k: layer l keeps
/// k_l = k_max - l (k_max - k_min) / (layers - 1), k_min = k / beta, k_max = 2k - k_min (kvpress's
/// formula with C - w = k), rounded to the nearest integer with halves away from k (exact integer
/// arithmetic): layers l and layers - 1 - l round symmetrically, so the budgets sum to exactly
/// k x layers. One layer: [k]. beta >= 1 (1: every layer k). Throws argument_error for beta 0 or
/// sizes whose product overflows.
inline std::vector<std::size_t> pyramid_budgets(std::size_t budget, std::size_t layers, std::size_t beta = 20) {
  if (beta == 0) PITH_THROW(argument_error, "pith::pyramid_budgets: beta 0 (at least 1)");
  std::vector<std::size_t> out(layers, budget);
  if (layers < 2) return out;
  // k_l - k = k (beta - 1) (layers - 1 - 2l) / (beta (layers - 1)).
  const std::uint64_t limit = std::uint64_t{1} << 62;
  const std::uint64_t span = layers - 1, denominator = beta * span;
  if (budget > limit / beta || beta > limit / span || (beta > 1 && budget * (beta - 1) > limit / span))
    PITH_THROW(argument_error, "pith::pyramid_budgets: budget " + std::to_string(budget) + ", beta " + std::to_string(beta) +
                                   " and " + std::to_string(layers) + " layers overflow");
  for (std::size_t l = 0; l < layers; ++l) {
    const bool below = 2 * l > span;  // the deeper half gets less than k
    const std::uint64_t distance = below ? 2 * l - span : span - 2 * l;
    const std::uint64_t numerator = static_cast<std::uint64_t>(budget) * (beta - 1) * distance;
    const std::uint64_t step = (2 * numerator + denominator) / (2 * denominator);  // halves away from 0
    out[l] = below ? budget - static_cast<std::size_t>(step) : budget + static_cast<std::size_t>(step);
  }
  return out;
}

/// CItruS's cut (CN §A.1 step 4, §A.2): the top `budget` of the scores, optionally pooled over `pool`
/// (odd) neighbouring slots first (pith's citrus_pool; 1 is the official selection). The scores are
/// the chunk's or the instruction's attention as citrus_cut_scores says.
inline void select_citrus(std::span<const float> scores, std::size_t budget, std::size_t pool,
                          std::vector<std::uint32_t>& keep, selection_scratch& scratch) {
  if (pool > 1)
    select_pooled_top_k(scores, budget, pool, keep, scratch);
  else if (pool == 1)
    select_top_k(scores, budget, keep, scratch);
  else
    PITH_THROW(argument_error, "pith::select_citrus: pool 0 (1 is no pooling; pools are odd)");
}

/// Which of a CItruS variant's caches a cut is made on, and when.
enum class citrus_cut {
  reading,            // while reading, the cache the chunks are encoded with (C_lm for citrus-separate)
  instruction_cache,  // while reading, citrus-separate's instruction-aware cache C_ins
  final_cut,          // the last cut to the budget before the answer (C_ins for citrus-separate)
};

/// The scores a CItruS cut ranks by (CN §A.1, §A.2): citrus-cse reads by the chunk's attention,
/// citrus-shared by the instruction's; citrus-separate's C_lm by the chunk's and its C_ins by the
/// instruction's; every variant's final cut by the instruction's. Throws argument_error for a policy
/// that is not a CItruS variant or a cut it does not make.
inline std::span<const float> citrus_cut_scores(policy_kind variant, citrus_cut cut, std::span<const float> chunk_scores,
                                                std::span<const float> instruction_scores) {
  const bool citrus = variant == policy_kind::citrus_cse || variant == policy_kind::citrus_shared ||
                      variant == policy_kind::citrus_separate;
  if (!citrus || (cut == citrus_cut::instruction_cache && variant != policy_kind::citrus_separate))
    PITH_THROW(argument_error, std::string("pith::citrus_cut_scores: ") + policy_name(variant) +
                                   " makes no such CItruS cut");
  if (cut == citrus_cut::final_cut || cut == citrus_cut::instruction_cache) return instruction_scores;
  return variant == policy_kind::citrus_shared ? instruction_scores : chunk_scores;
}

/// StreamingLLM: the first min(sink, budget) old slots and the last budget - that many.
inline void select_streaming(std::size_t old_slots, std::size_t budget, std::size_t sink, std::vector<std::uint32_t>& keep) {
  detail::check_slots(old_slots, "pith::select_streaming");
  if (detail::keep_all(old_slots, budget, keep)) return;
  keep.clear();
  sink = std::min(sink, budget);
  for (std::size_t j = 0; j < sink; ++j) keep.push_back(static_cast<std::uint32_t>(j));
  for (std::size_t j = old_slots - (budget - sink); j < old_slots; ++j) keep.push_back(static_cast<std::uint32_t>(j));
}

/// The slots H2O and RoCo never evict: the first `sink` and the last `recent` old slots.
struct protected_slots {
  std::size_t sink = 0;
  std::size_t recent = 0;
};

/// EasyKV's protection for a budget: sink = min(sink, budget), recent = min(budget / 10, budget - sink).
inline protected_slots h2o_protection(std::size_t budget, std::size_t sink) noexcept {
  protected_slots p;
  p.sink = std::min(sink, budget);
  p.recent = std::min(budget / 10, budget - p.sink);
  return p;
}

namespace detail {
// The protected slots of n > budget old slots, and the unprotected candidates [sink, n - recent)
// in scratch.candidates; returns the room the candidates share (budget - protected).
inline std::size_t protect(std::size_t n, std::size_t budget, std::size_t sink, std::vector<std::uint32_t>& protected_list,
                           selection_scratch& scratch) {
  const protected_slots p = h2o_protection(budget, sink);
  protected_list.clear();
  for (std::size_t j = 0; j < p.sink; ++j) protected_list.push_back(static_cast<std::uint32_t>(j));
  for (std::size_t j = n - p.recent; j < n; ++j)
    if (j >= p.sink) protected_list.push_back(static_cast<std::uint32_t>(j));
  scratch.candidates.clear();
  for (std::size_t j = p.sink; j < n - p.recent; ++j) scratch.candidates.push_back(static_cast<std::uint32_t>(j));
  return budget - protected_list.size();
}
// keep holds indices into scratch.candidates: map them to slots, add the protected slots, sort.
inline void finish_protected(std::vector<std::uint32_t>& keep, const std::vector<std::uint32_t>& protected_list,
                             const selection_scratch& scratch) {
  for (auto& index : keep) index = scratch.candidates[index];
  keep.insert(keep.end(), protected_list.begin(), protected_list.end());
  std::sort(keep.begin(), keep.end());
}
}  // namespace detail

/// H2O: the protected slots (h2o_protection) plus the highest accumulated attention among the rest.
/// sums [old_slots]: running_scores::sums of the old slots.
inline void select_h2o(std::span<const float> sums, std::size_t budget, std::size_t sink, std::vector<std::uint32_t>& keep,
                       selection_scratch& scratch) {
  const std::size_t n = sums.size();
  detail::check_slots(n, "pith::select_h2o");
  if (detail::keep_all(n, budget, keep)) return;
  std::vector<std::uint32_t>& protected_list = scratch.guarded;
  const std::size_t room = detail::protect(n, budget, sink, protected_list, scratch);
  scratch.values.resize(scratch.candidates.size());
  for (std::size_t i = 0; i < scratch.candidates.size(); ++i) scratch.values[i] = sums[scratch.candidates[i]];
  top_k(scratch.values, room, keep, scratch.order);
  detail::finish_protected(keep, protected_list, scratch);
}

/// RoCo (EasyKV's rule, docs/eviction.md), generalised to evicting e = old_slots - budget slots at
/// once: with mean = S / c and std = sqrt(max(Q / c - mean², 0)) per slot (c at least 1), the
/// candidates are the max(room, e) unprotected slots with the lowest std (room = budget - sink -
/// recent; equal stds: the lower slot first); the e lowest means among them are evicted (equal means:
/// the higher slot first). sums, squares, counts [old_slots] (running_scores of the old slots).
inline void select_roco(std::span<const float> sums, std::span<const float> squares, std::span<const float> counts,
                        std::size_t budget, std::size_t sink, std::vector<std::uint32_t>& keep, selection_scratch& scratch) {
  const std::size_t n = sums.size();
  if (squares.size() != n || counts.size() != n)
    PITH_THROW(shape_error, "pith::select_roco: " + std::to_string(n) + " sums, " + std::to_string(squares.size()) +
                                " squares and " + std::to_string(counts.size()) + " counts (one of each per slot)");
  detail::check_slots(n, "pith::select_roco");
  if (detail::keep_all(n, budget, keep)) return;
  std::vector<std::uint32_t>& protected_list = scratch.guarded;
  const std::size_t room = detail::protect(n, budget, sink, protected_list, scratch);
  const std::size_t count = scratch.candidates.size(), evict_count = count - std::min(room, count);
  auto& mean = scratch.mean;
  auto& deviation = scratch.deviation;
  mean.resize(count);
  deviation.resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint32_t j = scratch.candidates[i];
    const float c = std::max(counts[j], 1.0f);
    mean[i] = sums[j] / c;
    deviation[i] = std::sqrt(std::max(squares[j] / c - mean[i] * mean[i], 0.0f));
  }
  auto& eligible = scratch.eligible;
  eligible.resize(count);
  std::iota(eligible.begin(), eligible.end(), 0u);
  const std::size_t eligible_count = std::min(count, std::max(room, evict_count));
  std::partial_sort(eligible.begin(), eligible.begin() + static_cast<std::ptrdiff_t>(eligible_count), eligible.end(),
                    [&](std::uint32_t a, std::uint32_t b) {
                      return deviation[a] < deviation[b] || (deviation[a] == deviation[b] && a < b);
                    });
  eligible.resize(eligible_count);
  std::sort(eligible.begin(), eligible.end(), [&](std::uint32_t a, std::uint32_t b) {
    return mean[a] < mean[b] || (mean[a] == mean[b] && a > b);  // ties: the newer slot goes first
  });
  scratch.gone.assign(count, 0);
  for (std::size_t i = 0; i < evict_count; ++i) scratch.gone[eligible[i]] = 1;
  keep.clear();
  for (std::size_t i = 0; i < count; ++i)
    if (!scratch.gone[i]) keep.push_back(static_cast<std::uint32_t>(i));
  detail::finish_protected(keep, protected_list, scratch);
}

// ---------------------------------------------------------------------------------------------------
// AdaKV: head-adaptive budgets over any per-head scorer

/// The slots AdaKV guarantees each KV head: floor(alpha x budget), the product taken in double (so
/// that the twin, tools/pith_eviction.py, computes the same integer). Throws argument_error naming
/// alpha when it is outside [0, 1] or not a number.
inline std::size_t adakv_floor(std::size_t budget, double alpha) {
  if (!(alpha >= 0.0 && alpha <= 1.0))
    PITH_THROW(argument_error, "pith::adakv_floor: adakv_alpha " + std::to_string(alpha) + " is outside [0, 1]");
  return static_cast<std::size_t>(std::floor(alpha * static_cast<double>(budget)));
}

/// The most old slots one of `kv_heads` heads can hold after an AdaKV cut of a layer whose average
/// budget is `budget`: the layer's kv_heads x budget minus the other heads' floors (every head keeps
/// at least its floor at every cut, docs/eviction.md "AdaKV"). What a head's cache rows must allow
/// besides the chunk. Throws argument_error for alpha outside [0, 1] and for sizes that overflow.
inline std::size_t adakv_head_budget(std::size_t budget, std::size_t kv_heads, double alpha) {
  const std::size_t guaranteed = adakv_floor(budget, alpha);
  if (kv_heads == 0) return 0;
  if (budget != 0 && kv_heads > std::numeric_limits<std::size_t>::max() / budget)
    PITH_THROW(argument_error, "pith::adakv_head_budget: " + std::to_string(kv_heads) + " heads x budget " +
                                   std::to_string(budget) + " overflows");
  return kv_heads * budget - (kv_heads - 1) * guaranteed;
}

/// AdaKV's rule (the spec's "AdaKV" row; Feng et al. 2024) over one layer's per-KV-head scores:
/// heads[g] holds head g's score of each of its old slots (heads may hold different counts n_g). If
/// the layer's old slots sum to at most H x budget (H = heads.size()), every slot is kept. Otherwise
/// each head first keeps its own top min(floor(alpha x budget), n_g) (adakv_floor; top_k's tie rule),
/// then the rest of the layer's H x budget goes to the highest remaining scores across all heads
/// (equal scores: the lower head, then the lower slot). Exactly H x budget slots are kept in all, and
/// head g keeps keep[g] (sorted old-slot indices; keep is resized to H). alpha = 1 is a top-budget per
/// head (every head the same count when they hold the same count); alpha = 0 is one top-(H x budget)
/// across the layer. The scores of different heads are compared directly: they must be on one scale
/// (attention probabilities, key norms). Throws argument_error for alpha outside [0, 1].
inline void select_adakv(std::span<const std::span<const float>> heads, std::size_t budget, double alpha,
                         std::vector<std::vector<std::uint32_t>>& keep, selection_scratch& scratch) {
  const std::size_t guaranteed = adakv_floor(budget, alpha), h_count = heads.size();
  keep.resize(h_count);
  std::size_t total = 0;
  for (const auto& head : heads) {
    detail::check_slots(head.size(), "pith::select_adakv");
    total += head.size();
  }
  if (h_count == 0) return;
  if (budget != 0 && h_count > std::numeric_limits<std::size_t>::max() / budget)
    PITH_THROW(argument_error, "pith::select_adakv: " + std::to_string(h_count) + " heads x budget overflows");
  const std::size_t layer_budget = h_count * budget;
  if (total <= layer_budget) {
    for (std::size_t g = 0; g < h_count; ++g) detail::keep_all(heads[g].size(), heads[g].size(), keep[g]);
    return;
  }
  // Each head's own floor, then every other slot competes for the rest.
  std::size_t room = layer_budget;
  auto& pooled = scratch.pooled;
  pooled.clear();
  for (std::size_t g = 0; g < h_count; ++g) {
    const std::span<const float> scores = heads[g];
    auto& order = scratch.order;
    order.resize(scores.size());
    std::iota(order.begin(), order.end(), 0u);
    const auto better = [&](std::uint32_t a, std::uint32_t b) {
      return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
    };
    std::sort(order.begin(), order.end(), better);
    const std::size_t own = std::min(guaranteed, scores.size());
    keep[g].assign(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(own));
    room -= own;
    for (std::size_t i = own; i < order.size(); ++i) pooled.push_back((std::uint64_t{g} << 32) | order[i]);
  }
  // room <= pooled.size(): the slots sum to more than the layer's budget.
  const auto score_of = [&](std::uint64_t unit) { return heads[unit >> 32][unit & 0xFFFFFFFFu]; };
  std::partial_sort(pooled.begin(), pooled.begin() + static_cast<std::ptrdiff_t>(room), pooled.end(),
                    [&](std::uint64_t a, std::uint64_t b) {
                      const float sa = score_of(a), sb = score_of(b);
                      return sa > sb || (sa == sb && a < b);  // a < b: the lower head, then the lower slot
                    });
  for (std::size_t i = 0; i < room; ++i)
    keep[pooled[i] >> 32].push_back(static_cast<std::uint32_t>(pooled[i] & 0xFFFFFFFFu));
  for (auto& k : keep) std::sort(k.begin(), k.end());
}

}  // namespace pith
