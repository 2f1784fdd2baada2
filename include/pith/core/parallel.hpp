// SPDX-License-Identifier: MIT
// parallel_for over a persistent std::thread pool, with a process-wide pool whose size callers can set.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pith/core/error.hpp"

namespace pith {

namespace detail {
inline thread_local bool inside_pool_task = false;
}  // namespace detail

/// A fixed set of worker threads. parallel_for splits [0, n) into at most size() contiguous ranges
/// and runs them at once, the calling thread taking the first. Calls from several threads are
/// serialised; a call from inside a task runs inline on that thread (no deadlock, no oversubscription).
class thread_pool {
 public:
  /// The largest pool: far above the cores of any machine pith runs on, far below the counts at
  /// which starting the threads alone exhausts memory or the process's thread limit.
  static constexpr std::size_t max_threads = 1024;

  /// `threads` counts the calling thread too: thread_pool(1) starts no worker. Throws
  /// argument_error outside 1..max_threads. When the system refuses to start a worker (thread or
  /// memory limits), the workers already started are stopped and joined and pith::error is thrown:
  /// the pool never runs with fewer threads than asked without the caller knowing.
  explicit thread_pool(std::size_t threads) {
    if (threads == 0 || threads > max_threads)
      PITH_THROW(argument_error, "thread_pool: " + std::to_string(threads) + " threads requested; the pool takes 1.." +
                                     std::to_string(max_threads));
    workers_.reserve(threads - 1);
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
    try {
      for (std::size_t i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
    } catch (const std::exception& e) {
      const std::size_t started = workers_.size() + 1;
      stop_and_join();
      PITH_THROW(error, "thread_pool: could not start thread " + std::to_string(started + 1) + " of " +
                            std::to_string(threads) + " (" + e.what() + "); ask for fewer threads");
    }
#else
    // Without exceptions a failing std::thread constructor terminates the process.
    for (std::size_t i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
#endif
  }
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;
  ~thread_pool() { stop_and_join(); }

  std::size_t size() const noexcept { return workers_.size() + 1; }

  /// Calls fn(begin, end) on disjoint ranges covering [0, n), each at least `grain` long (except
  /// when n < grain). Rethrows the first exception a range threw, after every range has finished.
  template <class Fn>
  void parallel_for(std::size_t n, Fn&& fn, std::size_t grain = 1) {
    if (n == 0) return;
    grain = std::max<std::size_t>(grain, 1);
    const std::size_t parts = std::min(size(), (n + grain - 1) / grain);
    if (parts <= 1 || detail::inside_pool_task) {
      fn(std::size_t{0}, n);
      return;
    }
    auto range_of = [n, parts](std::size_t part) {
      return std::pair{n * part / parts, n * (part + 1) / parts};
    };
    auto task = [&](std::size_t part) {
      const auto [begin, end] = range_of(part);
      fn(begin, end);
    };
    std::lock_guard run_lock(run_mutex_);
    {
      std::lock_guard lock(state_mutex_);
      job_ = [](void* context, std::size_t part) { (*static_cast<decltype(task)*>(context))(part); };
      job_context_ = &task;
      job_parts_ = parts;
      pending_.store(parts - 1, std::memory_order_relaxed);
      first_error_ = nullptr;
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    std::exception_ptr own_error;
    detail::inside_pool_task = true;
    PITH_TRY {
      task(0);
    } PITH_CATCH_ALL {
      own_error = std::current_exception();
    }
    detail::inside_pool_task = false;
    // Short tasks (one decoded token's matrix slices) finish within microseconds: spin first.
    for (int spin = 0; spin < spin_iterations && pending_.load(std::memory_order_acquire) != 0; ++spin) relax(spin);
    std::unique_lock lock(state_mutex_);
    done_.wait(lock, [this] { return pending_.load(std::memory_order_acquire) == 0; });
    std::exception_ptr error = own_error ? own_error : first_error_;
    job_ = nullptr;
    job_context_ = nullptr;
    lock.unlock();
    if (error) std::rethrow_exception(error);
  }

 private:
  void stop_and_join() noexcept {
    {
      std::lock_guard lock(state_mutex_);
      stopping_ = true;
      stopping_flag_.store(true, std::memory_order_relaxed);
    }
    wake_.notify_all();
    for (auto& worker : workers_) worker.join();
    workers_.clear();
  }

  // One step of a spin-wait: a pause instruction, and every yield_every steps a yield to the OS, so
  // that a thread spinning on a core it shares (more threads than free cores: other processes, or
  // ctest -j) hands the core to the thread it is waiting for instead of burning its time slice.
  // Without the yields, a 2-thread pool pinned to one core read documents 22 times slower.
  static void relax(int spin) noexcept {
    if (spin % yield_every == yield_every - 1)
      std::this_thread::yield();
    else
      pause();
  }

  static void pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }

  void worker_loop(std::size_t index) {
    std::size_t seen = 0;
    for (;;) {
      void (*job)(void*, std::size_t) = nullptr;
      void* context = nullptr;
      // Spin a little before sleeping: consecutive parallel_for calls come microseconds apart.
      for (int spin = 0; spin < spin_iterations && generation_.load(std::memory_order_acquire) == seen &&
                         !stopping_flag_.load(std::memory_order_relaxed);
           ++spin)
        relax(spin);
      {
        std::unique_lock lock(state_mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_.load(std::memory_order_relaxed) != seen; });
        if (stopping_) return;
        seen = generation_.load(std::memory_order_relaxed);
        if (index >= job_parts_) continue;
        job = job_;
        context = job_context_;
      }
      std::exception_ptr error;
      detail::inside_pool_task = true;
      PITH_TRY {
        job(context, index);
      } PITH_CATCH_ALL {
        error = std::current_exception();
      }
      detail::inside_pool_task = false;
      std::lock_guard lock(state_mutex_);
      if (error && !first_error_) first_error_ = error;
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) done_.notify_one();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex run_mutex_;
  std::mutex state_mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  void (*job_)(void*, std::size_t) = nullptr;
  void* job_context_ = nullptr;
  static constexpr int spin_iterations = 20000;  // about 0.5 ms: a pause takes 23 ns on a Zen 5 EPYC
  static constexpr int yield_every = 64;
  std::size_t job_parts_ = 0;
  std::atomic<std::size_t> pending_{0};
  std::atomic<std::size_t> generation_{0};
  std::exception_ptr first_error_;
  bool stopping_ = false;
  std::atomic<bool> stopping_flag_{false};
};

namespace detail {
struct global_pool_state {
  std::mutex mutex;
  std::shared_ptr<thread_pool> pool;
};
inline global_pool_state& global_pool() {
  static global_pool_state state;
  return state;
}
inline std::size_t default_thread_count() {
  const unsigned hardware = std::thread::hardware_concurrency();
  return hardware == 0 ? 1 : std::min<std::size_t>(hardware, thread_pool::max_threads);
}
inline std::shared_ptr<thread_pool> shared_pool() {
  auto& state = global_pool();
  std::lock_guard lock(state.mutex);
  if (!state.pool) state.pool = std::make_shared<thread_pool>(default_thread_count());
  return state.pool;
}
}  // namespace detail

/// Sets the size of the process-wide pool used by pith::parallel_for (0 = all hardware threads).
/// Calls already running keep the pool they started with.
inline void set_num_threads(std::size_t threads) {
  auto pool = std::make_shared<thread_pool>(threads == 0 ? detail::default_thread_count() : threads);
  auto& state = detail::global_pool();
  std::lock_guard lock(state.mutex);
  state.pool = std::move(pool);
}

/// Size of the process-wide pool.
inline std::size_t num_threads() { return detail::shared_pool()->size(); }

/// Work, in multiply-adds, a part of a parallel_for must hold to be worth a thread: starting a
/// worker and waiting for it costs microseconds (far more once the cores are shared with other
/// processes), which 2^18 multiply-adds of vectorised work outweigh (see grain_for_work).
inline constexpr std::size_t min_work_per_thread = std::size_t{1} << 18;

/// The parallel_for grain that gives every part at least min_work_per_thread multiply-adds when
/// each item costs work_per_item: small problems then run on the calling thread alone.
constexpr std::size_t grain_for_work(std::size_t work_per_item) noexcept {
  const std::size_t per_item = std::max<std::size_t>(work_per_item, 1);
  return std::max<std::size_t>((min_work_per_thread + per_item - 1) / per_item, 1);
}

/// parallel_for on the process-wide pool; see thread_pool::parallel_for.
template <class Fn>
void parallel_for(std::size_t n, Fn&& fn, std::size_t grain = 1) {
  auto pool = detail::shared_pool();
  pool->parallel_for(n, std::forward<Fn>(fn), grain);
}

}  // namespace pith
