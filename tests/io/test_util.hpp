// SPDX-License-Identifier: MIT
// Helpers for the io tests: temporary files, shared-model paths and a GGUF byte builder.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include <pith/io/detail.hpp>

namespace pith_test {

/// A file in the temporary directory, unique to this process and test, removed on destruction.
class temp_file {
 public:
  explicit temp_file(std::string_view suffix) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = "pith_io_" + std::to_string(::getpid()) + "_";
    if (info != nullptr) name += std::string(info->test_suite_name()) + "_" + info->name() + "_";
    name += std::to_string(counter()++) + std::string(suffix);
    path_ = std::filesystem::temp_directory_path() / name;
  }
  temp_file(const temp_file&) = delete;
  temp_file& operator=(const temp_file&) = delete;
  ~temp_file() {
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }
  const std::filesystem::path& path() const noexcept { return path_; }
  std::string string() const { return path_.string(); }
  /// The file name alone, which every error message must contain.
  std::string name() const { return path_.filename().string(); }

  void write(std::string_view bytes) const {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw std::runtime_error("cannot write " + path_.string());
  }

 private:
  static int& counter() {
    static int value = 0;
    return value;
  }
  std::filesystem::path path_;
};

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// A file under PITH_SHARED_MODELS_DIR; empty when it does not exist.
inline std::filesystem::path shared_model(std::string_view relative) {
  const std::filesystem::path path = std::filesystem::path(PITH_SHARED_MODELS_DIR) / relative;
  return std::filesystem::exists(path) ? path : std::filesystem::path();
}

/// Declares `variable` as the shared model file `relative`, or skips the test when it is absent.
#define PITH_SHARED_MODEL_OR_SKIP(variable, relative)                         \
  const std::filesystem::path variable = ::pith_test::shared_model(relative); \
  if (variable.empty())                                                       \
  GTEST_SKIP() << "shared model file " << (relative) << " not found under " << PITH_SHARED_MODELS_DIR

/// Expects `statement` to throw `exception_type` whose message contains `needle`.
#define PITH_EXPECT_THROW_WITH(statement, exception_type, needle)                \
  do {                                                                           \
    try {                                                                        \
      statement;                                                                 \
      ADD_FAILURE() << "no exception from " #statement;                          \
    } catch (const exception_type& e) {                                          \
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)           \
          << "message: " << e.what() << "\nexpected to contain: " << (needle);   \
    } catch (const std::exception& e) {                                          \
      ADD_FAILURE() << "wrong exception type from " #statement ": " << e.what(); \
    }                                                                            \
  } while (false)

/// Builds GGUF files byte by byte, so tests can write valid files and every kind of corruption.
class gguf_builder {
 public:
  gguf_builder& raw_u32(std::uint32_t value) { return put(value); }
  gguf_builder& raw_u64(std::uint64_t value) { return put(value); }
  gguf_builder& raw_string(std::string_view text) {
    put<std::uint64_t>(text.size());
    bytes_.append(text);
    return *this;
  }
  gguf_builder& header(std::uint64_t tensor_count, std::uint64_t kv_count, std::uint32_t version = 3) {
    bytes_.append("GGUF");
    put(version);
    put(tensor_count);
    return put(kv_count);
  }
  template <class T>
  gguf_builder& kv(std::string_view key, std::uint32_t type, T value) {
    raw_string(key);
    put(type);
    return put(value);
  }
  gguf_builder& kv_string(std::string_view key, std::string_view value) {
    raw_string(key);
    put<std::uint32_t>(8);
    return raw_string(value);
  }
  template <class T>
  gguf_builder& kv_array(std::string_view key, std::uint32_t element_type, const std::vector<T>& values) {
    raw_string(key);
    put<std::uint32_t>(9);
    put(element_type);
    put<std::uint64_t>(values.size());
    for (const auto& v : values) put(v);
    return *this;
  }
  gguf_builder& kv_string_array(std::string_view key, const std::vector<std::string>& values) {
    raw_string(key);
    put<std::uint32_t>(9);
    put<std::uint32_t>(8);
    put<std::uint64_t>(values.size());
    for (const auto& v : values) raw_string(v);
    return *this;
  }
  gguf_builder& tensor_info(std::string_view name, const std::vector<std::uint64_t>& ne, std::uint32_t type,
                            std::uint64_t offset) {
    raw_string(name);
    put<std::uint32_t>(static_cast<std::uint32_t>(ne.size()));
    for (const auto extent : ne) put(extent);
    put(type);
    return put(offset);
  }
  /// Zero padding up to a multiple of `alignment`: the start of the data section.
  gguf_builder& align(std::size_t alignment = 32) {
    bytes_.append((alignment - bytes_.size() % alignment) % alignment, '\0');
    return *this;
  }
  gguf_builder& data(std::string_view bytes) {
    bytes_.append(bytes);
    return *this;
  }
  template <class T>
  gguf_builder& put(T value) {
    pith::detail::append_little_endian(bytes_, value);
    return *this;
  }
  const std::string& bytes() const noexcept { return bytes_; }

 private:
  std::string bytes_;
};

/// Little-endian bytes of `values`.
template <class T>
std::string le_bytes(const std::vector<T>& values) {
  std::string out;
  for (const auto& v : values) pith::detail::append_little_endian(out, v);
  return out;
}

}  // namespace pith_test
