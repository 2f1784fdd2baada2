// SPDX-License-Identifier: MIT
// Tests of thread_pool and parallel_for: coverage of the range, exceptions, nesting, concurrency.
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include <pith/core/parallel.hpp>

namespace {

TEST(ThreadPool, RangesCoverEveryIndexOnce) {
  for (std::size_t threads : {1u, 2u, 3u, 8u}) {
    pith::thread_pool pool(threads);
    for (std::size_t n : {0u, 1u, 2u, 7u, 100u, 1001u}) {
      std::vector<std::atomic<int>> hits(n);
      pool.parallel_for(n, [&](std::size_t begin, std::size_t end) {
        for (std::size_t i = begin; i < end; ++i) hits[i].fetch_add(1);
      });
      for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "threads " << threads << " n " << n;
    }
  }
}

TEST(ThreadPool, UsesSeveralThreads) {
  pith::thread_pool pool(4);
  std::mutex mutex;
  std::set<std::thread::id> ids;
  std::atomic<int> arrived{0};
  pool.parallel_for(4, [&](std::size_t, std::size_t) {
    {
      std::lock_guard lock(mutex);
      ids.insert(std::this_thread::get_id());
    }
    // Every range waits for the others: this only finishes if four threads run at once.
    arrived.fetch_add(1);
    while (arrived.load() < 4) std::this_thread::yield();
  });
  EXPECT_EQ(ids.size(), 4u);
}

TEST(ThreadPool, GrainLimitsTheNumberOfRanges) {
  pith::thread_pool pool(4);
  std::atomic<int> ranges{0};
  pool.parallel_for(10, [&](std::size_t, std::size_t) { ranges.fetch_add(1); }, 8);
  EXPECT_EQ(ranges.load(), 2);
}

TEST(ThreadPool, ExceptionsReachTheCaller) {
  pith::thread_pool pool(3);
  EXPECT_THROW(pool.parallel_for(3,
                                 [](std::size_t begin, std::size_t) {
                                   if (begin > 0) PITH_THROW(shape_error, "range failed");
                                 }),
               pith::shape_error);
  // The pool still works afterwards.
  std::atomic<int> sum{0};
  pool.parallel_for(100, [&](std::size_t b, std::size_t e) { sum.fetch_add(static_cast<int>(e - b)); });
  EXPECT_EQ(sum.load(), 100);
}

TEST(ThreadPool, NestedCallsRunInline) {
  pith::thread_pool pool(2);
  std::atomic<int> count{0};
  pool.parallel_for(2, [&](std::size_t, std::size_t) {
    pool.parallel_for(10, [&](std::size_t b, std::size_t e) { count.fetch_add(static_cast<int>(e - b)); });
  });
  EXPECT_EQ(count.load(), 20);
}

TEST(ThreadPool, ConcurrentCallersAreSerialisedCorrectly) {
  pith::thread_pool pool(2);
  std::atomic<long> total{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c)
    callers.emplace_back([&] {
      for (int round = 0; round < 50; ++round)
        pool.parallel_for(64, [&](std::size_t b, std::size_t e) { total.fetch_add(static_cast<long>(e - b)); });
    });
  for (auto& t : callers) t.join();
  EXPECT_EQ(total.load(), 4L * 50 * 64);
}

TEST(GrainForWork, GivesEveryPartTheMinimumWork) {
  using pith::grain_for_work;
  using pith::min_work_per_thread;
  EXPECT_EQ(grain_for_work(0), min_work_per_thread);  // free items: never worth a thread
  EXPECT_EQ(grain_for_work(1), min_work_per_thread);
  EXPECT_EQ(grain_for_work(min_work_per_thread), 1u);
  EXPECT_EQ(grain_for_work(10 * min_work_per_thread), 1u);
  EXPECT_EQ(grain_for_work(min_work_per_thread / 3), 4u);  // rounds up: 3 items fall short
  // A small job stays on the caller; a large one is split.
  pith::thread_pool pool(2);
  std::atomic<int> ranges{0};
  pool.parallel_for(8, [&](std::size_t, std::size_t) { ranges.fetch_add(1); }, grain_for_work(1000));
  EXPECT_EQ(ranges.load(), 1);
  ranges = 0;
  pool.parallel_for(8, [&](std::size_t, std::size_t) { ranges.fetch_add(1); }, grain_for_work(min_work_per_thread));
  EXPECT_EQ(ranges.load(), 2);
}

TEST(ThreadPool, ZeroThreadsIsAnError) { EXPECT_THROW(pith::thread_pool(0), pith::argument_error); }

TEST(GlobalPool, SetNumThreadsChangesThePool) {
  pith::set_num_threads(3);
  EXPECT_EQ(pith::num_threads(), 3u);
  std::atomic<int> sum{0};
  pith::parallel_for(30, [&](std::size_t b, std::size_t e) { sum.fetch_add(static_cast<int>(e - b)); });
  EXPECT_EQ(sum.load(), 30);
  pith::set_num_threads(0);
  EXPECT_GE(pith::num_threads(), 1u);
}

}  // namespace
