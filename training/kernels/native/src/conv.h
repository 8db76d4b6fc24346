// Convolution on NHWC activations and HWIO filters (tfjs's layouts), in place on caller memory.
#pragma once
#include <cstdint>

namespace gradfleet {

struct ConvShape {
  std::int64_t n, h, w, ci;      // input
  std::int64_t kh, kw, co;       // filter
  std::int64_t oh, ow;           // output
  std::int64_t sh, sw, dh, dw;   // stride, dilation (tfjs's: 1 = none)
  std::int64_t top, left, bottom, right;
};

// y = conv(x, w) (+ bias) (then ReLU); bias may be null.
void convForward(const ConvShape& s, const float* x, const float* w, const float* bias, float* y, bool relu);
// dx = conv_backward_data(dy, w)
void convBackwardData(const ConvShape& s, const float* dy, const float* w, float* dx);
// dw = conv_backward_weights(x, dy), written in HWIO
void convBackwardWeights(const ConvShape& s, const float* x, const float* dy, float* dw);

}  // namespace gradfleet
