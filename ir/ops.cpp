//===- ir/ops.cpp - the op table and the shape rules ----------------------===//
//
// One shape rule per family of ops. Rules check dtypes, ranks and dims and
// throw kiln::Error with both shapes in the message when they do not fit;
// they never see source locations (the builder attaches those). Also the
// parsing of the attribute specs of ops.def, the attribute checks and the
// accessors that read an op's attribute or its declared default.
//
//===----------------------------------------------------------------------===//
#include "ir/ops.h"

#include "ir/elementwise.h"

#include "ir/diagnostic.h"
#include "ir/printer.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fmt/format.h>
#include <stdexcept>
#include <type_traits>

namespace kiln::ir {

namespace {

[[noreturn]] void fail(const std::string &msg) { throw Error(msg); }

/// A bug in kiln itself, such as a malformed ops.def line: no user input can
/// cause it, so there is nothing to recover.
[[noreturn]] void internalError(const std::string &msg) {
  std::fprintf(stderr, "kiln: internal error: %s\n", msg.c_str());
  std::abort();
}

/// An attribute as a shape rule sees it. inferType has checked the node's
/// attributes against the op's declaration and filled in the declared
/// defaults (float attributes as double), so every attribute the op declares
/// is present and holds its declared kind.
template <typename T> const T &declared(const Attrs &a, const char *name) {
  auto it = a.find(name);
  const T *v = it == a.end() ? nullptr : std::get_if<T>(&it->second);
  if (!v) internalError(fmt::format("a shape rule reads attribute '{}', which its op does not declare so", name));
  return *v;
}

void expectFloat(const TensorType &t, const char *what) {
  if (t.dtype != DType::F32) fail(fmt::format("{} must be f32, got {}", what, t.str()));
}

void checkMask(const TensorType &x, const std::vector<TensorType> &ops) {
  if (ops.size() < 2) return;
  const TensorType &m = ops[1];
  if (m.dtype != DType::Bool) fail(fmt::format("mask must be bool, got {}", m.str()));
  auto b = broadcastShapes(x.shape, m.shape);
  if (!b || *b != x.shape)
    fail(fmt::format("mask {} does not broadcast to {}", m.str(), x.str()));
}

TensorType shapeConstant(const std::vector<TensorType> &, const Attrs &a) {
  const std::string &name = declared<std::string>(a, "dtype");
  auto dt = parseDType(name);
  if (!dt) fail("constant: unknown dtype '" + name + "'");
  return {*dt, {}};
}

TensorType shapeEmbedding(const std::vector<TensorType> &o, const Attrs &) {
  const TensorType &table = o[0], &ids = o[1];
  expectFloat(table, "embedding table");
  if (table.rank() != 2) fail(fmt::format("embedding table must be rank 2 [V,E], got {}", table.str()));
  if (ids.dtype != DType::I32) fail(fmt::format("embedding ids must be i32, got {}", ids.str()));
  Shape s = ids.shape;
  s.push_back(table.shape[1]);
  return {DType::F32, s};
}

TensorType shapeMatMul(const std::vector<TensorType> &o, const Attrs &a) {
  const TensorType &x = o[0], &y = o[1];
  expectFloat(x, "matmul lhs");
  expectFloat(y, "matmul rhs");
  if (x.rank() < 2 || y.rank() < 2)
    fail(fmt::format("matmul needs operands of rank >= 2, got {} and {}", x.str(), y.str()));
  bool ta = declared<bool>(a, "transpose_a"), tb = declared<bool>(a, "transpose_b");
  const Dim &m = x.shape[x.rank() - (ta ? 1 : 2)];
  const Dim &k1 = x.shape[x.rank() - (ta ? 2 : 1)];
  const Dim &k2 = y.shape[y.rank() - (tb ? 1 : 2)];
  const Dim &n = y.shape[y.rank() - (tb ? 2 : 1)];
  if (!(k1 == k2))
    fail(fmt::format("cannot multiply {}{} by {}{}: inner dims {} and {} differ", x.str(),
                     ta ? "^T" : "", y.str(), tb ? "^T" : "", k1.str(), k2.str()));
  Shape bx(x.shape.begin(), x.shape.end() - 2), by(y.shape.begin(), y.shape.end() - 2);
  auto batch = broadcastShapes(bx, by);
  if (!batch)
    fail(fmt::format("matmul batch dims of {} and {} do not broadcast", x.str(), y.str()));
  Shape s = *batch;
  s.push_back(m);
  s.push_back(n);
  return {DType::F32, s};
}

TensorType broadcastPair(const TensorType &x, const TensorType &y, const char *verb) {
  if (x.dtype != y.dtype || x.dtype == DType::Bool)
    fail(fmt::format("cannot {} {} and {}: element types differ or are bool", verb, x.str(), y.str()));
  auto s = broadcastShapes(x.shape, y.shape);
  if (!s) fail(fmt::format("cannot {} {} and {}: shapes do not broadcast", verb, x.str(), y.str()));
  return {x.dtype, *s};
}

TensorType shapeArith(const std::vector<TensorType> &o, const Attrs &) {
  return broadcastPair(o[0], o[1], "combine");
}

TensorType shapeUnaryFloat(const std::vector<TensorType> &o, const Attrs &) {
  expectFloat(o[0], "operand");
  return o[0];
}

TensorType shapeNormalize(const std::vector<TensorType> &o, const Attrs &a) {
  expectFloat(o[0], "operand");
  if (o[0].rank() == 0) fail("cannot normalise a scalar");
  normalizeAxis(declared<int64_t>(a, "axis"), o[0].rank());
  checkMask(o[0], o);
  return o[0];
}

TensorType shapeReduce(const std::vector<TensorType> &o, const Attrs &a) {
  expectFloat(o[0], "operand");
  if (o[0].rank() == 0) fail("cannot reduce a scalar");
  int64_t axis = normalizeAxis(declared<int64_t>(a, "axis"), o[0].rank());
  checkMask(o[0], o);
  Shape s = o[0].shape;
  if (declared<bool>(a, "keepdim")) s[axis] = Dim::constant(1);
  else s.erase(s.begin() + axis);
  return {DType::F32, s};
}

TensorType shapeReshape(const std::vector<TensorType> &o, const Attrs &a) {
  const Shape &target = declared<Shape>(a, "shape");
  // Element counts must agree: equal constant products and equal multisets of
  // symbols (a symbolic dim can only move, never split or merge).
  auto split = [](const Shape &s, int64_t &product, std::vector<std::string> &syms) {
    product = 1;
    for (const Dim &d : s) {
      if (d.isSymbolic()) syms.push_back(d.str());
      else if (__builtin_mul_overflow(product, d.value, &product))
        fail(fmt::format("reshape: {} has more than 2^63 elements", shapeStr(s)));
    }
    std::sort(syms.begin(), syms.end());
  };
  for (const Dim &d : target)
    if (!d.isSymbolic() && d.value < 0) fail("reshape: negative dim in target shape " + shapeStr(target));
  int64_t p1, p2;
  std::vector<std::string> s1, s2;
  split(o[0].shape, p1, s1);
  split(target, p2, s2);
  if (p1 != p2 || s1 != s2)
    fail(fmt::format("cannot reshape {} to {}: element counts differ", o[0].str(), shapeStr(target)));
  return {o[0].dtype, target};
}

TensorType shapeTranspose(const std::vector<TensorType> &o, const Attrs &a) {
  const Shape &perm = declared<Shape>(a, "perm");
  if (perm.size() != o[0].rank())
    fail(fmt::format("transpose of {} needs a perm of {} dims, got {}", o[0].str(), o[0].rank(), shapeStr(perm)));
  std::vector<bool> seen(perm.size(), false);
  Shape s;
  for (const Dim &d : perm) {
    if (d.isSymbolic() || d.value < 0 || d.value >= (int64_t)perm.size() || seen[d.value])
      fail("transpose: perm " + shapeStr(perm) + " is not a permutation");
    seen[d.value] = true;
    s.push_back(o[0].shape[d.value]);
  }
  return {o[0].dtype, s};
}

TensorType shapeCompare(const std::vector<TensorType> &o, const Attrs &) {
  if (o[0].dtype != o[1].dtype)
    fail(fmt::format("cannot compare {} and {}: element types differ", o[0].str(), o[1].str()));
  auto s = broadcastShapes(o[0].shape, o[1].shape);
  if (!s) fail(fmt::format("cannot compare {} and {}: shapes do not broadcast", o[0].str(), o[1].str()));
  return {DType::Bool, *s};
}

TensorType shapeSelect(const std::vector<TensorType> &o, const Attrs &) {
  if (o[0].dtype != DType::Bool) fail(fmt::format("select condition must be bool, got {}", o[0].str()));
  if (o[1].dtype != o[2].dtype)
    fail(fmt::format("select branches {} and {} have different element types", o[1].str(), o[2].str()));
  auto s = broadcastShapes(o[1].shape, o[2].shape);
  if (s) s = broadcastShapes(o[0].shape, *s);
  if (!s)
    fail(fmt::format("select: shapes {}, {} and {} do not broadcast", o[0].str(), o[1].str(), o[2].str()));
  return {o[1].dtype, *s};
}

TensorType shapeCast(const std::vector<TensorType> &o, const Attrs &a) {
  const std::string &name = declared<std::string>(a, "dtype");
  auto dt = parseDType(name);
  if (!dt) fail("cast: unknown dtype '" + name + "'");
  return {*dt, o[0].shape};
}

/// a - b when that is known at compile time: both constants, or the same
/// symbol with different offsets (`T-2` - `T` = -2); nullopt also when it
/// overflows.
std::optional<int64_t> dimDifference(const Dim &a, const Dim &b) {
  int64_t d = 0;
  if (a.symbol != b.symbol || __builtin_sub_overflow(a.value, b.value, &d)) return std::nullopt;
  return d;
}

/// d moved by delta; an error rather than overflow for absurd attributes.
Dim shifted(const Dim &d, int64_t delta) {
  int64_t v = 0;
  if (__builtin_add_overflow(d.value, delta, &v)) fail(fmt::format("dim {} moved by {} overflows", d.str(), delta));
  return Dim{v, d.symbol};
}

TensorType shapeSlice(const std::vector<TensorType> &o, const Attrs &a) {
  if (o[0].rank() == 0) fail("slice needs a tensor with at least one dim, got a scalar");
  int64_t axis = normalizeAxis(declared<int64_t>(a, "axis"), o[0].rank());
  const Dim &extent = o[0].shape[static_cast<size_t>(axis)];
  int64_t start = declared<int64_t>(a, "start");
  const Dim &size = declared<Dim>(a, "size");
  // [start, start + size) must lie inside the dim for every binding of its
  // symbol: a constant dim and size, or a symbolic size of the dim's symbol
  // that ends at or before its end (`T-2` from 2 in `T`).
  std::optional<int64_t> room = dimDifference(extent, shifted(size, start));
  if (start < 0 || (!size.isSymbolic() && size.value < 0) || !room || *room < 0)
    fail(fmt::format("slice [{}, {} + {}) is outside dim {} of {}{}", start, start, size.str(), axis, o[0].str(),
                     extent.isSymbolic() ? " for some " + extent.symbol : ""));
  TensorType t = o[0];
  t.shape[static_cast<size_t>(axis)] = size;
  return t;
}

TensorType shapeSliceGrad(const std::vector<TensorType> &o, const Attrs &a) {
  expectFloat(o[0], "slice_grad operand");
  if (o[0].rank() == 0) fail("slice_grad needs a tensor with at least one dim, got a scalar");
  int64_t axis = normalizeAxis(declared<int64_t>(a, "axis"), o[0].rank());
  const Dim &part = o[0].shape[static_cast<size_t>(axis)];
  int64_t start = declared<int64_t>(a, "start");
  const Dim &size = declared<Dim>(a, "size");
  std::optional<int64_t> room = dimDifference(size, shifted(part, start));
  if (start < 0 || (!size.isSymbolic() && size.value < 0) || !room || *room < 0)
    fail(fmt::format("slice_grad: [{}, {} + {}) is outside a dim of extent {}", start, start, part.str(), size.str()));
  TensorType t = o[0];
  t.shape[static_cast<size_t>(axis)] = size;
  return t;
}

TensorType shapeDropout(const std::vector<TensorType> &o, const Attrs &a) {
  expectFloat(o[0], "dropout operand");
  double p = declared<double>(a, "p");
  if (!(p >= 0 && p < 1)) fail(fmt::format("dropout: p must be in [0, 1), got {}", p));
  if (o.size() >= 2 && !(o[1] == TensorType{DType::F32, {}}))
    fail(fmt::format("dropout: the step must be f32[], got {}", o[1].str()));
  if (o.size() == 3) {
    if (o[0].rank() == 0) fail("dropout: batch rows need an operand with rows (rank 1 or more)");
    if (o[2].dtype != DType::I32 || o[2].rank() != 1 || !(o[2].shape[0] == o[0].shape[0]))
      fail(fmt::format("dropout: the batch rows must be i32[{}] (one per row of the operand), got {}",
                       o[0].shape[0].str(), o[2].str()));
  }
  return o[0];
}

/// The checks the three conv1d rules share: x-like f32 operands of rank >= 2
/// with equal batch dims, and a non-negative padding.
void expectSequences(const TensorType &a, const TensorType &b, const char *op) {
  expectFloat(a, op);
  expectFloat(b, op);
  if (a.rank() < 2 || b.rank() != a.rank() ||
      !std::equal(a.shape.begin(), a.shape.end() - 2, b.shape.begin()))
    fail(fmt::format("{}: {} and {} must be [..., T, channels] with the same batch dims", op, a.str(), b.str()));
}

int64_t convPadding(const Attrs &a, const char *op) {
  int64_t padding = declared<int64_t>(a, "padding");
  if (padding < 0 || padding > (int64_t(1) << 32))
    fail(fmt::format("{}: padding must be from 0 to 2^32, got {}", op, padding));
  return padding;
}

/// A conv1d weight f32[O, C, K] with constant dims.
void expectConvWeight(const TensorType &w, const char *op) {
  expectFloat(w, op);
  if (w.rank() != 3 || std::any_of(w.shape.begin(), w.shape.end(), [](const Dim &d) { return d.isSymbolic(); }))
    fail(fmt::format("{}: the weight must be f32[out, in, width] of constant dims, got {}", op, w.str()));
}

TensorType shapeConv1d(const std::vector<TensorType> &o, const Attrs &a) {
  const TensorType &x = o[0], &w = o[1];
  expectFloat(x, "conv1d input");
  expectConvWeight(w, "conv1d");
  if (x.rank() < 2) fail(fmt::format("conv1d: the input must be [..., T, channels], got {}", x.str()));
  int64_t padding = convPadding(a, "conv1d");
  const Dim &channels = x.shape.back();
  if (!(channels == w.shape[1]))
    fail(fmt::format("conv1d: the input has {} channels but the weight {} takes {}", channels.str(), w.str(),
                     w.shape[1].str()));
  if (o.size() == 3 && !(o[2] == TensorType{DType::F32, {w.shape[0]}}))
    fail(fmt::format("conv1d: the bias must be f32[{}], got {}", w.shape[0].str(), o[2].str()));
  TensorType y = x;
  Dim &length = y.shape[y.rank() - 2];
  length = shifted(length, 2 * padding - w.shape[2].value + 1);
  if (!length.isSymbolic() && length.value < 0)
    fail(fmt::format("conv1d: a kernel of width {} with padding {} is wider than the {} positions of {}",
                     w.shape[2].value, padding, x.shape[x.rank() - 2].str(), x.str()));
  y.shape.back() = w.shape[0];
  return y;
}

TensorType shapeConv1dInputGrad(const std::vector<TensorType> &o, const Attrs &a) {
  const TensorType &dy = o[0], &w = o[1];
  expectFloat(dy, "conv1d_input_grad dy");
  expectConvWeight(w, "conv1d_input_grad");
  int64_t padding = convPadding(a, "conv1d_input_grad");
  if (dy.rank() < 2 || !(dy.shape.back() == w.shape[0]))
    fail(fmt::format("conv1d_input_grad: dy {} must be [..., L, {}] for the weight {}", dy.str(), w.shape[0].str(),
                     w.str()));
  TensorType dx = dy;
  Dim &length = dx.shape[dx.rank() - 2];
  length = shifted(length, w.shape[2].value - 1 - 2 * padding);
  if (!length.isSymbolic() && length.value < 0)
    fail(fmt::format("conv1d_input_grad: dy {} is longer than any input of the weight {} with padding {}", dy.str(),
                     w.str(), padding));
  dx.shape.back() = w.shape[1];
  return dx;
}

TensorType shapeConv1dWeightGrad(const std::vector<TensorType> &o, const Attrs &a) {
  const TensorType &x = o[0], &dy = o[1];
  expectSequences(x, dy, "conv1d_weight_grad");
  int64_t padding = convPadding(a, "conv1d_weight_grad");
  for (const Dim &d : {x.shape.back(), dy.shape.back()})
    if (d.isSymbolic()) fail(fmt::format("conv1d_weight_grad: channel dims must be constants, got {} and {}", x.str(), dy.str()));
  std::optional<int64_t> longer = dimDifference(x.shape[x.rank() - 2], dy.shape[dy.rank() - 2]);
  if (!longer || *longer + 2 * padding + 1 < 1)
    fail(fmt::format("conv1d_weight_grad: the lengths of x {} and dy {} do not give a kernel width with padding {}",
                     x.str(), dy.str(), padding));
  return {DType::F32, {dy.shape.back(), x.shape.back(), Dim::constant(*longer + 2 * padding + 1)}};
}

/// The operands of a recurrent op with `gates` gates per unit (gru 3,
/// lstm 4): xp [B,T,gates H], w [gates H,H], b [gates H] and an optional mask
/// bool[B,T]; returns H.
int64_t checkRecurrent(const TensorType &xp, const TensorType &w, const TensorType &b, const TensorType *mask,
                       int64_t gates, const char *op) {
  expectFloat(xp, op);
  if (w.rank() != 2 || w.dtype != DType::F32 || w.shape[0].isSymbolic() || w.shape[1].isSymbolic() ||
      w.shape[0].value != gates * w.shape[1].value)
    fail(fmt::format("{}: the recurrent weight must be f32[{}H,H] of constant dims, got {}", op, gates, w.str()));
  Dim wide = w.shape[0];
  if (xp.rank() != 3 || !(xp.shape[2] == wide))
    fail(fmt::format("{}: the input projections must be f32[B,T,{}] for the weight {}, got {}", op, wide.str(),
                     w.str(), xp.str()));
  if (!(b == TensorType{DType::F32, {wide}}))
    fail(fmt::format("{}: the recurrent bias must be f32[{}], got {}", op, wide.str(), b.str()));
  if (mask && !(*mask == TensorType{DType::Bool, {xp.shape[0], xp.shape[1]}}))
    fail(fmt::format("{}: the mask must be bool[{},{}], got {}", op, xp.shape[0].str(), xp.shape[1].str(), mask->str()));
  return w.shape[1].value;
}

/// The forward rule: h [B,T,H] and what is saved per step [B,T,saved H].
std::vector<TensorType> recurrentForward(const std::vector<TensorType> &o, int64_t gates, int64_t saved,
                                         const char *op) {
  int64_t hidden = checkRecurrent(o[0], o[1], o[2], o.size() > 3 ? &o[3] : nullptr, gates, op);
  const Dim &batch = o[0].shape[0], &steps = o[0].shape[1];
  return {{DType::F32, {batch, steps, Dim::constant(hidden)}},
          {DType::F32, {batch, steps, Dim::constant(saved * hidden)}}};
}

/// The gradient rule: operands w, h, saved, dh [, mask]; results dxp, dw, db.
std::vector<TensorType> recurrentGrad(const std::vector<TensorType> &o, int64_t gates, int64_t saved,
                                      const char *op) {
  const TensorType &w = o[0], &h = o[1], &kept = o[2], &dh = o[3];
  expectFloat(h, op);
  if (h.rank() != 3) fail(fmt::format("{}: h must be f32[B,T,H], got {}", op, h.str()));
  TensorType xp{DType::F32, {h.shape[0], h.shape[1], w.rank() == 2 ? w.shape[0] : Dim::constant(0)}};
  TensorType b{DType::F32, {xp.shape[2]}};
  int64_t hidden = checkRecurrent(xp, w, b, o.size() > 4 ? &o[4] : nullptr, gates, op);
  TensorType hs{DType::F32, {h.shape[0], h.shape[1], Dim::constant(hidden)}};
  TensorType ss{DType::F32, {h.shape[0], h.shape[1], Dim::constant(saved * hidden)}};
  if (!(h == hs) || !(dh == hs) || !(kept == ss))
    fail(fmt::format("{}: h {} and dh {} must be {}, the saved gates {} must be {}", op, h.str(), dh.str(), hs.str(),
                     kept.str(), ss.str()));
  return {xp, w, b};
}

std::vector<TensorType> shapeGru(const std::vector<TensorType> &o, const Attrs &) { return recurrentForward(o, 3, 4, "gru"); }
std::vector<TensorType> shapeGruGrad(const std::vector<TensorType> &o, const Attrs &) {
  return recurrentGrad(o, 3, 4, "gru_grad");
}
std::vector<TensorType> shapeLstm(const std::vector<TensorType> &o, const Attrs &) {
  return recurrentForward(o, 4, 5, "lstm");
}
std::vector<TensorType> shapeLstmGrad(const std::vector<TensorType> &o, const Attrs &) {
  return recurrentGrad(o, 4, 5, "lstm_grad");
}

TensorType shapePositions(const std::vector<TensorType> &o, const Attrs &a) {
  if (o[0].rank() == 0) fail("positions needs a tensor with at least one dim, got a scalar");
  normalizeAxis(declared<int64_t>(a, "axis"), o[0].rank());
  return {DType::I32, o[0].shape};
}

TensorType shapeCrossEntropy(const std::vector<TensorType> &o, const Attrs &) {
  const TensorType &logits = o[0], &labels = o[1];
  expectFloat(logits, "cross_entropy logits");
  if (logits.rank() != 2) fail(fmt::format("cross_entropy logits must be [N,C], got {}", logits.str()));
  if (labels.dtype != DType::I32 || labels.rank() != 1)
    fail(fmt::format("cross_entropy labels must be i32[N], got {}", labels.str()));
  if (!(labels.shape[0] == logits.shape[0]))
    fail(fmt::format("cross_entropy: logits {} and labels {} disagree on N", logits.str(), labels.str()));
  return {DType::F32, {}};
}

TensorType shapeBroadcastTo(const std::vector<TensorType> &o, const Attrs &a) {
  const Shape &target = declared<Shape>(a, "shape");
  auto b = broadcastShapes(o[0].shape, target);
  if (!b || *b != target) fail(fmt::format("cannot broadcast {} to {}", o[0].str(), shapeStr(target)));
  return {o[0].dtype, target};
}

TensorType shapeSumTo(const std::vector<TensorType> &o, const Attrs &a) {
  expectFloat(o[0], "sum_to operand");
  const Shape &target = declared<Shape>(a, "shape");
  auto b = broadcastShapes(target, o[0].shape);
  if (!b || *b != o[0].shape)
    fail(fmt::format("sum_to: {} does not broadcast to {}", shapeStr(target), o[0].str()));
  return {DType::F32, target};
}

TensorType shapeEmbeddingGrad(const std::vector<TensorType> &o, const Attrs &a) {
  const TensorType &ids = o[0], &dy = o[1];
  if (ids.dtype != DType::I32) fail(fmt::format("embedding_grad ids must be i32, got {}", ids.str()));
  expectFloat(dy, "embedding_grad dy");
  Shape want = ids.shape;
  if (dy.rank() != ids.rank() + 1 || !std::equal(want.begin(), want.end(), dy.shape.begin()))
    fail(fmt::format("embedding_grad: dy {} must be ids {} plus one dim", dy.str(), ids.str()));
  int64_t rows = declared<int64_t>(a, "rows");
  if (rows <= 0) fail("embedding_grad needs a positive {rows}");
  return {DType::F32, {Dim::constant(rows), dy.shape.back()}};
}

TensorType shapeNormalizeGrad(const std::vector<TensorType> &o, const Attrs &a) {
  expectFloat(o[0], "y");
  if (!(o[1] == o[0])) fail(fmt::format("gradient {} must have the type of {}", o[1].str(), o[0].str()));
  if (o[0].rank() == 0) fail("cannot normalise a scalar");
  normalizeAxis(declared<int64_t>(a, "axis"), o[0].rank());
  if (o.size() == 3) checkMask(o[0], {o[0], o[2]});
  return o[0];
}

TensorType shapeUnaryGrad(const std::vector<TensorType> &o, const Attrs &) {
  expectFloat(o[0], "forward value");
  if (!(o[1] == o[0])) fail(fmt::format("gradient {} must have the type of {}", o[1].str(), o[0].str()));
  return o[0];
}

TensorType shapeReduceGrad(const std::vector<TensorType> &o, const Attrs &a) {
  expectFloat(o[0], "dy");
  TensorType x{DType::F32, declared<Shape>(a, "shape")};
  if (x.rank() == 0) fail("reduce gradient needs the rank >= 1 {shape} of the reduced operand");
  // The forward reduction of x must give dy's type.
  std::vector<TensorType> forward{x};
  if (o.size() == 2) forward.push_back(o[1]);
  TensorType reduced = shapeReduce(forward, a);
  if (!(reduced == o[0]))
    fail(fmt::format("reduce gradient: dy {} is not the reduction of {}", o[0].str(), x.str()));
  return x;
}

TensorType shapeMaxGrad(const std::vector<TensorType> &o, const Attrs &a) {
  std::vector<TensorType> forward{o[0]};
  if (o.size() == 3) forward.push_back(o[2]);
  TensorType reduced = shapeReduce(forward, a);
  if (!(reduced == o[1])) fail(fmt::format("max_grad: dy {} is not the reduction of {}", o[1].str(), o[0].str()));
  return o[0];
}

TensorType shapeCrossEntropyGrad(const std::vector<TensorType> &o, const Attrs &a) {
  shapeCrossEntropy({o[0], o[1]}, a);
  if (!(o[2] == TensorType{DType::F32, {}})) fail(fmt::format("cross_entropy_grad: dloss must be f32[], got {}", o[2].str()));
  return o[0];
}

TensorType shapeAdamMoment(const std::vector<TensorType> &o, const Attrs &) {
  expectFloat(o[0], "adam_moment state");
  if (!(o[1] == o[0])) fail(fmt::format("adam_moment: gradient {} must have the type of the state {}", o[1].str(), o[0].str()));
  return o[0];
}

TensorType shapeAdamUpdate(const std::vector<TensorType> &o, const Attrs &) {
  expectFloat(o[0], "adam_update parameter");
  for (size_t i : {1, 2})
    if (!(o[i] == o[0])) fail(fmt::format("adam_update: {} must have the type of the parameter {}", o[i].str(), o[0].str()));
  for (size_t i : {3, 4})
    if (!(o[i] == TensorType{DType::F32, {}})) fail(fmt::format("adam_update: operand {} must be f32[], got {}", i, o[i].str()));
  return o[0];
}

TensorType shapeMatMulBias(const std::vector<TensorType> &o, const Attrs &a) {
  TensorType y = shapeMatMul({o[0], o[1]}, a);
  const TensorType &bias = o[2];
  if (bias.dtype != DType::F32 || bias.rank() != 1 || !(bias.shape[0] == y.shape.back()))
    fail(fmt::format("matmul_bias: bias must be f32[{}] (the last dim of {}), got {}", y.shape.back().str(), y.str(),
                     bias.str()));
  const std::string &act = declared<std::string>(a, "activation");
  if (act != "none" && act != "relu" && act != "tanh" && act != "sigmoid")
    fail("matmul_bias: activation must be none, relu, tanh or sigmoid, got '" + act + "'");
  return y;
}

TensorType shapeWeightGrad(const std::vector<TensorType> &o, const Attrs &) {
  const TensorType &x = o[0], &dy = o[1];
  expectFloat(x, "weight_grad a");
  expectFloat(dy, "weight_grad dy");
  if (x.rank() < 2 || x.rank() != dy.rank() || !std::equal(x.shape.begin(), x.shape.end() - 1, dy.shape.begin()))
    fail(fmt::format("weight_grad: a {} and dy {} must agree on every dim but the last", x.str(), dy.str()));
  return {DType::F32, {x.shape.back(), dy.shape.back()}};
}

/// p, m, v, g of one type, the two step scalars; results p', m', v'.
std::vector<TensorType> shapeAdamStep(const std::vector<TensorType> &o, const Attrs &) {
  expectFloat(o[0], "adam_step parameter");
  for (size_t i : {1, 2, 3})
    if (!(o[i] == o[0])) fail(fmt::format("adam_step: {} must have the type of the parameter {}", o[i].str(), o[0].str()));
  for (size_t i : {4, 5})
    if (!(o[i] == TensorType{DType::F32, {}})) fail(fmt::format("adam_step: operand {} must be f32[], got {}", i, o[i].str()));
  return {o[0], o[0], o[0]};
}

/// A table p f32[V,E] with its two moments, the ids that picked rows of it
/// and the gradient dy of the picked rows, the two step scalars; results
/// p', m', v' of the table's type.
std::vector<TensorType> shapeAdamRows(const std::vector<TensorType> &o, const Attrs &) {
  const TensorType &p = o[0], &ids = o[3], &dy = o[4];
  expectFloat(p, "adam_rows table");
  if (p.rank() != 2) fail(fmt::format("adam_rows: the table must be f32[V,E], got {}", p.str()));
  for (size_t i : {1, 2})
    if (!(o[i] == p)) fail(fmt::format("adam_rows: {} must have the type of the table {}", o[i].str(), p.str()));
  if (ids.dtype != DType::I32) fail(fmt::format("adam_rows ids must be i32, got {}", ids.str()));
  expectFloat(dy, "adam_rows dy");
  if (dy.rank() != ids.rank() + 1 || !std::equal(ids.shape.begin(), ids.shape.end(), dy.shape.begin()) ||
      !(dy.shape.back() == p.shape[1]))
    fail(fmt::format("adam_rows: dy {} must be ids {} plus the table's row {}", dy.str(), ids.str(), p.shape[1].str()));
  for (size_t i : {5, 6})
    if (!(o[i] == TensorType{DType::F32, {}})) fail(fmt::format("adam_rows: operand {} must be f32[], got {}", i, o[i].str()));
  return {p, p, p};
}

/// q[...,Tq,D], k[...,Tk,D], v[...,Tk,Dv] with the same batch dims, and an
/// optional bool mask broadcastable to the weights [...,Tq,Tk].
/// The types of attention's output and lse (and, with `weights`, of the
/// weights) for operands q, k, v [, mask].
std::vector<TensorType> attentionTypes(const std::vector<TensorType> &o, double scale, bool withWeights) {
  const TensorType &q = o[0], &k = o[1], &v = o[2];
  for (const TensorType *t : {&q, &k, &v}) expectFloat(*t, "attention operand");
  size_t r = q.rank();
  if (r < 2 || k.rank() != r || v.rank() != r)
    fail(fmt::format("attention needs q, k, v of one rank >= 2, got {}, {} and {}", q.str(), k.str(), v.str()));
  if (!std::equal(q.shape.begin(), q.shape.end() - 2, k.shape.begin()) ||
      !std::equal(q.shape.begin(), q.shape.end() - 2, v.shape.begin()))
    fail(fmt::format("attention: q {}, k {} and v {} must have the same batch dims", q.str(), k.str(), v.str()));
  if (!(q.shape[r - 1] == k.shape[r - 1]))
    fail(fmt::format("attention: q {} and k {} differ in the feature dim", q.str(), k.str()));
  if (!(k.shape[r - 2] == v.shape[r - 2]))
    fail(fmt::format("attention: k {} and v {} differ in the number of keys", k.str(), v.str()));
  Shape weights(q.shape.begin(), q.shape.end() - 1);
  weights.push_back(k.shape[r - 2]);
  if (o.size() == 4) checkMask({DType::F32, weights}, {{DType::F32, weights}, o[3]});
  if (!std::isfinite(scale)) fail("attention: scale must be finite");
  Shape out(q.shape.begin(), q.shape.end() - 1);
  Shape lse = out;
  out.push_back(v.shape[r - 1]);
  std::vector<TensorType> types{{DType::F32, out}, {DType::F32, lse}};
  if (withWeights) types.push_back({DType::F32, weights});
  return types;
}

std::vector<TensorType> shapeAttention(const std::vector<TensorType> &o, const Attrs &a) {
  return attentionTypes(o, declared<double>(a, "scale"), declared<bool>(a, "weights"));
}

/// Operands q, k, v, out, lse, dout [, mask]; results dq, dk, dv.
std::vector<TensorType> shapeAttentionGrad(const std::vector<TensorType> &o, const Attrs &a) {
  std::vector<TensorType> forward{o[0], o[1], o[2]};
  if (o.size() == 7) forward.push_back(o[6]);
  std::vector<TensorType> f = attentionTypes(forward, declared<double>(a, "scale"), false);
  if (!(o[3] == f[0]) || !(o[5] == f[0]))
    fail(fmt::format("attention_grad: out {} and dout {} must have the forward's output type {}", o[3].str(),
                     o[5].str(), f[0].str()));
  if (!(o[4] == f[1]))
    fail(fmt::format("attention_grad: lse {} must have the forward's type {}", o[4].str(), f[1].str()));
  return {o[0], o[1], o[2]};
}

/// Operands f32, each of one shape S or f32[]; result f32[S]. The body
/// must parse over the operands (ir/elementwise.h).
TensorType shapeElementwise(const std::vector<TensorType> &o, const Attrs &a) {
  const Shape *shape = nullptr;
  for (const TensorType &t : o) {
    expectFloat(t, "elementwise operand");
    if (t.rank() == 0) continue;
    if (shape && !(t.shape == *shape))
      fail(fmt::format("elementwise: operands must have one shape (or be f32[]), got {} and {}", shapeStr(*shape),
                       t.str()));
    shape = &t.shape;
  }
  parseBody(declared<std::string>(a, "body"), o.size());
  return {DType::F32, shape ? *shape : Shape{}};
}

/// h, k f32[...,T,E] of one type, v f32[...,T,Ev], w f32[1,E], b f32[1] and
/// an optional mask bool[...,T,1]; results out [...,Ev] and p [...,T,1].
std::vector<TensorType> shapeAdditiveAttention(const std::vector<TensorType> &o, const Attrs &a) {
  const TensorType &h = o[0], &k = o[1], &v = o[2], &w = o[3], &b = o[4];
  for (const TensorType *t : {&h, &k, &v, &w, &b}) expectFloat(*t, "additive_attention operand");
  size_t r = h.rank();
  if (r < 2 || !(k == h) || v.rank() != r || !std::equal(h.shape.begin(), h.shape.end() - 1, v.shape.begin()))
    fail(fmt::format("additive_attention needs h and k of one type [...,T,E] and v [...,T,Ev], got {}, {} and {}",
                     h.str(), k.str(), v.str()));
  if (!(w.shape == Shape{Dim::constant(1), h.shape[r - 1]}) || !(b.shape == Shape{Dim::constant(1)}))
    fail(fmt::format("additive_attention: the score layer's weight {} and bias {} must be f32[1,{}] and f32[1]",
                     w.str(), b.str(), h.shape[r - 1].str()));
  Shape weights(h.shape.begin(), h.shape.end() - 1);
  weights.push_back(Dim::constant(1));
  if (o.size() == 6 && !(o[5] == TensorType{DType::Bool, weights}))
    fail(fmt::format("additive_attention: the mask {} must be {}", o[5].str(), TensorType{DType::Bool, weights}.str()));
  const std::string &pooling = declared<std::string>(a, "pooling");
  if (pooling != "mean" && pooling != "sum")
    fail("additive_attention: pooling must be mean or sum, got '" + pooling + "'");
  Shape out(h.shape.begin(), h.shape.end() - 2);
  out.push_back(v.shape[r - 1]);
  return {{DType::F32, out}, {DType::F32, weights}};
}

/// Operands h, k, v, w, p, dout [, mask]; results da, dv, dw, db.
std::vector<TensorType> shapeAdditiveAttentionGrad(const std::vector<TensorType> &o, const Attrs &a) {
  std::vector<TensorType> forward{o[0], o[1], o[2], o[3], {DType::F32, {Dim::constant(1)}}};
  if (o.size() == 7) forward.push_back(o[6]);
  std::vector<TensorType> f = shapeAdditiveAttention(forward, a);
  if (!(o[4] == f[1]))
    fail(fmt::format("additive_attention_grad: p {} must have the forward's type {}", o[4].str(), f[1].str()));
  if (!(o[5] == f[0]))
    fail(fmt::format("additive_attention_grad: dout {} must have the forward's output type {}", o[5].str(), f[0].str()));
  return {o[0], o[2], o[3], forward[4]};
}

} // namespace

// --- attribute specs ------------------------------------------------------------

namespace {

constexpr const char *kKindNames[] = {"bool", "int", "float", "string", "dims", "dim"};
/// The kinds as a message names them ("must be an int").
constexpr const char *kKindPhrases[] = {"a bool", "an int", "a float", "a string", "a dim list", "a dim"};
// AttrKind follows the order of Attr's alternatives, so a value's kind is its index.
template <AttrKind K, typename T>
constexpr bool kAlternative = std::is_same_v<std::variant_alternative_t<static_cast<size_t>(K), Attr>, T>;
static_assert(kAlternative<AttrKind::Bool, bool> && kAlternative<AttrKind::Int, int64_t> &&
              kAlternative<AttrKind::Float, double> && kAlternative<AttrKind::String, std::string> &&
              kAlternative<AttrKind::Dims, Shape> && kAlternative<AttrKind::Dim, Dim>);

AttrKind kindOf(const Attr &v) { return static_cast<AttrKind>(v.index()); }
const char *kindPhrase(AttrKind k) { return kKindPhrases[static_cast<size_t>(k)]; }

std::string trim(const std::string &s) {
  size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

/// Attribute names are lower-case identifiers.
bool isName(const std::string &s) {
  auto ok = [](char c) { return std::islower((unsigned char)c) || std::isdigit((unsigned char)c) || c == '_'; };
  return !s.empty() && !std::isdigit((unsigned char)s[0]) && std::all_of(s.begin(), s.end(), ok);
}

/// A default as written after `=` in a spec, read as `kind`.
Attr parseDefault(const std::string &text, AttrKind kind) {
  auto bad = [&] { return std::invalid_argument(fmt::format("default '{}' is not {}", text, kindPhrase(kind))); };
  size_t used = 0;
  switch (kind) {
  case AttrKind::Bool:
    if (text != "true" && text != "false") throw bad();
    return text == "true";
  case AttrKind::Int:
  case AttrKind::Float:
    try {
      Attr v = kind == AttrKind::Int ? Attr(static_cast<int64_t>(std::stoll(text, &used)))
                                     : Attr(std::stod(text, &used));
      if (used == text.size()) return v;
    } catch (const std::exception &) {
    }
    throw bad();
  case AttrKind::String:
    if (text.find('"') != std::string::npos) throw std::invalid_argument("write a string default without quotes");
    return text;
  case AttrKind::Dims: {
    if (text.size() < 2 || text.front() != '[' || text.back() != ']') throw bad();
    Shape dims;
    std::string inner = trim(text.substr(1, text.size() - 2));
    for (size_t start = 0; !inner.empty() && start <= inner.size();) {
      size_t comma = std::min(inner.find(',', start), inner.size());
      std::string d = trim(inner.substr(start, comma - start));
      start = comma + 1;
      if (!d.empty() && (std::isalpha((unsigned char)d[0]) || d[0] == '_')) {
        if (!std::all_of(d.begin(), d.end(), [](char c) { return std::isalnum((unsigned char)c) || c == '_'; }))
          throw bad();
        dims.push_back(Dim::named(d));
        continue;
      }
      int64_t v = std::get<int64_t>(parseDefault(d, AttrKind::Int));
      if (v < 0) throw bad();
      dims.push_back(Dim::constant(v));
    }
    return dims;
  }
  case AttrKind::Dim: {
    int64_t v = std::get<int64_t>(parseDefault(text, AttrKind::Int));
    if (v < 0) throw bad();
    return Dim::constant(v);
  }
  }
  throw bad();
}

} // namespace

const char *attrKindName(AttrKind k) { return kKindNames[static_cast<size_t>(k)]; }

std::string AttrSpec::str() const {
  std::string s = name + ": " + attrKindName(kind);
  return dflt ? s + " = " + printAttr(*dflt) : s;
}

std::vector<AttrSpec> parseAttrSpec(const std::string &spec) {
  std::vector<AttrSpec> out;
  if (trim(spec).empty()) return out;
  for (size_t start = 0; start <= spec.size();) {
    size_t semi = std::min(spec.find(';', start), spec.size());
    std::string entry = trim(spec.substr(start, semi - start));
    start = semi + 1;
    if (entry.empty()) throw std::invalid_argument("empty entry (a stray ';')");
    size_t colon = entry.find(':');
    if (colon == std::string::npos)
      throw std::invalid_argument(fmt::format("'{}' is not 'name: kind' or 'name: kind = default'", entry));
    AttrSpec a;
    a.name = trim(entry.substr(0, colon));
    if (!isName(a.name)) throw std::invalid_argument(fmt::format("'{}' is not an attribute name", a.name));
    for (const AttrSpec &prev : out)
      if (prev.name == a.name) throw std::invalid_argument(fmt::format("attribute '{}' is declared twice", a.name));
    std::string rest = entry.substr(colon + 1);
    size_t eq = rest.find('=');
    std::string kind = trim(rest.substr(0, eq));
    auto k = std::find(std::begin(kKindNames), std::end(kKindNames), kind);
    if (k == std::end(kKindNames))
      throw std::invalid_argument(fmt::format("unknown kind '{}' for '{}' (expected bool, int, float, string or dims)",
                                              kind, a.name));
    a.kind = static_cast<AttrKind>(k - std::begin(kKindNames));
    if (eq != std::string::npos) {
      std::string text = trim(rest.substr(eq + 1));
      if (text.empty()) throw std::invalid_argument(fmt::format("'{}' has '=' but no default", a.name));
      a.dflt = parseDefault(text, a.kind);
    }
    out.push_back(std::move(a));
  }
  return out;
}

const std::vector<OpInfo> &allOps() {
  static const std::vector<OpInfo> table = [] {
    std::vector<OpInfo> t = {
#define KILN_OP(Id, name, minN, maxN, rule, grad, attrs, summary) \
  {OpKind::Id, name, minN, maxN, ShapeRules(&rule), GradKind::grad, attrs, summary, {}},
#include "ir/ops.def"
    };
    const AttrSpec *axis = nullptr;
    for (OpInfo &op : t) {
      op.elementwise = op.shapeRule.single == &shapeArith || op.shapeRule.single == &shapeUnaryFloat ||
                       op.shapeRule.single == &shapeUnaryGrad;
      try {
        op.attrs = parseAttrSpec(op.attrSpec);
      } catch (const std::invalid_argument &e) {
        internalError(fmt::format("ir/ops.def: the attribute spec \"{}\" of {} is malformed: {}", op.attrSpec,
                                  op.name, e.what()));
      }
      // axisAttr reads an axis without knowing the op, so every op that
      // declares one must give it the same kind and default.
      for (const AttrSpec &s : op.attrs) {
        if (s.name != "axis") continue;
        if (s.kind != AttrKind::Int || !s.dflt || (axis && s.dflt != axis->dflt))
          internalError(fmt::format("ir/ops.def: {} declares '{}'; every op's axis must be an optional int, all "
                                    "with the same default",
                                    op.name, s.str()));
        axis = &s;
      }
    }
    return t;
  }();
  return table;
}

const OpInfo &opInfo(OpKind k) { return allOps()[static_cast<size_t>(k)]; }

std::optional<OpKind> opByName(const std::string &name) {
  for (const OpInfo &info : allOps())
    if (name == info.name) return info.kind;
  return std::nullopt;
}

const AttrSpec *findAttrSpec(OpKind k, const std::string &name) {
  for (const AttrSpec &s : opInfo(k).attrs)
    if (s.name == name) return &s;
  return nullptr;
}

namespace {
[[noreturn]] void failMissing(const OpInfo &op, const AttrSpec &s) {
  fail(fmt::format("{} needs attribute '{}' ({})", op.name, s.name, kindPhrase(s.kind)));
}
} // namespace

void checkAttr(OpKind k, const std::string &name, const Attr &value) {
  const OpInfo &op = opInfo(k);
  const AttrSpec *spec = findAttrSpec(k, name);
  if (!spec) {
    std::vector<std::string> names;
    for (const AttrSpec &s : op.attrs) names.push_back(s.name);
    std::string hint = nearestName(name, names);
    fail(fmt::format("{} has no attribute '{}'{} ({})", op.name, name,
                     hint.empty() ? "" : "; did you mean '" + hint + "'?",
                     names.empty() ? "it takes none" : fmt::format("its attributes: {}", fmt::join(names, ", "))));
  }
  AttrKind given = kindOf(value);
  // An integer is a float or a constant dim where one is declared.
  if (given != spec->kind && !((spec->kind == AttrKind::Float || spec->kind == AttrKind::Dim) && given == AttrKind::Int))
    fail(fmt::format("{}: attribute '{}' must be {}, got {}", op.name, name, kindPhrase(spec->kind),
                     kindPhrase(given)));
}

void checkAttrs(OpKind k, const Attrs &attrs) {
  for (const auto &[name, value] : attrs) checkAttr(k, name, value);
  for (const AttrSpec &s : opInfo(k).attrs)
    if (s.required() && !attrs.count(s.name)) failMissing(opInfo(k), s);
}

std::vector<TensorType> inferTypes(OpKind k, const std::vector<TensorType> &operands, const Attrs &attrs) {
  const OpInfo &info = opInfo(k);
  int n = static_cast<int>(operands.size());
  if (n < info.minOperands || n > info.maxOperands) {
    std::string want = info.minOperands == info.maxOperands
                           ? std::to_string(info.minOperands)
                           : fmt::format("{} to {}", info.minOperands, info.maxOperands);
    fail(fmt::format("{} takes {} operand{}, got {}", info.name, want,
                     info.maxOperands == 1 ? "" : "s", n));
  }
  checkAttrs(k, attrs);
  Attrs full = withDefaults(k, attrs);
  std::vector<TensorType> results =
      info.shapeRule.multi ? info.shapeRule.multi(operands, full) : std::vector<TensorType>{info.shapeRule.single(operands, full)};
  for (size_t r = 0; r < results.size(); ++r)
    if (auto tooLarge = typeTooLarge(results.size() == 1 ? fmt::format("the result of {}", info.name)
                                                         : fmt::format("result {} of {}", r, info.name),
                                     results[r]))
      fail(*tooLarge);
  return results;
}

TensorType inferType(OpKind k, const std::vector<TensorType> &operands, const Attrs &attrs) {
  std::vector<TensorType> results = inferTypes(k, operands, attrs);
  if (results.size() != 1)
    internalError(fmt::format("inferType on {}, which has {} results (use inferTypes)", opName(k), results.size()));
  return results.front();
}

Attrs withDefaults(OpKind k, const Attrs &attrs) {
  // What the shape rule reads (see declared()): every declared attribute,
  // defaults filled in, floats as double, dims as Dim.
  Attrs full = attrs;
  for (const AttrSpec &s : opInfo(k).attrs) {
    auto it = full.find(s.name);
    if (it == full.end()) {
      if (s.dflt) full.emplace(s.name, *s.dflt);
    } else if (const int64_t *i = std::get_if<int64_t>(&it->second); i && s.kind == AttrKind::Float) {
      it->second = static_cast<double>(*i);
    } else if (i && s.kind == AttrKind::Dim) {
      it->second = Dim::constant(*i);
    }
  }
  return full;
}

namespace {
/// Attribute `name` of op k read as `kind`: the given value, or the declared default.
const Attr &opAttr(OpKind k, const Attrs &a, const std::string &name, AttrKind kind) {
  const AttrSpec *spec = findAttrSpec(k, name);
  if (!spec || spec->kind != kind)
    internalError(fmt::format("attribute '{}' of {} is read as {}, but ir/ops.def {}", name, opName(k),
                              attrKindName(kind),
                              spec ? fmt::format("declares '{}'", spec->str()) : std::string("does not declare it")));
  auto it = a.find(name);
  if (it == a.end()) {
    if (!spec->dflt) failMissing(opInfo(k), *spec);
    return *spec->dflt;
  }
  checkAttr(k, name, it->second);
  return it->second;
}

template <typename T> const T *getAttr(const Attrs &a, const std::string &name, const char *kind) {
  auto it = a.find(name);
  if (it == a.end()) return nullptr;
  const T *v = std::get_if<T>(&it->second);
  if (!v) fail(fmt::format("attribute '{}' must be {}", name, kind));
  return v;
}
} // namespace

bool attrBool(OpKind k, const Attrs &a, const std::string &name) {
  return std::get<bool>(opAttr(k, a, name, AttrKind::Bool));
}
int64_t attrInt(OpKind k, const Attrs &a, const std::string &name) {
  return std::get<int64_t>(opAttr(k, a, name, AttrKind::Int));
}
double attrFloat(OpKind k, const Attrs &a, const std::string &name) {
  const Attr &v = opAttr(k, a, name, AttrKind::Float);
  if (const int64_t *i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  return std::get<double>(v);
}
std::string attrString(OpKind k, const Attrs &a, const std::string &name) {
  return std::get<std::string>(opAttr(k, a, name, AttrKind::String));
}
Shape attrDims(OpKind k, const Attrs &a, const std::string &name) {
  return std::get<Shape>(opAttr(k, a, name, AttrKind::Dims));
}
Dim attrDim(OpKind k, const Attrs &a, const std::string &name) {
  const Attr &v = opAttr(k, a, name, AttrKind::Dim);
  if (const int64_t *i = std::get_if<int64_t>(&v)) return Dim::constant(*i);
  return std::get<Dim>(v);
}

int64_t axisAttr(const Attrs &a) {
  // The default every op that declares an axis shares (allOps() checks that).
  static const int64_t dflt = [] {
    for (const OpInfo &op : allOps())
      if (const AttrSpec *s = findAttrSpec(op.kind, "axis")) return std::get<int64_t>(*s->dflt);
    internalError("no op in ir/ops.def declares an axis");
  }();
  return attrInt(a, "axis", dflt);
}

bool hasAttr(const Attrs &a, const std::string &name) { return a.count(name) != 0; }

bool attrBool(const Attrs &a, const std::string &name, bool dflt) {
  const bool *v = getAttr<bool>(a, name, "a bool");
  return v ? *v : dflt;
}
int64_t attrInt(const Attrs &a, const std::string &name, int64_t dflt) {
  const int64_t *v = getAttr<int64_t>(a, name, "an integer");
  return v ? *v : dflt;
}
double attrFloat(const Attrs &a, const std::string &name, double dflt) {
  auto it = a.find(name);
  if (it == a.end()) return dflt;
  if (auto *i = std::get_if<int64_t>(&it->second)) return static_cast<double>(*i);
  const double *v = getAttr<double>(a, name, "a number");
  return *v;
}
std::string attrString(const Attrs &a, const std::string &name, const std::string &dflt) {
  const std::string *v = getAttr<std::string>(a, name, "a string");
  return v ? *v : dflt;
}
Shape attrDims(const Attrs &a, const std::string &name) {
  const Shape *v = getAttr<Shape>(a, name, "a dim list");
  if (!v) fail(fmt::format("missing attribute '{}'", name));
  return *v;
}

int64_t normalizeAxis(int64_t axis, size_t rank) {
  int64_t r = static_cast<int64_t>(rank);
  if (axis < -r || axis >= r) fail(fmt::format("axis {} is out of range for rank {}", axis, r));
  return axis < 0 ? axis + r : axis;
}

} // namespace kiln::ir
