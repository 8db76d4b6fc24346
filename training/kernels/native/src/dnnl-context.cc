#include "dnnl-context.h"
#include <atomic>
#include <cstdlib>
#include <new>
#include <omp.h>

namespace gradfleet {

namespace {
std::atomic<std::int64_t> scratchBytes{0};
}

dnnl::engine& cpuEngine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// One per thread: a stream is not safe to share between threads that execute at once.
dnnl::stream& cpuStream() {
  thread_local dnnl::stream stream(cpuEngine());
  return stream;
}

SmallWorkOnOneThread::SmallWorkOnOneThread(double flops) {
  if (flops < kSmallFlops && omp_get_max_threads() > 1) {
    restore_ = omp_get_max_threads();
    omp_set_num_threads(1);
  }
}

SmallWorkOnOneThread::~SmallWorkOnOneThread() {
  if (restore_) omp_set_num_threads(restore_);
}

std::int64_t liveScratchBytes() { return scratchBytes.load(); }

ScratchBuffer::ScratchBuffer(std::size_t bytes) : data_(std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64)), bytes_(bytes) {
  if (!data_) throw std::bad_alloc();
  scratchBytes += static_cast<std::int64_t>(bytes_);
}

ScratchBuffer::~ScratchBuffer() {
  std::free(data_);
  scratchBytes -= static_cast<std::int64_t>(bytes_);
}

}  // namespace gradfleet
