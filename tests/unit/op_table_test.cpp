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

#include <cmath>
#include <doctest/doctest.h>
#include <functional>
#include <map>
#include <random>

using namespace kiln;
using namespace kiln::ir;

namespace {

Dim c(int64_t v) { return Dim::constant(v); }
Dim s(const char *n) { return Dim::named(n); }

/// One sample use of an op: operand types (inputs of the sample graph) and
/// attributes.
struct Sample {
  std::vector<TensorType> operands;
  Attrs attrs;
};

const std::map<OpKind, Sample> &samples() {
  static const std::map<OpKind, Sample> table = [] {
    TensorType x{DType::F32, {s("B"), c(3), c(4)}};
    TensorType maskB{DType::Bool, {s("B"), c(3), c(1)}};
    TensorType i2{DType::I32, {s("B"), c(3)}};
    std::map<OpKind, Sample> t;
    t[OpKind::Constant] = {{}, {{"value", 0.5}, {"dtype", std::string("f32")}}};
    t[OpKind::Embedding] = {{{DType::F32, {c(7), c(4)}}, i2}, {}};
    t[OpKind::MatMul] = {{x, {DType::F32, {c(5), c(4)}}}, {{"transpose_b", true}}};
    for (OpKind k : {OpKind::Add, OpKind::Sub, OpKind::Mul, OpKind::Div})
      t[k] = {{x, {DType::F32, {c(4)}}}, {}};
    for (OpKind k : {OpKind::Neg, OpKind::Exp, OpKind::Log, OpKind::Tanh, OpKind::Relu, OpKind::Sigmoid, OpKind::Sqrt})
      t[k] = {{x}, {}};
    t[OpKind::Softmax] = {{x, maskB}, {{"axis", int64_t(1)}}};
    t[OpKind::LogSoftmax] = {{x}, {{"axis", int64_t(-1)}}};
    t[OpKind::Sum] = {{x, maskB}, {{"axis", int64_t(1)}}};
    t[OpKind::Mean] = {{x, maskB}, {{"axis", int64_t(1)}, {"keepdim", true}}};
    t[OpKind::Max] = {{x}, {{"axis", int64_t(2)}}};
    t[OpKind::Reshape] = {{x}, {{"shape", Shape{s("B"), c(12), c(1)}}}};
    t[OpKind::Transpose] = {{x}, {{"perm", Shape{c(2), c(0), c(1)}}}};
    for (OpKind k : {OpKind::Equal, OpKind::NotEqual, OpKind::Less, OpKind::LessEqual, OpKind::Greater,
                     OpKind::GreaterEqual})
      t[k] = {{i2, {DType::I32, {}}}, {}};
    t[OpKind::Select] = {{maskB, x, {DType::F32, {}}}, {}};
    t[OpKind::Cast] = {{i2}, {{"dtype", std::string("f32")}}};
    t[OpKind::CrossEntropy] = {{{DType::F32, {s("B"), c(5)}}, {DType::I32, {s("B")}}}, {}};
    TensorType dyReduced{DType::F32, {s("B"), c(4)}};
    t[OpKind::BroadcastTo] = {{{DType::F32, {s("B"), c(3), c(1)}}}, {{"shape", Shape{s("B"), c(3), c(4)}}}};
    t[OpKind::SumTo] = {{x}, {{"shape", Shape{c(3), c(1)}}}};
    t[OpKind::EmbeddingGrad] = {{i2, x}, {{"rows", int64_t(7)}}};
    t[OpKind::SoftmaxGrad] = {{x, x}, {{"axis", int64_t(1)}}};
    t[OpKind::LogSoftmaxGrad] = {{x, x, maskB}, {{"axis", int64_t(1)}}};
    for (OpKind k : {OpKind::TanhGrad, OpKind::SigmoidGrad, OpKind::ReluGrad}) t[k] = {{x, x}, {}};
    t[OpKind::SumGrad] = {{dyReduced, maskB}, {{"axis", int64_t(1)}, {"shape", Shape{s("B"), c(3), c(4)}}}};
    t[OpKind::MeanGrad] = {{dyReduced}, {{"axis", int64_t(1)}, {"shape", Shape{s("B"), c(3), c(4)}}}};
    t[OpKind::MaxGrad] = {{x, dyReduced}, {{"axis", int64_t(1)}}};
    t[OpKind::CrossEntropyGrad] = {{{DType::F32, {s("B"), c(5)}}, {DType::I32, {s("B")}}, {DType::F32, {}}}, {}};
    return t;
  }();
  return table;
}

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
    CHECK((op.shapeRule != nullptr));
    CHECK(opByName(op.name) == op.kind);

    Graph g("sample");
    Builder b(g);
    b.setLoc({"sample.kiln", 1, 1});
    std::vector<ValueId> operands;
    for (size_t i = 0; i < sample.operands.size(); ++i)
      operands.push_back(b.input("in" + std::to_string(i), sample.operands[i]));
    ValueId r = b.create(op.kind, operands, sample.attrs);
    b.output("out", r);
    REQUIRE_NOTHROW(verify(g));

    std::string text = printGraph(g);
    Module parsed = parseModule(text, "sample.ir");
    REQUIRE(parsed.graphs().size() == 1);
    CHECK(printGraph(parsed.graphs()[0]) == text);

    REQUIRE(reference::hasKernel(op.kind));
    SymbolBindings bind{{"B", 2}};
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
