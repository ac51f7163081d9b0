//===- passes/fuse_linear.cpp - linear layers into matmul_bias, weight_grad ===//
//
// Algorithm: ir::rewrite rules to a fixed point.
//  1. relu_grad(x, dy) reads relu(x) instead of x when the graph computes
//     relu(x) (relu(x) > 0 exactly where x > 0, so the result is the
//     same): the pre-activation then has one reader and can vanish into a
//     fused layer. tanh_grad and sigmoid_grad already read the output.
//  2. add(matmul(a, w), bias), bias f32[N] over the matmul's last dim (in
//     either operand order), becomes matmul_bias(a, w, bias): the backend
//     adds the bias as it writes the product, with no pass over memory.
//  3. relu/tanh/sigmoid(matmul_bias{activation = none}) takes the
//     activation into the matmul_bias: applied in the same write.
//  4. sum_to(matmul(a, dy, transpose_a)) to the 2-D [K, N], with a and dy
//     sharing batch dims, becomes weight_grad(a, dy): one matrix product
//     contracting the batch and row dims together, without the
//     [batch, K, N] intermediate of per-batch products.
// Each fused op's meaning is its decomposition (ir/decompose.cpp), which
// these rules invert exactly; tests/lit/passes/fuse_linear.ir has the cases
// and the look-alikes.
//
//===----------------------------------------------------------------------===//
#include "passes/pipeline.h"

#include "ir/rewrite.h"

namespace kiln::passes {

namespace {

using ir::Graph;
using ir::OpKind;
using ir::ValueId;
using ir::rewrite::Match;
using ir::rewrite::Pattern;
using ir::rewrite::Rule;

const char *activationName(OpKind op) {
  switch (op) {
  case OpKind::Relu: return "relu";
  case OpKind::Tanh: return "tanh";
  case OpKind::Sigmoid: return "sigmoid";
  default: return nullptr;
  }
}

std::vector<Rule> linearRules() {
  std::vector<Rule> rules;

  rules.push_back({"relu-grad-reads-output", Pattern::op(OpKind::ReluGrad, {Pattern::any("x"), Pattern::any("dy")}),
                   [](ir::Builder &b, const Match &m) -> std::optional<ValueId> {
                     const Graph &g = b.graph();
                     ValueId x = m.at("x");
                     for (const ir::Node &n : g.nodes())
                       if (n.op == OpKind::Relu && n.operands[0] == x && n.result != m.root)
                         if (g.value(n.result).producer < m.root)
                           return b.create(OpKind::ReluGrad, {n.result, m.at("dy")});
                     return std::nullopt;
                   }});

  rules.push_back(
      {"matmul-bias",
       Pattern::op(OpKind::Add, {Pattern::op(OpKind::MatMul, {Pattern::any("a"), Pattern::any("w")}).as("mm"),
                                 Pattern::any("bias").where([](const Graph &g, ValueId v) {
                                   return g.type(v).dtype == ir::DType::F32 && g.type(v).rank() == 1;
                                 })})
           .commutative(),
       [](ir::Builder &b, const Match &m) -> std::optional<ValueId> {
         const Graph &g = b.graph();
         const ir::Node &mm = g.nodes()[g.value(m.at("mm")).producer];
         // The bias must run along the product's last dim, and the sum must
         // have the product's type (no broadcasting up).
         const ir::TensorType &y = g.type(mm.result);
         if (!(g.type(m.at("bias")).shape[0] == y.shape.back())) return std::nullopt;
         if (!(g.type(g.nodes()[m.root].result) == y)) return std::nullopt;
         ir::Attrs attrs = mm.attrs;
         attrs["activation"] = std::string("none");
         return b.create(OpKind::MatMulBias, {m.at("a"), m.at("w"), m.at("bias")}, attrs);
       }});

  for (OpKind act : {OpKind::Relu, OpKind::Tanh, OpKind::Sigmoid})
    rules.push_back(
        {std::string("matmul-bias-") + activationName(act),
         Pattern::op(act, {Pattern::op(OpKind::MatMulBias, {Pattern::any("a"), Pattern::any("w"), Pattern::any("bias")})
                               .attr("activation", std::string("none"))
                               .as("linear")}),
         [act](ir::Builder &b, const Match &m) -> std::optional<ValueId> {
           ir::Attrs attrs = b.graph().nodes()[b.graph().value(m.at("linear")).producer].attrs;
           attrs["activation"] = std::string(activationName(act));
           return b.create(OpKind::MatMulBias, {m.at("a"), m.at("w"), m.at("bias")}, attrs);
         }});

  rules.push_back(
      {"weight-grad",
       Pattern::op(OpKind::SumTo, {Pattern::op(OpKind::MatMul, {Pattern::any("a"), Pattern::any("dy")})
                                       .attr("transpose_a", true)
                                       .attr("transpose_b", false)}),
       [](ir::Builder &b, const Match &m) -> std::optional<ValueId> {
         const Graph &g = b.graph();
         const ir::TensorType &a = g.type(m.at("a")), &dy = g.type(m.at("dy"));
         const ir::TensorType &sum = g.type(g.nodes()[m.root].result);
         // Only the exact inverse of weight_grad's decomposition: the same
         // batch dims on both operands, summed down to [K, N].
         if (a.rank() < 3 || a.rank() != dy.rank() || !std::equal(a.shape.begin(), a.shape.end() - 1, dy.shape.begin()))
           return std::nullopt;
         if (!(sum.shape == ir::Shape{a.shape.back(), dy.shape.back()})) return std::nullopt;
         return b.create(OpKind::WeightGrad, {m.at("a"), m.at("dy")});
       }});
  return rules;
}

} // namespace

bool fuseLinear(ir::Graph &g, const PassContext &context) {
  static const std::vector<Rule> rules = linearRules();
  return applyRulesPass(g, rules, context);
}

} // namespace kiln::passes
