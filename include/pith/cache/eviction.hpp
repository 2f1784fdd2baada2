// SPDX-License-Identifier: MIT
// Eviction policies: which cached states survive a chunk (docs/eviction.md). A policy is a small set
// of choices (which queries score, how scores aggregate, per layer or per KV head, what is
// protected); users plug in their own through the eviction_policy concept.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pith/core/error.hpp"

namespace pith {

enum class policy_kind {
  full, streaming, h2o, tova, snapkv, roco, citrus_cse, citrus_shared, citrus_separate,
  random, knorm, observed_attention, chunkkv, snapkv_question, keydiff, pyramidkv, finch,
  criticalkv, expected_attention, custom
};

inline constexpr policy_kind builtin_policies[] = {
    policy_kind::full,          policy_kind::streaming,       policy_kind::h2o,       policy_kind::tova,
    policy_kind::snapkv,        policy_kind::roco,            policy_kind::citrus_cse, policy_kind::citrus_shared,
    policy_kind::citrus_separate, policy_kind::random,        policy_kind::knorm,     policy_kind::observed_attention,
    policy_kind::chunkkv,       policy_kind::snapkv_question, policy_kind::keydiff,   policy_kind::pyramidkv,
    policy_kind::finch,         policy_kind::criticalkv,      policy_kind::expected_attention};

inline const char* policy_name(policy_kind kind) noexcept {
  switch (kind) {
    case policy_kind::full: return "full";
    case policy_kind::streaming: return "streaming";
    case policy_kind::h2o: return "h2o";
    case policy_kind::tova: return "tova";
    case policy_kind::snapkv: return "snapkv";
    case policy_kind::roco: return "roco";
    case policy_kind::citrus_cse: return "citrus-cse";
    case policy_kind::citrus_shared: return "citrus-shared";
    case policy_kind::citrus_separate: return "citrus-separate";
    case policy_kind::random: return "random";
    case policy_kind::knorm: return "knorm";
    case policy_kind::observed_attention: return "observed-attention";
    case policy_kind::chunkkv: return "chunkkv";
    case policy_kind::snapkv_question: return "snapkv-question";
    case policy_kind::keydiff: return "keydiff";
    case policy_kind::pyramidkv: return "pyramidkv";
    case policy_kind::finch: return "finch";
    case policy_kind::criticalkv: return "criticalkv";
    case policy_kind::expected_attention: return "expected-attention";
    case policy_kind::custom: return "custom";
  }
  return "?";
}

/// Every built-in policy's name, comma-separated ("full, streaming, ..."): for messages and --help.
inline std::string policy_names() {
  std::string names;
  for (const policy_kind kind : builtin_policies) names += (names.empty() ? "" : ", ") + std::string(policy_name(kind));
  return names;
}

inline policy_kind parse_policy(std::string_view name) {
  for (const policy_kind kind : builtin_policies)
    if (name == policy_name(kind)) return kind;
  PITH_THROW(argument_error, "unknown eviction policy '" + std::string(name) + "' (" + policy_names() + ")");
}

/// Whether a policy is one of CItruS's variants (citrus-cse, citrus-shared, citrus-separate).
constexpr bool is_citrus(policy_kind kind) noexcept {
  return kind == policy_kind::citrus_cse || kind == policy_kind::citrus_shared || kind == policy_kind::citrus_separate;
}

/// Whether AdaKV's head-adaptive budgets (reader_options::head_adaptive, docs/eviction.md "AdaKV")
/// combine with a built-in policy: those whose rule is a top-k of one score per slot that can be taken
/// per KV head, on a scale shared by the heads (attention probabilities, key norms, cosines). Not:
/// full (evicts nothing), streaming and random (no scores), h2o and roco (protected slots, RoCo's
/// two-stage rule), observed-attention (running statistics), chunkkv (whole chunks), pyramidkv (its
/// own allocation over layers), citrus-separate (two caches cut in step) and custom policies (they
/// return keep lists, not scores).
constexpr bool combines_with_adakv(policy_kind kind) noexcept {
  switch (kind) {
    case policy_kind::snapkv:
    case policy_kind::snapkv_question:
    case policy_kind::tova:
    case policy_kind::citrus_cse:
    case policy_kind::citrus_shared:
    case policy_kind::knorm:
    case policy_kind::keydiff: return true;
    default: return false;
  }
}

/// The policies AdaKV combines with, comma-separated (for messages and --help).
inline std::string adakv_policy_names() {
  std::string names;
  for (const policy_kind kind : builtin_policies)
    if (combines_with_adakv(kind)) names += (names.empty() ? "" : ", ") + std::string(policy_name(kind));
  return names;
}

/// Throws argument_error naming the policy when AdaKV does not combine with it.
inline void check_adakv_combines(policy_kind kind) {
  if (!combines_with_adakv(kind))
    PITH_THROW(argument_error, std::string("adakv(") + policy_name(kind) + "): AdaKV's head-adaptive budgets need a " +
                                   "per-head top-k scorer; " + policy_name(kind) + " is not one (adakv combines with " +
                                   adakv_policy_names() + ")");
}

/// A policy as the programs name it: a built-in name ("snapkv"), or "adakv(NAME)" for AdaKV's
/// head-adaptive budgets over NAME's scores.
struct policy_label {
  policy_kind kind = policy_kind::citrus_shared;
  bool head_adaptive = false;
};

/// "NAME" or "adakv(NAME)". Throws argument_error for an unknown name, a malformed adakv(...) or a
/// policy AdaKV does not combine with (naming it).
inline policy_label parse_policy_label(std::string_view text) {
  constexpr std::string_view open = "adakv(";
  if (text.substr(0, open.size()) == open) {
    if (text.size() <= open.size() || text.back() != ')')
      PITH_THROW(argument_error, "policy '" + std::string(text) + "': write adakv(NAME), e.g. adakv(snapkv)");
    const policy_kind kind = parse_policy(text.substr(open.size(), text.size() - open.size() - 1));
    check_adakv_combines(kind);
    return {kind, true};
  }
  return {parse_policy(text), false};
}

/// "snapkv" or "adakv(snapkv)".
inline std::string policy_label_name(policy_kind kind, bool head_adaptive) {
  return head_adaptive ? "adakv(" + std::string(policy_name(kind)) + ")" : std::string(policy_name(kind));
}

/// How the SnapKV family (snapkv, snapkv-question, chunkkv, pyramidkv, finch, criticalkv) pools its scores over
/// neighbouring slots: `average` (zero padding, divided by the kernel: SnapKV's code, kvpress) or `max`
/// (the largest score in the window, the window clipped at both ends: the SnapKV paper's LongBench runs).
enum class pool_mode { average, max };

inline const char* pool_mode_name(pool_mode mode) noexcept { return mode == pool_mode::max ? "max" : "avg"; }

/// "avg" (or "average") and "max".
inline pool_mode parse_pool_mode(std::string_view name) {
  if (name == "avg" || name == "average") return pool_mode::average;
  if (name == "max") return pool_mode::max;
  PITH_THROW(argument_error, "unknown pooling mode '" + std::string(name) + "' (avg, max)");
}

/// The choices that make up a built-in policy.
struct policy_traits {
  bool evicts = true;              // false: full
  bool per_head = false;           // selection per KV head (else one set per layer, all heads)
  bool chunk_scores = false;       // scores come from the chunk's own attention
  std::size_t last_queries = 0;    // only the chunk's last queries score (0: all)
  bool squares = false;            // also the mean of squared probabilities (RoCo)
  bool accumulates = false;        // scores persist and accumulate across chunks (H2O, RoCo, ObservedAttention)
  bool instruction_scores = false; // the instruction's attention scores (CItruS, question-aware SnapKV)
  bool separate_cache = false;     // a second, instruction-scored cache (CItruS separate)
  bool final_cut = false;          // the final instruction-scored cut to the budget before answering
  bool keys = false;               // the selection reads the cached keys (KnormPress, KeyDiff)
  bool layer_budgets = false;      // each layer keeps its own budget (PyramidKV)
  bool count_weighted = false;     // each scoring query weighs as many keys as it sees (FinchPress)
  bool value_weights = false;      // the selection weighs each slot's value through W_o (CriticalKV)
  bool query_statistics = false;   // running moments of the document's pre-RoPE queries (ExpectedAttention)
  bool head_adaptive = false;      // AdaKV: the layer's budget shared unequally by its KV heads (per_head too)
};

inline policy_traits traits_of(policy_kind kind, std::size_t snapkv_window) noexcept {
  policy_traits t;
  switch (kind) {
    case policy_kind::full: t.evicts = false; break;
    case policy_kind::streaming: break;
    case policy_kind::h2o: t.per_head = t.chunk_scores = t.accumulates = true; break;
    case policy_kind::tova: t.chunk_scores = true; t.last_queries = 1; break;
    case policy_kind::snapkv: t.per_head = t.chunk_scores = true; t.last_queries = snapkv_window; break;
    case policy_kind::roco: t.per_head = t.chunk_scores = t.accumulates = t.squares = true; break;
    case policy_kind::citrus_cse: t.chunk_scores = t.final_cut = true; break;
    case policy_kind::citrus_shared: t.instruction_scores = t.final_cut = true; break;
    case policy_kind::citrus_separate:
      t.chunk_scores = t.instruction_scores = t.separate_cache = t.final_cut = true;
      break;
    case policy_kind::random: t.per_head = true; break;
    case policy_kind::knorm:
    case policy_kind::keydiff: t.per_head = t.keys = true; break;
    case policy_kind::observed_attention: t.per_head = t.chunk_scores = t.accumulates = true; break;
    case policy_kind::chunkkv: t.chunk_scores = true; t.last_queries = snapkv_window; break;
    case policy_kind::snapkv_question: t.per_head = t.instruction_scores = t.final_cut = true; break;
    case policy_kind::finch: t.per_head = t.instruction_scores = t.final_cut = t.count_weighted = true; break;
    case policy_kind::expected_attention: t.per_head = t.keys = t.query_statistics = true; break;
    case policy_kind::criticalkv:
      t.per_head = t.chunk_scores = t.value_weights = true;
      t.last_queries = snapkv_window;
      break;
    case policy_kind::pyramidkv:
      t.per_head = t.chunk_scores = t.layer_budgets = true;
      t.last_queries = snapkv_window;
      break;
    case policy_kind::custom: t.chunk_scores = true; break;
  }
  return t;
}

/// What a policy sees when it chooses the old slots of one layer (or one KV head) to keep.
struct eviction_view {
  std::size_t layer = 0;
  std::size_t head = 0;                      // the KV head for per-head policies, else 0
  std::size_t old_slots = 0;                 // candidates: slots [0, old_slots)
  std::size_t budget = 0;                    // keep at most this many
  // [old_slots]: mean attention from the chunk's queries, over all query heads (per layer) or the
  // KV head's group (per head). Empty when the policy did not ask for it (policy_request) and at the
  // final cut. Pooled when reader_options::citrus_pool > 1.
  std::span<const float> scores;
  // [old_slots]: the same mean from the instruction's queries over the same old slots (CItruS's
  // instruction pass, docs/eviction.md), when the policy asked for it; pooled like `scores`.
  std::span<const float> instruction_scores;
  std::span<const std::int64_t> document_positions;  // [old_slots]: where each slot came from
  // The cached keys of the old slots as floats (after RoPE, at the positions the cache holds them at),
  // when the policy asked for them (policy_request::keys): [key_heads][old_slots][head_dim], the view's
  // KV head alone (key_heads 1) for a per-head view, every KV head of the layer for a per-layer view.
  std::span<const float> keys;
  std::size_t key_heads = 0;
  std::size_t head_dim = 0;
  bool final_cut = false;  // the cut to the budget before the answer (policy_request::final_cut)
};

/// What a user-defined policy asks the reader for. A policy type declares it as a static member
/// (`static constexpr pith::policy_request request{.chunk_scores = false, .instruction_scores = true};`)
/// or passes it to reader::use_policy; without either it gets the defaults: the chunk's scores, per
/// layer, no final cut.
struct policy_request {
  bool chunk_scores = true;         // eviction_view::scores
  bool instruction_scores = false;  // eviction_view::instruction_scores: an instruction pass per chunk
  bool per_head = false;            // one selection per KV head (scores averaged over its group)
  bool final_cut = false;           // before answering: a cut to the budget with instruction_scores only
  bool keys = false;                // eviction_view::keys: the old slots' cached keys as floats
};

/// The traits the reader runs a user-defined policy with.
inline policy_traits traits_of(const policy_request& request) noexcept {
  policy_traits t;
  t.chunk_scores = request.chunk_scores;
  t.instruction_scores = request.instruction_scores;
  t.per_head = request.per_head;
  t.final_cut = request.final_cut;
  t.keys = request.keys;
  return t;
}

/// P::request when P declares one (a static member convertible to policy_request), else the defaults.
template <class P>
constexpr policy_request request_of() noexcept {
  if constexpr (requires { { P::request } -> std::convertible_to<policy_request>; })
    return P::request;
  else
    return {};
}

/// A user-defined policy: `select` fills `keep` with sorted, unique slot indices below
/// view.old_slots, at most view.budget of them (the newest chunk is kept by the reader).
template <class P>
concept eviction_policy = requires(P& policy, const eviction_view& view, std::vector<std::uint32_t>& keep) {
  policy.select(view, keep);
};

/// keep = the k highest scores among [0, scores.size()), ties to the lower index, in slot order.
inline void top_k(std::span<const float> scores, std::size_t k, std::vector<std::uint32_t>& keep,
                  std::vector<std::uint32_t>& order) {
  order.resize(scores.size());
  std::iota(order.begin(), order.end(), 0u);
  k = std::min(k, order.size());
  const auto better = [&](std::uint32_t a, std::uint32_t b) { return scores[a] > scores[b] || (scores[a] == scores[b] && a < b); };
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(), better);
  keep.assign(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k));
  std::sort(keep.begin(), keep.end());
}

/// Checks a policy's answer: sorted, unique, in range, within the budget; throws naming the policy.
inline void check_selection(std::span<const std::uint32_t> keep, const eviction_view& view, const char* policy) {
  if (keep.size() > view.budget)
    PITH_THROW(argument_error, std::string(policy) + " kept " + std::to_string(keep.size()) + " slots, the budget is " +
                                   std::to_string(view.budget));
  for (std::size_t i = 0; i < keep.size(); ++i)
    if (keep[i] >= view.old_slots || (i > 0 && keep[i] <= keep[i - 1]))
      PITH_THROW(argument_error, std::string(policy) + " returned indices that are not sorted, unique and below " +
                                     std::to_string(view.old_slots));
}

}  // namespace pith
