#include "flat-ops.h"
#include <cmath>

// One clone per ISA: the machine's widest vectors without building for one CPU.
#define GRADFLEET_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

namespace gradfleet {

GRADFLEET_CLONES void scaleInPlace(float* __restrict a, std::int64_t n, float k) {
  for (std::int64_t i = 0; i < n; i++) a[i] *= k;
}

GRADFLEET_CLONES void addInto(float* __restrict a, const float* __restrict b, std::int64_t n) {
  for (std::int64_t i = 0; i < n; i++) a[i] += b[i];
}

GRADFLEET_CLONES void divideInPlace(float* __restrict a, std::int64_t n, float d) {
  for (std::int64_t i = 0; i < n; i++) a[i] /= d;
}

namespace {
// Blocks of plain compares vectorise; only a block with an offender is searched element by element.
constexpr std::int64_t kCheckBlock = 1024;

GRADFLEET_CLONES bool blockInside(const float* __restrict a, std::int64_t n, double limit) {
  int outside = 0;
  for (std::int64_t i = 0; i < n; i++) outside |= !(std::fabs(static_cast<double>(a[i])) <= limit);
  return outside == 0;
}
}  // namespace

std::int64_t firstOutside(const float* a, std::int64_t n, double limit) {
  for (std::int64_t start = 0; start < n; start += kCheckBlock) {
    const std::int64_t len = n - start < kCheckBlock ? n - start : kCheckBlock;
    if (blockInside(a + start, len, limit)) continue;
    for (std::int64_t i = start; i < start + len; i++) {
      if (!(std::fabs(static_cast<double>(a[i])) <= limit)) return i;
    }
  }
  return -1;
}

GRADFLEET_CLONES void adamUpdate(float* __restrict w, const float* __restrict g, float* __restrict m, float* __restrict v,
                                 std::int64_t n, const AdamScalars& s) {
  const double b1 = s.beta1, b2 = s.beta2, c1 = 1 - s.beta1, c2 = 1 - s.beta2, eps = s.epsilon, step = s.stepSize;
  for (std::int64_t i = 0; i < n; i++) {
    const double gi = g[i];
    const double mi = b1 * m[i] + c1 * gi;
    const double vi = b2 * v[i] + c2 * gi * gi;
    m[i] = static_cast<float>(mi);
    v[i] = static_cast<float>(vi);
    w[i] = static_cast<float>(w[i] - step * mi / (std::sqrt(vi) + eps));
  }
}

}  // namespace gradfleet
