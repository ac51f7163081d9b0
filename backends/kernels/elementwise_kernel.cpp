//===- backends/kernels/elementwise_kernel.cpp - fused elementwise programs -===//
//
// elementwise (ir/ops.def) for the oneDNN backend: the elements are cut
// into blocks of kBlock, each block evaluated step by step into per-thread
// slot buffers of kBlock floats (so a step's inner loop is a plain,
// vectorised loop and the interpretation costs one switch per step per
// block), the last step written straight into the result. Every
// intermediate lives in those L1-sized buffers, never in memory the size
// of the tensor. Blocks are independent and share the threads.
//
// The ops compute what the reference interpreter computes, exp and tanh
// through the vector helpers of vector.h (within 2 ulp and 2e-7; exp over
// the whole f32 range, +inf on overflow), sigmoid in the reference's
// overflow-free form.
//
//===----------------------------------------------------------------------===//
#include "backends/kernels/kernels.h"
#include "backends/kernels/parallel.h"
#include "backends/kernels/vector.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace kiln::backends::kernels {

namespace {

/// Elements per block: the slot buffers of a long program still fit in L1/L2.
constexpr int64_t kBlock = 256;
static_assert(kBlock % kLanes == 0);

[[gnu::always_inline]] inline F32x16 abs16(F32x16 x) { return x < 0.0f ? -x : x; }

/// d = op(a, b) over one block of len elements (len <= kBlock; the
/// buffers have room for kBlock, so the vector loop may run past len).
[[gnu::always_inline]] inline void applyStep(ElementwiseOp op, const float *a, const float *b, float *d, int64_t len) {
  int64_t full = (len + kLanes - 1) / kLanes * kLanes;
  switch (op) {
  case ElementwiseOp::Add:
    for (int64_t i = 0; i < len; ++i) d[i] = a[i] + b[i];
    return;
  case ElementwiseOp::Sub:
    for (int64_t i = 0; i < len; ++i) d[i] = a[i] - b[i];
    return;
  case ElementwiseOp::Mul:
    for (int64_t i = 0; i < len; ++i) d[i] = a[i] * b[i];
    return;
  case ElementwiseOp::Div:
    for (int64_t i = 0; i < len; ++i) d[i] = a[i] / b[i];
    return;
  case ElementwiseOp::Neg:
    for (int64_t i = 0; i < len; ++i) d[i] = -a[i];
    return;
  case ElementwiseOp::Exp:
    for (int64_t i = 0; i < full; i += kLanes) store16(d + i, fastExpFull16(load16(a + i)));
    return;
  case ElementwiseOp::Log:
    for (int64_t i = 0; i < len; ++i) d[i] = std::log(a[i]);
    return;
  case ElementwiseOp::Tanh:
    for (int64_t i = 0; i < full; i += kLanes) store16(d + i, fastTanh16(load16(a + i)));
    return;
  case ElementwiseOp::Relu:
    for (int64_t i = 0; i < len; ++i) d[i] = a[i] > 0.0f ? a[i] : 0.0f;
    return;
  case ElementwiseOp::Sigmoid:
    // e = exp(-|x|) cannot overflow; e / (1 + e) keeps a tiny result's
    // relative precision for very negative x.
    for (int64_t i = 0; i < full; i += kLanes) {
      F32x16 x = load16(a + i), e = fastExp16(-abs16(x)), inv = 1.0f / (1.0f + e);
      store16(d + i, x >= 0.0f ? inv : e * inv);
    }
    return;
  case ElementwiseOp::Sqrt:
    for (int64_t i = 0; i < len; ++i) d[i] = std::sqrt(a[i]);
    return;
  case ElementwiseOp::Erf:
    for (int64_t i = 0; i < full; i += kLanes) store16(d + i, fastErf16(load16(a + i)));
    return;
  case ElementwiseOp::TanhGrad:
    for (int64_t i = 0; i < len; ++i) d[i] = b[i] * (1.0f - a[i] * a[i]);
    return;
  case ElementwiseOp::SigmoidGrad:
    for (int64_t i = 0; i < len; ++i) d[i] = b[i] * a[i] * (1.0f - a[i]);
    return;
  case ElementwiseOp::ReluGrad:
    for (int64_t i = 0; i < len; ++i) d[i] = a[i] > 0.0f ? b[i] : 0.0f;
    return;
  }
}

/// Elements [begin, begin + len) of the program. slots: numOperands +
/// numSteps pointers; scratch: (numSteps + numOperands) * kBlock floats.
KILN_VECTOR_CLONES
void evaluateBlock(const ElementwiseStep *steps, int numSteps, const float *const *operands, const uint8_t *scalar,
                   int numOperands, int64_t begin, int64_t len, float *out, const float **slots, float *scratch) {
  // An operand is read in place, except a scalar (a splat block, filled
  // once per thread by the caller) and the last, partial block, which is
  // copied so that the vector loops may read a whole number of lanes.
  bool partial = len % kLanes != 0;
  for (int j = 0; j < numOperands; ++j) {
    float *own = scratch + (numSteps + j) * kBlock;
    if (scalar[j]) slots[j] = own;
    else if (partial) {
      std::copy(operands[j] + begin, operands[j] + begin + len, own);
      slots[j] = own;
    } else slots[j] = operands[j] + begin;
  }
  for (int k = 0; k < numSteps; ++k) {
    // The last step writes the result directly, unless the block is partial.
    float *d = k == numSteps - 1 && !partial ? out + begin : scratch + k * kBlock;
    const ElementwiseStep &s = steps[k];
    applyStep(s.op, slots[s.a], s.b >= 0 ? slots[s.b] : nullptr, d, len);
    slots[numOperands + k] = d;
  }
  if (partial) std::copy(slots[numOperands + numSteps - 1], slots[numOperands + numSteps - 1] + len, out + begin);
}

} // namespace

void elementwise(const ElementwiseStep *steps, int numSteps, const float *const *operands, const uint8_t *scalar,
                 int numOperands, int64_t n, float *out) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  parallelFor(blocks, n > (1 << 15), [&](int64_t first, int64_t last) {
    std::vector<float> scratch(static_cast<size_t>((numSteps + numOperands) * kBlock), 0.0f);
    std::vector<const float *> slots(static_cast<size_t>(numOperands + numSteps));
    for (int j = 0; j < numOperands; ++j)
      if (scalar[j]) std::fill_n(scratch.data() + (numSteps + j) * kBlock, kBlock, operands[j][0]);
    for (int64_t blk = first; blk < last; ++blk) {
      int64_t begin = blk * kBlock;
      evaluateBlock(steps, numSteps, operands, scalar, numOperands, begin, std::min(kBlock, n - begin), out,
                    slots.data(), scratch.data());
    }
  });
}

} // namespace kiln::backends::kernels
