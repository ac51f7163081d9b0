//===- backends/kernels/entries.cpp - kiln's kernels behind one C ABI -----===//
//
// Each entry unpacks its record (the layout above it; `v:` marks a value
// id, read as values[id]) and calls its kernel.
//
//===----------------------------------------------------------------------===//
#include "backends/kernels/entries.h"

#include "backends/kernels/kernels.h"
#include "backends/kernels/parallel.h"

#include <bit>
#include <cmath>

namespace {

using namespace kiln::backends::kernels;

struct Record {
  void *const *values;
  const int64_t *a;
  int64_t operator[](int k) const { return a[k]; }
  float *f32(int k) const { return a[k] < 0 ? nullptr : static_cast<float *>(values[a[k]]); }
  const int32_t *i32(int k) const { return static_cast<const int32_t *>(values[a[k]]); }
  const uint8_t *mask(int k) const { return a[k] < 0 ? nullptr : static_cast<const uint8_t *>(values[a[k]]); }
  double f64(int k) const { return std::bit_cast<double>(a[k]); }
  float f(int k) const { return static_cast<float>(f64(k)); }
};

} // namespace

extern "C" {

/// With `node` >= 0, the ids (computed in the graph, not checked before
/// the run) are checked against [0, bound) first.
static void checkIds(const int32_t *ids, int64_t n, int64_t bound, int64_t node) {
  if (node < 0) return;
  for (int64_t i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= bound) kiln_rt_index_error(node, ids[i], i, bound);
}

// [v:table, v:ids, v:out, n, width, rows, check node (-1: the ids were checked before the run)]
void kiln_k_embedding(void *const *values, const int64_t *args) {
  Record r{values, args};
  checkIds(r.i32(1), r[3], r[5], r[6]);
  embedding(r.f32(0), r.i32(1), r[3], r[4], r.f32(2));
}

// [v:ids, v:dy, v:out, n, rows, width, check node (-1: checked before the run)]
void kiln_k_embedding_grad(void *const *values, const int64_t *args) {
  Record r{values, args};
  checkIds(r.i32(0), r[3], r[4], r[6]);
  embeddingGrad(r.i32(0), r.f32(1), r[3], r[4], r[5], r.f32(2));
}

// [v:src, v:mask?, v:out, outer, len, inner, mean, grad]
void kiln_k_reduce(void *const *values, const int64_t *args) {
  Record r{values, args};
  if (r[7]) maskedReduceGrad(r.f32(0), r.mask(1), r[3], r[4], r[5], r[6] != 0, r.f32(2));
  else maskedReduce(r.f32(0), r.mask(1), r[3], r[4], r[5], r[6] != 0, r.f32(2));
}

// [grad, v:x, v:dy?, v:mask?, v:out, outer, len, inner]
void kiln_k_max(void *const *values, const int64_t *args) {
  Record r{values, args};
  if (r[0]) maskedMaxGrad(r.f32(1), r.f32(2), r.mask(3), r[5], r[6], r[7], r.f32(4));
  else maskedMax(r.f32(1), r.mask(3), r[5], r[6], r[7], r.f32(4));
}

// [v:y, v:dy, v:mask?, v:out, maskStride, outer, len, inner, log, maskRow[outer]... (with a mask)]
void kiln_k_normalize_grad(void *const *values, const int64_t *args) {
  Record r{values, args};
  normalizeGrad(r.f32(0), r.f32(1), r.mask(2), args + 9, r[4], r[5], r[6], r[7], r[8] != 0, r.f32(3));
}

// [v:src, v:mask?, v:out, maskStride, outer, len, inner, log, maskRow[outer]... (with a mask)]
void kiln_k_masked_softmax(void *const *values, const int64_t *args) {
  Record r{values, args};
  maskedSoftmax(r.f32(0), r.mask(1), args + 8, r[3], r[4], r[5], r[6], r[7] != 0, r.f32(2));
}

// [v:src, v:out, rows, cols]
void kiln_k_column_sums(void *const *values, const int64_t *args) {
  Record r{values, args};
  columnSums(r.f32(0), r[2], r[3], r.f32(1));
}

// [v:x, v:step (f32[]), v:out, n, seed, key, p (f64 bits), v:batch_rows (i32[rows]) or -1, elements per row]
void kiln_k_dropout(void *const *values, const int64_t *args) {
  Record r{values, args};
  int64_t step = static_cast<int64_t>(std::llround(r.f32(1)[0]));
  dropout(r.f32(0), r[3], static_cast<uint64_t>(r[4]), r[5], step, r.f64(6), r.f32(2), r[7] < 0 ? nullptr : r.i32(7),
          r[8]);
}

// [lstm, grad, batch, steps, hidden, reverse, v:mask?, operands v:o0..o3 (o3 -1 forward), results v:r0..r2 (r2 -1 forward)]
void kiln_k_recurrent(void *const *values, const int64_t *args) {
  Record r{values, args};
  GruShape shape{r[2], r[3], r[4], r[5] != 0};
  bool lstm = r[0] != 0;
  if (r[1]) (lstm ? lstmGrad : gruGrad)(shape, r.f32(7), r.f32(8), r.f32(9), r.f32(10), r.mask(6), r.f32(11), r.f32(12), r.f32(13));
  else (lstm ? kiln::backends::kernels::lstm : gru)(shape, r.f32(7), r.f32(8), r.f32(9), r.mask(6), r.f32(11), r.f32(12));
}

// [v:m, v:g, v:out, n, beta (f64 bits), square]
void kiln_k_adam_moment(void *const *values, const int64_t *args) {
  Record r{values, args};
  adamMoment(r.f32(0), r.f32(1), r[3], r.f(4), r[5] != 0, r.f32(2));
}

// [v:p, v:m, v:v, v:step_size, v:bc2_sqrt, v:out, n, eps (f64 bits)]
void kiln_k_adam_update(void *const *values, const int64_t *args) {
  Record r{values, args};
  adamUpdate(r.f32(0), r.f32(1), r.f32(2), r[6], r.f32(3)[0], r.f32(4)[0], r.f(7), r.f32(5));
}

// [v:p, v:m, v:v, v:g, v:step_size, v:bc2_sqrt, v:p', v:m', v:v', n, beta1, beta2, eps (f64 bits)]
void kiln_k_adam_step(void *const *values, const int64_t *args) {
  Record r{values, args};
  adamStep(r.f32(0), r.f32(1), r.f32(2), r.f32(3), r[9], r.f(10), r.f(11), r.f32(4)[0], r.f32(5)[0], r.f(12), r.f32(6),
           r.f32(7), r.f32(8));
}

// [v:p, v:m, v:v, v:ids, v:dy, v:step_size, v:bc2_sqrt, v:p', v:m', v:v', n, rows, width, beta1, beta2, eps,
//  weight_decay (f64 bits), check node (-1: the ids were checked before the run)]
void kiln_k_adam_rows(void *const *values, const int64_t *args) {
  Record r{values, args};
  checkIds(r.i32(3), r[10], r[11], r[17]);
  adamRows(r.f32(0), r.f32(1), r.f32(2), r.i32(3), r.f32(4), r[10], r[11], r[12], r.f(13), r.f(14), r.f32(5)[0],
           r.f32(6)[0], r.f(15), r.f(16), r.f32(7), r.f32(8), r.f32(9));
}

// [grad, batch, tq, tk, d, dv, scale (f64 bits), v:mask?, rowStride, colStride,
//  forward: v:q, v:k, v:v, v:out, v:lse, v:weights?; grad: v:q, v:k, v:v, v:lse, v:dout, v:dq, v:dk, v:dv;
//  then the mask's offset of each of the batch slices]
void kiln_k_attention(void *const *values, const int64_t *args) {
  Record r{values, args};
  AttentionShape shape{r[1], r[2], r[3], r[4], r[5], r.f(6)};
  bool grad = r[0] != 0;
  AttentionMask mask{r.mask(7), args + (grad ? 18 : 16), r[8], r[9]};
  const AttentionMask *m = mask.data ? &mask : nullptr;
  if (grad) attentionGrad(shape, r.f32(10), r.f32(11), r.f32(12), r.f32(13), r.f32(14), m, r.f32(15), r.f32(16), r.f32(17));
  else attention(shape, r.f32(10), r.f32(11), r.f32(12), m, r.f32(13), r.f32(14), r.f32(15));
}

// [grad, batch, t, e, ev, mean, v:mask?,
//  forward: v:h, v:k, v:v, v:w, v:b, v:out, v:p; grad: v:h, v:k, v:v, v:w, v:p, v:dout, v:da, v:dv, v:dw, v:db]
void kiln_k_additive_attention(void *const *values, const int64_t *args) {
  Record r{values, args};
  AdditiveShape shape{r[1], r[2], r[3], r[4], r[5] != 0};
  if (r[0])
    additiveAttentionGrad(shape, r.f32(7), r.f32(8), r.f32(9), r.f32(10), r.f32(11), r.f32(12), r.mask(6), r.f32(13),
                          r.f32(14), r.f32(15), r.f32(16));
  else additiveAttention(shape, r.f32(7), r.f32(8), r.f32(9), r.f32(10), r.f32(11)[0], r.mask(6), r.f32(12), r.f32(13));
}

// [steps, operands, n, v:out, v:operand x operands, scalar flag x operands, (op, a, b) x steps]
void kiln_k_elementwise(void *const *values, const int64_t *args) {
  Record r{values, args};
  int numSteps = static_cast<int>(r[0]), numOperands = static_cast<int>(r[1]);
  constexpr int kMaxOperands = 16, kMaxSteps = 64;
  const float *operands[kMaxOperands];
  uint8_t scalar[kMaxOperands];
  ElementwiseStep steps[kMaxSteps];
  for (int j = 0; j < numOperands && j < kMaxOperands; ++j) {
    operands[j] = r.f32(4 + j);
    scalar[j] = static_cast<uint8_t>(r[4 + numOperands + j]);
  }
  const int64_t *s = args + 4 + 2 * numOperands;
  for (int k = 0; k < numSteps && k < kMaxSteps; ++k)
    steps[k] = {static_cast<ElementwiseOp>(s[3 * k]), static_cast<int>(s[3 * k + 1]), static_cast<int>(s[3 * k + 2])};
  elementwise(steps, numSteps, operands, scalar, numOperands, r[2], r.f32(3));
}

} // extern "C"
