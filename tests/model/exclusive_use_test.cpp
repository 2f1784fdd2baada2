// SPDX-License-Identifier: MIT
// A session or a reader entered by a second thread while one is inside aborts with a message (in
// builds where PITH_ASSERT is active; this binary forces it on); one thread after another is fine.
#include <gtest/gtest.h>

#include <cstdint>
#include <thread>
#include <vector>

#include <pith/model/random_weights.hpp>
#include <pith/runtime/reader.hpp>

namespace {

static_assert(PITH_ASSERTS_ENABLED == 1);

pith::model_weights tiny_weights() {
  pith::model_config c;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_layers = 2;
  c.num_heads = 2;
  c.num_kv_heads = 1;
  c.head_dim = 8;
  c.vocab_size = 20;
  c.rms_norm_eps = 1e-5f;
  c.max_position_embeddings = 64;
  c.source = "test config";
  return pith::random_weights(c, 5);
}

std::vector<std::int32_t> some_tokens(std::size_t n) {
  std::vector<std::int32_t> ids(n);
  for (std::size_t i = 0; i < n; ++i) ids[i] = static_cast<std::int32_t>((i * 3 + 1) % 20);
  return ids;
}

class one_thread_at_a_time_3_8 : public ::testing::Test {
 protected:
  // Death tests fork; "threadsafe" re-runs the binary so the child starts without the pool's threads.
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(one_thread_at_a_time_3_8, a_second_thread_entering_a_session_aborts) {
#ifdef PITH_TEST_UNDER_EMULATOR
  GTEST_SKIP() << "threadsafe death tests re-execute the binary, which qemu-user cannot do";
#endif
  const auto w = tiny_weights();
  const auto tokens = some_tokens(4);
  EXPECT_DEATH(
      {
        pith::session s(w, {32, 8});
        std::vector<float> logits(20);
        const auto in_use = s.claim();  // this thread is inside, as during a forward
        std::thread other([&] { s.forward(tokens, logits.data()); });
        other.join();
      },
      "pith::session belongs to one thread at a time");
}

// A policy that, while the reader is inside feed (selecting what to evict), lets another thread feed it.
struct second_thread_feeds {
  pith::reader* reader;
  void select(const pith::eviction_view& view, std::vector<std::uint32_t>& keep) {
    std::thread other([this] {
      const std::vector<std::int32_t> more{1, 2, 3, 4};
      reader->feed(more);
    });
    other.join();
    keep.clear();
    for (std::size_t j = view.old_slots - view.budget; j < view.old_slots; ++j) keep.push_back(static_cast<std::uint32_t>(j));
  }
};

TEST_F(one_thread_at_a_time_3_8, a_second_thread_entering_a_reader_aborts) {
#ifdef PITH_TEST_UNDER_EMULATOR
  GTEST_SKIP() << "threadsafe death tests re-execute the binary, which qemu-user cannot do";
#endif
  const auto w = tiny_weights();
  EXPECT_DEATH(
      {
        pith::reader_options options;
        options.policy = pith::policy_kind::streaming;
        options.budget = 4;
        options.chunk_size = 4;
        options.max_answer_tokens = 4;
        pith::reader r(w, options, {1, 2});
        r.use_policy(second_thread_feeds{&r});
        r.feed(some_tokens(16));
      },
      "pith::reader belongs to one thread at a time");
}

TEST_F(one_thread_at_a_time_3_8, threads_taking_turns_and_nested_calls_pass) {
  const auto w = tiny_weights();
  pith::session s(w, {32, 8});
  std::vector<float> logits(20);
  const auto tokens = some_tokens(4);
  std::thread first([&] { s.forward(tokens, logits.data()); });
  first.join();
  std::thread second([&] {
    const auto in_use = s.claim();
    s.forward_with_side(tokens, {}, logits.data());  // calls forward: the same thread enters again
  });
  second.join();
  EXPECT_EQ(s.position(), 8u);
}

}  // namespace
