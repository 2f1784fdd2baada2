// SPDX-License-Identifier: MIT
// exclusive_use: catches a second thread entering an object that belongs to one thread at a time.
#pragma once

#include <atomic>
#include <string>
#include <thread>

#include "pith/core/assert.hpp"

namespace pith {

/// The thread inside an object right now (none: a default std::thread::id). Its layout does not
/// depend on whether assertions are on, so translation units built with and without NDEBUG agree
/// on the size of the objects holding it. A copy or a move starts unclaimed: the flag records a
/// call in progress, not a value.
class exclusive_use {
 public:
  exclusive_use() noexcept = default;
  exclusive_use(const exclusive_use&) noexcept {}
  exclusive_use& operator=(const exclusive_use&) noexcept { return *this; }

 private:
  friend class exclusive_use_scope;
  std::atomic<std::thread::id> owner_{};
};

/// Claims an exclusive_use for the calling thread until the scope ends. Where PITH_ASSERT is active
/// (debug builds, PITH_ENABLE_ASSERTS), a claim by a second thread while the first holds it aborts
/// with a message naming `owner` (the object's type); the owning thread may claim again (a call
/// from inside another). Elsewhere the scope does nothing.
class exclusive_use_scope {
 public:
  // (std::source_location would name the caller, but clang 14 with libstdc++ 12 lacks it.)
  exclusive_use_scope(exclusive_use& flag, const char* owner) noexcept {
#if PITH_ASSERTS_ENABLED
    const std::thread::id self = std::this_thread::get_id();
    std::thread::id expected{};
    if (flag.owner_.compare_exchange_strong(expected, self, std::memory_order_acquire, std::memory_order_relaxed)) {
      flag_ = &flag;
      return;
    }
    if (expected == self) return;
    const std::string message = std::string(owner) + " belongs to one thread at a time; give each thread its own";
    detail::assert_failed("two threads inside one object", message.c_str(), __FILE__, __LINE__);
#else
    (void)flag;
    (void)owner;
#endif
  }
  ~exclusive_use_scope() {
    if (flag_ != nullptr) flag_->owner_.store(std::thread::id{}, std::memory_order_release);
  }
  exclusive_use_scope(const exclusive_use_scope&) = delete;
  exclusive_use_scope& operator=(const exclusive_use_scope&) = delete;

 private:
  exclusive_use* flag_ = nullptr;
};

}  // namespace pith
