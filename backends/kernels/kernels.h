//===- backends/kernels/kernels.h - CPU kernels oneDNN has no primitive for -*- C++ -*-===//
//
// Tight loops for the ops of the text classifiers that oneDNN 2.6 cannot
// express: embedding gather and scatter-add, reductions and their gradients
// under a padding mask, column sums (bias gradients), and the Adam update.
// They run on the same OpenMP threads as oneDNN (Debian's libdnnl uses
// OpenMP), so the two never compete for the cores, and their inner loops are
// contiguous so that the compiler vectorises them. Each is checked against
// the reference interpreter by tests/unit/backend_parity_test.cpp.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>

namespace kiln::backends::kernels {


/// out[i, :] = table[ids[i], :] for i < n; ids are checked by the caller.
void embedding(const float *table, const int32_t *ids, int64_t n, int64_t width, float *out);

/// out = 0; out[ids[i], :] += dy[i, :] (rows x width table).
void embeddingGrad(const int32_t *ids, const float *dy, int64_t n, int64_t rows, int64_t width, float *out);

/// x seen as [outer, len, inner] with a mask of one byte per (outer, len)
/// position (broadcast over inner; nullptr = all kept):
/// out[o, :] = sum over kept j of x[o, j, :], divided by the kept count when
/// `mean` (0 when nothing is kept).
void maskedReduce(const float *x, const uint8_t *mask, int64_t outer, int64_t len, int64_t inner, bool mean,
                  float *out);

/// The gradient of maskedReduce: dx[o, j, :] = dy[o, :] (/ count), 0 where masked.
void maskedReduceGrad(const float *dy, const uint8_t *mask, int64_t outer, int64_t len, int64_t inner, bool mean,
                      float *dx);

/// The maximum over kept j of x[o, j, :] (shapes and mask as for
/// maskedReduce): 0 where nothing is kept, NaN once a NaN is met.
void maskedMax(const float *x, const uint8_t *mask, int64_t outer, int64_t len, int64_t inner, float *out);

/// The gradient of maskedMax: dx[o, j, c] = dy[o, c] at the first kept j
/// where x[o, :, c] has its maximum (its first NaN, if any), 0 elsewhere.
void maskedMaxGrad(const float *x, const float *dy, const uint8_t *mask, int64_t outer, int64_t len, int64_t inner,
                   float *dx);

/// softmax (or log-softmax when `log`) of x seen as [outer, len, inner] over
/// len, where position (o, j, c) is kept when mask[maskRow[o] + j * maskStride]
/// is non-zero (the mask is broadcast over inner; null: every position).
/// Masked positions get 0 (-inf for log); a slice with nothing kept is all 0
/// (all -inf).
void maskedSoftmax(const float *x, const uint8_t *mask, const int64_t *maskRow, int64_t maskStride, int64_t outer,
                   int64_t len, int64_t inner, bool log, float *out);

/// softmax_grad (y * (dy - sum y dy)) or, with `log`, log_softmax_grad
/// (dy - exp(y) sum dy) over len of [outer, len, inner], the sums in double
/// as the reference's; 0 where the mask (as for maskedSoftmax; null = all
/// kept) drops a position.
void normalizeGrad(const float *y, const float *dy, const uint8_t *mask, const int64_t *maskRow, int64_t maskStride,
                   int64_t outer, int64_t len, int64_t inner, bool log, float *dx);

/// dropout in the training step: y[i] = x[i] / (1 - p) where
/// runtime::dropoutKeeps(seed, key, step, i, p), else 0 (the same draws as
/// the reference, compared as integers). With batchRows, x has n / rowSize
/// rows and element j of row r draws as element j of row batchRows[r]
/// (a data-parallel process's rows of a batch: ir/ops.def).
void dropout(const float *x, int64_t n, uint64_t seed, int64_t key, int64_t step, double p, float *y,
             const int32_t *batchRows = nullptr, int64_t rowSize = 0);

/// out[c] = sum over r of x[r, c] for x of rows x cols (a bias gradient).
void columnSums(const float *x, int64_t rows, int64_t cols, float *out);

/// out = beta * m + (1 - beta) * (square ? g * g : g).
void adamMoment(const float *m, const float *g, int64_t n, float beta, bool square, float *out);

/// out = p - stepSize * m / (sqrt(v) / bc2Sqrt + eps).
void adamUpdate(const float *p, const float *m, const float *v, int64_t n, float stepSize, float bc2Sqrt, float eps,
                float *out);

/// adam_step: m' = b1 m + (1 - b1) g, v' = b2 v + (1 - b2) g^2,
/// p' = p - stepSize m' / (sqrt(v') / bc2Sqrt + eps), in one pass (the
/// same float operations as adamMoment and adamUpdate).
void adamStep(const float *p, const float *m, const float *v, const float *g, int64_t n, float beta1, float beta2,
              float stepSize, float bc2Sqrt, float eps, float *pOut, float *mOut, float *vOut);

/// adam_rows (lazy Adam on an embedding table of rows x width): the rows
/// that ids[0..n) name get adamStep with g = the sum of their rows of dy, in
/// position order (+ weightDecay * p); every other row keeps p, m and v.
/// pOut, mOut, vOut may be p, m, v themselves (the training loop updates a
/// table in place, so that a step costs the rows it touches); otherwise the
/// untouched rows are copied.
void adamRows(const float *p, const float *m, const float *v, const int32_t *ids, const float *dy, int64_t n,
              int64_t rows, int64_t width, float beta1, float beta2, float stepSize, float bc2Sqrt, float eps,
              float weightDecay, float *pOut, float *mOut, float *vOut);

/// The sizes of an attention: `batch` independent slices (the batch dims
/// flattened), q [batch, tq, d], k [batch, tk, d], v [batch, tk, dv].
struct AttentionShape {
  int64_t batch, tq, tk, d, dv;
  float scale;
};

/// Where a broadcast bool mask keeps key j for query i of slice b:
/// data[sliceOffset[b] + i * rowStride + j * colStride] != 0 (a stride is 0
/// along a dim the mask broadcasts over).
struct AttentionMask {
  const uint8_t *data;
  const int64_t *sliceOffset;
  int64_t rowStride, colStride;
};

/// out = softmax(scale q k^T, masked) v and lse = each row's log-sum-exp
/// (attention_kernels.cpp); mask may be null; weights, when not null,
/// receives the softmax weights [batch, tq, tk].
void attention(const AttentionShape &shape, const float *q, const float *k, const float *v, const AttentionMask *mask,
               float *out, float *lse, float *weights = nullptr);

/// dq, dk, dv of attention, the weights recomputed from lse.
void attentionGrad(const AttentionShape &shape, const float *q, const float *k, const float *v, const float *lse,
                   const float *dout, const AttentionMask *mask, float *dq, float *dk, float *dv);

/// The sizes of an additive attention with pooling: `batch` slices (the
/// batch dims flattened) of h, k [batch, t, e] and v [batch, t, ev].
struct AdditiveShape {
  int64_t batch, t, e, ev;
  bool mean; ///< mean pooling (else sum)
};

/// additive_attention: p = softmax over t of tanh(h + k) w + b, out =
/// the mean or sum over t of p v, where mask (one byte per [batch, t]
/// position, null = all kept) drops positions (attention_kernels.cpp).
void additiveAttention(const AdditiveShape &shape, const float *h, const float *k, const float *v, const float *w,
                       float b, const uint8_t *mask, float *out, float *p);

/// additive_attention_grad: da (of h and of k), dv, dw [1, e] and db [1],
/// tanh(h + k) recomputed.
void additiveAttentionGrad(const AdditiveShape &shape, const float *h, const float *k, const float *v, const float *w,
                           const float *p, const float *dout, const uint8_t *mask, float *da, float *dv, float *dw,
                           float *db);

/// The ops an elementwise program may apply (ir/elementwise.h), as the
/// kernel numbers them.
enum class ElementwiseOp : uint8_t {
  Add, Sub, Mul, Div, Neg, Exp, Log, Tanh, Relu, Sigmoid, Sqrt, Erf, TanhGrad, SigmoidGrad, ReluGrad
};

/// One step: slot `operands + k` (k its index) = op(slot a[, slot b]),
/// where slots [0, operands) are the program's operands.
struct ElementwiseStep {
  ElementwiseOp op;
  int a, b;
};

/// out[i] = the last step's value at element i < n, operand j read as
/// operands[j][i], or operands[j][0] for every i when scalar[j]; no
/// intermediate is written to memory beyond a per-thread block
/// (elementwise_kernel.cpp).
void elementwise(const ElementwiseStep *steps, int numSteps, const float *const *operands, const uint8_t *scalar,
                 int numOperands, int64_t n, float *out);

/// The sizes of a gru (recurrent_kernels.cpp): xp [batch, steps, 3 hidden].
struct GruShape {
  int64_t batch, steps, hidden;
  bool reverse;
};

/// gru: h [batch, steps, hidden] and the saved gates [batch, steps, 4 hidden];
/// mask one byte per (batch, step) or null.
void gru(const GruShape &shape, const float *xp, const float *w, const float *bias, const uint8_t *mask, float *h,
         float *gates);

/// gru_grad: dxp, dw [3 hidden, hidden], db [3 hidden].
void gruGrad(const GruShape &shape, const float *w, const float *h, const float *gates, const float *dh,
             const uint8_t *mask, float *dxp, float *dw, float *db);

/// lstm: h [batch, steps, hidden] and the saved [i, f, g, o, c] of each step
/// [batch, steps, 5 hidden] (the shape's sizes as for gru).
void lstm(const GruShape &shape, const float *xp, const float *w, const float *bias, const uint8_t *mask, float *h,
          float *saved);

/// lstm_grad: dxp, dw [4 hidden, hidden], db [4 hidden].
void lstmGrad(const GruShape &shape, const float *w, const float *h, const float *saved, const float *dh,
              const uint8_t *mask, float *dxp, float *dw, float *db);

} // namespace kiln::backends::kernels
