#include "matmul.h"
#include <algorithm>
#include "dnnl-context.h"

namespace gradfleet {

using dnnl::memory;
using dt = memory::data_type;

void matMul(const MatMulShape& s, const float* a, const float* b, const float* bias, float* c, bool relu) {
  const std::int64_t batch = std::max(s.batchA, s.batchB);
  SmallWorkOnOneThread small(2.0 * batch * s.m * s.k * s.n);
  // Logical [B, rows, cols]; a flagged operand is stored [B, cols, rows], which is just other strides.
  auto operand = [](std::int64_t bt, std::int64_t rows, std::int64_t cols, bool transposed) {
    const memory::dims strides = transposed ? memory::dims{rows * cols, 1, rows} : memory::dims{rows * cols, cols, 1};
    return memory::desc({bt, rows, cols}, dt::f32, strides);
  };
  const memory::desc aMd = operand(s.batchA, s.m, s.k, s.transposeA);
  const memory::desc bMd = operand(s.batchB, s.k, s.n, s.transposeB);
  const memory::desc cMd({batch, s.m, s.n}, dt::f32, memory::dims{s.m * s.n, s.n, 1});
  const memory::desc biasMd = bias ? memory::desc({1, 1, s.n}, dt::f32, memory::dims{s.n, s.n, 1}) : memory::desc();
  dnnl::primitive_attr attr;
  if (relu) {
    dnnl::post_ops ops;
    ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
    attr.set_post_ops(ops);
  }
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(aMd, bMd, biasMd, cMd), attr, cpuEngine());
  auto& eng = cpuEngine();
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, memory(aMd, eng, const_cast<float*>(a))},
      {DNNL_ARG_WEIGHTS, memory(bMd, eng, const_cast<float*>(b))},
      {DNNL_ARG_DST, memory(cMd, eng, c)},
  };
  if (bias) args.insert({DNNL_ARG_BIAS, memory(biasMd, eng, const_cast<float*>(bias))});
  dnnl::matmul(pd).execute(cpuStream(), args);
  cpuStream().wait();
}

}  // namespace gradfleet
