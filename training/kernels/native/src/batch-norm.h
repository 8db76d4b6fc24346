// Training-mode BatchNorm (+ ReLU) over [rows, C]. Hand-written rather than oneDNN's, because
// oneDNN splits the row reduction across threads: its bits would change with the thread count,
// and the cluster's bit-identity needs a micro-batch's gradient to be the same on any worker.
// Here rows are reduced in fixed runs of 32 (any thread each), the runs added in order: the same
// bits whatever the thread count.
#pragma once
#include <cstdint>

namespace gradfleet {

struct BatchNormShape {
  std::int64_t rows, channels;
  float epsilon;
  bool relu;
};

void batchNormForward(const BatchNormShape& s, const float* x, const float* gamma, const float* beta, float* y,
                      float* mean, float* variance);

void batchNormBackward(const BatchNormShape& s, const float* dy, const float* x, const float* y, const float* gamma,
                       const float* mean, const float* variance, float* dx, float* dGamma, float* dBeta);

// Inference-mode BatchNorm with the moving statistics (tf.batchNorm's FusedBatchNorm): elementwise,
// so any thread count gives the same bits.
void batchNormInference(const BatchNormShape& s, const float* x, const float* mean, const float* variance,
                        const float* offset, const float* gamma, float* y);

}  // namespace gradfleet
