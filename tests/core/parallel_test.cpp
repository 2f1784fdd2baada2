// SPDX-License-Identifier: MIT
// Tests of thread_pool, executors and parallel_for: coverage of the range, exceptions, nesting,
// concurrency, and the routing of pith::parallel_for through executor_scope.
#include <gtest/gtest.h>

#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <stdexcept>
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

TEST(thread_pool_bounds_3_7, counts_above_max_threads_are_an_argument_error) {
  EXPECT_THROW(pith::thread_pool(pith::thread_pool::max_threads + 1), pith::argument_error);
  EXPECT_THROW(pith::thread_pool(std::size_t{4294967297}), pith::argument_error);
  EXPECT_THROW(pith::set_num_threads(1000000), pith::argument_error);
}

// The address-space limit below cannot be used under the sanitizers: they reserve terabytes of
// shadow memory and abort themselves when a mapping fails.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PITH_TEST_UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define PITH_TEST_UNDER_SANITIZER 1
#endif
#endif

// Runs in a death test's child: caps the address space a little above what the process maps now
// and starts a pool of `threads`. Exit 0 with the message when pith::error is thrown.
[[maybe_unused]] void start_pool_under_address_limit(std::size_t threads) {
  // Room for a few 2-8 MiB thread stacks, far less than `threads` of them.
  constexpr std::size_t headroom = std::size_t{40} << 20;
  std::size_t pages = 0;
  if (FILE* statm = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(statm, "%zu", &pages) != 1) pages = 0;
    std::fclose(statm);
  }
  if (pages == 0) std::_Exit(3);
  rlimit limit{};
  limit.rlim_cur = pages * static_cast<std::size_t>(sysconf(_SC_PAGESIZE)) + headroom;
  limit.rlim_max = RLIM_INFINITY;
  if (setrlimit(RLIMIT_AS, &limit) != 0) std::_Exit(4);
  try {
    pith::thread_pool pool(threads);
    std::_Exit(5);  // every thread started: the limit did not bite
  } catch (const pith::error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    std::_Exit(0);
  }
}

// A worker that cannot start (here: the address space is too small for its stack) stops and joins
// the ones already started and throws pith::error; before, the pool's constructor unwound with
// joinable std::threads alive and std::terminate aborted the process.
TEST(thread_pool_start_failure_3_5, stops_started_workers_and_throws_pith_error) {
#if defined(PITH_TEST_UNDER_SANITIZER)
  GTEST_SKIP() << "address-space limits do not work under the sanitizers";
#elif defined(PITH_TEST_UNDER_EMULATOR)
  GTEST_SKIP() << "threadsafe death tests re-execute the binary, which qemu-user cannot do";
#else
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(start_pool_under_address_limit(200), ::testing::ExitedWithCode(0), "could not start thread [0-9]+ of 200");
#endif
}

TEST(GlobalPool, SetNumThreadsChangesThePool) {
  pith::set_num_threads(3);
  EXPECT_EQ(pith::num_threads(), 3u);
  std::atomic<int> sum{0};
  pith::parallel_for(30, [&](std::size_t b, std::size_t e) { sum.fetch_add(static_cast<int>(e - b)); });
  EXPECT_EQ(sum.load(), 30);
  pith::set_num_threads(0);
  EXPECT_GE(pith::num_threads(), 1u);
}

// An executor of `threads` parts at once that runs them on a thread_pool and counts its calls.
class counting_executor final : public pith::executor {
 public:
  explicit counting_executor(std::size_t threads) : pool_(threads) {}
  std::size_t concurrency() const noexcept override { return pool_.size(); }
  void run(std::size_t parts, task_function task, void* context) override {
    runs.fetch_add(1);
    parts_run.fetch_add(parts);
    pool_.run(parts, task, context);
  }
  std::atomic<std::size_t> runs{0}, parts_run{0};

 private:
  pith::thread_pool pool_;
};

TEST(ThreadPool, RunCallsEveryPartOnceWhenPartsExceedThreads) {
  for (std::size_t threads : {1u, 2u, 3u}) {
    pith::thread_pool pool(threads);
    for (std::size_t parts : {1u, 2u, 5u, 7u, 16u}) {
      std::vector<std::atomic<int>> calls(parts);
      struct context_t {
        std::vector<std::atomic<int>>* calls;
      } context{&calls};
      pool.run(parts, [](void* c, std::size_t part) { (*static_cast<context_t*>(c)->calls)[part].fetch_add(1); },
               &context);
      for (std::size_t part = 0; part < parts; ++part)
        EXPECT_EQ(calls[part].load(), 1) << threads << " threads, part " << part << " of " << parts;
    }
  }
}

TEST(Executor, InlineExecutorRunsEveryRangeOnTheCallingThread) {
  pith::inline_executor serial;
  EXPECT_EQ(serial.concurrency(), 1u);
  const auto caller = std::this_thread::get_id();
  std::vector<int> seen(100, 0);
  bool other_thread = false;
  serial.parallel_for(seen.size(), [&](std::size_t b, std::size_t e) {
    other_thread |= std::this_thread::get_id() != caller;
    for (std::size_t i = b; i < e; ++i) ++seen[i];
  });
  EXPECT_FALSE(other_thread);
  for (int count : seen) EXPECT_EQ(count, 1);
}

TEST(Executor, CustomExecutorSplitsIntoItsConcurrencyAndCoversTheRange) {
  counting_executor custom(3);
  std::vector<std::atomic<int>> seen(50);
  std::atomic<std::size_t> ranges{0};
  custom.parallel_for(seen.size(), [&](std::size_t b, std::size_t e) {
    ranges.fetch_add(1);
    for (std::size_t i = b; i < e; ++i) seen[i].fetch_add(1);
  });
  EXPECT_EQ(custom.runs.load(), 1u);
  EXPECT_EQ(custom.parts_run.load(), 3u);
  EXPECT_EQ(ranges.load(), 3u);
  for (const auto& count : seen) EXPECT_EQ(count.load(), 1);
}

TEST(Executor, ExceptionIsRethrownAfterEveryRangeFinished) {
  counting_executor custom(4);
  std::atomic<int> finished{0};
  EXPECT_THROW(custom.parallel_for(4,
                                   [&](std::size_t b, std::size_t) {
                                     if (b == 0) throw std::runtime_error("range 0");
                                     std::this_thread::sleep_for(std::chrono::milliseconds(20));
                                     finished.fetch_add(1);
                                   }),
               std::runtime_error);
  EXPECT_EQ(finished.load(), 3);
}

TEST(Executor, NestedParallelForInsideACustomExecutorTaskRunsInline) {
  counting_executor outer(2);
  std::atomic<int> count{0};
  std::atomic<int> on_other_thread{0};
  {
    const pith::executor_scope scope(outer);
    pith::parallel_for(2, [&](std::size_t, std::size_t) {
      const auto range_thread = std::this_thread::get_id();
      pith::parallel_for(10, [&](std::size_t b, std::size_t e) {
        if (std::this_thread::get_id() != range_thread) on_other_thread.fetch_add(1);
        count.fetch_add(static_cast<int>(e - b));
      });
    });
  }
  EXPECT_EQ(outer.runs.load(), 1u);  // the nested calls did not reach the executor
  EXPECT_EQ(count.load(), 20);
  EXPECT_EQ(on_other_thread.load(), 0);
}

TEST(ExecutorScope, RoutesParallelForAndNumThreadsAndRestoresThePrevious) {
  pith::set_num_threads(2);
  counting_executor outer(3), inner(4);
  EXPECT_EQ(pith::current_executor(), nullptr);
  EXPECT_EQ(pith::num_threads(), 2u);
  {
    const pith::executor_scope a(outer);
    EXPECT_EQ(pith::current_executor(), &outer);
    EXPECT_EQ(pith::num_threads(), 3u);
    pith::parallel_for(30, [](std::size_t, std::size_t) {});
    {
      const pith::executor_scope b(inner);
      EXPECT_EQ(pith::num_threads(), 4u);
      pith::parallel_for(30, [](std::size_t, std::size_t) {});
      {
        const pith::executor_scope keep(nullptr);  // nullptr leaves the current executor in place
        EXPECT_EQ(pith::current_executor(), &inner);
      }
      EXPECT_EQ(pith::current_executor(), &inner);
    }
    EXPECT_EQ(pith::current_executor(), &outer);
    pith::parallel_for(30, [](std::size_t, std::size_t) {});
  }
  EXPECT_EQ(pith::current_executor(), nullptr);
  EXPECT_EQ(pith::num_threads(), 2u);
  EXPECT_EQ(outer.runs.load(), 2u);
  EXPECT_EQ(inner.runs.load(), 1u);
  pith::set_num_threads(0);
}

TEST(ExecutorScope, RestoresThePreviousExecutorWhenLeftByAnException) {
  counting_executor outer(2), inner(2);
  const pith::executor_scope a(outer);
  EXPECT_THROW(
      {
        const pith::executor_scope b(inner);
        pith::parallel_for(2, [](std::size_t, std::size_t) { throw std::runtime_error("range"); });
      },
      std::runtime_error);
  EXPECT_EQ(pith::current_executor(), &outer);
  EXPECT_EQ(inner.runs.load(), 1u);
}

TEST(ExecutorScope, IsPerThread) {
  counting_executor mine(2);
  const pith::executor_scope scope(mine);
  pith::executor* seen_by_other = &mine;
  std::thread other([&] { seen_by_other = pith::current_executor(); });
  other.join();
  EXPECT_EQ(seen_by_other, nullptr);
  EXPECT_EQ(pith::current_executor(), &mine);
}

}  // namespace
