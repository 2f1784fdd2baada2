// SPDX-License-Identifier: MIT
// reader: feeds a document of any length through a model in chunks, evicting KV states with a policy
// so that memory does not grow with the document, then answers an instruction (docs/eviction.md).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "pith/cache/eviction.hpp"
#include "pith/core/error.hpp"
#include "pith/model/sampler.hpp"
#include "pith/model/transformer.hpp"

namespace pith {

enum class position_mode { reindexed, original };

struct reader_options {
  policy_kind policy = policy_kind::citrus_shared;
  std::size_t budget = 768;      // k: old states kept besides the newest chunk
  std::size_t chunk_size = 256;  // L
  position_mode positions = position_mode::reindexed;
  std::size_t max_answer_tokens = 256;  // cache room reserved for the answer
  std::size_t sink = 4;                 // protected first slots (streaming, h2o, roco)
  std::size_t snapkv_window = 32;
  std::size_t snapkv_kernel = 7;
  // CItruS policies only: the scores are averaged over this many (odd) neighbouring slots before the
  // top-k, as SnapKV does (1: off, the official CItruS). A state the instruction looks at then keeps
  // its neighbours, which multi-token answers need (docs/eviction.md, "Score pooling").
  std::size_t citrus_pool = 1;
  std::size_t max_context = 0;  // `full` only: cache rows (0: the model's max_position_embeddings)
  // What the reader's sessions compute on (session_options::executor); nullptr: the calling
  // thread's current executor (the process-wide pool unless an executor_scope is active).
  std::shared_ptr<pith::executor> executor = nullptr;
};

struct reader_stats {
  std::size_t tokens_read = 0;
  std::size_t chunks = 0;
  double reading_seconds = 0.0;   // forward passes and eviction
  double eviction_seconds = 0.0;  // selection, compaction and re-rotation only
  double instruction_seconds = 0.0;  // instruction-scoring passes (CItruS)
  std::size_t state_bytes = 0;    // bytes of session state (KV caches, activations) allocated
};

inline namespace PITH_ISA_NAMESPACE {  // holds sessions of this unit's ISA (simd/simd.hpp)

/// One document read by one thread at a time (with PITH_ASSERT active, a second thread entering
/// feed or answer meanwhile aborts); readers on several threads may share the weights.
class reader {
 public:
  using progress_callback = std::function<void(std::size_t tokens_done)>;

  /// Largest budget, chunk, answer length, context or instruction length a reader takes.
  static constexpr std::size_t max_reader_size = (std::size_t{1} << 32) - 1;

  reader(const model_weights& weights, reader_options options, std::vector<std::int32_t> instruction)
      : w_(weights), options_(options), instruction_(std::move(instruction)) {
    traits_ = traits_of(options_.policy, options_.snapkv_window);
    if (options_.chunk_size == 0) PITH_THROW(argument_error, "reader: chunk_size must be at least 1");
    // Each size below 2^32, so the sums that size the caches cannot wrap (and no cache that large fits).
    const auto bound = [](const char* name, std::size_t value) {
      if (value > max_reader_size)
        PITH_THROW(argument_error, std::string("reader: ") + name + " " + std::to_string(value) + " is above " +
                                       std::to_string(max_reader_size));
    };
    bound("budget", options_.budget);
    bound("chunk_size", options_.chunk_size);
    bound("max_answer_tokens", options_.max_answer_tokens);
    bound("max_context", options_.max_context);
    bound("instruction length", instruction_.size());
    if (options_.snapkv_kernel % 2 == 0 || options_.citrus_pool % 2 == 0)
      PITH_THROW(argument_error, "reader: snapkv_kernel and citrus_pool must be odd (a window centred on the slot)");
    if (traits_.evicts && options_.budget == 0)
      PITH_THROW(argument_error, "reader: a budget of 0 keeps no document state; use at least 1");
    if (traits_.instruction_scores && instruction_.empty())
      PITH_THROW(argument_error, std::string("reader: policy ") + policy_name(options_.policy) +
                                     " scores with the instruction, which is empty");
    for (const std::int32_t token : instruction_)
      if (token < 0 || static_cast<std::size_t>(token) >= weights.config.vocab_size)
        PITH_THROW(argument_error, "reader: instruction token " + std::to_string(token) + " is outside the vocabulary");
    session_options so;
    so.executor = options_.executor;
    so.max_chunk = options_.chunk_size + instruction_.size();  // the chunk and the instruction in one pass
    if (traits_.evicts)
      // Largest moment: k + L old states plus either the next chunk or the instruction and answer.
      so.max_context = options_.budget + options_.chunk_size +
                       std::max(options_.chunk_size, options_.max_answer_tokens) + instruction_.size() + 1;
    else
      so.max_context = options_.max_context != 0 ? options_.max_context : weights.config.max_position_embeddings;
    // Reindexed positions never pass k + L + max(L, |I| + answer) (the fused instruction reuses the
    // chunk's positions), whatever the document's length.
    const std::size_t model_context = weights.config.max_position_embeddings;
    const std::size_t positions = options_.budget + options_.chunk_size +
                                  std::max(options_.chunk_size, instruction_.size() + options_.max_answer_tokens);
    if (options_.positions == position_mode::reindexed && positions > model_context && traits_.evicts)
      PITH_THROW(argument_error, "reader: budget + chunk + max(chunk, instruction + answer) = " + std::to_string(positions) +
                                     " positions exceed the model's context of " + std::to_string(model_context));
    main_ = std::make_unique<session>(weights, so);
    if (traits_.separate_cache) instruction_session_ = std::make_unique<session>(weights, so);
    const auto& c = weights.config;
    document_positions_.resize(c.num_layers * c.num_kv_heads);
    if (traits_.separate_cache) instruction_document_positions_.resize(c.num_layers * c.num_kv_heads);
    if (traits_.accumulates) {
      sums_.resize(c.num_layers * c.num_kv_heads);
      squares_.resize(c.num_layers * c.num_kv_heads);
      counts_.resize(c.num_layers * c.num_kv_heads);
    }
  }

  reader(const model_weights&& weights, reader_options options, std::vector<std::int32_t> instruction) = delete;

  /// Replaces the policy's selection rule by a user-defined one; scores are the chunk's own attention
  /// (mean over its queries and all heads), selection per layer.
  template <eviction_policy P>
  void use_policy(P policy) {
    custom_ = [policy](const eviction_view& view, std::vector<std::uint32_t>& keep) mutable { policy.select(view, keep); };
    options_.policy = policy_kind::custom;
    const std::size_t window = options_.snapkv_window;
    traits_ = traits_of(policy_kind::custom, window);
  }

  const reader_options& options() const noexcept { return options_; }
  const reader_stats& stats() const noexcept { return stats_; }
  session& main_session() noexcept { return *main_; }

  /// Reads `tokens` (appended to what was fed before); whole chunks are processed at once, a
  /// partial chunk waits for more tokens or for answer().
  void feed(std::span<const std::int32_t> tokens, const progress_callback& progress = {}) {
    const auto in_use = main_->claim("pith::reader");
    for (const std::int32_t token : tokens)
      if (token < 0 || static_cast<std::size_t>(token) >= w_.config.vocab_size)
        PITH_THROW(argument_error, "reader::feed: token " + std::to_string(token) + " is outside the vocabulary");
    if (answered_) PITH_THROW(argument_error, "reader::feed: the document was already answered; make a new reader");
    pending_.insert(pending_.end(), tokens.begin(), tokens.end());
    std::size_t used = 0;
    while (pending_.size() - used >= options_.chunk_size) {
      read_chunk(std::span(pending_).subspan(used, options_.chunk_size));
      used += options_.chunk_size;
      if (progress) progress(stats_.tokens_read);
    }
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(used));
  }

  /// Reads the partial last chunk, if any, now (answer() does it too).
  void finish_document() {
    if (pending_.empty()) return;
    read_chunk(pending_);
    pending_.clear();
  }

  /// Reads any partial last chunk, makes the final cut, runs the instruction and generates up to
  /// `steps` tokens (stopping after `stop_token` if it is >= 0). on_token sees each token.
  std::vector<std::int32_t> answer(std::size_t steps, sampler& pick, const std::function<void(std::int32_t)>& on_token = {},
                                   std::int32_t stop_token = -1) {
    const auto in_use = main_->claim("pith::reader");
    if (answered_) PITH_THROW(argument_error, "reader::answer: already answered");
    finish_document();
    if (stats_.tokens_read == 0) PITH_THROW(argument_error, "reader::answer: the document is empty");
    if (steps > options_.max_answer_tokens)
      PITH_THROW(argument_error, "reader::answer: " + std::to_string(steps) + " steps exceed max_answer_tokens (" +
                                     std::to_string(options_.max_answer_tokens) + ")");
    answered_ = true;
    session& s = traits_.separate_cache ? *instruction_session_ : *main_;
    auto& positions = traits_.separate_cache ? instruction_document_positions_ : document_positions_;
    if (traits_.final_cut && !instruction_.empty()) {
      const auto start = std::chrono::steady_clock::now();
      instruction_scores(s);
      evict(s, positions, cache_size(s), scores_, false);
      stats_.instruction_seconds += seconds_since(start);
    }
    std::vector<float> logits(w_.config.vocab_size);
    if (!instruction_.empty()) {
      s.forward(instruction_, logits.data());
    } else {
      logits = last_logits_;
    }
    answer_logits_ = logits;
    std::vector<std::int32_t> out;
    for (std::size_t i = 0; i < steps; ++i) {
      const std::int32_t next = pick.sample(logits);
      out.push_back(next);
      if (on_token) on_token(next);
      if (next == stop_token || i + 1 == steps) break;
      s.forward(std::span(&out.back(), 1), logits.data());
    }
    stats_.state_bytes = state_bytes();
    return out;
  }

  /// The logits row the first answer token was sampled from ([vocab]; empty before answer()).
  const std::vector<float>& answer_logits() const noexcept { return answer_logits_; }

  /// Document positions of the slots (layer, kv head) holds, in slot order (tests, diagnostics).
  const std::vector<std::int64_t>& document_positions(std::size_t layer, std::size_t head, bool instruction_cache = false) const {
    const auto& all = instruction_cache ? instruction_document_positions_ : document_positions_;
    return all[layer * w_.config.num_kv_heads + head];
  }

  std::size_t state_bytes() const noexcept {
    return main_->bytes_allocated() + (instruction_session_ ? instruction_session_->bytes_allocated() : 0);
  }

 private:
  static double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  // Rows of the first cached layer (all cached layers hold the same count under these policies).
  std::size_t cache_size(const session& s) const noexcept {
    for (std::size_t l = 0; l < w_.config.num_layers; ++l)
      if (mixer_uses_kv_cache(w_.config.mixer(l))) return s.cache().size(l, 0);
    return 0;
  }

  // scores_[layer][slot] (per layer) or [layer][kv head][slot] (per head) from the session's records.
  void aggregate(const session& s, std::size_t slots, bool per_head, std::vector<float>& out) const {
    const auto& c = w_.config;
    const std::size_t group = c.num_heads / c.num_kv_heads, units = per_head ? c.num_kv_heads : 1;
    out.assign(c.num_layers * units * slots, 0.0f);
    for (std::size_t l = 0; l < c.num_layers; ++l) {
      if (!mixer_uses_kv_cache(c.mixer(l))) continue;
      for (std::size_t h = 0; h < c.num_heads; ++h) {
        const std::size_t unit = per_head ? h / group : 0;
        const float weight = 1.0f / static_cast<float>(per_head ? group : c.num_heads);
        float* target = out.data() + (l * units + unit) * slots;
        const float* source = s.scores(l, h);
        for (std::size_t j = 0; j < slots; ++j) target[j] += source[j] * weight;
      }
    }
  }

  // The instruction's attention over s's cache, mean over heads and instruction queries (scores_).
  // The pass leaves s exactly as it was: cache rows, position and the recurrent mixers' states.
  void instruction_scores(session& s) {
    const std::size_t slots = cache_size(s);
    s.mark(scoring_mark_);
    s.set_scoring({true, 0, false});
    s.forward(instruction_, nullptr);  // only the attention is wanted: no logits
    s.set_scoring({});
    aggregate(s, slots, false, scores_);
    s.rollback(scoring_mark_);
  }

  void read_chunk(std::span<const std::int32_t> chunk) {
    const auto start = std::chrono::steady_clock::now();
    const auto& c = w_.config;
    const std::size_t old_slots = cache_size(*main_);
    const bool first = stats_.chunks == 0;
    if (!traits_.evicts && main_->position() + chunk.size() > main_->cache().capacity(first_cached_layer()))
      PITH_THROW(argument_error, "reader: policy full keeps every state and the document exceeds its " +
                                     std::to_string(main_->cache().capacity(first_cached_layer())) +
                                     " rows (raise max_context)");
    // Instruction-aware scores over the old cache, before the chunk (CItruS shared / separate).
    std::vector<float> instruction_cut;
    std::size_t instruction_old = 0;
    // citrus-shared: the instruction rides along in the chunk's own forward (weights read once).
    const bool fused = !first && traits_.instruction_scores && !traits_.separate_cache && main_->supports_side_queries();
    if (fused) {
      main_->set_scoring({true, 0, false});
      last_logits_.resize(c.vocab_size);
      main_->forward_with_side(chunk, instruction_, last_logits_.data());
      main_->set_scoring({});
      aggregate(*main_, old_slots, false, instruction_cut);
    } else if (!first && traits_.instruction_scores) {
      const auto t0 = std::chrono::steady_clock::now();
      session& scored = traits_.separate_cache ? *instruction_session_ : *main_;
      instruction_old = cache_size(scored);
      instruction_scores(scored);
      instruction_cut = scores_;
      stats_.instruction_seconds += seconds_since(t0);
    }
    // The chunk itself, scoring with its own attention where the policy needs it.
    const bool chunk_scored = !first && traits_.chunk_scores;
    if (!fused) {
      main_->set_scoring({chunk_scored || traits_.accumulates, traits_.last_queries, traits_.squares});
      last_logits_.resize(c.vocab_size);
      main_->forward(chunk, last_logits_.data());
      main_->set_scoring({});
    }
    append_document_positions(chunk.size());
    if (traits_.accumulates) accumulate(old_slots, chunk.size());
    const auto t1 = std::chrono::steady_clock::now();
    if (!first && traits_.evicts) {
      std::vector<float> chunk_scores;
      if (chunk_scored) aggregate(*main_, old_slots, traits_.per_head, chunk_scores);
      if (traits_.separate_cache) {
        evict(*main_, document_positions_, old_slots, chunk_scores, false);
        copy_chunk_to_instruction_cache(chunk.size());
        evict(*instruction_session_, instruction_document_positions_, instruction_old, instruction_cut, false);
      } else {
        evict(*main_, document_positions_, old_slots, traits_.instruction_scores ? instruction_cut : chunk_scores,
              traits_.per_head);
      }
    } else if (traits_.separate_cache) {
      copy_chunk_to_instruction_cache(chunk.size());
    }
    stats_.eviction_seconds += seconds_since(t1);
    stats_.tokens_read += chunk.size();
    ++stats_.chunks;
    stats_.reading_seconds += seconds_since(start);
  }

  std::size_t first_cached_layer() const noexcept {
    for (std::size_t l = 0; l < w_.config.num_layers; ++l)
      if (mixer_uses_kv_cache(w_.config.mixer(l))) return l;
    return 0;
  }

  // Layers without a KV cache have no slots: their lists stay empty (they would grow with the document).
  void append_document_positions(std::size_t count) {
    const auto& c = w_.config;
    for (std::size_t l = 0; l < c.num_layers; ++l) {
      if (!mixer_uses_kv_cache(c.mixer(l))) continue;
      for (std::size_t g = 0; g < c.num_kv_heads; ++g)
        for (std::size_t i = 0; i < count; ++i)
          document_positions_[l * c.num_kv_heads + g].push_back(static_cast<std::int64_t>(document_read_ + i));
    }
    document_read_ += count;
  }

  // H2O / RoCo running statistics: every slot adds what this chunk's queries gave it.
  void accumulate(std::size_t old_slots, std::size_t chunk) {
    const auto& c = w_.config;
    const std::size_t group = c.num_heads / c.num_kv_heads, total = old_slots + chunk;
    for (std::size_t l = 0; l < c.num_layers; ++l) {
      if (!mixer_uses_kv_cache(c.mixer(l))) continue;
      const float m = static_cast<float>(main_->scored_queries(l));
      for (std::size_t g = 0; g < c.num_kv_heads; ++g) {
        const std::size_t unit = l * c.num_kv_heads + g;
        sums_[unit].resize(total, 0.0f);
        squares_[unit].resize(total, 0.0f);
        counts_[unit].resize(total, 0.0f);
        for (std::size_t h = g * group; h < (g + 1) * group; ++h) {
          const float* p = main_->scores(l, h);
          const float* p2 = main_->score_squares(l, h);
          for (std::size_t j = 0; j < total; ++j) {
            sums_[unit][j] += p[j] * m / static_cast<float>(group);
            if (traits_.squares) squares_[unit][j] += p2[j] * m / static_cast<float>(group);
          }
        }
        for (std::size_t j = 0; j < total; ++j)
          counts_[unit][j] += j < old_slots ? m : m - static_cast<float>(j - old_slots);
      }
    }
  }

  void copy_chunk_to_instruction_cache(std::size_t count) {
    const auto& c = w_.config;
    kv_cache& from = main_->cache();
    kv_cache& to = instruction_session_->cache();
    const std::size_t d = c.head_dim;
    for (std::size_t l = 0; l < c.num_layers; ++l) {
      if (!mixer_uses_kv_cache(c.mixer(l))) continue;
      for (std::size_t g = 0; g < c.num_kv_heads; ++g) {
        const std::size_t source = from.size(l, g) - count, target = to.size(l, g);
        std::copy_n(from.keys(l, g) + source * d, count * d, to.keys(l, g) + target * d);
        std::copy_n(from.values(l, g) + source * d, count * d, to.values(l, g) + target * d);
        std::copy_n(from.positions(l, g) + source, count, to.positions(l, g) + target);
        to.set_size(l, g, target + count);
        auto& list = instruction_document_positions_[l * c.num_kv_heads + g];
        const auto& main_list = document_positions_[l * c.num_kv_heads + g];
        list.insert(list.end(), main_list.end() - static_cast<std::ptrdiff_t>(count), main_list.end());
      }
    }
    // Layers without a cache carry the document in their running state: the instruction cache takes it.
    instruction_session_->copy_recurrent_states(*main_);
    instruction_session_->set_position(main_->position());
  }

  // Keeps, per layer (or per KV head), the budget's worth of the `old_slots` oldest slots chosen by
  // the policy plus every newer slot; compacts and, in reindexed mode, renumbers and re-rotates.
  void evict(session& s, std::vector<std::vector<std::int64_t>>& positions, std::size_t old_slots,
             const std::vector<float>& scores, bool per_head) {
    const auto& c = w_.config;
    const std::size_t k = options_.budget;
    const std::size_t units = per_head ? c.num_kv_heads : 1;
    bool evicted = false;
    for (std::size_t l = 0; l < c.num_layers; ++l) {
      if (!mixer_uses_kv_cache(c.mixer(l))) continue;
      const std::size_t total = s.cache().size(l, 0);
      if (old_slots <= k) continue;
      evicted = true;
      for (std::size_t unit = 0; unit < units; ++unit) {
        eviction_view view;
        view.layer = l;
        view.head = unit;
        view.old_slots = old_slots;
        view.budget = k;
        if (!scores.empty()) view.scores = std::span(scores).subspan((l * units + unit) * old_slots, old_slots);
        view.document_positions = std::span(positions[l * c.num_kv_heads + unit]).first(old_slots);
        select(view, keep_);
        check_selection(keep_, view, policy_name(options_.policy));
        for (std::size_t j = old_slots; j < total; ++j) keep_.push_back(static_cast<std::uint32_t>(j));
        const std::size_t first_head = per_head ? unit : 0, last_head = per_head ? unit + 1 : c.num_kv_heads;
        for (std::size_t g = first_head; g < last_head; ++g) {
          s.cache().compact(l, g, keep_);
          gather(positions[l * c.num_kv_heads + g], keep_);
          if (traits_.accumulates && &s == main_.get()) {
            gather(sums_[l * c.num_kv_heads + g], keep_);
            gather(squares_[l * c.num_kv_heads + g], keep_);
            gather(counts_[l * c.num_kv_heads + g], keep_);
          }
        }
      }
    }
    if (evicted && options_.positions == position_mode::reindexed) {
      std::size_t size = 0;
      for (std::size_t l = 0; l < c.num_layers; ++l) {
        if (!mixer_uses_kv_cache(c.mixer(l))) continue;
        for (std::size_t g = 0; g < c.num_kv_heads; ++g) {
          size = s.cache().size(l, g);
          renumbered_.resize(size);
          std::iota(renumbered_.begin(), renumbered_.end(), std::int64_t{0});
          s.rerotate(l, g, renumbered_);
        }
      }
      s.set_position(size);
    }
  }

  template <class T>
  static void gather(std::vector<T>& values, const std::vector<std::uint32_t>& keep) {
    for (std::size_t i = 0; i < keep.size(); ++i) values[i] = values[keep[i]];
    values.resize(keep.size());
  }

  void select(const eviction_view& view, std::vector<std::uint32_t>& keep) {
    const std::size_t n = view.old_slots, k = view.budget;
    switch (options_.policy) {
      case policy_kind::custom: custom_(view, keep); return;
      case policy_kind::streaming: {
        keep.clear();
        const std::size_t sink = std::min(options_.sink, k);
        for (std::size_t j = 0; j < sink; ++j) keep.push_back(static_cast<std::uint32_t>(j));
        for (std::size_t j = n - (k - sink); j < n; ++j) keep.push_back(static_cast<std::uint32_t>(j));
        return;
      }
      case policy_kind::snapkv:
        pool_scores(view.scores, options_.snapkv_kernel);
        top_k(pooled_, k, keep, order_);
        return;
      case policy_kind::citrus_cse:
      case policy_kind::citrus_shared:
      case policy_kind::citrus_separate:
        if (options_.citrus_pool > 1) {
          pool_scores(view.scores, options_.citrus_pool);
          top_k(pooled_, k, keep, order_);
        } else {
          top_k(view.scores, k, keep, order_);
        }
        return;
      case policy_kind::h2o:
      case policy_kind::roco: {
        const std::size_t unit = view.layer * w_.config.num_kv_heads + view.head;
        const std::size_t sink = std::min(options_.sink, k), recent = std::min(k / 10, k - sink);
        keep.clear();
        std::vector<std::uint32_t> protected_slots;
        for (std::size_t j = 0; j < sink; ++j) protected_slots.push_back(static_cast<std::uint32_t>(j));
        for (std::size_t j = n - recent; j < n; ++j)
          if (j >= sink) protected_slots.push_back(static_cast<std::uint32_t>(j));
        candidates_.clear();
        for (std::size_t j = sink; j < n - recent; ++j) candidates_.push_back(static_cast<std::uint32_t>(j));
        const std::size_t room = k - protected_slots.size();
        if (options_.policy == policy_kind::h2o) {
          pooled_.resize(candidates_.size());
          for (std::size_t i = 0; i < candidates_.size(); ++i) pooled_[i] = sums_[unit][candidates_[i]];
          top_k(pooled_, room, keep, order_);
        } else {
          roco_keep(unit, room, keep);
        }
        for (auto& index : keep) index = candidates_[index];
        keep.insert(keep.end(), protected_slots.begin(), protected_slots.end());
        std::sort(keep.begin(), keep.end());
        return;
      }
      default: top_k(view.scores, k, keep, order_); return;
    }
  }

  // pooled_ = scores averaged over `kernel` neighbouring slots (zero padding, divided by the kernel size).
  void pool_scores(std::span<const float> scores, std::size_t kernel) {
    const std::size_t n = scores.size(), half = kernel / 2;
    pooled_.assign(n, 0.0f);
    for (std::size_t j = 0; j < n; ++j) {
      float total = 0.0f;
      for (std::size_t t = j >= half ? j - half : 0; t <= std::min(n - 1, j + half); ++t) total += scores[t];
      pooled_[j] = total / static_cast<float>(kernel);
    }
  }

  // RoCo (EasyKV's rule, docs/eviction.md), generalised to evicting e slots at once: the candidates are
  // the max(room, e) unprotected slots with the lowest std (room = budget - sink - recent; EasyKV's
  // stride is e), ties to the lower slot; the e lowest means among them go.
  void roco_keep(std::size_t unit, std::size_t room, std::vector<std::uint32_t>& keep) {
    const std::size_t count = candidates_.size(), evict_count = count - std::min(room, count);
    std::vector<float> mean(count), deviation(count);
    for (std::size_t i = 0; i < count; ++i) {
      const std::uint32_t j = candidates_[i];
      const float c = std::max(counts_[unit][j], 1.0f);
      mean[i] = sums_[unit][j] / c;
      deviation[i] = std::sqrt(std::max(squares_[unit][j] / c - mean[i] * mean[i], 0.0f));
    }
    std::vector<std::uint32_t> eligible(count);
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
    std::vector<bool> gone(count, false);
    for (std::size_t i = 0; i < evict_count; ++i) gone[eligible[i]] = true;
    keep.clear();
    for (std::size_t i = 0; i < count; ++i)
      if (!gone[i]) keep.push_back(static_cast<std::uint32_t>(i));
  }

  const model_weights& w_;
  reader_options options_;
  policy_traits traits_;
  std::vector<std::int32_t> instruction_;
  std::unique_ptr<session> main_;
  std::unique_ptr<session> instruction_session_;  // citrus-separate's instruction-aware cache
  std::function<void(const eviction_view&, std::vector<std::uint32_t>&)> custom_;
  std::vector<std::int32_t> pending_;
  std::vector<float> last_logits_;
  std::vector<float> answer_logits_;  // [vocab]: what the first answer token was sampled from
  std::vector<float> scores_;
  session_mark scoring_mark_;  // what an instruction-scoring pass returns its session to
  std::vector<std::vector<std::int64_t>> document_positions_;              // [layers * kv_heads][slot]
  std::vector<std::vector<std::int64_t>> instruction_document_positions_;  // citrus-separate's C_ins
  std::vector<std::vector<float>> sums_, squares_, counts_;                // [layers * kv_heads][slot]
  std::size_t document_read_ = 0;
  bool answered_ = false;
  reader_stats stats_;
  std::vector<std::uint32_t> keep_, order_, candidates_;
  std::vector<float> pooled_;
  std::vector<std::int64_t> renumbered_;
};

}  // namespace PITH_ISA_NAMESPACE

}  // namespace pith
