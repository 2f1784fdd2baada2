// SPDX-License-Identifier: MIT
// Helpers shared by pith's libFuzzer targets: the per-process input files the readers map, and checks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include <fcntl.h>
#include <unistd.h>

#include <pith/io/file_tensor.hpp>

namespace pith_fuzz {

/// Tensors with more elements than this are listed but not converted to float (a reader that
/// accepts a bigger tensor from an input of at most -max_len bytes would be caught by the byte
/// checks anyway).
inline constexpr std::int64_t max_converted_elements = std::int64_t{1} << 20;

/// Aborts with a message: an invariant of a reader was broken (libFuzzer reports the input).
[[noreturn]] inline void fail(const std::string& message) {
  std::fprintf(stderr, "pith fuzz: %s\n", message.c_str());
  std::fflush(stderr);
  std::abort();
}

/// The readers take paths and map the file, so each input is written to a file in the temporary
/// directory, named after the target and the process id (so concurrent fuzzers never share one),
/// rewritten for every input and removed when the process exits normally.
class input_file {
 public:
  input_file(std::string_view target, std::string_view extension)
      : path_(std::filesystem::temp_directory_path() /
              ("pith_" + std::string(target) + "_" + std::to_string(::getpid()) + std::string(extension))) {}
  input_file(const input_file&) = delete;
  input_file& operator=(const input_file&) = delete;
  ~input_file() {
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }

  /// Replaces the file's contents with `bytes` and returns its path.
  const std::filesystem::path& write(std::span<const std::uint8_t> bytes) const {
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) fail("cannot create " + path_.string());
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t written = ::write(fd, bytes.data() + done, bytes.size() - done);
      if (written <= 0) fail("cannot write " + path_.string());
      done += static_cast<std::size_t>(written);
    }
    ::close(fd);
    return path_;
  }

 private:
  std::filesystem::path path_;
};

/// A directory in the temporary directory for inputs made of several files (a safetensors model
/// directory), named like input_file's files and removed with its contents when the process exits
/// normally.
class input_directory {
 public:
  explicit input_directory(std::string_view target)
      : path_(std::filesystem::temp_directory_path() /
              ("pith_" + std::string(target) + "_" + std::to_string(::getpid()) + "_dir")) {
    std::error_code error;
    std::filesystem::create_directories(path_, error);
    if (error) fail("cannot create " + path_.string());
  }
  input_directory(const input_directory&) = delete;
  input_directory& operator=(const input_directory&) = delete;
  ~input_directory() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }

  /// Replaces the contents of the file `name` in the directory with `bytes`.
  void write(std::string_view name, std::span<const std::uint8_t> bytes) const {
    const std::filesystem::path file = path_ / name;
    const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) fail("cannot create " + file.string());
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t written = ::write(fd, bytes.data() + done, bytes.size() - done);
      if (written <= 0) fail("cannot write " + file.string());
      done += static_cast<std::size_t>(written);
    }
    ::close(fd);
  }
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
};

/// Keeps a value alive so the reads that produced it are not optimised away.
template <class T>
void keep(const T& value) {
  asm volatile("" : : "r,m"(value) : "memory");
}

/// Reads the first and last byte of a tensor's view and converts it to float when it is F32, F16
/// or BF16 and small: a view that leaves the mapping faults, a wrong size throws (uncaught: a bug).
inline void exercise_tensor(const pith::file_tensor& tensor) {
  if (tensor.name.empty() && tensor.file.empty()) fail("tensor without name or file");
  if (!tensor.bytes.empty()) {
    keep(tensor.bytes.front());
    keep(tensor.bytes.back());
  }
  const std::int64_t count = tensor.element_count();
  if (count < 0) fail("negative element count for tensor " + std::string(tensor.name));
  const bool quantized = tensor.storage && pith::dtype_is_quantized(*tensor.storage);
  if ((tensor.dtype == pith::element_type::other && !quantized) || count > max_converted_elements) return;
  const std::size_t expected_bytes = quantized ? pith::dtype_row_bytes(*tensor.storage, static_cast<std::size_t>(count))
                                               : static_cast<std::size_t>(count) * (tensor.dtype == pith::element_type::f32 ? 4 : 2);
  if (quantized && static_cast<std::size_t>(count) % pith::dtype_block_elements(*tensor.storage) != 0)
    fail("tensor " + std::string(tensor.name) + " holds a partial " + std::string(pith::dtype_name(*tensor.storage)) + " block");
  if (tensor.bytes.size() != expected_bytes)
    fail("tensor " + std::string(tensor.name) + " has " + std::to_string(count) + " elements in " +
         std::to_string(tensor.bytes.size()) + " bytes");
  const auto values = pith::to_float(tensor);
  if (!values.empty()) {
    keep(values.front());
    keep(values.back());
  }
}

}  // namespace pith_fuzz
