// SPDX-License-Identifier: MIT
// pith's exception types and PITH_THROW, the one place that raises them.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace pith {

/// Base of every error pith reports; the message names the file, key or tensor at fault.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A file could not be opened, mapped or read.
class io_error : public error {
 public:
  using error::error;
};

/// A file was read but its contents are not what the format requires (truncated, corrupt, unsupported).
class format_error : public error {
 public:
  using error::error;
};

/// A configuration key is missing, has the wrong type or violates an invariant.
class config_error : public error {
 public:
  using error::error;
};

/// Tensor or buffer shapes do not agree.
class shape_error : public error {
 public:
  using error::error;
};

/// A caller passed an argument outside the documented domain (a budget of 0, an empty document, ...).
class argument_error : public error {
 public:
  using error::error;
};

namespace detail {
/// Stands in for a caught exception object under -fno-exceptions, where a handler never runs:
/// PITH_CATCH's handler still compiles (it may name the object) and this is never called.
template <class T>
[[noreturn]] T no_exception() noexcept {
  std::abort();
}

[[noreturn]] inline void fatal(const char* kind, const std::string& what, const char* file, int line) {
  std::fprintf(stderr, "pith: fatal %s at %s:%d: %s\n", kind, file, line, what.c_str());
  std::fflush(stderr);
  std::abort();
}
}  // namespace detail

}  // namespace pith

// PITH_THROW(type, message): throws pith::type(message); without exceptions (-fno-exceptions)
// it prints the message and aborts, so an error is never silently ignored.
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
#define PITH_THROW(type, message) throw ::pith::type(message)
#else
#define PITH_THROW(type, message) ::pith::detail::fatal(#type, std::string(message), __FILE__, __LINE__)
#endif

// PITH_TRY { ... } PITH_CATCH(const some_error&, e) { ... } and PITH_CATCH_ALL { ... }: try and
// catch with exceptions; without them (-fno-exceptions) the body runs as a plain block and the
// handler compiles but never runs (nothing can throw: PITH_THROW aborts instead).
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
#define PITH_TRY try
#define PITH_CATCH(type, name) catch (type name)
#define PITH_CATCH_ALL catch (...)
#else
#define PITH_TRY if (true)
#define PITH_CATCH(type, name) else if (type name = ::pith::detail::no_exception<type>(); false)
#define PITH_CATCH_ALL else
#endif
