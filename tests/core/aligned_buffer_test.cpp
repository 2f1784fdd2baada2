// SPDX-License-Identifier: MIT
// Tests of aligned_buffer: alignment, zero fill, moves, the empty state and an impossible size.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

#include <pith/core/aligned_buffer.hpp>

namespace {

TEST(AlignedBuffer, EverySizeIsAlignedAndZeroed) {
  for (std::size_t size = 1; size < 200; ++size) {
    pith::aligned_buffer<float> buffer(size);
    ASSERT_EQ(buffer.size(), size);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(buffer.data()) % pith::buffer_alignment, 0u) << size;
    for (float value : buffer) ASSERT_EQ(value, 0.0f);
  }
}

TEST(AlignedBuffer, DefaultIsEmpty) {
  pith::aligned_buffer<double> buffer;
  EXPECT_TRUE(buffer.empty());
  EXPECT_EQ(buffer.data(), nullptr);
  buffer.resize(0);
  EXPECT_TRUE(buffer.empty());
}

TEST(AlignedBuffer, MoveTransfersOwnership) {
  pith::aligned_buffer<int> a(10);
  a[3] = 7;
  const int* storage = a.data();
  pith::aligned_buffer<int> b(std::move(a));
  EXPECT_EQ(b.data(), storage);
  EXPECT_EQ(b[3], 7);
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  pith::aligned_buffer<int> c(2);
  c = std::move(b);
  EXPECT_EQ(c.size(), 10u);
  EXPECT_EQ(c[3], 7);
}

TEST(AlignedBuffer, ResizeZeroFills) {
  pith::aligned_buffer<float> buffer(8);
  buffer[0] = 1.0f;
  buffer.resize(8);
  EXPECT_EQ(buffer[0], 0.0f);
  buffer.resize(100);
  EXPECT_EQ(buffer.size(), 100u);
  EXPECT_EQ(buffer[99], 0.0f);
}

TEST(AlignedBuffer, ImpossibleSizeThrows) {
  pith::aligned_buffer<float> buffer;
  EXPECT_THROW(buffer.resize(std::numeric_limits<std::size_t>::max() / 2), pith::argument_error);
}

}  // namespace
