//===- tests/unit/op_table_test.cpp - every op, end to end ----------------===//
//
// Walks the op table (ir/ops.def) and, for every op, builds a sample node
// from the sample list below, verifies it, prints it, parses the text back
// and prints again (must be identical), and runs it on the reference
// interpreter. An op added to the table without a sample, a shape rule that
// rejects its own sample, a printer/parser mismatch or a missing reference
// kernel fails here, not in a user's hands.
//
//===----------------------------------------------------------------------===//
#include "backends/reference/interpreter.h"
#include "ir/builder.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "op_samples.h"

#include <cmath>
#include <doctest/doctest.h>
#include <functional>
#include <map>
#include <random>

using namespace kiln;
using namespace kiln::ir;
using namespace kiln::testing;

namespace {

/// Random contents valid for any op: small positive floats (valid for log and
/// sqrt), ids in [0, 4) (valid as embedding rows and class labels), random bools.
runtime::Tensor randomTensor(const TensorType &t, const SymbolBindings &b, std::mt19937 &rng) {
  runtime::Tensor out(t.dtype, *concreteShape(t.shape, b));
  std::uniform_real_distribution<float> f(0.1f, 2.0f);
  std::uniform_int_distribution<int> i(0, 3);
  for (int64_t k = 0; k < out.numel(); ++k) {
    if (t.dtype == DType::F32) out.f32()[k] = f(rng);
    else if (t.dtype == DType::I32) out.i32()[k] = i(rng);
    else out.b8()[k] = static_cast<uint8_t>(i(rng) != 0);
  }
  return out;
}

} // namespace

TEST_CASE("every op in the table has a sample, a shape rule, text round trip and a reference kernel") {
  std::mt19937 rng(42);
  for (const OpInfo &op : allOps()) {
    CAPTURE(op.name);
    auto it = samples().find(op.kind);
    REQUIRE_MESSAGE(it != samples().end(), "op has no sample in tests/unit/op_table_test.cpp");
    const Sample &sample = it->second;
    CHECK(static_cast<bool>(op.shapeRule));
    CHECK(opByName(op.name) == op.kind);

    Graph g("sample");
    Builder b(g);
    b.setLoc({"sample.kiln", 1, 1});
    std::vector<ValueId> operands;
    for (size_t i = 0; i < sample.operands.size(); ++i)
      operands.push_back(b.input("in" + std::to_string(i), sample.operands[i]));
    std::vector<ValueId> results = b.createMulti(op.kind, operands, sample.attrs);
    for (size_t k = 0; k < results.size(); ++k) b.output(k ? "out" + std::to_string(k) : "out", results[k]);
    ValueId r = results.front();
    REQUIRE_NOTHROW(verify(g));

    std::string text = printGraph(g);
    Module parsed = parseModule(text, "sample.ir");
    REQUIRE(parsed.graphs().size() == 1);
    CHECK(printGraph(parsed.graphs()[0]) == text);

    REQUIRE(reference::hasKernel(op.kind));
    SymbolBindings bind{{"B", 2}, {"T", 5}};
    std::map<std::string, runtime::Tensor> inputs;
    for (size_t i = 0; i < sample.operands.size(); ++i)
      inputs["in" + std::to_string(i)] = randomTensor(sample.operands[i], bind, rng);
    auto result = reference::run(g, inputs, {});
    const runtime::Tensor &out = result.outputs.at("out");
    CHECK(out.shape() == *concreteShape(g.type(r).shape, bind));
    if (out.dtype() == DType::F32)
      for (float v : out.f32())
        if (op.kind != OpKind::LogSoftmax) CHECK(std::isfinite(v)); // log_softmax is -inf where masked
  }
}

TEST_CASE("operand counts are enforced from the table") {
  for (const OpInfo &op : allOps()) {
    CAPTURE(op.name);
    std::vector<TensorType> tooMany(op.maxOperands + 1, TensorType{DType::F32, {}});
    CHECK_THROWS_AS(inferType(op.kind, tooMany, {}), kiln::Error);
  }
}
