//===- passes/flops.cpp - counting the arithmetic of a graph --------------===//
//
// The rule is documented in passes/flops.h. The switch has no default so
// that an op added to ir/ops.def without a FLOP weight is a compiler warning.
//
//===----------------------------------------------------------------------===//
#include "passes/flops.h"

#include "ir/decompose.h"
#include "ir/diagnostic.h"
#include "ir/ops.h"

#include <fmt/format.h>

namespace kiln::passes {

namespace {

/// Weight of the transcendental functions (see the header).
constexpr int64_t kTranscendental = 4;
/// max, subtract, exp, sum, divide (or subtract for log_softmax).
constexpr int64_t kSoftmax = 4 + kTranscendental;

std::vector<int64_t> extents(const ir::Graph &g, ir::ValueId v, const ir::SymbolBindings &b) {
  auto e = ir::concreteShape(g.type(v).shape, b);
  if (!e)
    throw Error(fmt::format("graph @{}: cannot count FLOPs of {} without binding all of its symbols", g.name(),
                            g.type(v).str()));
  return *e;
}

/// A fused op does the work of its decomposition (ir/decompose.h): counted
/// on the decomposition built over the operands at their bound extents.
int64_t decomposedFlops(const ir::Graph &g, const ir::Node &n, const ir::SymbolBindings &bindings) {
  ir::Graph parts("flops");
  ir::Builder b(parts);
  std::vector<ir::ValueId> operands;
  for (size_t i = 0; i < n.operands.size(); ++i) {
    ir::Shape shape;
    for (int64_t e : extents(g, n.operands[i], bindings)) shape.push_back(ir::Dim::constant(e));
    operands.push_back(b.input("in" + std::to_string(i), {g.type(n.operands[i]).dtype, shape}));
  }
  ir::decompositionOf(n.op)(b, operands, n.attrs);
  int64_t flops = 0;
  for (const ir::Node &part : parts.nodes()) flops += nodeFlops(parts, part, {});
  return flops;
}

} // namespace

int64_t nodeFlops(const ir::Graph &g, const ir::Node &n, const ir::SymbolBindings &bindings) {
  auto elements = [&](ir::ValueId v) { return ir::numElements(extents(g, v, bindings)); };
  if (ir::isFused(n.op)) return decomposedFlops(g, n, bindings);
  int64_t out = elements(n.result);
  switch (n.op) {
  case ir::OpKind::Constant:
  case ir::OpKind::Reshape:
  case ir::OpKind::Transpose:
  case ir::OpKind::BroadcastTo:
  case ir::OpKind::Embedding:
    return 0;
  case ir::OpKind::MatMul: {
    // K is the contracted extent of the first operand: its last dim, or the
    // one before it when it is transposed.
    std::vector<int64_t> a = extents(g, n.operands[0], bindings);
    int64_t k = ir::attrBool(n.op, n.attrs, "transpose_a") ? a[a.size() - 2] : a.back();
    return 2 * out * k;
  }
  case ir::OpKind::Conv1d:
  case ir::OpKind::Conv1dInputGrad: {
    // 2 per weight element per output position (the matmul rule with
    // K = in * width), counted on the result: y's rows, or dx's.
    std::vector<int64_t> w = extents(g, n.operands[1], bindings);
    return 2 * out * (n.op == ir::OpKind::Conv1d ? w[1] : w[0]) * w[2];
  }
  case ir::OpKind::Conv1dWeightGrad: {
    // 2 per weight element per position of dy.
    std::vector<int64_t> dy = extents(g, n.operands[1], bindings);
    return 2 * out * ir::numElements(dy) / std::max<int64_t>(dy.back(), 1);
  }
  case ir::OpKind::Add:
  case ir::OpKind::Sub:
  case ir::OpKind::Mul:
  case ir::OpKind::Div:
  case ir::OpKind::Neg:
  case ir::OpKind::Relu:
  case ir::OpKind::Equal:
  case ir::OpKind::NotEqual:
  case ir::OpKind::Less:
  case ir::OpKind::LessEqual:
  case ir::OpKind::Greater:
  case ir::OpKind::GreaterEqual:
  case ir::OpKind::Select:
  case ir::OpKind::Cast:
  case ir::OpKind::ReluGrad:
  case ir::OpKind::SumGrad:
  case ir::OpKind::MeanGrad:
  case ir::OpKind::MaxGrad:
    return out;
  case ir::OpKind::Sum:
  case ir::OpKind::Mean:
  case ir::OpKind::Max:
  case ir::OpKind::SumTo:
    return elements(n.operands[0]);
  case ir::OpKind::EmbeddingGrad:
    return elements(n.operands[1]); // one add per element of dy
  case ir::OpKind::AdamRows:
    return 12 * elements(n.operands[4]); // at most one row of Adam per element of dy, plus its add
  case ir::OpKind::Exp:
  case ir::OpKind::Log:
  case ir::OpKind::Tanh:
  case ir::OpKind::Sigmoid:
  case ir::OpKind::Sqrt:
  case ir::OpKind::Erf:
    return kTranscendental * out;
  case ir::OpKind::TanhGrad:
  case ir::OpKind::SigmoidGrad:
    return 3 * out;
  case ir::OpKind::Softmax:
  case ir::OpKind::LogSoftmax:
    return kSoftmax * out;
  case ir::OpKind::SoftmaxGrad:
    return 4 * out;
  case ir::OpKind::LogSoftmaxGrad:
    return (3 + kTranscendental) * out;
  case ir::OpKind::CrossEntropy: {
    std::vector<int64_t> logits = extents(g, n.operands[0], bindings);
    return kSoftmax * ir::numElements(logits) + logits.front();
  }
  case ir::OpKind::CrossEntropyGrad:
    return (kSoftmax + 2) * out;
  case ir::OpKind::AdamMoment:
    return (ir::attrBool(n.op, n.attrs, "square") ? 4 : 3) * out;
  case ir::OpKind::AdamUpdate:
    return (5 + kTranscendental) * out;
  default:
    // An op added without a rule here: one per output element (adding an
    // op must not need an entry in every table; see "How to add an op").
    return out;
  }
}

int64_t graphFlops(const ir::Graph &g, const ir::SymbolBindings &bindings) {
  int64_t flops = 0;
  for (const ir::Node &n : g.nodes()) flops += nodeFlops(g, n, bindings);
  return flops;
}

} // namespace kiln::passes
