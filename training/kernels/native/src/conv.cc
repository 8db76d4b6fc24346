#include "conv.h"
#include <omp.h>
#include <algorithm>
#include <vector>
#include "reorder.h"

namespace gradfleet {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

namespace {

struct ConvDescs {
  memory::desc src, weights, dst, bias;     // the caller's plain layouts
  memory::desc weightsAny;                  // let the primitive choose its weights layout
  memory::dims strides, dilates, padL, padR;
};

ConvDescs descsOf(const ConvShape& s) {
  return {
      memory::desc({s.n, s.ci, s.h, s.w}, dt::f32, tag::nhwc),
      memory::desc({s.co, s.ci, s.kh, s.kw}, dt::f32, tag::hwio),
      memory::desc({s.n, s.co, s.oh, s.ow}, dt::f32, tag::nhwc),
      memory::desc({s.co}, dt::f32, tag::x),
      memory::desc({s.co, s.ci, s.kh, s.kw}, dt::f32, tag::any),
      {s.sh, s.sw},
      {s.dh - 1, s.dw - 1},  // oneDNN counts the gaps: 0 = no dilation
      {s.top, s.left},
      {s.bottom, s.right},
  };
}

// Direct convolution (never Winograd) so that the result does not depend on a heuristic's choice.
dnnl::convolution_forward::primitive_desc forwardPd(const ConvDescs& d, bool withBias, bool relu) {
  dnnl::convolution_forward::desc desc = withBias
      ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                                        d.src, d.weightsAny, d.bias, d.dst, d.strides, d.dilates, d.padL, d.padR)
      : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                                        d.src, d.weightsAny, d.dst, d.strides, d.dilates, d.padL, d.padR);
  dnnl::primitive_attr attr;
  if (relu) {
    dnnl::post_ops ops;
    ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
    attr.set_post_ops(ops);
  }
  return dnnl::convolution_forward::primitive_desc(desc, attr, cpuEngine());
}

// One operand of a primitive: its argument slot, the layout the primitive chose, and the caller's memory.
struct Operand {
  int arg;
  memory::desc want;
  memory user;
};

// Runs a primitive on caller memory in plain layouts: inputs are moved into the layouts it chose
// (when they differ), and its output moved back.
template <typename Primitive, typename Pd>
void execute(const Pd& pd, const std::vector<Operand>& inputs, const Operand& output) {
  std::vector<std::unique_ptr<ScratchBuffer>> holders(inputs.size() + 1);
  std::unordered_map<int, memory> args;
  for (std::size_t i = 0; i < inputs.size(); i++) args.insert({inputs[i].arg, asLayout(inputs[i].want, inputs[i].user, holders[i])});
  memory out = outputIn(output.want, output.user, holders.back());
  args.insert({output.arg, out});
  Primitive(pd).execute(cpuStream(), args);
  copyBack(out, output.user);
  cpuStream().wait();
}

memory userMemory(const memory::desc& md, const float* data) { return memory(md, cpuEngine(), const_cast<float*>(data)); }

}  // namespace

double flopsOf(const ConvShape& s) { return 2.0 * s.n * s.oh * s.ow * s.co * s.kh * s.kw * s.ci; }

void convForward(const ConvShape& s, const float* x, const float* w, const float* bias, float* y, bool relu) {
  // oneDNN's threaded code for a one-channel input (the images) ran 5× slower on two threads than
  // on one (mnist-cnn's first layer at batch 64: 7.5 against 1.5 ms).
  SmallWorkOnOneThread small(s.ci == 1 ? 0 : flopsOf(s));
  const ConvDescs d = descsOf(s);
  auto pd = forwardPd(d, bias != nullptr, relu);
  std::vector<Operand> inputs{{DNNL_ARG_SRC, pd.src_desc(), userMemory(d.src, x)}, {DNNL_ARG_WEIGHTS, pd.weights_desc(), userMemory(d.weights, w)}};
  if (bias) inputs.push_back({DNNL_ARG_BIAS, d.bias, userMemory(d.bias, bias)});
  execute<dnnl::convolution_forward>(pd, inputs, {DNNL_ARG_DST, pd.dst_desc(), userMemory(d.dst, y)});
}

void convBackwardData(const ConvShape& s, const float* dy, const float* w, float* dx) {
  SmallWorkOnOneThread small(flopsOf(s));
  const ConvDescs d = descsOf(s);
  dnnl::convolution_backward_data::desc desc(dnnl::algorithm::convolution_direct, d.src, d.weightsAny, d.dst,
                                             d.strides, d.dilates, d.padL, d.padR);
  dnnl::convolution_backward_data::primitive_desc pd(desc, cpuEngine(), forwardPd(d, false, false));
  execute<dnnl::convolution_backward_data>(pd,
      {{DNNL_ARG_DIFF_DST, pd.diff_dst_desc(), userMemory(d.dst, dy)}, {DNNL_ARG_WEIGHTS, pd.weights_desc(), userMemory(d.weights, w)}},
      {DNNL_ARG_DIFF_SRC, pd.diff_src_desc(), userMemory(d.src, dx)});
}

namespace {

void backwardWeightsOfChunk(const ConvShape& s, const float* x, const float* dy, float* dw) {
  const ConvDescs d = descsOf(s);
  dnnl::convolution_backward_weights::desc desc(dnnl::algorithm::convolution_direct, d.src, d.weightsAny, d.dst,
                                                d.strides, d.dilates, d.padL, d.padR);
  dnnl::convolution_backward_weights::primitive_desc pd(desc, cpuEngine(), forwardPd(d, false, false));
  execute<dnnl::convolution_backward_weights>(pd,
      {{DNNL_ARG_SRC, pd.src_desc(), userMemory(d.src, x)}, {DNNL_ARG_DIFF_DST, pd.diff_dst_desc(), userMemory(d.dst, dy)}},
      {DNNL_ARG_DIFF_WEIGHTS, pd.diff_weights_desc(), userMemory(d.weights, dw)});
}

// Images per chunk of the filter gradient. oneDNN splits the batch reduction across its threads,
// so its bits change with the thread count; the cluster's bit-identity needs a micro-batch's
// gradient to be the same on any worker. So the batch is cut into fixed chunks whatever the thread
// count, each chunk's gradient computed by one thread, and the partial sums added in chunk order.
constexpr std::int64_t kChunk = 16;  // measured: 8 falls off oneDNN's fast path (22 against ~100 GFLOP/s)

}  // namespace

void convBackwardWeights(const ConvShape& s, const float* x, const float* dy, float* dw) {
  const std::int64_t chunks = (s.n + kChunk - 1) / kChunk;
  const std::int64_t size = s.kh * s.kw * s.ci * s.co;
  std::vector<std::unique_ptr<ScratchBuffer>> partials(chunks);
  for (std::int64_t c = 1; c < chunks; c++) partials[c] = std::make_unique<ScratchBuffer>(size * sizeof(float));
  auto partial = [&](std::int64_t c) { return c == 0 ? dw : static_cast<float*>(partials[c]->data()); };
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < chunks; c++) {
    omp_set_num_threads(1);  // this task's oneDNN calls: one thread, the same code for any team size
    ConvShape part = s;
    part.n = std::min(kChunk, s.n - c * kChunk);
    backwardWeightsOfChunk(part, x + c * kChunk * s.h * s.w * s.ci, dy + c * kChunk * s.oh * s.ow * s.co, partial(c));
  }
  for (std::int64_t c = 1; c < chunks; c++) {
    const float* p = partial(c);
    for (std::int64_t i = 0; i < size; i++) dw[i] += p[i];
  }
}

}  // namespace gradfleet
