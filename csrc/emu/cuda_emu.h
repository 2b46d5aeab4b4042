// cuda_emu.h: runs CUDA kernels on the CPU, compiled from their unchanged source by a host C++ compiler
// (g++ or clang++, Linux), so that a machine without a GPU executes them (docs/renderer-emulator.md).
//
// A launch runs its blocks one after the other; a block runs one fiber per GPU thread, switched
// cooperatively on one OS thread. A thread runs until it reaches a barrier or a warp collective, or
// ends. Interleaved warps (the default): once every thread has stopped, the scheduler completes what
// can be completed (a barrier that every thread of the block reached, a warp collective that every
// lane of its mask reached) and runs the threads again, in the launch's order: forward, reversed, or
// shuffled anew for every round. Greedy warps: one warp at a time runs as far as it can (its own
// collectives completed at once) before the next, as when some warps are much faster than others.
// Different orders give different interleavings between barriers, which exposes races and missing
// barriers; __shared__ variables are filled with NaN (all bits set) at every block's start, which
// exposes reads of values no thread wrote. A memory fault or an integer division by zero in a kernel (e.g.
// an index or a divisor computed from such a value) ends the launch with an error naming the kernel, block
// and thread; as a GPU's context after "an illegal memory access was encountered", the emulator then
// refuses every later launch of the process (memory may have been overwritten before the fault). (A GPU
// does not stop at a division by zero; its meaningless result would show as wrong values.)
//
// What a GPU would punish is refused with cuda_emu::Error: a __syncthreads not reached by every
// thread of the block (or reached at different calls), a warp collective not reached by every lane
// of its mask (or called by a lane outside its mask, or with another mask or operation), a launch
// over the hardware's grid, block or shared-memory limits.
//
// Provided: __global__/__device__/__host__/__forceinline__/__launch_bounds__/__shared__ (static in
// the kernel function itself), threadIdx/blockIdx/blockDim/gridDim, warpSize, __syncthreads (and
// _count/_and/_or), __syncwarp, __ballot_sync, __any_sync, __all_sync, __shfl_sync, __shfl_up_sync,
// __shfl_down_sync, __shfl_xor_sync, atomicAdd, __popc, __ffs, __ldg, __stwb, int4/float4, max/min, and the float
// intrinsics __expf (modelled as the GPU computes it: exp2 of a rounded product, flushed to zero
// below the smallest normal float), __fadd_rn/__fsub_rn/__fmul_rn and their double versions (never
// contracted into a fused multiply-add), __fdividef. Not provided: dynamic (extern) shared memory,
// __activemask, cooperative groups, streams (launches run at once, in order).
//
// Counters (cuda_emu::counters()) count what a kernel does, to compare kernels by counted
// operations: warp shuffles and votes (per warp instruction), barriers (per block), atomics and
// __expf calls (per thread), and the bytes each thread reads from global memory through __ldg and writes
// through __stwb (the kernels access global memory through these two, so that their traffic is counted).
#pragma once

#if defined(__CUDACC__)
#error "cuda_emu.h emulates CUDA on the CPU: compile this file with a host C++ compiler, not nvcc"
#endif

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#if !defined(__x86_64__) || defined(CUDA_EMU_UCONTEXT)
#include <ucontext.h>
#define CUDA_EMU_USE_UCONTEXT 1
#endif

#define CUDA_EMU 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned x, y, z;
};
struct alignas(16) int4 {
  int x, y, z, w;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
using cudaStream_t = struct CUstream_st*;
constexpr int warpSize = 32;

namespace cuda_emu {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Order : int { forward = 0, reversed = 1, shuffled = 2 };

// The order in which a launch runs its blocks, and each block its threads.
struct Schedule {
  Order blocks = Order::forward;
  Order threads = Order::forward;
  uint64_t seed = 0;
  bool greedy_warps = false;  // one warp runs as far as it can before the next (else all threads in rounds)
};

// What the kernels did since the last reset (see the file's comment).
struct Counters {
  int64_t launches = 0, blocks = 0, threads = 0, barriers = 0, warp_shuffles = 0, warp_votes = 0, atomics = 0,
          expf = 0, global_load_bytes = 0, global_store_bytes = 0;
};

// Hardware limits of every GPU from compute capability 7.0 to 9.0.
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxBlockDim[3] = {1024, 1024, 64};
constexpr unsigned kMaxGridDim[3] = {0x7fffffffu, 65535, 65535};
constexpr size_t kMaxSharedPerBlock = 48 * 1024;  // static shared memory, and dynamic without opting in

namespace detail {

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
inline std::string format(const char* fmt, ...) {
  char buffer[1024];
  va_list args;
  va_start(args, fmt);
  vsnprintf(buffer, sizeof(buffer), fmt, args);
  va_end(args);
  return buffer;
}

inline const char* base_name(const char* path) {
  const char* slash = std::strrchr(path, '/');
  return slash != nullptr ? slash + 1 : path;
}

// ------------------------------------------------------------------------------------------------ fibers

#if defined(CUDA_EMU_USE_UCONTEXT)
struct Context {
  ucontext_t uc;
};
#else
// Saves the callee-saved registers on the current stack, stores its pointer in *from and continues on the
// stack `to`. The floating-point control registers are not switched: no kernel changes them.
extern "C" void cuda_emu_switch(void** from, void* to);
extern "C" void cuda_emu_start();
asm(R"(
    .text
    .p2align 4
    .weak cuda_emu_switch
    .hidden cuda_emu_switch
    .type cuda_emu_switch,@function
cuda_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size cuda_emu_switch, .-cuda_emu_switch
    .p2align 4
    .weak cuda_emu_start
    .hidden cuda_emu_start
    .type cuda_emu_start,@function
cuda_emu_start:
    movq %r13, %rdi
    callq *%r12
    ud2
    .size cuda_emu_start, .-cuda_emu_start
)");
struct Context {
  void* sp = nullptr;
};
#endif

// Fibers on stacks of their own, with an inaccessible guard region below each; started and resumed by one scheduler.
class Fibers {
 public:
  using Entry = void (*)(void* arg, int index);

  ~Fibers() { release(); }

  // Prepares fibers 0..count-1: the first resume of fiber i calls entry(arg, i).
  void start(int count, Entry entry, void* arg) {
    reserve(count);
    entry_ = entry;
    arg_ = arg;
    for (int i = 0; i < count; ++i) prepare(i);
  }

  // From the scheduler: runs fiber i until it yields or finishes.
  void resume(int i) {
    running_ = i;
#if defined(CUDA_EMU_USE_UCONTEXT)
    swapcontext(&scheduler_.uc, &fibers_[i].uc);
#else
    cuda_emu_switch(&scheduler_.sp, fibers_[i].sp);
#endif
    running_ = -1;
  }

  // From the running fiber: back to the scheduler; returns when the scheduler resumes this fiber.
  void yield() {
    const int i = running_;
#if defined(CUDA_EMU_USE_UCONTEXT)
    swapcontext(&fibers_[i].uc, &scheduler_.uc);
#else
    cuda_emu_switch(&fibers_[i].sp, scheduler_.sp);
#endif
  }

  int running() const { return running_; }

  // Whether `address`, where fiber i faulted, lies below its stack (in the guard region, or beyond it: a frame
  // larger than the guard region skips it).
  bool overflowed(int i, const void* address) const {
    const char* a = static_cast<const char*>(address);
    const char* bottom = stack_bottom(i);
    return a < bottom && a >= bottom - kGuard - kStack;
  }

 private:
  static constexpr size_t kStack = 256 * 1024;
  static constexpr size_t kGuard = 64 * 1024;  // inaccessible, below each stack

  void reserve(int count) {
    if (count <= capacity_) return;
    release();
    const size_t slot = kStack + kGuard;
    void* memory = mmap(nullptr, slot * count, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                        -1, 0);
    if (memory == MAP_FAILED) throw Error("cuda_emu: cannot map memory for the threads' stacks");
    memory_ = static_cast<char*>(memory);
    for (int i = 0; i < count; ++i) mprotect(memory_ + i * slot, kGuard, PROT_NONE);  // overflow faults
    capacity_ = count;
    fibers_.resize(count);
  }

  void release() {
    if (memory_ != nullptr) munmap(memory_, (kStack + kGuard) * capacity_);
    memory_ = nullptr;
    capacity_ = 0;
  }

  char* stack_bottom(int i) const { return memory_ + i * (kStack + kGuard) + kGuard; }

#if defined(CUDA_EMU_USE_UCONTEXT)
  static void trampoline(unsigned high, unsigned low, int index) {
    auto* self = reinterpret_cast<Fibers*>((static_cast<uintptr_t>(high) << 32) | low);
    self->entry_(self->arg_, index);
    __builtin_trap();  // entry never returns
  }
  void prepare(int i) {
    Context& c = fibers_[i];
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = stack_bottom(i);
    c.uc.uc_stack.ss_size = kStack;
    c.uc.uc_link = nullptr;
    const auto self = reinterpret_cast<uintptr_t>(this);
    makecontext(&c.uc, reinterpret_cast<void (*)()>(&trampoline), 3, static_cast<unsigned>(self >> 32),
                static_cast<unsigned>(self & 0xffffffffu), i);
  }
#else
  struct Start {
    Fibers* self;
    int index;
  };
  static void trampoline(Start* start) {
    start->self->entry_(start->self->arg_, start->index);
    __builtin_trap();  // entry never returns
  }
  void prepare(int i) {
    starts_.resize(capacity_);
    starts_[i] = Start{this, i};
    // The frame cuda_emu_switch pops: r15, r14, r13 (argument), r12 (function), rbx, rbp, return address;
    // cuda_emu_start then calls the function on a 16-byte aligned stack.
    const uintptr_t top = reinterpret_cast<uintptr_t>(stack_bottom(i) + kStack) & ~uintptr_t{15};
    auto* frame = reinterpret_cast<uint64_t*>(top - 72);
    frame[0] = frame[1] = 0;
    frame[2] = reinterpret_cast<uint64_t>(&starts_[i]);
    frame[3] = reinterpret_cast<uint64_t>(&trampoline);
    frame[4] = frame[5] = 0;
    frame[6] = reinterpret_cast<uint64_t>(&cuda_emu_start);
    fibers_[i].sp = frame;
  }
  std::vector<Start> starts_;
#endif

  char* memory_ = nullptr;
  int capacity_ = 0;
  std::vector<Context> fibers_;
  Context scheduler_;
  Entry entry_ = nullptr;
  void* arg_ = nullptr;
  int running_ = -1;
};

// ---------------------------------------------------------------------- __shared__ variables of a kernel

struct SharedVariable {
  void* address;
  size_t size;
};

// The static locals of the kernel function (its __shared__ variables), from the symbol table of the library
// that holds it: the Itanium C++ ABI names a static local of function _Z<encoding> _ZZ<encoding>E<name>.
class SharedLookup {
 public:
  static const std::vector<SharedVariable>& of(const void* kernel, const char* name) {
    static std::mutex mutex;
    static std::map<const void*, std::vector<SharedVariable>> found;
    std::lock_guard<std::mutex> lock(mutex);
    auto it = found.find(kernel);
    if (it == found.end()) it = found.emplace(kernel, read(kernel, name)).first;
    return it->second;
  }

 private:
  static std::vector<SharedVariable> read(const void* kernel, const char* name) {
    Dl_info info{};
    link_map* map = nullptr;
    if (dladdr1(kernel, &info, reinterpret_cast<void**>(&map), RTLD_DL_LINKMAP) == 0 || info.dli_fname == nullptr ||
        map == nullptr) {
      throw Error(format("cuda_emu: cannot find the library that holds kernel %s", name));
    }
    std::ifstream file(info.dli_fname, std::ios::binary);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    const auto fail = [&](const char* why) {
      return Error(format("cuda_emu: cannot find the __shared__ variables of kernel %s in %s: %s", name,
                          info.dli_fname, why));
    };
    if (bytes.size() < sizeof(Elf64_Ehdr) || std::memcmp(bytes.data(), ELFMAG, SELFMAG) != 0 ||
        bytes[EI_CLASS] != ELFCLASS64) {
      throw fail("not a 64-bit ELF file");
    }
    const auto* header = reinterpret_cast<const Elf64_Ehdr*>(bytes.data());
    const auto* sections = reinterpret_cast<const Elf64_Shdr*>(bytes.data() + header->e_shoff);
    const Elf64_Shdr* symtab = nullptr;
    for (int i = 0; i < header->e_shnum; ++i) {
      if (sections[i].sh_type == SHT_SYMTAB) symtab = &sections[i];
    }
    if (symtab == nullptr) throw fail("it has no symbol table (do not strip it)");
    const auto* symbols = reinterpret_cast<const Elf64_Sym*>(bytes.data() + symtab->sh_offset);
    const size_t count = symtab->sh_size / sizeof(Elf64_Sym);
    const char* strings = bytes.data() + sections[symtab->sh_link].sh_offset;
    const uintptr_t offset = reinterpret_cast<uintptr_t>(kernel) - map->l_addr;
    std::string function;
    for (size_t i = 0; i < count && function.empty(); ++i) {
      const std::string symbol = strings + symbols[i].st_name;
      if (ELF64_ST_TYPE(symbols[i].st_info) == STT_FUNC && symbols[i].st_value == offset &&
          symbol.compare(0, 2, "_Z") == 0) {
        function = symbol;
      }
    }
    if (function.empty()) throw fail("no C++ function symbol at the kernel's address");
    const std::string prefix = "_ZZ" + function.substr(2) + "E";
    std::vector<SharedVariable> variables;
    for (size_t i = 0; i < count; ++i) {
      const char* symbol = strings + symbols[i].st_name;
      if (ELF64_ST_TYPE(symbols[i].st_info) == STT_OBJECT && std::strncmp(symbol, prefix.c_str(), prefix.size()) == 0) {
        variables.push_back({reinterpret_cast<void*>(map->l_addr + symbols[i].st_value), symbols[i].st_size});
      }
    }
    return variables;
  }
};

// ------------------------------------------------------------------------------------- one block's state

enum class Wait : uint8_t { none, barrier, warp, done };
enum class Op : uint8_t { ballot, any, all, shfl, shfl_up, shfl_down, shfl_xor, syncwarp };

inline const char* op_name(Op op) {
  switch (op) {
    case Op::ballot: return "__ballot_sync";
    case Op::any: return "__any_sync";
    case Op::all: return "__all_sync";
    case Op::shfl: return "__shfl_sync";
    case Op::shfl_up: return "__shfl_up_sync";
    case Op::shfl_down: return "__shfl_down_sync";
    case Op::shfl_xor: return "__shfl_xor_sync";
    case Op::syncwarp: return "__syncwarp";
  }
  return "?";
}

struct Thread {
  uint3 idx;
  Wait wait;
  Op op;            // the warp collective it waits at
  unsigned mask;    // its mask
  int arg, width;   // source lane, delta or lane mask; segment width (shuffles)
  uint64_t value;   // its value (bits) or predicate
  uint64_t result;  // the collective's result for this thread
  const char* file;
  int line;  // where it waits
};

struct LaunchInfo {
  const char* kernel;
  dim3 grid, block;
  void (*body)(void*);  // runs the kernel in the current thread
  void* context;
};

struct State {
  std::mutex launch_mutex;  // one launch at a time: __shared__ variables are static
  Schedule schedule;
  Counters counters;
  Fibers fibers;
  const LaunchInfo* launch = nullptr;
  uint3 block_idx{0, 0, 0};
  int threads = 0;
  std::vector<Thread> thread;
  std::string error;  // set by a thread that broke a rule; the scheduler throws it
  char fault[512] = {0};  // set by a memory fault in a kernel: every later launch is refused with it
  sigjmp_buf fault_exit;  // where the fault handler leaves the faulting thread for
  uint64_t rounds = 0;
};

inline State& state() {
  static State* s = new State;  // on the heap, away from the kernels' statics (their __shared__ variables)
  return *s;
}

inline int current_index() {
  const int i = state().fibers.running();
  if (i < 0 || state().launch == nullptr) {
    throw Error("cuda_emu: a device function was called outside a kernel launch");
  }
  return i;
}

inline Thread& current() { return state().thread[current_index()]; }

inline std::string where() {
  State& s = state();
  const int t = s.fibers.running();
  return format("kernel %s, block (%u, %u, %u), thread %d (warp %d, lane %d)", s.launch->kernel, s.block_idx.x,
                s.block_idx.y, s.block_idx.z, t, t / 32, t % 32);
}

// Called by a running thread that broke a rule: the scheduler throws the message; this thread never resumes.
[[noreturn]] inline void refuse(const std::string& message) {
  State& s = state();
  s.error = message;
  s.thread[s.fibers.running()].wait = Wait::done;
  s.fibers.yield();
  __builtin_trap();
}

template <typename T>
uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= sizeof(uint64_t) && std::is_trivially_copyable<T>::value,
                "cuda_emu: warp collectives move values of at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  return bits;
}

template <typename T>
T from_bits(uint64_t bits) {
  T v;
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

inline uint64_t warp_collective(Op op, unsigned mask, uint64_t value, int arg, int width, const char* file, int line) {
  State& s = state();
  const int t = current_index();
  const int lane = t % 32, warp = t / 32;
  const int lanes = std::min(32, s.threads - warp * 32);
  if (((mask >> lane) & 1u) == 0) {
    refuse(format("cuda_emu: %s at %s:%d called with mask 0x%08x, which does not include the calling lane (%s)",
                  op_name(op), base_name(file), line, mask, where().c_str()));
  }
  if (lanes < 32 && (mask >> lanes) != 0) {
    refuse(format("cuda_emu: %s at %s:%d called with mask 0x%08x, which names lanes that do not exist: the warp "
                  "has %d threads (%s)",
                  op_name(op), base_name(file), line, mask, lanes, where().c_str()));
  }
  if (width < 1 || width > 32 || (width & (width - 1)) != 0) {
    refuse(format("cuda_emu: %s at %s:%d called with width %d; it must be a power of two from 1 to 32 (%s)",
                  op_name(op), base_name(file), line, width, where().c_str()));
  }
  Thread& me = s.thread[t];
  me.wait = Wait::warp;
  me.op = op;
  me.mask = mask;
  me.value = value;
  me.arg = arg;
  me.width = width;
  me.file = file;
  me.line = line;
  s.fibers.yield();
  return me.result;
}

// Completes every collective of warps [first, last) whose lanes have all arrived; true if it completed any.
inline bool complete_warp_collectives(int first = 0, int last = 1 << 30) {
  State& s = state();
  bool completed = false;
  for (int base = 32 * first; base < s.threads && base < 32 * static_cast<int64_t>(last); base += 32) {
    Thread* lanes = &s.thread[base];
    const int count = std::min(32, s.threads - base);
    for (int l = 0; l < count; ++l) {
      if (lanes[l].wait != Wait::warp) continue;
      const Op op = lanes[l].op;
      const unsigned mask = lanes[l].mask;
      bool ready = true;
      for (int m = 0; m < count && ready; ++m) {
        if ((mask >> m) & 1u) ready = lanes[m].wait == Wait::warp && lanes[m].op == op && lanes[m].mask == mask;
      }
      if (!ready) continue;
      unsigned ballot = 0;
      for (int m = 0; m < count; ++m) {
        if (((mask >> m) & 1u) && lanes[m].value != 0) ballot |= 1u << m;
      }
      for (int m = 0; m < count; ++m) {
        if (((mask >> m) & 1u) == 0) continue;
        Thread& me = lanes[m];
        const int width = me.width, segment = m & ~(width - 1), in_segment = m - segment;
        int source = m;
        switch (op) {
          case Op::ballot: me.result = ballot; break;
          case Op::any: me.result = ballot != 0; break;
          case Op::all: me.result = ballot == mask; break;
          case Op::syncwarp: me.result = 0; break;
          case Op::shfl: source = segment + (me.arg & (width - 1)); break;
          case Op::shfl_up: source = in_segment >= me.arg ? m - me.arg : m; break;
          case Op::shfl_down: source = in_segment + me.arg < width ? m + me.arg : m; break;
          case Op::shfl_xor: {
            const int other = m ^ me.arg;
            source = other >= segment && other < segment + width ? other : m;
            break;
          }
        }
        if (op == Op::shfl || op == Op::shfl_up || op == Op::shfl_down || op == Op::shfl_xor) {
          // A lane outside the mask did not take part: its value is undefined, here all bits set (NaN).
          const bool defined = source < count && ((mask >> source) & 1u) != 0;
          me.result = defined ? lanes[source].value : ~uint64_t{0};
        }
      }
      for (int m = 0; m < count; ++m) {
        if ((mask >> m) & 1u) lanes[m].wait = Wait::none;
      }
      if (op == Op::ballot || op == Op::any || op == Op::all) {
        ++s.counters.warp_votes;
      } else if (op != Op::syncwarp) {
        ++s.counters.warp_shuffles;
      }
      completed = true;
    }
  }
  return completed;
}

// Releases the block's barrier when every thread waits at it, at the same call.
inline bool complete_barrier() {
  State& s = state();
  for (int t = 0; t < s.threads; ++t) {
    if (s.thread[t].wait != Wait::barrier) return false;
  }
  const Thread& first = s.thread[0];
  for (int t = 1; t < s.threads; ++t) {
    const Thread& other = s.thread[t];
    if (other.line != first.line || std::strcmp(other.file, first.file) != 0) {
      throw Error(format("cuda_emu: threads of kernel %s, block (%u, %u, %u) wait at different __syncthreads: "
                         "thread 0 at %s:%d, thread %d at %s:%d (a barrier in divergent code)",
                         s.launch->kernel, s.block_idx.x, s.block_idx.y, s.block_idx.z, base_name(first.file),
                         first.line, t, base_name(other.file), other.line));
    }
  }
  int count = 0;
  for (int t = 0; t < s.threads; ++t) count += s.thread[t].value != 0;
  for (int t = 0; t < s.threads; ++t) {
    Thread& th = s.thread[t];
    const int op = th.arg;  // 0: plain, 1: count, 2: and, 3: or
    th.result = op == 1 ? count : op == 2 ? count == s.threads : op == 3 ? count != 0 : 0;
    th.wait = Wait::none;
  }
  ++s.counters.barriers;
  return true;
}

inline std::string describe_threads(const std::vector<int>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    size_t j = i;
    while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) ++j;
    if (!out.empty()) out += ", ";
    out += j == i ? std::to_string(ids[i]) : std::to_string(ids[i]) + "-" + std::to_string(ids[j]);
    i = j;
  }
  return out;
}

// Why no thread of the block can go on.
inline std::string describe_deadlock() {
  State& s = state();
  const std::string block = format("kernel %s, block (%u, %u, %u)", s.launch->kernel, s.block_idx.x, s.block_idx.y,
                                   s.block_idx.z);
  // A warp collective some lane of its mask cannot reach.
  for (int t = 0; t < s.threads; ++t) {
    const Thread& me = s.thread[t];
    if (me.wait != Wait::warp) continue;
    const int base = t - t % 32;
    for (int m = 0; m < 32 && base + m < s.threads; ++m) {
      if (((me.mask >> m) & 1u) == 0) continue;
      const Thread& other = s.thread[base + m];
      std::string why;
      if (other.wait == Wait::done) {
        why = "has exited";
      } else if (other.wait == Wait::barrier) {
        why = format("waits at __syncthreads at %s:%d", base_name(other.file), other.line);
      } else if (other.op != me.op || other.mask != me.mask) {
        why = format("waits at %s at %s:%d with mask 0x%08x", op_name(other.op), base_name(other.file), other.line,
                     other.mask);
      } else {
        continue;
      }
      return format("cuda_emu: a warp collective not reached by every lane of its mask (%s): lane %d of warp %d "
                    "waits at %s at %s:%d with mask 0x%08x, but lane %d %s",
                    block.c_str(), t % 32, t / 32, op_name(me.op), base_name(me.file), me.line, me.mask, m,
                    why.c_str());
    }
  }
  std::vector<int> waiting, exited;
  const Thread* at = nullptr;
  for (int t = 0; t < s.threads; ++t) {
    if (s.thread[t].wait == Wait::barrier) {
      waiting.push_back(t);
      at = &s.thread[t];
    } else if (s.thread[t].wait == Wait::done) {
      exited.push_back(t);
    }
  }
  if (at != nullptr) {
    return format("cuda_emu: a __syncthreads not reached by every thread of the block (%s): threads %s wait at "
                  "%s:%d; threads %s have exited",
                  block.c_str(), describe_threads(waiting).c_str(), base_name(at->file), at->line,
                  describe_threads(exited).c_str());
  }
  return format("cuda_emu: the threads of %s cannot go on", block.c_str());
}

inline void thread_entry(void*, int index) {
  State& s = state();
  try {
    s.launch->body(s.launch->context);
  } catch (const std::exception& e) {  // an exception must not unwind past the fiber's first frame
    refuse(format("cuda_emu: %s (%s)", e.what(), where().c_str()));
  }
  s.thread[index].wait = Wait::done;
  s.fibers.yield();
  __builtin_trap();  // a finished thread is never resumed
}

inline void order(std::vector<int>& ids, Order how, std::mt19937_64& rng) {
  std::iota(ids.begin(), ids.end(), 0);
  if (how == Order::reversed) std::reverse(ids.begin(), ids.end());
  if (how == Order::shuffled) std::shuffle(ids.begin(), ids.end(), rng);
}

// Runs thread t until it stops; counts it when it has finished. Throws what it refused.
inline void step(int t, int& finished) {
  State& s = state();
  s.fibers.resume(t);
  if (!s.error.empty()) throw Error(s.error);
  finished += s.thread[t].wait == Wait::done;
}

inline void run_block(const std::vector<SharedVariable>& shared, std::mt19937_64& rng) {
  State& s = state();
  for (const SharedVariable& v : shared) std::memset(v.address, 0xff, v.size);  // NaN, -1
  const dim3 dim = s.launch->block;
  for (int t = 0; t < s.threads; ++t) {
    Thread& th = s.thread[t];
    th = Thread{};
    th.idx = uint3{t % dim.x, (t / dim.x) % dim.y, t / (dim.x * dim.y)};
    th.wait = Wait::none;
  }
  s.fibers.start(s.threads, &thread_entry, nullptr);
  std::vector<int> ids(s.threads);
  int finished = 0;
  while (finished < s.threads) {
    order(ids, s.schedule.threads, rng);
    bool ran = false;
    if (s.schedule.greedy_warps) {
      // Warps in the order their first thread comes in `ids`; each runs until none of its lanes can go on.
      std::vector<std::vector<int>> lanes((s.threads + 31) / 32);
      std::vector<int> warps;
      for (int t : ids) {
        if (lanes[t / 32].empty()) warps.push_back(t / 32);
        lanes[t / 32].push_back(t);
      }
      for (int w : warps) {
        for (bool progress = true; progress;) {
          progress = false;
          for (int t : lanes[w]) {
            if (s.thread[t].wait != Wait::none) continue;
            step(t, finished);
            progress = ran = true;
          }
          progress |= complete_warp_collectives(w, w + 1);
        }
      }
    } else {
      for (int t : ids) {
        if (s.thread[t].wait != Wait::none) continue;
        step(t, finished);
        ran = true;
      }
    }
    ++s.rounds;
    if (finished == s.threads) break;
    const bool completed = complete_warp_collectives() || complete_barrier();
    if (!ran && !completed) throw Error(describe_deadlock());
  }
}

// While a launch runs: a memory fault (or an integer division by zero) in a kernel's thread is recorded with
// the kernel, block and thread, and the handler jumps back to the launch (run_launch), which raises it. A fault
// elsewhere is handled as before the launch. The handler runs on a stack of its own: the fiber's may be full.
class FaultReport {
 public:
  FaultReport() {
    static thread_local std::vector<char> stack(64 * 1024);
    stack_t alternate{};
    alternate.ss_sp = stack.data();
    alternate.ss_size = stack.size();
    sigaltstack(&alternate, &old_stack_);
    struct sigaction action {};
    action.sa_sigaction = &FaultReport::report;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    for (int i = 0; i < kSignals; ++i) sigaction(kSignal[i], &action, &old(i));
  }
  ~FaultReport() {
    for (int i = 0; i < kSignals; ++i) sigaction(kSignal[i], &old(i), nullptr);
    sigaltstack(&old_stack_, nullptr);
  }

 private:
  static constexpr int kSignals = 3;
  static constexpr int kSignal[kSignals] = {SIGSEGV, SIGBUS, SIGFPE};
  static struct sigaction& old(int i) {
    static struct sigaction a[kSignals];
    return a[i];
  }
  static void report(int signal, siginfo_t* info, void*) {
    State& s = state();
    const int t = s.fibers.running();
    if (s.launch == nullptr || t < 0) {
      for (int i = 0; i < kSignals; ++i) {
        if (kSignal[i] == signal) sigaction(signal, &old(i), nullptr);  // the fault repeats, as before
      }
      return;
    }
    char thread[256];  // no allocation here: the heap may be what was damaged
    snprintf(thread, sizeof(thread), "in kernel %s, block (%u, %u, %u), thread %d (warp %d, lane %d)",
             s.launch->kernel, s.block_idx.x, s.block_idx.y, s.block_idx.z, t, t / 32, t % 32);
    if (signal == SIGFPE) {
      // A GPU does not stop at an integer division by zero: it computes a meaningless value.
      snprintf(s.fault, sizeof(s.fault),
               "cuda_emu: an integer division by zero (at %p) %s, where a GPU computes a meaningless value without "
               "an error; the launch is abandoned and, as after a fault, no further launch can run in this process",
               info->si_addr, thread);
    } else {
      snprintf(s.fault, sizeof(s.fault),
               "cuda_emu: an illegal memory access (%s at address %p) %s: %s; as on a GPU, no further launch can run "
               "in this process",
               signal == SIGSEGV ? "segmentation fault" : "bus error", info->si_addr, thread,
               s.fibers.overflowed(t, info->si_addr) ? "the thread's stack overflowed"
                                                     : "an access outside the memory the kernel was given");
    }
    siglongjmp(s.fault_exit, 1);  // restores the signal mask; the thread's fiber is abandoned
  }
  stack_t old_stack_{};
};

inline void check_launch(const char* kernel, dim3 grid, dim3 block, size_t static_shared, size_t dynamic_shared) {
  const unsigned g[3] = {grid.x, grid.y, grid.z}, b[3] = {block.x, block.y, block.z};
  const char* axis = "xyz";
  for (int i = 0; i < 3; ++i) {
    if (g[i] == 0 || g[i] > kMaxGridDim[i]) {
      throw Error(format("cuda_emu: launch of %s: grid dimension %c = %u is outside [1, %u]", kernel, axis[i], g[i],
                         kMaxGridDim[i]));
    }
    if (b[i] == 0 || b[i] > kMaxBlockDim[i]) {
      throw Error(format("cuda_emu: launch of %s: block dimension %c = %u is outside [1, %u]", kernel, axis[i],
                         b[i], kMaxBlockDim[i]));
    }
  }
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  if (threads > kMaxThreadsPerBlock) {
    throw Error(format("cuda_emu: launch of %s: %llu threads per block, more than %u", kernel,
                       static_cast<unsigned long long>(threads), kMaxThreadsPerBlock));
  }
  if (static_shared + dynamic_shared > kMaxSharedPerBlock) {
    throw Error(format("cuda_emu: launch of %s: %zu bytes of shared memory per block (%zu static, %zu dynamic), "
                       "more than %zu",
                       kernel, static_shared + dynamic_shared, static_shared, dynamic_shared, kMaxSharedPerBlock));
  }
}

inline void run_launch(const LaunchInfo& launch, const void* kernel, size_t dynamic_shared) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.launch_mutex);
  if (s.fault[0] != 0) throw Error(s.fault);
  if (dynamic_shared != 0) throw Error(format("cuda_emu: launch of %s: dynamic shared memory is not emulated", launch.kernel));
  const std::vector<SharedVariable>& shared = SharedLookup::of(kernel, launch.kernel);
  size_t static_shared = 0;
  for (const SharedVariable& v : shared) static_shared += v.size;
  check_launch(launch.kernel, launch.grid, launch.block, static_shared, dynamic_shared);
  const dim3 g = launch.grid;
  const uint64_t blocks = uint64_t{g.x} * g.y * g.z;
  std::mt19937_64 rng(s.schedule.seed * 0x9E3779B97F4A7C15ull + s.counters.launches);
  std::vector<uint64_t> ids;
  if (s.schedule.blocks == Order::shuffled) {
    ids.resize(blocks);
    std::iota(ids.begin(), ids.end(), uint64_t{0});
    std::shuffle(ids.begin(), ids.end(), rng);
  }
  const FaultReport fault_report;
  s.launch = &launch;
  s.threads = static_cast<int>(launch.block.x * launch.block.y * launch.block.z);
  s.thread.assign(s.threads, Thread{});
  s.error.clear();
  ++s.counters.launches;
  if (sigsetjmp(s.fault_exit, 1) != 0) {  // back from a memory fault in a kernel
    s.launch = nullptr;
    throw Error(s.fault);
  }
  try {
    for (uint64_t i = 0; i < blocks; ++i) {
      const uint64_t id = s.schedule.blocks == Order::forward    ? i
                          : s.schedule.blocks == Order::reversed ? blocks - 1 - i
                                                                 : ids[i];
      s.block_idx = uint3{static_cast<unsigned>(id % g.x), static_cast<unsigned>((id / g.x) % g.y),
                          static_cast<unsigned>(id / (uint64_t{g.x} * g.y))};
      run_block(shared, rng);
      ++s.counters.blocks;
      s.counters.threads += s.threads;
    }
  } catch (...) {
    s.launch = nullptr;
    s.error.clear();
    throw;
  }
  s.launch = nullptr;
}

template <typename Tuple, typename Kernel>
struct Bound {
  Kernel kernel;
  Tuple params;
  static void run(void* self) {
    auto* b = static_cast<Bound*>(self);
    std::apply(b->kernel, b->params);
  }
};

}  // namespace detail

inline void set_schedule(const Schedule& schedule) { detail::state().schedule = schedule; }
inline Schedule schedule() { return detail::state().schedule; }
inline Counters counters() { return detail::state().counters; }
inline void reset_counters() { detail::state().counters = Counters{}; }

// kernel<<<grid, block, dynamic_shared, stream>>>(args...), run now on the CPU. `name` is for messages.
template <typename... Params, typename... Args>
void launch(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, size_t dynamic_shared, cudaStream_t,
            Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "cuda_emu::launch: wrong number of kernel arguments");
  using Tuple = std::tuple<std::decay_t<Params>...>;
  detail::Bound<Tuple, void (*)(Params...)> bound{kernel, Tuple(std::forward<Args>(args)...)};
  const detail::LaunchInfo info{name, grid, block, &decltype(bound)::run, &bound};
  detail::run_launch(info, reinterpret_cast<const void*>(kernel), dynamic_shared);
}

}  // namespace cuda_emu

// ------------------------------------------------------------------------------ the names kernels use

#define threadIdx (::cuda_emu::detail::current().idx)
#define blockIdx (::cuda_emu::detail::state().block_idx)
#define blockDim (::cuda_emu::detail::state().launch->block)
#define gridDim (::cuda_emu::detail::state().launch->grid)

inline int cuda_emu_barrier(int op, int predicate, const char* file, int line) {
  auto& s = ::cuda_emu::detail::state();
  auto& me = ::cuda_emu::detail::current();
  me.wait = ::cuda_emu::detail::Wait::barrier;
  me.arg = op;
  me.value = predicate != 0;
  me.file = file;
  me.line = line;
  s.fibers.yield();
  return static_cast<int>(me.result);
}

inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  cuda_emu_barrier(0, 0, file, line);
}
inline int __syncthreads_count(int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return cuda_emu_barrier(1, predicate, file, line);
}
inline int __syncthreads_and(int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return cuda_emu_barrier(2, predicate, file, line);
}
inline int __syncthreads_or(int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return cuda_emu_barrier(3, predicate, file, line);
}

inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::cuda_emu::detail::warp_collective(::cuda_emu::detail::Op::syncwarp, mask, 0, 0, 32, file, line);
}
inline unsigned __ballot_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  return static_cast<unsigned>(
      ::cuda_emu::detail::warp_collective(::cuda_emu::detail::Op::ballot, mask, predicate != 0, 0, 32, file, line));
}
inline int __any_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return static_cast<int>(
      ::cuda_emu::detail::warp_collective(::cuda_emu::detail::Op::any, mask, predicate != 0, 0, 32, file, line));
}
inline int __all_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return static_cast<int>(
      ::cuda_emu::detail::warp_collective(::cuda_emu::detail::Op::all, mask, predicate != 0, 0, 32, file, line));
}

#define CUDA_EMU_SHUFFLE(NAME, OP, ARG)                                                                           \
  template <typename T>                                                                                           \
  T NAME(unsigned mask, T var, ARG, int width = warpSize, const char* file = __builtin_FILE(),                    \
         int line = __builtin_LINE()) {                                                                           \
    using namespace ::cuda_emu::detail;                                                                           \
    return from_bits<T>(warp_collective(Op::OP, mask, to_bits(var), static_cast<int>(arg), width, file, line));   \
  }
CUDA_EMU_SHUFFLE(__shfl_sync, shfl, int arg)
CUDA_EMU_SHUFFLE(__shfl_up_sync, shfl_up, unsigned arg)
CUDA_EMU_SHUFFLE(__shfl_down_sync, shfl_down, unsigned arg)
CUDA_EMU_SHUFFLE(__shfl_xor_sync, shfl_xor, int arg)
#undef CUDA_EMU_SHUFFLE

// Blocks run one at a time and threads switch only at barriers and warp collectives: a read-modify-write
// is atomic as it stands.
template <typename T>
T atomicAdd(T* address, T value) {
  static_assert(std::is_arithmetic<T>::value, "cuda_emu: atomicAdd of an arithmetic type");
  ++::cuda_emu::detail::state().counters.atomics;
  const T old = *address;
  *address = old + value;
  return old;
}

inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
// A read through the read-only data cache, and a plain (write-back) store: counted in bytes.
template <typename T>
T __ldg(const T* p) {
  ::cuda_emu::detail::state().counters.global_load_bytes += sizeof(T);
  return *p;
}
template <typename T>
void __stwb(T* p, T value) {
  ::cuda_emu::detail::state().counters.global_store_bytes += sizeof(T);
  *p = value;
}

inline int max(int a, int b) { return a > b ? a : b; }
inline int min(int a, int b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline float max(float a, float b) { return fmaxf(a, b); }
inline float min(float a, float b) { return fminf(a, b); }

// The GPU computes __expf(x) as 2^(x * log2(e)) with a rounded product (ex2.approx.ftz); results below the
// smallest normal float are flushed to zero.
inline float __expf(float x) {
  ++::cuda_emu::detail::state().counters.expf;
  const float y = exp2f(x * 1.44269504088896341f);
  return y < 1.17549435e-38f ? 0.0f : y;
}
inline float __fdividef(float a, float b) { return a / b; }

// Round-to-nearest operations that are never contracted into a fused multiply-add (the emulator is built with
// contraction on, as nvcc compiles device code): the result is stored through a volatile as it stands.
template <typename T>
T cuda_emu_rounded(T value) {
  volatile T stored = value;
  return stored;
}
inline float __fadd_rn(float a, float b) { return cuda_emu_rounded(a + b); }
inline float __fsub_rn(float a, float b) { return cuda_emu_rounded(a - b); }
inline float __fmul_rn(float a, float b) { return cuda_emu_rounded(a * b); }
inline double __dadd_rn(double a, double b) { return cuda_emu_rounded(a + b); }
inline double __dsub_rn(double a, double b) { return cuda_emu_rounded(a - b); }
inline double __dmul_rn(double a, double b) { return cuda_emu_rounded(a * b); }
