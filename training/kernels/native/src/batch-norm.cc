#include "batch-norm.h"
#include <algorithm>
#include <array>
#include <cmath>
#include <vector>
#include "dnnl-context.h"

namespace gradfleet {

namespace {

constexpr std::int64_t kRun = 32;  // rows per float partial sum

// Per channel, Σ over rows of K row terms: float partial sums over runs of kRun rows (they
// vectorise across channels), computed run by run on any thread, then added up in double in run
// order, so the bits do not depend on the thread count. Runs split across threads read whole rows:
// channel blocks did not scale (two 16-channel stripes of a 32-channel row share its cache lines,
// and the forward pass ran slower on two threads than on one).
template <int K, typename Term>
std::array<std::vector<double>, K> columnSums(std::int64_t R, std::int64_t C, Term term) {
  const std::int64_t runs = (R + kRun - 1) / kRun;
  std::vector<float> parts(runs * K * C);
#pragma omp parallel for schedule(static) if (R * C >= kParallelMin)
  for (std::int64_t run = 0; run < runs; run++) {
    float* __restrict part = parts.data() + run * K * C;
    for (std::int64_t i = 0; i < K * C; i++) part[i] = 0.f;
    const std::int64_t r1 = std::min(R, (run + 1) * kRun);
    for (std::int64_t r = run * kRun; r < r1; r++) {
      for (std::int64_t c = 0; c < C; c++) {
        float v[K];
        term(r * C + c, c, v);
        for (int k = 0; k < K; k++) part[k * C + c] += v[k];
      }
    }
  }
  std::array<std::vector<double>, K> sums;
  for (auto& sum : sums) sum.assign(C, 0.0);
  for (std::int64_t run = 0; run < runs; run++) {
    for (int k = 0; k < K; k++) {
      const float* part = parts.data() + (run * K + k) * C;
      for (std::int64_t c = 0; c < C; c++) sums[k][c] += part[c];
    }
  }
  return sums;
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

// BatchNorm as a per-channel affine map: scale = γ/√(σ² + ε), shift = β − μ·scale.
void scaleAndShift(const BatchNormShape& s, const float* gamma, const float* beta, const float* mean, const float* variance,
                   std::vector<float>& scale, std::vector<float>& shift) {
  for (std::int64_t c = 0; c < s.channels; c++) {
    scale[c] = gamma[c] / std::sqrt(variance[c] + s.epsilon);
    shift[c] = beta[c] - mean[c] * scale[c];
  }
}

}  // namespace

void batchNormForward(const BatchNormShape& s, const float* __restrict x, const float* gamma, const float* beta,
                      float* __restrict y, float* mean, float* variance) {
  const std::int64_t R = s.rows, C = s.channels;
  std::vector<float> scale(C), shift(C);
  const auto [sum] = columnSums<1>(R, C, [&](std::int64_t i, std::int64_t, float* v) { v[0] = x[i]; });
  for (std::int64_t c = 0; c < C; c++) mean[c] = static_cast<float>(sum[c] / R);
  // A second pass over centred values keeps the variance accurate when |mean| ≫ std.
  const float* __restrict mu = mean;
  const auto [sq] = columnSums<1>(R, C, [&](std::int64_t i, std::int64_t c, float* v) {
    const float d = x[i] - mu[c];
    v[0] = d * d;
  });
  for (std::int64_t c = 0; c < C; c++) variance[c] = static_cast<float>(sq[c] / R);
  scaleAndShift(s, gamma, beta, mean, variance, scale, shift);
  applyPerChannel(R, C, x, scale.data(), shift.data(), y, s.relu);
}

void batchNormInference(const BatchNormShape& s, const float* x, const float* mean, const float* variance,
                        const float* offset, const float* gamma, float* y) {
  std::vector<float> scale(s.channels), shift(s.channels);
  scaleAndShift(s, gamma, offset, mean, variance, scale, shift);
  applyPerChannel(s.rows, s.channels, x, scale.data(), shift.data(), y, s.relu);
}

namespace {

template <bool relu>
void backward(const BatchNormShape& s, const float* __restrict dy, const float* __restrict x,
                       const float* __restrict y, const float* gamma, const float* mean, const float* variance,
                       float* __restrict dx, float* dGamma, float* dBeta) {
  const std::int64_t R = s.rows, C = s.channels;
  std::vector<float> k1(C), k2(C), k0(C);
  const float* __restrict mu = mean;
  const auto [gSum, gcSum] = columnSums<2>(R, C, [&](std::int64_t i, std::int64_t c, float* v) {
    // ReLU's gradient passes where its output is positive (tfjs's rule: step(y)).
    const float d = dy[i];  // loaded unconditionally, so the select vectorises
    const float g = relu && !(y[i] > 0.f) ? 0.f : d;
    v[0] = g;
    v[1] = g * (x[i] - mu[c]);
  });
  for (std::int64_t c = 0; c < C; c++) {
    const double invStd = 1.0 / std::sqrt(static_cast<double>(variance[c]) + s.epsilon);
    const double gMean = gSum[c] / R, gcMean = gcSum[c] / R;
    dBeta[c] = static_cast<float>(gSum[c]);
    dGamma[c] = static_cast<float>(gcSum[c] * invStd);
    // dx = γ·σ⁻¹·(g − mean(g) − x̂·mean(g·x̂)), with x̂ = (x − μ)·σ⁻¹.
    const double a = gamma[c] * invStd;
    k1[c] = static_cast<float>(a);
    k2[c] = static_cast<float>(-a * invStd * invStd * gcMean);
    k0[c] = static_cast<float>(-a * gMean);
  }
  const float* __restrict a1 = k1.data();
  const float* __restrict a2 = k2.data();
  const float* __restrict a0 = k0.data();
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
