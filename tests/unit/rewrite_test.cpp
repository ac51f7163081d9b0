//===- tests/unit/rewrite_test.cpp - graph mutation and pattern rewriting -===//
//
// ir::Graph's mutation primitives (insertion point, replaceAllUses,
// eraseNodes) keep the graph valid (the verifier checks producers and
// definition order); ir::rewrite's matcher honours kinds, operand counts,
// attributes, captures that must agree, commutativity and the one-reader
// rule; applyRules reaches a fixed point, merges source locations and
// refuses rules that loop. The passes' own cases are lit tests over `kiln
// opt` (tests/lit/passes); here, whole models: the default pipelines keep
// every example valid and never grow it.
//
//===----------------------------------------------------------------------===//
#include "frontend/lower.h"
#include "ir/builder.h"
#include "ir/printer.h"
#include "ir/rewrite.h"
#include "ir/verifier.h"
#include "passes/pipeline.h"
#include "passes/training.h"

#include <doctest/doctest.h>

using namespace kiln;
using namespace kiln::ir;
using rewrite::Match;
using rewrite::Pattern;
using rewrite::Rule;

namespace {

TensorType f32(std::vector<int64_t> dims) {
  Shape s;
  for (int64_t d : dims) s.push_back(Dim::constant(d));
  return {DType::F32, s};
}

/// y = tanh(x * w + b) with locations 1..4 on the ops.
struct Small {
  Graph g{"small"};
  ValueId x, w, b, mm, add, th;
  Small() {
    Builder bl(g);
    x = bl.input("x", f32({2, 3}));
    w = bl.param("w", f32({3, 4}));
    b = bl.param("b", f32({4}));
    bl.setLoc({"m.kiln", 1, 1});
    mm = bl.matmul(x, w);
    bl.setLoc({"m.kiln", 2, 1});
    add = bl.add(mm, b);
    bl.setLoc({"m.kiln", 3, 1});
    th = bl.tanh(add);
    bl.output("y", th);
  }
};

} // namespace

TEST_CASE("rewrite: inserting before a node keeps producers and order valid") {
  Small s;
  s.g.setInsertionPoint(1); // before the add
  Builder b(s.g);
  ValueId e = b.exp(s.x);
  CHECK(s.g.nodes()[1].result == e);
  CHECK(s.g.nodes().size() == 4);
  // Every node result's producer is its index again.
  for (size_t i = 0; i < s.g.nodes().size(); ++i) CHECK(s.g.value(s.g.nodes()[i].result).producer == (NodeId)i);
  CHECK(s.g.insertionPoint() == 2); // still before the add
  s.g.setInsertionPoint(static_cast<NodeId>(s.g.nodes().size()));
  verify(s.g);
  CHECK_THROWS_AS(s.g.setInsertionPoint(99), Error);
}

TEST_CASE("rewrite: replaceAllUses redirects operands and outputs and hands over the name") {
  Graph g("g");
  Builder b(g);
  ValueId x = b.input("x", f32({4}));
  ValueId t = b.create(OpKind::Tanh, {x}, {}, "named");
  ValueId u = b.exp(t);
  b.output("t", t);
  b.output("u", u);
  ValueId r = b.relu(x);
  g.replaceAllUses(t, x); // an input does not take a node's name
  CHECK(g.nodes()[1].operands[0] == x);
  CHECK(g.outputs()[0].value == x);
  CHECK(g.value(t).name == "named");
  g.replaceAllUses(u, r);
  CHECK(g.value(r).name.empty()); // u had no name
  CHECK(g.outputs()[1].value == r);
  CHECK(rewrite::eraseDeadNodes(g) == 2); // nothing reads the tanh or the exp now
  verify(g);
}

TEST_CASE("rewrite: eraseNodes renumbers values and keeps inputs and params") {
  Small s;
  std::vector<bool> dead(s.g.nodes().size(), false);
  s.g.replaceAllUses(s.th, s.mm);
  dead[1] = dead[2] = true;
  CHECK(s.g.eraseNodes(dead) == 2);
  CHECK(s.g.nodes().size() == 1);
  CHECK(s.g.numValues() == 4);
  CHECK(s.g.outputs()[0].value == s.g.nodes()[0].result);
  CHECK(s.g.findParam("b") >= 0);
  verify(s.g);
  // A survivor that reads a removed value is a bug of the caller: reported.
  Small t;
  std::vector<bool> onlyMatmul{true, false, false};
  CHECK_THROWS_AS(t.g.eraseNodes(onlyMatmul), Error);
}

TEST_CASE("rewrite: patterns match kind, operands, attributes and captures") {
  Small s;
  auto users = s.g.users();
  Pattern p = Pattern::op(OpKind::Tanh, {Pattern::op(OpKind::Add, {Pattern::op(OpKind::MatMul, {Pattern::any("x"), Pattern::any("w")}),
                                                                    Pattern::any("b")})});
  auto m = rewrite::match(s.g, users, p, 2);
  REQUIRE(m);
  CHECK(m->at("x") == s.x);
  CHECK(m->at("b") == s.b);
  CHECK(m->nodes.size() == 3);
  CHECK(m->locs(s.g).size() == 3);
  CHECK_FALSE(rewrite::match(s.g, users, p, 1)); // rooted at the add: no tanh there

  // Operand order matters unless commutative().
  Pattern swapped = Pattern::op(OpKind::Add, {Pattern::any("b").where([&](const Graph &, ValueId v) { return v == s.b; }),
                                              Pattern::op(OpKind::MatMul, {Pattern::any(), Pattern::any()})});
  CHECK_FALSE(rewrite::match(s.g, users, swapped, 1));
  swapped.commutative();
  CHECK(rewrite::match(s.g, users, swapped, 1));

  // Attributes compare with the default when absent.
  Pattern transposed = Pattern::op(OpKind::MatMul, {Pattern::any(), Pattern::any()}).attr("transpose_b", true);
  CHECK_FALSE(rewrite::match(s.g, users, transposed, 0));
  Pattern plain = Pattern::op(OpKind::MatMul, {Pattern::any(), Pattern::any()}).attr("transpose_b", false);
  CHECK(rewrite::match(s.g, users, plain, 0));

  // A capture used twice must be the same value.
  Pattern same = Pattern::op(OpKind::MatMul, {Pattern::any("v"), Pattern::any("v")});
  CHECK_FALSE(rewrite::match(s.g, users, same, 0));
}

TEST_CASE("rewrite: an op pattern's conditions see only that op's results") {
  Small s;
  auto users = s.g.users();
  int calls = 0;
  // A condition that reads the producing node (as fuse-attention's axis
  // test does) must never be handed an input or a parameter.
  Pattern p = Pattern::op(OpKind::Tanh, {Pattern::op(OpKind::Add, {Pattern::any(), Pattern::any()}).where(
                                            [&](const Graph &g, ValueId v) {
                                              ++calls;
                                              REQUIRE(g.value(v).kind == ValueKind::Node);
                                              return g.nodes()[g.value(v).producer].op == OpKind::Add;
                                            })});
  for (NodeId i = 0; i < 3; ++i) rewrite::match(s.g, users, p, i);
  Pattern q = Pattern::op(OpKind::MatMul, {Pattern::op(OpKind::Add, {Pattern::any(), Pattern::any()}).where(
                                              [&](const Graph &g, ValueId v) {
                                                ++calls;
                                                REQUIRE(g.value(v).kind == ValueKind::Node);
                                                return true;
                                              }),
                                          Pattern::any()});
  CHECK_FALSE(rewrite::match(s.g, users, q, 0)); // the matmul's operands are an input and a parameter
  CHECK(calls == 1); // only the add, under the tanh
}

TEST_CASE("rewrite: an interior node read elsewhere or output does not match unless shared") {
  Small s;
  Builder b(s.g);
  b.output("pre", s.add); // the add is now also an output
  auto users = s.g.users();
  Pattern p = Pattern::op(OpKind::Tanh, {Pattern::op(OpKind::Add, {Pattern::any(), Pattern::any()})});
  CHECK_FALSE(rewrite::match(s.g, users, p, 2));
  Pattern q = Pattern::op(OpKind::Tanh, {Pattern::op(OpKind::Add, {Pattern::any(), Pattern::any()}).shared()});
  CHECK(rewrite::match(s.g, users, q, 2));
}

TEST_CASE("rewrite: applyRules replaces, merges locations and reaches a fixed point") {
  Small s;
  // tanh(add(a, b)) -> sigmoid(add(a, b)): a toy rule with a real rebuild.
  Rule r{"tanh-to-sigmoid", Pattern::op(OpKind::Tanh, {Pattern::op(OpKind::Add, {Pattern::any("a"), Pattern::any("b")})}),
         [](Builder &b, const Match &m) -> std::optional<ValueId> {
           return b.sigmoid(b.add(m.at("a"), m.at("b")));
         }};
  auto fired = rewrite::applyRules(s.g, {r}, {true});
  CHECK(fired["tanh-to-sigmoid"] == 1);
  REQUIRE(s.g.nodes().size() == 3);
  CHECK(s.g.nodes()[2].op == OpKind::Sigmoid);
  // The new nodes carry the locations of everything matched (lines 2 and 3).
  CHECK(s.g.nodes()[2].locs.size() == 2);
  CHECK(s.g.nodes()[1].locs.size() == 2);
  CHECK(s.g.outputs()[0].value == s.g.nodes()[2].result);
  verify(s.g);

  // A rule that declines leaves the graph alone.
  Rule never{"never", Pattern::op(OpKind::Sigmoid, {Pattern::any()}),
             [](Builder &, const Match &) -> std::optional<ValueId> { return std::nullopt; }};
  std::string before = printGraph(s.g);
  CHECK(rewrite::applyRules(s.g, {never}).empty());
  CHECK(printGraph(s.g) == before);

  // Two rules that undo each other are stopped, not looped forever.
  Rule there{"there", Pattern::op(OpKind::Sigmoid, {Pattern::any("x")}),
             [](Builder &b, const Match &m) -> std::optional<ValueId> { return b.tanh(m.at("x")); }};
  Rule back{"back", Pattern::op(OpKind::Tanh, {Pattern::any("x")}),
            [](Builder &b, const Match &m) -> std::optional<ValueId> { return b.sigmoid(m.at("x")); }};
  CHECK_THROWS_WITH_AS(rewrite::applyRules(s.g, {there, back}, {false, 8}),
                       doctest::Contains("still fire after 8 sweeps"), Error);
}

TEST_CASE("passes: the default pipelines keep every example model valid and never add ops") {
  for (const char *model : {"classifier_additive", "classifier_sdpa", "classifier_attnpool"}) {
    CAPTURE(model);
    frontend::LoweredModel m = frontend::compileFile(std::string(KILN_SOURCE_DIR) + "/examples/" + model + ".kiln", {});
    const Graph &forward = *m.module.find("forward");
    Graph train = passes::buildTrainGraph(forward, {});
    for (Graph g : {forward, train}) {
      size_t before = g.nodes().size();
      passes::PipelineOptions options;
      options.verifyEach = true;
      auto records = passes::runPipeline(g, options);
      CHECK(records.size() == passes::defaultPipeline(passes::roleOf(g)).size());
      verify(g);
      CHECK(g.nodes().size() <= before);
      // A second run finds nothing left to do.
      for (const auto &r : passes::runPipeline(g, options)) CHECK_MESSAGE(!r.changed, r.pass);
    }
  }
}
