//===- passes/autodiff.cpp - reverse-mode automatic differentiation -------===//
//
// The algorithm:
//  1. Copy the forward graph; the backward ops are appended to the copy and
//     reuse its forward values (activations) directly.
//  2. Forward sweep: a value needs a gradient if it is an f32 parameter, or
//     the result of a differentiable op with an operand that needs one.
//  3. Seed the adjoint of the loss with 1 and walk the forward nodes in
//     reverse. A node whose result has an adjoint hands it to its op's
//     gradient rule, which emits ops for the adjoints of the operands that
//     need one; adjoints reaching a value twice are added. When the walk
//     reaches a node, every use of its result has been seen, so the adjoint
//     is final and gets the name `grad.<value name>` if the value has one.
//  4. Output `grad.<param>` for every f32 parameter (zeros when the loss does
//     not depend on it, as PyTorch reports a zero gradient after zero_grad).
//
// Broadcasting is undone with sum_to: an operand that was broadcast receives
// the sum of its adjoint over the broadcast dims. Preconditions: the graph
// verifies, and `loss` names a scalar f32 output.
//
//===----------------------------------------------------------------------===//
#include "passes/autodiff.h"

#include <cmath>
#include <numbers>

#include "ir/decompose.h"

#include "ir/builder.h"

#include <fmt/format.h>
#include <set>

namespace kiln::passes {

namespace {

using ir::Attrs;
using ir::Builder;
using ir::DType;
using ir::Node;
using ir::OpKind;
using ir::Shape;
using ir::ValueId;

/// Adjoints of a node's operands, one per operand, -1 where none is needed.
using OperandGrads = std::vector<ValueId>;

/// The inverse of a transpose permutation.
std::vector<int64_t> inversePerm(const Shape &perm) {
  std::vector<int64_t> inv(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) inv[perm[i].value] = static_cast<int64_t>(i);
  return inv;
}

/// Emits the gradient of one node. `dy` is the adjoint of its result; `need`
/// says which operands want an adjoint. Returns an empty vector when the op
/// has no rule (only possible for NoGrad ops, which never get here).
OperandGrads gradientRule(Builder &b, const Node &n, ValueId dy, const std::vector<bool> &need) {
  const ir::Graph &g = b.graph();
  auto shapeOf = [&](ValueId v) { return g.type(v).shape; };
  auto operand = [&](size_t i) { return n.operands[i]; };
  ValueId y = n.result;
  OperandGrads out(n.operands.size(), -1);
  auto unbroadcast = [&](size_t i, ValueId grad) { out[i] = b.sumTo(grad, shapeOf(operand(i))); };
  auto maskOf = [&](size_t i) -> std::optional<ValueId> {
    if (n.operands.size() > i) return operand(i);
    return std::nullopt;
  };

  switch (n.op) {
  case OpKind::Embedding: {
    int64_t rows = shapeOf(operand(0))[0].value;
    out[0] = b.create(OpKind::EmbeddingGrad, {operand(1), dy}, {{"rows", rows}});
    return out;
  }
  case OpKind::MatMul: {
    // y = op(a) @ op(b), op = transpose when the flag is set. The formulas
    // below give the gradient in each operand's stored layout.
    bool ta = ir::attrBool(n.op, n.attrs, "transpose_a"), tb = ir::attrBool(n.op, n.attrs, "transpose_b");
    ValueId a = operand(0), bb = operand(1);
    if (need[0]) unbroadcast(0, ta ? b.matmul(bb, dy, tb, true) : b.matmul(dy, bb, false, !tb));
    if (need[1]) unbroadcast(1, tb ? b.matmul(dy, a, true, ta) : b.matmul(a, dy, !ta, false));
    return out;
  }
  case OpKind::Conv1d: {
    // y = conv(x, w) + b: dx is the transposed convolution of dy, dw the
    // correlation of x with dy, db dy summed over everything but channels.
    ir::Attrs padding{{"padding", ir::attrInt(n.op, n.attrs, "padding")}};
    if (need[0]) out[0] = b.create(OpKind::Conv1dInputGrad, {dy, operand(1)}, padding);
    if (need[1]) out[1] = b.create(OpKind::Conv1dWeightGrad, {operand(0), dy}, padding);
    if (n.operands.size() > 2 && need[2]) out[2] = b.sumTo(dy, shapeOf(operand(2)));
    return out;
  }
  case OpKind::Gru:
  case OpKind::Lstm: {
    // Backpropagation through time in one op; the gates the forward saved
    // (its second result) get no adjoint of their own.
    std::vector<ValueId> operands{operand(1), y, n.moreResults.at(0), dy};
    if (n.operands.size() > 3) operands.push_back(operand(3));
    std::vector<ValueId> grads =
        b.createMulti(n.op == OpKind::Gru ? OpKind::GruGrad : OpKind::LstmGrad, operands, n.attrs);
    for (size_t k = 0; k < 3; ++k)
      if (need[k]) out[k] = grads[k];
    return out;
  }
  case OpKind::Add:
    if (need[0]) unbroadcast(0, dy);
    if (need[1]) unbroadcast(1, dy);
    return out;
  case OpKind::Sub:
    if (need[0]) unbroadcast(0, dy);
    if (need[1]) unbroadcast(1, b.neg(dy));
    return out;
  case OpKind::Mul:
    if (need[0]) unbroadcast(0, b.mul(dy, operand(1)));
    if (need[1]) unbroadcast(1, b.mul(dy, operand(0)));
    return out;
  case OpKind::Div:
    // d(a/b)/db = -a/b^2 = -y/b.
    if (need[0]) unbroadcast(0, b.div(dy, operand(1)));
    if (need[1]) unbroadcast(1, b.neg(b.div(b.mul(dy, y), operand(1))));
    return out;
  case OpKind::Neg: out[0] = b.neg(dy); return out;
  case OpKind::Exp: out[0] = b.mul(dy, y); return out;
  case OpKind::Log: out[0] = b.div(dy, operand(0)); return out;
  case OpKind::Tanh: out[0] = b.create(OpKind::TanhGrad, {y, dy}); return out;
  case OpKind::Sigmoid: out[0] = b.create(OpKind::SigmoidGrad, {y, dy}); return out;
  case OpKind::Relu: out[0] = b.create(OpKind::ReluGrad, {operand(0), dy}); return out;
  case OpKind::Sqrt: out[0] = b.div(dy, b.mul(y, b.constant(2.0))); return out;
  case OpKind::Slice:
  case OpKind::SliceGrad: {
    // Each is the other's gradient: a slice's puts dy back among zeros, and
    // zero padding's (the DSL's cat) is the slice it padded; `size` becomes
    // the extent of the operand along the axis.
    ir::Attrs attrs = n.attrs;
    int64_t axis = ir::normalizeAxis(ir::axisAttr(n.attrs), shapeOf(operand(0)).size());
    attrs["size"] = shapeOf(operand(0))[static_cast<size_t>(axis)];
    out[0] = b.create(n.op == OpKind::Slice ? OpKind::SliceGrad : OpKind::Slice, {dy}, attrs);
    return out;
  }
  case OpKind::Dropout:
    // Linear in x: the gradient goes through the same mask and scale (the
    // same op, attributes and step). The step gets none.
    if (n.operands.size() == 1) out[0] = dy;
    else if (n.operands.size() == 2) out[0] = b.create(OpKind::Dropout, {dy, operand(1)}, n.attrs);
    else out[0] = b.create(OpKind::Dropout, {dy, operand(1), operand(2)}, n.attrs);
    return out;
  case OpKind::Erf: {
    // d erf(x)/dx = 2/sqrt(pi) e^(-x^2).
    ValueId x = operand(0);
    out[0] = b.mul(dy, b.mul(b.exp(b.neg(b.mul(x, x))), b.constant(2.0 / std::sqrt(std::numbers::pi))));
    return out;
  }
  case OpKind::Softmax: out[0] = b.create(OpKind::SoftmaxGrad, {y, dy}, {{"axis", ir::axisAttr(n.attrs)}}); return out;
  case OpKind::LogSoftmax: {
    std::vector<ValueId> ops{y, dy};
    if (auto m = maskOf(1)) ops.push_back(*m);
    out[0] = b.create(OpKind::LogSoftmaxGrad, ops, {{"axis", ir::axisAttr(n.attrs)}});
    return out;
  }
  case OpKind::Sum:
  case OpKind::Mean: {
    Attrs attrs = n.attrs;
    attrs["shape"] = shapeOf(operand(0));
    std::vector<ValueId> ops{dy};
    if (auto m = maskOf(1)) ops.push_back(*m);
    out[0] = b.create(n.op == OpKind::Sum ? OpKind::SumGrad : OpKind::MeanGrad, ops, attrs);
    return out;
  }
  case OpKind::Max: {
    std::vector<ValueId> ops{operand(0), dy};
    if (auto m = maskOf(1)) ops.push_back(*m);
    out[0] = b.create(OpKind::MaxGrad, ops, n.attrs);
    return out;
  }
  case OpKind::Reshape: out[0] = b.reshape(dy, shapeOf(operand(0))); return out;
  case OpKind::Transpose: out[0] = b.transpose(dy, inversePerm(ir::attrDims(n.attrs, "perm"))); return out;
  case OpKind::Select: {
    ValueId zero = b.constant(0.0);
    if (need[1]) unbroadcast(1, b.select(operand(0), dy, zero));
    if (need[2]) unbroadcast(2, b.select(operand(0), zero, dy));
    return out;
  }
  case OpKind::CrossEntropy: out[0] = b.create(OpKind::CrossEntropyGrad, {operand(0), operand(1), dy}); return out;
  case OpKind::BroadcastTo: out[0] = b.sumTo(dy, shapeOf(operand(0))); return out;
  case OpKind::SumTo: out[0] = b.broadcastTo(dy, shapeOf(operand(0))); return out;
  // No gradient flows through these (the NoGrad ops of the table).
  case OpKind::Constant:
  case OpKind::Equal:
  case OpKind::NotEqual:
  case OpKind::Less:
  case OpKind::LessEqual:
  case OpKind::Greater:
  case OpKind::GreaterEqual:
  case OpKind::Cast:
  case OpKind::Positions:
  case OpKind::Conv1dInputGrad:
  case OpKind::Conv1dWeightGrad:
  case OpKind::GruGrad:
  case OpKind::LstmGrad:
  case OpKind::EmbeddingGrad:
  case OpKind::SoftmaxGrad:
  case OpKind::LogSoftmaxGrad:
  case OpKind::TanhGrad:
  case OpKind::SigmoidGrad:
  case OpKind::ReluGrad:
  case OpKind::SumGrad:
  case OpKind::MeanGrad:
  case OpKind::MaxGrad:
  case OpKind::CrossEntropyGrad:
  case OpKind::AdamMoment:
  case OpKind::AdamUpdate: return {};
  }
  return {};
}

} // namespace

ir::Graph differentiate(const ir::Graph &forward, const std::string &loss, const std::string &name) {
  ir::Graph g = forward;
  g.setName(name);
  // A fused op's gradient is its decomposition's: expand them first (the
  // fusion passes run again on the training step autodiff builds).
  ir::expandFusedOps(g);
  ValueId lossValue = -1;
  for (const ir::Output &o : g.outputs())
    if (o.name == loss) lossValue = o.value;
  if (lossValue < 0) throw Error(fmt::format("graph @{} has no output '{}' to differentiate", forward.name(), loss));
  if (!(g.type(lossValue) == ir::TensorType{DType::F32, {}}))
    throw Error(fmt::format("the loss '{}' must be a scalar f32[], got {}", loss, g.type(lossValue).str()));

  // 2. Which values need a gradient.
  std::vector<bool> needs(g.numValues(), false);
  for (ValueId p : g.params()) needs[p] = g.type(p).dtype == DType::F32;
  size_t forwardNodes = g.nodes().size();
  for (size_t i = 0; i < forwardNodes; ++i) {
    const Node &n = g.nodes()[i];
    if (!ir::opInfo(n.op).differentiable()) continue;
    for (ValueId v : n.operands) needs[n.result] = needs[n.result] || needs[v];
  }

  Builder b(g);
  std::set<std::string> names;
  for (size_t v = 0; v < g.numValues(); ++v)
    if (!g.value(static_cast<ValueId>(v)).name.empty()) names.insert(g.value(static_cast<ValueId>(v)).name);
  auto nameAdjoint = [&](ValueId v, ValueId adj) {
    ir::ValueInfo &info = g.value(adj);
    const std::string &base = g.value(v).name;
    if (base.empty() || info.kind != ir::ValueKind::Node || !info.name.empty()) return;
    std::string n = "grad." + base;
    for (int k = 1; names.count(n); ++k) n = fmt::format("grad.{}.{}", base, k);
    names.insert(n);
    info.name = n;
  };

  // 3. Reverse sweep.
  std::vector<ValueId> adjoint(g.numValues() + 1, -1);
  b.setLoc({});
  adjoint[lossValue] = b.constant(1.0);
  for (size_t i = forwardNodes; i-- > 0;) {
    // Copy: emitting ops appends to g.nodes() and may reallocate it.
    const Node n = g.nodes()[i];
    ValueId dy = adjoint[n.result];
    if (dy < 0 || !needs[n.result]) continue;
    nameAdjoint(n.result, dy);
    std::vector<bool> need(n.operands.size());
    bool any = false;
    for (size_t k = 0; k < n.operands.size(); ++k) any |= need[k] = needs[n.operands[k]];
    if (!any) continue;
    b.setLoc(n.locs.empty() ? SourceLoc{} : n.locs.front());
    OperandGrads grads = gradientRule(b, n, dy, need);
    if (grads.empty())
      throw Error(fmt::format("no gradient rule for op '{}'", ir::opName(n.op)), n.locs.empty() ? SourceLoc{} : n.locs[0]);
    for (size_t k = 0; k < grads.size(); ++k) {
      if (!need[k] || grads[k] < 0) continue;
      ValueId v = n.operands[k];
      if (static_cast<size_t>(v) >= adjoint.size()) adjoint.resize(v + 1, -1);
      adjoint[v] = adjoint[v] < 0 ? grads[k] : b.add(adjoint[v], grads[k]);
    }
    if (adjoint.size() < g.numValues()) adjoint.resize(g.numValues(), -1);
  }

  // 4. Parameter gradients.
  b.setLoc({});
  for (ValueId p : g.params()) {
    if (g.type(p).dtype != DType::F32) continue;
    ValueId grad = adjoint[p] >= 0 ? adjoint[p] : b.fill(0.0, g.type(p).shape);
    nameAdjoint(p, grad);
    b.output("grad." + g.value(p).name, grad);
  }
  return g;
}

} // namespace kiln::passes
