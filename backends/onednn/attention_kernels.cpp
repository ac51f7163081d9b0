//===- backends/onednn/attention_kernels.cpp - fused attention on the CPU --===//
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
#include "backends/onednn/kernels.h"
#include "backends/onednn/vector.h"

#include <algorithm>
#include <cmath>
#include <dnnl.h>
#include <limits>
#include <omp.h>
#include <stdexcept>
#include <vector>

namespace kiln::backends::onednn::kernels {

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
                  const float *v, const AttentionMask *mask, float *scores, float *out, float *lse) {
  const float *qb = q + (b * sh.tq + r0) * sh.d, *kb = k + b * sh.tk * sh.d, *vb = v + b * sh.tk * sh.dv;
  gemm('N', 'T', rows, sh.tk, sh.d, sh.scale, qb, sh.d, kb, sh.d, 0.0f, scores, sh.tk);
  softmaxRows(scores, rows, sh.tk, b, r0, mask, lse + b * sh.tq + r0);
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

void attention(const AttentionShape &sh, const float *q, const float *k, const float *v, const AttentionMask *mask,
               float *out, float *lse) {
  const int64_t blocks = (sh.tq + kRows - 1) / kRows, items = sh.batch * blocks;
#pragma omp parallel if (items > 1 && worthThreads(sh))
  {
    std::vector<float> scores(static_cast<size_t>(kRows * std::max<int64_t>(sh.tk, 1)));
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item) {
      int64_t b = item / blocks, r0 = (item % blocks) * kRows;
      forwardBlock(sh, b, r0, std::min(kRows, sh.tq - r0), q, k, v, mask, scores.data(), out, lse);
    }
  }
}

void attentionGrad(const AttentionShape &sh, const float *q, const float *k, const float *v, const float *lse,
                   const float *dout, const AttentionMask *mask, float *dq, float *dk, float *dv) {
#pragma omp parallel if (sh.batch > 1 && worthThreads(sh))
  {
    size_t block = static_cast<size_t>(kRows * std::max<int64_t>(sh.tk, 1));
    std::vector<float> p(block), dp(block);
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < sh.batch; ++b) backwardSlice(sh, b, q, k, v, lse, dout, mask, dq, dk, dv, p.data(), dp.data());
  }
}

} // namespace kiln::backends::onednn::kernels
