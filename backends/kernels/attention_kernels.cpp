//===- backends/kernels/attention_kernels.cpp - fused attention on the CPU --===//
//
// attention and attention_grad (ir/ops.def) for the oneDNN backend, written
// for memory, not just speed: neither ever holds the [batch, Tq, Tk]
// weights. The work is cut into blocks of kRows query rows of one batch
// slice; a block's scores [kRows, Tk] live in a per-thread buffer, so the
// memory beyond the operands and results is threads x kRows x Tk floats,
// linear in T (the per-row log-sum-exp the forward keeps is [batch, Tq]).
//
// Forward, per block: S = scale Q K^T (one GEMM), the masked softmax of
// each row computed in place (its max, exp, sum; lse = max + log(sum)),
// O = P V (one GEMM). Blocks are independent: all of them share the threads.
//
// Backward, per batch slice, its blocks in order: P is recomputed as
// exp(S - lse) and renormalised per row (see ir/decompose.cpp on why), then
// dP = dO V^T, dS = P (dP - rowsum(P dP)) scale, dQ = dS K, and dK += dS^T Q,
// dV += P^T dO accumulate over the slice's blocks. Slices share the threads,
// so no two threads ever add into the same dK or dV.
//
// The GEMMs are oneDNN's dnnl_sgemm (row-major); called inside the OpenMP
// region each runs on its calling thread.
//
//===----------------------------------------------------------------------===//
#include "backends/kernels/kernels.h"
#include "backends/kernels/vector.h"

#include <algorithm>
#include <cmath>
#include <dnnl.h>
#include <limits>
#include "backends/kernels/parallel.h"
#include <stdexcept>
#include <vector>

namespace kiln::backends::kernels {

namespace {

/// Query rows per block: the scores of a block (kRows x Tk floats) stay in
/// L2 for T up to a few thousand.
constexpr int64_t kRows = 128;

void gemm(char ta, char tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda, const float *b,
          int64_t ldb, float beta, float *c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) { // oneDNN's sgemm wants K >= 1; C = beta C
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0 ? 0.0f : beta * c[i * ldc + j];
    return;
  }
  if (dnnl_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) != dnnl_success)
    throw std::runtime_error("dnnl_sgemm failed");
}

/// Whether key j is kept for query row i of slice b.
struct MaskView {
  const AttentionMask &m;
  const uint8_t *row(int64_t b, int64_t i) const { return m.data + m.sliceOffset[b] + i * m.rowStride; }
};

/// Masked keys of a row get -inf (branch-free, so the loop vectorises).
[[gnu::always_inline]] inline void maskRow(float *row, int64_t tk, const uint8_t *mrow, int64_t colStride) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  if (colStride == 1) {
#pragma omp simd
    for (int64_t j = 0; j < tk; ++j) row[j] = mrow[j] ? row[j] : kNegInf;
  } else {
    for (int64_t j = 0; j < tk; ++j) row[j] = mrow[j * colStride] ? row[j] : kNegInf;
  }
}

/// Turns the raw scores of rows [r0, r0 + rows) of slice b into softmax
/// weights in place, writing each row's log-sum-exp; masked keys get 0, a
/// row with no key kept is all 0 with lse -inf.
[[gnu::always_inline]] inline void softmaxRows(float *s, int64_t rows, int64_t tk, int64_t b, int64_t r0, const AttentionMask *mask, float *lse) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < rows; ++i) {
    float *row = s + i * tk;
    if (mask) maskRow(row, tk, MaskView{*mask}.row(b, r0 + i), mask->colStride);
    float mx = rowMax(row, tk);
    if (mx == kNegInf) {
      std::fill(row, row + tk, 0.0f);
      lse[i] = kNegInf;
      continue;
    }
    float sum = expShiftedSum(row, tk, mx); // 0 for masked keys (-inf)
    float inv = 1.0f / sum;
#pragma omp simd
    for (int64_t j = 0; j < tk; ++j) row[j] *= inv;
    lse[i] = mx + std::log(sum);
  }
}

} // namespace

namespace {

/// Rows [r0, r0 + rows) of slice b: scores, softmax, weighted values.
KILN_VECTOR_CLONES
void forwardBlock(const AttentionShape &sh, int64_t b, int64_t r0, int64_t rows, const float *q, const float *k,
                  const float *v, const AttentionMask *mask, float *scores, float *out, float *lse, float *weights) {
  const float *qb = q + (b * sh.tq + r0) * sh.d, *kb = k + b * sh.tk * sh.d, *vb = v + b * sh.tk * sh.dv;
  gemm('N', 'T', rows, sh.tk, sh.d, sh.scale, qb, sh.d, kb, sh.d, 0.0f, scores, sh.tk);
  softmaxRows(scores, rows, sh.tk, b, r0, mask, lse + b * sh.tq + r0);
  // Asked for (predict --explain), the block's weights are copied out while
  // they are at hand; the training step never asks, so it pays one branch.
  if (weights) std::copy(scores, scores + rows * sh.tk, weights + (b * sh.tq + r0) * sh.tk);
  gemm('N', 'N', rows, sh.dv, sh.tk, 1.0f, scores, sh.tk, vb, sh.dv, 0.0f, out + (b * sh.tq + r0) * sh.dv, sh.dv);
}

/// The gradients of slice b, its blocks in order (dk, dv accumulate).
KILN_VECTOR_CLONES
void backwardSlice(const AttentionShape &sh, int64_t b, const float *q, const float *k, const float *v,
                   const float *lse, const float *dout, const AttentionMask *mask, float *dq, float *dk, float *dv,
                   float *p, float *dp) {
  const int64_t blocks = (sh.tq + kRows - 1) / kRows;
  const float *kb = k + b * sh.tk * sh.d, *vb = v + b * sh.tk * sh.dv;
  float *dkb = dk + b * sh.tk * sh.d, *dvb = dv + b * sh.tk * sh.dv;
  std::fill(dkb, dkb + sh.tk * sh.d, 0.0f);
  std::fill(dvb, dvb + sh.tk * sh.dv, 0.0f);
  for (int64_t blk = 0; blk < blocks; ++blk) {
    int64_t r0 = blk * kRows, rows = std::min(kRows, sh.tq - r0);
    const float *qb = q + (b * sh.tq + r0) * sh.d, *dob = dout + (b * sh.tq + r0) * sh.dv;
    const float *lb = lse + b * sh.tq + r0;
    // P = exp(scale Q K^T - lse), masked keys 0, each row renormalised.
    gemm('N', 'T', rows, sh.tk, sh.d, sh.scale, qb, sh.d, kb, sh.d, 0.0f, p, sh.tk);
    for (int64_t i = 0; i < rows; ++i) {
      float *row = p + i * sh.tk;
      float l = lb[i];
      if (l == -std::numeric_limits<float>::infinity()) {
        std::fill(row, row + sh.tk, 0.0f);
        continue;
      }
      if (mask) maskRow(row, sh.tk, MaskView{*mask}.row(b, r0 + i), mask->colStride);
      float sum = expShiftedSum(row, sh.tk, l);
      float inv = sum > 0 ? 1.0f / sum : 0.0f;
#pragma omp simd
      for (int64_t j = 0; j < sh.tk; ++j) row[j] *= inv;
    }
    // dV += P^T dO.
    gemm('T', 'N', sh.tk, sh.dv, rows, 1.0f, p, sh.tk, dob, sh.dv, 1.0f, dvb, sh.dv);
    // dP = dO V^T; dS = P (dP - rowsum(P dP)) scale, into dp.
    gemm('N', 'T', rows, sh.tk, sh.dv, 1.0f, dob, sh.dv, vb, sh.dv, 0.0f, dp, sh.tk);
    for (int64_t i = 0; i < rows; ++i) {
      const float *prow = p + i * sh.tk;
      float *drow = dp + i * sh.tk;
      float dot = rowDot(prow, drow, sh.tk);
#pragma omp simd
      for (int64_t j = 0; j < sh.tk; ++j) drow[j] = prow[j] * (drow[j] - dot) * sh.scale;
    }
    // dQ = dS K; dK += dS^T Q.
    gemm('N', 'N', rows, sh.d, sh.tk, 1.0f, dp, sh.tk, kb, sh.d, 0.0f, dq + (b * sh.tq + r0) * sh.d, sh.d);
    gemm('T', 'N', sh.tk, sh.d, rows, 1.0f, dp, sh.tk, qb, sh.d, 1.0f, dkb, sh.d);
  }
}

/// Enough work to be worth a second thread.
bool worthThreads(const AttentionShape &sh) { return sh.batch * sh.tq * sh.tk * (sh.d + sh.dv) > (1 << 16); }

} // namespace

// With one work item (one block, one slice) or too little work, the loop
// runs with no OpenMP construct around it (parallelFor calls it directly),
// not in an `omp parallel if (false)` region: from inside such an inactive
// region, the GEMMs' own OpenMP team is a nested one with threads of its
// own, which fight the idle outer workers for the two cores (a batch-1
// attention took 8 ms instead of 0.2 ms). Outside any region, the GEMMs use
// the cores themselves.

void attention(const AttentionShape &sh, const float *q, const float *k, const float *v, const AttentionMask *mask,
               float *out, float *lse, float *weights) {
  const int64_t blocks = (sh.tq + kRows - 1) / kRows, items = sh.batch * blocks;
  auto run = [&](int64_t item, std::vector<float> &scores) {
    int64_t b = item / blocks, r0 = (item % blocks) * kRows;
    forwardBlock(sh, b, r0, std::min(kRows, sh.tq - r0), q, k, v, mask, scores.data(), out, lse, weights);
  };
  const size_t scoresSize = static_cast<size_t>(kRows * std::max<int64_t>(sh.tk, 1));
  parallelFor(items, worthThreads(sh), [&](int64_t begin, int64_t end) {
    std::vector<float> scores(scoresSize);
    for (int64_t item = begin; item < end; ++item) run(item, scores);
  });
}

void attentionGrad(const AttentionShape &sh, const float *q, const float *k, const float *v, const float *lse,
                   const float *dout, const AttentionMask *mask, float *dq, float *dk, float *dv) {
  const size_t block = static_cast<size_t>(kRows * std::max<int64_t>(sh.tk, 1));
  parallelFor(sh.batch, worthThreads(sh), [&](int64_t begin, int64_t end) {
    std::vector<float> p(block), dp(block);
    for (int64_t b = begin; b < end; ++b) backwardSlice(sh, b, q, k, v, lse, dout, mask, dq, dk, dv, p.data(), dp.data());
  });
}

// --- additive attention with pooling --------------------------------------------
//
// Per batch slice, in one thread: the scores s_t = tanh(h_t + k_t) . w + b
// of its t positions (into p), their masked softmax in place, and the pooled
// sum of p_t v_t: h, k and v are each read once and no [t, e] intermediate
// is written. The backward recomputes tanh(h_t + k_t) for the kept
// positions instead of reading a stored one, and writes dw's and db's share
// of each slice into its own row, summed in slice order afterwards, so that
// the result does not depend on the thread count.

namespace {

/// Enough work to be worth a second thread.
bool worthThreads(const AdditiveShape &sh) { return sh.batch > 1 && sh.batch * sh.t * (sh.e + sh.ev) > (1 << 15); }

/// The number of kept positions of a slice.
int64_t keptCount(const uint8_t *mask, int64_t t) {
  if (!mask) return t;
  int64_t n = 0;
  for (int64_t j = 0; j < t; ++j) n += mask[j] != 0;
  return n;
}

/// sum over e of tanh(h[e] + k[e]) w[e].
[[gnu::always_inline]] inline float tanhDot(const float *h, const float *k, const float *w, int64_t e) {
  F32x16 acc{};
  int64_t c = 0;
  for (; c + kLanes <= e; c += kLanes) acc += fastTanh16(load16(h + c) + load16(k + c)) * load16(w + c);
  float sum = sum16(acc);
  for (; c < e; ++c) sum += fastTanh(h[c] + k[c]) * w[c];
  return sum;
}

KILN_VECTOR_CLONES
void additiveForwardSlice(const AdditiveShape &sh, int64_t bi, const float *h, const float *k, const float *v,
                          const float *w, float b, const uint8_t *mask, float *out, float *p) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const float *hb = h + bi * sh.t * sh.e, *kb = k + bi * sh.t * sh.e, *vb = v + bi * sh.t * sh.ev;
  const uint8_t *mb = mask ? mask + bi * sh.t : nullptr;
  float *pb = p + bi * sh.t, *ob = out + bi * sh.ev;
  for (int64_t j = 0; j < sh.t; ++j)
    pb[j] = mb && !mb[j] ? kNegInf : tanhDot(hb + j * sh.e, kb + j * sh.e, w, sh.e) + b;
  std::fill(ob, ob + sh.ev, 0.0f);
  float mx = rowMax(pb, sh.t);
  if (mx == kNegInf) { // nothing kept: weights and output 0
    std::fill(pb, pb + sh.t, 0.0f);
    return;
  }
  float inv = 1.0f / expShiftedSum(pb, sh.t, mx);
  for (int64_t j = 0; j < sh.t; ++j) pb[j] *= inv;
  // Masked positions are skipped, not added as 0 * v: the reference's
  // masked reduction never reads them.
  for (int64_t j = 0; j < sh.t; ++j) {
    if (mb && !mb[j]) continue;
    const float *vj = vb + j * sh.ev;
    float pj = pb[j];
#pragma omp simd
    for (int64_t c = 0; c < sh.ev; ++c) ob[c] += pj * vj[c];
  }
  if (sh.mean) {
    float scale = 1.0f / static_cast<float>(keptCount(mb, sh.t));
    for (int64_t c = 0; c < sh.ev; ++c) ob[c] *= scale;
  }
}

/// dp_t = g . v_t (0 where masked), ds_t = p_t (dp_t - sum p dp); dv_t =
/// p_t g; da_t = ds_t w (1 - u_t^2) with u_t = tanh(h_t + k_t), skipped
/// (0) where ds_t is 0; dw += ds_t u_t and db += ds_t into the slice's own
/// rows. ds is scratch of t floats.
KILN_VECTOR_CLONES
void additiveBackwardSlice(const AdditiveShape &sh, int64_t bi, const float *h, const float *k, const float *v,
                           const float *w, const float *p, const float *dout, const uint8_t *mask, float *da, float *dv,
                           float *dwRow, float *dbRow, float *ds) {
  const float *hb = h + bi * sh.t * sh.e, *kb = k + bi * sh.t * sh.e, *vb = v + bi * sh.t * sh.ev;
  const float *pb = p + bi * sh.t, *g = dout + bi * sh.ev;
  const uint8_t *mb = mask ? mask + bi * sh.t : nullptr;
  float *dab = da + bi * sh.t * sh.e, *dvb = dv + bi * sh.t * sh.ev;
  std::fill(dwRow, dwRow + sh.e, 0.0f);
  *dbRow = 0.0f;
  int64_t kept = keptCount(mb, sh.t);
  float scale = sh.mean ? (kept > 0 ? 1.0f / static_cast<float>(kept) : 0.0f) : 1.0f;
  float weighted = 0; // sum over t of p_t dp_t
  for (int64_t j = 0; j < sh.t; ++j) {
    float *dvj = dvb + j * sh.ev;
    if (mb && !mb[j]) {
      std::fill(dvj, dvj + sh.ev, 0.0f);
      ds[j] = 0.0f;
      continue;
    }
    float pj = pb[j] * scale;
#pragma omp simd
    for (int64_t c = 0; c < sh.ev; ++c) dvj[c] = pj * g[c];
    ds[j] = rowDot(g, vb + j * sh.ev, sh.ev) * scale;
    weighted += pb[j] * ds[j];
  }
  for (int64_t j = 0; j < sh.t; ++j) {
    float *daj = dab + j * sh.e;
    // As softmax_grad does, over every position (a masked one has p = 0
    // when p is the forward's, and then nothing to add).
    float dsj = pb[j] * (ds[j] - weighted);
    if (dsj == 0.0f) {
      std::fill(daj, daj + sh.e, 0.0f);
      continue;
    }
    *dbRow += dsj;
    const float *hj = hb + j * sh.e, *kj = kb + j * sh.e;
    int64_t c = 0;
    for (; c + kLanes <= sh.e; c += kLanes) {
      F32x16 u = fastTanh16(load16(hj + c) + load16(kj + c));
      store16(daj + c, dsj * load16(w + c) * (1.0f - u * u));
      store16(dwRow + c, load16(dwRow + c) + dsj * u);
    }
    for (; c < sh.e; ++c) {
      float u = fastTanh(hj[c] + kj[c]);
      daj[c] = dsj * w[c] * (1.0f - u * u);
      dwRow[c] += dsj * u;
    }
  }
}

} // namespace

void additiveAttention(const AdditiveShape &sh, const float *h, const float *k, const float *v, const float *w,
                       float b, const uint8_t *mask, float *out, float *p) {
  parallelFor(sh.batch, worthThreads(sh), [&](int64_t begin, int64_t end) {
    for (int64_t bi = begin; bi < end; ++bi) additiveForwardSlice(sh, bi, h, k, v, w, b, mask, out, p);
  });
}

void additiveAttentionGrad(const AdditiveShape &sh, const float *h, const float *k, const float *v, const float *w,
                           const float *p, const float *dout, const uint8_t *mask, float *da, float *dv, float *dw,
                           float *db) {
  std::vector<float> dwRows(static_cast<size_t>(sh.batch * sh.e)), dbRows(static_cast<size_t>(sh.batch));
  parallelFor(sh.batch, worthThreads(sh), [&](int64_t begin, int64_t end) {
    std::vector<float> ds(static_cast<size_t>(std::max<int64_t>(sh.t, 1)));
    for (int64_t bi = begin; bi < end; ++bi)
      additiveBackwardSlice(sh, bi, h, k, v, w, p, dout, mask, da, dv, dwRows.data() + bi * sh.e, dbRows.data() + bi,
                            ds.data());
  });
  std::fill(dw, dw + sh.e, 0.0f);
  *db = 0.0f;
  for (int64_t bi = 0; bi < sh.batch; ++bi) {
    for (int64_t c = 0; c < sh.e; ++c) dw[c] += dwRows[static_cast<size_t>(bi * sh.e + c)];
    *db += dbRows[static_cast<size_t>(bi)];
  }
}

} // namespace kiln::backends::kernels
