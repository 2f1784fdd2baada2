// SPDX-License-Identifier: MIT
// reader: feeds a document of any length through a model in chunks, evicting KV states with a policy
// so that memory does not grow with the document, then answers an instruction (docs/eviction.md).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pith/cache/eviction.hpp"
#include "pith/cache/eviction_blocks.hpp"
#include "pith/core/error.hpp"
#include "pith/model/sampler.hpp"
#include "pith/model/transformer.hpp"

namespace pith {

enum class position_mode { reindexed, original };

/// How a document is read (docs/eviction.md, "Protocols"; the spec's "Budgets and protocols"):
/// `chunked`, CItruS's reading: chunks of L tokens, the cache bounded by the budget, any length;
/// `oneshot`, kvpress's: the whole document prefilled in one pass with the full cache, compressed
/// once by the policy (to the budget k, or to floor(n (1 - r)) states at a ratio r), then the question.
enum class reading_protocol { chunked, oneshot };

inline const char* protocol_name(reading_protocol protocol) noexcept {
  return protocol == reading_protocol::oneshot ? "oneshot" : "chunked";
}

/// "chunked" and "oneshot".
inline reading_protocol parse_protocol(std::string_view name) {
  if (name == "chunked") return reading_protocol::chunked;
  if (name == "oneshot") return reading_protocol::oneshot;
  PITH_THROW(argument_error, "unknown protocol '" + std::string(name) + "' (chunked, oneshot)");
}

/// The states a compression ratio r keeps of n: floor(n (1 - r)) (kvpress's convention). Throws
/// argument_error naming the ratio when r is outside [0, 1) or not a number.
inline std::size_t ratio_budget(std::size_t n, double ratio) {
  if (!(ratio >= 0.0 && ratio < 1.0))
    PITH_THROW(argument_error, "reader: ratio " + std::to_string(ratio) + " is outside [0, 1)");
  // n (1 - r) in long double: exact for every n below 2^32 and the ratios written in decimal the
  // sweeps use, whose products land on integers (0.875 x 1000 = 875).
  return static_cast<std::size_t>(std::floor(static_cast<long double>(n) * (1.0L - static_cast<long double>(ratio))));
}

struct reader_options {
  policy_kind policy = policy_kind::citrus_shared;
  std::size_t budget = 768;      // k: old states kept besides the newest chunk
  std::size_t chunk_size = 256;  // L
  position_mode positions = position_mode::reindexed;
  std::size_t max_answer_tokens = 256;  // cache room reserved for the answer
  std::size_t sink = 4;                 // protected first slots (streaming, h2o, roco)
  std::size_t snapkv_window = 32;
  // The SnapKV family's pooling (snapkv, snapkv-question, chunkkv, pyramidkv): an odd kernel, average
  // (zero padding, divided by the kernel) or max (the window clipped at the ends). SnapKV's code and
  // kvpress average over 5; the SnapKV paper's LongBench runs max-pool over 7.
  std::size_t snapkv_kernel = 7;
  pool_mode snapkv_pool = pool_mode::average;
  std::size_t chunkkv_size = 20;  // chunkkv: slots per chunk (ChunkKV's chunk_length)
  std::size_t pyramid_beta = 20;  // pyramidkv: k_min = budget / beta (docs/eviction.md)
  std::uint64_t random_seed = 0;  // random: the splitmix64 generator's initial state
  // expected-attention: the query statistics' RoPE rotation is averaged over this many positions from
  // the next one (kvpress's n_future_positions)
  std::size_t expected_positions = 512;
  // CItruS and user-defined policies: the scores are averaged over this many (odd) neighbouring slots
  // before the selection, as SnapKV does (1: off, the official CItruS). A state the instruction looks
  // at then keeps its neighbours, which multi-token answers need (docs/eviction.md, "Score pooling").
  // A user-defined policy sees both of its score spans pooled (eviction_view). Other built-in
  // policies ignore it (snapkv pools with snapkv_kernel).
  std::size_t citrus_pool = 1;
  std::size_t max_context = 0;  // `full` only: cache rows (0: the model's max_position_embeddings)
  // What the reader's sessions compute on (session_options::executor); nullptr: the calling
  // thread's current executor (the process-wide pool unless an executor_scope is active).
  std::shared_ptr<pith::executor> executor = nullptr;
  // What the sessions' KV caches store keys and values as (session_options::kv_type): f32 (exact),
  // f16, bf16 or q8_0. Compaction moves stored rows; re-rotation rounds a key back to the type.
  dtype kv_type = dtype::f32;
  // The spec's "Budgets and protocols" (docs/eviction.md, "Protocols"). oneshot sizes its sessions to
  // the document (chunk_size and max_context do not apply) and makes one cut before the question.
  reading_protocol protocol = reading_protocol::chunked;
  // oneshot only: a compression ratio r in [0, 1) instead of `budget`: the cut keeps floor(n (1 - r))
  // of the document's n states per layer (or KV head). The chunked reader does not know n in advance.
  std::optional<double> ratio = std::nullopt;
  // oneshot only: whether the question is seen during compression. true: the instruction's queries
  // score the cut; false (kvpress's default): the document's own last queries do (docs/eviction.md).
  bool question_in_cut = false;
  // AdaKV (docs/eviction.md, "AdaKV"; the spec's AdaKV row): the policy's scores taken per KV head, and
  // each layer's H_kv x budget old states shared unequally by its KV heads: each head first keeps its
  // own top floor(adakv_alpha x budget), the rest go to the layer's highest scores across heads. Only
  // with the policies combines_with_adakv accepts. Each head's cache is sized for the most one head
  // can take (adakv_head_budget).
  bool head_adaptive = false;
  double adakv_alpha = 0.2;  // in [0, 1]
};

struct reader_stats {
  std::size_t tokens_read = 0;
  std::size_t chunks = 0;
  double reading_seconds = 0.0;   // forward passes and eviction
  double eviction_seconds = 0.0;  // selection, compaction and re-rotation only
  double instruction_seconds = 0.0;  // instruction-scoring passes (CItruS)
  std::size_t state_bytes = 0;    // bytes of session state (KV caches, activations) allocated
};

/// reader::log_likelihood's result: the sum of the continuation tokens' natural log-probabilities.
struct continuation_likelihood {
  double sum = 0.0;        // <= 0
  std::size_t tokens = 0;  // >= 1
  /// exp(-sum / tokens): 1 when every token was certain, the vocabulary's size for a uniform guess.
  double perplexity() const noexcept { return std::exp(-sum / static_cast<double>(tokens)); }
};

/// log softmax(row)[token] in double: the largest logit subtracted before the exponentials.
inline double log_softmax_at(std::span<const float> row, std::int32_t token) {
  double largest = -std::numeric_limits<double>::infinity();
  for (const float x : row) largest = std::max(largest, static_cast<double>(x));
  double sum = 0.0;
  for (const float x : row) sum += std::exp(static_cast<double>(x) - largest);
  return static_cast<double>(row[static_cast<std::size_t>(token)]) - largest - std::log(sum);
}

inline namespace PITH_ISA_NAMESPACE {  // holds sessions of this unit's ISA (simd/simd.hpp)

/// One document read by one thread at a time (with PITH_ASSERT active, a second thread entering
/// feed or answer meanwhile aborts); readers on several threads may share the weights.
class reader {
 public:
  using progress_callback = std::function<void(std::size_t tokens_done)>;

  /// Largest budget, chunk, answer length, context or instruction length a reader takes.
  static constexpr std::size_t max_reader_size = (std::size_t{1} << 32) - 1;

  reader(const model_weights& weights, reader_options options, std::vector<std::int32_t> instruction)
      : reader(weights, std::move(options), std::move(instruction), std::vector<std::int32_t>{}) {}

  /// The different-question variant (docs/eviction.md, "Protocols"): `instruction` guides the reading
  /// (the instruction-aware scores and cuts), `question` is what answer() asks (empty: the instruction).
  reader(const model_weights& weights, reader_options options, std::vector<std::int32_t> instruction,
         std::vector<std::int32_t> question)
      : w_(weights), options_(std::move(options)), instruction_(std::move(instruction)), question_(std::move(question)) {
    if (question_.empty()) question_ = instruction_;
    traits_ = traits_of(options_.policy, options_.snapkv_window);
    (void)adakv_floor(0, options_.adakv_alpha);  // throws naming adakv_alpha outside [0, 1]
    if (options_.head_adaptive) {
      check_adakv_combines(options_.policy);
      traits_.per_head = traits_.head_adaptive = true;
    }
    const bool oneshot = options_.protocol == reading_protocol::oneshot;
    if (options_.ratio) {
      if (!oneshot)
        PITH_THROW(argument_error, "reader: ratio applies to the oneshot protocol (the chunked reader does not know the "
                                   "document's length: give budget = floor(n (1 - r)))");
      (void)ratio_budget(0, *options_.ratio);  // throws for a ratio outside [0, 1)
    }
    if (options_.question_in_cut && !oneshot)
      PITH_THROW(argument_error, "reader: question_in_cut applies to the oneshot protocol");
    if (oneshot && options_.question_in_cut && instruction_.empty())
      PITH_THROW(argument_error, "reader: question_in_cut scores the cut with the instruction, which is empty");
    if (oneshot) one_cut_traits();
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
    bound("question length", question_.size());
    if (options_.snapkv_kernel % 2 == 0 || options_.citrus_pool % 2 == 0)
      PITH_THROW(argument_error, "reader: snapkv_kernel and citrus_pool must be odd (a window centred on the slot)");
    if (options_.chunkkv_size == 0) PITH_THROW(argument_error, "reader: chunkkv_size must be at least 1");
    if (options_.pyramid_beta == 0) PITH_THROW(argument_error, "reader: pyramid_beta must be at least 1");
    if (traits_.evicts && options_.budget == 0 && !options_.ratio)
      PITH_THROW(argument_error, "reader: a budget of 0 keeps no document state; use at least 1");
    // oneshot without the question: the instruction-aware policies score with the document's queries.
    if (traits_.instruction_scores && instruction_.empty() && (!oneshot || options_.question_in_cut))
      PITH_THROW(argument_error, std::string("reader: policy ") + policy_name(options_.policy) +
                                     " scores with the instruction, which is empty");
    for (const auto* tokens : {&instruction_, &question_})
      for (const std::int32_t token : *tokens)
        if (token < 0 || static_cast<std::size_t>(token) >= weights.config.vocab_size)
          PITH_THROW(argument_error, std::string("reader: ") + (tokens == &instruction_ ? "instruction" : "question") +
                                         " token " + std::to_string(token) + " is outside the vocabulary");
    check_kv_type(options_.kv_type, weights.config.head_dim, "reader_options::kv_type");
    const auto& c = weights.config;
    document_positions_.resize(c.num_layers * c.num_kv_heads);
    if (traits_.accumulates) running_ = running_scores(c.num_layers * c.num_kv_heads, traits_.squares);
    if (traits_.value_weights) value_weights_.resize(c.num_layers * c.num_kv_heads);
    if (traits_.query_statistics) {
      if (options_.expected_positions == 0) PITH_THROW(argument_error, "reader: expected_positions must be at least 1");
      moments_ = query_moments(c.num_layers * c.num_heads, c.head_dim);
      frequencies_ = rope_frequencies(c.rope_theta, c.head_dim, c.rope_scale);
    }
    random_ = splitmix64(options_.random_seed);
    if (oneshot) return;  // the sessions are sized to the document when it is read (read_whole_document)
    set_layer_budgets(options_.budget);
    const std::size_t prompt = std::max(instruction_.size(), question_.size());
    std::size_t largest_budget = options_.budget;
    for (const std::size_t b : layer_budgets_) largest_budget = std::max(largest_budget, b);
    // AdaKV: one head may take the layer's H_kv x k but the other heads' floors; its rows must allow it.
    if (traits_.head_adaptive) {
      largest_budget = adakv_head_budget(options_.budget, weights.config.num_kv_heads, options_.adakv_alpha);
      bound("AdaKV's largest head budget (budget x kv heads)", largest_budget);
    }
    session_options so;
    so.executor = options_.executor;
    so.kv_type = options_.kv_type;
    so.max_chunk = options_.chunk_size + prompt;  // the chunk and the instruction in one pass
    // Largest moment of a layer with budget b: b + L old states plus either the next chunk or the
    // instruction and answer.
    const auto rows_for = [&](std::size_t budget) {
      return budget + options_.chunk_size + std::max(options_.chunk_size, options_.max_answer_tokens) + prompt + 1;
    };
    if (traits_.evicts) {
      so.max_context = rows_for(largest_budget);
      // Per-layer budgets: each layer's cache holds its own budget's rows, so the layers together hold
      // what a uniform budget's would (the budgets sum to budget x layers).
      if (traits_.layer_budgets) {
        so.layer_context.assign(weights.config.num_layers, 0);
        for (std::size_t l = 0; l < weights.config.num_layers; ++l)
          if (evicted_layer(l)) so.layer_context[l] = rows_for(layer_budgets_[l]);
      }
    } else
      so.max_context = options_.max_context != 0 ? options_.max_context : weights.config.max_position_embeddings;
    // A sliding-window layer keeps its whole window (session::window_rows): the sessions hold at least W rows.
    if (traits_.evicts)
      for (std::size_t l = 0; l < weights.config.num_layers; ++l)
        so.max_context = std::max(so.max_context, weights.config.sliding_window(l));
    // Reindexed positions never pass k + L + max(L, |I| + answer) (the fused instruction reuses the
    // chunk's positions), whatever the document's length.
    const std::size_t model_context = weights.config.max_position_embeddings;
    const std::size_t positions = largest_budget + options_.chunk_size +
                                  std::max(options_.chunk_size, prompt + options_.max_answer_tokens);
    if (options_.positions == position_mode::reindexed && positions > model_context && traits_.evicts)
      PITH_THROW(argument_error, std::string("reader: ") +
                                     (traits_.layer_budgets  ? "the first layer's budget"
                                      : traits_.head_adaptive ? "AdaKV's largest head budget (kv heads x budget - the other heads' floors)"
                                                              : "budget") +
                                     " + chunk + max(chunk, instruction + answer) = " + std::to_string(positions) +
                                     " positions exceed the model's context of " + std::to_string(model_context));
    main_ = std::make_unique<session>(weights, so);
    if (traits_.separate_cache) instruction_session_ = std::make_unique<session>(weights, so);
    if (traits_.separate_cache) instruction_document_positions_.resize(c.num_layers * c.num_kv_heads);
  }

  reader(const model_weights&& weights, reader_options options, std::vector<std::int32_t> instruction) = delete;
  reader(const model_weights&& weights, reader_options options, std::vector<std::int32_t> instruction,
         std::vector<std::int32_t> question) = delete;

  /// Replaces the policy's selection rule by a user-defined one. What the policy's views carry is
  /// P::request if P declares one (policy_request), else the defaults: the chunk's own attention (mean
  /// over its queries and all heads), selection per layer, no final cut. With
  /// reader_options::citrus_pool > 1 the policy sees its scores pooled. Call before feeding.
  template <eviction_policy P>
  void use_policy(P policy) {
    use_policy(std::move(policy), request_of<P>());
  }
  /// The same with an explicit request. Throws argument_error when it asks for the instruction's
  /// scores (or a final cut) and the instruction is empty, when the reader has read a chunk, or when
  /// it was made with head_adaptive (AdaKV ranks built-in scores across heads).
  template <eviction_policy P>
  void use_policy(P policy, policy_request request) {
    if (stats_.chunks != 0) PITH_THROW(argument_error, "reader::use_policy: the reader has already read a chunk");
    if (options_.head_adaptive)  // AdaKV ranks scores across heads; a user-defined policy returns keep lists
      PITH_THROW(argument_error, "reader::use_policy: adakv(custom): AdaKV (reader_options::head_adaptive) needs a "
                                 "built-in per-head scorer, not a user-defined policy");
    if ((request.instruction_scores || request.final_cut) && instruction_.empty())
      PITH_THROW(argument_error, "reader::use_policy: the policy asks for the instruction's scores; the instruction is empty");
    custom_ = [policy](const eviction_view& view, std::vector<std::uint32_t>& keep) mutable { policy.select(view, keep); };
    options_.policy = policy_kind::custom;
    traits_ = traits_of(request);
    if (options_.protocol == reading_protocol::oneshot) one_cut_traits();
  }

  const reader_options& options() const noexcept { return options_; }
  const reader_stats& stats() const noexcept { return stats_; }
  /// The session the document is read into (oneshot: made when the document is read; throws before).
  session& main_session() {
    if (!main_) PITH_THROW(argument_error, "reader::main_session: the oneshot reader makes its session when it reads the document");
    return *main_;
  }

  /// Reads `tokens` (appended to what was fed before); whole chunks are processed at once, a
  /// partial chunk waits for more tokens or for answer().
  /// oneshot: the tokens wait for answer() (or finish_document()), which reads them in one pass.
  void feed(std::span<const std::int32_t> tokens, const progress_callback& progress = {}) {
    for (const std::int32_t token : tokens)
      if (token < 0 || static_cast<std::size_t>(token) >= w_.config.vocab_size)
        PITH_THROW(argument_error, "reader::feed: token " + std::to_string(token) + " is outside the vocabulary");
    if (answered_) PITH_THROW(argument_error, "reader::feed: the document was already answered; make a new reader");
    if (oneshot() && main_)
      PITH_THROW(argument_error, "reader::feed: the oneshot document was already read; make a new reader");
    if (oneshot()) {
      if (tokens.size() > max_reader_size - pending_.size())
        PITH_THROW(argument_error, "reader::feed: a oneshot document above " + std::to_string(max_reader_size) + " tokens");
      pending_.insert(pending_.end(), tokens.begin(), tokens.end());
      return;
    }
    const auto in_use = main_->claim("pith::reader");
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
  /// oneshot: reads the whole document in one pass and makes the one cut.
  void finish_document() {
    if (oneshot()) {
      if (!main_) read_whole_document();
      return;
    }
    if (pending_.empty()) return;
    read_chunk(pending_);
    pending_.clear();
  }

  /// Reads any partial last chunk, makes the final cut, runs the instruction and generates up to
  /// `steps` tokens (stopping after `stop_token` if it is >= 0). on_token sees each token.
  std::vector<std::int32_t> answer(std::size_t steps, sampler& pick, const std::function<void(std::int32_t)>& on_token = {},
                                   std::int32_t stop_token = -1) {
    if (answered_) PITH_THROW(argument_error, "reader::answer: already answered");
    finish_document();
    const auto in_use = main_->claim("pith::reader");
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
      if (options_.policy == policy_kind::custom)
        evict(s, positions, scored_sizes_, scored_stride_, {}, scores_, true);
      else if (is_citrus(options_.policy))
        evict(s, positions, scored_sizes_, scored_stride_,
              citrus_cut_scores(options_.policy, citrus_cut::final_cut, {}, scores_), {}, true);
      else  // snapkv-question, finch: the instruction's scores of the whole cache, per KV head
        evict(s, positions, scored_sizes_, scored_stride_, scores_, {}, true);
      stats_.instruction_seconds += seconds_since(start);
    }
    std::vector<float> logits(w_.config.vocab_size);
    if (!question_.empty()) {
      s.forward(question_, logits.data());
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

  /// Reads any partial last chunk and scores `continuation` as the text that follows the document:
  /// the sum over its tokens of log p(token | document as the cache holds it, earlier continuation
  /// tokens), natural logarithms, each from a log-softmax of the logits row in double. The first token
  /// is scored from the logits of the document's last token (computed as that token was read, before
  /// its chunk's eviction), the others by running the continuation but its last token through the
  /// session the answer would use (citrus-separate: the instruction cache), with the evicted cache
  /// and without evicting. Nothing is sampled; the instruction is not run and no final cut is made
  /// (it only guided the eviction while reading). The continuation takes the room kept for the
  /// answer: at most max_answer_tokens tokens. Afterwards the reader is finished, as after answer():
  /// feed, answer and log_likelihood throw argument_error. Throws argument_error for an empty
  /// document or continuation, a token outside the vocabulary or a continuation that does not fit.
  continuation_likelihood log_likelihood(std::span<const std::int32_t> continuation) {
    if (answered_) PITH_THROW(argument_error, "reader::log_likelihood: the reader has already answered or scored");
    if (continuation.empty()) PITH_THROW(argument_error, "reader::log_likelihood: the continuation is empty");
    if (continuation.size() > options_.max_answer_tokens)
      PITH_THROW(argument_error, "reader::log_likelihood: a continuation of " + std::to_string(continuation.size()) +
                                     " tokens exceeds max_answer_tokens (" + std::to_string(options_.max_answer_tokens) +
                                     "), the cache room kept after the document");
    for (const std::int32_t token : continuation)
      if (token < 0 || static_cast<std::size_t>(token) >= w_.config.vocab_size)
        PITH_THROW(argument_error, "reader::log_likelihood: continuation token " + std::to_string(token) +
                                       " is outside the vocabulary");
    finish_document();  // oneshot: makes the session, reads the document and cuts
    const auto in_use = main_->claim("pith::reader");
    if (stats_.tokens_read == 0) PITH_THROW(argument_error, "reader::log_likelihood: the document is empty");
    answered_ = true;
    session& s = traits_.separate_cache ? *instruction_session_ : *main_;
    continuation_likelihood out;
    out.tokens = continuation.size();
    out.sum = log_softmax_at(last_logits_, continuation[0]);
    // Every continuation token but the last, a chunk's worth per pass (one logits row per token).
    const std::size_t vocab = w_.config.vocab_size, inputs = continuation.size() - 1;
    std::vector<float> rows;
    for (std::size_t first = 0; first < inputs; first += options_.chunk_size) {
      const std::size_t n = std::min(options_.chunk_size, inputs - first);
      rows.resize(n * vocab);
      s.forward(continuation.subspan(first, n), rows.data(), true);
      for (std::size_t i = 0; i < n; ++i)
        out.sum += log_softmax_at(std::span<const float>(rows.data() + i * vocab, vocab), continuation[first + i + 1]);
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
    if (!main_) return 0;  // oneshot before the document is read
    return main_->bytes_allocated() + (instruction_session_ ? instruction_session_->bytes_allocated() : 0);
  }

  /// Per layer: the memory the reader's sessions hold (session::memory_report, the instruction
  /// cache's added when the policy keeps one), with the KV type the caches store.
  std::vector<layer_memory> memory_report() const {
    if (!main_) return {};  // oneshot before the document is read
    std::vector<layer_memory> report = main_->memory_report();
    if (instruction_session_) {
      const std::vector<layer_memory> second = instruction_session_->memory_report();
      for (std::size_t l = 0; l < report.size(); ++l) {
        report[l].kv_cache_bytes += second[l].kv_cache_bytes;
        report[l].kv_cache_used_bytes += second[l].kv_cache_used_bytes;
        report[l].state_bytes += second[l].state_bytes;
      }
    }
    return report;
  }

 private:
  bool oneshot() const noexcept { return options_.protocol == reading_protocol::oneshot; }

  // oneshot makes one cut, on the one cache: no final cut after it, no second (instruction) cache.
  void one_cut_traits() noexcept {
    traits_.final_cut = false;
    traits_.separate_cache = false;
  }

  // Every full-attention layer's own budget: `budget`, or PyramidKV's per-layer budgets
  // (pyramid_budgets over the layers the policy acts on, in depth order).
  void set_layer_budgets(std::size_t budget) {
    const auto& c = w_.config;
    std::size_t evicted = 0;
    for (std::size_t l = 0; l < c.num_layers; ++l) evicted += evicted_layer(l) ? 1 : 0;
    const std::vector<std::size_t> pyramid = traits_.layer_budgets ? pyramid_budgets(budget, evicted, options_.pyramid_beta)
                                                                   : std::vector<std::size_t>(evicted, budget);
    layer_budgets_.assign(c.num_layers, 0);
    for (std::size_t l = 0, i = 0; l < c.num_layers; ++l)
      if (evicted_layer(l)) layer_budgets_[l] = pyramid[i++];
  }

  // The oneshot protocol (docs/eviction.md, "Protocols"; the spec's "Budgets and protocols"): the n
  // document tokens in one pass with a cache of every state, then one cut per layer (or KV head) to
  // k = budget or floor(n (1 - r)) by the policy's scores, made from the document's own queries (its
  // last snapkv_window, or the policy's own window: tova's last one; h2o, roco and observed-attention
  // sum every query's) or, with question_in_cut, from the instruction's queries.
  void read_whole_document() {
    const auto start = std::chrono::steady_clock::now();
    const auto& c = w_.config;
    if (pending_.empty()) PITH_THROW(argument_error, "reader::answer: the document is empty");
    const std::size_t n = pending_.size();
    std::size_t k = n;  // full keeps every state
    if (traits_.evicts) {
      k = options_.ratio ? ratio_budget(n, *options_.ratio) : options_.budget;
      if (k == 0)
        PITH_THROW(argument_error, "reader: ratio " + std::to_string(*options_.ratio) + " keeps floor(n (1 - r)) = 0 of the " +
                                       std::to_string(n) + " document states; use a smaller ratio");
    }
    const std::size_t prompt = std::max(instruction_.size(), question_.size());
    session_options so;
    so.executor = options_.executor;
    so.kv_type = options_.kv_type;
    // The document in one pass; the question, or log_likelihood's continuation in passes of chunk_size.
    so.max_chunk = std::max({n, prompt, std::min(options_.chunk_size, options_.max_answer_tokens)});
    so.max_context = n + prompt + options_.max_answer_tokens + 1;  // the full cache: document, question, answer
    for (std::size_t l = 0; l < c.num_layers; ++l) so.max_context = std::max(so.max_context, c.sliding_window(l));
    main_ = std::make_unique<session>(w_, so);
    const auto in_use = main_->claim("pith::reader");
    // The document's scores: the accumulators every query's, the others the last window's.
    const bool attention = traits_.chunk_scores || traits_.instruction_scores || traits_.accumulates;
    const bool question_scored = options_.question_in_cut && attention && !traits_.accumulates;
    const bool custom = options_.policy == policy_kind::custom;
    const bool document_scored = traits_.evicts && attention && (traits_.accumulates || custom || !question_scored);
    const std::size_t window = traits_.accumulates ? 0 : traits_.last_queries != 0 ? traits_.last_queries
                                                                                    : options_.snapkv_window;
    main_->set_scoring({document_scored, window, traits_.squares, traits_.count_weighted});
    last_logits_.resize(c.vocab_size);
    observe_queries(true);
    main_->forward(pending_, last_logits_.data());
    observe_queries(false);
    main_->set_scoring({});
    append_document_positions(n);
    if (traits_.value_weights) append_value_weights(n);
    if (traits_.accumulates) accumulate(0, n);
    // The document's scores are read before the question's pass records over them.
    layer_sizes(*main_, old_sizes_);
    std::vector<float> document;
    if (document_scored && !traits_.accumulates) aggregate(*main_, old_sizes_, n, traits_.per_head, document);
    std::vector<float> question;
    if (question_scored && traits_.evicts) {
      const auto t0 = std::chrono::steady_clock::now();
      instruction_scores(*main_);
      question = scores_;
      stats_.instruction_seconds += seconds_since(t0);
    }
    const auto t1 = std::chrono::steady_clock::now();
    if (traits_.evicts) {
      set_layer_budgets(k);
      if (custom)
        evict(*main_, document_positions_, old_sizes_, n, document, question, false);
      else
        evict(*main_, document_positions_, old_sizes_, n, question_scored ? std::span<const float>(question) : document, {},
              false);
    }
    stats_.eviction_seconds += seconds_since(t1);
    stats_.tokens_read = n;
    stats_.chunks = 1;
    pending_.clear();
    stats_.reading_seconds += seconds_since(start);
  }

  static double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  // Whether the policy acts on layer l: a full-attention layer with a KV cache. A sliding-window layer
  // keeps its last W states by construction (session::trim_windows) and a recurrent layer has no slots.
  bool evicted_layer(std::size_t l) const noexcept {
    return mixer_uses_kv_cache(w_.config.mixer(l)) && w_.config.sliding_window(l) == 0;
  }
  bool windowed_layer(std::size_t l) const noexcept {
    return mixer_uses_kv_cache(w_.config.mixer(l)) && w_.config.sliding_window(l) != 0;
  }

  // Rows [first_head, first_head + heads) of the session's per-query-head scores (or squares) of
  // `layer`, for cache slots [0, slots), as a view over the session's storage.
  static head_scores recorded(const session& s, std::size_t layer, std::size_t first_head, std::size_t heads,
                              std::size_t slots, bool squares = false) {
    const float* first = squares ? s.score_squares(layer, first_head) : s.scores(layer, first_head);
    if (first == nullptr) PITH_THROW(argument_error, "reader: the session recorded no scores");
    const std::size_t stride =
        s.config().num_heads > 1 ? static_cast<std::size_t>(s.scores(layer, 1) - s.scores(layer, 0)) : slots;
    return {std::span(first, heads == 0 ? 0 : (heads - 1) * stride + slots), heads, slots, stride};
  }

  // Per (layer, KV head), [layers * kv_heads], the rows of s's cache the policy acts on (0 for the
  // layers it does not act on); returns the largest. Every head of every layer holds the same count
  // unless the layers keep budgets of their own (pyramidkv) or the heads do (AdaKV).
  std::size_t layer_sizes(const session& s, std::vector<std::size_t>& sizes) const {
    const std::size_t heads = w_.config.num_kv_heads;
    sizes.assign(w_.config.num_layers * heads, 0);
    std::size_t largest = 0;
    for (std::size_t l = 0; l < w_.config.num_layers; ++l)
      if (evicted_layer(l))
        for (std::size_t g = 0; g < heads; ++g) largest = std::max(largest, sizes[l * heads + g] = s.cache().size(l, g));
    return largest;
  }

  // out = [layer][unit][stride], unit a KV head (per head) or the layer (one unit): the mean over each
  // KV head's group of query heads (mean_over_groups) or over all of them (mean_over_heads) of the
  // session's recorded scores of the first sizes[l * kv_heads + g] slots of layer l's KV head g (per
  // layer: head 0's count, which every head of the layer then holds); the rest of each row stays 0.
  void aggregate(const session& s, std::span<const std::size_t> sizes, std::size_t stride, bool per_head,
                 std::vector<float>& out) const {
    const auto& c = w_.config;
    const std::size_t units = per_head ? c.num_kv_heads : 1, group = c.num_heads / units;
    out.assign(c.num_layers * units * stride, 0.0f);
    for (std::size_t l = 0; l < c.num_layers; ++l) {
      if (!evicted_layer(l)) continue;
      // One group's mean_over_heads is mean_over_groups's row for that KV head (same sums, same order).
      for (std::size_t unit = 0; unit < units; ++unit) {
        const std::size_t n = sizes[l * c.num_kv_heads + unit];
        mean_over_heads(recorded(s, l, unit * group, group, n),
                        std::span<float>(out.data() + (l * units + unit) * stride, n));
      }
    }
  }

  // The instruction's attention over s's cache, mean over heads (per layer or per KV head's group) and
  // instruction queries (scores_). The pass leaves s exactly as it was: cache rows, position and the
  // recurrent mixers' states.
  // The layers' slot counts scored are in scored_sizes_ (the largest: scored_stride_, the row stride of scores_).
  void instruction_scores(session& s) {
    scored_stride_ = layer_sizes(s, scored_sizes_);
    s.mark(scoring_mark_);
    s.set_scoring({true, 0, false, traits_.count_weighted});
    s.forward(instruction_, nullptr);  // only the attention is wanted: no logits
    s.set_scoring({});
    aggregate(s, scored_sizes_, scored_stride_, traits_.per_head, scores_);
    s.rollback(scoring_mark_);
  }

  void read_chunk(std::span<const std::int32_t> chunk) {
    const auto start = std::chrono::steady_clock::now();
    const auto& c = w_.config;
    // The old slots of every layer (all equal unless the layers keep budgets of their own).
    const std::size_t old_slots = layer_sizes(*main_, old_sizes_);
    const bool first = stats_.chunks == 0;
    if (!traits_.evicts && first_cached_layer() < c.num_layers &&
        main_->position() + chunk.size() > main_->cache().capacity(first_cached_layer()))
      PITH_THROW(argument_error, "reader: policy full keeps every state and the document exceeds its " +
                                     std::to_string(main_->cache().capacity(first_cached_layer())) +
                                     " rows (raise max_context)");
    // Instruction-aware scores over the old cache, before the chunk (CItruS shared / separate).
    std::vector<float> instruction_cut;
    std::size_t instruction_old = 0;
    // citrus-shared: the instruction rides along in the chunk's own forward (weights read once).
    // (A policy that also wants the chunk's own scores needs the chunk's pass to record those instead.)
    const bool fused = !first && traits_.instruction_scores && !traits_.separate_cache && !traits_.chunk_scores &&
                       main_->supports_side_queries();
    if (fused) {
      main_->set_scoring({true, 0, false, traits_.count_weighted});
      last_logits_.resize(c.vocab_size);
      main_->forward_with_side(chunk, instruction_, last_logits_.data());
      main_->set_scoring({});
      aggregate(*main_, old_sizes_, old_slots, traits_.per_head, instruction_cut);
    } else if (!first && traits_.instruction_scores) {
      const auto t0 = std::chrono::steady_clock::now();
      session& scored = traits_.separate_cache ? *instruction_session_ : *main_;
      instruction_scores(scored);
      instruction_old = scored_stride_;
      instruction_sizes_ = scored_sizes_;
      instruction_cut = scores_;
      stats_.instruction_seconds += seconds_since(t0);
    }
    // The chunk itself, scoring with its own attention where the policy needs it.
    const bool chunk_scored = !first && traits_.chunk_scores;
    if (!fused) {
      main_->set_scoring({chunk_scored || traits_.accumulates, traits_.last_queries, traits_.squares});
      last_logits_.resize(c.vocab_size);
      observe_queries(true);
      main_->forward(chunk, last_logits_.data());
      observe_queries(false);
      main_->set_scoring({});
    }
    append_document_positions(chunk.size());
    if (traits_.value_weights) append_value_weights(chunk.size());
    if (traits_.accumulates) accumulate(old_slots, chunk.size());
    const auto t1 = std::chrono::steady_clock::now();
    if (!first && traits_.evicts) {
      std::vector<float> chunk_scores;
      if (chunk_scored) aggregate(*main_, old_sizes_, old_slots, traits_.per_head, chunk_scores);
      const policy_kind policy = options_.policy;
      if (traits_.separate_cache) {
        evict(*main_, document_positions_, old_sizes_, old_slots,
              citrus_cut_scores(policy, citrus_cut::reading, chunk_scores, instruction_cut), {}, false);
        copy_chunk_to_instruction_cache(chunk.size());
        evict(*instruction_session_, instruction_document_positions_, instruction_sizes_, instruction_old,
              citrus_cut_scores(policy, citrus_cut::instruction_cache, chunk_scores, instruction_cut), {}, false);
      } else if (policy == policy_kind::custom) {
        evict(*main_, document_positions_, old_sizes_, old_slots, chunk_scores, instruction_cut, false);
      } else if (is_citrus(policy)) {
        evict(*main_, document_positions_, old_sizes_, old_slots,
              citrus_cut_scores(policy, citrus_cut::reading, chunk_scores, instruction_cut), {}, false);
      } else if (traits_.instruction_scores) {  // snapkv-question, finch: the instruction's scores
        evict(*main_, document_positions_, old_sizes_, old_slots, instruction_cut, {}, false);
      } else {
        evict(*main_, document_positions_, old_sizes_, old_slots, chunk_scores, {}, false);
      }
    } else if (traits_.separate_cache) {
      copy_chunk_to_instruction_cache(chunk.size());
    }
    stats_.eviction_seconds += seconds_since(t1);
    stats_.tokens_read += chunk.size();
    ++stats_.chunks;
    stats_.reading_seconds += seconds_since(start);
  }

  // The first layer the policy acts on; num_layers when there is none (every layer windowed or recurrent).
  std::size_t first_cached_layer() const noexcept {
    for (std::size_t l = 0; l < w_.config.num_layers; ++l)
      if (evicted_layer(l)) return l;
    return w_.config.num_layers;
  }

  // Layers without a KV cache have no slots and sliding-window layers keep their last W tokens: their
  // lists stay empty (they would grow with the document).
  void append_document_positions(std::size_t count) {
    const auto& c = w_.config;
    for (std::size_t l = 0; l < c.num_layers; ++l) {
      if (!evicted_layer(l)) continue;
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
      if (!evicted_layer(l)) continue;
      for (std::size_t g = 0; g < c.num_kv_heads; ++g)
        running_.add(l * c.num_kv_heads + g, recorded(*main_, l, g * group, group, total),
                     traits_.squares ? recorded(*main_, l, g * group, group, total, true) : head_scores{},
                     main_->scored_queries(l), old_slots);
    }
  }

  // CriticalKV's value weights (critical_value_weights) of the `count` newest rows of every KV head of
  // the layers the policy acts on, kept beside the slots (a value never changes once cached, so each is
  // computed once): W_o's columns of each query head as floats ([heads][hidden][head_dim], W_o's rows
  // read in its storage type), times the rows' values as the cache holds them, per query head of the group.
  // Rows go through in blocks of at most 256 (oneshot appends the whole document at once).
  void append_value_weights(std::size_t count) {
    constexpr std::size_t block = 256;
    const executor_scope on(options_.executor.get());  // the kernels run where the sessions run
    const auto& c = w_.config;
    const std::size_t d = c.head_dim, hidden = c.hidden_size, heads = c.num_heads, group = heads / c.num_kv_heads;
    const kv_cache& cache = main_->cache();
    wo_heads_.resize(heads * hidden * d);
    wo_row_.resize(heads * d);
    value_rows_.resize(std::min(count, block) * d);
    projected_.resize(group * std::min(count, block) * hidden);
    for (std::size_t l = 0; l < c.num_layers; ++l) {
      if (!evicted_layer(l)) continue;
      for (std::size_t r = 0; r < hidden; ++r) {
        kernels::embedding_row(w_.layers[l].wo, r, wo_row_.data());
        for (std::size_t h = 0; h < heads; ++h) std::copy_n(wo_row_.data() + h * d, d, wo_heads_.data() + (h * hidden + r) * d);
      }
      for (std::size_t g = 0; g < c.num_kv_heads; ++g) {
        auto& list = value_weights_[l * c.num_kv_heads + g];
        const std::size_t first = cache.size(l, g) - count, before = list.size();
        list.resize(before + count);
        for (std::size_t b = 0; b < count; b += block) {
          const std::size_t rows = std::min(block, count - b);
          for (std::size_t j = 0; j < rows; ++j) cache.read_value(l, g, first + b + j, value_rows_.data() + j * d);
          for (std::size_t h = 0; h < group; ++h)
            kernels::matmul_transposed(value_rows_.data(), rows, d, d, wo_heads_.data() + (g * group + h) * hidden * d,
                                       hidden, projected_.data() + h * rows * hidden, hidden);
          critical_value_weights(std::span<const float>(projected_).first(group * rows * hidden), group, rows, hidden,
                                 std::span(list).subspan(before + b, rows));
        }
      }
    }
  }

  // expected-attention: while a reading pass runs, every full-attention layer's pre-RoPE queries of the
  // document's tokens go into moments_ (query head by query head), the first `sink` document tokens'
  // excepted (kvpress's n_sink: their queries are outliers). Instruction and answer passes add nothing.
  void observe_queries(bool on) {
    if (!traits_.query_statistics) return;
    if (!on) return main_->set_query_observer({});
    observed_rows_.assign(w_.config.num_layers, 0);
    main_->set_query_observer([this](std::size_t l, const float* q, std::size_t rows, std::size_t stride) {
      if (!evicted_layer(l)) return;
      const std::size_t first = document_read_ + observed_rows_[l];  // the rows' first document position
      observed_rows_[l] += rows;
      const std::size_t skip = std::min(rows, first < options_.sink ? options_.sink - first : 0);
      const std::size_t heads = w_.config.num_heads, d = w_.config.head_dim;
      for (std::size_t h = 0; h < heads; ++h) moments_.add(l * heads + h, q + skip * stride + h * d, rows - skip, stride);
    });
  }

  // expected-attention's scores of one KV head's old slots (docs/eviction.md) into expected_scores_: per
  // query head of the group, the logits k_j . R mu / sqrt(d) + k_j^T R S R^T k_j / (2 d) over the cached
  // keys (R averaged over expected_positions positions from the session's next one), then
  // expected_attention_scores (softmax per head over the non-sink slots, group mean, times ||v_j||).
  void expected_attention(const eviction_view& view, std::size_t sink) {
    const executor_scope on(options_.executor.get());  // the GEMM runs where the sessions run
    const auto& c = w_.config;
    const std::size_t n = view.old_slots, d = c.head_dim, group = c.num_heads / c.num_kv_heads;
    if (rotation_position_ != main_->position() || rotation_cos_.empty()) {
      average_rotation(frequencies_, main_->position(), options_.expected_positions, rotation_cos_, rotation_sin_);
      rotation_position_ = main_->position();
    }
    expected_mean_.resize(d);
    expected_covariance_.resize(d * d);
    projected_.resize(n * d);
    expected_logits_.resize(group * n);
    const float inv_sqrt_d = 1.0f / std::sqrt(static_cast<float>(d)), inv_2d = 1.0f / static_cast<float>(2 * d);
    for (std::size_t i = 0; i < group; ++i) {
      moments_.moments(view.layer * c.num_heads + view.head * group + i, mean64_, covariance64_);
      rotate_moments(c.rope, rotation_cos_, rotation_sin_, mean64_, covariance64_, expected_mean_, expected_covariance_);
      // K C (C symmetric, so C^T) with the kernels' GEMM; then each key's two dot products.
      kernels::matmul_transposed(view.keys.data(), n, d, d, expected_covariance_.data(), d, projected_.data(), d);
      for (std::size_t j = 0; j < n; ++j) {
        const float* k = view.keys.data() + j * d;
        float linear = 0.0f, quadratic = 0.0f;
        for (std::size_t a = 0; a < d; ++a) {
          linear += k[a] * expected_mean_[a];
          quadratic += k[a] * projected_[j * d + a];
        }
        expected_logits_[i * n + j] = linear * inv_sqrt_d + quadratic * inv_2d;
      }
    }
    value_rows_.resize(d);
    value_norms_.resize(n);
    for (std::size_t j = 0; j < n; ++j) {
      main_->cache().read_value(view.layer, view.head, j, value_rows_.data());
      double squares = 0.0;
      for (const float v : value_rows_) squares += static_cast<double>(v) * v;
      value_norms_[j] = static_cast<float>(std::sqrt(squares));
    }
    expected_scores_.resize(n);
    expected_attention_scores(expected_logits_, group, sink, value_norms_, expected_scores_);
  }

  void copy_chunk_to_instruction_cache(std::size_t count) {
    const auto& c = w_.config;
    kv_cache& from = main_->cache();
    kv_cache& to = instruction_session_->cache();
    const std::size_t row = from.row_bytes();  // both caches store the reader's kv_type
    for (std::size_t l = 0; l < c.num_layers; ++l) {
      if (windowed_layer(l)) {
        // A sliding-window layer holds the same latest tokens in both caches: the instruction cache takes
        // C_lm's rows (and their positions) whole.
        for (std::size_t g = 0; g < c.num_kv_heads; ++g) {
          const std::size_t rows = from.size(l, g);
          std::copy_n(from.key_data(l, g), rows * row, to.key_data(l, g));
          std::copy_n(from.value_data(l, g), rows * row, to.value_data(l, g));
          std::copy_n(from.positions(l, g), rows, to.positions(l, g));
          to.set_size(l, g, rows);
        }
        continue;
      }
      if (!evicted_layer(l)) continue;
      for (std::size_t g = 0; g < c.num_kv_heads; ++g) {
        const std::size_t source = from.size(l, g) - count, target = to.size(l, g);
        std::copy_n(from.key_data(l, g) + source * row, count * row, to.key_data(l, g) + target * row);
        std::copy_n(from.value_data(l, g) + source * row, count * row, to.value_data(l, g) + target * row);
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

  // Keeps, per layer (or per KV head), the layer's budget's worth of its oldest slots (sizes[l * kv_heads
  // + g] of head g) chosen by the policy plus every newer slot; compacts and, in reindexed mode,
  // renumbers and re-rotates. Under AdaKV the layer's kv_heads x budget is shared by its heads
  // (select_adakv). scores / instruction: unit-major ([layer][unit][stride], a unit's first old-slot
  // count entries of a row) or empty; built-in rules read `scores`.
  void evict(session& s, std::vector<std::vector<std::int64_t>>& positions, std::span<const std::size_t> sizes,
             std::size_t stride, std::span<const float> scores, std::span<const float> instruction, bool final_cut) {
    const auto& c = w_.config;
    const bool per_head = traits_.per_head;
    const std::size_t units = per_head ? c.num_kv_heads : 1;
    bool evicted = false;
    for (std::size_t l = 0; l < c.num_layers; ++l) {
      if (!evicted_layer(l)) continue;
      const std::size_t k = layer_budgets_[l];
      if (traits_.head_adaptive) {
        evicted = adakv_evict(s, positions, l, sizes.subspan(l * c.num_kv_heads, c.num_kv_heads), stride, scores,
                              final_cut) || evicted;
        continue;
      }
      const std::size_t old_slots = sizes[l * c.num_kv_heads];  // every head of the layer holds as many
      const auto unit_scores = [&](std::span<const float> all, std::size_t unit) {
        return all.empty() ? all : all.subspan((l * units + unit) * stride, old_slots);
      };
      const std::size_t total = s.cache().size(l, 0);
      if (old_slots <= k) continue;
      evicted = true;
      for (std::size_t unit = 0; unit < units; ++unit) {
        eviction_view view;
        view.layer = l;
        view.head = unit;
        view.old_slots = old_slots;
        view.budget = k;
        view.scores = unit_scores(scores, unit);
        view.instruction_scores = unit_scores(instruction, unit);
        view.document_positions = std::span(positions[l * c.num_kv_heads + unit]).first(old_slots);
        view.final_cut = final_cut;
        if (traits_.keys) old_keys(s, l, per_head ? unit : c.num_kv_heads, old_slots, view);
        select(view, keep_);
        check_selection(keep_, view, policy_name(options_.policy));
        keep_newest(keep_, old_slots, total);
        const std::size_t first_head = per_head ? unit : 0, last_head = per_head ? unit + 1 : c.num_kv_heads;
        for (std::size_t g = first_head; g < last_head; ++g) {
          compact(s.cache(), l, g, keep_);
          gather_kept(positions[l * c.num_kv_heads + g], keep_);
          if (traits_.accumulates && &s == main_.get()) running_.gather(l * c.num_kv_heads + g, keep_);
          if (traits_.value_weights && &s == main_.get()) gather_kept(value_weights_[l * c.num_kv_heads + g], keep_);
        }
      }
    }
    if (evicted && options_.positions == position_mode::reindexed) {
      // Every head's slots end just before the next position, the largest head's count (all heads hold
      // the same count unless the layers (pyramidkv) or the heads (AdaKV) keep budgets of their own; a
      // smaller one then starts above 0).
      std::size_t top = 0;
      for (std::size_t l = 0; l < c.num_layers; ++l)
        if (evicted_layer(l))
          for (std::size_t g = 0; g < c.num_kv_heads; ++g) top = std::max(top, s.cache().size(l, g));
      const auto renumber_ending_at_top = [&](std::size_t l, std::size_t g) {
        const std::size_t rows = s.cache().size(l, g);
        renumbered_.resize(rows);
        std::iota(renumbered_.begin(), renumbered_.end(), static_cast<std::int64_t>(top) - static_cast<std::int64_t>(rows));
        s.rerotate(l, g, renumbered_);
      };
      for (std::size_t l = 0; l < c.num_layers; ++l)
        if (evicted_layer(l))
          for (std::size_t g = 0; g < c.num_kv_heads; ++g) renumber_ending_at_top(l, g);
      // A sliding-window layer's rows are the latest tokens: they keep their distances to the next
      // position, now `top` (the oldest may fall below 0, which RoPE rotates backwards alike).
      for (std::size_t l = 0; l < c.num_layers; ++l)
        if (windowed_layer(l))
          for (std::size_t g = 0; g < c.num_kv_heads; ++g) renumber_ending_at_top(l, g);
      s.set_position(top);
    }
  }

  // AdaKV on layer l (docs/eviction.md, "AdaKV"): head g's n_g = sizes[g] old slots scored by the
  // policy (adakv_scores), the layer's kv_heads x k shared by select_adakv, each head compacted with
  // its own list plus its newest slots. Returns whether the layer was cut (its old slots exceeded
  // kv_heads x k).
  bool adakv_evict(session& s, std::vector<std::vector<std::int64_t>>& positions, std::size_t l,
                   std::span<const std::size_t> sizes, std::size_t stride, std::span<const float> scores, bool final_cut) {
    const std::size_t heads = w_.config.num_kv_heads, k = layer_budgets_[l];
    std::size_t old = 0;
    for (const std::size_t n : sizes) old += n;
    if (old <= heads * k) return false;
    head_scores_.resize(heads);
    head_spans_.resize(heads);
    for (std::size_t g = 0; g < heads; ++g) {
      eviction_view view;
      view.layer = l;
      view.head = g;
      view.old_slots = sizes[g];
      view.budget = k;
      view.scores = scores.empty() ? scores : scores.subspan((l * heads + g) * stride, sizes[g]);
      view.final_cut = final_cut;
      if (traits_.keys) old_keys(s, l, g, sizes[g], view);
      adakv_scores(view, head_scores_[g]);
      head_spans_[g] = head_scores_[g];
    }
    select_adakv(head_spans_, k, options_.adakv_alpha, head_keep_, scratch_);
    for (std::size_t g = 0; g < heads; ++g) {
      keep_newest(head_keep_[g], sizes[g], s.cache().size(l, g));
      compact(s.cache(), l, g, head_keep_[g]);
      gather_kept(positions[l * heads + g], head_keep_[g]);
    }
    return true;
  }

  // The score of each old slot of one KV head that AdaKV ranks (combines_with_adakv's policies): what
  // the policy's own top-k ranks, taken per KV head (the mean over the head's query group).
  void adakv_scores(const eviction_view& view, std::vector<float>& out) {
    switch (options_.policy) {
      case policy_kind::snapkv:
      case policy_kind::snapkv_question: return pool_scores(view.scores, options_.snapkv_kernel, options_.snapkv_pool, out);
      case policy_kind::citrus_cse:
      case policy_kind::citrus_shared:
        if (options_.citrus_pool > 1) return average_pool(view.scores, options_.citrus_pool, out);
        out.assign(view.scores.begin(), view.scores.end());
        return;
      case policy_kind::tova: out.assign(view.scores.begin(), view.scores.end()); return;
      case policy_kind::knorm:
        out.resize(view.old_slots);
        return key_norm_scores(view.keys, view.head_dim, out);
      case policy_kind::keydiff:
        out.resize(view.old_slots);
        return keydiff_scores(view.keys, view.head_dim, out, scratch_.anchor);
      default: break;
    }
    check_adakv_combines(options_.policy);  // the constructor refused the others already
  }

  // The old slots' keys of layer l as floats into view.keys: KV head `head`'s (a per-head view) or every
  // KV head's (head == num_kv_heads: a per-layer view). An F32 cache's rows of one head are read in place.
  void old_keys(const session& s, std::size_t l, std::size_t head, std::size_t old_slots, eviction_view& view) {
    const auto& cache = s.cache();
    const std::size_t d = w_.config.head_dim;
    const std::size_t first = head == w_.config.num_kv_heads ? 0 : head;
    const std::size_t last = head == w_.config.num_kv_heads ? w_.config.num_kv_heads : head + 1;
    view.key_heads = last - first;
    view.head_dim = d;
    if (cache.kv_type() == dtype::f32 && view.key_heads == 1) {
      view.keys = std::span<const float>(cache.keys(l, first), old_slots * d);
      return;
    }
    keys_.resize(view.key_heads * old_slots * d);
    for (std::size_t g = first; g < last; ++g)
      for (std::size_t j = 0; j < old_slots; ++j) cache.read_key(l, g, j, keys_.data() + ((g - first) * old_slots + j) * d);
    view.keys = keys_;
  }

  // The policy's rule (cache/eviction_blocks.hpp) on one view.
  void select(const eviction_view& view, std::vector<std::uint32_t>& keep) {
    const std::size_t n = view.old_slots, k = view.budget;
    const std::size_t unit = view.layer * w_.config.num_kv_heads + view.head;
    switch (options_.policy) {
      case policy_kind::custom: {
        if (options_.citrus_pool <= 1) return custom_(view, keep);
        eviction_view pooled = view;
        if (!view.scores.empty()) {
          average_pool(view.scores, options_.citrus_pool, pooled_scores_);
          pooled.scores = pooled_scores_;
        }
        if (!view.instruction_scores.empty()) {
          average_pool(view.instruction_scores, options_.citrus_pool, pooled_instruction_);
          pooled.instruction_scores = pooled_instruction_;
        }
        return custom_(pooled, keep);
      }
      case policy_kind::streaming: return select_streaming(n, k, options_.sink, keep);
      case policy_kind::snapkv:
      case policy_kind::snapkv_question:
      case policy_kind::pyramidkv:
      case policy_kind::finch:
        return select_snapkv(view.scores, k, options_.snapkv_kernel, keep, scratch_, options_.snapkv_pool);
      case policy_kind::expected_attention:
        expected_attention(view, std::min(options_.sink, k));
        return select_top_k(expected_scores_, k, keep, scratch_);
      case policy_kind::criticalkv:
        return select_criticalkv(view.scores, std::span<const float>(value_weights_[unit]).first(n), k, options_.snapkv_kernel,
                                 options_.snapkv_pool, keep, scratch_);
      case policy_kind::chunkkv:
        return select_chunkkv(view.scores, k, options_.snapkv_kernel, options_.snapkv_pool, options_.chunkkv_size, keep,
                              scratch_);
      case policy_kind::citrus_cse:
      case policy_kind::citrus_shared:
      case policy_kind::citrus_separate: return select_citrus(view.scores, k, options_.citrus_pool, keep, scratch_);
      case policy_kind::h2o: return select_h2o(running_.sums(unit).first(n), k, options_.sink, keep, scratch_);
      case policy_kind::roco:
        return select_roco(running_.sums(unit).first(n), running_.squares(unit).first(n), running_.counts(unit).first(n),
                           k, options_.sink, keep, scratch_);
      case policy_kind::observed_attention:
        return select_observed_attention(running_.sums(unit).first(n), running_.counts(unit).first(n), k, keep, scratch_);
      case policy_kind::tova: return select_tova(view.scores, k, keep, scratch_);
      case policy_kind::random: return select_random(n, k, random_, keep, scratch_);
      case policy_kind::knorm: return select_knorm(view.keys, view.head_dim, k, keep, scratch_);
      case policy_kind::keydiff: return select_keydiff(view.keys, view.head_dim, k, keep, scratch_);
      case policy_kind::full: break;  // never evicts
    }
    PITH_THROW(argument_error, std::string("reader: policy ") + policy_name(options_.policy) + " has no selection rule");
  }

  const model_weights& w_;
  reader_options options_;
  policy_traits traits_;
  std::vector<std::int32_t> instruction_;  // what the reading is guided by
  std::vector<std::int32_t> question_;     // what answer() asks: the instruction unless told otherwise
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
  running_scores running_;  // h2o, roco, observed-attention: [layers * kv_heads] units
  splitmix64 random_;       // random: the selection's draws
  std::vector<std::size_t> layer_budgets_;  // per layer: the old slots it keeps (0: a layer the policy does not act on)
  std::vector<std::size_t> old_sizes_;      // per (layer, KV head): the old slots of the chunk being read
  std::vector<std::size_t> scored_sizes_;   // per (layer, KV head): the slots the last instruction pass scored
  std::vector<std::size_t> instruction_sizes_;  // per (layer, KV head): the old slots of the cache the instruction scored
  std::size_t scored_stride_ = 0;           // the largest of scored_sizes_ (the row stride of scores_)
  std::vector<float> keys_;                 // old_keys's decoded keys
  // criticalkv: [layers * kv_heads][slot] value weights beside the slots; append_value_weights's scratch
  std::vector<std::vector<float>> value_weights_;
  std::vector<float> wo_heads_, wo_row_, value_rows_, projected_;
  // expected-attention: the document's query statistics ([layers * heads] units), the RoPE frequencies,
  // the averaged rotation (for rotation_position_) and expected_attention's scratch
  query_moments moments_;
  std::vector<float> frequencies_;
  std::vector<std::size_t> observed_rows_;
  std::vector<double> rotation_cos_, rotation_sin_, mean64_, covariance64_;
  std::size_t rotation_position_ = 0;
  std::vector<float> expected_mean_, expected_covariance_, expected_logits_, value_norms_, expected_scores_;
  std::size_t document_read_ = 0;
  bool answered_ = false;
  reader_stats stats_;
  std::vector<std::uint32_t> keep_;
  selection_scratch scratch_;
  std::vector<float> pooled_scores_, pooled_instruction_;  // a custom policy's pooled view
  std::vector<std::int64_t> renumbered_;
  std::vector<std::vector<float>> head_scores_;           // AdaKV: each KV head's scores of its old slots
  std::vector<std::span<const float>> head_spans_;        // views of head_scores_
  std::vector<std::vector<std::uint32_t>> head_keep_;     // AdaKV: each KV head's kept slots
};

}  // namespace PITH_ISA_NAMESPACE

}  // namespace pith
