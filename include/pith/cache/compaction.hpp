// SPDX-License-Identifier: MIT
// Compaction and RoPE re-rotation of a KV cache the caller owns, through the kv_store concept.
//
// A cache models pith::kv_store when, per (layer, KV head), it exposes its keys and values as rows of
// head_dim floats (row i at keys(layer, head) + i * head_dim()), the int64 RoPE position each key was
// rotated with, and the number of rows in use (size / set_size). pith::kv_cache models it; so can an
// engine's own cache (tests/cache/eviction_blocks_test.cpp has a small one):
//
//   struct my_cache {
//     std::size_t layers() const; std::size_t kv_heads() const; std::size_t head_dim() const;
//     std::size_t size(std::size_t layer, std::size_t head) const;
//     void set_size(std::size_t layer, std::size_t head, std::size_t rows);
//     float* keys(std::size_t layer, std::size_t head);     // [rows, head_dim], rotated keys
//     float* values(std::size_t layer, std::size_t head);   // [rows, head_dim]
//     std::int64_t* positions(std::size_t layer, std::size_t head);  // [rows]
//   };
//
// A cache that stores its rows in another type (pith::kv_cache with an F16, BF16 or Q8_0 kv_type)
// also models pith::typed_kv_store: kv_type(), row_bytes() and the stored bytes key_data/value_data.
// Compaction then moves stored bytes (no rounding) and re-rotation converts a key to float,
// rotates it and stores it back, rounded (re-quantized) to the cache's type (cache/kv_type.hpp).
//
//   pith::compact(cache, layer, head, keep);        // keep: sorted, unique row indices
//   pith::rerotator rotate(head_dim, rope_theta, pith::kernels::rope_layout::half, max_context);
//   rotate.renumber(cache, layer, head);            // positions 0..size-1, keys re-rotated to them
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "pith/core/aligned_buffer.hpp"
#include "pith/cache/kv_type.hpp"
#include "pith/core/checked.hpp"
#include "pith/core/error.hpp"
#include "pith/kernels/rope.hpp"

namespace pith {

/// A KV cache eviction can compact and re-rotate: per (layer, KV head) `size` rows of keys and values
/// (head_dim floats each, contiguous) and one int64 RoPE position per row.
template <class C>
concept kv_store = requires(C& cache, const C& view, std::size_t layer, std::size_t head, std::size_t rows) {
  { view.layers() } -> std::convertible_to<std::size_t>;
  { view.kv_heads() } -> std::convertible_to<std::size_t>;
  { view.head_dim() } -> std::convertible_to<std::size_t>;
  { view.size(layer, head) } -> std::convertible_to<std::size_t>;
  cache.set_size(layer, head, rows);
  { cache.keys(layer, head) } -> std::convertible_to<float*>;
  { cache.values(layer, head) } -> std::convertible_to<float*>;
  { cache.positions(layer, head) } -> std::convertible_to<std::int64_t*>;
};

/// A kv_store whose rows are stored as kv_type() (cache/kv_type.hpp), row_bytes() bytes each, at
/// key_data/value_data; keys()/values() then serve only when kv_type() is f32.
template <class C>
concept typed_kv_store = kv_store<C> && requires(C& cache, const C& view, std::size_t layer, std::size_t head) {
  { view.kv_type() } -> std::convertible_to<dtype>;
  { view.row_bytes() } -> std::convertible_to<std::size_t>;
  { cache.key_data(layer, head) } -> std::convertible_to<std::byte*>;
  { cache.value_data(layer, head) } -> std::convertible_to<std::byte*>;
};

/// Throws argument_error naming `who` unless keep is sorted, unique and every index is below `size`.
inline void check_kept_rows(std::span<const std::uint32_t> keep, std::size_t size, const char* who) {
  for (std::size_t i = 0; i < keep.size(); ++i)
    if (keep[i] >= size || (i > 0 && keep[i] <= keep[i - 1]))
      PITH_THROW(argument_error, std::string(who) + ": keep indices must be sorted, unique and below the size " +
                                     std::to_string(size));
}

/// Moves rows keep[0] < keep[1] < ... of one head's storage ([size, head_dim] keys and values,
/// [size] positions) to rows 0, 1, ... in order. A stable in-place gather: row i <= keep[i], so no row
/// is overwritten before it is read. Throws argument_error (naming `who`) on an invalid keep list.
inline void compact_rows(float* keys, float* values, std::int64_t* positions, std::size_t size, std::size_t head_dim,
                         std::span<const std::uint32_t> keep, const char* who = "pith::compact_rows") {
  check_kept_rows(keep, size, who);
  for (std::size_t i = 0; i < keep.size(); ++i) {
    if (keep[i] == i) continue;
    std::memcpy(keys + i * head_dim, keys + keep[i] * head_dim, head_dim * sizeof(float));
    std::memcpy(values + i * head_dim, values + keep[i] * head_dim, head_dim * sizeof(float));
    positions[i] = positions[keep[i]];
  }
}

/// compact_rows for rows of any type: moves row_bytes bytes per key and per value row.
inline void compact_row_bytes(std::byte* keys, std::byte* values, std::int64_t* positions, std::size_t size,
                              std::size_t row_bytes, std::span<const std::uint32_t> keep,
                              const char* who = "pith::compact_row_bytes") {
  check_kept_rows(keep, size, who);
  for (std::size_t i = 0; i < keep.size(); ++i) {
    if (keep[i] == i) continue;
    std::memcpy(keys + i * row_bytes, keys + keep[i] * row_bytes, row_bytes);
    std::memcpy(values + i * row_bytes, values + keep[i] * row_bytes, row_bytes);
    positions[i] = positions[keep[i]];
  }
}

namespace detail {
template <kv_store C>
void check_unit(const C& cache, std::size_t layer, std::size_t head, const char* who) {
  if (layer >= cache.layers() || head >= cache.kv_heads())
    PITH_THROW(argument_error, std::string(who) + ": (layer " + std::to_string(layer) + ", KV head " +
                                   std::to_string(head) + ") is outside a cache of " + std::to_string(cache.layers()) +
                                   " layers and " + std::to_string(cache.kv_heads()) + " KV heads");
}
}  // namespace detail

/// Keeps rows keep[0] < keep[1] < ... of (layer, head), moved to rows 0, 1, ... with their
/// positions; the head then holds keep.size() rows. Throws argument_error on an invalid keep list or
/// a (layer, head) outside the cache.
template <kv_store C>
void compact(C& cache, std::size_t layer, std::size_t head, std::span<const std::uint32_t> keep) {
  detail::check_unit(cache, layer, head, "pith::compact");
  if constexpr (typed_kv_store<C>)
    compact_row_bytes(cache.key_data(layer, head), cache.value_data(layer, head), cache.positions(layer, head),
                      cache.size(layer, head), cache.row_bytes(), keep, "pith::compact");
  else
    compact_rows(cache.keys(layer, head), cache.values(layer, head), cache.positions(layer, head),
                 cache.size(layer, head), cache.head_dim(), keep, "pith::compact");
  cache.set_size(layer, head, keep.size());
}

/// values[i] = values[keep[i]], then values.size() = keep.size(): the same gather for what a caller
/// keeps beside the cache per slot (document positions, running scores). Throws argument_error on an
/// invalid keep list.
template <class T>
void gather_kept(std::vector<T>& values, std::span<const std::uint32_t> keep) {
  check_kept_rows(keep, values.size(), "pith::gather_kept");
  for (std::size_t i = 0; i < keep.size(); ++i) values[i] = values[keep[i]];
  values.resize(keep.size());
}

/// Re-rotates RoPE keys from the position each was rotated with to a new one. Rotations compose:
/// rotating by (new - old) equals rotating the unrotated key to `new`, up to float rounding (the
/// rotation is applied to the rotated key, with cos/sin of the delta computed in float as
/// kernels::rope_angles does). Compaction moves keys to lower rows and renumbering gives them their
/// row's position, so deltas lie in [-table_rows, -1]: their angles come from a table built on the
/// first call ([table_rows, head_dim] floats, counted by bytes_allocated); other deltas are computed.
/// One rerotator serves every layer and head of a model; it belongs to one thread at a time.
class rerotator {
 public:
  rerotator() = default;
  /// inverse_frequencies[i] = theta^(-2i / head_dim) for i < head_dim / 2 (or a model's own scaled
  /// frequencies); they are copied. Throws argument_error when the count is not head_dim / 2.
  rerotator(std::size_t head_dim, std::span<const float> inverse_frequencies, kernels::rope_layout layout,
            std::size_t table_rows)
      : head_dim_(head_dim), layout_(layout), table_rows_(table_rows) {
    if (head_dim == 0 || inverse_frequencies.size() != head_dim / 2)
      PITH_THROW(argument_error, "pith::rerotator: " + std::to_string(inverse_frequencies.size()) +
                                     " inverse frequencies for head_dim " + std::to_string(head_dim) +
                                     " (head_dim / 2 expected, head_dim at least 1)");
    inv_freq_.resize(head_dim / 2);
    std::copy(inverse_frequencies.begin(), inverse_frequencies.end(), inv_freq_.data());
    cos_.resize(head_dim / 2);
    sin_.resize(head_dim / 2);
  }
  /// The frequencies of kernels::rope_inverse_frequencies(theta, head_dim).
  rerotator(std::size_t head_dim, float theta, kernels::rope_layout layout, std::size_t table_rows)
      : rerotator(head_dim, frequencies(head_dim, theta), layout, table_rows) {}

  std::size_t head_dim() const noexcept { return head_dim_; }
  std::size_t table_rows() const noexcept { return table_rows_; }

  /// Rows i < keys.size() / head_dim: rotates key row i from positions[i] to new_positions[i] and
  /// stores the new position. keys [rows, head_dim], positions and new_positions [rows]; throws
  /// shape_error when the sizes disagree.
  void rotate(std::span<float> keys, std::span<std::int64_t> positions, std::span<const std::int64_t> new_positions) {
    if (head_dim_ == 0) PITH_THROW(argument_error, "pith::rerotator: default-constructed (no head_dim, no frequencies)");
    if (keys.size() != positions.size() * head_dim_ || new_positions.size() != positions.size())
      PITH_THROW(shape_error, "pith::rerotator::rotate: " + std::to_string(keys.size()) + " key floats, " +
                                  std::to_string(positions.size()) + " positions and " +
                                  std::to_string(new_positions.size()) + " new positions (head_dim " +
                                  std::to_string(head_dim_) + ")");
    build_table();
    for (std::size_t i = 0; i < positions.size(); ++i) {
      rotate_row(keys.data() + i * head_dim_, new_positions[i] - positions[i]);
      positions[i] = new_positions[i];
    }
  }

  /// The rows of (layer, head) take new_positions[i]; new_positions.size() must equal the head's size.
  template <kv_store C>
  void rerotate(C& cache, std::size_t layer, std::size_t head, std::span<const std::int64_t> new_positions) {
    detail::check_unit(cache, layer, head, "pith::rerotator::rerotate");
    const std::size_t rows = cache.size(layer, head);
    check_cache(cache, rows, new_positions.size());
    if constexpr (typed_kv_store<C>) {
      if (cache.kv_type() != dtype::f32) {
        build_table();
        std::byte* keys = cache.key_data(layer, head);
        std::int64_t* positions = cache.positions(layer, head);
        for (std::size_t i = 0; i < rows; ++i) {
          rotate_stored_row(cache.kv_type(), keys + i * cache.row_bytes(), new_positions[i] - positions[i]);
          positions[i] = new_positions[i];
        }
        return;
      }
    }
    rotate(std::span(cache.keys(layer, head), rows * head_dim_), std::span(cache.positions(layer, head), rows),
           new_positions);
  }

  /// The rows of (layer, head) take positions 0, 1, ..., size - 1 (StreamingLLM / CItruS re-indexing).
  template <kv_store C>
  void renumber(C& cache, std::size_t layer, std::size_t head) {
    detail::check_unit(cache, layer, head, "pith::rerotator::renumber");
    const std::size_t rows = cache.size(layer, head);
    check_cache(cache, rows, rows);
    build_table();
    std::int64_t* positions = cache.positions(layer, head);
    if constexpr (typed_kv_store<C>) {
      if (cache.kv_type() != dtype::f32) {
        std::byte* keys = cache.key_data(layer, head);
        for (std::size_t i = 0; i < rows; ++i) {
          const auto target = static_cast<std::int64_t>(i);
          rotate_stored_row(cache.kv_type(), keys + i * cache.row_bytes(), target - positions[i]);
          positions[i] = target;
        }
        return;
      }
    }
    float* keys = cache.keys(layer, head);
    for (std::size_t i = 0; i < rows; ++i) {
      const auto target = static_cast<std::int64_t>(i);
      rotate_row(keys + i * head_dim_, target - positions[i]);
      positions[i] = target;
    }
  }

  /// Bytes held: frequencies, scratch, and the table and the row of a typed key once used.
  std::size_t bytes_allocated() const noexcept {
    return (inv_freq_.size() + cos_.size() + sin_.size() + row_.size() + table_.size()) * sizeof(float);
  }

 private:
  static std::vector<float> frequencies(std::size_t head_dim, float theta) {
    std::vector<float> f(head_dim / 2);
    kernels::rope_inverse_frequencies(theta, head_dim, f.data());
    return f;
  }

  template <kv_store C>
  void check_cache(const C& cache, std::size_t rows, std::size_t positions) const {
    if (head_dim_ == 0) PITH_THROW(argument_error, "pith::rerotator: default-constructed (no head_dim, no frequencies)");
    if (cache.head_dim() != head_dim_)
      PITH_THROW(shape_error, "pith::rerotator: the cache's head_dim is " + std::to_string(cache.head_dim()) +
                                  ", the rerotator's " + std::to_string(head_dim_));
    if (positions != rows)
      PITH_THROW(shape_error, "pith::rerotator: " + std::to_string(positions) + " new positions for a head of " +
                                  std::to_string(rows) + " rows");
  }

  // Row r holds cos (then sin) of -(r + 1) * inv_freq, the same float angles rope_angles takes.
  void build_table() {
    if (!table_.empty() || table_rows_ == 0) return;
    const std::size_t half = head_dim_ / 2;
    table_.resize(checked_size("pith::rerotator: rotation table", {table_rows_, head_dim_}));
    const auto range = static_cast<std::int64_t>(table_rows_);
    for (std::int64_t delta = -1; delta >= -range; --delta) {
      float* row = table_.data() + static_cast<std::size_t>(-delta - 1) * head_dim_;
      kernels::rope_angles(static_cast<double>(delta), inv_freq_.data(), head_dim_, row, row + half);
    }
  }

  // A key stored as `type`: to float, rotated, stored back rounded to `type` (Q8_0: re-quantized
  // with a new block scale). A zero delta leaves the stored bytes as they are.
  void rotate_stored_row(dtype type, std::byte* key, std::int64_t delta) {
    if (delta == 0) return;
    if (row_.size() != head_dim_) row_.resize(head_dim_);
    kv_decode_row(type, key, head_dim_, row_.data());
    rotate_row(row_.data(), delta);
    kv_encode_row(type, row_.data(), head_dim_, key);
  }

  void rotate_row(float* key, std::int64_t delta) noexcept {
    if (delta == 0) return;
    const std::size_t half = head_dim_ / 2;
    const auto range = static_cast<std::int64_t>(table_rows_);
    const float *cos_angle = cos_.data(), *sin_angle = sin_.data();
    if (delta >= -range && delta < 0) {
      cos_angle = table_.data() + static_cast<std::size_t>(-delta - 1) * head_dim_;
      sin_angle = cos_angle + half;
    } else {
      kernels::rope_angles(static_cast<double>(delta), inv_freq_.data(), head_dim_, cos_.data(), sin_.data());
    }
    kernels::apply_rope(layout_, key, 1, head_dim_, head_dim_, cos_angle, sin_angle);
  }

  std::size_t head_dim_ = 0;
  kernels::rope_layout layout_ = kernels::rope_layout::half;
  std::size_t table_rows_ = 0;
  aligned_buffer<float> inv_freq_;  // [head_dim / 2]
  aligned_buffer<float> cos_;       // [head_dim / 2]: angles of a delta outside the table
  aligned_buffer<float> sin_;       // [head_dim / 2]
  aligned_buffer<float> row_;       // [head_dim] once a typed key turned: it, as floats
  aligned_buffer<float> table_;     // [table_rows, head_dim]: cos | sin of delta -(row + 1), once used
};

}  // namespace pith
