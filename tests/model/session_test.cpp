// SPDX-License-Identifier: MIT
// session contracts: a failed forward leaves the session as it was, an empty forward is an error,
// bytes_allocated accounts for the memory the process really gains, and KV heads holding different
// row counts attend and append on their own.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include <pith/core/memory.hpp>
#include <pith/model/random_weights.hpp>
#include <pith/model/transformer.hpp>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace {

pith::model_config session_config() {
  pith::model_config c;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_layers = 4;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.vocab_size = 53;
  c.rms_norm_eps = 1e-5f;
  c.max_position_embeddings = 64;
  c.source = "test config";
  return c;
}

// A hybrid whose every kind of state a forward can touch is there: a KV cache (standard), a
// recurrent state (approximate) and a fixed stream of max_position_embeddings positions.
pith::model_config hybrid_config() {
  pith::model_config c = session_config();
  c.mixers = {pith::mixer_kind::standard, pith::mixer_kind::approximate, pith::mixer_kind::fixed_seq_qk,
              pith::mixer_kind::standard};
  return c;
}

std::vector<std::int32_t> session_tokens(std::size_t n, std::int32_t salt = 0) {
  std::vector<std::int32_t> ids(n);
  for (std::size_t i = 0; i < n; ++i) ids[i] = static_cast<std::int32_t>((i * 7 + 2 + static_cast<std::size_t>(salt)) % 53);
  return ids;
}

// Logits of `probe` after `prefix`, on a session that first saw (and rejected) `rejected` when given.
std::vector<float> logits_after(const pith::model_weights& w, pith::session_options options,
                                const std::vector<std::int32_t>& prefix, const std::vector<std::int32_t>* rejected,
                                const std::vector<std::int32_t>& probe) {
  pith::session s(w, options);
  std::vector<float> logits(w.config.vocab_size);
  s.forward(prefix, logits.data());
  if (rejected != nullptr) {
    const std::size_t position = s.position();
    EXPECT_THROW(s.forward(*rejected, logits.data()), pith::argument_error);
    EXPECT_EQ(s.position(), position);
    for (std::size_t l = 0; l < w.config.num_layers; ++l)
      for (std::size_t h = 0; h < w.config.num_kv_heads; ++h)
        EXPECT_EQ(s.cache().size(l, h), pith::mixer_uses_kv_cache(w.config.mixer(l)) ? prefix.size() : 0u);
  }
  s.forward(probe, logits.data());
  return logits;
}

// Each rejected input is longer than max_chunk (4), so it would run as several sub-chunks; the
// fault sits in its last one. A rejected forward must leave KV rows, position and recurrent state
// exactly as they were: the probe's logits then equal those of a session that never saw it.
TEST(session_forward_4_9, a_rejected_multi_chunk_forward_changes_nothing) {
  const auto w = pith::random_weights(hybrid_config(), 11);
  const pith::session_options options{40, 4};
  const auto prefix = session_tokens(5), probe = session_tokens(3, 9);
  const auto expected = logits_after(w, options, prefix, nullptr, probe);

  auto bad_id = session_tokens(11, 4);
  bad_id.back() = 53;  // outside the vocabulary
  EXPECT_EQ(logits_after(w, options, prefix, &bad_id, probe), expected) << "a token id outside the vocabulary";

  const auto too_long_for_cache = session_tokens(36, 5);  // 5 + 36 > 40 KV rows
  EXPECT_EQ(logits_after(w, options, prefix, &too_long_for_cache, probe), expected) << "no room in the KV cache";

  // With room for 100 rows, the fixed stream of 64 positions is what 5 + 60 exceeds.
  const pith::session_options roomy{100, 4};
  const auto expected_roomy = logits_after(w, roomy, prefix, nullptr, probe);
  const auto past_fixed_stream = session_tokens(60, 6);
  EXPECT_EQ(logits_after(w, roomy, prefix, &past_fixed_stream, probe), expected_roomy) << "past the fixed stream";
}

TEST(session_forward_4_9, an_empty_forward_is_an_error) {
  const auto w = pith::random_weights(session_config(), 12);
  pith::session s(w, {16, 4});
  std::vector<float> logits(w.config.vocab_size);
  EXPECT_THROW(s.forward({}, logits.data()), pith::argument_error);
  const auto chunk = session_tokens(3);
  EXPECT_THROW(s.forward_with_side({}, chunk, logits.data()), pith::argument_error);
  EXPECT_EQ(s.position(), 0u);
}

// RSS is counted in pages and includes what the allocator and the thread pool touch around the
// session's buffers: 2 MiB of slack, plus 5% of the report for page rounding of 30-odd buffers.
constexpr std::size_t rss_slack_bytes = std::size_t{2} << 20;
constexpr double rss_relative_tolerance = 0.05;

// bytes_allocated against the resident memory the process gains. The session is built so that the
// parts once left out weigh a third of it: score arrays of [4 layers, 16 heads, 32768] floats (twice,
// with squares, 16 MiB) and a rotation table of [32768, 16] floats (2 MiB), against a 16 MiB KV cache.
TEST(session_memory_6_3, bytes_allocated_matches_the_resident_growth) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "under AddressSanitizer the resident set also holds shadow memory and quarantine";
#endif
  if (pith::resident_bytes() == 0) GTEST_SKIP() << "/proc/self/status is unavailable";
#if defined(__GLIBC__)
  // Every buffer from here gets fresh pages (mmap), not heap memory freed by an earlier test.
  mallopt(M_MMAP_THRESHOLD, 64 * 1024);
#endif
  pith::model_config c = session_config();
  c.num_heads = 16;
  c.num_kv_heads = 1;
  c.head_dim = 16;
  c.hidden_size = 64;
  c.max_position_embeddings = 32768;
  const auto w = pith::random_weights(c, 13);
  const auto tokens = session_tokens(8);
  std::vector<float> logits(c.vocab_size);
  std::vector<std::int64_t> renumbered(8);
  for (std::size_t i = 0; i < renumbered.size(); ++i) renumbered[i] = static_cast<std::int64_t>(i);
  const auto exercise = [&](pith::session& s) {
    s.set_scoring({true, 0, true});
    s.forward(tokens, logits.data());
    s.forward(tokens, logits.data());
    s.cache().compact(0, 0, std::vector<std::uint32_t>{8, 9, 10, 11, 12, 13, 14, 15});
    s.rerotate(0, 0, renumbered);  // deltas of -8: builds the rotation table
  };
  {
    // The thread pool, thread-local scratch and code paths come into being on a small session first.
    pith::session warm(w, {64, 8});
    exercise(warm);
  }
  const std::size_t before = pith::resident_bytes();
  pith::session s(w, {32768, 8});
  exercise(s);
  const std::size_t after = pith::resident_bytes();
  const double grown = static_cast<double>(after) - static_cast<double>(before);
  const double reported = static_cast<double>(s.bytes_allocated());
  EXPECT_GT(reported, 30e6);
  EXPECT_NEAR(grown, reported, static_cast<double>(rss_slack_bytes) + rss_relative_tolerance * reported)
      << "resident growth " << grown << " bytes, bytes_allocated " << reported;
}

// Without scoring, no score arrays exist: a Llama-3-8B shape (32 layers, 32 heads) at a 128K context
// would otherwise hold 1 GiB of them.
TEST(session_memory_6_3, score_arrays_exist_only_once_scoring_is_enabled) {
  const auto w = pith::random_weights(session_config(), 14);
  pith::session s(w, {64, 8});
  const std::size_t plain = s.bytes_allocated();
  EXPECT_EQ(s.scores(0, 0), nullptr);
  std::vector<float> logits(w.config.vocab_size);
  s.forward(session_tokens(4), logits.data());
  EXPECT_EQ(s.bytes_allocated(), plain) << "a forward without scoring allocates nothing";
  s.set_scoring({true, 0, false});
  const std::size_t score_bytes = 4 * 4 * 64 * sizeof(float);  // [layers, heads, max_context]
  EXPECT_EQ(s.bytes_allocated(), plain + score_bytes);
  EXPECT_EQ(s.score_squares(0, 0), nullptr);
  s.set_scoring({true, 0, true});
  EXPECT_EQ(s.bytes_allocated(), plain + 2 * score_bytes);
  s.forward(session_tokens(4), logits.data());
  ASSERT_NE(s.scores(0, 0), nullptr);
  float total = 0.0f;
  for (std::size_t j = 0; j < 8; ++j) total += s.scores(0, 0)[j];
  EXPECT_NEAR(total, 1.0f, 1e-5f) << "each query's probabilities over the 8 slots sum to 1";
}

// Head-adaptive eviction (AdaKV, docs/eviction.md) leaves the KV heads of a layer with different row
// counts. On a model whose KV head `silent` has zero values (its query heads add nothing), cutting that
// head's rows to a few must leave the logits exactly as they were: the other head still attends over
// all of its own rows, and every head appends after its own count. mark/rollback restore each head's
// count; forward checks room against the fullest head.
pith::model_weights silent_head_model(std::size_t silent) {
  pith::model_weights w = pith::random_weights(session_config(), 7);
  const std::size_t d = w.config.head_dim, hidden = w.config.hidden_size;
  for (auto& layer : w.layers) {
    pith::aligned_buffer<float> rows(layer.wv.rows() * layer.wv.cols());
    std::copy_n(layer.wv.f32(), rows.size(), rows.data());
    std::fill(rows.data() + silent * d * hidden, rows.data() + (silent + 1) * d * hidden, 0.0f);
    layer.wv = pith::tensor_view::own(std::move(rows), pith::dtype::f32, layer.wv.rows(), layer.wv.cols());
  }
  return w;
}

TEST(session_unequal_heads, a_head_cut_to_a_few_rows_attends_and_appends_on_its_own) {
  for (const std::size_t silent : {0u, 1u}) {
    SCOPED_TRACE(silent);
    const auto w = silent_head_model(silent);
    const auto& c = w.config;
    const std::size_t other = 1 - silent;
    pith::session whole(w, {32, 8}), cut(w, {32, 8});
    const auto prefix = session_tokens(20);
    whole.forward(prefix, nullptr);
    cut.forward(prefix, nullptr);
    const std::vector<std::uint32_t> few{0, 3, 5, 9, 19};
    for (std::size_t l = 0; l < c.num_layers; ++l) cut.cache().compact(l, silent, few);
    std::vector<float> expected(c.vocab_size), got(c.vocab_size);
    const auto probe = session_tokens(3, 5);
    whole.forward(probe, expected.data());
    cut.forward(probe, got.data());
    EXPECT_EQ(got, expected);  // the silent head's output is exactly 0 whichever rows it holds
    for (std::size_t l = 0; l < c.num_layers; ++l) {
      EXPECT_EQ(cut.cache().size(l, other), 23u);
      EXPECT_EQ(cut.cache().size(l, silent), few.size() + 3);
      for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(cut.cache().positions(l, silent)[few.size() + i], 20 + static_cast<std::int64_t>(i));
    }
    // The instruction's side queries (CItruS's fused pass) see each head's own old rows.
    const auto side = session_tokens(2, 9);
    whole.forward_with_side(session_tokens(2, 11), side, expected.data());
    cut.forward_with_side(session_tokens(2, 11), side, got.data());
    EXPECT_EQ(got, expected);
    pith::session_mark mark;
    cut.mark(mark);
    cut.forward(session_tokens(2, 13), nullptr);
    cut.rollback(mark);
    EXPECT_EQ(cut.cache().size(0, other), 25u);
    EXPECT_EQ(cut.cache().size(0, silent), few.size() + 5);
    // 25 rows in the fullest head of a 32-row cache: 8 more do not fit, whatever the other head holds.
    EXPECT_THROW(cut.forward(session_tokens(8), nullptr), pith::argument_error);
    EXPECT_EQ(cut.cache().size(0, silent), few.size() + 5);
  }
}

}  // namespace
