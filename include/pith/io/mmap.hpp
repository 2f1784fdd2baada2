// SPDX-License-Identifier: MIT
// mapped_file: a read-only memory mapping of a whole file (POSIX mmap), owned and move-only.
#pragma once

#include <cerrno>
#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <system_error>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pith/core/error.hpp"

namespace pith {

/// The bytes of a file, mapped read-only and private. An empty file maps to an empty span (no
/// mapping is made). The view stays valid while the object lives; moving the object keeps the
/// address. Truncating the file on disk while it is mapped makes later reads fault (SIGBUS): pith
/// never writes to files it maps.
class mapped_file {
 public:
  mapped_file() noexcept = default;

  /// Maps `path`; throws io_error naming the file and the system's reason on failure.
  explicit mapped_file(const std::filesystem::path& path) : path_(path.string()) {
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("cannot open", errno);
    struct ::stat status {};
    if (::fstat(fd, &status) != 0) {
      const int error = errno;
      ::close(fd);
      fail("cannot stat", error);
    }
    if (!S_ISREG(status.st_mode)) {
      ::close(fd);
      PITH_THROW(io_error, path_ + ": not a regular file");
    }
    size_ = static_cast<std::size_t>(status.st_size);
    if (size_ != 0) {
      void* address = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (address == MAP_FAILED) {
        const int error = errno;
        ::close(fd);
        size_ = 0;
        fail("cannot map", error);
      }
      data_ = static_cast<const std::byte*>(address);
    }
    ::close(fd);  // the mapping keeps its own reference to the file
  }

  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  mapped_file(mapped_file&& other) noexcept
      : path_(std::move(other.path_)),
        data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)) {}
  mapped_file& operator=(mapped_file&& other) noexcept {
    if (this != &other) {
      release();
      path_ = std::move(other.path_);
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  ~mapped_file() { release(); }

  std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
  const std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  /// The path as given to the constructor, used in every error message about this file.
  const std::string& path() const noexcept { return path_; }

 private:
  [[noreturn]] void fail(const char* what, int error) const {
    PITH_THROW(io_error, path_ + ": " + what + ": " + std::generic_category().message(error));
  }
  void release() noexcept {
    if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
    data_ = nullptr;
    size_ = 0;
  }

  std::string path_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace pith
