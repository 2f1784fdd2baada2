// SPDX-License-Identifier: MIT
// sampler: greedy ties, seeded reproducibility, temperature and top-p restricting the support.
#include <gtest/gtest.h>

#include <limits>
#include <set>
#include <string>
#include <vector>

#include <pith/model/random_weights.hpp>
#include <pith/model/sampler.hpp>
#include <pith/model/transformer.hpp>
#include <pith/runtime/reader.hpp>

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

// A NaN or infinite logit is an error naming the token id, greedy or sampled; it is never
// silently turned into the last id.
TEST(sampler_nonfinite_4_2, nan_and_inf_logits_throw_naming_the_token_id) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (const float bad : {nan, inf, -inf})
    for (const float temperature : {0.0f, 1.0f}) {
      pith::sampler s({temperature, 0.9f, 3});
      const std::vector<float> logits{0.5f, 1.0f, bad, 0.25f};
      try {
        (void)s.sample(logits);
        ADD_FAILURE() << "no error for logit " << bad << " at temperature " << temperature;
      } catch (const pith::argument_error& e) {
        EXPECT_NE(std::string(e.what()).find("token id 2"), std::string::npos) << e.what();
      }
    }
  const std::vector<float> all_nan(8, nan);
  EXPECT_THROW((void)pith::sampler::argmax(all_nan), pith::argument_error);
  pith::sampler warm({1.0f, 1.0f, 5});
  EXPECT_THROW((void)warm.sample(all_nan), pith::argument_error);
}

TEST(sampler_nonfinite_4_2, allow_nonfinite_never_chooses_a_nonfinite_entry) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const std::vector<float> logits{nan, 0.0f, inf, 0.5f, -inf, nan};
  pith::sampler_options options;
  options.allow_nonfinite = true;
  EXPECT_EQ(pith::sampler(options).sample(logits), 3);
  options.temperature = 1.0f;
  options.seed = 11;
  for (const float top_p : {1.0f, 0.9f}) {
    options.top_p = top_p;
    pith::sampler s(options);
    for (int i = 0; i < 500; ++i) {
      const int id = s.sample(logits);
      EXPECT_TRUE(id == 1 || id == 3) << id;
    }
  }
  const std::vector<float> all_bad{nan, inf};
  EXPECT_THROW((void)pith::sampler(options).sample(all_bad), pith::argument_error);
}

// A NaN weight (one embedding entry) reaches every logit; the sampler, which pith's reader and
// programs call, reports it instead of returning an id.
TEST(sampler_nonfinite_4_2, nan_weight_through_a_session_and_a_reader_is_an_error) {
  pith::model_config c;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.vocab_size = 29;
  c.rms_norm_eps = 1e-5f;
  c.max_position_embeddings = 256;
  c.source = "test config";
  auto weights = pith::random_weights(c, 5);
  {
    // A NaN in token 3's embedding row: a copy of the table the weights then own.
    pith::aligned_buffer<float> table(c.vocab_size * c.hidden_size);
    for (std::size_t r = 0; r < c.vocab_size; ++r) pith::row_to_float(weights.token_embedding, r, table.data() + r * c.hidden_size);
    table[3 * c.hidden_size + 7] = std::numeric_limits<float>::quiet_NaN();
    weights.token_embedding = pith::tensor_view::own(std::move(table), pith::dtype::f32, c.vocab_size, c.hidden_size);
  }
  pith::session s(weights);
  std::vector<float> logits(c.vocab_size);
  const std::vector<std::int32_t> ids{1, 3};
  s.forward(ids, logits.data());
  pith::sampler greedy;
  EXPECT_THROW((void)greedy.sample(logits), pith::argument_error);

  pith::reader_options options;
  options.policy = pith::policy_kind::streaming;
  options.budget = 8;
  options.chunk_size = 8;
  options.max_answer_tokens = 4;
  const std::vector<std::int32_t> instruction{5, 6};
  pith::reader r(weights, options, instruction);
  std::vector<std::int32_t> document(40, 4);
  document[0] = 1;
  document[20] = 3;
  r.feed(document);
  EXPECT_THROW((void)r.answer(2, greedy), pith::argument_error);
}

}  // namespace
