// CUDA emulation shim: compiles unmodified .cu kernel code with g++ and runs it on the CPU.
//
// Every CUDA thread of a block is a fiber (ucontext) with its own stack, so kernel locals are
// per thread as on a GPU. `__shared__` variables are `static thread_local`: one OS thread runs
// one block at a time, so they are real per-block shared memory. `__syncthreads()` is a real
// barrier: the fiber yields to the block scheduler, which resumes the block's threads only
// when all of them have arrived. Blocks are spread over OS threads with OpenMP, so atomics are
// real atomics. What CUDA leaves undefined is an error here, not a silent pass: threads of one
// block waiting at different __syncthreads calls, or a thread that exits while others wait.
#pragma once

#include <ucontext.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __restrict__ __restrict
#define __shared__ static thread_local
#define __launch_bounds__(...)

struct uint3 {
    unsigned int x, y, z;
};

struct dim3 {
    unsigned int x, y, z;
    dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace emu {

struct Fiber {
    ucontext_t ctx;
    uint3 tid;
    int state;  // 0 runnable, 1 at barrier, 2 finished
    int barrier_line;
    const char *barrier_file;
    int predicate;  // for __syncthreads_count/_or/_and
};

struct BlockState {
    ucontext_t scheduler;
    std::vector<Fiber> fibers;
    std::vector<std::vector<char>> stacks;
    Fiber *current = nullptr;
    const std::function<void()> *body = nullptr;
    uint3 block_idx{0, 0, 0};
    dim3 block_dim, grid_dim;
    int barrier_count = 0;  // predicates set at the last released barrier
};

inline BlockState &block_state() {
    static thread_local BlockState state;
    return state;
}

// First error of a launch; the launch returns non-zero and the host reads the message.
inline std::mutex &error_mutex() {
    static std::mutex m;
    return m;
}
inline std::string &error_message() {
    static std::string msg;
    return msg;
}
inline std::atomic<int> &error_flag() {
    static std::atomic<int> flag{0};
    return flag;
}
inline void report(const std::string &msg) {
    std::lock_guard<std::mutex> lock(error_mutex());
    if (!error_flag().exchange(1)) error_message() = msg;
}

inline int syncthreads(const char *file, int line, int predicate = 0) {
    BlockState &b = block_state();
    b.current->state = 1;
    b.current->barrier_file = file;
    b.current->barrier_line = line;
    b.current->predicate = predicate != 0;
    swapcontext(&b.current->ctx, &b.scheduler);
    return b.barrier_count;
}

inline std::string where(const Fiber &f) {
    return std::string(f.barrier_file) + ":" + std::to_string(f.barrier_line);
}

inline void fiber_entry() {
    BlockState &b = block_state();
    (*b.body)();
    b.current->state = 2;
    // Returning resumes uc_link (the scheduler).
}

constexpr size_t kStackBytes = 64 * 1024;  // kernel frames are small; 256 threads = 16 MB

// Runs one block: every thread as a fiber, barrier phases in lock step. Returns false on error.
inline bool run_block(const std::function<void()> &body, uint3 block_idx, dim3 grid, dim3 block) {
    BlockState &b = block_state();
    const size_t n = size_t(block.x) * block.y * block.z;
    if (b.stacks.size() < n) b.stacks.resize(n);
    b.fibers.assign(n, Fiber{});
    b.body = &body;
    b.block_idx = block_idx;
    b.block_dim = block;
    b.grid_dim = grid;
    for (size_t i = 0; i < n; ++i) {
        Fiber &f = b.fibers[i];
        if (b.stacks[i].size() != kStackBytes) b.stacks[i].resize(kStackBytes);
        f.tid = uint3{unsigned(i % block.x), unsigned((i / block.x) % block.y),
                      unsigned(i / (size_t(block.x) * block.y))};
        f.state = 0;
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = b.stacks[i].data();
        f.ctx.uc_stack.ss_size = kStackBytes;
        f.ctx.uc_link = &b.scheduler;
        makecontext(&f.ctx, fiber_entry, 0);
    }
    for (;;) {
        // One phase: run every runnable thread until it reaches a barrier or finishes.
        for (size_t i = 0; i < n; ++i) {
            if (b.fibers[i].state != 0) continue;
            b.current = &b.fibers[i];
            swapcontext(&b.scheduler, &b.fibers[i].ctx);
        }
        size_t waiting = 0, finished = 0;
        const Fiber *first = nullptr;
        int count = 0;
        const std::string block_name =
            "block (" + std::to_string(block_idx.x) + "," + std::to_string(block_idx.y) + "," +
            std::to_string(block_idx.z) + ")";
        for (size_t i = 0; i < n; ++i) {
            const Fiber &f = b.fibers[i];
            if (f.state == 2) ++finished;
            if (f.state != 1) continue;
            ++waiting;
            count += f.predicate;
            if (first == nullptr) first = &f;
            if (f.barrier_line != first->barrier_line || std::strcmp(f.barrier_file, first->barrier_file)) {
                report(block_name + ": threads wait at different __syncthreads (" + where(*first) +
                       " and " + where(f) + ")");
                return false;
            }
        }
        if (finished == n) return true;
        if (finished > 0 && waiting > 0) {
            report(block_name + ": " + std::to_string(finished) + " threads exited while " +
                   std::to_string(waiting) + " wait at __syncthreads (" + where(*first) + ")");
            return false;
        }
        b.barrier_count = count;
        for (auto &f : b.fibers)
            if (f.state == 1) f.state = 0;  // barrier released
    }
}

// Launches `body` (the kernel call with its arguments bound) over the grid. 0 = success.
inline int launch(const std::function<void()> &body, dim3 grid, dim3 block) {
    error_flag() = 0;
    error_message().clear();
    const long blocks = long(grid.x) * grid.y * grid.z;
    if (long(block.x) * block.y * block.z > 1024 || blocks <= 0) {
        report("invalid launch configuration");
        return 1;
    }
#pragma omp parallel for schedule(dynamic)
    for (long k = 0; k < blocks; ++k) {
        if (error_flag()) continue;
        uint3 bi{unsigned(k % grid.x), unsigned((k / grid.x) % grid.y),
                 unsigned(k / (long(grid.x) * grid.y))};
        run_block(body, bi, grid, block);
    }
    return error_flag() ? 1 : 0;
}

}  // namespace emu

#define threadIdx (::emu::block_state().current->tid)
#define blockIdx (::emu::block_state().block_idx)
#define blockDim (::emu::block_state().block_dim)
#define gridDim (::emu::block_state().grid_dim)
#define __syncthreads() ((void)::emu::syncthreads(__FILE__, __LINE__))
#define __syncthreads_count(p) ::emu::syncthreads(__FILE__, __LINE__, (p))
#define __syncthreads_or(p) (::emu::syncthreads(__FILE__, __LINE__, (p)) > 0)
#define __syncthreads_and(p) \
    (::emu::syncthreads(__FILE__, __LINE__, (p)) == int(blockDim.x * blockDim.y * blockDim.z))

// Launches `kernel` over the grid with its arguments, like kernel<<<grid, block>>>(args...).
// Barrier misuse is undefined on a GPU; here it ends the process with a message that names
// the block and the __syncthreads call sites, so a test sees it instead of a silent pass.
template <typename Kernel, typename... Args>
inline void emu_launch(Kernel kernel, dim3 grid, dim3 block, Args... args) {
    const std::function<void()> body = [&]() { kernel(args...); };
    if (::emu::launch(body, grid, block) != 0) {
        std::fprintf(stderr, "cuda emulation: barrier misuse: %s\n", ::emu::error_message().c_str());
        std::fflush(stderr);
        std::abort();
    }
}

// Atomics: real atomics, since blocks run on several OS threads at once.
template <typename T>
inline T atomicAdd(T *address, T val) {
    return __atomic_fetch_add(address, val, __ATOMIC_RELAXED);
}
inline float atomicAdd(float *address, float val) {
    float old, desired;
    __atomic_load(address, &old, __ATOMIC_RELAXED);
    do {
        desired = old + val;  // on failure `old` is reloaded with the current value
    } while (!__atomic_compare_exchange(address, &old, &desired, true, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED));
    return old;
}
template <typename T>
inline T atomicSub(T *address, T val) {
    return __atomic_fetch_sub(address, val, __ATOMIC_RELAXED);
}
template <typename T>
inline T atomicExch(T *address, T val) {
    return __atomic_exchange_n(address, val, __ATOMIC_RELAXED);
}
template <typename T>
inline T atomicCAS(T *address, T compare, T val) {
    __atomic_compare_exchange_n(address, &compare, val, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return compare;
}
template <typename T>
inline T atomicMax(T *address, T val) {
    T old = *address;
    while (old < val && !__atomic_compare_exchange_n(address, &old, val, true, __ATOMIC_RELAXED,
                                                     __ATOMIC_RELAXED)) {
    }
    return old;
}
template <typename T>
inline T atomicMin(T *address, T val) {
    T old = *address;
    while (old > val && !__atomic_compare_exchange_n(address, &old, val, true, __ATOMIC_RELAXED,
                                                     __ATOMIC_RELAXED)) {
    }
    return old;
}

// Device intrinsics with their host equivalents.
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __saturatef(float x) { return fminf(fmaxf(x, 0.0f), 1.0f); }
inline int __float2int_rn(float x) { return int(nearbyintf(x)); }
inline int __float2int_rd(float x) { return int(floorf(x)); }
inline int __float2int_ru(float x) { return int(ceilf(x)); }
inline int __float_as_int(float x) { int i; std::memcpy(&i, &x, 4); return i; }
inline unsigned int __float_as_uint(float x) { unsigned int i; std::memcpy(&i, &x, 4); return i; }
inline float __int_as_float(int i) { float x; std::memcpy(&x, &i, 4); return x; }
inline int min(int a, int b) { return std::min(a, b); }
inline int max(int a, int b) { return std::max(a, b); }
inline unsigned int min(unsigned int a, unsigned int b) { return std::min(a, b); }
inline unsigned int max(unsigned int a, unsigned int b) { return std::max(a, b); }
inline long long min(long long a, long long b) { return std::min(a, b); }
inline long long max(long long a, long long b) { return std::max(a, b); }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
