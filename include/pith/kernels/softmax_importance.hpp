// SPDX-License-Identifier: MIT
// The fused softmax-importance kernel: attention output, key importance and row statistics in one pass.
//
// For one head, with S = scale * Q K^T (Q: m x d queries, K: n x d keys) and P = softmax(S) by rows
// over the keys each query sees, one call produces, as requested by non-null output pointers:
//   output              O = P V                                            [m, d]
//   importance          imp[j - b] (+)= (1/m) sum_i w_i P[i, j] for j in [b, e) [e - b]
//                       (w_i = importance_weights[i], or 1 without them)
//   importance_squares  sq[j - b]  (+)= (1/m) sum_i P[i, j]^2               [e - b]
//   row_max, row_sum    max_j S[i, j] and sum_j exp(S[i, j] - row_max[i])   [m]
// Importance is normalised over all keys even when only the column range [b, e) is reported
// (CItruS scores the old cache columns only), and `accumulate` adds to the buffers instead of
// overwriting them (H2O's running sum; squares give RoCo's variance: sq - imp^2).
//
// Visibility: query i sees key j when key_mask is null or key_mask[j] != 0, and, when causal,
// j <= causal_offset + i. A query that sees no key gets a zero output row, row_max = -inf and
// row_sum = 0, and adds nothing to importance (the mean still divides by m). Hidden keys may hold
// any values, NaN included. Scores of +inf share the row's probability equally among themselves;
// scores of -inf get probability 0. Large scores cannot overflow: the row maximum is subtracted
// before exp. NaN in a query or in a visible key gives NaN in that query's output, statistics and
// importance contributions; NaN in a visible value row gives NaN outputs for the queries that see
// it (and, in the blocked path, for queries of the same block that it is causally hidden from).
//
// Algorithm. Small m: one query at a time (dot products over d, scores of the row in scratch).
// Otherwise queries are processed in blocks of up to 4 vectors of queries, laid out across SIMD
// lanes: scale * Q^T of the block is packed once, score tiles of 6 keys x the block are computed
// in registers (keys broadcast, no packing of K), masked and max-reduced lane-wise before being
// stored; a second pass exponentiates and sums lane-wise; importance reduces each key's row of
// probabilities; the output is a register-tiled product P V (6 queries x 4 channel vectors) scaled
// by 1/row_sum. Exact two-pass softmax: no online rescaling error.
//
// Preconditions (checked by validate_softmax_importance, asserted in debug builds): pointers valid
// for the sizes given, strides >= d, outputs do not alias inputs or each other, scratch holds
// softmax_importance_scratch_size(m, n, d) floats aligned to 64 bytes. The kernel does not
// allocate and does not throw. exp error: simd/exp.hpp (2 ulp).
//
// Stored keys and values. With kv_type f16, bf16 or q8_0 the kernel reads key_data and value_data
// (rows key_stride / value_stride elements apart, stored as cache/kv_type.hpp describes) instead of
// keys and values: vectors of 16-bit elements are widened in registers (the primitive sets'
// load_f16 / load_bf16), Q8_0 vectors are dequantized in registers (int8 to float, times the
// block's scale; a vector never straddles a block since the width divides 32). The blocked path
// broadcasts key elements, so it widens each tile of keys once into scratch, and it widens values
// 256 rows at a time into scratch for all the output tiles of a block (each tile's sums carried
// through the output rows from one chunk of rows to the next). Every operation after the load is
// the F32 path's, in the same order: the results equal the F32 kernel's on the dequantized keys
// and values, and an F32 call is unchanged.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "pith/core/assert.hpp"
#include "pith/core/dtype.hpp"
#include "pith/core/half.hpp"
#include "pith/core/quant.hpp"
#include "pith/kernels/linkage.hpp"
#include "pith/simd/simd.hpp"

namespace pith::kernels {

inline constexpr std::size_t all_keys = std::numeric_limits<std::size_t>::max();

struct softmax_importance_args {
  const float* queries = nullptr;  // [m, d], rows query_stride apart
  std::size_t query_stride = 0;
  const float* keys = nullptr;  // [n, d], rows key_stride apart
  std::size_t key_stride = 0;
  const float* values = nullptr;  // [n, d], rows value_stride apart; needed only for output
  std::size_t value_stride = 0;
  std::size_t m = 0;  // queries
  std::size_t n = 0;  // keys
  std::size_t d = 0;  // head dimension
  float scale = 1.0f;
  bool causal = false;
  std::size_t causal_offset = 0;           // query i sees keys j <= causal_offset + i
  const std::uint8_t* key_mask = nullptr;  // [n]; 0 hides the key from every query

  // Keys and values stored as f16, bf16 or q8_0 (f32: `keys` and `values` above are read).
  dtype kv_type = dtype::f32;
  const void* key_data = nullptr;    // [n] rows of key_stride elements of kv_type
  const void* value_data = nullptr;  // [n] rows of value_stride elements of kv_type

  float* output = nullptr;  // [m, d], rows output_stride apart
  std::size_t output_stride = 0;
  float* importance = nullptr;          // [importance_end - importance_begin]
  float* importance_squares = nullptr;  // [importance_end - importance_begin]
  // [m]: query i's probabilities count importance_weights[i] times in `importance` (null: once each).
  // FinchPress weighs each query by the number of keys it sees (docs/eviction.md). Not with squares.
  const float* importance_weights = nullptr;
  std::size_t importance_begin = 0;
  std::size_t importance_end = all_keys;  // all_keys: n
  bool accumulate = false;
  float* row_max = nullptr;  // [m]
  float* row_sum = nullptr;  // [m]
};

namespace detail {
inline constexpr std::size_t max_block_queries = 64;  // widest query block of any ISA (4 x 16 lanes)
inline constexpr std::size_t scratch_alignment_floats = 16;
inline constexpr std::size_t widened_rows = 256;  // rows a typed call widens at once (keys: a score tile)
inline std::size_t round_up(std::size_t x, std::size_t to) { return (x + to - 1) / to * to; }
// Offset of the widened key tile ([key_tile_rows, round_up(d)] floats) in the scratch.
inline std::size_t key_tile_offset(std::size_t n, std::size_t d) noexcept {
  return round_up(d, scratch_alignment_floats) * max_block_queries +
         round_up((n + 1) * max_block_queries, scratch_alignment_floats);
}
}  // namespace detail

/// Floats of scratch a call with these sizes needs, for every ISA and KV type.
inline std::size_t softmax_importance_scratch_size(std::size_t m, std::size_t n, std::size_t d) noexcept {
  (void)m;
  return detail::key_tile_offset(n, d) + detail::widened_rows * detail::round_up(d, detail::scratch_alignment_floats) +
         2 * detail::scratch_alignment_floats;
}

/// Returns nullptr when `args` satisfies the kernel's preconditions, else a static message naming
/// the offending field. Callers that take sizes from files check this before calling the kernel.
inline const char* validate_softmax_importance(const softmax_importance_args& a) noexcept {
  const bool typed = a.kv_type != dtype::f32;
  if (typed && a.kv_type != dtype::f16 && a.kv_type != dtype::bf16 && a.kv_type != dtype::q8_0)
    return "softmax_importance: kv_type is not f32, f16, bf16 or q8_0";
  if (a.kv_type == dtype::q8_0 && (a.d % quant::qk != 0 || a.key_stride % quant::qk != 0 ||
                                   (a.output != nullptr && a.value_stride % quant::qk != 0)))
    return "softmax_importance: q8_0 keys and values need d and strides multiples of 32";
  if (a.m > 0 && a.d > 0 && a.queries == nullptr) return "softmax_importance: queries is null";
  if (a.n > 0 && a.d > 0 && (typed ? a.key_data == nullptr : a.keys == nullptr)) return "softmax_importance: keys is null";
  if (a.m > 0 && a.query_stride < a.d) return "softmax_importance: query_stride < d";
  if (a.n > 0 && a.key_stride < a.d) return "softmax_importance: key_stride < d";
  if (a.output != nullptr) {
    if (a.n > 0 && a.d > 0 && (typed ? a.value_data == nullptr : a.values == nullptr))
      return "softmax_importance: output requested without values";
    if (a.n > 0 && a.value_stride < a.d) return "softmax_importance: value_stride < d";
    if (a.output_stride < a.d) return "softmax_importance: output_stride < d";
  }
  const std::size_t end = a.importance_end == all_keys ? a.n : a.importance_end;
  if (a.importance_begin > end || end > a.n) return "softmax_importance: importance range outside [0, n]";
  if (a.importance_squares != nullptr && a.importance == nullptr)
    return "softmax_importance: importance_squares requires importance";
  if (a.importance_weights != nullptr && (a.importance == nullptr || a.importance_squares != nullptr))
    return "softmax_importance: importance_weights requires importance and no importance_squares";
  return nullptr;
}

namespace detail {

using simd::keep_scalar_loop;

// Vectors of W elements of a row stored as T, widened to float in registers. `c` is an element
// index; for q8_0 the W elements [c, c + W) lie in one block (W divides 32, c is a multiple of W).
template <class Ops, dtype T>
struct stored_elements {
  using vec = typename Ops::vec;
  static constexpr std::size_t W = Ops::width;
  static constexpr std::size_t row_bytes(std::size_t stride) noexcept {
    if constexpr (T == dtype::f32) return stride * sizeof(float);
    else if constexpr (T == dtype::q8_0) return stride / quant::qk * sizeof(quant::block_q8_0);
    else return stride * sizeof(std::uint16_t);
  }
  static vec load(const std::byte* row, std::size_t c) noexcept {
    if constexpr (T == dtype::f32) return Ops::load(reinterpret_cast<const float*>(row) + c);
    else if constexpr (T == dtype::f16) return Ops::load_f16(reinterpret_cast<const std::uint16_t*>(row) + c);
    else if constexpr (T == dtype::bf16) return Ops::load_bf16(reinterpret_cast<const std::uint16_t*>(row) + c);
    else return load_q8_0(row, c, W);
  }
  static vec load_partial(const std::byte* row, std::size_t c, std::size_t count) noexcept {
    if constexpr (T == dtype::f32) return Ops::load_partial(reinterpret_cast<const float*>(row) + c, count);
    else if constexpr (T == dtype::f16)
      return Ops::load_f16_partial(reinterpret_cast<const std::uint16_t*>(row) + c, count);
    else if constexpr (T == dtype::bf16)
      return Ops::load_bf16_partial(reinterpret_cast<const std::uint16_t*>(row) + c, count);
    else return load_q8_0(row, c, count);
  }
  // W int8 quants widened to float by the set's load_s8 (sign extension in registers), times the
  // block's f16 scale broadcast and widened by the set's load_f16.
  static vec load_q8_0(const std::byte* row, std::size_t c, std::size_t count) noexcept {
    static_assert(quant::qk % W == 0, "a vector of Q8_0 elements lies in one block");
    const std::byte* block = row + c / quant::qk * sizeof(quant::block_q8_0);
    alignas(64) std::uint16_t scale[W];
    std::uint16_t scale_bits;
    std::memcpy(&scale_bits, block, sizeof scale_bits);
    for (std::size_t i = 0; i < W; ++i) scale[i] = scale_bits;
    const auto* quants = reinterpret_cast<const std::int8_t*>(block + sizeof scale_bits + c % quant::qk);
    const vec widened = count >= W ? Ops::load_s8(quants) : Ops::load_s8_partial(quants, count);
    return Ops::mul(widened, Ops::load_f16(scale));
  }
};

template <class Ops, dtype T = dtype::f32>
struct softmax_importance_impl {
  using stored = stored_elements<Ops, T>;
  using vec = typename Ops::vec;
  static constexpr std::size_t W = Ops::width;
  static constexpr std::size_t block_vectors = 4;          // query vectors per block
  static constexpr std::size_t block_queries = block_vectors * W;
  static constexpr std::size_t score_tile_rows = 6;            // keys per score tile
  static constexpr std::size_t output_tile_rows = 6;           // queries per output tile
  static constexpr std::size_t output_tile_vectors = 4;        // channel vectors per output tile
  static constexpr std::size_t row_path_max_m = W > 1 ? W / 2 : 1;
  static constexpr float neg_inf = -std::numeric_limits<float>::infinity();
  static constexpr float pos_inf = std::numeric_limits<float>::infinity();
  static_assert(block_queries <= max_block_queries);

  const softmax_importance_args& a;
  float* scratch;
  std::size_t imp_begin, imp_end;
  float inv_m;
  const std::byte* key_rows;    // row j at key_rows + j * key_bytes
  std::size_t key_bytes;
  const std::byte* value_rows;  // row j at value_rows + j * value_bytes
  std::size_t value_bytes;

  static std::size_t visible_keys(const softmax_importance_args& a, std::size_t query) noexcept {
    if (!a.causal) return a.n;
    const std::size_t last = a.causal_offset + query;  // may exceed n
    return last >= a.n ? a.n : last + 1;
  }

  void run() noexcept {
    if (a.importance != nullptr && !a.accumulate) {
      std::fill(a.importance, a.importance + (imp_end - imp_begin), 0.0f);
      if (a.importance_squares != nullptr) std::fill(a.importance_squares, a.importance_squares + (imp_end - imp_begin), 0.0f);
    }
    if (a.m == 0) return;
    if (a.m <= row_path_max_m) {
      for (std::size_t i = 0; i < a.m; ++i) run_row(i);
      return;
    }
    for (std::size_t q0 = 0; q0 < a.m; q0 += block_queries) {
      const std::size_t count = std::min(block_queries, a.m - q0);
      switch ((count + W - 1) / W) {
        case 1: run_block<1>(q0, count); break;
        case 2: run_block<2>(q0, count); break;
        case 3: run_block<3>(q0, count); break;
        default: run_block<4>(q0, count); break;
      }
    }
  }

  // ---------------------------------------------------------------- one query at a time
  void write_empty_row(std::size_t i) noexcept {
    if (a.output != nullptr) std::fill(a.output + i * a.output_stride, a.output + i * a.output_stride + a.d, 0.0f);
    if (a.row_max != nullptr) a.row_max[i] = neg_inf;
    if (a.row_sum != nullptr) a.row_sum[i] = 0.0f;
  }

  // Dot products of one query with R keys, accumulated over d in vectors.
  template <std::size_t R>
  static void dot_keys(const float* q, const std::byte* k, std::size_t key_bytes, std::size_t d, float* out) noexcept {
    vec acc[R];
    for (std::size_t r = 0; r < R; ++r) acc[r] = Ops::zero();
    std::size_t c = 0;
    for (; c + W <= d; c += W) {
      keep_scalar_loop<W>(c);
      const vec qv = Ops::load(q + c);
      for (std::size_t r = 0; r < R; ++r) acc[r] = Ops::fmadd(qv, stored::load(k + r * key_bytes, c), acc[r]);
    }
    if (c < d) {
      const vec qv = Ops::load_partial(q + c, d - c);
      for (std::size_t r = 0; r < R; ++r)
        acc[r] = Ops::fmadd(qv, stored::load_partial(k + r * key_bytes, c, d - c), acc[r]);
    }
    for (std::size_t r = 0; r < R; ++r) out[r] = Ops::reduce_add(acc[r]);
  }

  // out[0, d) = inv_sum * sum_j e[j] V[j, :], channels in chunks of up to 8 vectors held in registers.
  template <std::size_t C, bool Partial>
  void weighted_values(const float* e, std::size_t count, std::size_t c0, float inv_sum, float* out) const noexcept {
    vec acc[C];
    for (std::size_t c = 0; c < C; ++c) acc[c] = Ops::zero();
    const std::size_t tail = a.d - c0 - (C - 1) * W;
    for (std::size_t j = 0; j < count; ++j) {
      keep_scalar_loop<W>(j);
      if (a.key_mask != nullptr && a.key_mask[j] == 0) continue;
      const vec weight = Ops::set1(e[j]);
      const std::byte* v = value_rows + j * value_bytes;
      for (std::size_t c = 0; c + 1 < C; ++c) acc[c] = Ops::fmadd(weight, stored::load(v, c0 + c * W), acc[c]);
      const vec last = Partial ? stored::load_partial(v, c0 + (C - 1) * W, tail) : stored::load(v, c0 + (C - 1) * W);
      acc[C - 1] = Ops::fmadd(weight, last, acc[C - 1]);
    }
    const vec scale = Ops::set1(inv_sum);
    for (std::size_t c = 0; c + 1 < C; ++c) Ops::store(out + c0 + c * W, Ops::mul(acc[c], scale));
    if (Partial)
      Ops::store_partial(out + c0 + (C - 1) * W, Ops::mul(acc[C - 1], scale), tail);
    else
      Ops::store(out + c0 + (C - 1) * W, Ops::mul(acc[C - 1], scale));
  }

  template <std::size_t C>
  void weighted_values_dispatch(const float* e, std::size_t count, std::size_t c0, float inv_sum, float* out) const noexcept {
    if ((a.d - c0) % W != 0 && a.d - c0 < C * W)
      weighted_values<C, true>(e, count, c0, inv_sum, out);
    else
      weighted_values<C, false>(e, count, c0, inv_sum, out);
  }

  void run_row(std::size_t i) noexcept {
    const std::size_t n_visible = visible_keys(a, i);
    if (n_visible == 0) {
      write_empty_row(i);
      return;
    }
    float* s = scratch;
    const float* q = a.queries + i * a.query_stride;
    std::size_t j = 0;
    for (; j + 4 <= n_visible; j += 4) dot_keys<4>(q, key_rows + j * key_bytes, key_bytes, a.d, s + j);
    for (; j < n_visible; ++j) dot_keys<1>(q, key_rows + j * key_bytes, key_bytes, a.d, s + j);
    float row_max = neg_inf;
    for (j = 0; j < n_visible; ++j) {
      s[j] = (a.key_mask != nullptr && a.key_mask[j] == 0) ? neg_inf : s[j] * a.scale;
      row_max = s[j] > row_max || s[j] != s[j] ? s[j] : row_max;
    }
    if (row_max == neg_inf) {
      write_empty_row(i);
      return;
    }
    // Exponentiate in place and sum; a +inf maximum puts the row's mass on its +inf scores.
    vec sum = Ops::zero();
    const std::size_t body = n_visible - n_visible % W;
    if (row_max == pos_inf) {
      for (j = 0; j < n_visible; ++j) s[j] = s[j] == pos_inf ? 1.0f : 0.0f;
      for (j = 0; j < body; j += W) sum = Ops::add(sum, Ops::load(s + j));
    } else {
      const vec shift = Ops::set1(row_max);
      for (j = 0; j < body; j += W) {
        const vec e = simd::exp_approx<Ops>(Ops::sub(Ops::load(s + j), shift));
        Ops::store(s + j, e);
        sum = Ops::add(sum, e);
      }
      if (body < n_visible) {
        const vec e = simd::exp_approx<Ops>(Ops::sub(Ops::load_partial(s + body, n_visible - body), shift));
        Ops::store_partial(s + body, e, n_visible - body);
      }
    }
    float total = Ops::reduce_add(sum);
    for (std::size_t t = body; t < n_visible; ++t) total += s[t];
    const float inv_sum = 1.0f / total;
    if (a.row_max != nullptr) a.row_max[i] = row_max;
    if (a.row_sum != nullptr) a.row_sum[i] = total;
    if (a.output != nullptr && a.d > 0) {
      float* out = a.output + i * a.output_stride;
      std::size_t c0 = 0;
      constexpr std::size_t chunk = 8 * W;
      for (; c0 + chunk <= a.d; c0 += chunk) weighted_values<8, false>(s, n_visible, c0, inv_sum, out);
      if (c0 < a.d) {
        switch ((a.d - c0 + W - 1) / W) {
          case 1: weighted_values_dispatch<1>(s, n_visible, c0, inv_sum, out); break;
          case 2: weighted_values_dispatch<2>(s, n_visible, c0, inv_sum, out); break;
          case 3: weighted_values_dispatch<3>(s, n_visible, c0, inv_sum, out); break;
          case 4: weighted_values_dispatch<4>(s, n_visible, c0, inv_sum, out); break;
          case 5: weighted_values_dispatch<5>(s, n_visible, c0, inv_sum, out); break;
          case 6: weighted_values_dispatch<6>(s, n_visible, c0, inv_sum, out); break;
          case 7: weighted_values_dispatch<7>(s, n_visible, c0, inv_sum, out); break;
          default: weighted_values_dispatch<8>(s, n_visible, c0, inv_sum, out); break;
        }
      }
    }
    if (a.importance != nullptr) {
      const std::size_t end = std::min(imp_end, n_visible);
      const float weight = inv_sum * inv_m * (a.importance_weights != nullptr ? a.importance_weights[i] : 1.0f);
      for (j = imp_begin; j < end; ++j) {
        const float p = s[j] * inv_sum;
        a.importance[j - imp_begin] += s[j] * weight;
        if (a.importance_squares != nullptr) a.importance_squares[j - imp_begin] += p * p * inv_m;
      }
    }
  }

  // ---------------------------------------------------------------- blocks of queries across lanes
  // Scores of R keys (rows) against V vectors of queries: acc[r][v] = K[j0 + r] . Qt[:, v].
  template <std::size_t R, std::size_t V>
  static void score_tile(const float* k, std::size_t key_stride, const float* qt, std::size_t d, vec (&acc)[R][V]) noexcept {
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t v = 0; v < V; ++v) acc[r][v] = Ops::zero();
    for (std::size_t c = 0; c < d; ++c) {
      keep_scalar_loop<W>(c);
      vec q[V];
      for (std::size_t v = 0; v < V; ++v) q[v] = Ops::load(qt + c * V * W + v * W);
      for (std::size_t r = 0; r < R; ++r) {
        const vec key = Ops::set1(k[r * key_stride + c]);
        for (std::size_t v = 0; v < V; ++v) acc[r][v] = Ops::fmadd(key, q[v], acc[r][v]);
      }
    }
  }

  // Masks, max-reduces and stores R score rows starting at key j0.
  template <std::size_t R, std::size_t V>
  void score_rows(std::size_t j0, std::size_t q0, std::size_t count, const float* qt, float* st,
                  vec (&row_max)[V]) const noexcept {
    vec acc[R][V];
    if constexpr (T == dtype::f32) {
      score_tile<R, V>(a.keys + j0 * a.key_stride, a.key_stride, qt, a.d, acc);
    } else {
      // Widen the R keys once: the tile broadcasts each element to V vectors of queries.
      static_assert(R <= widened_rows);
      const std::size_t tile_stride = round_up(a.d, scratch_alignment_floats);
      float* tile = scratch + key_tile_offset(a.n, a.d);
      for (std::size_t r = 0; r < R; ++r) {
        const std::byte* k = key_rows + (j0 + r) * key_bytes;
        std::size_t c = 0;
        for (; c + W <= a.d; c += W) Ops::store(tile + r * tile_stride + c, stored::load(k, c));
        if (c < a.d) Ops::store_partial(tile + r * tile_stride + c, stored::load_partial(k, c, a.d - c), a.d - c);
      }
      score_tile<R, V>(tile, tile_stride, qt, a.d, acc);
    }
    const vec hidden = Ops::set1(neg_inf);
    // Lanes past the block's last query are hidden too, so they contribute nothing anywhere.
    const vec padding = Ops::set1(static_cast<float>(count - (V - 1) * W));
    for (std::size_t r = 0; r < R; ++r) {
      const std::size_t j = j0 + r;
      const bool masked = a.key_mask != nullptr && a.key_mask[j] == 0;
      for (std::size_t v = 0; v < V; ++v) {
        vec s = masked ? hidden : acc[r][v];
        // Lanes whose query index is below j - causal_offset do not see key j.
        if (a.causal && j > a.causal_offset + q0 + v * W) {
          const std::size_t first_seeing = j - a.causal_offset - q0 - v * W;
          const float threshold = static_cast<float>(std::min(first_seeing, W));
          s = Ops::select_less(Ops::lane_index(), Ops::set1(threshold), hidden, s);
        }
        if (v == V - 1 && count < V * W) s = Ops::select_less(Ops::lane_index(), padding, s, hidden);
        row_max[v] = Ops::max(row_max[v], s);
        Ops::store(st + j * V * W + v * W, s);
      }
    }
  }

  // Output tile: R queries (starting at block row i0) x C channel vectors (starting at c0), over keys
  // [k0, k1). The sums start at zero (first) or at what `out` holds, and are stored scaled by
  // 1 / row_sum (last) or as they are: a typed call sums over chunks of widened values in the same
  // order as one pass over them. Widened: values from `widened` (row j at (j - k0) * widened_stride).
  static constexpr bool Widened = T != dtype::f32;

  template <std::size_t R, std::size_t C, bool Partial, bool Masked>
  void output_tile(const float* st, std::size_t stride, std::size_t i0, std::size_t c0, std::size_t k0, std::size_t k1,
                   bool first, bool last, const float* inv_sum, float* out, const float* widened,
                   std::size_t widened_stride) const noexcept {
    vec acc[R][C];
    const std::size_t tail = a.d - c0 - (C - 1) * W;
    for (std::size_t r = 0; r < R; ++r) {
      const float* o = out + r * a.output_stride + c0;
      for (std::size_t c = 0; c < C; ++c)
        acc[r][c] = first                         ? Ops::zero()
                    : (Partial && c + 1 == C) ? Ops::load_partial(o + c * W, tail)
                                              : Ops::load(o + c * W);
    }
    for (std::size_t j = k0; j < k1; ++j) {
      keep_scalar_loop<W>(j);
      if (Masked && a.key_mask[j] == 0) continue;
      vec value[C];
      if constexpr (Widened) {
        const float* v = widened + (j - k0) * widened_stride + c0;
        for (std::size_t c = 0; c + 1 < C; ++c) value[c] = Ops::load(v + c * W);
        value[C - 1] = Partial ? Ops::load_partial(v + (C - 1) * W, tail) : Ops::load(v + (C - 1) * W);
      } else {
        const std::byte* v = value_rows + j * value_bytes;
        for (std::size_t c = 0; c + 1 < C; ++c) value[c] = stored::load(v, c0 + c * W);
        value[C - 1] = Partial ? stored::load_partial(v, c0 + (C - 1) * W, tail) : stored::load(v, c0 + (C - 1) * W);
      }
      const float* p = st + j * stride + i0;
      for (std::size_t r = 0; r < R; ++r) {
        const vec weight = Ops::set1(p[r]);
        for (std::size_t c = 0; c < C; ++c) acc[r][c] = Ops::fmadd(weight, value[c], acc[r][c]);
      }
    }
    for (std::size_t r = 0; r < R; ++r) {
      float* o = out + r * a.output_stride + c0;
      const vec scale = Ops::set1(inv_sum[i0 + r]);
      for (std::size_t c = 0; c < C; ++c) {
        const vec result = last ? Ops::mul(acc[r][c], scale) : acc[r][c];
        if (Partial && c + 1 == C)
          Ops::store_partial(o + c * W, result, tail);
        else
          Ops::store(o + c * W, result);
      }
    }
  }

  struct key_range {
    std::size_t k0, k1;
    bool first, last;
    const float* widened;
    std::size_t widened_stride;
  };

  template <std::size_t R, std::size_t C>
  void output_tile_dispatch(const float* st, std::size_t stride, std::size_t i0, std::size_t c0, const key_range& k,
                            const float* inv_sum, float* out) const noexcept {
    const bool partial = a.d - c0 < C * W;
    const bool masked = a.key_mask != nullptr;
    if (partial) {
      if (masked) output_tile<R, C, true, true>(st, stride, i0, c0, k.k0, k.k1, k.first, k.last, inv_sum, out, k.widened, k.widened_stride);
      else output_tile<R, C, true, false>(st, stride, i0, c0, k.k0, k.k1, k.first, k.last, inv_sum, out, k.widened, k.widened_stride);
    } else {
      if (masked) output_tile<R, C, false, true>(st, stride, i0, c0, k.k0, k.k1, k.first, k.last, inv_sum, out, k.widened, k.widened_stride);
      else output_tile<R, C, false, false>(st, stride, i0, c0, k.k0, k.k1, k.first, k.last, inv_sum, out, k.widened, k.widened_stride);
    }
  }

  template <std::size_t R>
  void output_rows(const float* st, std::size_t stride, std::size_t i0, const key_range& k, const float* inv_sum,
                   float* out) const noexcept {
    constexpr std::size_t chunk = output_tile_vectors * W;
    std::size_t c0 = 0;
    for (; c0 + chunk <= a.d; c0 += chunk) output_tile_dispatch<R, output_tile_vectors>(st, stride, i0, c0, k, inv_sum, out);
    if (c0 < a.d) {
      switch ((a.d - c0 + W - 1) / W) {
        case 1: output_tile_dispatch<R, 1>(st, stride, i0, c0, k, inv_sum, out); break;
        case 2: output_tile_dispatch<R, 2>(st, stride, i0, c0, k, inv_sum, out); break;
        case 3: output_tile_dispatch<R, 3>(st, stride, i0, c0, k, inv_sum, out); break;
        default: output_tile_dispatch<R, 4>(st, stride, i0, c0, k, inv_sum, out); break;
      }
    }
  }

  // Every output tile of the block over keys [k0, k1) (each tile stops at the keys it sees).
  void output_block(const float* st, std::size_t stride, std::size_t q0, std::size_t count, key_range k,
                    const float* inv_sum, float* out) const noexcept {
    const std::size_t k1 = k.k1;
    std::size_t i0 = 0;
    for (; i0 + output_tile_rows <= count; i0 += output_tile_rows) {
      k.k1 = std::min(k1, visible_keys(a, q0 + i0 + output_tile_rows - 1));
      output_rows<output_tile_rows>(st, stride, i0, k, inv_sum, out + i0 * a.output_stride);
    }
    k.k1 = std::min(k1, visible_keys(a, q0 + count - 1));
    float* tail_out = out + i0 * a.output_stride;
    switch (count - i0) {
      case 1: output_rows<1>(st, stride, i0, k, inv_sum, tail_out); break;
      case 2: output_rows<2>(st, stride, i0, k, inv_sum, tail_out); break;
      case 3: output_rows<3>(st, stride, i0, k, inv_sum, tail_out); break;
      case 4: output_rows<4>(st, stride, i0, k, inv_sum, tail_out); break;
      case 5: output_rows<5>(st, stride, i0, k, inv_sum, tail_out); break;
      default: break;
    }
  }

  template <std::size_t V>
  void run_block(std::size_t q0, std::size_t count) noexcept {
    constexpr std::size_t stride = V * W;  // floats per key row of the block's score matrix
    float* qt = scratch;                                                 // [d, stride]
    float* st = scratch + round_up(a.d, scratch_alignment_floats) * max_block_queries;  // [n, stride]
    alignas(64) float lane_max[stride];
    alignas(64) float lane_sum[stride];
    alignas(64) float inv_sum[stride];

    // Pack scale * Q^T for the block; lanes past the last query are zero.
    for (std::size_t c = 0; c < a.d; ++c) {
      for (std::size_t i = 0; i < stride; ++i)
        qt[c * stride + i] = i < count ? a.queries[(q0 + i) * a.query_stride + c] * a.scale : 0.0f;
    }
    const std::size_t n_visible = visible_keys(a, q0 + count - 1);

    // Pass 1: scores, masks and lane-wise row maxima.
    vec row_max[V];
    for (std::size_t v = 0; v < V; ++v) row_max[v] = Ops::set1(neg_inf);
    std::size_t j = 0;
    for (; j + score_tile_rows <= n_visible; j += score_tile_rows) score_rows<score_tile_rows, V>(j, q0, count, qt, st, row_max);
    switch (n_visible - j) {
      case 1: score_rows<1, V>(j, q0, count, qt, st, row_max); break;
      case 2: score_rows<2, V>(j, q0, count, qt, st, row_max); break;
      case 3: score_rows<3, V>(j, q0, count, qt, st, row_max); break;
      case 4: score_rows<4, V>(j, q0, count, qt, st, row_max); break;
      case 5: score_rows<5, V>(j, q0, count, qt, st, row_max); break;
      default: break;
    }

    // Pass 2: exponentiate and sum lane-wise. Rows without a visible key use shift 0 (exp(-inf) = 0);
    // rows whose maximum is +inf split their mass among their +inf scores.
    vec shift[V], sum[V];
    bool any_inf = false;
    for (std::size_t v = 0; v < V; ++v) {
      Ops::store(lane_max + v * W, row_max[v]);
      shift[v] = Ops::select_equal(row_max[v], Ops::set1(neg_inf), Ops::zero(), row_max[v]);
      any_inf = any_inf || Ops::reduce_max(row_max[v]) == pos_inf;
      sum[v] = Ops::zero();
    }
    if (!any_inf) {
      for (j = 0; j < n_visible; ++j) {
        for (std::size_t v = 0; v < V; ++v) {
          float* p = st + j * stride + v * W;
          const vec e = simd::exp_approx<Ops>(Ops::sub(Ops::load(p), shift[v]));
          sum[v] = Ops::add(sum[v], e);
          Ops::store(p, e);
        }
      }
    } else {
      const vec inf = Ops::set1(pos_inf), one = Ops::set1(1.0f);
      for (j = 0; j < n_visible; ++j) {
        for (std::size_t v = 0; v < V; ++v) {
          float* p = st + j * stride + v * W;
          const vec s = Ops::load(p);
          vec e = simd::exp_approx<Ops>(Ops::sub(s, shift[v]));
          e = Ops::select_equal(row_max[v], inf, Ops::select_equal(s, inf, one, Ops::zero()), e);
          sum[v] = Ops::add(sum[v], e);
          Ops::store(p, e);
        }
      }
    }
    for (std::size_t v = 0; v < V; ++v) Ops::store(lane_sum + v * W, sum[v]);
    for (std::size_t i = 0; i < stride; ++i) {
      const float total = lane_sum[i];  // NaN stays NaN; empty rows and padding lanes weigh 0
      inv_sum[i] = i >= count ? 0.0f : total > 0.0f ? 1.0f / total : total != total ? total : 0.0f;
    }

    for (std::size_t i = 0; i < count; ++i) {
      if (a.row_max != nullptr) a.row_max[q0 + i] = lane_max[i];
      if (a.row_sum != nullptr) a.row_sum[q0 + i] = lane_sum[i];
    }

    // Importance: each key's probabilities summed over the block's queries.
    if (a.importance != nullptr) {
      vec weight[V];
      for (std::size_t v = 0; v < V; ++v) weight[v] = Ops::load(inv_sum + v * W);
      if (a.importance_weights != nullptr) {
        alignas(64) float weighted[stride];
        for (std::size_t i = 0; i < stride; ++i) weighted[i] = i < count ? inv_sum[i] * a.importance_weights[q0 + i] : 0.0f;
        for (std::size_t v = 0; v < V; ++v) weight[v] = Ops::load(weighted + v * W);
      }
      const std::size_t end = std::min(imp_end, n_visible);
      for (j = imp_begin; j < end; ++j) {
        vec total = Ops::zero(), squares = Ops::zero();
        for (std::size_t v = 0; v < V; ++v) {
          const vec p = Ops::mul(Ops::load(st + j * stride + v * W), weight[v]);
          total = Ops::add(total, p);
          squares = Ops::fmadd(p, p, squares);
        }
        a.importance[j - imp_begin] += Ops::reduce_add(total) * inv_m;
        if (a.importance_squares != nullptr) a.importance_squares[j - imp_begin] += Ops::reduce_add(squares) * inv_m;
      }
    }

    // Pass 3: output = (P V) / row_sum, tiles of output_rows queries. Stored values are widened
    // widened_rows at a time, once for all the block's tiles.
    if (a.output != nullptr) {
      float* out = a.output + q0 * a.output_stride;
      if (a.d == 0) return;
      const std::size_t all = visible_keys(a, q0 + count - 1);
      if constexpr (!Widened) {
        output_block(st, stride, q0, count, {0, all, true, true, nullptr, 0}, inv_sum, out);
      } else {
        const std::size_t widened_stride = round_up(a.d, scratch_alignment_floats);
        float* widened = scratch + key_tile_offset(a.n, a.d);
        for (std::size_t k0 = 0; k0 == 0 || k0 < all; k0 += widened_rows) {
          const std::size_t k1 = std::min(all, k0 + widened_rows);
          for (std::size_t j = k0; j < k1; ++j) {
            if (a.key_mask != nullptr && a.key_mask[j] == 0) continue;
            const std::byte* v = value_rows + j * value_bytes;
            float* w = widened + (j - k0) * widened_stride;
            std::size_t c = 0;
            for (; c + W <= a.d; c += W) Ops::store(w + c, stored::load(v, c));
            if (c < a.d) Ops::store_partial(w + c, stored::load_partial(v, c, a.d - c), a.d - c);
          }
          output_block(st, stride, q0, count, {k0, k1, k0 == 0, k1 >= all, widened, widened_stride}, inv_sum, out);
        }
      }
    }
  }
};

}  // namespace detail

/// softmax_importance with the primitive set `Ops` (simd::scalar::ops, simd::avx512::ops, ...).
template <class Ops>
inline void softmax_importance_with(const softmax_importance_args& args, float* scratch) noexcept {
  PITH_ASSERT(validate_softmax_importance(args) == nullptr, "invalid softmax_importance arguments");
  PITH_ASSERT(reinterpret_cast<std::uintptr_t>(scratch) % 64 == 0, "scratch must be 64-byte aligned");
  const std::size_t end = args.importance_end == all_keys ? args.n : args.importance_end;
  const float inv_m = args.m > 0 ? 1.0f / static_cast<float>(args.m) : 0.0f;
  const auto run = [&]<dtype T>(std::integral_constant<dtype, T>, const void* keys, const void* values) {
    using impl_type = detail::softmax_importance_impl<Ops, T>;
    using stored = typename impl_type::stored;
    impl_type impl{args,
                   scratch,
                   args.importance_begin,
                   end,
                   inv_m,
                   static_cast<const std::byte*>(keys),
                   stored::row_bytes(args.key_stride),
                   static_cast<const std::byte*>(values),
                   stored::row_bytes(args.value_stride)};
    impl.run();
  };
  switch (args.kv_type) {
    case dtype::f16: run(std::integral_constant<dtype, dtype::f16>{}, args.key_data, args.value_data); break;
    case dtype::bf16: run(std::integral_constant<dtype, dtype::bf16>{}, args.key_data, args.value_data); break;
    case dtype::q8_0: run(std::integral_constant<dtype, dtype::q8_0>{}, args.key_data, args.value_data); break;
    default: run(std::integral_constant<dtype, dtype::f32>{}, args.keys, args.values); break;
  }
}

inline namespace PITH_ISA_NAMESPACE {

/// softmax_importance with the widest primitive set compiled for this target.
PITH_KERNEL_ENTRY void softmax_importance(const softmax_importance_args& args, float* scratch) noexcept
#if PITH_KERNEL_DEFINITIONS
{
  softmax_importance_with<simd::native::ops>(args, scratch);
}
#else
    ;
#endif

/// Name of the primitive set the non-template kernels of this translation unit run
/// (simd::native::ops::name), through a symbol of their inline namespace: a unit built with other
/// -march flags calls its own copy.
inline const char* isa_name() noexcept { return simd::native::ops::name; }

}  // namespace PITH_ISA_NAMESPACE

}  // namespace pith::kernels
