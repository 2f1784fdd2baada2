// SPDX-License-Identifier: MIT
// kv_cache: keys, values and RoPE positions per layer and per KV head, with in-place compaction
// (a pith::kv_store, cache/compaction.hpp). Keys and values are stored as F32 (the default), F16,
// BF16 or Q8_0 (cache/kv_type.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "pith/cache/compaction.hpp"
#include "pith/cache/kv_type.hpp"
#include "pith/core/aligned_buffer.hpp"
#include "pith/core/assert.hpp"
#include "pith/core/checked.hpp"
#include "pith/core/error.hpp"

namespace pith {

/// Storage for `capacity` key/value rows per (layer, KV head). A head's keys form one contiguous
/// [capacity, head_dim] matrix of elements of kv_type() (so the attention kernel reads them as one
/// operand), likewise its values; positions[slot] is the RoPE position the slot's key was rotated
/// with. Heads of a layer normally hold the same number of rows; per-head eviction may make them
/// differ. keys()/values() give the rows as floats and exist for an F32 cache only; key_data()/
/// value_data() give the stored bytes of any type (row i at i * row_bytes()).
class kv_cache {
 public:
  kv_cache() = default;
  /// The same capacity for every layer.
  kv_cache(std::size_t layers, std::size_t kv_heads, std::size_t head_dim, std::size_t capacity,
           dtype type = dtype::f32)
      : kv_cache(kv_heads, head_dim, std::vector<std::size_t>(layers, capacity), type) {}
  /// capacities[l] rows per head in layer l; 0 for layers that keep no cache (fixed-state mixers).
  /// Throws argument_error when the storage's size does not fit in std::size_t, or when `type` is
  /// not a KV type or does not suit head_dim (check_kv_type).
  kv_cache(std::size_t kv_heads, std::size_t head_dim, std::vector<std::size_t> capacities, dtype type = dtype::f32)
      : layers_(capacities.size()), kv_heads_(kv_heads), head_dim_(head_dim), type_(type),
        row_bytes_(kv_row_bytes(type, head_dim)), capacities_(std::move(capacities)) {
    check_kv_type(type, head_dim, "kv_cache: kv_type");
    std::size_t rows = 0;
    for (const std::size_t capacity : capacities_) {
      offsets_.push_back(rows);
      const std::size_t layer_rows = checked_size("kv_cache: rows of a layer", {capacity, kv_heads});
      if (layer_rows > std::numeric_limits<std::size_t>::max() - rows)
        PITH_THROW(argument_error, "kv_cache: " + std::to_string(capacities_.size()) + " layers of " +
                                       std::to_string(layer_rows) + " rows do not fit in memory");
      rows += layer_rows;
    }
    keys_.resize(checked_size("kv_cache: keys", {rows, row_bytes_}));
    values_.resize(keys_.size());
    positions_.resize(rows);
    sizes_.assign(checked_size("kv_cache: sizes", {layers_, kv_heads}), 0);
  }

  std::size_t layers() const noexcept { return layers_; }
  std::size_t kv_heads() const noexcept { return kv_heads_; }
  std::size_t head_dim() const noexcept { return head_dim_; }
  std::size_t capacity(std::size_t layer) const noexcept { return capacities_[layer]; }
  /// The type keys and values are stored as.
  dtype kv_type() const noexcept { return type_; }
  /// Bytes of one stored key (or value) row: kv_row_bytes(kv_type(), head_dim()).
  std::size_t row_bytes() const noexcept { return row_bytes_; }

  std::size_t size(std::size_t layer, std::size_t head) const noexcept { return sizes_[index(layer, head)]; }
  void set_size(std::size_t layer, std::size_t head, std::size_t size) noexcept { sizes_[index(layer, head)] = size; }

  /// The rows as floats: F32 caches only (asserted).
  float* keys(std::size_t layer, std::size_t head) noexcept { return as_floats(key_data(layer, head)); }
  const float* keys(std::size_t layer, std::size_t head) const noexcept { return as_floats(key_data(layer, head)); }
  float* values(std::size_t layer, std::size_t head) noexcept { return as_floats(value_data(layer, head)); }
  const float* values(std::size_t layer, std::size_t head) const noexcept { return as_floats(value_data(layer, head)); }
  /// The stored rows of any type, row i at i * row_bytes().
  std::byte* key_data(std::size_t layer, std::size_t head) noexcept { return keys_.data() + first_row(layer, head) * row_bytes_; }
  const std::byte* key_data(std::size_t layer, std::size_t head) const noexcept {
    return keys_.data() + first_row(layer, head) * row_bytes_;
  }
  std::byte* value_data(std::size_t layer, std::size_t head) noexcept {
    return values_.data() + first_row(layer, head) * row_bytes_;
  }
  const std::byte* value_data(std::size_t layer, std::size_t head) const noexcept {
    return values_.data() + first_row(layer, head) * row_bytes_;
  }
  /// Stores key and value row `slot` of (layer, head) from floats, rounded to kv_type().
  void write(std::size_t layer, std::size_t head, std::size_t slot, const float* key, const float* value) noexcept {
    kv_encode_row(type_, key, head_dim_, key_data(layer, head) + slot * row_bytes_);
    kv_encode_row(type_, value, head_dim_, value_data(layer, head) + slot * row_bytes_);
  }
  /// Reads key (or value) row `slot` of (layer, head) into head_dim floats.
  void read_key(std::size_t layer, std::size_t head, std::size_t slot, float* key) const noexcept {
    kv_decode_row(type_, key_data(layer, head) + slot * row_bytes_, head_dim_, key);
  }
  void read_value(std::size_t layer, std::size_t head, std::size_t slot, float* value) const noexcept {
    kv_decode_row(type_, value_data(layer, head) + slot * row_bytes_, head_dim_, value);
  }
  std::int64_t* positions(std::size_t layer, std::size_t head) noexcept { return positions_.data() + first_row(layer, head); }
  const std::int64_t* positions(std::size_t layer, std::size_t head) const noexcept {
    return positions_.data() + first_row(layer, head);
  }

  /// Bytes of storage layer `layer` holds (keys, values, positions).
  std::size_t layer_bytes_allocated(std::size_t layer) const noexcept {
    return capacities_[layer] * kv_heads_ * (2 * row_bytes_ + sizeof(std::int64_t));
  }
  /// Bytes of the rows layer `layer`'s heads hold now, summed over its heads (they may differ).
  std::size_t layer_bytes_used(std::size_t layer) const noexcept {
    std::size_t rows = 0;
    for (std::size_t h = 0; h < kv_heads_; ++h) rows += size(layer, h);
    return rows * (2 * row_bytes_ + sizeof(std::int64_t));
  }

  /// Keeps rows keep[0] < keep[1] < ... of (layer, head), moved to slots 0, 1, ... in order (a stable
  /// in-place gather of the stored bytes, pith::compact_row_bytes: no rounding). Throws
  /// argument_error on an invalid keep list.
  void compact(std::size_t layer, std::size_t head, std::span<const std::uint32_t> keep) {
    compact_row_bytes(key_data(layer, head), value_data(layer, head), positions(layer, head), size(layer, head),
                      row_bytes_, keep, "kv_cache::compact");
    set_size(layer, head, keep.size());
  }

  void clear() noexcept { sizes_.assign(sizes_.size(), 0); }

  /// Bytes held by the cache's storage (keys, values, positions), whatever is in use.
  std::size_t bytes_allocated() const noexcept {
    return keys_.size() + values_.size() + positions_.size() * sizeof(std::int64_t);
  }
  /// Bytes of the rows in use.
  std::size_t bytes_used() const noexcept {
    std::size_t rows = 0;
    for (auto s : sizes_) rows += s;
    return rows * (2 * row_bytes_ + sizeof(std::int64_t));
  }

 private:
  float* as_floats(std::byte* p) const noexcept {
    PITH_ASSERT(type_ == dtype::f32, "kv_cache: keys()/values() read an F32 cache; use key_data()/value_data()");
    return reinterpret_cast<float*>(p);
  }
  const float* as_floats(const std::byte* p) const noexcept {
    PITH_ASSERT(type_ == dtype::f32, "kv_cache: keys()/values() read an F32 cache; use key_data()/value_data()");
    return reinterpret_cast<const float*>(p);
  }
  std::size_t index(std::size_t layer, std::size_t head) const noexcept { return layer * kv_heads_ + head; }
  std::size_t first_row(std::size_t layer, std::size_t head) const noexcept {
    return offsets_[layer] + head * capacities_[layer];
  }

  std::size_t layers_ = 0, kv_heads_ = 0, head_dim_ = 0;
  dtype type_ = dtype::f32;
  std::size_t row_bytes_ = 0;
  std::vector<std::size_t> capacities_;  // [layers]
  std::vector<std::size_t> offsets_;     // [layers] first row of each layer
  aligned_buffer<std::byte> keys_;    // per layer [kv_heads, capacity(layer), row_bytes]
  aligned_buffer<std::byte> values_;  // per layer [kv_heads, capacity(layer), row_bytes]
  aligned_buffer<std::int64_t> positions_;  // per layer [kv_heads, capacity(layer)]
  std::vector<std::size_t> sizes_;  // [layers * kv_heads]
};

static_assert(kv_store<kv_cache>, "kv_cache is a cache the eviction blocks can compact and re-rotate");

}  // namespace pith
