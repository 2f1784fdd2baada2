// SPDX-License-Identifier: MIT
// Tests of mapped_file: contents, empty files, errors naming the file, move semantics.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <utility>

#include <pith/io/mmap.hpp>

#include "test_util.hpp"

namespace {

using pith_test::temp_file;

TEST(MappedFile, MapsTheBytesOfTheFile) {
  const temp_file file(".bin");
  const std::string content = std::string("pith\0mapped", 11) + std::string(5000, 'x');
  file.write(content);
  const pith::mapped_file mapping(file.path());
  ASSERT_EQ(mapping.size(), content.size());
  EXPECT_FALSE(mapping.empty());
  EXPECT_EQ(std::memcmp(mapping.data(), content.data(), content.size()), 0);
  EXPECT_EQ(mapping.bytes().size(), content.size());
  EXPECT_EQ(mapping.path(), file.string());
}

TEST(MappedFile, EmptyFileHasSizeZero) {
  const temp_file file(".bin");
  file.write("");
  const pith::mapped_file mapping(file.path());
  EXPECT_EQ(mapping.size(), 0u);
  EXPECT_TRUE(mapping.empty());
  EXPECT_TRUE(mapping.bytes().empty());
}

TEST(MappedFile, MissingFileThrowsIoErrorNamingFileAndReason) {
  const temp_file file(".missing");
  PITH_EXPECT_THROW_WITH(pith::mapped_file{file.path()}, pith::io_error, file.name());
  PITH_EXPECT_THROW_WITH(pith::mapped_file{file.path()}, pith::io_error, "No such file");
}

TEST(MappedFile, DirectoryIsNotARegularFile) {
  const auto directory = std::filesystem::temp_directory_path();
  PITH_EXPECT_THROW_WITH(pith::mapped_file{directory}, pith::io_error, "not a regular file");
}

TEST(MappedFile, MoveTransfersTheMapping) {
  const temp_file file(".bin");
  file.write("abcdef");
  pith::mapped_file first(file.path());
  const std::byte* address = first.data();
  pith::mapped_file second(std::move(first));
  EXPECT_EQ(second.data(), address);
  EXPECT_EQ(second.size(), 6u);
  EXPECT_EQ(first.size(), 0u);  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  EXPECT_EQ(first.data(), nullptr);
  pith::mapped_file third;
  third = std::move(second);
  EXPECT_EQ(third.data(), address);
  EXPECT_EQ(static_cast<char>(third.bytes()[5]), 'f');
}

}  // namespace
