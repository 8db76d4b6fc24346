#include "dnnl-context.h"
#include <atomic>
#include <cstdlib>
#include <new>

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
