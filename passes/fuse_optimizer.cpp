//===- passes/fuse_optimizer.cpp - each parameter's Adam update in one pass ===//
//
// Algorithm: one ir::rewrite rule with three roots, to a fixed point. The
// training step updates each parameter with three ops (passes/training.cpp):
//     m' = adam_moment(m, g) {beta1}
//     v' = adam_moment(v, g) {beta2, square}
//     p' = adam_update(p, m', v', step_size, bc2_sqrt) {eps}
// each a pass over the parameter's size (reading 7 and writing 3 arrays in
// all). They become  p', m', v' = adam_step(p, m, v, g, step_size,
// bc2_sqrt) {beta1, beta2, eps}: one pass reading 4 arrays and writing 3.
// m' and v' are graph outputs (the new optimizer state), so they are roots
// of the rule, not interiors; the fused op is placed where adam_update was,
// and the rule declines when anything but adam_update reads m' or v' before
// that point. tests/lit/passes/fuse_optimizer.ir has the cases.
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

Rule adamRule() {
  Rule r;
  r.name = "adam-step";
  // Visited first in graph order: the first moment.
  r.pattern = Pattern::op(OpKind::AdamMoment, {Pattern::any("m"), Pattern::any("g")}).attr("square", false).as("m1");
  r.more = {
      Pattern::op(OpKind::AdamMoment, {Pattern::any("v"), Pattern::any("g")}).attr("square", true).as("v1"),
      Pattern::op(OpKind::AdamUpdate,
                  {Pattern::any("p"), Pattern::any("m1"), Pattern::any("v1"), Pattern::any("s"), Pattern::any("c")}),
  };
  r.buildMulti = [](ir::rewrite::Rewriter &rw, const Match &m) -> std::optional<std::vector<ValueId>> {
    const Graph &g = rw.graph();
    const ir::NodeId update = m.roots[2];
    // The moments' results move to the update's position: nothing else may
    // read them before it.
    auto users = g.users();
    for (ValueId moment : {m.at("m1"), m.at("v1")})
      for (ir::NodeId u : users[moment])
        if (u < update) return std::nullopt;
    const ir::Node &first = g.nodes()[m.roots[0]], &second = g.nodes()[m.roots[1]], &last = g.nodes()[update];
    ir::Attrs attrs{{"beta1", ir::attrFloat(OpKind::AdamMoment, first.attrs, "beta")},
                    {"beta2", ir::attrFloat(OpKind::AdamMoment, second.attrs, "beta")},
                    {"eps", ir::attrFloat(OpKind::AdamUpdate, last.attrs, "eps")}};
    std::vector<ValueId> step = rw.before(2).createMulti(
        OpKind::AdamStep, {m.at("p"), m.at("m"), m.at("v"), m.at("g"), m.at("s"), m.at("c")}, attrs);
    // Replacements in root order: m', v', p'.
    return std::vector<ValueId>{step[1], step[2], step[0]};
  };
  return r;
}

} // namespace

bool fuseOptimizer(ir::Graph &g, const PassContext &context) {
  static const std::vector<Rule> rules = {adamRule()};
  return applyRulesPass(g, rules, context);
}

} // namespace kiln::passes
