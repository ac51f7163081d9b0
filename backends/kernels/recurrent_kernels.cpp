//===- backends/kernels/recurrent_kernels.cpp - gru, lstm and their BPTT ----===//
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
// tests/unit/backend_parity_test.cpp checks these. lstm and lstm_grad are
// the same loops around PyTorch's LSTM cell, carrying the cell state too.
//
//===----------------------------------------------------------------------===//
#include "backends/kernels/kernels.h"
#include "backends/kernels/parallel.h"
#include "backends/kernels/vector.h"

#include <algorithm>
#include <cmath>
#include <dnnl.hpp>
#include <vector>

namespace kiln::backends::kernels {

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

/// The LSTM cell of one sequence at one step: from x [4H] (input
/// projections), gh [4H] (recurrent products with b_hh), the previous cell
/// cp (null: 0), the state h and the saved [i, f, g, o, c].
KILN_VECTOR_CLONES void lstmCell(const float *x, const float *gh, const float *cp, int64_t H, float *h, float *saved) {
  const F32x16 one = splat16(1.0f);
  auto sigmoid16 = [&](F32x16 v) { return one / (one + fastExp16(-v)); };
  int64_t c = 0;
  for (; c + 16 <= H; c += 16) {
    F32x16 i = sigmoid16(load16(x + c) + load16(gh + c));
    F32x16 f = sigmoid16(load16(x + H + c) + load16(gh + H + c));
    F32x16 g = fastTanh16(load16(x + 2 * H + c) + load16(gh + 2 * H + c));
    F32x16 o = sigmoid16(load16(x + 3 * H + c) + load16(gh + 3 * H + c));
    F32x16 cell = f * (cp ? load16(cp + c) : F32x16{}) + i * g;
    store16(h + c, o * fastTanh16(cell));
    store16(saved + c, i), store16(saved + H + c, f), store16(saved + 2 * H + c, g), store16(saved + 3 * H + c, o);
    store16(saved + 4 * H + c, cell);
  }
  auto sigmoid = [](float v) { return 1.0f / (1.0f + fastExp(-v)); };
  for (; c < H; ++c) {
    float i = sigmoid(x[c] + gh[c]), f = sigmoid(x[H + c] + gh[H + c]);
    float g = fastTanh(x[2 * H + c] + gh[2 * H + c]), o = sigmoid(x[3 * H + c] + gh[3 * H + c]);
    float cell = f * (cp ? cp[c] : 0.0f) + i * g;
    h[c] = o * fastTanh(cell);
    saved[c] = i, saved[H + c] = f, saved[2 * H + c] = g, saved[3 * H + c] = o, saved[4 * H + c] = cell;
  }
}

/// gh[b] = b_hh + W_hh h_prev[b] for every sequence of the batch at scan
/// step s (h_prev = 0 at the first): one sgemm over the states of step
/// `prev`, read in place from h (row stride T H). G = gates * H.
void recurrentProducts(const GruShape &sh, int64_t s, int64_t prev, const float *w, const float *bias, const float *h,
                       int64_t G, float *gh) {
  for (int64_t b = 0; b < sh.batch; ++b) std::copy(bias, bias + G, gh + b * G);
  if (s > 0) gemm('N', 'T', sh.batch, G, sh.hidden, h + prev * sh.hidden, sh.steps * sh.hidden, w, sh.hidden, 1.0f, gh, G);
}

} // namespace

void lstm(const GruShape &sh, const float *xp, const float *w, const float *bias, const uint8_t *mask, float *h,
          float *saved) {
  const int64_t B = sh.batch, T = sh.steps, H = sh.hidden, G = 4 * H, S = 5 * H;
  std::vector<float> gh(static_cast<size_t>(B * G));
  for (int64_t s = 0; s < T; ++s) {
    int64_t t = sh.reverse ? T - 1 - s : s, prev = sh.reverse ? t + 1 : t - 1;
    recurrentProducts(sh, s, prev, w, bias, h, G, gh.data());
    parallelFor(B, B * G > (1 << 14), [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        int64_t row = b * T + t;
        float *hr = h + row * H, *sv = saved + row * S;
        const float *hp = s > 0 ? h + (b * T + prev) * H : nullptr;
        const float *cp = s > 0 ? saved + (b * T + prev) * S + G : nullptr;
        if (mask && !mask[row]) {
          // The state carried over this step, h and c.
          for (int64_t c = 0; c < H; ++c) hr[c] = hp ? hp[c] : 0.0f, sv[G + c] = cp ? cp[c] : 0.0f;
          std::fill(sv, sv + G, 0.0f);
          continue;
        }
        lstmCell(xp + row * G, gh.data() + b * G, cp, H, hr, sv);
      }
    });
  }
}

void lstmGrad(const GruShape &sh, const float *w, const float *h, const float *saved, const float *dh,
              const uint8_t *mask, float *dxp, float *dw, float *db) {
  const int64_t B = sh.batch, T = sh.steps, H = sh.hidden, G = 4 * H, S = 5 * H;
  std::vector<float> dhNext(static_cast<size_t>(B * H), 0.0f), dcNext(static_cast<size_t>(B * H), 0.0f);
  std::vector<float> dpre(static_cast<size_t>(B * G));
  std::vector<double> dbSum(static_cast<size_t>(G), 0.0);
  std::fill(dw, dw + G * H, 0.0f);
  for (int64_t s = T; s-- > 0;) {
    int64_t t = sh.reverse ? T - 1 - s : s, prev = sh.reverse ? t + 1 : t - 1;
    parallelFor(B, B * G > (1 << 14), [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        int64_t row = b * T + t;
        float *dx = dxp + row * G, *dp = dpre.data() + b * G, *nh = dhNext.data() + b * H, *nc = dcNext.data() + b * H;
        const float *dhT = dh + row * H;
        if (mask && !mask[row]) {
          // h and c carried over this step: their gradients pass through.
          std::fill(dx, dx + G, 0.0f);
          std::fill(dp, dp + G, 0.0f);
          for (int64_t c = 0; c < H; ++c) nh[c] += dhT[c];
          continue;
        }
        const float *sv = saved + row * S;
        const float *cp = s > 0 ? saved + (b * T + prev) * S + G : nullptr;
        for (int64_t c = 0; c < H; ++c) {
          float d = dhT[c] + nh[c];
          float i = sv[c], f = sv[H + c], g = sv[2 * H + c], o = sv[3 * H + c], tc = std::tanh(sv[4 * H + c]);
          float dc = nc[c] + d * o * (1.0f - tc * tc);
          dp[c] = dc * g * i * (1.0f - i);
          dp[H + c] = dc * (cp ? cp[c] : 0.0f) * f * (1.0f - f);
          dp[2 * H + c] = dc * i * (1.0f - g * g);
          dp[3 * H + c] = d * tc * o * (1.0f - o);
          nc[c] = dc * f;
          nh[c] = 0.0f; // the sgemm below adds W_hh^T dpre
        }
        std::copy(dp, dp + G, dx);
      }
    });
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < G; ++j) dbSum[j] += dpre[b * G + j];
    if (s == 0) break;
    gemm('N', 'N', B, H, G, dpre.data(), G, w, H, 1.0f, dhNext.data(), H);
    gemm('T', 'N', G, H, B, dpre.data(), G, h + prev * H, T * H, 1.0f, dw, H);
  }
  for (int64_t j = 0; j < G; ++j) db[j] = static_cast<float>(dbSum[j]);
}

void gru(const GruShape &sh, const float *xp, const float *w, const float *bias, const uint8_t *mask, float *h,
         float *gates) {
  const int64_t B = sh.batch, T = sh.steps, H = sh.hidden, G = 3 * H;
  std::vector<float> gh(static_cast<size_t>(B * G));
  for (int64_t s = 0; s < T; ++s) {
    int64_t t = sh.reverse ? T - 1 - s : s, prev = sh.reverse ? t + 1 : t - 1;
    recurrentProducts(sh, s, prev, w, bias, h, G, gh.data());
    parallelFor(B, B * G > (1 << 14), [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
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
    });
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
    parallelFor(B, B * G > (1 << 14), [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
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
    });
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < G; ++j) dbSum[j] += dgh[b * G + j];
    if (s == 0) break; // h_prev = 0: nothing flows into dW_hh or further back
    gemm('N', 'N', B, H, G, dgh.data(), G, w, H, 1.0f, dhNext.data(), H);
    gemm('T', 'N', G, H, B, dgh.data(), G, h + prev * H, T * H, 1.0f, dw, H);
  }
  for (int64_t j = 0; j < G; ++j) db[j] = static_cast<float>(dbSum[j]);
}

} // namespace kiln::backends::kernels
