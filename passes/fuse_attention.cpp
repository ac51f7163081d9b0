//===- passes/fuse_attention.cpp - scaled dot-product attention, fused -----===//
//
// Algorithm: ir::rewrite rules to a fixed point, one per form of the
// scaling (none, div by a constant, mul by a constant), each first in its
// training form and then in its inference form.
//
// Forward (root: the weighted values):
//     s   = matmul(q, k, transpose_b)       [...,Tq,Tk]
//     s'  = s / c  |  s * c  |  s
//     p   = softmax(s' [, mask]) over the last axis
//     out = matmul(p, v)
//   becomes  out, lse = attention(q, k, v [, mask]) {scale}, where lse is
//   each row's log-sum-exp: all that the backward pass needs to recompute
//   the weights p, which are never stored.
//
// Training adds three more roots, the gradients autodiff derives for the
// forward (passes/autodiff.cpp), with dout the gradient arriving at out:
//     dv  = matmul(p, dout, transpose_a)
//     dp  = matmul(dout, v, transpose_b)
//     ds  = softmax_grad(p, dp)   then / c  |  * c  |  as it is
//     dq  = matmul(ds', k)
//     dk  = matmul(ds', q, transpose_a)
//   and all of it becomes  dq, dk, dv = attention_grad(q, k, v, out, lse,
//   dout [, mask]) {scale}, placed before the first of the three gradients.
//
// The [...,Tq,Tk] matrices s, p, dp and ds then exist in no graph: the
// training step's memory grows with T, not T^2 (the fused kernels work a
// block of query rows at a time). The one-reader rule of ir/rewrite.h keeps
// look-alikes out: if p, s or ds is read by anything else (another layer),
// or the softmax runs over another axis, nothing fuses; in a training graph
// the inference form cannot fuse alone either, since the backward nodes
// read p. One reader outside is allowed: p as a graph output, which is how
// the explain graph (passes/explain.h) asks for the weights a model marked
// with @explain. The fused op then gets {weights = true} and writes p as a
// third result, and the output reads that; the graphs that do not ask
// (inference, training) keep the form that never stores p. The fused ops
// keep the locations of every node they absorbed.
// tests/lit/passes/fuse_attention.ir has the cases.
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

enum class Scaling { None, Div, Mul };

/// An f32 scalar constant, captured as "c"; shared, since one constant
/// node may serve the forward, the backward and other layers.
Pattern scaleConstant() {
  return Pattern::op(OpKind::Constant, {}).as("c").shared().where([](const Graph &g, ValueId v) {
    return g.type(v) == ir::TensorType{ir::DType::F32, {}};
  });
}

/// x scaled as the rule's form says.
Pattern scaled(Pattern x, Scaling scaling) {
  switch (scaling) {
  case Scaling::None: return x;
  case Scaling::Div: return Pattern::op(OpKind::Div, {std::move(x), scaleConstant()});
  case Scaling::Mul: return Pattern::op(OpKind::Mul, {std::move(x), scaleConstant()}).commutative();
  }
  return x;
}

/// softmax over the last axis of its operand.
bool overLastAxis(const Graph &g, ValueId v) {
  const ir::Node &n = g.nodes()[g.value(v).producer];
  int64_t rank = static_cast<int64_t>(g.type(v).rank());
  int64_t axis = ir::axisAttr(n.attrs);
  return axis == -1 || axis == rank - 1;
}

Pattern forwardPattern(Scaling scaling, bool masked) {
  Pattern s = Pattern::op(OpKind::MatMul, {Pattern::any("q"), Pattern::any("k")})
                  .attr("transpose_a", false)
                  .attr("transpose_b", true);
  std::vector<Pattern> softmaxOperands{scaled(s, scaling)};
  if (masked) softmaxOperands.push_back(Pattern::any("mask"));
  Pattern p = Pattern::op(OpKind::Softmax, softmaxOperands).as("p").where(overLastAxis).exposable();
  return Pattern::op(OpKind::MatMul, {p, Pattern::any("v")}).attr("transpose_a", false).attr("transpose_b", false);
}

/// The gradient roots, in the order the replacement returns them: dv, dq, dk.
std::vector<Pattern> backwardPatterns(Scaling scaling) {
  Pattern dv = Pattern::op(OpKind::MatMul, {Pattern::any("p"), Pattern::any("dout")})
                   .attr("transpose_a", true)
                   .attr("transpose_b", false);
  Pattern dp = Pattern::op(OpKind::MatMul, {Pattern::any("dout"), Pattern::any("v")})
                   .attr("transpose_a", false)
                   .attr("transpose_b", true);
  Pattern ds = Pattern::op(OpKind::SoftmaxGrad, {Pattern::any("p"), dp}).where(overLastAxis);
  Pattern dsScaled = scaled(ds, scaling).as("ds");
  Pattern dq = Pattern::op(OpKind::MatMul, {dsScaled, Pattern::any("k")})
                   .attr("transpose_a", false)
                   .attr("transpose_b", false);
  Pattern dk = Pattern::op(OpKind::MatMul, {Pattern::any("ds"), Pattern::any("q")})
                   .attr("transpose_a", true)
                   .attr("transpose_b", false);
  return {dv, dq, dk};
}

/// The scale attribute of a match: 1, 1/c or c. nullopt when it is not a
/// usable finite non-zero number.
std::optional<double> scaleOf(const Graph &g, const Match &m, Scaling scaling) {
  if (scaling == Scaling::None) return 1.0;
  const ir::Node &c = g.nodes()[g.value(m.at("c")).producer];
  double value = ir::attrFloat(OpKind::Constant, c.attrs, "value");
  double scale = scaling == Scaling::Div ? 1.0 / value : value;
  if (!std::isfinite(scale) || scale == 0.0) return std::nullopt;
  return scale;
}

std::vector<ValueId> forwardOperands(const Match &m, bool masked) {
  std::vector<ValueId> o{m.at("q"), m.at("k"), m.at("v")};
  if (masked) o.push_back(m.at("mask"));
  return o;
}

/// The fused op's shape rule accepts the match (for attention: the same batch
/// dims for q, k, v; for additive attention: h and k of one type, the mask
/// [...,T,1], a score layer of one output), so the rewrite cannot fail.
bool fits(const Graph &g, OpKind op, const std::vector<ValueId> &operands, const ir::Attrs &attrs) {
  std::vector<ir::TensorType> types;
  for (ValueId v : operands) types.push_back(g.type(v));
  try {
    ir::inferTypes(op, types, attrs);
    return true;
  } catch (const Error &) {
    return false;
  }
}

/// The fused attention of a match: its results out, lse and, when the
/// weights p are a graph output, p itself, which that output then reads.
std::vector<ValueId> createAttention(ir::Builder &b, const Match &m, const std::vector<ValueId> &operands,
                                     double scale) {
  bool exposed = m.isExposed(m.at("p"));
  ir::Attrs attrs{{"scale", scale}};
  if (exposed) attrs["weights"] = true;
  std::vector<ValueId> results = b.createMulti(OpKind::Attention, operands, attrs);
  if (exposed) b.graph().replaceOutputUses(m.at("p"), results[2]);
  return results;
}

std::vector<Rule> attentionRules() {
  std::vector<Rule> rules;
  const char *names[] = {"", "-div", "-mul"};
  for (Scaling scaling : {Scaling::None, Scaling::Div, Scaling::Mul})
    for (bool masked : {true, false}) {
      std::string suffix = std::string(names[static_cast<int>(scaling)]) + (masked ? "-masked" : "");
      Rule training;
      training.name = "attention-training" + suffix;
      training.pattern = forwardPattern(scaling, masked);
      training.more = backwardPatterns(scaling);
      training.buildMulti = [scaling, masked](ir::rewrite::Rewriter &r,
                                              const Match &m) -> std::optional<std::vector<ValueId>> {
        std::optional<double> scale = scaleOf(r.graph(), m, scaling);
        std::vector<ValueId> operands = forwardOperands(m, masked);
        if (!scale || !fits(r.graph(), OpKind::Attention, operands, {{"scale", *scale}})) return std::nullopt;
        ir::Attrs attrs{{"scale", *scale}};
        std::vector<ValueId> forward = createAttention(r.before(0), m, operands, *scale);
        // Before the first of the gradients (roots 1..3 are dv, dq, dk).
        size_t first = 1;
        for (size_t k = 2; k <= 3; ++k)
          if (m.roots[k] < m.roots[first]) first = k;
        std::vector<ValueId> gradOperands{m.at("q"), m.at("k"), m.at("v"), forward[0], forward[1], m.at("dout")};
        if (masked) gradOperands.push_back(m.at("mask"));
        std::vector<ValueId> grads = r.before(first).createMulti(OpKind::AttentionGrad, gradOperands, attrs);
        return std::vector<ValueId>{forward[0], grads[2], grads[0], grads[1]};
      };
      rules.push_back(std::move(training));

      Rule inference;
      inference.name = "attention" + suffix;
      inference.pattern = forwardPattern(scaling, masked);
      inference.build = [scaling, masked](ir::Builder &b, const Match &m) -> std::optional<ValueId> {
        std::optional<double> scale = scaleOf(b.graph(), m, scaling);
        std::vector<ValueId> operands = forwardOperands(m, masked);
        if (!scale || !fits(b.graph(), OpKind::Attention, operands, {{"scale", *scale}})) return std::nullopt;
        return createAttention(b, m, operands, *scale).front();
      };
      rules.push_back(std::move(inference));
    }
  return rules;
}

// --- additive attention with its pooling --------------------------------------

/// Whether the score layer is still add(matmul(u, w^T), b) or fuse-linear
/// has made it matmul_bias(u, w, b) (and the weight gradient weight_grad).
enum class ScoreLayer { Plain, Fused };

/// A softmax, reduction or reduction gradient over T: the second-to-last
/// axis of the [...,T,E] tensor (the operand; a gradient's result).
bool overTokens(const Graph &g, ValueId v) {
  const ir::Node &n = g.nodes()[g.value(v).producer];
  bool spread = n.op == OpKind::SumGrad || n.op == OpKind::MeanGrad;
  int64_t rank = static_cast<int64_t>(g.type(spread ? v : n.operands[0]).rank());
  return rank >= 2 && ir::normalizeAxis(ir::axisAttr(n.attrs), static_cast<size_t>(rank)) == rank - 2;
}

/// A value of exactly the given shape (of constants, as the bias f32[1]).
std::function<bool(const Graph &, ValueId)> hasShape(std::vector<int64_t> extents) {
  return [extents](const Graph &g, ValueId v) {
    ir::Shape want;
    for (int64_t e : extents) want.push_back(ir::Dim::constant(e));
    return g.type(v).shape == want;
  };
}

std::vector<Pattern> maybeMask(Pattern x, bool masked) {
  std::vector<Pattern> operands{std::move(x)};
  if (masked) operands.push_back(Pattern::any("mask"));
  return operands;
}

/// out = mean|sum(softmax(tanh(h + k) w^T + b, mask) * v, mask) over T.
Pattern additiveForward(ScoreLayer layer, OpKind pooling, bool masked) {
  Pattern u = Pattern::op(OpKind::Tanh, {Pattern::op(OpKind::Add, {Pattern::any("h"), Pattern::any("k")}).commutative()})
                  .as("u");
  Pattern s = layer == ScoreLayer::Fused
                  ? Pattern::op(OpKind::MatMulBias, {u, Pattern::any("w"), Pattern::any("b")})
                        .attr("transpose_a", false)
                        .attr("transpose_b", true)
                        .attr("activation", std::string("none"))
                  : Pattern::op(OpKind::Add, {Pattern::op(OpKind::MatMul, {u, Pattern::any("w")})
                                                  .attr("transpose_a", false)
                                                  .attr("transpose_b", true),
                                              Pattern::any("b").where(hasShape({1}))})
                        .commutative();
  Pattern p = Pattern::op(OpKind::Softmax, maybeMask(s, masked)).as("p").where(overTokens).exposable();
  Pattern y = Pattern::op(OpKind::Mul, {p, Pattern::any("v")}).commutative();
  return Pattern::op(pooling, maybeMask(y, masked)).attr("keepdim", false).where(overTokens);
}

/// The gradient roots, as autodiff derives them from the forward, in the
/// order the replacement returns them: dv, db, da, dw.
std::vector<Pattern> additiveBackward(ScoreLayer layer, OpKind pooling, bool masked) {
  OpKind spread = pooling == OpKind::Sum ? OpKind::SumGrad : OpKind::MeanGrad;
  Pattern dy = Pattern::op(spread, maybeMask(Pattern::any("dout"), masked)).as("dy").where(overTokens);
  Pattern dv = Pattern::op(OpKind::Mul, {dy, Pattern::any("p")}).commutative();
  Pattern dp = Pattern::op(OpKind::SumTo, {Pattern::op(OpKind::Mul, {Pattern::any("dy"), Pattern::any("v")}).commutative()});
  Pattern ds = Pattern::op(OpKind::SoftmaxGrad, {Pattern::any("p"), dp}).as("ds").where(overTokens);
  Pattern db = Pattern::op(OpKind::SumTo, {ds}).where(hasShape({1}));
  Pattern du = Pattern::op(OpKind::MatMul, {Pattern::any("ds"), Pattern::any("w")})
                   .attr("transpose_a", false)
                   .attr("transpose_b", false);
  Pattern da = Pattern::op(OpKind::TanhGrad, {Pattern::any("u"), du});
  Pattern dw = layer == ScoreLayer::Fused
                   ? Pattern::op(OpKind::WeightGrad, {Pattern::any("ds"), Pattern::any("u")})
                   : Pattern::op(OpKind::SumTo, {Pattern::op(OpKind::MatMul, {Pattern::any("ds"), Pattern::any("u")})
                                                     .attr("transpose_a", true)
                                                     .attr("transpose_b", false)});
  return {dv, db, da, dw};
}

std::vector<ValueId> additiveOperands(const Match &m, bool masked) {
  std::vector<ValueId> o{m.at("h"), m.at("k"), m.at("v"), m.at("w"), m.at("b")};
  if (masked) o.push_back(m.at("mask"));
  return o;
}

/// The fused op's weights stand for the softmax they replace: they take
/// its DSL name (attention.weights), so that --emit=memory and profiles
/// still say what they are, a graph output of the weights (the explain
/// graph's) and its @explain mark.
void replaceWeights(Graph &g, const Match &m, ValueId weights) { g.replaceOutputUses(m.at("p"), weights); }

std::vector<Rule> additiveAttentionRules() {
  std::vector<Rule> rules;
  for (ScoreLayer layer : {ScoreLayer::Plain, ScoreLayer::Fused})
    for (OpKind pooling : {OpKind::Mean, OpKind::Sum})
      for (bool masked : {true, false}) {
        std::string suffix = std::string(pooling == OpKind::Sum ? "-sum" : "-mean") +
                             (layer == ScoreLayer::Fused ? "-linear" : "") + (masked ? "-masked" : "");
        ir::Attrs attrs{{"pooling", std::string(pooling == OpKind::Sum ? "sum" : "mean")}};
        Rule training;
        training.name = "additive-attention-training" + suffix;
        training.pattern = additiveForward(layer, pooling, masked);
        training.more = additiveBackward(layer, pooling, masked);
        training.buildMulti = [masked, attrs](ir::rewrite::Rewriter &r,
                                              const Match &m) -> std::optional<std::vector<ValueId>> {
          std::vector<ValueId> operands = additiveOperands(m, masked);
          if (!fits(r.graph(), OpKind::AdditiveAttention, operands, attrs)) return std::nullopt;
          std::vector<ValueId> forward = r.before(0).createMulti(OpKind::AdditiveAttention, operands, attrs);
          replaceWeights(r.graph(), m, forward[1]);
          // Before the first of the gradients (roots 1..4 are dv, db, da, dw).
          size_t first = 1;
          for (size_t k = 2; k <= 4; ++k)
            if (m.roots[k] < m.roots[first]) first = k;
          std::vector<ValueId> gradOperands{m.at("h"), m.at("k"), m.at("v"), m.at("w"), forward[1], m.at("dout")};
          if (masked) gradOperands.push_back(m.at("mask"));
          std::vector<ValueId> grads = r.before(first).createMulti(OpKind::AdditiveAttentionGrad, gradOperands, attrs);
          // grads: da, dv, dw, db.
          return std::vector<ValueId>{forward[0], grads[1], grads[3], grads[0], grads[2]};
        };
        rules.push_back(std::move(training));

        Rule inference;
        inference.name = "additive-attention" + suffix;
        inference.pattern = additiveForward(layer, pooling, masked);
        inference.build = [masked, attrs](ir::Builder &b, const Match &m) -> std::optional<ValueId> {
          std::vector<ValueId> operands = additiveOperands(m, masked);
          if (!fits(b.graph(), OpKind::AdditiveAttention, operands, attrs)) return std::nullopt;
          std::vector<ValueId> forward = b.createMulti(OpKind::AdditiveAttention, operands, attrs);
          replaceWeights(b.graph(), m, forward[1]);
          return forward[0];
        };
        rules.push_back(std::move(inference));
      }
  return rules;
}

} // namespace

bool fuseAttention(ir::Graph &g, const PassContext &context) {
  static const std::vector<Rule> rules = [] {
    std::vector<Rule> all = attentionRules();
    for (Rule &r : additiveAttentionRules()) all.push_back(std::move(r));
    return all;
  }();
  return applyRulesPass(g, rules, context);
}

} // namespace kiln::passes
