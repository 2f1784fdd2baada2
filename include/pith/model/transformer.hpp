// SPDX-License-Identifier: MIT
// session: the state of one generation over shared model_weights, and the forward pass of a chunk.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "pith/cache/compaction.hpp"
#include "pith/cache/kv_cache.hpp"
#include "pith/core/aligned_buffer.hpp"
#include "pith/core/checked.hpp"
#include "pith/core/error.hpp"
#include "pith/core/exclusive_use.hpp"
#include "pith/core/parallel.hpp"
#include "pith/kernels/activations.hpp"
#include "pith/kernels/typed_matmul.hpp"
#include "pith/kernels/rms_norm.hpp"
#include "pith/kernels/rope.hpp"
#include "pith/kernels/softmax_importance.hpp"
#include "pith/model/mixers.hpp"
#include "pith/model/residual.hpp"
#include "pith/model/weights.hpp"

namespace pith {

/// Memory one layer's token mixer holds for a session.
struct layer_memory {
  mixer_kind mixer;
  std::size_t kv_cache_bytes;  // grows with the context up to the capacity (0 for fixed-state mixers)
  std::size_t state_bytes;     // fixed-size recurrent state (0 for cached mixers)
  dtype kv_type = dtype::f32;  // what the KV cache stores keys and values as
  std::size_t window = 0;      // a sliding-window layer's window W (0: full attention); its cache is fixed
  // The bytes of the rows the KV heads hold now (keys, values, positions), summed over the heads: below
  // kv_cache_bytes, and under head-adaptive eviction (AdaKV) the heads' counts differ.
  std::size_t kv_cache_used_bytes = 0;
};

/// What attention-based eviction needs from a forward pass (cache/eviction.hpp): for every cached
/// layer and query head, the mean over the scoring queries of each cached key's softmax probability
/// (normalised over every key the query sees), taken from the chunk's own attention at no extra pass,
/// or from an extra importance-only pass over the chunk's last `last_queries` queries.
struct attention_scoring {
  bool enabled = false;
  std::size_t last_queries = 0;  // 0: every query of the chunk
  bool squares = false;          // also the mean of squared probabilities
  // Each scoring query's probabilities times the number of keys it sees (FinchPress's normalisation of
  // the causal mask, docs/eviction.md); not with squares.
  bool count_weighted = false;
};

struct session_options {
  std::size_t max_context = 0;  // KV rows per head; 0: the model's max_position_embeddings
  std::size_t max_chunk = 512;  // most tokens one forward call takes
  // What the KV cache stores keys and values as: f32 (exact), f16, bf16 or q8_0 (cache/kv_type.hpp;
  // q8_0 needs head_dim % 32 == 0). Anything else is refused when the session is built.
  dtype kv_type = dtype::f32;
  // What the session's kernels run on (its calls enter an executor_scope, core/parallel.hpp), shared
  // by the session; the attention is split into min(heads, concurrency) parts. nullptr: the calling
  // thread's current executor (the process-wide pool unless an executor_scope is active).
  std::shared_ptr<pith::executor> executor = nullptr;
  // Per layer: the KV rows of a full-attention layer's cache (a missing or 0 entry: max_context; at
  // most max_context). A reader whose layers keep budgets of their own (PyramidKV) sizes each layer to
  // its budget. Sliding-window and recurrent layers ignore it.
  std::vector<std::size_t> layer_context = {};
};

inline namespace PITH_ISA_NAMESPACE {  // calls the kernels of this unit's ISA (simd/simd.hpp)

class session;

/// A point a session can return to (session::mark, session::rollback): undoing a pass whose tokens
/// must leave no trace, such as an instruction that only scores the cache.
class session_mark {
 private:
  friend class session;
  std::vector<std::size_t> rows_;  // [layers * kv_heads] cache rows
  std::size_t position_ = 0;
  std::vector<std::vector<approximate_state>> approximate_;  // [layers][kv_heads]
  std::vector<std::vector<self_gated_state>> self_gated_;    // [layers][heads]
};

/// Everything that changes while a model reads and writes: the KV cache and the activation
/// buffers, allocated once. The weights are only read, so sessions on several threads may share
/// them; a session itself belongs to one thread at a time (builds with PITH_ASSERT active abort
/// when a second thread enters it during a call, see claim()).
class session {
 public:
  /// Keeps a reference to `weights`, which must outlive the session.
  explicit session(const model_weights& weights, session_options options = {})
      : w_(weights), c_(weights.config), options_(std::move(options)) {
    const executor_scope on(options_.executor.get());
    if (options_.max_context == 0) options_.max_context = c_.max_position_embeddings;
    if (options_.max_chunk == 0) PITH_THROW(argument_error, "session: max_chunk must be at least 1");
    const std::size_t t = options_.max_chunk;
    std::vector<std::size_t> capacities(c_.num_layers, 0);
    approximate_.resize(c_.num_layers);
    self_gated_.resize(c_.num_layers);
    for (std::size_t l = 0; l < c_.num_layers; ++l) {
      const mixer_kind mixer = c_.mixer(l);
      // A sliding-window layer keeps its last W rows between calls, and a chunk more while one runs:
      // fixed memory, whatever the context (a window wider than max_context: max_context rows, as a
      // full-attention layer).
      std::size_t rows = options_.max_context;
      if (l < options_.layer_context.size() && options_.layer_context[l] != 0) {
        if (options_.layer_context[l] > options_.max_context)
          PITH_THROW(argument_error, "session: layer_context[" + std::to_string(l) + "] = " +
                                         std::to_string(options_.layer_context[l]) + " rows exceed max_context " +
                                         std::to_string(options_.max_context));
        rows = options_.layer_context[l];
      }
      if (mixer_uses_kv_cache(mixer)) capacities[l] = window_rows(l) != 0 ? window_rows(l) + t : rows;
      if (mixer == mixer_kind::approximate)
        for (std::size_t h = 0; h < c_.num_kv_heads; ++h)
          approximate_[l].emplace_back(c_.head_dim, c_.approximate_outer, c_.approximate_per_term);
      if (mixer == mixer_kind::non_approximate)
        for (std::size_t h = 0; h < c_.num_heads; ++h) self_gated_[l].emplace_back(c_.head_dim);
    }
    check_kv_type(options_.kv_type, c_.head_dim, "session_options::kv_type");
    cache_ = kv_cache(c_.num_kv_heads, c_.head_dim, std::move(capacities), options_.kv_type);
    residual_ = residual_stream(c_, t, residual_queries_of(w_));
    clear_states();
    // Every size below is a product of validated dimensions and the caller's max_chunk/max_context:
    // checked_size throws rather than wrap. The mlp mixer's buffers exist only if a layer uses it.
    const std::size_t mixer_mlp = c_.uses_mixer(mixer_kind::mlp) ? c_.mixer_mlp_intermediate_size : 0;
    x_.resize(checked_size("session: activations", {t, c_.hidden_size}));
    delta_.resize(x_.size());
    mixer_up_.resize(checked_size("session: activations", {t, mixer_mlp}));
    normed_.resize(x_.size());
    q_.resize(checked_size("session: activations", {t, c_.num_heads, c_.head_dim}));
    k_.resize(checked_size("session: activations", {t, c_.num_kv_heads, c_.head_dim}));
    v_.resize(k_.size());
    attn_.resize(q_.size());
    gate_.resize(checked_size("session: activations", {t, std::max(c_.intermediate_size, mixer_mlp)}));
    up_.resize(checked_size("session: activations", {t, c_.intermediate_size}));
    // RoPE: the full-attention layers' frequencies (rescaled by rope_scaling, or divided by a GGUF's
    // rope_freqs), and the sliding-window layers' own base where the family has one (Gemma 3).
    const std::vector<float> frequencies = rope_frequencies(c_.rope_theta, c_.head_dim, c_.rope_scale);
    inv_freq_.resize(c_.head_dim / 2);
    std::copy(frequencies.begin(), frequencies.end(), inv_freq_.begin());
    if (!w_.rope_frequency_divisors.empty()) {
      if (w_.rope_frequency_divisors.size() != inv_freq_.size())
        PITH_THROW(shape_error, "session: " + std::to_string(w_.rope_frequency_divisors.size()) +
                                    " RoPE frequency divisors for head_dim " + std::to_string(c_.head_dim));
      for (std::size_t i = 0; i < inv_freq_.size(); ++i) inv_freq_[i] /= w_.rope_frequency_divisors[i];
    }
    cos_.resize(checked_size("session: rotations", {t, c_.head_dim / 2}));
    sin_.resize(cos_.size());
    rerotator_ = rerotator(c_.head_dim, inv_freq_.span(), c_.rope, options_.max_context);
    std::size_t widest = options_.max_context;
    for (std::size_t l = 0; l < c_.num_layers; ++l) {
      widest = std::max(widest, cache_.capacity(l));
      if (c_.uses_windowed_rope(l) && windowed_inv_freq_.empty()) {
        const std::vector<float> local = rope_frequencies(c_.rope_theta_windowed, c_.head_dim, {});
        windowed_inv_freq_.resize(local.size());
        std::copy(local.begin(), local.end(), windowed_inv_freq_.begin());
        windowed_cos_.resize(cos_.size());
        windowed_sin_.resize(cos_.size());
        windowed_rerotator_ = rerotator(c_.head_dim, windowed_inv_freq_.span(), c_.rope, options_.max_context);
      }
    }
    std::size_t largest_window = 0;
    for (std::size_t l = 0; l < c_.num_layers; ++l) largest_window = std::max(largest_window, window_rows(l));
    window_keep_.reserve(largest_window);  // trim_windows allocates nothing
    parts_ = std::max<std::size_t>(1, std::min(c_.num_heads, num_threads()));
    scratch_size_ = kernels::softmax_importance_scratch_size(t, widest, c_.head_dim);
    scratch_.resize(checked_size("session: attention scratch", {parts_, scratch_size_}));
    scored_queries_.assign(c_.num_layers, 0);
    before_.assign(c_.num_kv_heads, 0);  // cached_attention fills it: a forward allocates nothing
  }
  /// A temporary's weights would dangle (session s(load_model(path)) does not compile).
  session(const model_weights&& weights, session_options options = {}) = delete;

  /// Claims the session for the calling thread until the returned scope ends. forward and the
  /// other calls that change the session claim it themselves; with PITH_ASSERT active, a second
  /// thread entering meanwhile aborts with a message. A caller driving one session through a
  /// sequence of calls (a reader) may hold a claim across them.
  [[nodiscard]] exclusive_use_scope claim(const char* owner = "pith::session") noexcept { return {in_use_, owner}; }

  /// Scores recorded by later forward calls (see attention_scoring); disabled by default. The first
  /// call that enables them allocates the score arrays ([layers, heads, max_context] floats, and as
  /// many again for squares), which stay for the session's life.
  void set_scoring(attention_scoring scoring) {
    const auto in_use = claim();
    const std::size_t size = checked_size("session: scores", {c_.num_layers, c_.num_heads, options_.max_context});
    if (scoring.enabled && scores_.size() != size) scores_.resize(size);
    if (scoring.enabled && scoring.squares && score_squares_.size() != size) score_squares_.resize(size);
    if (scoring.count_weighted && scoring.squares)
      PITH_THROW(argument_error, "session::set_scoring: count_weighted scores come without squares");
    if (scoring.enabled && scoring.count_weighted && query_weights_.size() < c_.num_kv_heads * options_.max_chunk)
      query_weights_.resize(c_.num_kv_heads * options_.max_chunk);  // a scoring pass's queries never exceed max_chunk
    scoring_ = scoring;
  }
  /// Query head `head` of layer `layer`: mean over the scoring queries of the last forward call of
  /// each cached key's probability, for the slots present after that call ([0, cache size)).
  /// nullptr before scoring was first enabled (score_squares: with squares).
  const float* scores(std::size_t layer, std::size_t head) const noexcept {
    return scores_.empty() ? nullptr : scores_.data() + (layer * c_.num_heads + head) * options_.max_context;
  }
  const float* score_squares(std::size_t layer, std::size_t head) const noexcept {
    return score_squares_.empty() ? nullptr
                                  : score_squares_.data() + (layer * c_.num_heads + head) * options_.max_context;
  }
  /// Called by later forward calls, per full-attention layer with RoPE, with that layer's queries of
  /// the call's tokens before RoPE (after the projection, bias and per-head norm): (layer, queries,
  /// rows, stride), row i at queries + i * stride, every query head's head_dim floats in a row (side
  /// tokens excluded). An empty function stops the calls.
  using query_observer = std::function<void(std::size_t layer, const float* queries, std::size_t rows, std::size_t stride)>;
  void set_query_observer(query_observer observer) {
    const auto in_use = claim();
    query_observer_ = std::move(observer);
  }
  /// How many queries the last scored forward call used in `layer`.
  std::size_t scored_queries(std::size_t layer) const noexcept { return scored_queries_[layer]; }

  /// The position the next token takes (reindexed eviction renumbers the cache and moves it back).
  void set_position(std::size_t position) noexcept {
    const auto in_use = claim();
    position_ = position;
  }
  /// Records what rollback() returns to: the rows of every cached layer, the next position and a copy
  /// of every recurrent mixer state (approximate, non_approximate). `m` is reused: after its first use
  /// with this session, marking allocates nothing.
  /// Between mark() and rollback() the sliding-window layers keep every row they receive (their
  /// cache holds a chunk more than the window), so that rollback() finds the rows of the mark.
  void mark(session_mark& m) {
    marked_ = true;
    m.rows_.resize(c_.num_layers * c_.num_kv_heads);
    for (std::size_t l = 0; l < c_.num_layers; ++l)
      for (std::size_t h = 0; h < c_.num_kv_heads; ++h) m.rows_[l * c_.num_kv_heads + h] = cache_.size(l, h);
    m.position_ = position_;
    copy_states(approximate_, m.approximate_);
    copy_states(self_gated_, m.self_gated_);
  }
  /// Undoes every forward call since mark(m): drops the cache rows appended since, restores the
  /// position and the recurrent states. The rows present at mark() must not have been compacted or
  /// re-rotated in between (a scoring pass, not an eviction, lies between the two).
  void rollback(const session_mark& m) {
    const auto in_use = claim();
    if (m.rows_.size() != c_.num_layers * c_.num_kv_heads)
      PITH_THROW(argument_error, "session::rollback: the mark was not taken on a session of this model");
    for (std::size_t l = 0; l < c_.num_layers; ++l)
      for (std::size_t h = 0; h < c_.num_kv_heads; ++h) {
        const std::size_t rows = m.rows_[l * c_.num_kv_heads + h];
        if (cache_.size(l, h) > rows) cache_.set_size(l, h, rows);
      }
    position_ = m.position_;
    copy_states(m.approximate_, approximate_);
    copy_states(m.self_gated_, self_gated_);
    marked_ = false;
  }
  /// Takes `other`'s recurrent mixer states (a session of the same model): a second cache that
  /// receives another session's chunks (citrus-separate) must also receive what its recurrent layers
  /// accumulated, since those layers have no rows to copy.
  void copy_recurrent_states(const session& other) {
    const auto in_use = claim();
    if (&other.c_ != &c_ && (other.c_.num_layers != c_.num_layers || other.c_.head_dim != c_.head_dim))
      PITH_THROW(argument_error, "session::copy_recurrent_states: the sessions run different models");
    copy_states(other.approximate_, approximate_);
    copy_states(other.self_gated_, self_gated_);
  }
  /// Re-rotates the keys of (layer, kv head) so that slot i holds RoPE position new_positions[i]
  /// (new_positions has one entry per row the head holds). Rotations compose: rotating by new - old
  /// equals rotating the unrotated key to new. The session's rerotator (cache/compaction.hpp) keeps a
  /// table of the deltas compaction and renumbering produce, [-max_context, -1], built on the first
  /// call ([max_context, head_dim] floats, counted by bytes_allocated); other deltas are computed.
  void rerotate(std::size_t layer, std::size_t head, std::span<const std::int64_t> new_positions) {
    const auto in_use = claim();
    const executor_scope on(options_.executor.get());
    (c_.uses_windowed_rope(layer) ? windowed_rerotator_ : rerotator_).rerotate(cache_, layer, head, new_positions);
  }

  /// Rows a sliding-window layer keeps between calls: its window W when W <= max_context, else 0 (as
  /// for full-attention layers: nothing is dropped and forward refuses what passes max_context rows).
  std::size_t window_rows(std::size_t layer) const noexcept {
    const std::size_t w = c_.sliding_window(layer);
    return w <= options_.max_context ? w : 0;
  }
  /// Drops the oldest rows of every sliding-window layer beyond window_rows (forward calls do it after
  /// each chunk; a caller that appends rows itself, such as a reader copying a chunk, calls it).
  void trim_windows() {
    if (marked_) return;
    for (std::size_t l = 0; l < c_.num_layers; ++l) {
      const std::size_t keep = window_rows(l);
      if (keep == 0 || !mixer_uses_kv_cache(c_.mixer(l))) continue;
      for (std::size_t h = 0; h < c_.num_kv_heads; ++h) {
        const std::size_t size = cache_.size(l, h);
        if (size <= keep) continue;
        window_keep_.resize(keep);
        std::iota(window_keep_.begin(), window_keep_.end(), static_cast<std::uint32_t>(size - keep));
        cache_.compact(l, h, window_keep_);
      }
    }
  }

  const model_config& config() const noexcept { return c_; }
  const model_weights& weights() const noexcept { return w_; }
  kv_cache& cache() noexcept { return cache_; }
  const kv_cache& cache() const noexcept { return cache_; }
  /// Position the next token will take.
  std::size_t position() const noexcept { return position_; }
  void reset() noexcept {
    const auto in_use = claim();
    cache_.clear();
    clear_states();
    position_ = 0;
    marked_ = false;
  }

  /// Per layer: the mixer and the memory it holds (KV cache or fixed-size state).
  std::vector<layer_memory> memory_report() const {
    std::vector<layer_memory> report;
    for (std::size_t l = 0; l < c_.num_layers; ++l) {
      std::size_t state = 0;
      for (const auto& a : approximate_[l]) state += a.bytes();
      for (const auto& g : self_gated_[l]) state += g.bytes();
      report.push_back({c_.mixer(l), cache_.layer_bytes_allocated(l), state, cache_.kv_type(), c_.sliding_window(l),
                        cache_.layer_bytes_used(l)});
    }
    return report;
  }

  /// Bytes of this session's own state: KV cache, recurrent states, residual stream, activations,
  /// scratch, and the score arrays and rotation table once they exist.
  std::size_t bytes_allocated() const noexcept {
    const std::size_t floats = x_.size() + normed_.size() + q_.size() + k_.size() + v_.size() + attn_.size() +
                               gate_.size() + up_.size() + delta_.size() + mixer_up_.size() + inv_freq_.size() +
                               cos_.size() + sin_.size() + scratch_.size() + scores_.size() + score_squares_.size() +
                               windowed_inv_freq_.size() + windowed_cos_.size() + windowed_sin_.size();
    const std::size_t lists = combined_.capacity() * sizeof(std::int32_t) + side_mask_.capacity() +
                              (scored_queries_.capacity() + before_.capacity()) * sizeof(std::size_t) +
                              query_weights_.capacity() * sizeof(float);
    std::size_t states = 0;
    for (std::size_t l = 0; l < c_.num_layers; ++l) {
      for (const auto& a : approximate_[l]) states += a.bytes();
      for (const auto& g : self_gated_[l]) states += g.bytes();
    }
    return cache_.bytes_allocated() + residual_.bytes_allocated() + states + floats * sizeof(float) + lists +
           rerotator_.bytes_allocated() + windowed_rerotator_.bytes_allocated() + window_keep_.capacity() * sizeof(std::uint32_t);
  }

  /// Whether forward_with_side can run here: side tokens must leave no trace, so no layer may keep a
  /// recurrent state (approximate, non_approximate).
  bool supports_side_queries() const noexcept {
    for (std::size_t l = 0; l < c_.num_layers; ++l)
      if (c_.mixer(l) == mixer_kind::approximate || c_.mixer(l) == mixer_kind::non_approximate) return false;
    return true;
  }

  /// Runs `chunk` like forward() and, in the same pass (every weight read once), `side` tokens that
  /// see the cache as it was before the chunk plus themselves (causally), at the positions the chunk
  /// starts from, and leave nothing behind. With scoring enabled, the scores come from the side
  /// tokens' attention over the old slots only (CItruS's instruction pass, notes §A.2). Logits: the
  /// chunk's last token. chunk.size() + side.size() must fit max_chunk.
  void forward_with_side(std::span<const std::int32_t> chunk, std::span<const std::int32_t> side, float* logits) {
    const auto in_use = claim();
    const executor_scope on(options_.executor.get());
    if (side.empty()) return forward(chunk, logits);
    if (chunk.empty()) PITH_THROW(argument_error, "session::forward_with_side: no chunk tokens");
    if (!supports_side_queries())
      PITH_THROW(argument_error, "session::forward_with_side: a layer keeps a recurrent state");
    if (chunk.size() + side.size() > options_.max_chunk)
      PITH_THROW(argument_error, "session::forward_with_side: chunk and side tokens exceed max_chunk");
    combined_.assign(chunk.begin(), chunk.end());
    combined_.insert(combined_.end(), side.begin(), side.end());
    check_input(combined_);
    {
      struct side_reset {
        std::size_t& side;
        ~side_reset() { side = 0; }
      } const reset{side_};
      side_ = side.size();
      forward_chunk(combined_, nullptr, false);
    }
    // Drop the side tokens' keys and values; the chunk's stay.
    for (std::size_t l = 0; l < c_.num_layers; ++l)
      for (std::size_t h = 0; h < c_.num_kv_heads; ++h)
        if (mixer_uses_kv_cache(c_.mixer(l))) cache_.set_size(l, h, cache_.size(l, h) - side.size());
    position_ -= side.size();
    trim_windows();
    if (logits != nullptr) {
      const float* final_rows = residual_.output();
      const std::size_t hidden = c_.hidden_size, row = chunk.size() - 1;
      kernels::rms_norm(final_rows + row * hidden, hidden, w_.final_norm.data(), 1, hidden, c_.rms_norm_eps,
                        normed_.data(), hidden);
      kernels::matmul_transposed(normed_.data(), 1, hidden, w_.lm_head(), logits, c_.vocab_size);
    }
  }

  /// Runs `tokens` at the next positions, appending their keys and values to the cache. Writes the
  /// logits of the last token to logits[0, vocab) or, with all_logits, of every token to
  /// logits[t * vocab, (t + 1) * vocab). Longer inputs than max_chunk are split into chunks. The
  /// whole input is checked first (token ids, room in the KV cache, fixed-stream lengths): on an
  /// argument_error the session is unchanged. An empty input is an error.
  void forward(std::span<const std::int32_t> tokens, float* logits, bool all_logits = false) {
    const auto in_use = claim();
    const executor_scope on(options_.executor.get());
    check_input(tokens);
    for (std::size_t start = 0; start < tokens.size(); start += options_.max_chunk) {
      const auto chunk = tokens.subspan(start, std::min(options_.max_chunk, tokens.size() - start));
      const bool last_chunk = start + chunk.size() == tokens.size();
      float* out = logits == nullptr ? nullptr : all_logits ? logits + start * c_.vocab_size : logits;
      forward_chunk(chunk, (all_logits || last_chunk) ? out : nullptr, all_logits);
    }
  }

 private:
  // Everything forward needs of `tokens` before it changes anything.
  void check_input(std::span<const std::int32_t> tokens) const {
    if (tokens.empty()) PITH_THROW(argument_error, "session::forward: no tokens");
    for (const std::int32_t token : tokens)
      if (token < 0 || static_cast<std::size_t>(token) >= c_.vocab_size)
        PITH_THROW(argument_error, "session::forward: token id " + std::to_string(token) + " is outside the vocabulary [0, " +
                                       std::to_string(c_.vocab_size) + ")");
    for (std::size_t l = 0; l < c_.num_layers; ++l) {
      // A sliding-window layer drops its old rows after every chunk: only a marked session fills it.
      const bool trimmed = window_rows(l) != 0 && !marked_;
      // Heads may hold different counts (head-adaptive eviction): the fullest one decides.
      std::size_t used = 0;
      if (mixer_uses_kv_cache(c_.mixer(l)))
        for (std::size_t h = 0; h < c_.num_kv_heads; ++h) used = std::max(used, cache_.size(l, h));
      if (mixer_uses_kv_cache(c_.mixer(l)) && !trimmed && used + tokens.size() > cache_.capacity(l))
        PITH_THROW(argument_error, "session::forward: the KV cache of layer " + std::to_string(l) + " holds " +
                                       std::to_string(cache_.capacity(l)) + " rows per head and " +
                                       std::to_string(used) + " are in use in its fullest head; " +
                                       std::to_string(tokens.size()) + " more do not fit");
      const std::size_t fixed = w_.layers[l].fixed_length;
      if (fixed > 0 && position_ + tokens.size() > fixed)
        PITH_THROW(argument_error, "session::forward: layer " + std::to_string(l) + " (" + mixer_name(c_.mixer(l)) +
                                       ") has a fixed stream of " + std::to_string(fixed) +
                                       " positions; position " + std::to_string(position_ + tokens.size() - 1) +
                                       " is beyond it");
    }
  }

  // Runs checked tokens (check_input): after the checks nothing here throws but std::bad_alloc.
  void forward_chunk(std::span<const std::int32_t> tokens, float* logits, bool all_logits) {
    const std::size_t t = tokens.size(), hidden = c_.hidden_size, half = c_.head_dim / 2;
    for (std::size_t i = 0; i < t; ++i) {
      kernels::embedding_row(w_.token_embedding, static_cast<std::size_t>(tokens[i]), x_.data() + i * hidden);
      if (c_.embedding_scale != 1.0f)
        for (std::size_t j = 0; j < hidden; ++j) x_[i * hidden + j] *= c_.embedding_scale;
      // Side tokens (forward_with_side) start again from the chunk's first position.
      const std::size_t offset = i < t - side_ ? i : i - (t - side_);
      kernels::rope_angles(static_cast<double>(position_ + offset), inv_freq_.data(), c_.head_dim, cos_.data() + i * half,
                           sin_.data() + i * half);
      if (!windowed_inv_freq_.empty())
        kernels::rope_angles(static_cast<double>(position_ + offset), windowed_inv_freq_.data(), c_.head_dim,
                             windowed_cos_.data() + i * half, windowed_sin_.data() + i * half);
    }
    residual_.begin(x_.data(), t);
    for (std::size_t l = 0; l < c_.num_layers; ++l) layer(l, tokens);
    position_ += t;
    if (side_ == 0) trim_windows();
    if (logits == nullptr) return;
    const float* final_rows = residual_.output();
    const std::size_t first = all_logits ? 0 : t - 1, rows = t - first;
    kernels::rms_norm(final_rows + first * hidden, hidden, w_.final_norm.data(), rows, hidden, c_.rms_norm_eps,
                      normed_.data(), hidden);
    kernels::matmul_transposed(normed_.data(), rows, hidden, w_.lm_head(), logits, c_.vocab_size);
  }

  // One decoder layer: mixer then MLP, each reading its input from the residual stream.
  void layer(std::size_t l, std::span<const std::int32_t> tokens) {
    const layer_weights& lw = w_.layers[l];
    const std::size_t t = tokens.size(), hidden = c_.hidden_size, f = c_.intermediate_size;
    const float* x = residual_.attn_input(l);
    kernels::rms_norm(x, hidden, lw.attn_norm.data(), t, hidden, c_.rms_norm_eps, normed_.data(), hidden);
    token_mixer(l, tokens);
    // Gemma 3 normalises each sub-layer's output before the residual add.
    if (c_.sandwich_norms)
      kernels::rms_norm(delta_.data(), hidden, lw.post_attn_norm.data(), t, hidden, c_.rms_norm_eps, delta_.data(), hidden);
    residual_.add_attn(l, delta_.data());
    const float* y = residual_.mlp_input(l);
    kernels::rms_norm(y, hidden, lw.mlp_norm.data(), t, hidden, c_.rms_norm_eps, normed_.data(), hidden);
    kernels::matmul_transposed(normed_.data(), t, hidden, lw.w_gate, gate_.data(), f);
    kernels::matmul_transposed(normed_.data(), t, hidden, lw.w_up, up_.data(), f);
    if (c_.activation == ffn_activation::gelu_tanh)
      gelu_tanh_mul(gate_.data(), up_.data(), t * f);
    else
      kernels::silu_mul(gate_.data(), up_.data(), t * f);
    kernels::matmul_transposed(gate_.data(), t, f, lw.w_down, delta_.data(), hidden);
    if (c_.sandwich_norms)
      kernels::rms_norm(delta_.data(), hidden, lw.post_mlp_norm.data(), t, hidden, c_.rms_norm_eps, delta_.data(), hidden);
    residual_.add_mlp(l, delta_.data());
  }

  // The layer's token mixer on normed_ ([t, hidden]); writes its contribution to delta_ ([t, hidden]).
  void token_mixer(std::size_t l, std::span<const std::int32_t> tokens) {
    const layer_weights& lw = w_.layers[l];
    const std::size_t t = tokens.size(), hidden = c_.hidden_size, qs = c_.q_size(), kvs = c_.kv_size();
    const std::size_t d = c_.head_dim, half = d / 2, group = c_.num_heads / c_.num_kv_heads;
    const mixer_kind mixer = c_.mixer(l);
    if (mixer == mixer_kind::mlp) {
      const std::size_t m = c_.mixer_mlp_intermediate_size;
      kernels::matmul_transposed(normed_.data(), t, hidden, lw.mixer_gate, gate_.data(), m);
      kernels::matmul_transposed(normed_.data(), t, hidden, lw.mixer_up, mixer_up_.data(), m);
      kernels::silu_mul(gate_.data(), mixer_up_.data(), t * m);
      kernels::matmul_transposed(gate_.data(), t, m, lw.mixer_down, delta_.data(), hidden);
      return;
    }
    // Queries and keys: from this layer's input, the raw token embeddings, or the fixed stream.
    if (mixer == mixer_kind::rnd_emb_qk || mixer == mixer_kind::fixed_seq_qk) {
      for (std::size_t i = 0; i < t; ++i) {
        const std::size_t p = position_ + (i < t - side_ ? i : i - (t - side_));
        std::copy_n(lw.fixed_q.data() + p * qs, qs, q_.data() + i * qs);
        std::copy_n(lw.fixed_k.data() + p * kvs, kvs, k_.data() + i * kvs);
      }
    } else {
      const float* source = normed_.data();
      if (mixer == mixer_kind::static_emb_qk) {
        for (std::size_t i = 0; i < t; ++i)
          kernels::embedding_row(w_.token_embedding, static_cast<std::size_t>(tokens[i]), delta_.data() + i * hidden);
        source = delta_.data();
      }
      kernels::matmul_transposed(source, t, hidden, lw.wq, q_.data(), qs);
      kernels::matmul_transposed(source, t, hidden, lw.wk, k_.data(), kvs);
    }
    kernels::matmul_transposed(normed_.data(), t, hidden, lw.wv, v_.data(), kvs);
    // Qwen2's biases (before RoPE: the bias is rotated with the projection).
    auto add_bias = [t](float* rows, const aligned_buffer<float>& bias) {
      const std::size_t n = bias.size();
      for (std::size_t i = 0; i < t; ++i)
        for (std::size_t j = 0; j < n; ++j) rows[i * n + j] += bias[j];
    };
    const bool projected_qk = mixer != mixer_kind::rnd_emb_qk && mixer != mixer_kind::fixed_seq_qk;
    if (!lw.q_bias.empty() && projected_qk) {
      add_bias(q_.data(), lw.q_bias);
      add_bias(k_.data(), lw.k_bias);
    }
    if (!lw.v_bias.empty()) add_bias(v_.data(), lw.v_bias);
    // Qwen3 / Gemma 3: every head of q and k through its RMSNorm, before RoPE.
    if (!lw.q_norm.empty() && projected_qk) {
      kernels::rms_norm(q_.data(), d, lw.q_norm.data(), t * c_.num_heads, d, c_.rms_norm_eps, q_.data(), d);
      kernels::rms_norm(k_.data(), d, lw.k_norm.data(), t * c_.num_kv_heads, d, c_.rms_norm_eps, k_.data(), d);
    }

    if (mixer == mixer_kind::approximate) {
      // Position by position: add the keys and values, then read every query head of the group.
      for (std::size_t i = 0; i < t; ++i)
        for (std::size_t g = 0; g < c_.num_kv_heads; ++g) {
          auto& state = approximate_[l][g];
          state.push(k_.data() + i * kvs + g * d, v_.data() + i * kvs + g * d);
          for (std::size_t h = g * group; h < (g + 1) * group; ++h)
            state.read(q_.data() + i * qs + h * d, attn_.data() + i * qs + h * d);
        }
    } else if (mixer == mixer_kind::non_approximate) {
      for (std::size_t i = 0; i < t * qs; ++i) q_[i] = q_[i] / (1.0f + std::exp(-q_[i]));  // SiLU on queries
      for (std::size_t i = 0; i < t; ++i)
        for (std::size_t h = 0; h < c_.num_heads; ++h)
          self_gated_[l][h].push_and_read(q_.data() + i * qs + h * d, k_.data() + i * kvs + (h / group) * d,
                                          v_.data() + i * kvs + (h / group) * d, attn_.data() + i * qs + h * d);
    } else {
      if (mixer == mixer_kind::standard || mixer == mixer_kind::static_emb_qk) {
        // The chunk's queries before RoPE (side rows excluded) to the observer (ExpectedAttention's statistics).
        if (query_observer_ && c_.sliding_window(l) == 0) query_observer_(l, q_.data(), t - side_, qs);
        const bool local = c_.uses_windowed_rope(l);
        const float* cos = local ? windowed_cos_.data() : cos_.data();
        const float* sin = local ? windowed_sin_.data() : sin_.data();
        for (std::size_t i = 0; i < t; ++i) {
          kernels::apply_rope(c_.rope, q_.data() + i * qs, c_.num_heads, d, d, cos + i * half, sin + i * half);
          kernels::apply_rope(c_.rope, k_.data() + i * kvs, c_.num_kv_heads, d, d, cos + i * half, sin + i * half);
        }
      }
      cached_attention(l, t);
    }
    kernels::matmul_transposed(attn_.data(), t, qs, lw.wo, delta_.data(), hidden);
  }

  // Appends the chunk's keys and values to layer l's cache and attends over it: attn_ = softmax(q K^T) V.
  void cached_attention(std::size_t l, std::size_t t_all) {
    const std::size_t qs = c_.q_size(), kvs = c_.kv_size(), d = c_.head_dim;
    const std::size_t t = t_all - side_;  // the chunk's own rows; side rows follow them
    // The rows each KV head held before this pass. Heads of a layer hold the same count unless a
    // head-adaptive eviction gave them budgets of their own (docs/eviction.md, "AdaKV"): every head
    // appends the pass's rows after its own, and its queries see its own rows.
    std::size_t largest = 0;
    for (std::size_t h = 0; h < c_.num_kv_heads; ++h) largest = std::max(largest, before_[h] = cache_.size(l, h));
    if (scoring_.enabled)
      scored_queries_[l] = side_ > 0 ? side_ : scoring_.last_queries == 0 ? t : std::min(t, scoring_.last_queries);
    if (side_ > 0) {
      // Side queries see the old slots and the side keys, not the chunk's: one mask row per KV head,
      // [kv_heads, largest + t_all], row h for its before_[h] + t_all rows.
      side_mask_.assign(c_.num_kv_heads * (largest + t_all), 1);
      for (std::size_t h = 0; h < c_.num_kv_heads; ++h) {
        const auto row = side_mask_.begin() + static_cast<std::ptrdiff_t>(h * (largest + t_all) + before_[h]);
        std::fill(row, row + static_cast<std::ptrdiff_t>(t), 0);
      }
    }
    for (std::size_t h = 0; h < c_.num_kv_heads; ++h) {
      std::int64_t* positions = cache_.positions(l, h) + before_[h];
      for (std::size_t i = 0; i < t_all; ++i) {
        // Rounded to the cache's type: the chunk attends to its own keys as the cache holds them.
        cache_.write(l, h, before_[h] + i, k_.data() + i * kvs + h * d, v_.data() + i * kvs + h * d);
        positions[i] = static_cast<std::int64_t>(position_ + (i < t ? i : i - t));
      }
      cache_.set_size(l, h, before_[h] + t_all);
    }
    const std::size_t group = c_.num_heads / c_.num_kv_heads;
    const float scale = c_.attention_scale_or_default();
    const std::size_t window = c_.sliding_window(l);
    // count_weighted: scoring query i counts as many times as it sees keys: the old slots and, causally,
    // its own pass's keys up to itself (side queries: the old slots and the side keys; the chunk's are
    // masked). Exact in float below 2^24.
    // One row of counts per KV head: heads may hold different counts (AdaKV).
    const bool count_weighted = scoring_.enabled && scoring_.count_weighted && window == 0;
    const std::size_t weight_stride = options_.max_chunk;
    if (count_weighted) {
      const std::size_t scored = side_ > 0 ? side_ : t;
      for (std::size_t h = 0; h < c_.num_kv_heads; ++h)
        for (std::size_t i = 0; i < scored; ++i)
          query_weights_[h * weight_stride + i] = static_cast<float>(before_[h] + i + 1);
    }
    // A sliding-window layer: query row r of the cache sees rows (r - W, r] (its rows are the layer's
    // latest tokens in order: never evicted, only trimmed from the front). While every row of the
    // chunk sees all of them, the causal call below is that already; otherwise one call per query.
    // Sliding-window layers are never evicted: their heads hold the same rows.
    const bool windowed = window != 0 && largest + t > window;
    if (window != 0 && scoring_.enabled) scored_queries_[l] = 0;  // policies act on full-attention layers
    // Q K^T and P V of one part's heads, in multiply-adds, over the full rectangle (causal masking
    // skips part of it, so this overestimates short caches a little).
    const std::size_t attention_work_per_part =
        (c_.num_heads + parts_ - 1) / parts_ * t_all * (largest + t_all) * d * 2;
    parallel_for(parts_, [&](std::size_t first_part, std::size_t last_part) {
      for (std::size_t part = first_part; part < last_part; ++part) {
        float* scratch = scratch_.data() + part * scratch_size_;
        for (std::size_t h = part * c_.num_heads / parts_; h < (part + 1) * c_.num_heads / parts_; ++h) {
          const std::size_t kv_head = h / group, before = before_[kv_head];
          const float* query_weights = count_weighted ? query_weights_.data() + kv_head * weight_stride : nullptr;
          kernels::softmax_importance_args a;
          a.queries = q_.data() + h * d;
          a.query_stride = qs;
          if (cache_.kv_type() == dtype::f32) {
            a.keys = cache_.keys(l, kv_head);
            a.values = cache_.values(l, kv_head);
          } else {
            a.kv_type = cache_.kv_type();
            a.key_data = cache_.key_data(l, kv_head);
            a.value_data = cache_.value_data(l, kv_head);
          }
          a.key_stride = d;
          a.value_stride = d;
          a.m = t;
          a.n = before + t;
          a.d = d;
          a.scale = scale;
          a.causal = true;
          a.causal_offset = before;
          a.output = attn_.data() + h * d;
          a.output_stride = qs;
          const std::size_t score_row = (l * c_.num_heads + h) * options_.max_context;
          float* scores = scoring_.enabled && window == 0 ? scores_.data() + score_row : nullptr;
          float* squares = scoring_.enabled && window == 0 && scoring_.squares ? score_squares_.data() + score_row : nullptr;
          if (window != 0 && (windowed || side_ > 0)) {
            windowed_attention(a, before, t, window, scratch);
            continue;
          }
          if (side_ > 0) {
            kernels::softmax_importance_args side = a;
            side.queries = q_.data() + t * qs + h * d;
            side.m = side_;
            side.n = before + t_all;
            side.causal_offset = before + t;
            side.key_mask = side_mask_.data() + kv_head * (largest + t_all);
            side.output = attn_.data() + t * qs + h * d;
            if (scoring_.enabled) {
              side.importance = scores;
              side.importance_end = before;
              side.importance_weights = query_weights;
            }
            kernels::softmax_importance(side, scratch);
            kernels::softmax_importance(a, scratch);
            continue;
          }
          if (scoring_.enabled && (scoring_.last_queries == 0 || scoring_.last_queries >= t)) {
            // The chunk's own attention yields the scores: no extra pass.
            a.importance = scores;
            a.importance_squares = squares;
            a.importance_weights = query_weights;
          }
          kernels::softmax_importance(a, scratch);
          if (scoring_.enabled && window == 0 && scoring_.last_queries != 0 && scoring_.last_queries < t) {
            // Only the chunk's last queries score: an importance-only pass over them.
            kernels::softmax_importance_args b = a;
            const std::size_t skip = t - scoring_.last_queries;
            b.queries = q_.data() + skip * qs + h * d;
            b.m = scoring_.last_queries;
            b.causal_offset = before + skip;
            b.output = nullptr;
            b.values = nullptr;
            b.value_data = nullptr;
            b.importance = scores;
            b.importance_squares = squares;
            b.importance_weights = query_weights == nullptr ? nullptr : query_weights + skip;
            kernels::softmax_importance(b, scratch);
          }
        }
      }
    }, grain_for_work(attention_work_per_part));
  }

  // One query head of a sliding-window layer, query by query: chunk row i sees cache rows
  // [before + i + 1 - W, before + i]; side row j (forward_with_side) sees the old rows
  // [before - (W - 1 - j), before) and side rows [before + t + j + 1 - W, before + t + j]. No scores.
  void windowed_attention(const kernels::softmax_importance_args& all, std::size_t before, std::size_t t,
                          std::size_t window, float* scratch) const {
    const std::size_t d = c_.head_dim, qs = c_.q_size();
    auto one = [&](std::size_t row, std::size_t first, std::size_t last, const std::uint8_t* mask) {
      kernels::softmax_importance_args a = all;
      a.queries = all.queries + row * qs;
      a.output = all.output + row * qs;
      a.m = 1;
      a.n = last + 1 - first;
      a.causal = false;
      a.causal_offset = 0;
      a.key_mask = mask == nullptr ? nullptr : mask + first;
      a.importance = nullptr;
      a.importance_squares = nullptr;
      if (all.kv_type == dtype::f32) {
        a.keys = all.keys + first * d;
        a.values = all.values + first * d;
      } else {
        const std::size_t row_bytes = cache_.row_bytes();
        a.key_data = static_cast<const std::byte*>(all.key_data) + first * row_bytes;
        a.value_data = static_cast<const std::byte*>(all.value_data) + first * row_bytes;
      }
      kernels::softmax_importance(a, scratch);
    };
    for (std::size_t i = 0; i < t; ++i) {
      const std::size_t last = before + i;
      one(i, last + 1 > window ? last + 1 - window : 0, last, nullptr);
    }
    for (std::size_t j = 0; j < side_; ++j) {
      const std::size_t last = before + t + j;
      const std::size_t first = j + 1 < window ? (before + j + 1 > window ? before + j + 1 - window : 0) : last + 1 - window;
      one(t + j, first, last, side_mask_.data());
    }
  }

  // gate[i] = gelu_tanh(gate[i]) * up[i] (GeGLU), gelu_tanh(z) = z / 2 (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))).
  static void gelu_tanh_mul(float* gate, const float* up, std::size_t count) noexcept {
    constexpr float sqrt_2_over_pi = 0.7978845608028654f;
    for (std::size_t i = 0; i < count; ++i) {
      const float z = gate[i];
      gate[i] = 0.5f * z * (1.0f + std::tanh(sqrt_2_over_pi * (z + 0.044715f * z * z * z))) * up[i];
    }
  }

  template <class State>
  static void copy_states(const std::vector<std::vector<State>>& from, std::vector<std::vector<State>>& to) {
    to.resize(from.size());
    for (std::size_t l = 0; l < from.size(); ++l) {
      to[l].resize(from[l].size());
      for (std::size_t h = 0; h < from[l].size(); ++h) to[l][h].assign(from[l][h]);
    }
  }

  void clear_states() noexcept {
    for (auto& layer : approximate_)
      for (auto& state : layer) state.clear();
    for (auto& layer : self_gated_)
      for (auto& state : layer) state.clear();
  }

  const model_weights& w_;
  const model_config& c_;
  session_options options_;
  kv_cache cache_;
  residual_stream residual_;
  std::vector<std::vector<approximate_state>> approximate_;  // [layers][kv_heads] (approximate layers)
  std::vector<std::vector<self_gated_state>> self_gated_;    // [layers][heads] (non_approximate layers)
  std::size_t position_ = 0;
  std::size_t parts_ = 1;
  std::size_t scratch_size_ = 0;
  aligned_buffer<float> x_;       // [max_chunk, hidden] residual stream
  aligned_buffer<float> normed_;  // [max_chunk, hidden]
  aligned_buffer<float> q_;       // [max_chunk, heads * head_dim]
  aligned_buffer<float> k_;       // [max_chunk, kv_heads * head_dim]
  aligned_buffer<float> v_;       // [max_chunk, kv_heads * head_dim]
  aligned_buffer<float> attn_;    // [max_chunk, heads * head_dim]
  aligned_buffer<float> gate_;    // [max_chunk, max(intermediate, mixer intermediate)]
  aligned_buffer<float> up_;      // [max_chunk, intermediate]
  aligned_buffer<float> delta_;   // [max_chunk, hidden]: a sub-layer's output
  aligned_buffer<float> mixer_up_;  // [max_chunk, mixer intermediate]
  aligned_buffer<float> inv_freq_;  // [head_dim / 2]
  aligned_buffer<float> cos_;     // [max_chunk, head_dim / 2]
  aligned_buffer<float> sin_;     // [max_chunk, head_dim / 2]
  aligned_buffer<float> scratch_;  // [parts, softmax_importance_scratch_size]
  attention_scoring scoring_;
  std::size_t side_ = 0;                  // side tokens at the end of the current forward_with_side call
  std::vector<std::int32_t> combined_;    // chunk ++ side tokens
  std::vector<std::uint8_t> side_mask_;   // [kv_heads, cache rows]: what side queries see
  std::vector<std::size_t> before_;       // [kv_heads]: a cached layer's rows per head before the pass
  aligned_buffer<float> scores_;         // [layers, heads, max_context] once scoring was enabled
  aligned_buffer<float> score_squares_;  // [layers, heads, max_context] once squares were asked for
  std::vector<std::size_t> scored_queries_;  // [layers]
  std::vector<float> query_weights_;         // [kv heads, max_chunk]: attention_scoring::count_weighted's counts
  query_observer query_observer_;            // set_query_observer
  rerotator rerotator_;                  // rerotate(): its table [max_context, head_dim] once used
  aligned_buffer<float> windowed_inv_freq_;  // [head_dim / 2] sliding-window layers' own RoPE (Gemma 3), else empty
  aligned_buffer<float> windowed_cos_;       // [max_chunk, head_dim / 2]
  aligned_buffer<float> windowed_sin_;       // [max_chunk, head_dim / 2]
  rerotator windowed_rerotator_;             // rerotate() of those layers
  std::vector<std::uint32_t> window_keep_;   // trim_windows(): the rows kept
  bool marked_ = false;                      // between mark() and rollback(): windows are not trimmed
  exclusive_use in_use_;                 // the thread inside a call (checked with PITH_ASSERT)
};

}  // namespace PITH_ISA_NAMESPACE

}  // namespace pith
