//===- backends/onednn/recurrent_kernels.cpp - gru and its BPTT ------------===//
//
// gru (one direction of PyTorch's GRU) and gru_grad on the oneDNN backend.
// oneDNN 2.6 has GRU primitives (its linear-before-reset GRU is PyTorch's
// cell), but they take no sequence lengths: a padded batch would run its
// padding through the cell, where kiln's gru carries the state over dropped
// steps, as packed sequences do. So the loop over time is kiln's, and each
// step is one oneDNN sgemm for the whole batch (the recurrent product
// H_prev W_hh^T, read in place from the rows of h, whose row stride is T H)
// and one pass of the gate arithmetic over the batch. The backward runs the
// steps in reverse: two sgemms per step (the gradient into H_prev and the
// accumulated dW_hh) around the gate derivatives. The formulas are those of
// the reference kernels (backends/reference/interpreter.cpp), against which
// tests/unit/backend_parity_test.cpp checks these.
//
//===----------------------------------------------------------------------===//
#include "backends/onednn/kernels.h"
#include "backends/onednn/vector.h"

#include <algorithm>
#include <cmath>
#include <dnnl.hpp>
#include <vector>

namespace kiln::backends::onednn::kernels {

namespace {

/// The cell of one sequence at one step: from its input projections x
/// [3H], recurrent products gh [3H] and previous state hp (null: 0), the
/// state h and the saved gates g = [r, z, n, hn]. 16 lanes at a time with
/// kiln's exp and tanh (within a few ulp of std::), which vectorise.
KILN_VECTOR_CLONES void gruCell(const float *x, const float *gh, const float *hp, int64_t H, float *h, float *g) {
  int64_t c = 0;
  const F32x16 one = splat16(1.0f);
  for (; c + 16 <= H; c += 16) {
    F32x16 r = one / (one + fastExp16(-(load16(x + c) + load16(gh + c))));
    F32x16 z = one / (one + fastExp16(-(load16(x + H + c) + load16(gh + H + c))));
    F32x16 hn = load16(gh + 2 * H + c);
    F32x16 n = fastTanh16(load16(x + 2 * H + c) + r * hn);
    F32x16 prev = hp ? load16(hp + c) : F32x16{};
    store16(h + c, (one - z) * n + z * prev);
    store16(g + c, r), store16(g + H + c, z), store16(g + 2 * H + c, n), store16(g + 3 * H + c, hn);
  }
  for (; c < H; ++c) {
    float r = 1.0f / (1.0f + fastExp(-(x[c] + gh[c])));
    float z = 1.0f / (1.0f + fastExp(-(x[H + c] + gh[H + c])));
    float hn = gh[2 * H + c];
    float n = fastTanh(x[2 * H + c] + r * hn);
    h[c] = (1.0f - z) * n + z * (hp ? hp[c] : 0.0f);
    g[c] = r, g[H + c] = z, g[2 * H + c] = n, g[3 * H + c] = hn;
  }
}

/// Row-major C = alpha op(A) op(B) + beta C through oneDNN.
void gemm(char ta, char tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b, int64_t ldb,
          float beta, float *c, int64_t ldc) {
  dnnl::sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

} // namespace

void gru(const GruShape &sh, const float *xp, const float *w, const float *bias, const uint8_t *mask, float *h,
         float *gates) {
  const int64_t B = sh.batch, T = sh.steps, H = sh.hidden, G = 3 * H;
  std::vector<float> gh(static_cast<size_t>(B * G));
  for (int64_t s = 0; s < T; ++s) {
    int64_t t = sh.reverse ? T - 1 - s : s, prev = sh.reverse ? t + 1 : t - 1;
    for (int64_t b = 0; b < B; ++b) std::copy(bias, bias + G, gh.data() + b * G);
    if (s > 0) gemm('N', 'T', B, G, H, h + prev * H, T * H, w, H, 1.0f, gh.data(), G);
#pragma omp parallel for schedule(static) if (B * G > (1 << 14))
    for (int64_t b = 0; b < B; ++b) {
      int64_t row = b * T + t;
      float *hr = h + row * H, *g = gates + row * 4 * H;
      const float *hp = s > 0 ? h + (b * T + prev) * H : nullptr;
      if (mask && !mask[row]) {
        for (int64_t c = 0; c < H; ++c) hr[c] = hp ? hp[c] : 0.0f;
        std::fill(g, g + 4 * H, 0.0f);
        continue;
      }
      gruCell(xp + row * G, gh.data() + b * G, hp, H, hr, g);
    }
  }
}

void gruGrad(const GruShape &sh, const float *w, const float *h, const float *gates, const float *dh,
             const uint8_t *mask, float *dxp, float *dw, float *db) {
  const int64_t B = sh.batch, T = sh.steps, H = sh.hidden, G = 3 * H;
  std::vector<float> dhNext(static_cast<size_t>(B * H), 0.0f), dgh(static_cast<size_t>(B * G));
  std::vector<double> dbSum(static_cast<size_t>(G), 0.0); // B T terms of either sign: summed in double
  std::fill(dw, dw + G * H, 0.0f);
  for (int64_t s = T; s-- > 0;) {
    int64_t t = sh.reverse ? T - 1 - s : s, prev = sh.reverse ? t + 1 : t - 1;
#pragma omp parallel for schedule(static) if (B * G > (1 << 14))
    for (int64_t b = 0; b < B; ++b) {
      int64_t row = b * T + t;
      float *dx = dxp + row * G, *dg = dgh.data() + b * G, *next = dhNext.data() + b * H;
      const float *dhT = dh + row * H;
      if (mask && !mask[row]) {
        // The state carried over this step: its gradient passes through.
        std::fill(dx, dx + G, 0.0f);
        std::fill(dg, dg + G, 0.0f);
        for (int64_t c = 0; c < H; ++c) next[c] += dhT[c];
        continue;
      }
      const float *hp = s > 0 ? h + (b * T + prev) * H : nullptr;
      const float *g = gates + row * 4 * H;
      for (int64_t c = 0; c < H; ++c) {
        float d = dhT[c] + next[c];
        float r = g[c], z = g[H + c], n = g[2 * H + c], hn = g[3 * H + c];
        float p = hp ? hp[c] : 0.0f;
        float dn = d * (1.0f - z) * (1.0f - n * n);
        float dz = d * (p - n) * z * (1.0f - z);
        float dr = dn * hn * r * (1.0f - r);
        dx[c] = dr, dx[H + c] = dz, dx[2 * H + c] = dn;
        dg[c] = dr, dg[H + c] = dz, dg[2 * H + c] = dn * r;
        next[c] = d * z;
      }
    }
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < G; ++j) dbSum[j] += dgh[b * G + j];
    if (s == 0) break; // h_prev = 0: nothing flows into dW_hh or further back
    gemm('N', 'N', B, H, G, dgh.data(), G, w, H, 1.0f, dhNext.data(), H);
    gemm('T', 'N', G, H, B, dgh.data(), G, h + prev * H, T * H, 1.0f, dw, H);
  }
  for (int64_t j = 0; j < G; ++j) db[j] = static_cast<float>(dbSum[j]);
}

} // namespace kiln::backends::onednn::kernels
