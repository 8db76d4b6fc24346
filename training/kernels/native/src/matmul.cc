#include "matmul.h"
#include <omp.h>
#include <algorithm>
#include <unordered_map>
#include "dnnl-context.h"

namespace gradfleet {

using dnnl::memory;
using dt = memory::data_type;

namespace {

// Logical [B, rows, cols] of a buffer whose batches are `batchStride` apart and whose stored rows
// are `ld` apart; a flagged operand is stored [B, cols, rows], which is just other strides.
memory::desc operand(std::int64_t bt, std::int64_t rows, std::int64_t cols, std::int64_t batchStride, std::int64_t ld,
                     bool transposed) {
  const memory::dims strides = transposed ? memory::dims{batchStride, 1, ld} : memory::dims{batchStride, ld, 1};
  return memory::desc({bt, rows, cols}, dt::f32, strides);
}

// C[:, :, j : j + w] = A · B[:, :, j : j + w] (+ bias[j : j + w], ReLU), read and written in place
// in the caller's whole tensors: the same primitive for every block of width w.
struct ColumnBlock {
  memory::desc a, b, bias, c;
  dnnl::matmul primitive;
};

// oneDNN reads the thread count when it builds a primitive: the caller holds it at one.
ColumnBlock columnBlock(const MatMulShape& s, std::int64_t w, bool withBias, bool relu) {
  ColumnBlock out;
  out.a = operand(s.batchA, s.m, s.k, s.m * s.k, s.transposeA ? s.m : s.k, s.transposeA);
  out.b = operand(s.batchB, s.k, w, s.k * s.n, s.transposeB ? s.k : s.n, s.transposeB);
  out.c = operand(std::max(s.batchA, s.batchB), s.m, w, s.m * s.n, s.n, false);
  out.bias = withBias ? memory::desc({1, 1, w}, dt::f32, memory::dims{w, w, 1}) : memory::desc();
  dnnl::primitive_attr attr;
  if (relu) {
    dnnl::post_ops ops;
    ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
    attr.set_post_ops(ops);
  }
  out.primitive = dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(out.a, out.b, out.bias, out.c), attr, cpuEngine()));
  return out;
}

// Block j0 of a product: B's columns are its rows when B is stored transposed.
void runBlock(const ColumnBlock& block, const MatMulShape& s, std::int64_t j0, const float* a, const float* b,
              const float* bias, float* c) {
  auto& eng = cpuEngine();
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, memory(block.a, eng, const_cast<float*>(a))},
      {DNNL_ARG_WEIGHTS, memory(block.b, eng, const_cast<float*>(b + (s.transposeB ? j0 * s.k : j0)))},
      {DNNL_ARG_DST, memory(block.c, eng, c + j0)},
  };
  if (bias) args.insert({DNNL_ARG_BIAS, memory(block.bias, eng, const_cast<float*>(bias + j0))});
  block.primitive.execute(cpuStream(), args);
  cpuStream().wait();
}

// Columns per block. oneDNN's own split of a product across threads changes its bits. On AVX2 its
// small-matrix sgemm ("nocopy", jit_avx_gemm_f32) gives each thread a range of C's rows cut at any
// row and runs it through 6-row micro-kernels; the 1–3 rows left at a range's end go through
// kernels that sum even and odd k apart (and for 1–2 rows multiply and add without FMA), so a
// row's bits depend on where the ranges end. With more threads (8 on AVX-512) it also splits the k
// sum. So the product is cut into column blocks fixed by its shape alone, each computed whole on
// one thread; rows are never cut. Widths are multiples of 16, oneDNN's column group, so a block's
// columns are grouped as in one whole call and the models' products keep the bits they had on one
// thread (though a narrower block may take another kernel: mnist-cnn's dense1 filter gradient
// above batch 64). Blocks of at least 1 MFLOP, and at most 64 of them.
constexpr std::int64_t kBlockColumns = 128;
constexpr double kBlockFlops = 1e6;
constexpr std::int64_t kMaxBlocks = 64;

std::int64_t blockColumns(const MatMulShape& s, double flops) {
  if (flops < kSmallFlops) return s.n;  // one block: waking the other threads costs more than they save
  const double flopsPerColumn = flops / s.n;
  std::int64_t w = kBlockColumns;
  while (w < s.n && ((s.n + w - 1) / w > kMaxBlocks || flopsPerColumn * w < kBlockFlops)) w *= 2;
  return std::min(w, s.n);
}

}  // namespace

void matMul(const MatMulShape& s, const float* a, const float* b, const float* bias, float* c, bool relu) {
  if (s.n == 0) return;  // no output
  const double flops = 2.0 * std::max(s.batchA, s.batchB) * s.m * s.k * s.n;
  const std::int64_t w = blockColumns(s, flops);
  const std::int64_t blocks = (s.n + w - 1) / w, last = s.n - (blocks - 1) * w;
  const int team = omp_get_max_threads();
  // Every block on one thread: oneDNN reads the thread count when it builds the primitive, and its
  // sgemm reads it again when it runs (outside a parallel region), so the guard spans both.
  SmallWorkOnOneThread oneThread(0);
  ColumnBlock full, tail;
  if (blocks > 1) full = columnBlock(s, w, bias != nullptr, relu);
  tail = columnBlock(s, last, bias != nullptr, relu);
  // One primitive may run on several threads at once (each thread has its own stream).
#pragma omp parallel for num_threads(team) schedule(static) if (blocks > 1)
  for (std::int64_t j = 0; j < blocks; j++) runBlock(j + 1 < blocks ? full : tail, s, j * w, a, b, bias, c);
}

}  // namespace gradfleet
