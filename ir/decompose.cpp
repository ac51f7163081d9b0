//===- ir/decompose.cpp - what each fused op stands for -------------------===//
//
// One function per fused op, building exactly the primitive ops that the
// fusion pass (passes/fuse_*.cpp) replaced, in the form autodiff and the
// DSL produce them; see decompose.h.
//
//===----------------------------------------------------------------------===//
#include "ir/decompose.h"

#include "ir/elementwise.h"

#include <fmt/format.h>

namespace kiln::ir {

namespace {

ValueId activate(Builder &b, ValueId x, const std::string &activation) {
  if (activation == "relu") return b.relu(x);
  if (activation == "tanh") return b.tanh(x);
  if (activation == "sigmoid") return b.sigmoid(x);
  return x;
}

std::vector<ValueId> matmulBias(Builder &b, const std::vector<ValueId> &o, const Attrs &a) {
  OpKind k = OpKind::MatMulBias;
  ValueId y = b.matmul(o[0], o[1], attrBool(k, a, "transpose_a"), attrBool(k, a, "transpose_b"));
  return {activate(b, b.add(y, o[2]), attrString(k, a, "activation"))};
}

std::vector<ValueId> weightGrad(Builder &b, const std::vector<ValueId> &o, const Attrs &) {
  const Graph &g = b.graph();
  Shape target{g.type(o[0]).shape.back(), g.type(o[1]).shape.back()};
  ValueId perBatch = b.matmul(o[0], o[1], /*transposeA=*/true);
  return {b.create(OpKind::SumTo, {perBatch}, {{"shape", target}})};
}

/// The weights' logits: scale * q k^T (no multiply when scale is 1).
ValueId scores(Builder &b, ValueId q, ValueId k, double scale) {
  ValueId s = b.matmul(q, k, false, /*transposeB=*/true);
  return scale == 1.0 ? s : b.mul(s, b.constant(scale));
}

std::vector<ValueId> attention(Builder &b, const std::vector<ValueId> &o, const Attrs &a) {
  const Graph &g = b.graph();
  double scale = attrFloat(OpKind::Attention, a, "scale");
  std::optional<ValueId> mask;
  if (o.size() == 4) mask = o[3];
  ValueId s = scores(b, o[0], o[1], scale);
  ValueId p = b.softmax(s, -1, mask);
  ValueId out = b.matmul(p, o[2]);
  // lse = m + log(sum(exp(s - m))) over the unmasked keys, m their maximum:
  // -inf for a row whose keys are all masked (its weights are all 0).
  ValueId m = b.max(s, -1, mask, /*keepdim=*/true);
  ValueId total = b.sum(b.exp(b.sub(s, m)), -1, mask);
  Shape rows = g.type(total).shape;
  ValueId lse = b.add(b.log(total), b.reshape(m, rows));
  if (attrBool(OpKind::Attention, a, "weights")) return {out, lse, p};
  return {out, lse};
}

std::vector<ValueId> attentionGrad(Builder &b, const std::vector<ValueId> &o, const Attrs &a) {
  ValueId q = o[0], k = o[1], v = o[2], dout = o[5];
  double scale = attrFloat(OpKind::AttentionGrad, a, "scale");
  std::optional<ValueId> mask;
  if (o.size() == 7) mask = o[6];
  // The weights, recomputed as the forward computed them. (A kernel may
  // start from the stored log-sum-exp, exp(s - lse), but must then
  // renormalise each row: unnormalised, the rows sum to 1 only within the
  // rounding of lse, and that error does not cancel in the gradients that
  // are zero in exact arithmetic, such as a key bias's.)
  ValueId p = b.softmax(scores(b, q, k, scale), -1, mask);
  // As autodiff derives it for matmul(softmax(s), v).
  ValueId dp = b.matmul(dout, v, false, /*transposeB=*/true);
  ValueId dv = b.matmul(p, dout, /*transposeA=*/true);
  ValueId ds = b.create(OpKind::SoftmaxGrad, {p, dp}, {{"axis", int64_t(-1)}});
  if (scale != 1.0) ds = b.mul(ds, b.constant(scale));
  ValueId dq = b.matmul(ds, k);
  ValueId dk = b.matmul(ds, q, /*transposeA=*/true);
  return {dq, dk, dv};
}

/// The pooling of additive attention (the axis is T, the second-to-last).
bool sumPooling(OpKind k, const Attrs &a) { return attrString(k, a, "pooling") == "sum"; }

std::vector<ValueId> additiveAttention(Builder &b, const std::vector<ValueId> &o, const Attrs &a) {
  const Graph &g = b.graph();
  int64_t axis = static_cast<int64_t>(g.type(o[0]).rank()) - 2;
  std::optional<ValueId> mask;
  if (o.size() == 6) mask = o[5];
  ValueId u = b.tanh(b.add(o[0], o[1]));
  ValueId s = b.add(b.matmul(u, o[3], false, /*transposeB=*/true), o[4]);
  ValueId p = b.softmax(s, axis, mask);
  ValueId y = b.mul(p, o[2]);
  ValueId out = sumPooling(OpKind::AdditiveAttention, a) ? b.sum(y, axis, mask) : b.mean(y, axis, mask);
  return {out, p};
}

std::vector<ValueId> additiveAttentionGrad(Builder &b, const std::vector<ValueId> &o, const Attrs &a) {
  const Graph &g = b.graph();
  ValueId h = o[0], k = o[1], v = o[2], w = o[3], p = o[4], dout = o[5];
  int64_t axis = static_cast<int64_t>(g.type(h).rank()) - 2;
  std::vector<ValueId> spreadOperands{dout};
  if (o.size() == 7) spreadOperands.push_back(o[6]);
  // tanh(h + k), recomputed; then as autodiff derives it for the forward.
  ValueId u = b.tanh(b.add(h, k));
  OpKind spread = sumPooling(OpKind::AdditiveAttentionGrad, a) ? OpKind::SumGrad : OpKind::MeanGrad;
  ValueId dy = b.create(spread, spreadOperands, {{"axis", axis}, {"shape", g.type(v).shape}});
  ValueId dv = b.mul(dy, p);
  ValueId dp = b.sumTo(b.mul(dy, v), g.type(p).shape);
  ValueId ds = b.create(OpKind::SoftmaxGrad, {p, dp}, {{"axis", axis}});
  ValueId db = b.sumTo(ds, {Dim::constant(1)});
  ValueId du = b.matmul(ds, w);
  ValueId dw = b.sumTo(b.matmul(ds, u, /*transposeA=*/true), g.type(w).shape);
  ValueId da = b.create(OpKind::TanhGrad, {u, du});
  return {da, dv, dw, db};
}

/// The body's steps, in order, as primitive ops over the operands.
std::vector<ValueId> elementwise(Builder &b, const std::vector<ValueId> &o, const Attrs &a) {
  ElementwiseProgram program = parseBody(attrString(OpKind::Elementwise, a, "body"), o.size());
  std::vector<ValueId> results;
  for (const ElementwiseProgram::Step &step : program.steps) {
    std::vector<ValueId> args;
    for (ElementwiseProgram::Ref r : step.args) args.push_back(r.operand ? o[static_cast<size_t>(r.index)] : results[static_cast<size_t>(r.index)]);
    results.push_back(b.create(step.op, args));
  }
  return {results.back()};
}

std::vector<ValueId> adamStep(Builder &b, const std::vector<ValueId> &o, const Attrs &a) {
  OpKind k = OpKind::AdamStep;
  ValueId m = b.create(OpKind::AdamMoment, {o[1], o[3]}, {{"beta", attrFloat(k, a, "beta1")}});
  ValueId v = b.create(OpKind::AdamMoment, {o[2], o[3]}, {{"beta", attrFloat(k, a, "beta2")}, {"square", true}});
  ValueId p = b.create(OpKind::AdamUpdate, {o[0], m, v, o[4], o[5]}, {{"eps", attrFloat(k, a, "eps")}});
  return {p, m, v};
}

/// adam_rows: adam_step on the whole table with the scatter-added gradient,
/// kept only in the rows that some id names (those with a count above 0).
std::vector<ValueId> adamRows(Builder &b, const std::vector<ValueId> &o, const Attrs &a) {
  OpKind k = OpKind::AdamRows;
  const Graph &g = b.graph();
  ValueId table = o[0], ids = o[3];
  int64_t rows = g.type(table).shape[0].value;
  ValueId grad = b.create(OpKind::EmbeddingGrad, {ids, o[4]}, {{"rows", rows}});
  double decay = attrFloat(k, a, "weight_decay");
  if (decay != 0) grad = b.add(grad, b.mul(table, b.constant(decay)));
  ValueId idColumn = b.unsqueeze(ids, static_cast<int64_t>(g.type(ids).rank()));
  ValueId one = b.cast(b.compare(OpKind::GreaterEqual, idColumn, b.constant(0, DType::I32)), DType::F32);
  ValueId count = b.create(OpKind::EmbeddingGrad, {ids, one}, {{"rows", rows}});
  ValueId named = b.compare(OpKind::Greater, count, b.constant(0));
  std::vector<ValueId> step =
      b.createMulti(OpKind::AdamStep, {table, o[1], o[2], grad, o[5], o[6]},
                    {{"beta1", attrFloat(k, a, "beta1")}, {"beta2", attrFloat(k, a, "beta2")}, {"eps", attrFloat(k, a, "eps")}});
  return {b.select(named, step[0], table), b.select(named, step[1], o[1]), b.select(named, step[2], o[2])};
}

} // namespace

Decomposition decompositionOf(OpKind k) {
  switch (k) {
  case OpKind::AdamStep: return adamStep;
  case OpKind::AdamRows: return adamRows;
  case OpKind::MatMulBias: return matmulBias;
  case OpKind::WeightGrad: return weightGrad;
  case OpKind::Attention: return attention;
  case OpKind::AttentionGrad: return attentionGrad;
  case OpKind::AdditiveAttention: return additiveAttention;
  case OpKind::AdditiveAttentionGrad: return additiveAttentionGrad;
  case OpKind::Elementwise: return elementwise;
  default: return nullptr;
  }
}

size_t expandFusedOps(Graph &g) {
  size_t expanded = 0;
  for (NodeId i = 0; static_cast<size_t>(i) < g.nodes().size(); ++i) {
    Decomposition decompose = decompositionOf(g.nodes()[i].op);
    if (!decompose) continue;
    Node fused = g.nodes()[i];
    g.setInsertionPoint(i);
    Builder b(g);
    if (!fused.locs.empty()) b.setLoc(fused.locs.front());
    size_t before = g.nodes().size();
    std::vector<ValueId> parts = decompose(b, fused.operands, fused.attrs);
    size_t added = g.nodes().size() - before;
    g.setInsertionPoint(static_cast<NodeId>(g.nodes().size()));
    // The primitive ops keep every location the fused op carried.
    for (size_t k = i; k < i + added; ++k) g.nodes()[k].locs = fused.locs;
    std::vector<ValueId> results = fused.results();
    if (parts.size() != results.size())
      throw Error(fmt::format("the decomposition of {} gives {} values for {} results", opName(fused.op), parts.size(),
                              results.size()));
    for (size_t r = 0; r < results.size(); ++r) g.replaceAllUses(results[r], parts[r]);
    std::vector<bool> dead(g.nodes().size(), false);
    dead[i + added] = true; // the fused node, moved down by what was added
    g.eraseNodes(dead);
    i += static_cast<NodeId>(added) - 1;
    ++expanded;
  }
  return expanded;
}

} // namespace kiln::ir
