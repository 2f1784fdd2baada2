// SPDX-License-Identifier: MIT
// parallel_for over an executor: a persistent std::thread pool, one thread, or an engine's own pool;
// a process-wide pool by default, another per thread through executor_scope.
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
#include <type_traits>
#include <vector>

#include "pith/core/error.hpp"

namespace pith {

namespace detail {
inline thread_local bool inside_pool_task = false;
}  // namespace detail

/// Runs the parts of a parallel_for. An engine that owns its threads implements it to have pith run
/// on them (session_options::executor, reader_options::executor, executor_scope); thread_pool and
/// inline_executor are pith's own.
class executor {
 public:
  /// A part of a job: task(context, part). Tasks pith passes never throw (parallel_for catches what
  /// a range throws and rethrows it once run has returned).
  using task_function = void (*)(void* context, std::size_t part);

  virtual ~executor() = default;

  /// How many parts it runs at once, the calling thread included (at least 1). parallel_for splits
  /// its work into at most this many parts.
  virtual std::size_t concurrency() const noexcept = 0;

  /// Calls task(context, part) exactly once for every part in [0, parts), on any threads (the
  /// calling one included) and in any order, and returns once every call has finished; whatever the tasks wrote must then be visible
  /// to the calling thread (the completion synchronises with the caller, as a mutex or a release /
  /// acquire pair does). `parts` may exceed concurrency(). run may be called from several threads
  /// at once and must then either serialise the calls or run them side by side.
  virtual void run(std::size_t parts, task_function task, void* context) = 0;

  /// Calls fn(begin, end) on disjoint ranges covering [0, n), each at least `grain` long (except
  /// when n < grain), at most concurrency() of them. Rethrows the first exception a range threw,
  /// after every range has finished. A parallel_for called from inside a range (on any executor)
  /// runs inline on that thread: no deadlock, no oversubscription.
  template <class Fn>
  void parallel_for(std::size_t n, Fn&& fn, std::size_t grain = 1) {
    if (n == 0) return;
    grain = std::max<std::size_t>(grain, 1);
    const std::size_t parts = std::min(std::max<std::size_t>(concurrency(), 1), (n + grain - 1) / grain);
    if (parts <= 1 || detail::inside_pool_task) {
      fn(std::size_t{0}, n);
      return;
    }
    struct job {
      std::remove_reference_t<Fn>& fn;
      std::size_t n, parts;
      std::atomic<bool> failed{false};
      std::exception_ptr error;
    } work{fn, n, parts, {false}, nullptr};
    run(parts, [](void* context, std::size_t part) noexcept {
      auto& w = *static_cast<job*>(context);
      const bool was_inside = detail::inside_pool_task;
      detail::inside_pool_task = true;
      PITH_TRY {
        w.fn(w.n * part / w.parts, w.n * (part + 1) / w.parts);
      } PITH_CATCH_ALL {
        if (!w.failed.exchange(true, std::memory_order_acq_rel)) w.error = std::current_exception();
      }
      detail::inside_pool_task = was_inside;
    }, &work);
    if (work.error) std::rethrow_exception(work.error);
  }
};

/// The executor of one thread: runs every part in turn on the calling thread (no worker, no lock),
/// for a session or reader that must not use any other thread.
class inline_executor final : public executor {
 public:
  std::size_t concurrency() const noexcept override { return 1; }
  void run(std::size_t parts, task_function task, void* context) override {
    for (std::size_t part = 0; part < parts; ++part) task(context, part);
  }
};

/// A fixed set of worker threads. run (and so parallel_for) splits its parts among at most size()
/// threads at once, the calling thread taking the first. Calls from several threads are serialised;
/// a parallel_for from inside a task runs inline on that thread (no deadlock, no oversubscription).
class thread_pool final : public executor {
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
  ~thread_pool() override { stop_and_join(); }

  std::size_t size() const noexcept { return workers_.size() + 1; }
  std::size_t concurrency() const noexcept override { return size(); }

  /// Thread t of the min(parts, size()) taking part runs parts t, t + that count, ... A task that
  /// throws does not stop the others; the first exception is rethrown once every part has finished.
  /// Called from inside a task (of any executor's parallel_for), every part runs inline on the
  /// calling thread.
  void run(std::size_t parts, task_function task, void* context) override {
    if (parts == 0) return;
    const std::size_t threads = std::min(size(), parts);
    if (threads <= 1 || detail::inside_pool_task) {
      std::exception_ptr error;
      for (std::size_t part = 0; part < parts; ++part) {
        PITH_TRY {
          task(context, part);
        } PITH_CATCH_ALL {
          if (!error) error = std::current_exception();
        }
      }
      if (error) std::rethrow_exception(error);
      return;
    }
    std::lock_guard run_lock(run_mutex_);
    {
      std::lock_guard lock(state_mutex_);
      job_ = task;
      job_context_ = context;
      job_parts_ = parts;
      job_threads_ = threads;
      pending_.store(threads - 1, std::memory_order_relaxed);
      first_error_ = nullptr;
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    std::exception_ptr own_error = run_parts(0, task, context, parts, threads);
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

  // Parts first, first + threads, ... of a job, inside a task; the first exception they threw.
  static std::exception_ptr run_parts(std::size_t first, task_function task, void* context, std::size_t parts,
                                      std::size_t threads) noexcept {
    std::exception_ptr error;
    const bool was_inside = detail::inside_pool_task;
    detail::inside_pool_task = true;
    for (std::size_t part = first; part < parts; part += threads) {
      PITH_TRY {
        task(context, part);
      } PITH_CATCH_ALL {
        if (!error) error = std::current_exception();
      }
    }
    detail::inside_pool_task = was_inside;
    return error;
  }

  void worker_loop(std::size_t index) {
    std::size_t seen = 0;
    for (;;) {
      task_function job = nullptr;
      void* context = nullptr;
      std::size_t parts = 0, threads = 0;
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
        if (index >= job_threads_) continue;
        job = job_;
        context = job_context_;
        parts = job_parts_;
        threads = job_threads_;
      }
      const std::exception_ptr error = run_parts(index, job, context, parts, threads);
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
  task_function job_ = nullptr;
  void* job_context_ = nullptr;
  std::size_t job_threads_ = 0;
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
// The executor pith::parallel_for runs on for this thread; nullptr: the process-wide pool.
inline thread_local executor* current_executor = nullptr;
}  // namespace detail

/// Routes pith::parallel_for and num_threads() on the calling thread to `target` until the scope
/// ends, then restores the executor that was current before (also when the scope is left by an
/// exception). Scopes nest; a nullptr target leaves the current executor in place. Only the calling
/// thread is affected, and `target` must outlive the scope. session and reader enter one around
/// their computing calls when given an executor (session_options::executor).
class executor_scope {
 public:
  explicit executor_scope(executor* target) noexcept : previous_(detail::current_executor) {
    if (target != nullptr) detail::current_executor = target;
  }
  explicit executor_scope(executor& target) noexcept : executor_scope(&target) {}
  executor_scope(const executor_scope&) = delete;
  executor_scope& operator=(const executor_scope&) = delete;
  ~executor_scope() { detail::current_executor = previous_; }

 private:
  executor* previous_;
};

/// The executor an executor_scope made current on this thread, or nullptr (the process-wide pool).
inline executor* current_executor() noexcept { return detail::current_executor; }

/// Sets the size of the process-wide pool used by pith::parallel_for outside any executor_scope
/// (0 = all hardware threads). Calls already running keep the pool they started with.
inline void set_num_threads(std::size_t threads) {
  auto pool = std::make_shared<thread_pool>(threads == 0 ? detail::default_thread_count() : threads);
  auto& state = detail::global_pool();
  std::lock_guard lock(state.mutex);
  state.pool = std::move(pool);
}

/// How many parts pith::parallel_for splits work into on this thread: the concurrency of the current
/// executor (executor_scope), or else the size of the process-wide pool.
inline std::size_t num_threads() {
  if (executor* current = detail::current_executor) return std::max<std::size_t>(current->concurrency(), 1);
  return detail::shared_pool()->size();
}

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

/// executor::parallel_for on the calling thread's current executor (executor_scope), or else on the
/// process-wide pool. Inside a range of any parallel_for it runs inline on the calling thread.
template <class Fn>
void parallel_for(std::size_t n, Fn&& fn, std::size_t grain = 1) {
  if (executor* current = detail::current_executor) {
    current->parallel_for(n, std::forward<Fn>(fn), grain);
    return;
  }
  auto pool = detail::shared_pool();
  pool->parallel_for(n, std::forward<Fn>(fn), grain);
}

}  // namespace pith
