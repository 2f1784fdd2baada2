// SPDX-License-Identifier: MIT
// The header's version equals the CMake project's version.
#include <gtest/gtest.h>

#include <string>

#include <pith/version.hpp>

TEST(Version, MatchesTheCMakeProject) {
  EXPECT_EQ(std::string(pith::version_string), PITH_PROJECT_VERSION);
  EXPECT_EQ(std::to_string(pith::version_major) + "." + std::to_string(pith::version_minor) + "." +
                std::to_string(pith::version_patch),
            PITH_PROJECT_VERSION);
}
