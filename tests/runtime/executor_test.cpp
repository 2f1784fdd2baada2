// SPDX-License-Identifier: MIT
// Sessions and readers on the executor their options name: routing away from the process-wide pool,
// logits equal to the pool's, and readers on several threads each on its own executor.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include <pith/model/random_weights.hpp>
#include <pith/runtime/reader.hpp>

namespace {

// Large enough that a 128-token chunk's matrix products split into parts (min_work_per_thread).
pith::model_config split_config() {
  pith::model_config c;
  c.hidden_size = 256;
  c.intermediate_size = 512;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 64;
  c.vocab_size = 300;
  c.rms_norm_eps = 1e-5f;
  c.max_position_embeddings = 512;
  c.source = "test config";
  return c;
}

const pith::model_weights& split_model() {
  static const pith::model_weights w = pith::random_weights(split_config(), 5);
  return w;
}

constexpr std::size_t chunk = 128;

std::vector<std::int32_t> executor_document(std::size_t n, std::uint32_t seed) {
  std::vector<std::int32_t> ids(n);
  for (std::size_t i = 0; i < n; ++i) ids[i] = static_cast<std::int32_t>(3 + (i * 37 + seed * 13 + i * i) % 290);
  return ids;
}

// Runs on a thread_pool of `threads` and counts the runs and the parallel_for calls it was asked
// to size (concurrency()).
class counting_executor final : public pith::executor {
 public:
  explicit counting_executor(std::size_t threads) : pool_(threads) {}
  std::size_t concurrency() const noexcept override { return pool_.size(); }
  void run(std::size_t parts, task_function task, void* context) override {
    runs.fetch_add(1);
    pool_.run(parts, task, context);
  }
  std::atomic<std::size_t> runs{0};

 private:
  pith::thread_pool pool_;
};

// Two chunks through a session with all logits; the session runs on `on` (nullptr: the pool).
std::vector<float> session_logits(std::shared_ptr<pith::executor> on) {
  pith::session_options options;
  options.max_context = 4 * chunk;
  options.max_chunk = chunk;
  options.executor = std::move(on);
  pith::session s(split_model(), options);
  const auto ids = executor_document(2 * chunk, 1);
  std::vector<float> logits(ids.size() * split_model().config.vocab_size);
  s.forward(ids, logits.data(), true);
  return logits;
}

// Holds the process-wide pool's run lock from another thread (a range that waits) until release()
// or a timeout: a parallel_for that reaches the pool meanwhile would wait for it.
class pool_blocker {
 public:
  explicit pool_blocker(std::chrono::seconds timeout) {
    pith::set_num_threads(2);
    thread_ = std::thread([this, timeout] {
      pith::parallel_for(2, [&](std::size_t, std::size_t) {
        std::unique_lock lock(mutex_);
        holding_ = true;
        changed_.notify_all();
        if (!changed_.wait_for(lock, timeout, [&] { return released_; })) timed_out_ = true;
      });
    });
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return holding_; });
  }
  ~pool_blocker() {
    release();
    thread_.join();
    pith::set_num_threads(0);
  }
  // Whether the pool was still held when this was called.
  bool release() {
    std::lock_guard lock(mutex_);
    released_ = true;
    changed_.notify_all();
    return !timed_out_;
  }

 private:
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool holding_ = false, released_ = false, timed_out_ = false;
};

TEST(Executor, SessionForwardRunsOnItsExecutorWithThePoolsLogits) {
  pith::set_num_threads(2);
  const auto on_pool = session_logits(nullptr);
  auto custom = std::make_shared<counting_executor>(2);
  std::vector<float> on_custom;
  {
    // The pool is busy throughout: a forward that used it would wait for the timeout.
    pool_blocker blocked(std::chrono::seconds(60));
    on_custom = session_logits(custom);
    EXPECT_TRUE(blocked.release()) << "the session waited for the process-wide pool";
  }
  EXPECT_GT(custom->runs.load(), 0u);
  // The same kernels on the same partition (both split into 2): every logit is the same float.
  EXPECT_EQ(on_custom, on_pool);
  EXPECT_EQ(session_logits(std::make_shared<pith::inline_executor>()), on_pool);
  pith::set_num_threads(0);
}

TEST(Executor, SessionSizesItsAttentionPartsByItsExecutor) {
  pith::set_num_threads(1);
  // One attention scratch per part: min(4 heads, concurrency) of them, whatever the pool's size.
  auto session_bytes = [](std::shared_ptr<pith::executor> on) {
    pith::session_options options;
    options.max_context = 4 * chunk;
    options.max_chunk = chunk;
    options.executor = std::move(on);
    return pith::session(split_model(), options).bytes_allocated();
  };
  const std::size_t one_part = session_bytes(std::make_shared<pith::inline_executor>());
  EXPECT_EQ(session_bytes(nullptr), one_part);
  const std::size_t scratch = pith::kernels::softmax_importance_scratch_size(chunk, 4 * chunk, 64) * sizeof(float);
  EXPECT_EQ(session_bytes(std::make_shared<counting_executor>(4)), one_part + 3 * scratch);
  pith::set_num_threads(0);
}

TEST(Executor, SessionWithoutExecutorFollowsTheCallersScope) {
  auto outer = std::make_shared<counting_executor>(2);
  std::vector<float> logits;
  {
    const pith::executor_scope scope(*outer);
    logits = session_logits(nullptr);
  }
  EXPECT_GT(outer->runs.load(), 0u);
  EXPECT_EQ(pith::current_executor(), nullptr);
}

TEST(Executor, ReadersOnTwoThreadsWithTheirOwnPoolsRunWithoutTheGlobalPool) {
  pith::reader_options o;
  o.budget = 2 * chunk;
  o.chunk_size = chunk;
  o.max_answer_tokens = 6;
  const std::vector<std::int32_t> instruction = executor_document(8, 9);
  auto run = [&](std::shared_ptr<pith::executor> on, std::uint32_t seed) {
    pith::reader_options mine = o;
    mine.executor = std::move(on);
    pith::reader r(split_model(), mine, instruction);
    r.feed(executor_document(5 * chunk, seed));
    pith::sampler greedy;
    auto tokens = r.answer(6, greedy);
    return std::pair{tokens, r.answer_logits()};
  };
  const auto alone_a = run(nullptr, 2), alone_b = run(nullptr, 3);
  decltype(run(nullptr, 2)) a, b;
  {
    pool_blocker blocked(std::chrono::seconds(120));
    std::thread first([&] { a = run(std::make_shared<pith::thread_pool>(1), 2); });
    std::thread second([&] { b = run(std::make_shared<pith::thread_pool>(1), 3); });
    first.join();
    second.join();
    EXPECT_TRUE(blocked.release()) << "a reader waited for the process-wide pool";
  }
  EXPECT_EQ(a, alone_a);
  EXPECT_EQ(b, alone_b);
}

TEST(Executor, SessionCallsLeaveTheCallersExecutorInPlace) {
  counting_executor outer(2);
  const pith::executor_scope scope(outer);
  (void)session_logits(std::make_shared<pith::inline_executor>());
  EXPECT_EQ(pith::current_executor(), &outer);
  EXPECT_EQ(outer.runs.load(), 0u);
}

}  // namespace
