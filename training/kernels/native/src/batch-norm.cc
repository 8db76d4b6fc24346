#include "batch-norm.h"
#include <cmath>
#include <vector>

namespace gradfleet {

namespace {

constexpr std::int64_t kBlock = 16;  // channels per task: one 64-byte line of a row

template <typename F>
void forChannelBlocks(std::int64_t channels, F body) {
  const std::int64_t blocks = (channels + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (std::int64_t b = 0; b < blocks; b++) {
    const std::int64_t c0 = b * kBlock;
    body(c0, c0 + kBlock < channels ? c0 + kBlock : channels);
  }
}

// Rows are independent in the elementwise passes: any split gives the same bits.
template <typename F>
void forRows(std::int64_t rows, F body) {
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; r++) body(r);
}

}  // namespace

void batchNormForward(const BatchNormShape& s, const float* x, const float* gamma, const float* beta, float* y,
                      float* mean, float* variance) {
  const std::int64_t R = s.rows, C = s.channels;
  std::vector<float> scale(C), shift(C);
  forChannelBlocks(C, [&](std::int64_t c0, std::int64_t c1) {
    double sum[kBlock] = {0}, sq[kBlock] = {0};
    for (std::int64_t r = 0; r < R; r++)
      for (std::int64_t c = c0; c < c1; c++) sum[c - c0] += x[r * C + c];
    for (std::int64_t c = c0; c < c1; c++) mean[c] = static_cast<float>(sum[c - c0] / R);
    // A second pass over centred values keeps the variance accurate when |mean| ≫ std.
    for (std::int64_t r = 0; r < R; r++)
      for (std::int64_t c = c0; c < c1; c++) {
        const double d = x[r * C + c] - mean[c];
        sq[c - c0] += d * d;
      }
    for (std::int64_t c = c0; c < c1; c++) {
      variance[c] = static_cast<float>(sq[c - c0] / R);
      scale[c] = gamma[c] / std::sqrt(variance[c] + s.epsilon);
      shift[c] = beta[c] - mean[c] * scale[c];
    }
  });
  forRows(R, [&](std::int64_t r) {
    const float* xr = x + r * C;
    float* yr = y + r * C;
    for (std::int64_t c = 0; c < C; c++) {
      const float v = xr[c] * scale[c] + shift[c];
      yr[c] = s.relu && v < 0.f ? 0.f : v;
    }
  });
}

void batchNormBackward(const BatchNormShape& s, const float* dy, const float* x, const float* y, const float* gamma,
                       const float* mean, const float* variance, float* dx, float* dGamma, float* dBeta) {
  const std::int64_t R = s.rows, C = s.channels;
  // ReLU's gradient passes where its output is positive (tfjs's rule: step(y)).
  auto grad = [&](std::int64_t i) { return s.relu && !(y[i] > 0.f) ? 0.f : dy[i]; };
  std::vector<float> k1(C), k2(C), k0(C);
  forChannelBlocks(C, [&](std::int64_t c0, std::int64_t c1) {
    double gSum[kBlock] = {0}, gcSum[kBlock] = {0};
    for (std::int64_t r = 0; r < R; r++)
      for (std::int64_t c = c0; c < c1; c++) {
        const double g = grad(r * C + c);
        gSum[c - c0] += g;
        gcSum[c - c0] += g * (x[r * C + c] - mean[c]);
      }
    for (std::int64_t c = c0; c < c1; c++) {
      const double invStd = 1.0 / std::sqrt(static_cast<double>(variance[c]) + s.epsilon);
      const double gMean = gSum[c - c0] / R, gcMean = gcSum[c - c0] / R;
      dBeta[c] = static_cast<float>(gSum[c - c0]);
      dGamma[c] = static_cast<float>(gcSum[c - c0] * invStd);
      // dx = γ·σ⁻¹·(g − mean(g) − x̂·mean(g·x̂)), with x̂ = (x − μ)·σ⁻¹.
      const double a = gamma[c] * invStd;
      k1[c] = static_cast<float>(a);
      k2[c] = static_cast<float>(-a * invStd * invStd * gcMean);
      k0[c] = static_cast<float>(-a * gMean);
    }
  });
  forRows(R, [&](std::int64_t r) {
    for (std::int64_t c = 0; c < C; c++) {
      const std::int64_t i = r * C + c;
      dx[i] = grad(i) * k1[c] + (x[i] - mean[c]) * k2[c] + k0[c];
    }
  });
}

}  // namespace gradfleet
