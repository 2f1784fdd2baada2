// SPDX-License-Identifier: MIT
// CItruS with a shared cache (notes/citrus_and_kv_eviction.md) over the embedding example's own
// engine and cache: read a document chunk by chunk; after each chunk the instruction's attention
// (computed in the chunk's own pass) scores the old slots, the top `budget` of every layer stay
// with the newest chunk, the cache is compacted and renumbered; before answering, one last
// instruction-scored cut to the budget. The same choices as pith::reader with policy
// citrus_shared and reindexed positions, so both keep the same document positions.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include <pith/cache/compaction.hpp>       // compact, gather_kept, rerotator
#include <pith/cache/eviction_blocks.hpp>  // select_citrus, keep_newest

#include "engine.hpp"

namespace embed {

struct citrus_options {
  std::size_t budget = 64;  // old slots kept per layer besides the newest chunk
  std::size_t chunk = 64;   // document tokens per pass
  std::size_t pool = 1;     // scores averaged over this many (odd) neighbouring slots before the top-k
};

/// Cache rows a reading needs: the kept slots, a chunk, and the chunk or the instruction and answer.
inline std::size_t citrus_capacity(const citrus_options& o, std::size_t instruction, std::size_t answer) {
  return o.budget + o.chunk + std::max(o.chunk, answer) + instruction + 1;
}

class citrus_reader {
 public:
  /// `e` must have room for citrus_capacity(...) slots and passes of chunk + instruction tokens.
  citrus_reader(engine& e, const config& c, citrus_options options, std::vector<std::int32_t> instruction)
      : e_(e), options_(options), instruction_(std::move(instruction)), positions_(c.layers),
        rotate_(c.head_dim, c.rope_theta, pith::kernels::rope_layout::half, e.cache().capacity()) {
    if (options_.budget == 0 || options_.chunk == 0 || options_.pool % 2 == 0 || instruction_.empty())
      throw pith::argument_error("citrus_reader: budget and chunk must be positive, pool odd, the instruction non-empty");
  }

  /// Reads the whole document, chunk by chunk (the last chunk may be shorter).
  void read(std::span<const std::int32_t> document) {
    for (std::size_t start = 0; start < document.size(); start += options_.chunk)
      read_chunk(document.subspan(start, std::min(options_.chunk, document.size() - start)));
  }

  /// The final cut, then the instruction and `steps` greedy tokens; `first_logits` (if not null)
  /// gets the row the first answer token comes from.
  std::vector<std::int32_t> answer(std::size_t steps, std::size_t vocab, std::vector<float>* first_logits = nullptr) {
    const std::size_t slots = e_.cache().size(0, 0);
    scores_.resize(positions_.size() * slots);
    e_.score(instruction_, scores_.data());
    evict(slots);
    std::vector<float> logits(vocab);
    e_.forward(instruction_, logits.data());
    if (first_logits != nullptr) *first_logits = logits;
    std::vector<std::int32_t> out;
    while (out.size() < steps) {
      out.push_back(static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin()));
      if (out.size() < steps) e_.forward(std::span(&out.back(), 1), logits.data());
    }
    return out;
  }

  /// Document positions of the slots layer `layer` holds, in slot order.
  const std::vector<std::int64_t>& document_positions(std::size_t layer) const { return positions_[layer]; }

 private:
  void read_chunk(std::span<const std::int32_t> chunk) {
    const std::size_t old = e_.cache().size(0, 0);
    const bool first = read_ == 0;
    if (first) {
      e_.forward(chunk, nullptr);
    } else {
      scores_.resize(positions_.size() * old);
      e_.forward(chunk, nullptr, instruction_, scores_.data());  // the instruction rides along and scores
    }
    for (auto& list : positions_)
      for (std::size_t i = 0; i < chunk.size(); ++i) list.push_back(static_cast<std::int64_t>(read_ + i));
    read_ += chunk.size();
    if (!first) evict(old);
  }

  // Keeps, per layer, the `budget` best of the `old` oldest slots (scores_ [layers, old]) and every
  // newer slot, compacts every KV head, then renumbers the slots 0..n-1 with their keys re-rotated.
  void evict(std::size_t old) {
    if (old <= options_.budget) return;
    kv_cache& cache = e_.cache();
    for (std::size_t l = 0; l < positions_.size(); ++l) {
      pith::select_citrus(std::span(scores_.data() + l * old, old), options_.budget, options_.pool, keep_, scratch_);
      pith::keep_newest(keep_, old, cache.size(l, 0));
      for (std::size_t g = 0; g < cache.kv_heads(); ++g) pith::compact(cache, l, g, keep_);
      pith::gather_kept(positions_[l], keep_);
    }
    for (std::size_t l = 0; l < cache.layers(); ++l)
      for (std::size_t g = 0; g < cache.kv_heads(); ++g) rotate_.renumber(cache, l, g);
    e_.set_position(cache.size(0, 0));  // the next token follows the last kept slot
  }

  engine& e_;
  citrus_options options_;
  std::vector<std::int32_t> instruction_;
  std::vector<std::vector<std::int64_t>> positions_;  // [layers][slot]: where each kept slot came from
  std::size_t read_ = 0;
  pith::rerotator rotate_;  // RoPE re-rotation of kept keys to their new positions
  std::vector<float> scores_;
  std::vector<std::uint32_t> keep_;
  pith::selection_scratch scratch_;
};

}  // namespace embed
