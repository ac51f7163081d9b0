//===- passes/canonicalize.cpp - algebraic identities and constant folding ===//
//
// Algorithm: ir::rewrite rules applied to a fixed point, each replacing a
// node by a simpler equal value:
//  - constant folding: an elementwise op on f32 scalar constants becomes
//    one constant, computed in f32 as the kernels would (so the folded
//    value is bit-identical to running the graph);
//  - identities that cost a pass over memory: x + 0, x - 0, x * 1, x / 1;
//    x / c for a power of two c becomes x * (1/c) (exact, so bit-identical);
//  - layout no-ops: reshape, broadcast_to or sum_to to the operand's own
//    shape, cast to its own dtype, transpose by the identity perm;
//  - pairs that collapse: reshape of a reshape, transpose of a transpose
//    (one transpose by the composed perm), neg of a neg;
//  - dropout without a step (an inference graph) or with p = 0: x.
// A rule applies only when the replacement has exactly the root's type, so
// no rewrite can change a shape (constants are scalars, so x + 0 always has
// x's type today; the check keeps that true if constants grow a shape). Constants are scalars in kiln, so folding never grows the
// graph's data.
//
//===----------------------------------------------------------------------===//
#include "passes/pipeline.h"

#include "ir/rewrite.h"

#include <cmath>

namespace kiln::passes {

namespace {

using ir::Graph;
using ir::OpKind;
using ir::ValueId;
using ir::rewrite::Match;
using ir::rewrite::Pattern;
using ir::rewrite::Rule;

/// The f32 value of a `constant` node, if v is one.
std::optional<float> f32Constant(const Graph &g, ValueId v) {
  const ir::ValueInfo &info = g.value(v);
  if (info.kind != ir::ValueKind::Node) return std::nullopt;
  const ir::Node &n = g.nodes()[info.producer];
  if (n.op != OpKind::Constant || info.type.dtype != ir::DType::F32) return std::nullopt;
  return static_cast<float>(ir::attrFloat(OpKind::Constant, n.attrs, "value"));
}

auto isConstant(float value) {
  return [value](const Graph &g, ValueId v) {
    auto c = f32Constant(g, v);
    return c && *c == value;
  };
}

/// Rule: root(x, c) is x when c is the constant `value` and types agree.
Rule identity(const char *name, OpKind op, float value, bool commutative) {
  Pattern p = Pattern::op(op, {Pattern::any("x"), Pattern::any("c").where(isConstant(value))});
  if (commutative) p.commutative();
  return {name, p, [](ir::Builder &b, const Match &m) -> std::optional<ValueId> {
            const Graph &g = b.graph();
            ValueId x = m.at("x");
            if (!(g.type(x) == g.type(g.nodes()[m.root].result))) return std::nullopt;
            return x;
          }};
}

/// Rule: a one-operand layout op that leaves its operand as it is.
Rule noOp(const char *name, OpKind op) {
  return {name, Pattern::op(op, {Pattern::any("x")}), [](ir::Builder &b, const Match &m) -> std::optional<ValueId> {
            const Graph &g = b.graph();
            const ir::Node &n = g.nodes()[m.root];
            ValueId x = m.at("x");
            if (!(g.type(x) == g.type(n.result))) return std::nullopt;
            if (n.op == OpKind::Transpose) {
              ir::Shape perm = ir::attrDims(OpKind::Transpose, n.attrs, "perm");
              for (size_t d = 0; d < perm.size(); ++d)
                if (perm[d].value != static_cast<int64_t>(d)) return std::nullopt;
            }
            return x;
          }};
}

std::optional<float> foldScalar(OpKind op, const std::vector<float> &a) {
  switch (op) {
  case OpKind::Add: return a[0] + a[1];
  case OpKind::Sub: return a[0] - a[1];
  case OpKind::Mul: return a[0] * a[1];
  case OpKind::Div: return a[0] / a[1];
  case OpKind::Neg: return -a[0];
  case OpKind::Exp: return std::exp(a[0]);
  case OpKind::Log: return std::log(a[0]);
  case OpKind::Tanh: return std::tanh(a[0]);
  case OpKind::Relu: return a[0] > 0 ? a[0] : 0.0f;
  case OpKind::Sigmoid: return 1.0f / (1.0f + std::exp(-a[0]));
  case OpKind::Sqrt: return std::sqrt(a[0]);
  case OpKind::Erf: return std::erf(a[0]);
  default: return std::nullopt;
  }
}

std::vector<Rule> canonicalRules() {
  std::vector<Rule> rules;
  // Constant folding, one rule per arity: every operand an f32 constant.
  for (int arity : {1, 2}) {
    std::vector<Pattern> operands;
    for (int k = 0; k < arity; ++k)
      operands.push_back(Pattern::any("c" + std::to_string(k)).where([](const Graph &g, ValueId v) {
        return f32Constant(g, v).has_value();
      }));
    // Every elementwise op foldScalar knows (it declines the others).
    for (const ir::OpInfo &info : ir::allOps()) {
      OpKind op = info.kind;
      if (!info.elementwise || info.minOperands != arity || !foldScalar(op, std::vector<float>(arity, 1.0f))) continue;
      rules.push_back({"fold-constants", Pattern::op(op, operands),
                       [arity](ir::Builder &b, const Match &m) -> std::optional<ValueId> {
                         std::vector<float> values;
                         for (int k = 0; k < arity; ++k) values.push_back(*f32Constant(b.graph(), m.at("c" + std::to_string(k))));
                         auto folded = foldScalar(b.graph().nodes()[m.root].op, values);
                         if (!folded) return std::nullopt;
                         return b.constant(static_cast<double>(*folded));
                       }});
    }
  }
  rules.push_back(identity("add-zero", OpKind::Add, 0.0f, true));
  rules.push_back(identity("sub-zero", OpKind::Sub, 0.0f, false));
  rules.push_back(identity("mul-one", OpKind::Mul, 1.0f, true));
  rules.push_back(identity("div-one", OpKind::Div, 1.0f, false));
  // x / 2^k -> x * 2^-k: a multiply instead of a divide, the same bits.
  rules.push_back({"div-by-power-of-two",
                   Pattern::op(OpKind::Div, {Pattern::any("x"), Pattern::any("c").where([](const Graph &g, ValueId v) {
                     auto c = f32Constant(g, v);
                     int exponent = 0;
                     return c && *c != 0 && std::isfinite(*c) && std::frexp(std::fabs(*c), &exponent) == 0.5f;
                   })}),
                   [](ir::Builder &b, const Match &m) -> std::optional<ValueId> {
                     float c = *f32Constant(b.graph(), m.at("c"));
                     return b.mul(m.at("x"), b.constant(static_cast<double>(1.0f / c)));
                   }});
  for (OpKind op : {OpKind::Reshape, OpKind::BroadcastTo, OpKind::SumTo, OpKind::Cast, OpKind::Transpose})
    rules.push_back(noOp("layout-no-op", op));
  rules.push_back({"reshape-of-reshape", Pattern::op(OpKind::Reshape, {Pattern::op(OpKind::Reshape, {Pattern::any("x")})}),
                   [](ir::Builder &b, const Match &m) -> std::optional<ValueId> {
                     return b.reshape(m.at("x"), ir::attrDims(OpKind::Reshape, b.graph().nodes()[m.root].attrs, "shape"));
                   }});
  rules.push_back({"transpose-of-transpose",
                   Pattern::op(OpKind::Transpose, {Pattern::op(OpKind::Transpose, {Pattern::any("x")}).as("inner")}),
                   [](ir::Builder &b, const Match &m) -> std::optional<ValueId> {
                     const Graph &g = b.graph();
                     ir::Shape outer = ir::attrDims(OpKind::Transpose, g.nodes()[m.root].attrs, "perm");
                     ir::Shape inner = ir::attrDims(OpKind::Transpose, g.nodes()[g.value(m.at("inner")).producer].attrs, "perm");
                     // result dim i = inner's dim outer[i] = x's dim inner[outer[i]].
                     std::vector<int64_t> perm;
                     bool identity = true;
                     for (size_t i = 0; i < outer.size(); ++i) {
                       perm.push_back(inner[outer[i].value].value);
                       identity = identity && perm.back() == static_cast<int64_t>(i);
                     }
                     return identity ? m.at("x") : b.transpose(m.at("x"), perm);
                   }});
  rules.push_back({"neg-of-neg", Pattern::op(OpKind::Neg, {Pattern::op(OpKind::Neg, {Pattern::any("x")})}),
                   [](ir::Builder &, const Match &m) -> std::optional<ValueId> { return m.at("x"); }});
  // Dropout outside training (no step operand) is x itself; so is p = 0.
  rules.push_back({"inference-dropout", Pattern::op(OpKind::Dropout, {Pattern::any("x")}),
                   [](ir::Builder &, const Match &m) -> std::optional<ValueId> { return m.at("x"); }});
  rules.push_back({"dropout-p-zero",
                   Pattern::op(OpKind::Dropout, {Pattern::any("x"), Pattern::any("step")}).attr("p", 0.0),
                   [](ir::Builder &, const Match &m) -> std::optional<ValueId> { return m.at("x"); }});
  rules.push_back({"dropout-p-zero-batch-rows",
                   Pattern::op(OpKind::Dropout, {Pattern::any("x"), Pattern::any("step"), Pattern::any("rows")})
                       .attr("p", 0.0),
                   [](ir::Builder &, const Match &m) -> std::optional<ValueId> { return m.at("x"); }});
  return rules;
}

} // namespace

bool canonicalize(ir::Graph &g, const PassContext &context) {
  static const std::vector<Rule> rules = canonicalRules();
  return applyRulesPass(g, rules, context);
}

} // namespace kiln::passes
