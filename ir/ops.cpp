//===- ir/ops.cpp - the op table and the shape rules ----------------------===//
//
// One shape rule per family of ops. Rules check dtypes, ranks and dims and
// throw kiln::Error with both shapes in the message when they do not fit;
// they never see source locations (the builder attaches those).
//
//===----------------------------------------------------------------------===//
#include "ir/ops.h"

#include "ir/diagnostic.h"

#include <algorithm>
#include <fmt/format.h>

namespace kiln::ir {

namespace {

[[noreturn]] void fail(const std::string &msg) { throw Error(msg); }

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
  auto dt = parseDType(attrString(a, "dtype", "f32"));
  if (!dt) fail("constant: unknown dtype '" + attrString(a, "dtype", "f32") + "'");
  attrFloat(a, "value", 0.0); // type-checks the attribute
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
  bool ta = attrBool(a, "transpose_a", false), tb = attrBool(a, "transpose_b", false);
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
  normalizeAxis(axisAttr(a), o[0].rank());
  checkMask(o[0], o);
  return o[0];
}

TensorType shapeReduce(const std::vector<TensorType> &o, const Attrs &a) {
  expectFloat(o[0], "operand");
  if (o[0].rank() == 0) fail("cannot reduce a scalar");
  int64_t axis = normalizeAxis(axisAttr(a), o[0].rank());
  checkMask(o[0], o);
  Shape s = o[0].shape;
  if (attrBool(a, "keepdim", false)) s[axis] = Dim::constant(1);
  else s.erase(s.begin() + axis);
  return {DType::F32, s};
}

TensorType shapeReshape(const std::vector<TensorType> &o, const Attrs &a) {
  Shape target = attrDims(a, "shape");
  // Element counts must agree: equal constant products and equal multisets of
  // symbols (a symbolic dim can only move, never split or merge).
  auto split = [](const Shape &s, int64_t &product, std::vector<std::string> &syms) {
    product = 1;
    for (const Dim &d : s) {
      if (d.isSymbolic()) syms.push_back(d.symbol);
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
  Shape perm = attrDims(a, "perm");
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
  std::string name = attrString(a, "dtype", "");
  auto dt = parseDType(name);
  if (!dt) fail("cast: unknown dtype '" + name + "'");
  return {*dt, o[0].shape};
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
  Shape target = attrDims(a, "shape");
  auto b = broadcastShapes(o[0].shape, target);
  if (!b || *b != target) fail(fmt::format("cannot broadcast {} to {}", o[0].str(), shapeStr(target)));
  return {o[0].dtype, target};
}

TensorType shapeSumTo(const std::vector<TensorType> &o, const Attrs &a) {
  expectFloat(o[0], "sum_to operand");
  Shape target = attrDims(a, "shape");
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
  int64_t rows = attrInt(a, "rows", -1);
  if (rows <= 0) fail("embedding_grad needs a positive {rows}");
  return {DType::F32, {Dim::constant(rows), dy.shape.back()}};
}

TensorType shapeNormalizeGrad(const std::vector<TensorType> &o, const Attrs &a) {
  expectFloat(o[0], "y");
  if (!(o[1] == o[0])) fail(fmt::format("gradient {} must have the type of {}", o[1].str(), o[0].str()));
  if (o[0].rank() == 0) fail("cannot normalise a scalar");
  normalizeAxis(axisAttr(a), o[0].rank());
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
  TensorType x{DType::F32, attrDims(a, "shape")};
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

TensorType shapeAdamMoment(const std::vector<TensorType> &o, const Attrs &a) {
  expectFloat(o[0], "adam_moment state");
  if (!(o[1] == o[0])) fail(fmt::format("adam_moment: gradient {} must have the type of the state {}", o[1].str(), o[0].str()));
  attrFloat(a, "beta", 0.9);
  attrBool(a, "square", false);
  return o[0];
}

TensorType shapeAdamUpdate(const std::vector<TensorType> &o, const Attrs &a) {
  expectFloat(o[0], "adam_update parameter");
  for (size_t i : {1, 2})
    if (!(o[i] == o[0])) fail(fmt::format("adam_update: {} must have the type of the parameter {}", o[i].str(), o[0].str()));
  for (size_t i : {3, 4})
    if (!(o[i] == TensorType{DType::F32, {}})) fail(fmt::format("adam_update: operand {} must be f32[], got {}", i, o[i].str()));
  attrFloat(a, "eps", 1e-8);
  return o[0];
}

} // namespace

const std::vector<OpInfo> &allOps() {
  static const std::vector<OpInfo> table = {
#define KILN_OP(Id, name, minN, maxN, rule, grad, summary) {OpKind::Id, name, minN, maxN, &rule, GradKind::grad, summary},
#include "ir/ops.def"
  };
  return table;
}

const OpInfo &opInfo(OpKind k) { return allOps()[static_cast<size_t>(k)]; }

std::optional<OpKind> opByName(const std::string &name) {
  for (const OpInfo &info : allOps())
    if (name == info.name) return info.kind;
  return std::nullopt;
}

TensorType inferType(OpKind k, const std::vector<TensorType> &operands, const Attrs &attrs) {
  const OpInfo &info = opInfo(k);
  int n = static_cast<int>(operands.size());
  if (n < info.minOperands || n > info.maxOperands) {
    std::string want = info.minOperands == info.maxOperands
                           ? std::to_string(info.minOperands)
                           : fmt::format("{} to {}", info.minOperands, info.maxOperands);
    fail(fmt::format("{} takes {} operand{}, got {}", info.name, want,
                     info.maxOperands == 1 ? "" : "s", n));
  }
  TensorType result = info.shapeRule(operands, attrs);
  if (auto tooLarge = typeTooLarge(fmt::format("the result of {}", info.name), result)) fail(*tooLarge);
  return result;
}

namespace {
template <typename T> const T *getAttr(const Attrs &a, const std::string &name, const char *kind) {
  auto it = a.find(name);
  if (it == a.end()) return nullptr;
  const T *v = std::get_if<T>(&it->second);
  if (!v) fail(fmt::format("attribute '{}' must be {}", name, kind));
  return v;
}
} // namespace

bool hasAttr(const Attrs &a, const std::string &name) { return a.count(name) != 0; }

int64_t axisAttr(const Attrs &a) { return attrInt(a, "axis", -1); }

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
