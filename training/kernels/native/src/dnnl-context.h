// One CPU engine for the process and one stream per thread. oneDNN objects are cheap to create per
// call (its own primitive cache makes repeated shapes fast); these are the only shared state.
#pragma once
#include <oneapi/dnnl/dnnl.hpp>
#include <cstddef>
#include <cstdint>

namespace gradfleet {

dnnl::engine& cpuEngine();
dnnl::stream& cpuStream();

// Bytes the addon holds in its own scratch buffers right now (the leak test reads it).
std::int64_t liveScratchBytes();

// A float buffer owned by the addon for the span of one kernel call, counted in liveScratchBytes.
class ScratchBuffer {
 public:
  explicit ScratchBuffer(std::size_t bytes);
  ~ScratchBuffer();
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  void* data() const { return data_; }

 private:
  void* data_;
  std::size_t bytes_;
};

// Below this many values a parallel region of the hand-written kernels costs more than it saves
// (waking threads takes µs, and ms on a busy machine).
constexpr std::int64_t kParallelMin = 1 << 16;

// Runs a small primitive on the calling thread alone, for the guard's lifetime: below kSmallFlops,
// waking the other threads costs more than they save (µs idle, ms on a busy machine). oneDNN reads
// the thread count when it builds a primitive, so this picks a one-thread primitive.
class SmallWorkOnOneThread {
 public:
  explicit SmallWorkOnOneThread(double flops);
  ~SmallWorkOnOneThread();
  SmallWorkOnOneThread(const SmallWorkOnOneThread&) = delete;
  SmallWorkOnOneThread& operator=(const SmallWorkOnOneThread&) = delete;

 private:
  int restore_ = 0;  // the thread count to put back; 0 when unchanged
};

constexpr double kSmallFlops = 4e6;

// Where a tensor lives: its byte offset inside the wasm heap handed to the call.
inline float* at(std::uint8_t* heap, std::int64_t offset) { return reinterpret_cast<float*>(heap + offset); }

}  // namespace gradfleet
