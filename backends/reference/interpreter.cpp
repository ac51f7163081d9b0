//===- backends/reference/interpreter.cpp - the oracle interpreter --------===//
//
// run() checks the given tensors against the graph's inputs and params, binds
// the shape symbols from the input extents, computes the concrete extents of
// every value, then executes the nodes in order, each into a freshly allocated
// (zero-filled) result. Without keepAll a value is freed after its last use.
//
// Kernels are found through kernelFor(), one switch over OpKind without a
// default case: adding an op to ir/ops.def without a kernel is a -Wswitch
// warning here and a failure of the "every op has a reference kernel" test.
//
// Numeric conventions (every other backend is measured against these):
// - matmul accumulates in float, in i-k-j order so the inner loop is
//   unit-stride, as a BLAS would; softmax, log_softmax, the reductions and
//   cross_entropy accumulate in double, which is cheap here and keeps the
//   oracle closer to the exact value than any backend it judges.
// - i32 add/sub/mul/div wrap on overflow (two's complement, as numpy and
//   torch do) instead of being undefined; div truncates toward zero and a
//   zero divisor is a kiln::Error. f32 -> i32 truncates toward zero,
//   saturates at the i32 range and maps NaN to 0.
// - A slice whose positions are all masked (or that is empty) gives 0 for
//   softmax, sum, mean and max, and -inf for log_softmax. cross_entropy over
//   zero rows is 0. max propagates NaN.
//
// Everything a user can trigger (a missing tensor, a bad id or label, an i32
// division by zero) is checked before a parallel loop starts, so no kernel
// throws from a worker thread.
//
//===----------------------------------------------------------------------===//
#include "backends/reference/interpreter.h"

#include "ir/decompose.h"
#include "ir/diagnostic.h"
#include "runtime/random.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <cmath>
#include <cstring>
#include <fmt/format.h>
#include <functional>
#include <limits>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>

namespace kiln::reference {

namespace {

using ir::DType;
using ir::OpKind;
using runtime::Tensor;
using Extents = std::vector<int64_t>;
using Strides = std::vector<int64_t>;

// --- element access and threads ----------------------------------------------

template <typename T> T *data(Tensor &t) { return reinterpret_cast<T *>(t.raw()); }
template <typename T> const T *data(const Tensor &t) { return reinterpret_cast<const T *>(t.raw()); }

/// Calls f with a value of the C++ element type of dt (bool is uint8_t), so
/// one generic lambda serves every dtype.
template <typename F> void visitDType(DType dt, F &&f) {
  switch (dt) {
  case DType::F32: return f(float{});
  case DType::I32: return f(int32_t{});
  case DType::Bool: return f(uint8_t{});
  }
}

/// Below this much work (roughly, element operations) a loop runs on the
/// calling thread: starting a thread costs more than a small kernel does.
constexpr int64_t kMinParallelWork = 1 << 16;

/// Runs body(begin, end) over contiguous chunks of [0, n), one per thread, the
/// first on the calling thread. The body must not throw.
template <typename F> void parallelFor(int64_t n, int64_t costPerItem, int threads, F &&body) {
  int64_t work = n * std::max<int64_t>(costPerItem, 1);
  int64_t chunks = std::min<int64_t>({threads, n, work / kMinParallelWork});
  if (chunks <= 1) {
    body(int64_t{0}, n);
    return;
  }
  std::vector<std::thread> workers;
  workers.reserve(chunks - 1);
  auto bounds = [&](int64_t c) { return c * n / chunks; };
  for (int64_t c = 1; c < chunks; ++c)
    workers.emplace_back([&body, b = bounds(c), e = bounds(c + 1)] { body(b, e); });
  body(int64_t{0}, bounds(1));
  for (std::thread &w : workers) w.join();
}

// --- strided iteration --------------------------------------------------------

/// Row-major element strides of a tensor of extents e.
Strides rowMajorStrides(const Extents &e) {
  Strides s(e.size());
  int64_t step = 1;
  for (size_t d = e.size(); d-- > 0;) {
    s[d] = step;
    step *= e[d];
  }
  return s;
}

/// Strides, aligned to `out`'s dims, that read a row-major operand of extents
/// `operand` broadcast to `out` (numpy rules, aligned on the right): a missing
/// dim or one of extent 1 gets stride 0, so the same element is read again.
Strides broadcastStrides(const Extents &operand, const Extents &out) {
  assert(operand.size() <= out.size());
  Strides s(out.size(), 0);
  size_t shift = out.size() - operand.size();
  Strides own = rowMajorStrides(operand);
  for (size_t d = 0; d < operand.size(); ++d) {
    assert(operand[d] == out[d + shift] || operand[d] == 1);
    if (operand[d] != 1) s[d + shift] = own[d];
  }
  return s;
}

/// The one strided walk: visits the row-major positions [begin, end) of an
/// index space of extents `out`, calling visit(i, offsets) where offsets[k] is
/// the dot product of the multi-index of i with strides[k]. Broadcasting
/// binary ops, comparisons, select, mask expansion, transpose and matmul's
/// batch loop are all this walk with different strides.
template <size_t N, typename Visit>
void forEachStrided(const Extents &out, const std::array<Strides, N> &strides, int64_t begin, int64_t end,
                    Visit &&visit) {
  if (begin >= end) return; // also guards the divisions below against zero extents
  size_t rank = out.size();
  Extents idx(rank);
  std::array<int64_t, N> off{};
  int64_t rest = begin;
  for (size_t d = rank; d-- > 0;) {
    idx[d] = rest % out[d];
    rest /= out[d];
    for (size_t k = 0; k < N; ++k) off[k] += idx[d] * strides[k][d];
  }
  for (int64_t i = begin; i < end; ++i) {
    visit(i, off);
    // Odometer step: bump the last dim, carrying into earlier ones.
    for (size_t d = rank; d-- > 0;) {
      for (size_t k = 0; k < N; ++k) off[k] += strides[k][d];
      if (++idx[d] < out[d]) break;
      for (size_t k = 0; k < N; ++k) off[k] -= strides[k][d] * out[d];
      idx[d] = 0;
    }
  }
}

/// Everything a kernel sees: the node (for attributes), its operands and the
/// preallocated, zero-filled result with its concrete extents.
struct KernelArgs {
  const ir::Node &node;
  const std::vector<const Tensor *> &in;
  Tensor &out; ///< the first result
  int threads;
  /// Every result (out is the first), for ops with several.
  const std::vector<Tensor *> &outs;
};

using Kernel = void (*)(const KernelArgs &);

/// out[i] = fn(the operands' elements broadcast to position i), in parallel.
template <typename R, typename... T, typename Fn, size_t... J>
void broadcastMapImpl(const KernelArgs &k, Fn fn, std::index_sequence<J...>) {
  std::array<Strides, sizeof...(T)> strides{broadcastStrides(k.in[J]->shape(), k.out.shape())...};
  std::tuple<const T *...> in{data<T>(*k.in[J])...};
  R *out = data<R>(k.out);
  parallelFor(k.out.numel(), 1, k.threads, [&](int64_t begin, int64_t end) {
    forEachStrided(k.out.shape(), strides, begin, end, [&](int64_t i, const auto &off) {
      out[i] = fn(std::get<J>(in)[off[J]]...);
    });
  });
}
template <typename R, typename... T, typename Fn> void broadcastMap(const KernelArgs &k, Fn fn) {
  broadcastMapImpl<R, T...>(k, fn, std::index_sequence_for<T...>{});
}

/// The optional mask operand broadcast to the extents of operand 0, one byte
/// per element; empty when there is no mask.
std::vector<uint8_t> expandMask(const KernelArgs &k) {
  if (k.in.size() < 2) return {};
  const Extents &x = k.in[0]->shape();
  std::vector<uint8_t> mask(static_cast<size_t>(ir::numElements(x)));
  const uint8_t *m = data<uint8_t>(*k.in[1]);
  forEachStrided<1>(x, {broadcastStrides(k.in[1]->shape(), x)}, 0, ir::numElements(x),
                    [&](int64_t i, const std::array<int64_t, 1> &off) { mask[i] = m[off[0]] != 0; });
  return mask;
}

/// The mask at operand `index`, when present, broadcast to the extents of
/// `like`; empty otherwise. For the backward ops, whose mask is not operand 1.
std::vector<uint8_t> maskOperand(const KernelArgs &k, size_t index, const Tensor &like) {
  if (k.in.size() <= index) return {};
  std::vector<const Tensor *> args{&like, k.in[index]};
  return expandMask({k.node, args, k.out, k.threads, k.outs});
}

// --- conversions ----------------------------------------------------------------

/// Element conversion shared by cast and constant: anything -> bool is
/// (x != 0); floating -> i32 truncates toward zero, saturating, NaN -> 0.
template <typename To, typename From> To convert(From x) {
  if constexpr (std::is_same_v<To, uint8_t>) {
    return x != 0;
  } else if constexpr (std::is_same_v<To, int32_t> && std::is_floating_point_v<From>) {
    if (std::isnan(x)) return 0;
    if (x <= static_cast<From>(INT32_MIN)) return INT32_MIN;
    if (x >= static_cast<From>(INT32_MAX)) return INT32_MAX;
    return static_cast<int32_t>(x);
  } else {
    return static_cast<To>(x);
  }
}

// --- kernels ----------------------------------------------------------------------

void constantKernel(const KernelArgs &k) {
  double v = ir::attrFloat(k.node.op, k.node.attrs, "value");
  visitDType(k.out.dtype(), [&](auto t) { data<decltype(t)>(k.out)[0] = convert<decltype(t)>(v); });
}

void embeddingKernel(const KernelArgs &k) {
  const Tensor &table = *k.in[0], &ids = *k.in[1];
  int64_t rows = table.shape()[0], width = table.shape()[1];
  const int32_t *id = data<int32_t>(ids);
  for (int64_t i = 0; i < ids.numel(); ++i)
    if (id[i] < 0 || id[i] >= rows)
      throw Error(fmt::format("embedding: id {} at position {} is outside [0, {}) for table {}", id[i], i,
                              rows, table.typeStr()));
  const float *src = data<float>(table);
  float *dst = data<float>(k.out);
  parallelFor(ids.numel(), width, k.threads, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      std::copy_n(src + id[i] * width, width, dst + i * width);
  });
}

void matmulKernel(const KernelArgs &k) {
  const Tensor &a = *k.in[0], &b = *k.in[1];
  bool ta = ir::attrBool(k.node.op, k.node.attrs, "transpose_a");
  bool tb = ir::attrBool(k.node.op, k.node.attrs, "transpose_b");
  const Extents &ea = a.shape(), &eb = b.shape(), &eo = k.out.shape();
  size_t ra = ea.size(), ro = eo.size();
  int64_t m = eo[ro - 2], n = eo[ro - 1], kk = ta ? ea[ra - 2] : ea[ra - 1];
  assert(kk == (tb ? eb[eb.size() - 1] : eb[eb.size() - 2]));

  // Pair every result batch with the (broadcast) a and b matrices it reads.
  Extents batch(eo.begin(), eo.end() - 2);
  Extents batchA(ea.begin(), ea.end() - 2), batchB(eb.begin(), eb.end() - 2);
  int64_t numBatches = ir::numElements(batch);
  std::vector<std::array<int64_t, 2>> pairs(static_cast<size_t>(numBatches));
  forEachStrided<2>(batch, {broadcastStrides(batchA, batch), broadcastStrides(batchB, batch)}, 0, numBatches,
                    [&](int64_t i, const std::array<int64_t, 2> &off) { pairs[i] = off; });

  // With transpose_b, materialise b^T once so that the inner loop below reads
  // b's rows with unit stride either way.
  const float *pb = data<float>(b);
  std::vector<float> bt;
  if (tb) {
    bt.resize(static_cast<size_t>(b.numel()));
    for (int64_t mat = 0; mat < b.numel() / std::max<int64_t>(kk * n, 1); ++mat)
      for (int64_t j = 0; j < n; ++j)
        for (int64_t p = 0; p < kk; ++p) bt[mat * kk * n + p * n + j] = pb[mat * kk * n + j * kk + p];
    pb = bt.data();
  }
  const float *pa = data<float>(a);
  float *out = data<float>(k.out);
  // One item is one result row; rows of all batches are split over threads.
  parallelFor(numBatches * m, kk * n, k.threads, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      int64_t i = r % m;
      const float *am = pa + pairs[r / m][0] * m * kk;
      const float *bm = pb + pairs[r / m][1] * kk * n;
      float *row = out + r * n; // zero-filled by allocation
      for (int64_t p = 0; p < kk; ++p) {
        float av = ta ? am[p * m + i] : am[i * kk + p];
        const float *brow = bm + p * n;
        for (int64_t j = 0; j < n; ++j) row[j] += av * brow[j];
      }
    }
  });
}

/// The extents conv1d and its gradients share: `batch` sequences of x
/// [length, in] against w [out, in, width], y [outLength, out].
struct ConvShape {
  int64_t batch, length, outLength, in, out, width, padding;
};

/// From x-like [..., length, in] and y-like [..., outLength, out] extents.
ConvShape convShape(const Extents &x, const Extents &y, int64_t width, int64_t padding) {
  size_t r = x.size();
  return {ir::numElements(Extents(x.begin(), x.end() - 2)), x[r - 2], y[r - 2], x[r - 1], y[r - 1], width, padding};
}

/// conv1d: y[b, t, o] = bias[o] + sum over j, c of x[b, t + j - padding, c] w[o, c, j].
/// The three conv kernels sum in double: the oracle's own rounding stays
/// well below the float error of the backends it judges.
void conv1dKernel(const KernelArgs &k) {
  const Tensor &x = *k.in[0], &w = *k.in[1];
  ConvShape c = convShape(x.shape(), k.out.shape(), w.shape()[2], ir::attrInt(k.node.op, k.node.attrs, "padding"));
  const float *px = data<float>(x), *pw = data<float>(w), *pb = k.in.size() > 2 ? data<float>(*k.in[2]) : nullptr;
  float *py = data<float>(k.out);
  parallelFor(c.batch * c.outLength, c.out * c.in * c.width, k.threads, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      int64_t b = row / c.outLength, t = row % c.outLength;
      float *yrow = py + row * c.out;
      for (int64_t o = 0; o < c.out; ++o) {
        double acc = pb ? pb[o] : 0.0;
        for (int64_t j = 0; j < c.width; ++j) {
          int64_t at = t + j - c.padding;
          if (at < 0 || at >= c.length) continue;
          const float *xrow = px + (b * c.length + at) * c.in;
          for (int64_t ch = 0; ch < c.in; ++ch) acc += static_cast<double>(xrow[ch]) * pw[(o * c.in + ch) * c.width + j];
        }
        yrow[o] = static_cast<float>(acc);
      }
    }
  });
}

/// conv1d_input_grad: dx[b, s, c] = sum over j, o of dy[b, s - j + padding, o] w[o, c, j].
void conv1dInputGradKernel(const KernelArgs &k) {
  const Tensor &dy = *k.in[0], &w = *k.in[1];
  ConvShape c = convShape(k.out.shape(), dy.shape(), w.shape()[2], ir::attrInt(k.node.op, k.node.attrs, "padding"));
  const float *pd = data<float>(dy), *pw = data<float>(w);
  float *px = data<float>(k.out);
  parallelFor(c.batch * c.length, c.out * c.in * c.width, k.threads, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      int64_t b = row / c.length, pos = row % c.length;
      float *xrow = px + row * c.in;
      for (int64_t ch = 0; ch < c.in; ++ch) {
        double acc = 0.0;
        for (int64_t j = 0; j < c.width; ++j) {
          int64_t t = pos - j + c.padding;
          if (t < 0 || t >= c.outLength) continue;
          const float *drow = pd + (b * c.outLength + t) * c.out;
          for (int64_t o = 0; o < c.out; ++o) acc += static_cast<double>(drow[o]) * pw[(o * c.in + ch) * c.width + j];
        }
        xrow[ch] = static_cast<float>(acc);
      }
    }
  });
}

/// conv1d_weight_grad: dw[o, c, j] = sum over b, t of dy[b, t, o] x[b, t + j - padding, c].
void conv1dWeightGradKernel(const KernelArgs &k) {
  const Tensor &x = *k.in[0], &dy = *k.in[1];
  ConvShape c = convShape(x.shape(), dy.shape(), k.out.shape()[2], ir::attrInt(k.node.op, k.node.attrs, "padding"));
  const float *px = data<float>(x), *pd = data<float>(dy);
  float *pw = data<float>(k.out);
  // One item is one weight element, summed over every (b, t) in order, so
  // the result does not depend on the thread count.
  parallelFor(c.out * c.in * c.width, c.batch * c.outLength, k.threads, [&](int64_t begin, int64_t end) {
    for (int64_t e = begin; e < end; ++e) {
      int64_t o = e / (c.in * c.width), ch = e / c.width % c.in, j = e % c.width;
      double acc = 0.0;
      for (int64_t b = 0; b < c.batch; ++b)
        for (int64_t t = 0; t < c.outLength; ++t) {
          int64_t at = t + j - c.padding;
          if (at < 0 || at >= c.length) continue;
          acc += static_cast<double>(pd[(b * c.outLength + t) * c.out + o]) * px[(b * c.length + at) * c.in + ch];
        }
      pw[e] = static_cast<float>(acc);
    }
  });
}

/// gru over one direction, PyTorch's cell, h0 = 0; per sequence, in scan
/// order (from the end when reversed):
///   r = sigmoid(xp_r + W_hr h + b_hr), z = sigmoid(xp_z + W_hz h + b_hz),
///   n = tanh(xp_n + r (W_hn h + b_hn)), h' = (1 - z) n + z h;
/// a dropped step keeps h (and saves zero gates). Saved per step: r, z, n
/// and W_hn h + b_hn, which gru_grad reads.
void gruKernel(const KernelArgs &k) {
  const Tensor &xp = *k.in[0], &w = *k.in[1], &bias = *k.in[2];
  const uint8_t *mask = k.in.size() > 3 ? data<uint8_t>(*k.in[3]) : nullptr;
  bool reverse = ir::attrBool(k.node.op, k.node.attrs, "reverse");
  int64_t batch = xp.shape()[0], steps = xp.shape()[1], hidden = w.shape()[1];
  const float *px = data<float>(xp), *pw = data<float>(w), *pb = data<float>(bias);
  float *ph = data<float>(*k.outs[0]), *pg = data<float>(*k.outs[1]);
  parallelFor(batch, steps * 3 * hidden * hidden, k.threads, [&](int64_t begin, int64_t end) {
    std::vector<float> hPrev(static_cast<size_t>(hidden)), gh(static_cast<size_t>(3 * hidden));
    for (int64_t b = begin; b < end; ++b) {
      std::fill(hPrev.begin(), hPrev.end(), 0.0f);
      for (int64_t s = 0; s < steps; ++s) {
        int64_t t = reverse ? steps - 1 - s : s, row = b * steps + t;
        float *h = ph + row * hidden, *g = pg + row * 4 * hidden;
        if (mask && !mask[row]) {
          std::copy(hPrev.begin(), hPrev.end(), h);
          std::fill(g, g + 4 * hidden, 0.0f);
          continue;
        }
        for (int64_t j = 0; j < 3 * hidden; ++j) {
          double acc = pb[j];
          for (int64_t c = 0; c < hidden; ++c) acc += static_cast<double>(pw[j * hidden + c]) * hPrev[c];
          gh[j] = static_cast<float>(acc);
        }
        const float *x = px + row * 3 * hidden;
        for (int64_t c = 0; c < hidden; ++c) {
          float r = 1.0f / (1.0f + std::exp(-(x[c] + gh[c])));
          float z = 1.0f / (1.0f + std::exp(-(x[hidden + c] + gh[hidden + c])));
          float hn = gh[2 * hidden + c];
          float n = std::tanh(x[2 * hidden + c] + r * hn);
          h[c] = (1.0f - z) * n + z * hPrev[c];
          g[c] = r, g[hidden + c] = z, g[2 * hidden + c] = n, g[3 * hidden + c] = hn;
        }
        std::copy(h, h + hidden, hPrev.begin());
      }
    }
  });
}

/// gru_grad: backpropagation through time, each sequence from its last scan
/// step back. With dh the total gradient at a step (dh[t] + what the next
/// step sends back), the previous state h_p (the previous step's h, or 0):
///   dn' = dh (1 - z) (1 - n^2), dz' = dh (h_p - n) z (1 - z),
///   dr' = dn' hn r (1 - r), dgh = [dr', dz', dn' r] (the gradient of W_hh h_p + b_hh),
///   dxp = [dr', dz', dn'], back to h_p: dh z + W_hh^T dgh;
/// dW_hh = sum of dgh h_p^T, db_hh = sum of dgh, summed per sequence and
/// then in sequence order (the result does not depend on the threads).
void gruGradKernel(const KernelArgs &k) {
  const Tensor &w = *k.in[0], &hs = *k.in[1], &gates = *k.in[2], &dhs = *k.in[3];
  const uint8_t *mask = k.in.size() > 4 ? data<uint8_t>(*k.in[4]) : nullptr;
  bool reverse = ir::attrBool(k.node.op, k.node.attrs, "reverse");
  int64_t batch = hs.shape()[0], steps = hs.shape()[1], hidden = w.shape()[1], gatesWide = 3 * hidden;
  const float *pw = data<float>(w), *ph = data<float>(hs), *pg = data<float>(gates), *pd = data<float>(dhs);
  float *dxp = data<float>(*k.outs[0]), *dw = data<float>(*k.outs[1]), *db = data<float>(*k.outs[2]);
  std::vector<double> dwRows(static_cast<size_t>(batch * gatesWide * hidden)), dbRows(static_cast<size_t>(batch * gatesWide));
  parallelFor(batch, steps * 6 * hidden * hidden, k.threads, [&](int64_t begin, int64_t end) {
    std::vector<float> dhNext(static_cast<size_t>(hidden)), dgh(static_cast<size_t>(gatesWide));
    for (int64_t b = begin; b < end; ++b) {
      double *dwB = dwRows.data() + b * gatesWide * hidden, *dbB = dbRows.data() + b * gatesWide;
      std::fill(dhNext.begin(), dhNext.end(), 0.0f);
      for (int64_t s = steps; s-- > 0;) {
        int64_t t = reverse ? steps - 1 - s : s, row = b * steps + t;
        float *dx = dxp + row * gatesWide;
        const float *dhT = pd + row * hidden;
        if (mask && !mask[row]) {
          std::fill(dx, dx + gatesWide, 0.0f);
          for (int64_t c = 0; c < hidden; ++c) dhNext[c] += dhT[c];
          continue;
        }
        const float *hp = s == 0 ? nullptr : ph + (b * steps + (reverse ? t + 1 : t - 1)) * hidden;
        const float *g = pg + row * 4 * hidden;
        for (int64_t c = 0; c < hidden; ++c) {
          float dh = dhT[c] + dhNext[c];
          float r = g[c], z = g[hidden + c], n = g[2 * hidden + c], hn = g[3 * hidden + c];
          float prev = hp ? hp[c] : 0.0f;
          float dn = dh * (1.0f - z) * (1.0f - n * n);
          float dz = dh * (prev - n) * z * (1.0f - z);
          float dr = dn * hn * r * (1.0f - r);
          dx[c] = dr, dx[hidden + c] = dz, dx[2 * hidden + c] = dn;
          dgh[c] = dr, dgh[hidden + c] = dz, dgh[2 * hidden + c] = dn * r;
          dhNext[c] = dh * z;
        }
        for (int64_t j = 0; j < gatesWide; ++j) {
          dbB[j] += dgh[j];
          if (hp)
            for (int64_t c = 0; c < hidden; ++c) dwB[j * hidden + c] += static_cast<double>(dgh[j]) * hp[c];
        }
        for (int64_t c = 0; c < hidden; ++c) {
          double acc = dhNext[c];
          for (int64_t j = 0; j < gatesWide; ++j) acc += static_cast<double>(pw[j * hidden + c]) * dgh[j];
          dhNext[c] = static_cast<float>(acc);
        }
      }
    }
  });
  for (int64_t e = 0; e < gatesWide * hidden; ++e) {
    double acc = 0;
    for (int64_t b = 0; b < batch; ++b) acc += dwRows[b * gatesWide * hidden + e];
    dw[e] = static_cast<float>(acc);
  }
  for (int64_t j = 0; j < gatesWide; ++j) {
    double acc = 0;
    for (int64_t b = 0; b < batch; ++b) acc += dbRows[b * gatesWide + j];
    db[j] = static_cast<float>(acc);
  }
}

/// lstm over one direction, PyTorch's cell, h0 = c0 = 0; per sequence, in
/// scan order: with pre = xp + W_hh h + b_hh split into i, f, g, o,
///   i = sigmoid, f = sigmoid, g = tanh, o = sigmoid of their parts,
///   c' = f c + i g, h' = o tanh(c');
/// a dropped step keeps h and c (and saves zero gates beside the kept c).
/// Saved per step: i, f, g, o and c', which lstm_grad reads.
void lstmKernel(const KernelArgs &k) {
  const Tensor &xp = *k.in[0], &w = *k.in[1], &bias = *k.in[2];
  const uint8_t *mask = k.in.size() > 3 ? data<uint8_t>(*k.in[3]) : nullptr;
  bool reverse = ir::attrBool(k.node.op, k.node.attrs, "reverse");
  int64_t batch = xp.shape()[0], steps = xp.shape()[1], hidden = w.shape()[1], wide = 4 * hidden;
  const float *px = data<float>(xp), *pw = data<float>(w), *pb = data<float>(bias);
  float *ph = data<float>(*k.outs[0]), *ps = data<float>(*k.outs[1]);
  auto sigmoid = [](double x) { return 1.0 / (1.0 + std::exp(-x)); };
  parallelFor(batch, steps * wide * hidden, k.threads, [&](int64_t begin, int64_t end) {
    std::vector<float> hPrev(static_cast<size_t>(hidden)), cPrev(static_cast<size_t>(hidden));
    std::vector<double> pre(static_cast<size_t>(wide));
    for (int64_t b = begin; b < end; ++b) {
      std::fill(hPrev.begin(), hPrev.end(), 0.0f);
      std::fill(cPrev.begin(), cPrev.end(), 0.0f);
      for (int64_t s = 0; s < steps; ++s) {
        int64_t t = reverse ? steps - 1 - s : s, row = b * steps + t;
        float *h = ph + row * hidden, *saved = ps + row * 5 * hidden;
        if (mask && !mask[row]) {
          std::copy(hPrev.begin(), hPrev.end(), h);
          std::fill(saved, saved + wide, 0.0f);
          std::copy(cPrev.begin(), cPrev.end(), saved + wide);
          continue;
        }
        const float *x = px + row * wide;
        for (int64_t j = 0; j < wide; ++j) {
          double acc = static_cast<double>(x[j]) + pb[j];
          for (int64_t c = 0; c < hidden; ++c) acc += static_cast<double>(pw[j * hidden + c]) * hPrev[c];
          pre[j] = acc;
        }
        for (int64_t c = 0; c < hidden; ++c) {
          float i = static_cast<float>(sigmoid(pre[c])), f = static_cast<float>(sigmoid(pre[hidden + c]));
          float g = std::tanh(static_cast<float>(pre[2 * hidden + c]));
          float o = static_cast<float>(sigmoid(pre[3 * hidden + c]));
          float cell = f * cPrev[c] + i * g;
          h[c] = o * std::tanh(cell);
          saved[c] = i, saved[hidden + c] = f, saved[2 * hidden + c] = g, saved[3 * hidden + c] = o;
          saved[4 * hidden + c] = cell;
        }
        std::copy(h, h + hidden, hPrev.begin());
        std::copy(saved + wide, saved + wide + hidden, cPrev.begin());
      }
    }
  });
}

/// lstm_grad: backpropagation through time, each sequence from its last scan
/// step back, carrying dh and dc. At a step with previous state (h_p, c_p)
/// (the previous step's, or 0) and tc = tanh(c):
///   dc += dh o (1 - tc^2); do' = dh tc o (1 - o); di' = dc g i (1 - i);
///   df' = dc c_p f (1 - f); dg' = dc i (1 - g^2); back: dc f and W_hh^T dpre,
/// dpre = [di', df', dg', do'] = dxp; dW_hh = sum of dpre h_p^T, db_hh = sum
/// of dpre, summed per sequence and then in sequence order.
void lstmGradKernel(const KernelArgs &k) {
  const Tensor &w = *k.in[0], &hs = *k.in[1], &saved = *k.in[2], &dhs = *k.in[3];
  const uint8_t *mask = k.in.size() > 4 ? data<uint8_t>(*k.in[4]) : nullptr;
  bool reverse = ir::attrBool(k.node.op, k.node.attrs, "reverse");
  int64_t batch = hs.shape()[0], steps = hs.shape()[1], hidden = w.shape()[1], wide = 4 * hidden;
  const float *pw = data<float>(w), *ph = data<float>(hs), *ps = data<float>(saved), *pd = data<float>(dhs);
  float *dxp = data<float>(*k.outs[0]), *dw = data<float>(*k.outs[1]), *db = data<float>(*k.outs[2]);
  std::vector<double> dwRows(static_cast<size_t>(batch * wide * hidden)), dbRows(static_cast<size_t>(batch * wide));
  parallelFor(batch, steps * 2 * wide * hidden, k.threads, [&](int64_t begin, int64_t end) {
    std::vector<float> dhNext(static_cast<size_t>(hidden)), dcNext(static_cast<size_t>(hidden));
    std::vector<float> dpre(static_cast<size_t>(wide));
    for (int64_t b = begin; b < end; ++b) {
      double *dwB = dwRows.data() + b * wide * hidden, *dbB = dbRows.data() + b * wide;
      std::fill(dhNext.begin(), dhNext.end(), 0.0f);
      std::fill(dcNext.begin(), dcNext.end(), 0.0f);
      for (int64_t s = steps; s-- > 0;) {
        int64_t t = reverse ? steps - 1 - s : s, row = b * steps + t;
        float *dx = dxp + row * wide;
        const float *dhT = pd + row * hidden;
        if (mask && !mask[row]) {
          std::fill(dx, dx + wide, 0.0f);
          for (int64_t c = 0; c < hidden; ++c) dhNext[c] += dhT[c];
          continue;
        }
        int64_t prevRow = b * steps + (reverse ? t + 1 : t - 1);
        const float *hp = s == 0 ? nullptr : ph + prevRow * hidden;
        const float *cp = s == 0 ? nullptr : ps + prevRow * 5 * hidden + wide;
        const float *g = ps + row * 5 * hidden;
        for (int64_t c = 0; c < hidden; ++c) {
          float dh = dhT[c] + dhNext[c];
          float i = g[c], f = g[hidden + c], gg = g[2 * hidden + c], o = g[3 * hidden + c], cell = g[4 * hidden + c];
          float tc = std::tanh(cell);
          float dc = dcNext[c] + dh * o * (1.0f - tc * tc);
          float prevCell = cp ? cp[c] : 0.0f;
          dpre[c] = dc * gg * i * (1.0f - i);
          dpre[hidden + c] = dc * prevCell * f * (1.0f - f);
          dpre[2 * hidden + c] = dc * i * (1.0f - gg * gg);
          dpre[3 * hidden + c] = dh * tc * o * (1.0f - o);
          dcNext[c] = dc * f;
        }
        std::copy(dpre.begin(), dpre.end(), dx);
        for (int64_t j = 0; j < wide; ++j) {
          dbB[j] += dpre[j];
          if (hp)
            for (int64_t c = 0; c < hidden; ++c) dwB[j * hidden + c] += static_cast<double>(dpre[j]) * hp[c];
        }
        for (int64_t c = 0; c < hidden; ++c) {
          double acc = 0;
          for (int64_t j = 0; j < wide; ++j) acc += static_cast<double>(pw[j * hidden + c]) * dpre[j];
          dhNext[c] = static_cast<float>(acc);
        }
      }
    }
  });
  for (int64_t e = 0; e < wide * hidden; ++e) {
    double acc = 0;
    for (int64_t b = 0; b < batch; ++b) acc += dwRows[b * wide * hidden + e];
    dw[e] = static_cast<float>(acc);
  }
  for (int64_t j = 0; j < wide; ++j) {
    double acc = 0;
    for (int64_t b = 0; b < batch; ++b) acc += dbRows[b * wide + j];
    db[j] = static_cast<float>(acc);
  }
}

/// i32 arithmetic runs in 64 bits and is narrowed back; C++20 defines the
/// narrowing as modular, so overflow wraps instead of being undefined.
template <typename T> using Wide = std::conditional_t<std::is_same_v<T, int32_t>, int64_t, T>;

struct AddFn {
  template <typename T> T operator()(T x, T y) const { return static_cast<T>(Wide<T>(x) + y); }
};
struct SubFn {
  template <typename T> T operator()(T x, T y) const { return static_cast<T>(Wide<T>(x) - y); }
};
struct MulFn {
  template <typename T> T operator()(T x, T y) const { return static_cast<T>(Wide<T>(x) * y); }
};
struct DivFn { // zero i32 divisors are rejected before the loop; INT32_MIN / -1 wraps
  template <typename T> T operator()(T x, T y) const { return static_cast<T>(Wide<T>(x) / y); }
};

template <typename Fn> void arithKernel(const KernelArgs &k) {
  if (k.out.dtype() == DType::F32) return broadcastMap<float, float, float>(k, Fn{});
  assert(k.out.dtype() == DType::I32);
  if constexpr (std::is_same_v<Fn, DivFn>) {
    // Every divisor element is read when the result is non-empty.
    const Tensor &divisor = *k.in[1];
    const int32_t *d = data<int32_t>(divisor);
    if (k.out.numel() > 0 && std::find(d, d + divisor.numel(), 0) != d + divisor.numel())
      throw Error(fmt::format("div: integer division by zero (divisor {})", divisor.typeStr()));
  }
  broadcastMap<int32_t, int32_t, int32_t>(k, Fn{});
}

float sigmoid(float x) {
  // exp() only ever sees a non-positive argument, so it cannot overflow; for
  // very negative x, e / (1 + e) keeps the tiny result's relative precision
  // where 1 / (1 + exp(-x)) would round to 0 once exp(-x) is inf.
  if (x >= 0) return 1.0f / (1.0f + std::exp(-x));
  float e = std::exp(x);
  return e / (1.0f + e);
}

template <float (*F)(float)> void unaryKernel(const KernelArgs &k) {
  const float *x = data<float>(*k.in[0]);
  float *y = data<float>(k.out);
  parallelFor(k.out.numel(), 1, k.threads, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = F(x[i]);
  });
}
float negF(float x) { return -x; }
float expF(float x) { return std::exp(x); }
float logF(float x) { return std::log(x); }
float tanhF(float x) { return std::tanh(x); }
float reluF(float x) { return x > 0.0f ? x : 0.0f; }
float sqrtF(float x) { return std::sqrt(x); }
float erfF(float x) { return std::erf(x); }

/// A tensor seen as [outer, n, inner] around one axis: the slice (o, i) is the
/// n elements base + j * inner, j < n.
struct AxisView {
  int64_t outer = 1, n = 1, inner = 1;
  AxisView(const Extents &e, int64_t axis) {
    n = e[axis];
    for (int64_t d = 0; d < axis; ++d) outer *= e[d];
    for (size_t d = axis + 1; d < e.size(); ++d) inner *= e[d];
  }
  int64_t slices() const { return outer * inner; }
  int64_t base(int64_t slice) const { return (slice / inner) * n * inner + slice % inner; }
};

/// softmax (Log = false) and log_softmax (Log = true) over the axis attribute.
template <bool Log> void normalizeKernel(const KernelArgs &k) {
  const Extents &e = k.in[0]->shape();
  AxisView v(e, ir::normalizeAxis(ir::axisAttr(k.node.attrs), e.size()));
  std::vector<uint8_t> mask = expandMask(k);
  const float *x = data<float>(*k.in[0]);
  float *y = data<float>(k.out);
  constexpr float kMasked = Log ? -std::numeric_limits<float>::infinity() : 0.0f;
  parallelFor(v.slices(), v.n, k.threads, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) {
      int64_t base = v.base(s);
      auto kept = [&](int64_t j) { return mask.empty() || mask[base + j * v.inner]; };
      // Subtracting the largest kept value keeps exp() from overflowing.
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < v.n; ++j)
        if (kept(j)) mx = std::max<double>(mx, x[base + j * v.inner]);
      double sum = 0;
      for (int64_t j = 0; j < v.n; ++j)
        if (kept(j)) sum += std::exp(x[base + j * v.inner] - mx);
      for (int64_t j = 0; j < v.n; ++j) {
        float xv = x[base + j * v.inner];
        float &out = y[base + j * v.inner];
        if (!kept(j)) out = kMasked;
        else if (Log) out = static_cast<float>(xv - mx - std::log(sum));
        else out = static_cast<float>(std::exp(xv - mx) / sum);
      }
    }
  });
}

enum class Reduction { Sum, Mean, Max };

/// sum/mean/max over the axis attribute; keepdim does not change the
/// row-major layout of the result, only its extents.
template <Reduction R> void reduceKernel(const KernelArgs &k) {
  const Extents &e = k.in[0]->shape();
  AxisView v(e, ir::normalizeAxis(ir::axisAttr(k.node.attrs), e.size()));
  std::vector<uint8_t> mask = expandMask(k);
  const float *x = data<float>(*k.in[0]);
  float *y = data<float>(k.out);
  parallelFor(v.slices(), v.n, k.threads, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) {
      int64_t base = v.base(s), count = 0;
      double acc = 0;
      for (int64_t j = 0; j < v.n; ++j) {
        if (!mask.empty() && !mask[base + j * v.inner]) continue;
        double xv = x[base + j * v.inner];
        // Once acc is NaN no comparison replaces it, so max propagates NaN.
        if constexpr (R != Reduction::Max) acc += xv;
        else if (count == 0 || xv > acc || std::isnan(xv)) acc = xv;
        ++count;
      }
      if (R == Reduction::Mean && count > 0) acc /= static_cast<double>(count);
      y[s] = static_cast<float>(acc); // stays 0 for an all-masked or empty slice
    }
  });
}

void reshapeKernel(const KernelArgs &k) {
  assert(k.in[0]->byteSize() == k.out.byteSize());
  std::memcpy(k.out.raw(), k.in[0]->raw(), k.out.byteSize());
}

void transposeKernel(const KernelArgs &k) {
  ir::Shape perm = ir::attrDims(k.node.attrs, "perm");
  Strides own = rowMajorStrides(k.in[0]->shape()), strides(perm.size());
  for (size_t d = 0; d < perm.size(); ++d) strides[d] = own[perm[d].value];
  visitDType(k.out.dtype(), [&](auto t) {
    using T = decltype(t);
    const T *x = data<T>(*k.in[0]);
    T *y = data<T>(k.out);
    parallelFor(k.out.numel(), 1, k.threads, [&](int64_t begin, int64_t end) {
      forEachStrided<1>(k.out.shape(), {strides}, begin, end,
                        [&](int64_t i, const std::array<int64_t, 1> &off) { y[i] = x[off[0]]; });
    });
  });
}

template <typename Cmp> void compareKernel(const KernelArgs &k) {
  visitDType(k.in[0]->dtype(), [&](auto t) {
    using T = decltype(t);
    broadcastMap<uint8_t, T, T>(k, [](T a, T b) { return static_cast<uint8_t>(Cmp{}(a, b)); });
  });
}

void selectKernel(const KernelArgs &k) {
  visitDType(k.out.dtype(), [&](auto t) {
    using T = decltype(t);
    broadcastMap<T, uint8_t, T, T>(k, [](uint8_t c, T a, T b) { return c ? a : b; });
  });
}

/// dropout: a copy with one operand; with the step, the kept elements
/// scaled by 1 / (1 - p) and the others 0 (runtime::dropoutKeeps).
void dropoutKernel(const KernelArgs &k) {
  const float *x = data<float>(*k.in[0]);
  float *y = data<float>(k.out);
  int64_t n = k.out.numel();
  if (k.in.size() == 1) {
    std::copy(x, x + n, y);
    return;
  }
  double p = ir::attrFloat(OpKind::Dropout, k.node.attrs, "p");
  uint64_t seed = static_cast<uint64_t>(ir::attrInt(OpKind::Dropout, k.node.attrs, "seed"));
  int64_t key = ir::attrInt(OpKind::Dropout, k.node.attrs, "key");
  int64_t step = static_cast<int64_t>(std::llround(data<float>(*k.in[1])[0]));
  // With batch rows, element j of row r draws as element j of row
  // batchRows[r] (rows of rowSize elements).
  int64_t rows = k.out.shape().empty() ? 1 : k.out.shape()[0];
  int64_t rowSize = rows ? n / rows : 0;
  const int32_t *batchRows = k.in.size() > 2 ? data<int32_t>(*k.in[2]) : nullptr;
  float scale = static_cast<float>(1.0 / (1.0 - p));
  for (int64_t i = 0; i < n; ++i) {
    int64_t index = batchRows ? batchRows[i / rowSize] * rowSize + i % rowSize : i;
    y[i] = runtime::dropoutKeeps(seed, key, step, index, p) ? x[i] * scale : 0.0f;
  }
}

/// slice (Grad = false): out[.., j, ..] = x[.., start + j, ..]; slice_grad
/// (Grad = true): out zero but for out[.., start + j, ..] = dy[.., j, ..].
template <bool Grad> void sliceKernel(const KernelArgs &k) {
  const Extents &small = Grad ? k.in[0]->shape() : k.out.shape();
  const Extents &big = Grad ? k.out.shape() : k.in[0]->shape();
  int64_t axis = ir::normalizeAxis(ir::axisAttr(k.node.attrs), small.size());
  int64_t start = ir::attrInt(k.node.op, k.node.attrs, "start");
  AxisView s(small, axis), l(big, axis);
  const auto *in = static_cast<const std::byte *>(k.in[0]->raw());
  auto *out = static_cast<std::byte *>(k.out.raw());
  size_t width = ir::dtypeSize(k.out.dtype());
  if (Grad) std::memset(out, 0, static_cast<size_t>(k.out.numel()) * width);
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t j = 0; j < s.n; ++j) {
      size_t smallAt = static_cast<size_t>((o * s.n + j) * s.inner) * width;
      size_t bigAt = static_cast<size_t>((o * l.n + start + j) * l.inner) * width;
      size_t bytes = static_cast<size_t>(s.inner) * width;
      if (Grad) std::memcpy(out + bigAt, in + smallAt, bytes);
      else std::memcpy(out + smallAt, in + bigAt, bytes);
    }
}

/// positions: every element's index along the axis.
void positionsKernel(const KernelArgs &k) {
  const Extents &e = k.in[0]->shape();
  AxisView v(e, ir::normalizeAxis(ir::axisAttr(k.node.attrs), e.size()));
  int32_t *out = data<int32_t>(k.out);
  for (int64_t s = 0; s < v.slices(); ++s)
    for (int64_t j = 0; j < v.n; ++j) out[v.base(s) + j * v.inner] = static_cast<int32_t>(j);
}

void castKernel(const KernelArgs &k) {
  visitDType(k.in[0]->dtype(), [&](auto from) {
    visitDType(k.out.dtype(), [&](auto to) {
      const auto *x = data<decltype(from)>(*k.in[0]);
      auto *y = data<decltype(to)>(k.out);
      for (int64_t i = 0; i < k.out.numel(); ++i) y[i] = convert<decltype(to)>(x[i]);
    });
  });
}

/// Rows of label -1 do not count (a batch padded to a compiled size); any
/// other label outside [0, classes) is an error. The count of rows that do.
int64_t countedRows(const char *op, const int32_t *label, int64_t rows, int64_t classes) {
  int64_t counted = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (label[r] == -1) continue;
    if (label[r] < 0 || label[r] >= classes)
      throw Error(fmt::format("{}: label {} of row {} is outside [0, {})", op, label[r], r, classes));
    ++counted;
  }
  return counted;
}

void crossEntropyKernel(const KernelArgs &k) {
  const Tensor &logits = *k.in[0], &labels = *k.in[1];
  int64_t rows = logits.shape()[0], classes = logits.shape()[1];
  const float *x = data<float>(logits);
  const int32_t *label = data<int32_t>(labels);
  int64_t counted = countedRows("cross_entropy", label, rows, classes);
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (label[r] < 0) continue;
    const float *row = x + r * classes;
    double mx = *std::max_element(row, row + classes), sum = 0;
    for (int64_t c = 0; c < classes; ++c) sum += std::exp(row[c] - mx);
    total += mx + std::log(sum) - row[label[r]]; // -log_softmax(row)[label]
  }
  data<float>(k.out)[0] = counted > 0 ? static_cast<float>(total / static_cast<double>(counted)) : 0.0f;
}

// --- broadcasting and backward kernels ------------------------------------------

void broadcastToKernel(const KernelArgs &k) {
  visitDType(k.out.dtype(), [&](auto t) {
    using T = decltype(t);
    broadcastMap<T, T>(k, [](T x) { return x; });
  });
}

/// sum_to: every element of x is added into the element of the (smaller)
/// result that broadcasting would have copied it from. Serial, so the sum
/// order — and the result — never depends on the thread count.
void sumToKernel(const KernelArgs &k) {
  const Extents &x = k.in[0]->shape();
  const float *in = data<float>(*k.in[0]);
  std::vector<double> acc(static_cast<size_t>(k.out.numel()), 0.0);
  forEachStrided<1>(x, {broadcastStrides(k.out.shape(), x)}, 0, k.in[0]->numel(),
                    [&](int64_t i, const std::array<int64_t, 1> &off) { acc[off[0]] += in[i]; });
  float *out = data<float>(k.out);
  for (size_t i = 0; i < acc.size(); ++i) out[i] = static_cast<float>(acc[i]);
}

/// embedding_grad: rows of dy added into the rows their ids name; repeated
/// ids accumulate. Each thread owns a range of table columns, so no two
/// threads write the same element and the order of additions is fixed.
void embeddingGradKernel(const KernelArgs &k) {
  const Tensor &ids = *k.in[0], &dy = *k.in[1];
  int64_t rows = k.out.shape()[0], width = k.out.shape()[1];
  const int32_t *id = data<int32_t>(ids);
  for (int64_t i = 0; i < ids.numel(); ++i)
    if (id[i] < 0 || id[i] >= rows)
      throw Error(fmt::format("embedding_grad: id {} at position {} is outside [0, {})", id[i], i, rows));
  const float *g = data<float>(dy);
  float *out = data<float>(k.out);
  parallelFor(width, ids.numel(), k.threads, [&](int64_t begin, int64_t end) {
    for (int64_t i = 0; i < ids.numel(); ++i) {
      float *row = out + id[i] * width;
      const float *src = g + i * width;
      for (int64_t c = begin; c < end; ++c) row[c] += src[c];
    }
  });
}

/// softmax_grad (Log = false): dx = y * (dy - sum(y * dy)); log_softmax_grad
/// (Log = true): dx = dy - exp(y) * sum(dy), over unmasked positions only.
template <bool Log> void normalizeGradKernel(const KernelArgs &k) {
  const Extents &e = k.in[0]->shape();
  AxisView v(e, ir::normalizeAxis(ir::axisAttr(k.node.attrs), e.size()));
  std::vector<uint8_t> mask = maskOperand(k, 2, *k.in[0]);
  const float *y = data<float>(*k.in[0]), *dy = data<float>(*k.in[1]);
  float *dx = data<float>(k.out);
  parallelFor(v.slices(), v.n, k.threads, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) {
      int64_t base = v.base(s);
      auto kept = [&](int64_t j) { return mask.empty() || mask[base + j * v.inner]; };
      double dot = 0;
      for (int64_t j = 0; j < v.n; ++j) {
        int64_t i = base + j * v.inner;
        if (kept(j)) dot += Log ? double(dy[i]) : double(y[i]) * dy[i];
      }
      for (int64_t j = 0; j < v.n; ++j) {
        int64_t i = base + j * v.inner;
        if (!kept(j)) dx[i] = 0.0f;
        else if (Log) dx[i] = static_cast<float>(dy[i] - std::exp(double(y[i])) * dot);
        else dx[i] = static_cast<float>(y[i] * (dy[i] - dot));
      }
    }
  });
}

template <float (*F)(float, float)> void binaryGradKernel(const KernelArgs &k) {
  const float *a = data<float>(*k.in[0]), *dy = data<float>(*k.in[1]);
  float *dx = data<float>(k.out);
  parallelFor(k.out.numel(), 1, k.threads, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dx[i] = F(a[i], dy[i]);
  });
}
float tanhGradF(float y, float dy) { return dy * (1.0f - y * y); }
float sigmoidGradF(float y, float dy) { return dy * y * (1.0f - y); }
float reluGradF(float x, float dy) { return x > 0.0f ? dy : 0.0f; }

/// sum_grad / mean_grad: dx[..., j, ...] = dy[...] (divided by the slice's
/// unmasked count for the mean), 0 where masked.
template <Reduction R> void reduceGradKernel(const KernelArgs &k) {
  const Extents &e = k.out.shape();
  AxisView v(e, ir::normalizeAxis(ir::axisAttr(k.node.attrs), e.size()));
  std::vector<uint8_t> mask = maskOperand(k, 1, k.out);
  const float *dy = data<float>(*k.in[0]);
  float *dx = data<float>(k.out);
  parallelFor(v.slices(), v.n, k.threads, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) {
      int64_t base = v.base(s), count = 0;
      for (int64_t j = 0; j < v.n; ++j) count += mask.empty() || mask[base + j * v.inner];
      double g = dy[s];
      if (R == Reduction::Mean && count > 0) g /= static_cast<double>(count);
      for (int64_t j = 0; j < v.n; ++j) {
        int64_t i = base + j * v.inner;
        dx[i] = (mask.empty() || mask[i]) ? static_cast<float>(g) : 0.0f;
      }
    }
  });
}

/// max_grad: the slice's gradient goes to its first unmasked maximum, the
/// element the forward max chose.
void maxGradKernel(const KernelArgs &k) {
  const Extents &e = k.in[0]->shape();
  AxisView v(e, ir::normalizeAxis(ir::axisAttr(k.node.attrs), e.size()));
  std::vector<uint8_t> mask = maskOperand(k, 2, *k.in[0]);
  const float *x = data<float>(*k.in[0]), *dy = data<float>(*k.in[1]);
  float *dx = data<float>(k.out); // zero-filled
  for (int64_t s = 0; s < v.slices(); ++s) {
    int64_t base = v.base(s), best = -1;
    for (int64_t j = 0; j < v.n; ++j) {
      int64_t i = base + j * v.inner;
      if (!mask.empty() && !mask[i]) continue;
      if (best < 0 || x[i] > x[best] || (std::isnan(x[i]) && !std::isnan(x[best]))) best = i;
    }
    if (best >= 0) dx[best] = dy[s];
  }
}

void crossEntropyGradKernel(const KernelArgs &k) {
  const Tensor &logits = *k.in[0], &labels = *k.in[1];
  int64_t rows = logits.shape()[0], classes = logits.shape()[1];
  const float *x = data<float>(logits);
  const int32_t *label = data<int32_t>(labels);
  int64_t counted = countedRows("cross_entropy_grad", label, rows, classes);
  double scale = counted > 0 ? data<float>(*k.in[2])[0] / static_cast<double>(counted) : 0.0;
  float *dx = data<float>(k.out);
  for (int64_t r = 0; r < rows; ++r) {
    const float *row = x + r * classes;
    if (label[r] < 0) {
      std::fill(dx + r * classes, dx + (r + 1) * classes, 0.0f);
      continue;
    }
    double mx = *std::max_element(row, row + classes), sum = 0;
    for (int64_t c = 0; c < classes; ++c) sum += std::exp(row[c] - mx);
    for (int64_t c = 0; c < classes; ++c) {
      double p = std::exp(row[c] - mx) / sum;
      dx[r * classes + c] = static_cast<float>((p - (c == label[r] ? 1.0 : 0.0)) * scale);
    }
  }
}

// --- optimizer kernels ------------------------------------------------------------

void adamMomentKernel(const KernelArgs &k) {
  float beta = static_cast<float>(ir::attrFloat(k.node.op, k.node.attrs, "beta"));
  bool square = ir::attrBool(k.node.op, k.node.attrs, "square");
  const float *m = data<float>(*k.in[0]), *g = data<float>(*k.in[1]);
  float *out = data<float>(k.out);
  float rest = 1.0f - beta;
  parallelFor(k.out.numel(), 1, k.threads, [&](int64_t begin, int64_t end) {
    if (square)
      for (int64_t i = begin; i < end; ++i) out[i] = beta * m[i] + rest * (g[i] * g[i]);
    else
      for (int64_t i = begin; i < end; ++i) out[i] = beta * m[i] + rest * g[i];
  });
}

void adamUpdateKernel(const KernelArgs &k) {
  const float *p = data<float>(*k.in[0]), *m = data<float>(*k.in[1]), *v = data<float>(*k.in[2]);
  float stepSize = data<float>(*k.in[3])[0], bc2Sqrt = data<float>(*k.in[4])[0];
  float eps = static_cast<float>(ir::attrFloat(k.node.op, k.node.attrs, "eps"));
  float *out = data<float>(k.out);
  parallelFor(k.out.numel(), 1, k.threads, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = p[i] - stepSize * (m[i] / (std::sqrt(v[i]) / bc2Sqrt + eps));
  });
}

/// A fused op runs its decomposition (ir/decompose.h): a small graph over
/// the operands at their concrete extents, interpreted by this same
/// interpreter, so the oracle has no second version of the computation.
void decomposedKernel(const KernelArgs &k) {
  ir::Graph g(std::string(ir::opName(k.node.op)));
  ir::Builder b(g);
  std::map<std::string, Tensor> inputs;
  std::vector<ir::ValueId> operands;
  for (size_t i = 0; i < k.in.size(); ++i) {
    ir::Shape shape;
    for (int64_t e : k.in[i]->shape()) shape.push_back(ir::Dim::constant(e));
    std::string name = "in" + std::to_string(i);
    operands.push_back(b.input(name, {k.in[i]->dtype(), shape}));
    inputs[name] = Tensor::view(k.in[i]->dtype(), k.in[i]->shape(), const_cast<std::byte *>(k.in[i]->raw()));
  }
  std::vector<ir::ValueId> results = ir::decompositionOf(k.node.op)(b, operands, k.node.attrs);
  for (size_t r = 0; r < results.size(); ++r) b.output("out" + std::to_string(r), results[r]);
  RunOptions options;
  options.threads = k.threads;
  RunResult r = run(g, inputs, {}, options);
  for (size_t i = 0; i < k.outs.size(); ++i) {
    const Tensor &t = r.outputs.at("out" + std::to_string(i));
    if (t.shape() != k.outs[i]->shape())
      throw Error(fmt::format("{}: the decomposition gives result {} as {}, not {}", ir::opName(k.node.op), i,
                              t.typeStr(), k.outs[i]->typeStr()));
    if (t.byteSize()) std::memcpy(k.outs[i]->raw(), t.raw(), t.byteSize());
  }
}

/// The kernel of each op. No default case: an op added to ir/ops.def without
/// a kernel makes -Wswitch warn here.
Kernel kernelFor(OpKind op) {
  switch (op) {
  case OpKind::MatMulBias:
  case OpKind::WeightGrad:
  case OpKind::Attention:
  case OpKind::AttentionGrad:
  case OpKind::AdditiveAttention:
  case OpKind::AdditiveAttentionGrad:
  case OpKind::Elementwise:
  case OpKind::AdamStep: return decomposedKernel;
  case OpKind::AdamRows: return decomposedKernel;
  case OpKind::Constant: return constantKernel;
  case OpKind::Embedding: return embeddingKernel;
  case OpKind::MatMul: return matmulKernel;
  case OpKind::Add: return arithKernel<AddFn>;
  case OpKind::Sub: return arithKernel<SubFn>;
  case OpKind::Mul: return arithKernel<MulFn>;
  case OpKind::Div: return arithKernel<DivFn>;
  case OpKind::Neg: return unaryKernel<negF>;
  case OpKind::Exp: return unaryKernel<expF>;
  case OpKind::Log: return unaryKernel<logF>;
  case OpKind::Tanh: return unaryKernel<tanhF>;
  case OpKind::Relu: return unaryKernel<reluF>;
  case OpKind::Sigmoid: return unaryKernel<sigmoid>;
  case OpKind::Sqrt: return unaryKernel<sqrtF>;
  case OpKind::Erf: return unaryKernel<erfF>;
  case OpKind::Softmax: return normalizeKernel<false>;
  case OpKind::LogSoftmax: return normalizeKernel<true>;
  case OpKind::Sum: return reduceKernel<Reduction::Sum>;
  case OpKind::Mean: return reduceKernel<Reduction::Mean>;
  case OpKind::Max: return reduceKernel<Reduction::Max>;
  case OpKind::Reshape: return reshapeKernel;
  case OpKind::Transpose: return transposeKernel;
  case OpKind::Equal: return compareKernel<std::equal_to<>>;
  case OpKind::NotEqual: return compareKernel<std::not_equal_to<>>;
  case OpKind::Less: return compareKernel<std::less<>>;
  case OpKind::LessEqual: return compareKernel<std::less_equal<>>;
  case OpKind::Greater: return compareKernel<std::greater<>>;
  case OpKind::GreaterEqual: return compareKernel<std::greater_equal<>>;
  case OpKind::Select: return selectKernel;
  case OpKind::Cast: return castKernel;
  case OpKind::Positions: return positionsKernel;
  case OpKind::Dropout: return dropoutKernel;
  case OpKind::Slice: return sliceKernel<false>;
  case OpKind::Conv1d: return conv1dKernel;
  case OpKind::Gru: return gruKernel;
  case OpKind::GruGrad: return gruGradKernel;
  case OpKind::Lstm: return lstmKernel;
  case OpKind::LstmGrad: return lstmGradKernel;
  case OpKind::Conv1dInputGrad: return conv1dInputGradKernel;
  case OpKind::Conv1dWeightGrad: return conv1dWeightGradKernel;
  case OpKind::SliceGrad: return sliceKernel<true>;
  case OpKind::CrossEntropy: return crossEntropyKernel;
  case OpKind::BroadcastTo: return broadcastToKernel;
  case OpKind::SumTo: return sumToKernel;
  case OpKind::EmbeddingGrad: return embeddingGradKernel;
  case OpKind::SoftmaxGrad: return normalizeGradKernel<false>;
  case OpKind::LogSoftmaxGrad: return normalizeGradKernel<true>;
  case OpKind::TanhGrad: return binaryGradKernel<tanhGradF>;
  case OpKind::SigmoidGrad: return binaryGradKernel<sigmoidGradF>;
  case OpKind::ReluGrad: return binaryGradKernel<reluGradF>;
  case OpKind::SumGrad: return reduceGradKernel<Reduction::Sum>;
  case OpKind::MeanGrad: return reduceGradKernel<Reduction::Mean>;
  case OpKind::MaxGrad: return maxGradKernel;
  case OpKind::CrossEntropyGrad: return crossEntropyGradKernel;
  case OpKind::AdamMoment: return adamMomentKernel;
  case OpKind::AdamUpdate: return adamUpdateKernel;
  }
  return nullptr;
}

// --- run ----------------------------------------------------------------------------

/// Finds the tensor for a graph input or param and checks its dtype and rank;
/// the extents are checked by the caller once the symbols are bound.
const Tensor &lookup(const std::map<std::string, Tensor> &given, const ir::ValueInfo &v, const char *what) {
  auto it = given.find(v.name);
  if (it == given.end()) throw Error(fmt::format("missing {} '{}' of type {}", what, v.name, v.type.str()));
  const Tensor &t = it->second;
  if (t.dtype() != v.type.dtype || t.rank() != v.type.rank())
    throw Error(fmt::format("{} '{}' expects {} but was given {}", what, v.name, v.type.str(), t.typeStr()));
  return t;
}

int resolveThreads(int requested) {
  if (requested > 0) return requested;
  return std::max(1u, std::thread::hardware_concurrency());
}

} // namespace

bool hasKernel(ir::OpKind op) { return kernelFor(op) != nullptr; }

bool needsZeroedResult(ir::OpKind op) {
  return op == OpKind::MatMul || op == OpKind::EmbeddingGrad || op == OpKind::MaxGrad;
}

void executeNode(const ir::Node &n, const std::vector<const Tensor *> &operands, Tensor &result, int threads) {
  executeNode(n, operands, std::vector<Tensor *>{&result}, threads);
}

void executeNode(const ir::Node &n, const std::vector<const Tensor *> &operands, const std::vector<Tensor *> &results,
                 int threads) {
  if (results.size() != n.numResults())
    throw Error(fmt::format("{} has {} results, {} tensors were given for them", ir::opName(n.op), n.numResults(),
                            results.size()));
  kernelFor(n.op)({n, operands, *results.front(), resolveThreads(threads), results});
}

RunResult run(const ir::Graph &g, const std::map<std::string, Tensor> &inputs,
              const std::map<std::string, Tensor> &params, const RunOptions &options) {
  size_t numValues = g.numValues();
  // Operand tensors by ValueId: inputs and params point into the caller's
  // maps, node results into `owned`, which never reallocates.
  std::vector<const Tensor *> slot(numValues, nullptr);
  std::vector<Tensor> owned(numValues);
  RunResult result;

  std::vector<Extents> inputExtents;
  for (ir::ValueId v : g.inputs()) {
    slot[v] = &lookup(inputs, g.value(v), "input");
    inputExtents.push_back(slot[v]->shape());
  }
  result.bindings = g.bindSymbols(inputExtents);

  // Concrete extents of every value, before any work is done.
  std::vector<Extents> extents(numValues);
  for (size_t v = 0; v < numValues; ++v) {
    auto e = ir::concreteShape(g.type(v).shape, result.bindings);
    if (!e)
      throw Error(fmt::format("graph @{}: value {} of type {} has a dim that no input binds", g.name(),
                              g.value(v).name.empty() ? "%" + std::to_string(v) : g.value(v).name,
                              g.type(v).str()));
    extents[v] = std::move(*e);
  }
  for (ir::ValueId v : g.params()) {
    slot[v] = &lookup(params, g.value(v), "parameter");
    if (slot[v]->shape() != extents[v])
      throw Error(fmt::format("parameter '{}' expects {} but was given {}", g.value(v).name,
                              g.type(v).str(), slot[v]->typeStr()));
  }

  // The index of the last node that reads each value; a result nobody reads
  // dies at its own node, outputs never die.
  const std::vector<ir::Node> &nodes = g.nodes();
  std::vector<size_t> lastUse(numValues, 0);
  for (size_t i = 0; i < nodes.size(); ++i) {
    for (ir::ValueId r : nodes[i].results()) lastUse[r] = i;
    for (ir::ValueId v : nodes[i].operands) lastUse[v] = i;
  }
  for (const ir::Output &o : g.outputs()) lastUse[o.value] = nodes.size();

  int threads = resolveThreads(options.threads);
  std::vector<const Tensor *> operands;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const ir::Node &n = nodes[i];
    operands.clear();
    for (ir::ValueId v : n.operands) {
      assert(slot[v] && "operand freed before its last use");
      operands.push_back(slot[v]);
    }
    std::vector<Tensor *> results;
    for (ir::ValueId r : n.results()) {
      owned[r] = Tensor(g.type(r).dtype, extents[r]);
      slot[r] = &owned[r];
      results.push_back(&owned[r]);
    }
    try {
      kernelFor(n.op)({n, operands, owned[n.result], threads, results});
    } catch (const Error &e) {
      if (e.loc().known() || n.locs.empty()) throw;
      throw Error(e.message(), n.locs.front());
    }
    if (options.keepAll) continue;
    auto release = [&](ir::ValueId v) {
      if (g.value(v).kind == ir::ValueKind::Node && lastUse[v] == i) {
        owned[v] = Tensor();
        slot[v] = nullptr;
      }
    };
    for (ir::ValueId v : n.operands) release(v);
    for (ir::ValueId r : n.results()) release(r);
  }

  // An output that is a node result is moved out by its last output entry
  // (a training step returns every parameter; copying them would double the
  // step's memory traffic); inputs, params and kept values are copied.
  std::map<ir::ValueId, int> outputRefs;
  for (const ir::Output &o : g.outputs()) ++outputRefs[o.value];
  for (const ir::Output &o : g.outputs()) {
    bool movable = !options.keepAll && g.value(o.value).kind == ir::ValueKind::Node;
    if (movable && --outputRefs[o.value] == 0) result.outputs[o.name] = std::move(owned[o.value]);
    else result.outputs[o.name] = *slot[o.value];
  }
  if (options.keepAll) result.values = std::move(owned);
  return result;
}

} // namespace kiln::reference
