// Batched matrix product with transpose flags read as strides (no transposed copy), optional
// bias over the last axis and ReLU. A batch of 1 on either side broadcasts.
#pragma once
#include <cstdint>

namespace gradfleet {

struct MatMulShape {
  std::int64_t batchA, batchB, m, k, n;
  bool transposeA, transposeB;
};

void matMul(const MatMulShape& s, const float* a, const float* b, const float* bias, float* c, bool relu);

}  // namespace gradfleet
