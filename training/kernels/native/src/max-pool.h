// Max pooling over NHWC, forward and gradient. The gradient goes to the first maximum of each
// window in row-major order (the cpu backend's tie rule). Images are independent, so splitting the
// batch across threads gives the same bits for any thread count.
#pragma once
#include <cstdint>

namespace gradfleet {

struct PoolShape {
  std::int64_t n, h, w, c;
  std::int64_t kh, kw, oh, ow;
  std::int64_t sh, sw, top, left;
};

void maxPoolForward(const PoolShape& s, const float* x, float* y);
void maxPoolBackward(const PoolShape& s, const float* x, const float* dy, float* dx);

}  // namespace gradfleet
