#include "conv.h"
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

}  // namespace

void convForward(const ConvShape& s, const float* x, const float* w, const float* bias, float* y, bool relu) {
  const ConvDescs d = descsOf(s);
  auto pd = forwardPd(d, bias != nullptr, relu);
  auto& eng = cpuEngine();
  memory src(d.src, eng, const_cast<float*>(x));
  memory userW(d.weights, eng, const_cast<float*>(w));
  memory dst(d.dst, eng, y);
  std::unique_ptr<ScratchBuffer> wHolder, dstHolder;
  memory weights = asLayout(pd.weights_desc(), userW, wHolder);
  memory out = outputIn(pd.dst_desc(), dst, dstHolder);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, out}};
  if (bias) args.insert({DNNL_ARG_BIAS, memory(d.bias, eng, const_cast<float*>(bias))});
  dnnl::convolution_forward(pd).execute(cpuStream(), args);
  copyBack(out, dst);
  cpuStream().wait();
}

void convBackwardData(const ConvShape& s, const float* dy, const float* w, float* dx) {
  const ConvDescs d = descsOf(s);
  auto hint = forwardPd(d, false, false);
  dnnl::convolution_backward_data::desc desc(dnnl::algorithm::convolution_direct, d.src, d.weightsAny, d.dst,
                                             d.strides, d.dilates, d.padL, d.padR);
  dnnl::convolution_backward_data::primitive_desc pd(desc, cpuEngine(), hint);
  auto& eng = cpuEngine();
  memory diffDst(d.dst, eng, const_cast<float*>(dy));
  memory userW(d.weights, eng, const_cast<float*>(w));
  memory diffSrc(d.src, eng, dx);
  std::unique_ptr<ScratchBuffer> wHolder, dyHolder, dxHolder;
  memory weights = asLayout(pd.weights_desc(), userW, wHolder);
  memory gradOut = asLayout(pd.diff_dst_desc(), diffDst, dyHolder);
  memory out = outputIn(pd.diff_src_desc(), diffSrc, dxHolder);
  dnnl::convolution_backward_data(pd).execute(
      cpuStream(), {{DNNL_ARG_DIFF_DST, gradOut}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DIFF_SRC, out}});
  copyBack(out, diffSrc);
  cpuStream().wait();
}

void convBackwardWeights(const ConvShape& s, const float* x, const float* dy, float* dw) {
  const ConvDescs d = descsOf(s);
  auto hint = forwardPd(d, false, false);
  dnnl::convolution_backward_weights::desc desc(dnnl::algorithm::convolution_direct, d.src, d.weightsAny, d.dst,
                                                d.strides, d.dilates, d.padL, d.padR);
  dnnl::convolution_backward_weights::primitive_desc pd(desc, cpuEngine(), hint);
  auto& eng = cpuEngine();
  memory src(d.src, eng, const_cast<float*>(x));
  memory diffDst(d.dst, eng, const_cast<float*>(dy));
  memory userDw(d.weights, eng, dw);
  std::unique_ptr<ScratchBuffer> srcHolder, dyHolder, dwHolder;
  memory input = asLayout(pd.src_desc(), src, srcHolder);
  memory gradOut = asLayout(pd.diff_dst_desc(), diffDst, dyHolder);
  memory out = outputIn(pd.diff_weights_desc(), userDw, dwHolder);
  dnnl::convolution_backward_weights(pd).execute(
      cpuStream(), {{DNNL_ARG_SRC, input}, {DNNL_ARG_DIFF_DST, gradOut}, {DNNL_ARG_DIFF_WEIGHTS, out}});
  copyBack(out, userDw);
  cpuStream().wait();
}

}  // namespace gradfleet
