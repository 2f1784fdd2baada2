// SPDX-License-Identifier: MIT
// The chunked reader with every policy: budgets, the newest chunk, sorted unique selections,
// re-rotation, memory that does not grow, edge cases, a user-defined policy, concurrent readers; the
// oneshot protocol (kept counts at a ratio, r = 0 equals the full cache, the question seen or not) and
// the different-question variant.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <pith/model/random_weights.hpp>
#include <pith/runtime/reader.hpp>

namespace {

pith::model_config small_config() {
  pith::model_config c;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_layers = 3;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.vocab_size = 50;
  c.rms_norm_eps = 1e-5f;
  c.max_position_embeddings = 256;
  c.source = "test config";
  return c;
}

const pith::model_weights& small_model() {
  static const pith::model_weights w = pith::random_weights(small_config(), 21);
  return w;
}

std::vector<std::int32_t> document(std::size_t n, std::uint32_t seed = 1) {
  std::vector<std::int32_t> ids(n);
  for (std::size_t i = 0; i < n; ++i) ids[i] = static_cast<std::int32_t>(3 + (i * 7 + seed * 13 + i * i) % 47);
  if (n) ids[0] = 1;
  return ids;
}

const std::vector<std::int32_t> instruction{5, 9, 11, 4};

class ReaderPolicyTest : public ::testing::TestWithParam<pith::policy_kind> {};

TEST_P(ReaderPolicyTest, KeepsTheBudgetTheNewestChunkAndSortedSlots) {
  pith::reader_options o;
  o.policy = GetParam();
  o.budget = 20;
  o.chunk_size = 8;
  o.max_answer_tokens = 8;
  o.max_context = 256;
  pith::reader r(small_model(), o, instruction);
  const auto doc = document(150);
  std::size_t fed = 0;
  const auto& c = small_model().config;
  // pyramidkv: each layer keeps its own budget (they sum to budget x layers); the others keep o.budget.
  const auto budgets = o.policy == pith::policy_kind::pyramidkv ? pith::pyramid_budgets(o.budget, c.num_layers)
                                                                : std::vector<std::size_t>(c.num_layers, o.budget);
  while (fed < doc.size()) {
    const std::size_t n = std::min<std::size_t>(8, doc.size() - fed);
    r.feed(std::span(doc).subspan(fed, n));
    fed += n;
    const std::size_t read = r.stats().tokens_read;  // a partial last chunk waits for answer()
    if (read == 0) continue;
    // Reindexed: every layer's slots end just before the next position (the largest layer's count).
    std::size_t top = 0;
    for (std::size_t l = 0; l < c.num_layers; ++l) top = std::max(top, r.main_session().cache().size(l, 0));
    EXPECT_EQ(r.main_session().position(), top);
    for (std::size_t l = 0; l < c.num_layers; ++l)
      for (std::size_t g = 0; g < c.num_kv_heads; ++g) {
        const auto& kept = r.document_positions(l, g);
        ASSERT_EQ(kept.size(), r.main_session().cache().size(l, g));
        if (o.policy != pith::policy_kind::full) {
          ASSERT_LE(kept.size(), budgets[l] + o.chunk_size);
        } else {
          ASSERT_EQ(kept.size(), read);
        }
        for (std::size_t i = 1; i < kept.size(); ++i) ASSERT_LT(kept[i - 1], kept[i]);
        // The newest chunk is always there.
        for (std::size_t i = 0; i < o.chunk_size; ++i)
          ASSERT_EQ(kept[kept.size() - o.chunk_size + i], static_cast<std::int64_t>(read - o.chunk_size + i));
        // Reindexed: RoPE positions are the slot indices (shifted to end at the largest layer's count).
        const std::int64_t* positions = r.main_session().cache().positions(l, g);
        for (std::size_t i = 0; i < kept.size(); ++i)
          ASSERT_EQ(positions[i], static_cast<std::int64_t>(top - kept.size() + i));
      }
  }
  pith::sampler greedy;
  const auto answer = r.answer(5, greedy);
  EXPECT_EQ(answer.size(), 5u);
  if (o.policy == pith::policy_kind::citrus_cse || o.policy == pith::policy_kind::citrus_shared) {
    // The final instruction-scored cut leaves exactly the budget before the instruction and answer.
    EXPECT_EQ(r.main_session().cache().size(0, 0), o.budget + instruction.size() + 4);
  }
  EXPECT_EQ(r.stats().tokens_read, doc.size());
}

INSTANTIATE_TEST_SUITE_P(Policies, ReaderPolicyTest, ::testing::ValuesIn(pith::builtin_policies),
                         [](const auto& info) {
                           std::string name = pith::policy_name(info.param);
                           for (auto& ch : name)
                             if (ch == '-') ch = '_';
                           return name;
                         });

// expected-attention keeps its first `sink` slots (kvpress's sinks) at every cut, in every KV head.
TEST(Reader, ExpectedAttentionKeepsTheSinks) {
  pith::reader_options o;
  o.policy = pith::policy_kind::expected_attention;
  o.budget = 12;
  o.chunk_size = 8;
  o.max_answer_tokens = 4;
  const auto doc = document(150);
  const auto& c = small_model().config;
  pith::reader r(small_model(), o, instruction);
  r.feed(doc);
  for (std::size_t l = 0; l < c.num_layers; ++l)
    for (std::size_t g = 0; g < c.num_kv_heads; ++g) {
      const auto& kept = r.document_positions(l, g);
      ASSERT_GE(kept.size(), 4u);
      EXPECT_EQ(std::vector<std::int64_t>(kept.begin(), kept.begin() + 4), (std::vector<std::int64_t>{0, 1, 2, 3}))
          << "layer " << l << " head " << g;
    }
  o.expected_positions = 0;
  EXPECT_THROW(pith::reader(small_model(), o, instruction), pith::argument_error);
}

TEST(Reader, ReRotatedKeysEqualKeysRotatedDirectly) {
  // Two sessions: one whose key at position 37 is re-rotated to 5, one that writes it at 5.
  const auto& w = small_model();
  pith::session a(w, {64, 64}), b(w, {64, 64});
  std::vector<float> logits(w.config.vocab_size);
  const std::int32_t token = 7;
  a.set_position(37);
  a.forward(std::span(&token, 1), logits.data());
  b.set_position(5);
  b.forward(std::span(&token, 1), logits.data());
  const std::int64_t target = 5;
  for (std::size_t g = 0; g < w.config.num_kv_heads; ++g) {
    a.rerotate(0, g, std::span(&target, 1));
    for (std::size_t i = 0; i < w.config.head_dim; ++i)
      EXPECT_NEAR(a.cache().keys(0, g)[i], b.cache().keys(0, g)[i], 1e-5f) << g << "," << i;
    EXPECT_EQ(a.cache().positions(0, g)[0], 5);
  }
}

TEST(Reader, MemoryDoesNotGrowWithTheDocument) {
  pith::reader_options o;
  o.budget = 16;
  o.chunk_size = 8;
  o.max_answer_tokens = 4;
  pith::reader small_doc(small_model(), o, instruction), long_doc(small_model(), o, instruction);
  small_doc.feed(document(40));
  long_doc.feed(document(2000));
  EXPECT_EQ(small_doc.state_bytes(), long_doc.state_bytes());
  EXPECT_EQ(long_doc.main_session().cache().size(0, 0), 24u);
  // Reindexed positions let a 256-position model read 2000 tokens.
  EXPECT_LT(long_doc.main_session().position(), 256u);
}

TEST(Reader, EdgeCases) {
  pith::reader_options o;
  o.budget = 0;
  EXPECT_THROW(pith::reader(small_model(), o, instruction), pith::argument_error);
  o.budget = 1;
  for (const std::size_t even : {0, 2, 8}) {  // pooling windows are centred on the slot: odd sizes only
    o.citrus_pool = even;
    EXPECT_THROW(pith::reader(small_model(), o, instruction), pith::argument_error);
    o.citrus_pool = 1;
    o.snapkv_kernel = even;
    EXPECT_THROW(pith::reader(small_model(), o, instruction), pith::argument_error);
    o.snapkv_kernel = 7;
  }
  o.chunk_size = 4;
  o.max_answer_tokens = 3;
  {
    pith::reader r(small_model(), o, instruction);
    r.feed(document(30));
    EXPECT_EQ(r.main_session().cache().size(0, 0), 5u);  // 1 kept + the newest chunk of 4
    pith::sampler greedy;
    EXPECT_EQ(r.answer(3, greedy).size(), 3u);
  }
  o.budget = 500;  // budget + chunk + instruction + answer exceed the model's 256 positions
  EXPECT_THROW(pith::reader(small_model(), o, instruction), pith::argument_error);
  o.budget = 100;  // more than the document: nothing is evicted
  {
    pith::reader r(small_model(), o, instruction);
    r.feed(document(60));
    EXPECT_EQ(r.document_positions(1, 1).size(), 60u);
  }
}

// Finding 4.8: sizes near 2^64 wrapped the sums that size the caches and surfaced as a misleading
// "KV cache holds N rows"; now the option is named.
TEST(Reader, OverflowingSizesNameTheOption_4_8) {
  for (const char* name : {"budget", "chunk_size", "max_answer_tokens", "max_context"}) {
    pith::reader_options o;
    o.positions = pith::position_mode::original;  // no context check before the bound
    const std::string option = name;
    (option == "budget" ? o.budget : option == "chunk_size" ? o.chunk_size
                                     : option == "max_answer_tokens" ? o.max_answer_tokens : o.max_context) =
        std::numeric_limits<std::size_t>::max() - 3;
    try {
      pith::reader r(small_model(), o, instruction);
      ADD_FAILURE() << name << " 2^64 - 4 was accepted";
    } catch (const pith::argument_error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
}

TEST(Reader, LargeBudgetAndLargeChunk) {
  pith::reader_options o;
  o.budget = 100;
  o.chunk_size = 64;
  o.max_answer_tokens = 4;
  pith::reader r(small_model(), o, instruction);
  r.feed(document(30));  // smaller than one chunk: read at answer time
  pith::sampler greedy;
  EXPECT_EQ(r.answer(2, greedy).size(), 2u);
  EXPECT_EQ(r.document_positions(0, 0).size(), 30u);
}

TEST(Reader, EmptyDocumentAndEmptyInstruction) {
  pith::reader_options o;
  o.budget = 8;
  o.chunk_size = 4;
  o.max_answer_tokens = 4;
  {
    pith::reader r(small_model(), o, instruction);
    pith::sampler greedy;
    EXPECT_THROW(r.answer(2, greedy), pith::argument_error);
  }
  EXPECT_THROW(pith::reader(small_model(), o, {}), pith::argument_error);  // citrus-shared needs it
  o.policy = pith::policy_kind::citrus_cse;
  pith::reader r(small_model(), o, {});
  r.feed(document(20));
  pith::sampler greedy;
  EXPECT_EQ(r.answer(2, greedy).size(), 2u);
}

// Perplexity under eviction (reader::log_likelihood). The full policy's chunked reading and chunked
// continuation compute what one whole-sequence pass computes, up to the float32 kernels' summation
// order: per token, log-probabilities within this of the plain session's.
constexpr double continuation_log_prob_tolerance = 1e-4;

// Sum over continuation[i] of log softmax(logits predicting it), from one session pass over doc + cont.
double plain_log_likelihood(const std::vector<std::int32_t>& doc, const std::vector<std::int32_t>& continuation) {
  const auto& w = small_model();
  std::vector<std::int32_t> all = doc;
  all.insert(all.end(), continuation.begin(), continuation.end());
  pith::session s(w, {256, 256});
  std::vector<float> logits(all.size() * w.config.vocab_size);
  s.forward(all, logits.data(), true);
  double sum = 0.0;
  for (std::size_t i = 0; i < continuation.size(); ++i) {
    const std::size_t row = doc.size() - 1 + i;
    sum += pith::log_softmax_at(std::span<const float>(logits).subspan(row * w.config.vocab_size, w.config.vocab_size),
                                continuation[i]);
  }
  return sum;
}

TEST(ReaderLogLikelihood, FullPolicyEqualsAPlainForwardOverDocumentAndContinuation) {
  pith::reader_options o;
  o.policy = pith::policy_kind::full;
  o.chunk_size = 8;
  o.max_answer_tokens = 20;
  o.max_context = 256;
  const auto doc = document(61), continuation = document(20, 5);  // a partial last chunk; 20 > one chunk
  pith::reader r(small_model(), o, {});
  r.feed(doc);
  const auto scored = r.log_likelihood(continuation);
  EXPECT_EQ(scored.tokens, continuation.size());
  const double plain = plain_log_likelihood(doc, continuation);
  EXPECT_NEAR(scored.sum, plain, continuation_log_prob_tolerance * static_cast<double>(continuation.size()));
  EXPECT_NEAR(scored.perplexity(), std::exp(-plain / static_cast<double>(continuation.size())),
              scored.perplexity() * continuation_log_prob_tolerance);
  // One token: the document's last logits alone.
  pith::reader one(small_model(), o, {});
  one.feed(doc);
  EXPECT_NEAR(one.log_likelihood(std::span(continuation).first(1)).sum,
              plain_log_likelihood(doc, {continuation[0]}), continuation_log_prob_tolerance);
}

TEST(ReaderLogLikelihood, EvictingPoliciesGiveAFinitePerplexityOfAtLeastOne) {
  pith::reader_options o;
  o.budget = 12;
  o.chunk_size = 8;
  o.max_answer_tokens = 16;
  const auto doc = document(150), continuation = document(16, 3);
  double full_sum = 0.0;
  {
    pith::reader_options f = o;
    f.policy = pith::policy_kind::full;
    f.max_context = 200;
    pith::reader r(small_model(), f, {});
    r.feed(doc);
    full_sum = r.log_likelihood(continuation).sum;
  }
  for (const char* label : {"streaming", "snapkv", "h2o", "citrus-cse", "pyramidkv", "criticalkv", "expected-attention",
                            "adakv(snapkv)", "adakv(knorm)"}) {
    const auto policy = pith::parse_policy_label(label);
    o.policy = policy.kind;
    o.head_adaptive = policy.head_adaptive;  // AdaKV: the KV heads' unequal caches score the continuation
    pith::reader r(small_model(), o, {});
    r.feed(doc);
    const auto scored = r.log_likelihood(continuation);
    const std::string name = label;
    EXPECT_EQ(scored.tokens, continuation.size()) << name;
    EXPECT_LE(scored.sum, 0.0) << name;
    EXPECT_TRUE(std::isfinite(scored.perplexity())) << name;
    EXPECT_GE(scored.perplexity(), 1.0) << name;
    // The evicted cache reads a shorter context: the continuation's score is not the full cache's.
    EXPECT_NE(scored.sum, full_sum) << name;
  }
}

TEST(ReaderLogLikelihood, BadContinuationsAndTheStateAfterwards) {
  pith::reader_options o;
  o.policy = pith::policy_kind::streaming;
  o.budget = 8;
  o.chunk_size = 4;
  o.max_answer_tokens = 6;
  const auto doc = document(30);
  const std::vector<std::int32_t> empty;
  const auto expect_message = [](const auto& call, const std::string& part) {
    try {
      call();
      ADD_FAILURE() << "accepted; expected an argument_error naming " << part;
    } catch (const pith::argument_error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  pith::reader r(small_model(), o, {});
  expect_message([&] { r.log_likelihood(std::vector<std::int32_t>{5}); }, "the document is empty");
  pith::reader a(small_model(), o, {});
  a.feed(doc);
  expect_message([&] { a.log_likelihood(empty); }, "the continuation is empty");
  expect_message([&] { a.log_likelihood(std::vector<std::int32_t>{5, 50}); }, "token 50 is outside the vocabulary");
  expect_message([&] { a.log_likelihood(std::vector<std::int32_t>(7, 5)); }, "exceeds max_answer_tokens (6)");
  // A refused continuation leaves the reader as it was: it still scores one, and is then finished.
  EXPECT_GE(a.log_likelihood(std::vector<std::int32_t>(6, 5)).perplexity(), 1.0);
  expect_message([&] { a.log_likelihood(std::vector<std::int32_t>{5}); }, "already answered or scored");
  expect_message([&] { a.feed(doc); }, "already answered");
  pith::sampler greedy;
  expect_message([&] { a.answer(1, greedy); }, "already answered");
}

// A user-defined policy: the most attended slots, but always the first one (a sink).
struct sink_and_top {
  void select(const pith::eviction_view& view, std::vector<std::uint32_t>& keep) {
    std::vector<std::uint32_t> order;
    pith::top_k(view.scores.subspan(1), view.budget - 1, keep, order);
    for (auto& index : keep) index += 1;
    keep.insert(keep.begin(), 0);
  }
};
static_assert(pith::eviction_policy<sink_and_top>);

TEST(Reader, UserDefinedPolicy) {
  pith::reader_options o;
  o.budget = 10;
  o.chunk_size = 6;
  o.max_answer_tokens = 2;
  pith::reader r(small_model(), o, instruction);
  r.use_policy(sink_and_top{});
  r.feed(document(90));
  for (std::size_t l = 0; l < 3; ++l) {
    EXPECT_EQ(r.document_positions(l, 0).front(), 0);
    EXPECT_EQ(r.document_positions(l, 0).size(), 16u);
  }
}

TEST(Reader, ReadersOnSeveralThreadsShareTheWeights) {
  pith::reader_options o;
  o.budget = 12;
  o.chunk_size = 6;
  o.max_answer_tokens = 6;
  auto run = [&](std::vector<std::int32_t>& out) {
    pith::reader r(small_model(), o, instruction);
    r.feed(document(200, 3));
    pith::sampler greedy;
    out = r.answer(6, greedy);
  };
  std::vector<std::int32_t> alone;
  run(alone);
  std::vector<std::vector<std::int32_t>> results(3);
  std::vector<std::thread> threads;
  for (auto& result : results) threads.emplace_back([&] { run(result); });
  for (auto& t : threads) t.join();
  for (const auto& result : results) EXPECT_EQ(result, alone);
}

}  // namespace

namespace {

// pyramidkv: each layer's cache is sized for its own budget (session_options::layer_context), so the
// layers together hold exactly the rows of a uniform budget's caches, and each layer keeps its own k_l.
TEST(Reader, PyramidLayersKeepTheirOwnBudgetsInCachesOfTheirOwnSize) {
  const auto& w = small_model();
  const auto& c = w.config;
  pith::reader_options o;
  o.budget = 20;
  o.chunk_size = 8;
  o.max_answer_tokens = 8;
  o.policy = pith::policy_kind::snapkv;
  pith::reader uniform(w, o, instruction);
  o.policy = pith::policy_kind::pyramidkv;
  pith::reader pyramid(w, o, instruction);
  const auto budgets = pith::pyramid_budgets(o.budget, c.num_layers);  // 39, 20, 1
  ASSERT_EQ(budgets, (std::vector<std::size_t>{39, 20, 1}));
  std::size_t uniform_rows = 0, pyramid_rows = 0;
  for (std::size_t l = 0; l < c.num_layers; ++l) {
    uniform_rows += uniform.main_session().cache().capacity(l);
    pyramid_rows += pyramid.main_session().cache().capacity(l);
    if (l > 0) {
      EXPECT_LT(pyramid.main_session().cache().capacity(l), pyramid.main_session().cache().capacity(l - 1));
    }
  }
  EXPECT_EQ(pyramid_rows, uniform_rows);
  pyramid.feed(document(200));
  for (std::size_t l = 0; l < c.num_layers; ++l)
    EXPECT_EQ(pyramid.main_session().cache().size(l, 0), budgets[l] + o.chunk_size) << "layer " << l;
  pith::sampler greedy;
  EXPECT_EQ(pyramid.answer(4, greedy).size(), 4u);
}

}  // namespace

namespace {

// pyramidkv with beta 1 gives every layer the same budget: it is snapkv, slot for slot.
TEST(Reader, PyramidWithBetaOneKeepsWhatSnapkvKeeps) {
  const auto& w = small_model();
  const auto& c = w.config;
  pith::reader_options o;
  o.budget = 20;
  o.chunk_size = 8;
  o.max_answer_tokens = 8;
  o.policy = pith::policy_kind::snapkv;
  pith::reader snapkv(w, o, instruction);
  o.policy = pith::policy_kind::pyramidkv;
  o.pyramid_beta = 1;
  pith::reader pyramid(w, o, instruction);
  const auto doc = document(150);
  for (std::size_t fed = 0; fed < doc.size(); fed += o.chunk_size) {
    const auto part = std::span(doc).subspan(fed, std::min(o.chunk_size, doc.size() - fed));
    snapkv.feed(part);
    pyramid.feed(part);
    for (std::size_t l = 0; l < c.num_layers; ++l)
      for (std::size_t g = 0; g < c.num_kv_heads; ++g)
        ASSERT_EQ(pyramid.document_positions(l, g), snapkv.document_positions(l, g)) << fed << " " << l << " " << g;
  }
  pith::sampler greedy;
  EXPECT_EQ(pyramid.answer(4, greedy), snapkv.answer(4, greedy));
  o.pyramid_beta = 0;
  EXPECT_THROW(pith::reader(w, o, instruction), pith::argument_error);
}

// ---------------------------------------------------------------------------------------------------
// Protocols (docs/eviction.md, "Protocols")

// Largest |logit difference| between one pass over a document and the same document read in chunks
// with every state kept: the same float32 model, its sums taken in other orders over ~160 positions.
constexpr float one_pass_logit_tolerance = 1e-4f;
// The same for a sum of 10 log-probabilities (each within about the logits' difference).
constexpr double one_pass_log_likelihood_tolerance = 1e-3;

float largest_difference(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float largest = 0.0f;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) largest = std::max(largest, std::abs(a[i] - b[i]));
  return largest;
}

pith::reader_options oneshot_options(pith::policy_kind policy, double ratio, bool question_in_cut = false) {
  pith::reader_options o;
  o.policy = policy;
  o.protocol = pith::reading_protocol::oneshot;
  o.ratio = ratio;
  o.question_in_cut = question_in_cut;
  o.max_answer_tokens = 4;
  return o;
}

class OneshotPolicyTest : public ::testing::TestWithParam<pith::policy_kind> {};

// One cut to floor(n (1 - r)) per layer (or KV head), with and without the question.
TEST_P(OneshotPolicyTest, KeepsFloorOfNTimesOneMinusRPerHead) {
  const auto& c = small_model().config;
  const auto doc = document(150);
  for (const double ratio : {0.5, 0.75, 0.875})
    for (const bool seen : {false, true}) {
      pith::reader r(small_model(), oneshot_options(GetParam(), ratio, seen), instruction);
      r.feed(std::span(doc).first(70));
      r.feed(std::span(doc).subspan(70));  // fed in parts, read in one pass
      EXPECT_EQ(r.stats().tokens_read, 0u);
      pith::sampler greedy;
      EXPECT_EQ(r.answer(3, greedy).size(), 3u);
      const auto keep = static_cast<std::size_t>(std::floor(150.0 * (1.0 - ratio)));  // 75, 37, 18
      EXPECT_EQ(keep, pith::ratio_budget(150, ratio));
      EXPECT_EQ(r.stats().tokens_read, 150u);
      EXPECT_EQ(r.stats().chunks, 1u);
      for (std::size_t l = 0; l < c.num_layers; ++l)
        for (std::size_t g = 0; g < c.num_kv_heads; ++g) {
          const auto& kept = r.document_positions(l, g);
          ASSERT_EQ(kept.size(), keep) << "r " << ratio << " layer " << l << " head " << g;
          for (std::size_t i = 1; i < kept.size(); ++i) ASSERT_LT(kept[i - 1], kept[i]);
          ASSERT_GE(kept.front(), 0);
          ASSERT_LT(kept.back(), 150);
          // Reindexed: the kept states are renumbered 0..keep-1, then come the question and the answer.
          EXPECT_EQ(r.main_session().cache().positions(l, g)[keep - 1], static_cast<std::int64_t>(keep - 1));
          EXPECT_EQ(r.main_session().cache().size(l, g), keep + instruction.size() + 2);
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Policies, OneshotPolicyTest,
                         ::testing::Values(pith::policy_kind::streaming, pith::policy_kind::h2o, pith::policy_kind::tova,
                                           pith::policy_kind::snapkv, pith::policy_kind::roco,
                                           pith::policy_kind::citrus_cse, pith::policy_kind::citrus_shared,
                                           pith::policy_kind::citrus_separate, pith::policy_kind::random,
                                           pith::policy_kind::knorm, pith::policy_kind::observed_attention,
                                           pith::policy_kind::chunkkv, pith::policy_kind::snapkv_question,
                                           pith::policy_kind::keydiff, pith::policy_kind::finch,
                                           pith::policy_kind::criticalkv, pith::policy_kind::expected_attention),
                         [](const auto& info) {
                           std::string name = pith::policy_name(info.param);
                           for (auto& ch : name)
                             if (ch == '-') ch = '_';
                           return name;
                         });

// r = 0 keeps every state: the answer is the full cache's, read in chunks or in one pass.
TEST(ReaderProtocol, OneshotAtRatioZeroEqualsFull) {
  const auto doc = document(150);
  pith::reader_options full;
  full.policy = pith::policy_kind::full;
  full.chunk_size = 8;
  full.max_answer_tokens = 4;
  pith::reader chunked(small_model(), full, instruction);
  chunked.feed(doc);
  pith::sampler greedy;
  const auto expected = chunked.answer(4, greedy);
  for (const auto policy : {pith::policy_kind::snapkv, pith::policy_kind::citrus_shared, pith::policy_kind::full}) {
    pith::reader oneshot(small_model(), oneshot_options(policy, 0.0, true), instruction);
    oneshot.feed(doc);
    EXPECT_EQ(oneshot.answer(4, greedy), expected) << pith::policy_name(policy);
    EXPECT_EQ(oneshot.document_positions(2, 1).size(), 150u);
    EXPECT_LE(largest_difference(oneshot.answer_logits(), chunked.answer_logits()), one_pass_logit_tolerance)
        << pith::policy_name(policy);
  }
}

// An absolute budget works in oneshot too; the question seen changes what an attention policy keeps
// and nothing for a policy that reads no attention (knorm).
TEST(ReaderProtocol, OneshotBudgetAndTheQuestionInTheCut) {
  const auto doc = document(150);
  const auto kept = [&](pith::policy_kind policy, bool seen) {
    auto o = oneshot_options(policy, 0.0, seen);
    o.ratio.reset();
    o.budget = 30;
    pith::reader r(small_model(), o, instruction);
    r.feed(doc);
    pith::sampler greedy;
    r.answer(1, greedy);
    std::vector<std::vector<std::int64_t>> all;
    for (std::size_t l = 0; l < small_model().config.num_layers; ++l)
      for (std::size_t g = 0; g < small_model().config.num_kv_heads; ++g) {
        EXPECT_EQ(r.document_positions(l, g).size(), 30u);
        all.push_back(r.document_positions(l, g));
      }
    return all;
  };
  EXPECT_NE(kept(pith::policy_kind::snapkv, false), kept(pith::policy_kind::snapkv, true));
  EXPECT_NE(kept(pith::policy_kind::citrus_shared, false), kept(pith::policy_kind::citrus_shared, true));
  EXPECT_EQ(kept(pith::policy_kind::knorm, false), kept(pith::policy_kind::knorm, true));
}

TEST(ReaderProtocol, BadOptionsNameTheOption) {
  const auto message = [](const pith::reader_options& o) {
    try {
      pith::reader r(small_model(), o, instruction);
    } catch (const pith::argument_error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  for (const double bad : {-0.1, 1.0, 1.5, std::nan("")})
    EXPECT_NE(message(oneshot_options(pith::policy_kind::snapkv, bad)).find("ratio"), std::string::npos) << bad;
  auto chunked = oneshot_options(pith::policy_kind::snapkv, 0.5);
  chunked.protocol = pith::reading_protocol::chunked;
  EXPECT_NE(message(chunked).find("ratio applies to the oneshot protocol"), std::string::npos);
  chunked.ratio.reset();
  chunked.question_in_cut = true;
  EXPECT_NE(message(chunked).find("question_in_cut"), std::string::npos);
  EXPECT_THROW(pith::parse_protocol("streaming"), pith::argument_error);
  EXPECT_EQ(pith::parse_protocol("oneshot"), pith::reading_protocol::oneshot);
  // A ratio that keeps nothing of this document: refused when the document's length is known.
  pith::reader r(small_model(), oneshot_options(pith::policy_kind::snapkv, 0.999), instruction);
  r.feed(document(150));  // floor(150 x 0.001) = 0
  pith::sampler greedy;
  EXPECT_THROW(r.answer(1, greedy), pith::argument_error);
  // Without the question in the cut, the instruction-aware policies need no instruction.
  pith::reader blind(small_model(), oneshot_options(pith::policy_kind::citrus_shared, 0.5), {});
  blind.feed(document(40));
  EXPECT_EQ(blind.answer(1, greedy).size(), 1u);
  EXPECT_NE(message(oneshot_options(pith::policy_kind::citrus_shared, 0.5, true)).find("accepted"), std::string::npos);
  EXPECT_THROW(pith::reader(small_model(), oneshot_options(pith::policy_kind::snapkv, 0.5, true), {}), pith::argument_error);
}

// Perplexity under eviction in oneshot: at r = 0 the continuation scores as after the full cache;
// at a ratio it scores after the one cut (the default chunk of 256 exceeds the document).
TEST(ReaderProtocol, OneshotScoresAContinuation) {
  const auto doc = document(150);
  const std::vector<std::int32_t> continuation{5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
  pith::reader_options full;
  full.policy = pith::policy_kind::full;
  full.chunk_size = 8;
  full.max_answer_tokens = 16;
  pith::reader chunked(small_model(), full, {});
  chunked.feed(doc);
  const auto expected = chunked.log_likelihood(continuation);
  auto o = oneshot_options(pith::policy_kind::snapkv, 0.0);
  o.max_answer_tokens = 16;
  pith::reader whole(small_model(), o, {});
  whole.feed(doc);
  const auto scored = whole.log_likelihood(continuation);
  EXPECT_EQ(scored.tokens, continuation.size());
  EXPECT_NEAR(scored.sum, expected.sum, one_pass_log_likelihood_tolerance);
  o.ratio = 0.75;
  pith::reader cut(small_model(), o, {});
  cut.feed(doc);
  const auto after_cut = cut.log_likelihood(continuation);
  EXPECT_TRUE(std::isfinite(after_cut.sum));
  EXPECT_NE(after_cut.sum, scored.sum);
  EXPECT_EQ(cut.document_positions(0, 0).size(), 37u);
}

// The different-question variant: the reading (and its final cut) follows the instruction, the
// answer the question.
TEST(ReaderProtocol, DifferentQuestionReadsWithOneInstructionAndAsksAnother) {
  const auto doc = document(150);
  const std::vector<std::int32_t> question{7, 30, 12};
  for (const auto protocol : {pith::reading_protocol::chunked, pith::reading_protocol::oneshot}) {
    pith::reader_options o;
    o.policy = pith::policy_kind::citrus_shared;
    o.protocol = protocol;
    o.question_in_cut = protocol == pith::reading_protocol::oneshot;
    o.budget = 20;
    o.chunk_size = 8;
    o.max_answer_tokens = 4;
    pith::reader same(small_model(), o, instruction);
    pith::reader different(small_model(), o, instruction, question);
    pith::reader guided_by_question(small_model(), o, question);
    pith::sampler greedy;
    for (auto* r : {&same, &different, &guided_by_question}) {
      r->feed(doc);
      r->answer(2, greedy);
    }
    bool differs_from_question = false;
    for (std::size_t l = 0; l < small_model().config.num_layers; ++l) {
      EXPECT_EQ(different.document_positions(l, 0), same.document_positions(l, 0)) << l;
      differs_from_question |= different.document_positions(l, 0) != guided_by_question.document_positions(l, 0);
    }
    EXPECT_TRUE(differs_from_question) << pith::protocol_name(protocol);
    EXPECT_GT(largest_difference(different.answer_logits(), same.answer_logits()), 0.0f);
  }
  // Nothing evicted: the answer is the question's, whatever guided the reading.
  pith::reader_options o;
  o.budget = 200;
  o.chunk_size = 8;
  o.max_answer_tokens = 4;
  pith::reader different(small_model(), o, instruction, question);
  pith::reader asked(small_model(), o, question);
  pith::sampler greedy;
  for (auto* r : {&different, &asked}) {
    r->feed(document(60));
    r->answer(1, greedy);
  }
  EXPECT_LE(largest_difference(different.answer_logits(), asked.answer_logits()), one_pass_logit_tolerance);
  EXPECT_THROW(pith::reader(small_model(), o, instruction, {1, 99}), pith::argument_error);  // outside the vocabulary
}

// ---------------------------------------------------------------------------------------------------
// AdaKV (docs/eviction.md, "AdaKV"): head-adaptive budgets over a per-head scorer

std::vector<pith::policy_kind> adakv_policies() {
  std::vector<pith::policy_kind> out;
  for (const auto kind : pith::builtin_policies)
    if (pith::combines_with_adakv(kind)) out.push_back(kind);
  return out;
}

// Every policy AdaKV combines with: each layer's heads hold unequal counts that sum to exactly
// H_kv x (k + L) after a cut (H_kv x k old states plus each head's newest chunk), each head at least
// its floor plus the chunk and at most adakv_head_budget plus the chunk, positions renumbered to end
// at the fullest head's count; the final cut leaves H_kv x k before the instruction.
TEST(ReaderAdaKV, HeadsKeepUnequalCountsThatSumToTheLayersBudget) {
  const auto& c = small_model().config;
  const std::size_t heads = c.num_kv_heads, k = 20, chunk = 8;
  bool unequal = false;
  for (const auto policy : adakv_policies()) {
    SCOPED_TRACE(pith::policy_name(policy));
    pith::reader_options o;
    o.policy = policy;
    o.head_adaptive = true;
    o.budget = k;
    o.chunk_size = chunk;
    o.max_answer_tokens = 8;
    pith::reader r(small_model(), o, instruction);
    const std::size_t floor = pith::adakv_floor(k, o.adakv_alpha), most = pith::adakv_head_budget(k, heads, o.adakv_alpha);
    ASSERT_EQ(most, 36u);  // 2 x 20 - floor(4)
    const auto doc = document(150);
    for (std::size_t fed = 0; fed < doc.size(); fed += chunk) {
      r.feed(std::span(doc).subspan(fed, std::min(chunk, doc.size() - fed)));
      const std::size_t read = r.stats().tokens_read;
      if (read == 0) continue;
      const auto& cache = r.main_session().cache();
      std::size_t top = 0;
      for (std::size_t l = 0; l < c.num_layers; ++l)
        for (std::size_t g = 0; g < heads; ++g) top = std::max(top, cache.size(l, g));
      EXPECT_EQ(r.main_session().position(), top);
      for (std::size_t l = 0; l < c.num_layers; ++l) {
        std::size_t layer = 0;
        for (std::size_t g = 0; g < heads; ++g) {
          const auto& kept = r.document_positions(l, g);
          ASSERT_EQ(kept.size(), cache.size(l, g));
          layer += kept.size();
          ASSERT_GE(kept.size(), std::min(read, floor + chunk));
          ASSERT_LE(kept.size(), most + chunk);
          for (std::size_t i = 1; i < kept.size(); ++i) ASSERT_LT(kept[i - 1], kept[i]);
          for (std::size_t i = 0; i < chunk; ++i)
            ASSERT_EQ(kept[kept.size() - chunk + i], static_cast<std::int64_t>(read - chunk + i));
          const std::int64_t* positions = cache.positions(l, g);
          for (std::size_t i = 0; i < kept.size(); ++i) ASSERT_EQ(positions[i], static_cast<std::int64_t>(top - kept.size() + i));
        }
        if (read - chunk > k) {
          ASSERT_EQ(layer, heads * (k + chunk)) << "layer " << l << " after " << read;
        } else {
          ASSERT_EQ(layer, heads * read);
        }
        unequal = unequal || cache.size(l, 0) != cache.size(l, 1);
      }
    }
    pith::sampler greedy;
    EXPECT_EQ(r.answer(5, greedy).size(), 5u);
    if (pith::traits_of(policy, o.snapkv_window).final_cut)
      for (std::size_t l = 0; l < c.num_layers; ++l) {
        const auto& cache = r.main_session().cache();
        EXPECT_EQ(cache.size(l, 0) + cache.size(l, 1), heads * (k + instruction.size() + 4)) << "layer " << l;
      }
  }
  EXPECT_TRUE(unequal) << "no policy gave two heads of a layer different counts";
}

// At alpha = 1 every head keeps its own top k, so heads that start equal stay equal: AdaKV over
// snapkv, knorm and snapkv-question keeps exactly what they keep and answers alike.
TEST(ReaderAdaKV, AlphaOneKeepsWhatThePolicyKeeps) {
  const auto& c = small_model().config;
  for (const auto policy : {pith::policy_kind::snapkv, pith::policy_kind::knorm, pith::policy_kind::snapkv_question}) {
    SCOPED_TRACE(pith::policy_name(policy));
    pith::reader_options o;
    o.policy = policy;
    o.budget = 20;
    o.chunk_size = 8;
    o.max_answer_tokens = 8;
    pith::reader plain(small_model(), o, instruction);
    o.head_adaptive = true;
    o.adakv_alpha = 1.0;
    pith::reader adaptive(small_model(), o, instruction);
    const auto doc = document(150);
    plain.feed(doc);
    adaptive.feed(doc);
    for (std::size_t l = 0; l < c.num_layers; ++l)
      for (std::size_t g = 0; g < c.num_kv_heads; ++g)
        ASSERT_EQ(adaptive.document_positions(l, g), plain.document_positions(l, g)) << l << " " << g;
    pith::sampler greedy;
    EXPECT_EQ(adaptive.answer(4, greedy), plain.answer(4, greedy));
  }
}

// The model of small_config() with KV head 1 of every layer made to lose every knorm comparison (its
// keys 100 times longer) and to contribute nothing (its values zero): adakv(knorm) at alpha 0 then
// gives head 0 the layer's whole H_kv x k, and head 1 keeps only its newest chunk.
const pith::model_weights& head_zero_model() {
  static const pith::model_weights w = [] {
    pith::model_weights m = pith::random_weights(small_config(), 21);
    const auto& c = m.config;
    const std::size_t d = c.head_dim, hidden = c.hidden_size;
    const auto edited = [&](const pith::tensor_view& view, float scale) {
      pith::aligned_buffer<float> rows(view.rows() * view.cols());
      std::copy_n(view.f32(), rows.size(), rows.data());
      for (std::size_t i = d * hidden; i < 2 * d * hidden; ++i) rows[i] *= scale;  // KV head 1's rows
      return pith::tensor_view::own(std::move(rows), pith::dtype::f32, view.rows(), view.cols());
    };
    for (auto& layer : m.layers) {
      layer.wk = edited(layer.wk, 100.0f);
      layer.wv = edited(layer.wv, 0.0f);
    }
    return m;
  }();
  return w;
}

// Largest |logit difference| between the AdaKV reader and `full` on head_zero_model: head 0 holds the
// same rows at the same positions as full's cache and head 1 adds zeros, so only float sums in another
// order (none measured) could part them.
constexpr float same_rows_logit_tolerance = 1e-5f;

TEST(ReaderAdaKV, OneHeadTakesTheWholeLayerBudgetAndAnswersAsTheFullCache) {
  const auto& w = head_zero_model();
  const auto& c = w.config;
  const std::size_t k = 20, chunk = 8;
  pith::reader_options o;
  o.policy = pith::policy_kind::knorm;
  o.head_adaptive = true;
  o.adakv_alpha = 0.0;
  o.budget = k;
  o.chunk_size = chunk;
  o.max_answer_tokens = 8;
  pith::reader adaptive(w, o, instruction);
  // 2 x 20 + 8 states: head 0 can keep every one (2k old + the chunk).
  const auto doc = document(2 * k + chunk);
  adaptive.feed(doc);
  for (std::size_t l = 0; l < c.num_layers; ++l) {
    EXPECT_EQ(adaptive.main_session().cache().size(l, 0), doc.size()) << "layer " << l;
    EXPECT_EQ(adaptive.main_session().cache().size(l, 1), chunk) << "layer " << l;
    EXPECT_EQ(adaptive.document_positions(l, 1).front(), static_cast<std::int64_t>(doc.size() - chunk));
  }
  pith::reader_options f = o;
  f.policy = pith::policy_kind::full;
  f.head_adaptive = false;
  f.max_context = 128;
  pith::reader full(w, f, instruction);
  full.feed(doc);
  pith::sampler greedy;
  const auto answer = adaptive.answer(4, greedy);
  EXPECT_EQ(answer, full.answer(4, greedy));
  float largest = 0.0f;
  for (std::size_t i = 0; i < c.vocab_size; ++i)
    largest = std::max(largest, std::abs(adaptive.answer_logits()[i] - full.answer_logits()[i]));
  EXPECT_LE(largest, same_rows_logit_tolerance);
  // The heads went on appending from their own counts: the instruction and 3 answer tokens each.
  EXPECT_EQ(adaptive.main_session().cache().size(0, 0), doc.size() + instruction.size() + 3);
  EXPECT_EQ(adaptive.main_session().cache().size(0, 1), chunk + instruction.size() + 3);

  // At the default alpha 0.2 head 1 keeps its floor of 4 and head 0 the other 36 of the 40, through a
  // longer document.
  o.adakv_alpha = 0.2;
  pith::reader skewed(w, o, instruction);
  skewed.feed(document(150));
  for (std::size_t l = 0; l < c.num_layers; ++l) {
    EXPECT_EQ(skewed.main_session().cache().size(l, 0), 36u + chunk) << "layer " << l;
    EXPECT_EQ(skewed.main_session().cache().size(l, 1), 4u + chunk) << "layer " << l;
  }
  EXPECT_EQ(skewed.answer(4, greedy).size(), 4u);
}

// Each head's cache is sized for the most one head can hold (adakv_head_budget: H_kv k minus the other
// heads' floors), which the memory report shows; bad options are refused naming the option or policy.
TEST(ReaderAdaKV, CachesAreSizedForTheFullestHeadAndBadOptionsAreRefused) {
  const auto& c = small_model().config;
  pith::reader_options o;
  o.policy = pith::policy_kind::snapkv;
  o.budget = 20;
  o.chunk_size = 8;
  o.max_answer_tokens = 8;
  pith::reader plain(small_model(), o, instruction);
  o.head_adaptive = true;
  pith::reader adaptive(small_model(), o, instruction);
  // Rows per head: b + L + max(L, answer) + |I| + 1 with b = 20 (plain) or 2 x 20 - 4 = 36 (AdaKV).
  EXPECT_EQ(plain.main_session().cache().capacity(0), 20u + 8 + 8 + 4 + 1);
  EXPECT_EQ(adaptive.main_session().cache().capacity(0), 36u + 8 + 8 + 4 + 1);
  const auto report = adaptive.memory_report();
  ASSERT_EQ(report.size(), c.num_layers);
  const std::size_t row = adaptive.main_session().cache().row_bytes();
  EXPECT_EQ(report[0].kv_cache_bytes, (36u + 21) * c.num_kv_heads * (2 * row + sizeof(std::int64_t)));
  // In use after a cut: the layer's 2 x (20 + 8) rows, however its heads share them.
  adaptive.feed(document(150));
  for (const auto& layer : adaptive.memory_report())
    EXPECT_EQ(layer.kv_cache_used_bytes, c.num_kv_heads * (20u + 8) * (2 * row + sizeof(std::int64_t)));
  EXPECT_GT(adaptive.state_bytes(), plain.state_bytes());

  const auto message = [&](const pith::reader_options& options) {
    try {
      pith::reader r(small_model(), options, instruction);
    } catch (const pith::argument_error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  pith::reader_options bad = o;
  for (const double alpha : {-0.1, 1.5, std::nan("")}) {
    bad.adakv_alpha = alpha;
    EXPECT_NE(message(bad).find("adakv_alpha"), std::string::npos) << alpha;
  }
  bad = o;
  bad.budget = 0;
  EXPECT_NE(message(bad).find("budget of 0"), std::string::npos);
  for (const auto kind : pith::builtin_policies) {
    if (pith::combines_with_adakv(kind)) continue;
    bad = o;
    bad.policy = kind;
    EXPECT_NE(message(bad).find(pith::policy_label_name(kind, true)), std::string::npos) << pith::policy_name(kind);
  }
  // A user-defined policy returns keep lists, which AdaKV cannot rank across heads.
  struct keep_first {
    void select(const pith::eviction_view& view, std::vector<std::uint32_t>& keep) {
      keep.resize(std::min(view.budget, view.old_slots));
      for (std::size_t i = 0; i < keep.size(); ++i) keep[i] = static_cast<std::uint32_t>(i);
    }
  };
  EXPECT_THROW(adaptive.use_policy(keep_first{}), pith::argument_error);
  // The fullest head's rows must fit the model's positions in reindexed mode: 2 x 135 - 27 + 8 + 12 > 256.
  bad = o;
  bad.budget = 135;
  EXPECT_NE(message(bad).find("AdaKV's largest head budget"), std::string::npos) << message(bad);
  o.budget = 135;
  o.head_adaptive = false;
  EXPECT_EQ(message(o), "accepted");
}

}  // namespace
