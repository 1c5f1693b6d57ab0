// exec.cpp: the emulator's execution model. A grid's blocks spread over a pool of OS
// threads; a block's threads are cooperative fibers (Boost.Context) on one of them, so
// __syncthreads is a real barrier: each thread runs until it reaches the barrier or ends,
// then the next. A block whose first thread ends without a barrier runs the others as
// plain calls. Checks, as errors naming kernel, block and thread: the launch limits of
// an H100, divergent barriers, a thread that ends while others wait.
#include <cuda_runtime.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <boost/context/fiber.hpp>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#include "kernels/cuda/emulator/emulator.h"
#include "kernels/cuda/emulator/internal.h"

namespace cvae::emu {

__thread const ThreadState* tls_thread = nullptr;

namespace {

namespace ctx = boost::context;

// ---------------------------------------------------------------------------- limits
constexpr unsigned kMaxThreadsPerBlock = 1024, kMaxBlockZ = 64;
constexpr unsigned kMaxGridYZ = 65535;
constexpr size_t kMaxSharedPerBlock = 48 << 10;  // without cudaFuncSetAttribute opt-in
#if defined(__SANITIZE_ADDRESS__)
constexpr size_t kStackBytes = 256 << 10;  // ASan frames are several times larger
#else
constexpr size_t kStackBytes = 64 << 10;
#endif

std::string dims(uint3 v) {
  return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")";
}
std::string dims(dim3 v) { return dims(uint3{v.x, v.y, v.z}); }
std::string site(const char* file, int line) {
  const char* slash = std::strrchr(file, '/');
  return std::string(slash ? slash + 1 : file) + ":" + std::to_string(line);
}

// ---------------------------------------------------------------------------- counts
struct Registry {
  std::mutex mu;
  std::set<std::string> kernels;
  std::map<std::string, int64_t> launches;
  std::map<std::string, double> seconds;  // wall time per kernel, for CVAE_EMU_PROFILE
};
Registry& registry() {
  static Registry* r = new Registry();  // never destroyed: read by the exit hook
  return *r;
}

// Appends this process's registrations and launch counts to $CVAE_EMU_LAUNCH_LOG, one
// write(2) with O_APPEND, so test processes running in parallel do not interleave.
void write_launch_log() {
  if (std::getenv("CVAE_EMU_PROFILE")) {  // where an emulated run spends its time
    std::vector<std::pair<double, std::string>> by_time;
    for (const auto& [k, t] : registry().seconds) by_time.emplace_back(t, k);
    std::sort(by_time.rbegin(), by_time.rend());
    for (const auto& [t, k] : by_time)
      std::fprintf(stderr, "%9.3f s %8lld x  %s\n", t, static_cast<long long>(registry().launches[k]), k.c_str());
  }
  const char* path = std::getenv("CVAE_EMU_LAUNCH_LOG");
  if (!path || !*path) return;
  std::string text;
  {
    std::lock_guard<std::mutex> lock(registry().mu);
    if (registry().launches.empty()) return;  // e.g. gtest's test listing
    for (const auto& k : registry().kernels) text += "registered " + k + "\n";
    for (const auto& [k, n] : registry().launches) text += "launched " + std::to_string(n) + " " + k + "\n";
  }
  if (FILE* f = std::fopen(path, "a")) {
    std::setvbuf(f, nullptr, _IOFBF, text.size() + 1);
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
  }
}

// ---------------------------------------------------------------------------- order
std::atomic<int> g_order{-1};  // -1: not read from the environment yet
ThreadOrder order_now() {
  int o = g_order.load();
  if (o < 0) {
    const char* env = std::getenv("CVAE_EMU_ORDER");
    o = env && std::strcmp(env, "reverse") == 0 ? 1 : 0;
    g_order.store(o);
  }
  return o == 1 ? ThreadOrder::Reverse : ThreadOrder::Forward;
}

// ---------------------------------------------------------------------------- pool
// Runs fn(0..count) on the workers and the calling thread; returns when all are done.
class Pool {
 public:
  // Detached: the pool lives as long as the process, its workers idle between grids.
  explicit Pool(int threads) : workers_(threads - 1) {
    for (int i = 0; i < workers_; ++i) std::thread([this] { loop(); }).detach();
  }
  void run(int64_t count, const std::function<void(int64_t)>& fn) {
    std::lock_guard<std::mutex> one_grid(run_mu_);
    if (count == 1 || workers_ == 0) {  // a single block: not worth a wake-up
      for (int64_t i = 0; i < count; ++i) fn(i);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = &fn;
      count_ = count;
      next_ = 0;
      pending_ = workers_;
      ++generation_;
    }
    wake_.notify_all();
    work();
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [&] { return pending_ == 0; });  // every worker has left this job
    job_ = nullptr;
  }

 private:
  void work() {
    for (int64_t i; (i = next_.fetch_add(1)) < count_;) (*job_)(i);
  }
  void loop() {
    uint64_t seen = 0;
    for (;;) {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return generation_ != seen; });
      seen = generation_;
      lock.unlock();
      work();
      lock.lock();
      if (--pending_ == 0) done_.notify_all();
    }
  }
  const int workers_;
  std::mutex run_mu_, mu_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t count_ = 0;
  std::atomic<int64_t> next_{0};
  int pending_ = 0;
  uint64_t generation_ = 0;
};

// The emulated kernels are compiled with -mfma (cmake/CvaeCuda.cmake). Before any
// other initializer of the process: on a CPU without FMA, one line instead of SIGILL.
#if defined(__x86_64__)
__attribute__((constructor(101))) void require_fma() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("fma")) return;
  std::fputs("cvae: this is the CUDA emulator build (CVAE_CUDA=EMULATE), compiled for CPUs with FMA; "
             "this CPU has none: build with -DCVAE_CUDA=OFF\n", stderr);
  std::_Exit(2);
}
#endif

Pool& pool() {
  static Pool* p = [] {
    int n = static_cast<int>(std::thread::hardware_concurrency());
    if (const char* env = std::getenv("CVAE_EMU_THREADS")) n = std::atoi(env);
    return new Pool(std::max(1, n));
  }();
  return *p;
}

// ---------------------------------------------------------------------------- fibers
struct AbortBlock {};  // unwinds a waiting thread's kernel frames after a fault
struct BarrierInPlainCall {
  const char* file;
  int line;
};

struct EmuThread {
  ThreadState ts{};
  ctx::fiber fiber;  // this thread, while suspended (at a barrier, or parked between blocks)
  ctx::fiber back;   // inside the fiber: the block scheduler
  enum State { Runnable, AtBarrier, Done } state = Runnable;
  bool in_kernel = false;  // inside the kernel's body (suspended there: at a barrier)
  const char* file = nullptr;
  int line = 0;
  void* stack_bottom = nullptr;
  void* fake_stack = nullptr;  // ASan's bookkeeping of this fiber
};

// What one OS thread needs to run blocks: its fiber stacks (reused) and the block now running.
struct Worker {
  std::vector<void*> free_stacks;
  size_t stacks_started = 0;
  std::vector<EmuThread> threads;
  EmuThread* current = nullptr;  // the fiber running now; null in the scheduler or a plain call
  bool abort = false;
  void* shared = nullptr;  // dynamic shared memory of the block
  const std::function<void()>* body = nullptr;  // the kernel of the block now running
  bool quit = false;  // set at thread exit: parked fibers leave their loop
  std::string kernel_error;
  const void* sched_bottom = nullptr;  // the scheduler's stack, for ASan's switch hooks
  size_t sched_size = 0;
  void* sched_fake = nullptr;
  ~Worker();
};
// Reached through a plain __thread pointer: gcc reads a thread_local that has a destructor
// through its TLS wrapper, a call at every access (under ASan an instrumented one, 9% of a
// sanitized training test), and the scheduler reads the worker at every fiber switch.
thread_local Worker t_worker_storage;
__thread Worker* t_worker_ptr = nullptr;
inline Worker& worker() {
  if (__builtin_expect(t_worker_ptr == nullptr, 0)) t_worker_ptr = &t_worker_storage;
  return *t_worker_ptr;
}

// AddressSanitizer must be told about every stack switch, else it reports false errors.
inline void asan_start(void** fake, const void* bottom, size_t size) {
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_start_switch_fiber(fake, bottom, size);
#else
  (void)fake, (void)bottom, (void)size;
#endif
}
inline void asan_finish(void* fake, const void** bottom_old, size_t* size_old) {
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_finish_switch_fiber(fake, bottom_old, size_old);
#else
  (void)fake, (void)bottom_old, (void)size_old;
#endif
}

// Fiber stacks from a per-worker free list (mmap'd, so not ASan's heap).
struct PooledStack {
  EmuThread* owner;
  ctx::stack_context allocate() {
    void* base;
    Worker& w = worker();
    if (!w.free_stacks.empty()) {
      base = w.free_stacks.back();
      w.free_stacks.pop_back();
    } else {
      base = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (base == MAP_FAILED) throw std::bad_alloc();
    }
    owner->stack_bottom = base;
    // Stacks are kStackBytes apart, so their tops would all fall into the same cache
    // sets (and every switch would miss): start each a different number of lines down.
    const size_t skew = (w.stacks_started++ % 256) * 64;
#if defined(__SANITIZE_ADDRESS__)
    // A finished fiber never returns through its entry frames (it jumps out), so their
    // redzones stay poisoned; clear the top of the stack, where the next one's frames go
    // (the whole 256 KB each time cost a fifth of the sanitized run).
    const size_t top = 48 << 10;
    __asan_unpoison_memory_region(static_cast<char*>(base) + kStackBytes - top, top);
#endif
    ctx::stack_context sc;
    sc.size = kStackBytes - skew;
    sc.sp = static_cast<char*>(base) + kStackBytes - skew;
    return sc;
  }
  void deallocate(ctx::stack_context& sc) noexcept {
    worker().free_stacks.push_back(static_cast<char*>(sc.sp) - sc.size);
  }
};

// Back to the block scheduler from inside a fiber (at a barrier, or parking).
void suspend(EmuThread& t) {
  Worker& w = worker();
  asan_start(&t.fake_stack, w.sched_bottom, w.sched_size);
  t.back = std::move(t.back).resume();
  asan_finish(t.fake_stack, &w.sched_bottom, &w.sched_size);
}

// A block's thread as a fiber. Fibers outlive their block: one that has ended the kernel
// parks, and the next block on this OS thread resumes it at the top of its loop with that
// block's kernel (worker().body). A thread then costs stack switches only, not a new fiber
// (and under ASan 48 KB of stack unpoisoned) per block: the sanitized GPU training tests
// ran about 1.3x faster.
void start_fiber(EmuThread& t) {
  t.state = EmuThread::Runnable;
  if (t.fiber) return;  // parked after an earlier block
  t.fiber = ctx::fiber(std::allocator_arg, PooledStack{&t}, [&t](ctx::fiber&& back) -> ctx::fiber {
    t.back = std::move(back);
    Worker& w = worker();  // a fiber never leaves its OS thread
    asan_finish(nullptr, &w.sched_bottom, &w.sched_size);
    while (!w.quit) {
      t.in_kernel = true;
      try {
        (*w.body)();
      } catch (const AbortBlock&) {
      } catch (const std::exception& e) {
        w.kernel_error = std::string("the kernel threw: ") + e.what();
      }
      t.in_kernel = false;
      t.state = EmuThread::Done;
      suspend(t);  // parked until a later block runs this thread
    }
    asan_start(nullptr, w.sched_bottom, w.sched_size);  // this fiber ends
    return std::move(t.back);
  });
}

void resume(EmuThread& t) {
  Worker& w = worker();
  w.current = &t;
  tls_thread = &t.ts;
  asan_start(&w.sched_fake, t.stack_bottom, kStackBytes);
  t.fiber = std::move(t.fiber).resume();
  asan_finish(w.sched_fake, nullptr, nullptr);
  w.current = nullptr;
}

// Unwinds every thread suspended inside the kernel (after a fault in the block), so that
// none resumes the old kernel in a later block.
void abort_waiting(std::vector<EmuThread>& threads, int n) {
  worker().abort = true;
  for (int i = 0; i < n; ++i)
    if (threads[i].in_kernel) resume(threads[i]);
  worker().abort = false;
}

// Lets the parked fibers end normally (a destroyed suspended fiber would be unwound
// behind ASan's back), then frees the stacks.
Worker::~Worker() {
  quit = abort = true;  // none should be inside a kernel; one that is unwinds it first
  for (EmuThread& t : threads)
    if (t.fiber) resume(t);
  threads.clear();
  for (void* s : free_stacks) munmap(s, kStackBytes);
}

// Runs one block; "" or what went wrong (without the kernel's name).
std::string run_block(const LaunchConfig& cfg, const std::function<void()>& body, uint3 block) {
  Worker& w = worker();
  const int n = static_cast<int>(cfg.block.x * cfg.block.y * cfg.block.z);
  // Never reallocated: a parked fiber holds its EmuThread's address.
  if (w.threads.capacity() < kMaxThreadsPerBlock) w.threads.reserve(kMaxThreadsPerBlock);
  if (static_cast<int>(w.threads.size()) < n) w.threads.resize(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const unsigned u = static_cast<unsigned>(i);
    w.threads[i].ts = {{u % cfg.block.x, u / cfg.block.x % cfg.block.y, u / (cfg.block.x * cfg.block.y)},
                       block, cfg.block, cfg.grid};
    w.threads[i].state = EmuThread::Runnable;
  }
  // Dynamic shared memory: exactly the launch's bytes (ASan sees a read past it),
  // poisoned like fresh device memory (a read of what no thread wrote shows as NaN).
  std::unique_ptr<unsigned char[]> shared(new unsigned char[cfg.shared_bytes ? cfg.shared_bytes : 1]);
  std::memset(shared.get(), 0xFF, cfg.shared_bytes);
  w.shared = shared.get();
  w.kernel_error.clear();
  w.body = &body;

  const bool reverse = order_now() == ThreadOrder::Reverse;
  auto thread_at = [&](int k) { return reverse ? n - 1 - k : k; };
  auto name = [&](int i) { return "thread " + dims(w.threads[i].ts.thread_idx); };

  // The first thread as a fiber: if it ends without reaching a barrier, the block has
  // none (or diverges, which the plain calls then show), and the rest run as calls.
  const int first = thread_at(0);
  start_fiber(w.threads[first]);
  resume(w.threads[first]);
  if (!w.kernel_error.empty()) return name(first) + ": " + w.kernel_error;
  if (w.threads[first].state == EmuThread::Done) {
    for (int k = 1; k < n; ++k) {
      const int i = thread_at(k);
      tls_thread = &w.threads[i].ts;
      try {
        body();
      } catch (const BarrierInPlainCall& b) {
        return "divergent __syncthreads: " + name(i) + " waits at " + site(b.file, b.line) + " but " +
               name(first) + " ended without reaching it";
      }
    }
    return "";
  }
  for (int k = 1; k < n; ++k) start_fiber(w.threads[thread_at(k)]);
  for (int interval = 0;; ++interval) {
    for (int k = 0; k < n; ++k) {
      EmuThread& t = w.threads[thread_at(k)];
      if (t.state == EmuThread::Runnable) resume(t);
      if (!w.kernel_error.empty()) {
        abort_waiting(w.threads, n);
        return name(thread_at(k)) + ": " + w.kernel_error;
      }
    }
    int waiting = -1, ended = -1;
    for (int k = 0; k < n; ++k) {
      const int i = thread_at(k);
      if (w.threads[i].state == EmuThread::AtBarrier && waiting < 0) waiting = i;
      if (w.threads[i].state == EmuThread::Done && ended < 0) ended = i;
    }
    if (waiting < 0) return "";  // every thread has ended
    std::string fault;
    if (ended >= 0) {
      fault = name(ended) + " ended while " + name(waiting) + " waits at __syncthreads (" +
              site(w.threads[waiting].file, w.threads[waiting].line) + ", barrier interval " +
              std::to_string(interval) + ")";
    } else {
      for (int i = 0; i < n && fault.empty(); ++i)
        if (w.threads[i].file != w.threads[waiting].file || w.threads[i].line != w.threads[waiting].line)
          fault = "divergent __syncthreads: " + name(waiting) + " waits at " +
                  site(w.threads[waiting].file, w.threads[waiting].line) + ", " + name(i) + " at " +
                  site(w.threads[i].file, w.threads[i].line);
    }
    if (!fault.empty()) {
      abort_waiting(w.threads, n);
      return fault;
    }
    for (int i = 0; i < n; ++i) w.threads[i].state = EmuThread::Runnable;
  }
}

}  // namespace

// ---------------------------------------------------------------------------- device side
void syncthreads(const char* file, int line) {
  Worker& w = worker();
  EmuThread* t = w.current;
  if (!t) {
    if (!tls_thread) {
      std::fprintf(stderr, "cvae CUDA emulator: __syncthreads outside a kernel (%s)\n", site(file, line).c_str());
      std::abort();
    }
    throw BarrierInPlainCall{file, line};
  }
  t->state = EmuThread::AtBarrier;
  t->file = file;
  t->line = line;
  suspend(*t);
  if (w.abort) throw AbortBlock{};
}

void* dynamic_shared() { return worker().shared; }

// ---------------------------------------------------------------------------- launches
bool register_kernel(const char* name) {
  static const bool hooked = std::atexit(write_launch_log) == 0;
  (void)hooked;
  std::lock_guard<std::mutex> lock(registry().mu);
  registry().kernels.insert(name);
  return true;
}

namespace detail {

std::string run_grid(const LaunchConfig& cfg, const std::function<void()>& body) {
  {
    std::lock_guard<std::mutex> lock(registry().mu);
    ++registry().launches[cfg.kernel];
  }
  const auto start = std::chrono::steady_clock::now();
  const int64_t blocks = int64_t{cfg.grid.x} * cfg.grid.y * cfg.grid.z;
  std::mutex mu;
  std::string first_error;
  std::atomic<bool> failed{false};
  pool().run(blocks, [&](int64_t b) {
    if (failed.load(std::memory_order_relaxed)) return;  // a faulted grid stops early
    const uint3 block{static_cast<unsigned>(b % cfg.grid.x), static_cast<unsigned>(b / cfg.grid.x % cfg.grid.y),
                      static_cast<unsigned>(b / (int64_t{cfg.grid.x} * cfg.grid.y))};
    std::string e = run_block(cfg, body, block);
    tls_thread = nullptr;
    if (e.empty()) return;
    std::lock_guard<std::mutex> lock(mu);
    if (first_error.empty()) first_error = "kernel " + std::string(cfg.kernel) + ", block " + dims(block) + ": " + e;
    failed = true;
  });
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  std::lock_guard<std::mutex> lock(registry().mu);
  registry().seconds[cfg.kernel] += took.count();
  return first_error;
}

}  // namespace detail

void launch_kernel(const LaunchConfig& cfg, std::function<void()> thread_body) {
  if (detail::sticky_error() != cudaSuccess) return;  // cudaGetLastError reports it
  const std::string k = "kernel " + std::string(cfg.kernel) + ": ";
  const uint64_t threads = uint64_t{cfg.block.x} * cfg.block.y * cfg.block.z;
  if (threads == 0 || cfg.grid.x == 0 || cfg.grid.y == 0 || cfg.grid.z == 0) {
    detail::fail(cudaErrorInvalidConfiguration, k + "empty grid " + dims(cfg.grid) + " or block " + dims(cfg.block));
    return;
  }
  if (threads > kMaxThreadsPerBlock || cfg.block.z > kMaxBlockZ) {
    detail::fail(cudaErrorInvalidConfiguration, k + std::to_string(threads) + " threads per block " +
                                                    dims(cfg.block) + ", more than the GPU's 1024");
    return;
  }
  if (cfg.grid.y > kMaxGridYZ || cfg.grid.z > kMaxGridYZ || cfg.grid.x > 2147483647u) {
    detail::fail(cudaErrorInvalidConfiguration, k + "grid " + dims(cfg.grid) + " exceeds (2^31-1, 65535, 65535)");
    return;
  }
  if (cfg.shared_bytes > kMaxSharedPerBlock) {
    detail::fail(cudaErrorInvalidValue, k + std::to_string(cfg.shared_bytes) +
                                            " bytes of dynamic shared memory, more than 48 KB per block");
    return;
  }
  detail::enqueue(cfg.stream, [cfg, body = std::move(thread_body)] {
    const std::string e = detail::run_grid(cfg, body);
    if (!e.empty()) detail::set_sticky(cudaErrorLaunchFailure, e);
  });
}

void set_thread_order(ThreadOrder order) { g_order.store(order == ThreadOrder::Reverse ? 1 : 0); }
ThreadOrder thread_order() { return order_now(); }

std::set<std::string> registered_kernels() {
  std::lock_guard<std::mutex> lock(registry().mu);
  return registry().kernels;
}

std::map<std::string, int64_t> launch_counts() {
  std::lock_guard<std::mutex> lock(registry().mu);
  return registry().launches;
}

}  // namespace cvae::emu
