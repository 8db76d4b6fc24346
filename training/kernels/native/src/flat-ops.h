// Elementwise loops over the flat parameter-sized buffers of a step (leaf scaling, tree sums, the
// average, the value checks, Adam, the BatchNorm moving averages). Each is the same IEEE operation
// per element as its JS twin in training/math/flat-ops.ts, so both give the same bits: float32
// products, sums and quotients of float32 values are correctly rounded either way, and Adam is
// float64 per element in the JS order. No OpenMP: these are memory-bound, and a coordinator or
// shard sharing cores with workers must not spin threads.
#pragma once
#include <cstdint>

namespace gradfleet {

void scaleInPlace(float* a, std::int64_t n, float k);
void addInto(float* a, const float* b, std::int64_t n);
void divideInPlace(float* a, std::int64_t n, float d);
// The first i with !(|a[i]| <= limit) (NaN, ±Inf, too large), or −1; compared in float64, as in JS.
std::int64_t firstOutside(const float* a, std::int64_t n, double limit);

struct AdamScalars {
  double beta1, beta2, epsilon, stepSize;
};
void adamUpdate(float* w, const float* g, float* m, float* v, std::int64_t n, const AdamScalars& s);

}  // namespace gradfleet
