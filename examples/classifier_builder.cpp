//===- examples/classifier_builder.cpp - a model built from C++ -----------===//
//
// Builds the additive-attention text classifier of
// examples/classifier_additive.kiln with the embedded C++ API (ir::Builder),
// the same API the DSL lowering uses, then runs it on a padded batch with the
// reference interpreter and prints the logits. With --print-ir it prints the
// graph instead; with --compare FILE.kiln it checks that the DSL lowering of
// FILE builds the same graph up to value names and source locations.
//
//===----------------------------------------------------------------------===//
#include "backends/reference/interpreter.h"
#include "frontend/lower.h"
#include "ir/builder.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "runtime/init.h"

#include <cstring>
#include <fmt/format.h>

using namespace kiln;
using namespace kiln::ir;

namespace {

Graph buildClassifier(int64_t vocab, int64_t embed, int64_t hidden, int64_t classes) {
  Graph g("forward");
  Builder b(g);
  b.setLoc({"examples/classifier_builder.cpp", __LINE__, 1});
  ValueId tokens = b.input("tokens", {DType::I32, {Dim::named("B"), Dim::named("T")}});
  // Declare every parameter first, in PyTorch's state_dict order.
  b.embeddingParams("embedding", vocab, embed);
  b.linearParams("attention.linear1", embed, embed, true);
  b.linearParams("attention.linear2", embed, 1, true);
  b.linearParams("fc1", embed, hidden, true);
  b.linearParams("fc2", hidden, classes, true);

  ValueId mask = b.unsqueeze(b.compare(OpKind::NotEqual, tokens, b.constant(0, DType::I32)), 2);
  ValueId x = b.embeddingLayer("embedding", tokens, vocab, embed);
  // Additive attention: softmax over T of linear2(tanh(linear1(x) + x)).
  ValueId scores = b.linearLayer("attention.linear2", b.tanh(b.add(b.linearLayer("attention.linear1", x, embed, embed), x)),
                                 embed, 1);
  ValueId weights = b.softmax(scores, 1, mask);
  g.markExplained(weights); // @explain: what kiln predict --explain shows
  ValueId pooled = b.mean(b.mul(weights, x), 1, mask);
  ValueId h = b.relu(b.linearLayer("fc1", pooled, embed, hidden));
  b.output("logits", b.linearLayer("fc2", h, hidden, classes));
  verify(g);
  return g;
}

/// The graph's text without value names and locations, for structural comparison.
std::string shapeOnly(Graph g) {
  for (size_t v = 0; v < g.numValues(); ++v)
    if (g.value(static_cast<ValueId>(v)).kind == ValueKind::Node) g.value(static_cast<ValueId>(v)).name.clear();
  for (Node &n : g.nodes()) n.locs.clear();
  return printGraph(g);
}

} // namespace

int main(int argc, char **argv) {
  try {
    Graph g = buildClassifier(10000, 128, 256, 5);
    if (argc > 1 && std::strcmp(argv[1], "--print-ir") == 0) {
      fmt::print("{}", printGraph(g));
      return 0;
    }
    if (argc > 2 && std::strcmp(argv[1], "--compare") == 0) {
      auto lowered = frontend::compileFile(argv[2]);
      const Graph *dsl = lowered.module.find("forward");
      if (!dsl || shapeOnly(*dsl) != shapeOnly(g)) {
        fmt::print(stderr, "the C++-built graph differs from {}\n", argv[2]);
        return 1;
      }
      fmt::print("same graph as {}\n", argv[2]);
      return 0;
    }
    // Two sentences as token ids, the second padded with 0.
    auto tokens = runtime::Tensor::fromI32({2, 4}, {5, 17, 42, 9, 7, 3, 0, 0});
    auto params = runtime::materializeParams(g, {}, /*seed=*/0);
    auto result = reference::run(g, {{"tokens", tokens}}, params);
    const runtime::Tensor &logits = result.outputs.at("logits");
    for (int64_t r = 0; r < 2; ++r) {
      fmt::print("logits[{}] =", r);
      for (int64_t c = 0; c < 5; ++c) fmt::print(" {: .5f}", logits.f32()[r * 5 + c]);
      fmt::print("\n");
    }
    return 0;
  } catch (const Error &e) {
    fmt::print(stderr, "{}", formatError(e));
    return 1;
  }
}
