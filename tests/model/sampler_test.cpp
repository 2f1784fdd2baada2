// SPDX-License-Identifier: MIT
// sampler: greedy ties, seeded reproducibility, temperature and top-p restricting the support.
#include <gtest/gtest.h>

#include <set>
#include <vector>

#include <pith/model/sampler.hpp>

namespace {

TEST(Sampler, GreedyTakesTheLowestIdAmongTies) {
  pith::sampler s;
  const std::vector<float> logits{1.0f, 3.0f, 3.0f, -2.0f};
  EXPECT_EQ(s.sample(logits), 1);
}

TEST(Sampler, SameSeedSameSequence) {
  const std::vector<float> logits{0.1f, 0.5f, 0.3f, 0.2f, 0.4f};
  pith::sampler a({1.0f, 1.0f, 42}), b({1.0f, 1.0f, 42}), c({1.0f, 1.0f, 43});
  std::vector<int> sa, sb, sc;
  for (int i = 0; i < 50; ++i) sa.push_back(a.sample(logits)), sb.push_back(b.sample(logits)), sc.push_back(c.sample(logits));
  EXPECT_EQ(sa, sb);
  EXPECT_NE(sa, sc);
}

TEST(Sampler, TopPKeepsOnlyTheNucleus) {
  // Probabilities ~ 0.64, 0.24, 0.09, 0.03: top_p 0.5 leaves only the first.
  const std::vector<float> logits{3.0f, 2.0f, 1.0f, 0.0f};
  pith::sampler s({1.0f, 0.5f, 7});
  for (int i = 0; i < 200; ++i) EXPECT_EQ(s.sample(logits), 0);
  pith::sampler wide({1.0f, 0.95f, 7});
  std::set<int> seen;
  for (int i = 0; i < 2000; ++i) seen.insert(wide.sample(logits));
  EXPECT_EQ(seen, (std::set<int>{0, 1, 2}));
}

TEST(Sampler, InvalidOptionsAreRejected) {
  EXPECT_THROW(pith::sampler({-1.0f, 1.0f, 1}), pith::argument_error);
  EXPECT_THROW(pith::sampler({1.0f, 0.0f, 1}), pith::argument_error);
  EXPECT_THROW(pith::sampler({1.0f, 1.5f, 1}), pith::argument_error);
  pith::sampler s;
  EXPECT_THROW(s.sample({}), pith::argument_error);
}

}  // namespace
