// SPDX-License-Identifier: MIT
// mapped_file: a read-only memory mapping of a whole file (POSIX mmap), owned and move-only; and
// read_regular_file, which reads one. Both refuse anything but regular files without blocking.
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

namespace detail {

/// What a file that is not a regular one is, for error messages; nullptr for other kinds.
inline const char* file_kind(mode_t mode) noexcept {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return nullptr;
}

/// An open read-only descriptor of a regular file, closed on destruction. The file is opened
/// non-blocking, so a FIFO (whose blocking open waits for a writer) or a device is refused at
/// once by the type check rather than hanging; for regular files O_NONBLOCK changes nothing.
class regular_file {
 public:
  explicit regular_file(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd_ < 0) fail("cannot open", errno);
    struct ::stat status {};
    if (::fstat(fd_, &status) != 0) {
      const int error = errno;
      close();
      fail("cannot stat", error);
    }
    if (!S_ISREG(status.st_mode)) {
      const char* kind = file_kind(status.st_mode);
      close();
      PITH_THROW(io_error, path_ + ": " + (kind != nullptr ? std::string("is ") + kind + ", not" : std::string("not")) +
                               " a regular file");
    }
    size_ = static_cast<std::size_t>(status.st_size);
  }
  regular_file(const regular_file&) = delete;
  regular_file& operator=(const regular_file&) = delete;
  ~regular_file() { close(); }

  int descriptor() const noexcept { return fd_; }
  std::size_t size() const noexcept { return size_; }

  /// The whole file (io_error naming the file when reading fails).
  std::string read_all() const {
    std::string text(size_, '\0');
    std::size_t done = 0;
    while (done < text.size()) {
      const ssize_t count = ::read(fd_, text.data() + done, text.size() - done);
      if (count < 0 && errno == EINTR) continue;
      if (count < 0) fail("cannot read", errno);
      if (count == 0) break;  // the file shrank since fstat
      done += static_cast<std::size_t>(count);
    }
    text.resize(done);
    return text;
  }

 private:
  // The descriptor is closed by the caller (constructor) or the destructor (read_all).
  [[noreturn]] void fail(const char* what, int error) const {
    PITH_THROW(io_error, path_ + ": " + what + ": " + std::generic_category().message(error));
  }
  void close() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  std::string path_;
  int fd_ = -1;
  std::size_t size_ = 0;
};

}  // namespace detail

/// The contents of the regular file `path` (configurations and JSON vocabularies); io_error naming
/// the file when it cannot be opened or read or is not a regular file (a directory, a FIFO, ...).
inline std::string read_regular_file(const std::filesystem::path& path) {
  return detail::regular_file(path.string()).read_all();
}

/// The bytes of a file, mapped read-only and private. An empty file maps to an empty span (no
/// mapping is made). The view stays valid while the object lives; moving the object keeps the
/// address. Truncating the file on disk while it is mapped makes later reads fault (SIGBUS): pith
/// never writes to files it maps.
class mapped_file {
 public:
  mapped_file() noexcept = default;

  /// Maps `path`; throws io_error naming the file and the system's reason on failure, and naming
  /// the kind of file when it is not a regular one (a directory, a FIFO, a device, a socket).
  explicit mapped_file(const std::filesystem::path& path) : path_(path.string()) {
    const detail::regular_file file(path_);
    size_ = file.size();
    if (size_ != 0) {
      void* address = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, file.descriptor(), 0);
      if (address == MAP_FAILED) {
        const int error = errno;
        size_ = 0;
        fail("cannot map", error);
      }
      data_ = static_cast<const std::byte*>(address);
    }
    // The mapping keeps its own reference to the file; `file` closes the descriptor.
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
