#include "max-pool.h"
#include <algorithm>
#include <limits>
#include <vector>
#include "dnnl-context.h"

namespace gradfleet {

namespace {


// Calls visit(at) with the offset of every in-bounds pixel of output (oy, ox)'s window, row-major.
template <typename F>
void forWindow(const PoolShape& s, std::int64_t b, std::int64_t oy, std::int64_t ox, F visit) {
  const std::int64_t y0 = oy * s.sh - s.top, x0 = ox * s.sw - s.left;
  for (std::int64_t yy = std::max<std::int64_t>(0, y0); yy < std::min(s.h, y0 + s.kh); yy++)
    for (std::int64_t xx = std::max<std::int64_t>(0, x0); xx < std::min(s.w, x0 + s.kw); xx++)
      visit(((b * s.h + yy) * s.w + xx) * s.c);
}

}  // namespace

void maxPoolForward(const PoolShape& s, const float* __restrict x, float* __restrict y) {
  const std::int64_t C = s.c;
#pragma omp parallel for schedule(static) if (s.n * s.h * s.w * C >= kParallelMin)
  for (std::int64_t b = 0; b < s.n; b++) {
    for (std::int64_t oy = 0; oy < s.oh; oy++)
      for (std::int64_t ox = 0; ox < s.ow; ox++) {
        float* __restrict out = y + ((b * s.oh + oy) * s.ow + ox) * C;
        std::fill(out, out + C, -std::numeric_limits<float>::infinity());
        forWindow(s, b, oy, ox, [&](std::int64_t at) {
          const float* __restrict in = x + at;
          for (std::int64_t c = 0; c < C; c++) out[c] = in[c] > out[c] ? in[c] : out[c];
        });
      }
  }
}

// The 2×2, stride-2 tiling both models use: windows cover the input without overlap, so every dx
// value is written once (no zero fill, no scatter) and the channel loop vectorises.
bool isTiling2x2(const PoolShape& s) {
  return s.kh == 2 && s.kw == 2 && s.sh == 2 && s.sw == 2 && s.top == 0 && s.left == 0 && s.h == 2 * s.oh && s.w == 2 * s.ow;
}

void tiling2x2Backward(const PoolShape& s, const float* __restrict x, const float* __restrict dy, float* __restrict dx) {
  const std::int64_t C = s.c, row = s.w * C;
#pragma omp parallel for schedule(static) if (s.n * s.h * s.w * C >= kParallelMin)
  for (std::int64_t r = 0; r < s.n * s.oh; r++)
    for (std::int64_t ox = 0; ox < s.ow; ox++) {
      const std::int64_t p00 = 2 * r * row + 2 * ox * C, p01 = p00 + C, p10 = p00 + row, p11 = p10 + C;
      const float* g = dy + (r * s.ow + ox) * C;
      for (std::int64_t c = 0; c < C; c++) {
        const float a = x[p00 + c], b = x[p01 + c], d = x[p10 + c], e = x[p11 + c];
        // First maximum in row-major order: a later position wins only when strictly greater.
        const bool bBeatsA = b > a;
        const float ab = bBeatsA ? b : a;
        const bool dWins = d > ab;
        const float abd = dWins ? d : ab;
        const bool eWins = e > abd;
        const bool dTop = dWins && !eWins, bTop = bBeatsA && !dWins && !eWins, aTop = !bBeatsA && !dWins && !eWins;
        dx[p00 + c] = aTop ? g[c] : 0.f;
        dx[p01 + c] = bTop ? g[c] : 0.f;
        dx[p10 + c] = dTop ? g[c] : 0.f;
        dx[p11 + c] = eWins ? g[c] : 0.f;
      }
    }
}

void maxPoolBackward(const PoolShape& s, const float* __restrict x, const float* __restrict dy, float* __restrict dx) {
  if (isTiling2x2(s)) return tiling2x2Backward(s, x, dy, dx);
  const std::int64_t C = s.c;
#pragma omp parallel if (s.n * s.h * s.w * C >= kParallelMin)
  {
    std::vector<float> best(C);
    std::vector<std::int64_t> bestAt(C);
#pragma omp for schedule(static)
    for (std::int64_t b = 0; b < s.n; b++) {
      std::fill(dx + b * s.h * s.w * C, dx + (b + 1) * s.h * s.w * C, 0.f);
      for (std::int64_t oy = 0; oy < s.oh; oy++)
        for (std::int64_t ox = 0; ox < s.ow; ox++) {
          std::fill(best.begin(), best.end(), -std::numeric_limits<float>::infinity());
          std::fill(bestAt.begin(), bestAt.end(), -1);
          forWindow(s, b, oy, ox, [&](std::int64_t at) {
            for (std::int64_t c = 0; c < C; c++) {
              const float v = x[at + c];
              const bool better = v > best[c];
              best[c] = better ? v : best[c];
              bestAt[c] = better ? at + c : bestAt[c];
            }
          });
          const float* g = dy + ((b * s.oh + oy) * s.ow + ox) * C;
          for (std::int64_t c = 0; c < C; c++)
            if (bestAt[c] >= 0) dx[bestAt[c]] += g[c];
        }
    }
  }
}

}  // namespace gradfleet
