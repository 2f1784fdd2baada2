// SPDX-License-Identifier: MIT
// aligned_buffer: an owning, move-only array of trivially copyable T aligned for the widest SIMD load.
#pragma once

#include <cstddef>
#include <cstring>
#include <limits>
#include <new>
#include <span>
#include <type_traits>
#include <utility>

#include "pith/core/error.hpp"

namespace pith {

/// Alignment of every aligned_buffer: one cache line, which is also one AVX-512 register.
inline constexpr std::size_t buffer_alignment = 64;

template <class T>
class aligned_buffer {
  static_assert(std::is_trivially_copyable_v<T>, "aligned_buffer holds trivially copyable values");

 public:
  aligned_buffer() noexcept = default;
  /// `size` elements, zero-filled.
  explicit aligned_buffer(std::size_t size) { resize(size); }
  aligned_buffer(const aligned_buffer&) = delete;
  aligned_buffer& operator=(const aligned_buffer&) = delete;
  aligned_buffer(aligned_buffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  aligned_buffer& operator=(aligned_buffer&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  ~aligned_buffer() { release(); }

  /// Reallocates to `size` zero-filled elements (contents are not preserved).
  void resize(std::size_t size) {
    if (size == size_) {
      fill_zero();
      return;
    }
    release();
    if (size == 0) return;
    if (size > std::numeric_limits<std::size_t>::max() / sizeof(T) - buffer_alignment)
      PITH_THROW(argument_error, "aligned_buffer: " + std::to_string(size) + " elements do not fit in memory");
    const std::size_t bytes = (size * sizeof(T) + buffer_alignment - 1) / buffer_alignment * buffer_alignment;
    data_ = static_cast<T*>(::operator new(bytes, std::align_val_t{buffer_alignment}));
    size_ = size;
    fill_zero();
  }
  void fill_zero() noexcept {
    if (size_ != 0) std::memset(static_cast<void*>(data_), 0, size_ * sizeof(T));
  }

  T* data() noexcept { return data_; }
  const T* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  T& operator[](std::size_t i) noexcept { return data_[i]; }
  const T& operator[](std::size_t i) const noexcept { return data_[i]; }
  T* begin() noexcept { return data_; }
  T* end() noexcept { return data_ + size_; }
  const T* begin() const noexcept { return data_; }
  const T* end() const noexcept { return data_ + size_; }
  std::span<T> span() noexcept { return {data_, size_}; }
  std::span<const T> span() const noexcept { return {data_, size_}; }

 private:
  void release() noexcept {
    if (data_ != nullptr) ::operator delete(data_, std::align_val_t{buffer_alignment});
    data_ = nullptr;
    size_ = 0;
  }
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace pith
