#include "batch-norm.h"
#include <algorithm>
#include <cmath>
#include <vector>
#include "dnnl-context.h"

namespace gradfleet {

namespace {

constexpr std::int64_t kBlock = 16;  // channels per task: one 64-byte line of a row
constexpr std::int64_t kRun = 32;    // rows per float partial sum


template <typename F>
void forChannelBlocks(std::int64_t rows, std::int64_t channels, F body) {
  const std::int64_t blocks = (channels + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (rows * channels >= kParallelMin)
  for (std::int64_t b = 0; b < blocks; b++) {
    const std::int64_t c0 = b * kBlock;
    body(c0, c0 + kBlock < channels ? kBlock : channels - c0);
  }
}

// Rows are independent in the elementwise passes: any split gives the same bits.
template <typename F>
void forRows(std::int64_t rows, std::int64_t channels, F body) {
#pragma omp parallel for schedule(static) if (rows * channels >= kParallelMin)
  for (std::int64_t r = 0; r < rows; r++) body(r);
}

// y = x·scale + shift per channel (then ReLU).
void applyPerChannel(std::int64_t R, std::int64_t C, const float* __restrict x, const float* __restrict sc,
                     const float* __restrict sh, float* __restrict y, bool relu) {
  forRows(R, C, [&](std::int64_t r) {
    const float* __restrict xr = x + r * C;
    float* __restrict yr = y + r * C;
    for (std::int64_t c = 0; c < C; c++) {
      const float v = xr[c] * sc[c] + sh[c];
      yr[c] = relu ? std::max(v, 0.f) : v;
    }
  });
}

}  // namespace

void batchNormForward(const BatchNormShape& s, const float* __restrict x, const float* gamma, const float* beta,
                      float* __restrict y, float* mean, float* variance) {
  const std::int64_t R = s.rows, C = s.channels;
  std::vector<float> scale(C), shift(C);
  forChannelBlocks(R, C, [&](std::int64_t c0, std::int64_t width) {
    double sum[kBlock] = {0}, sq[kBlock] = {0};
    float mu[kBlock] = {0};
    for (std::int64_t r = 0; r < R; r++) {
      const float* xr = x + r * C + c0;
      for (std::int64_t j = 0; j < width; j++) sum[j] += xr[j];
    }
    for (std::int64_t j = 0; j < width; j++) mu[j] = static_cast<float>(sum[j] / R);
    // A second pass over centred values keeps the variance accurate when |mean| ≫ std.
    for (std::int64_t r = 0; r < R; r++) {
      const float* xr = x + r * C + c0;
      for (std::int64_t j = 0; j < width; j++) {
        const double d = xr[j] - mu[j];
        sq[j] += d * d;
      }
    }
    for (std::int64_t j = 0; j < width; j++) {
      const std::int64_t c = c0 + j;
      mean[c] = mu[j];
      variance[c] = static_cast<float>(sq[j] / R);
      scale[c] = gamma[c] / std::sqrt(variance[c] + s.epsilon);
      shift[c] = beta[c] - mean[c] * scale[c];
    }
  });
  applyPerChannel(R, C, x, scale.data(), shift.data(), y, s.relu);
}

void batchNormInference(const BatchNormShape& s, const float* x, const float* mean, const float* variance,
                        const float* offset, const float* gamma, float* y) {
  const std::int64_t C = s.channels;
  std::vector<float> scale(C), shift(C);
  for (std::int64_t c = 0; c < C; c++) {
    scale[c] = gamma[c] / std::sqrt(variance[c] + s.epsilon);
    shift[c] = offset[c] - mean[c] * scale[c];
  }
  applyPerChannel(s.rows, C, x, scale.data(), shift.data(), y, s.relu);
}

namespace {

template <bool relu>
void backward(const BatchNormShape& s, const float* __restrict dy, const float* __restrict x,
                       const float* __restrict y, const float* gamma, const float* mean, const float* variance,
                       float* __restrict dx, float* dGamma, float* dBeta) {
  const std::int64_t R = s.rows, C = s.channels;
  std::vector<float> k1(C), k2(C), k0(C);
  forChannelBlocks(R, C, [&](std::int64_t c0, std::int64_t width) {
    double gSum[kBlock] = {0}, gcSum[kBlock] = {0};
    float mu[kBlock] = {0};
    for (std::int64_t j = 0; j < width; j++) mu[j] = mean[c0 + j];
    // Float partial sums over short runs of rows vectorise; the runs add up in double, in row order.
    for (std::int64_t r0 = 0; r0 < R; r0 += kRun) {
      float gPart[kBlock] = {0}, gcPart[kBlock] = {0};
      const std::int64_t r1 = std::min(R, r0 + kRun);
      for (std::int64_t r = r0; r < r1; r++) {
        const std::int64_t base = r * C + c0;
        for (std::int64_t j = 0; j < kBlock; j++) {
          if (j >= width) break;
          // ReLU's gradient passes where its output is positive (tfjs's rule: step(y)).
          const float d = dy[base + j];  // loaded unconditionally, so the select vectorises
          const float g = relu && !(y[base + j] > 0.f) ? 0.f : d;
          gPart[j] += g;
          gcPart[j] += g * (x[base + j] - mu[j]);
        }
      }
      for (std::int64_t j = 0; j < width; j++) {
        gSum[j] += gPart[j];
        gcSum[j] += gcPart[j];
      }
    }
    for (std::int64_t j = 0; j < width; j++) {
      const std::int64_t c = c0 + j;
      const double invStd = 1.0 / std::sqrt(static_cast<double>(variance[c]) + s.epsilon);
      const double gMean = gSum[j] / R, gcMean = gcSum[j] / R;
      dBeta[c] = static_cast<float>(gSum[j]);
      dGamma[c] = static_cast<float>(gcSum[j] * invStd);
      // dx = γ·σ⁻¹·(g − mean(g) − x̂·mean(g·x̂)), with x̂ = (x − μ)·σ⁻¹.
      const double a = gamma[c] * invStd;
      k1[c] = static_cast<float>(a);
      k2[c] = static_cast<float>(-a * invStd * invStd * gcMean);
      k0[c] = static_cast<float>(-a * gMean);
    }
  });
  const float* __restrict a1 = k1.data();
  const float* __restrict a2 = k2.data();
  const float* __restrict a0 = k0.data();
  const float* __restrict mu = mean;
  forRows(R, C, [&](std::int64_t r) {
    const std::int64_t base = r * C;
    for (std::int64_t c = 0; c < C; c++) {
      const std::int64_t i = base + c;
      const float d = dy[i];
      const float g = relu && !(y[i] > 0.f) ? 0.f : d;
      dx[i] = g * a1[c] + (x[i] - mu[c]) * a2[c] + a0[c];
    }
  });
}


}  // namespace

void batchNormBackward(const BatchNormShape& s, const float* dy, const float* x, const float* y, const float* gamma,
                       const float* mean, const float* variance, float* dx, float* dGamma, float* dBeta) {
  // ReLU as a template argument keeps the flag out of the inner loops.
  (s.relu ? backward<true> : backward<false>)(s, dy, x, y, gamma, mean, variance, dx, dGamma, dBeta);
}

}  // namespace gradfleet
