// SPDX-License-Identifier: MIT
// Tests of pith's error hierarchy and PITH_THROW.
#include <gtest/gtest.h>

#include <pith/core/error.hpp>

namespace {

TEST(Error, SubclassesDeriveFromPithErrorAndRuntimeError) {
  EXPECT_THROW(PITH_THROW(io_error, "io"), pith::error);
  EXPECT_THROW(PITH_THROW(format_error, "format"), pith::error);
  EXPECT_THROW(PITH_THROW(config_error, "config"), pith::error);
  EXPECT_THROW(PITH_THROW(shape_error, "shape"), pith::error);
  EXPECT_THROW(PITH_THROW(argument_error, "argument"), std::runtime_error);
}

TEST(Error, ThrowKeepsTheMessageAndTheType) {
  try {
    PITH_THROW(config_error, std::string("config.json: key 'hidden_size' is missing"));
    FAIL() << "PITH_THROW returned";
  } catch (const pith::config_error& e) {
    EXPECT_STREQ(e.what(), "config.json: key 'hidden_size' is missing");
  }
}

TEST(Error, SubclassesAreDistinct) {
  EXPECT_THROW(
      {
        try {
          PITH_THROW(shape_error, "x");
        } catch (const pith::io_error&) {
          FAIL() << "shape_error caught as io_error";
        }
      },
      pith::shape_error);
}

}  // namespace
