//===- tests/unit/gradcheck_test.cpp - gradients against finite differences -===//
//
// For every differentiable op of the table (ir/ops.def, grad column Diff),
// and for the three example models, the gradients that passes::differentiate
// emits are compared with central finite differences of the reference
// interpreter. An op marked Diff without samples here fails the test.
//
// Method: the op's f32 operands become parameters p0, p1, ...; the loss is
// sum(op(p...) * w) with fixed random weights w, so every output element
// matters with a different weight. The derivative of each parameter element
// is estimated with the fourth-order central difference
//   (8 (L(x+h) - L(x-h)) - (L(x+2h) - L(x-2h))) / 12h,   h = 1e-2,
// whose truncation error (~h^4) is negligible; the f32 rounding of L
// contributes about 1e-7 |L| / h. Tolerance: |fd - ad| <= 2e-3 (1 + |ad|).
// Inputs stay away from kinks (relu at 0, ties in max) by more than 2h.
//
//===----------------------------------------------------------------------===//
#include "backends/reference/interpreter.h"
#include "frontend/lower.h"
#include "ir/builder.h"
#include "ir/verifier.h"
#include "passes/autodiff.h"
#include "runtime/init.h"

#include <cmath>
#include <doctest/doctest.h>
#include <map>
#include <random>

using namespace kiln;
using namespace kiln::ir;

namespace {

Dim c(int64_t v) { return Dim::constant(v); }

struct GradSample {
  std::vector<TensorType> operands;
  Attrs attrs;
  /// f32 operand values are drawn from +-[0.3, 1.5]; `positive` keeps them > 0
  /// (log, sqrt, div denominators).
  bool positive = false;
  /// The last operand is an input fixed at 3, not a parameter: dropout's
  /// step number, through which no gradient flows.
  bool stepOperand = false;
};

std::map<OpKind, std::vector<GradSample>> gradSamples() {
  TensorType x{DType::F32, {c(2), c(3), c(4)}};
  TensorType row{DType::F32, {c(4)}};
  TensorType col{DType::F32, {c(2), c(3), c(1)}};
  TensorType mask{DType::Bool, {c(2), c(3), c(1)}};
  TensorType ids{DType::I32, {c(2), c(3)}};
  std::map<OpKind, std::vector<GradSample>> t;
  t[OpKind::Embedding] = {{{{DType::F32, {c(5), c(4)}}, ids}, {}}};
  t[OpKind::MatMul] = {
      {{x, {DType::F32, {c(4), c(5)}}}, {}},
      {{x, {DType::F32, {c(5), c(4)}}}, {{"transpose_b", true}}},
      {{{DType::F32, {c(2), c(4), c(3)}}, {DType::F32, {c(2), c(4), c(5)}}}, {{"transpose_a", true}}},
      {{{DType::F32, {c(2), c(4), c(3)}}, {DType::F32, {c(1), c(5), c(4)}}}, {{"transpose_a", true}, {"transpose_b", true}}},
  };
  for (OpKind k : {OpKind::Add, OpKind::Sub, OpKind::Mul})
    t[k] = {{{x, row}, {}}, {{col, x}, {}}, {{x, x}, {}}};
  t[OpKind::Div] = {{{x, row}, {}, true}, {{col, x}, {}, true}};
  for (OpKind k : {OpKind::Neg, OpKind::Exp, OpKind::Tanh, OpKind::Relu, OpKind::Sigmoid, OpKind::Erf}) t[k] = {{{x}, {}}};
  t[OpKind::Log] = {{{x}, {}, true}};
  t[OpKind::Slice] = {{{x}, {{"axis", int64_t(2)}, {"start", int64_t(1)}, {"size", int64_t(2)}}},
                      {{x}, {{"axis", int64_t(1)}, {"start", int64_t(0)}, {"size", int64_t(3)}}}};
  // Widths 3 and 2, with and without padding, with and without a bias; the
  // last is wider than its padded input has room for but one window.
  TensorType seq{DType::F32, {c(2), c(5), c(3)}};
  t[OpKind::Conv1d] = {{{seq, {DType::F32, {c(4), c(3), c(3)}}, {DType::F32, {c(4)}}}, {}},
                       {{seq, {DType::F32, {c(2), c(3), c(2)}}}, {{"padding", int64_t(1)}}},
                       {{{DType::F32, {c(2), c(2), c(3)}}, {DType::F32, {c(2), c(3), c(4)}}}, {{"padding", int64_t(1)}}}};
  // Hidden size 3, both directions, with a mask that drops steps anywhere
  // (the state carries over them) and without.
  TensorType xp{DType::F32, {c(2), c(4), c(9)}}, gruW{DType::F32, {c(9), c(3)}}, gruB{DType::F32, {c(9)}};
  TensorType steps{DType::Bool, {c(2), c(4)}};
  t[OpKind::Gru] = {{{xp, gruW, gruB}, {}}, {{xp, gruW, gruB, steps}, {{"reverse", true}}}, {{xp, gruW, gruB, steps}, {}}};
  TensorType lstmXp{DType::F32, {c(2), c(4), c(12)}}, lstmW{DType::F32, {c(12), c(3)}}, lstmB{DType::F32, {c(12)}};
  t[OpKind::Lstm] = {{{lstmXp, lstmW, lstmB}, {}}, {{lstmXp, lstmW, lstmB, steps}, {{"reverse", true}}},
                     {{lstmXp, lstmW, lstmB, steps}, {}}};
  t[OpKind::SliceGrad] = {{{x}, {{"axis", int64_t(2)}, {"start", int64_t(1)}, {"size", int64_t(7)}}},
                          {{x}, {{"axis", int64_t(0)}, {"start", int64_t(0)}, {"size", int64_t(3)}}}};
  t[OpKind::Dropout] = {{{x}, {{"p", 0.4}}},
                        {{x, {DType::F32, {}}}, {{"p", 0.4}, {"key", int64_t(2)}}, false, /*stepOperand=*/true}};
  t[OpKind::Sqrt] = {{{x}, {}, true}};
  for (OpKind k : {OpKind::Softmax, OpKind::LogSoftmax})
    t[k] = {{{x}, {{"axis", int64_t(-1)}}}, {{x, mask}, {{"axis", int64_t(1)}}},
            {{x, {DType::Bool, {c(3), c(4)}}}, {{"axis", int64_t(2)}}}};
  for (OpKind k : {OpKind::Sum, OpKind::Mean, OpKind::Max})
    t[k] = {{{x}, {{"axis", int64_t(2)}}}, {{x, mask}, {{"axis", int64_t(1)}}},
            {{x, mask}, {{"axis", int64_t(1)}, {"keepdim", true}}}};
  t[OpKind::Reshape] = {{{x}, {{"shape", Shape{c(6), c(4)}}}}};
  t[OpKind::Transpose] = {{{x}, {{"perm", Shape{c(2), c(0), c(1)}}}}};
  t[OpKind::Select] = {{{mask, x, row}, {}}};
  t[OpKind::CrossEntropy] = {{{{DType::F32, {c(3), c(5)}}, {DType::I32, {c(3)}}}, {}}};
  t[OpKind::BroadcastTo] = {{{col}, {{"shape", Shape{c(2), c(3), c(4)}}}}};
  t[OpKind::SumTo] = {{{x}, {{"shape", Shape{c(3), c(1)}}}}};
  // Fused ops: through their decompositions.
  for (const char *act : {"none", "relu", "tanh", "sigmoid"})
    t[OpKind::MatMulBias].push_back({{x, {DType::F32, {c(5), c(4)}}, {DType::F32, {c(5)}}},
                                     {{"transpose_b", true}, {"activation", std::string(act)}}});
  t[OpKind::WeightGrad] = {{{x, {DType::F32, {c(2), c(3), c(5)}}}, {}}};
  TensorType q{DType::F32, {c(2), c(3), c(4)}}, k{DType::F32, {c(2), c(5), c(4)}}, v{DType::F32, {c(2), c(5), c(2)}};
  t[OpKind::Attention] = {{{q, k, v}, {}}, {{q, k, v, {DType::Bool, {c(2), c(1), c(5)}}}, {{"scale", 0.5}}}};
  t[OpKind::Elementwise] = {{{x, x, {DType::F32, {}}}, {{"body", std::string("mul(tanh(add($0, $1)), sigmoid(mul($0, $2)))")}}},
                            {{x, x}, {{"body", std::string("sub(div($0, exp($1)), neg(relu($1)))")}}}};
  TensorType scoreWeight{DType::F32, {c(1), c(4)}}, scoreBias{DType::F32, {c(1)}}, values{DType::F32, {c(2), c(3), c(5)}};
  t[OpKind::AdditiveAttention] = {{{x, x, values, scoreWeight, scoreBias, mask}, {}},
                                  {{x, x, values, scoreWeight, scoreBias}, {{"pooling", std::string("sum")}}}};
  return t;
}

using TensorMap = std::map<std::string, runtime::Tensor>;

float lossOf(const Graph &g, const TensorMap &inputs, const TensorMap &params) {
  return reference::run(g, inputs, params).outputs.at("loss").f32()[0];
}

/// Compares every element of every parameter's gradient with finite differences.
void checkGradients(const Graph &forward, const TensorMap &inputs, TensorMap params, size_t maxElements = 1000) {
  Graph grad = passes::differentiate(forward, "loss");
  REQUIRE_NOTHROW(verify(grad));
  auto result = reference::run(grad, inputs, params);
  const float h = 1e-2f;
  for (ValueId p : forward.params()) {
    const std::string &name = forward.value(p).name;
    CAPTURE(name);
    const runtime::Tensor &ad = result.outputs.at("grad." + name);
    runtime::Tensor &x = params.at(name);
    REQUIRE(ad.shape() == x.shape());
    size_t stride = std::max<size_t>(1, x.numel() / maxElements);
    for (int64_t i = 0; i < x.numel(); i += static_cast<int64_t>(stride)) {
      float saved = x.f32()[i];
      auto at = [&](float delta) {
        x.f32()[i] = saved + delta;
        return static_cast<double>(lossOf(forward, inputs, params));
      };
      auto central = [&](float step) { return (8 * (at(step) - at(-step)) - (at(2 * step) - at(-2 * step))) / (12 * step); };
      double a = ad.f32()[i];
      auto close = [&](double fd) { return std::abs(fd - a) <= 2e-3 * (1 + std::abs(a)); };
      double fd = central(h);
      // A relu (or max) whose input is within 2h of its kink makes the
      // difference quotient straddle two slopes; one step 8x smaller is then
      // on one side of it (float32 losses keep it ~1e-4 accurate). A wrong
      // gradient fails both.
      if (!close(fd)) fd = central(h / 8);
      x.f32()[i] = saved;
      CAPTURE(i);
      CHECK(close(fd));
    }
  }
}

runtime::Tensor randomTensor(const TensorType &t, std::mt19937 &rng, bool positive, int64_t intBound) {
  std::vector<int64_t> ext = *concreteShape(t.shape, {});
  runtime::Tensor out(t.dtype, ext);
  std::uniform_real_distribution<float> mag(0.3f, 1.5f);
  std::bernoulli_distribution coin(0.5);
  std::uniform_int_distribution<int> id(0, static_cast<int>(intBound - 1));
  for (int64_t k = 0; k < out.numel(); ++k) {
    if (t.dtype == DType::F32) out.f32()[k] = (positive || coin(rng)) ? mag(rng) : -mag(rng);
    else if (t.dtype == DType::I32) out.i32()[k] = id(rng);
    else out.b8()[k] = coin(rng);
  }
  if (t.dtype == DType::Bool && out.numel() > 0) out.b8()[0] = 1; // at least one kept position
  return out;
}

} // namespace

TEST_CASE("every differentiable op's gradient matches finite differences") {
  auto samples = gradSamples();
  std::mt19937 rng(7);
  for (const OpInfo &op : allOps()) {
    if (!op.differentiable()) continue;
    std::string opName = op.name;
    CAPTURE(opName);
    auto it = samples.find(op.kind);
    REQUIRE_MESSAGE(it != samples.end(), "differentiable op without a gradient check sample in gradcheck_test.cpp");
    for (const GradSample &s : it->second) {
      Graph g("check");
      Builder b(g);
      TensorMap inputs, params;
      std::vector<ValueId> operands;
      for (size_t i = 0; i < s.operands.size(); ++i) {
        const TensorType &t = s.operands[i];
        std::string name = "p" + std::to_string(i);
        // Integer operands index rows/classes: bound them by the other operand.
        int64_t bound = op.kind == OpKind::Embedding ? 5 : op.kind == OpKind::CrossEntropy ? 5 : 2;
        runtime::Tensor v = randomTensor(t, rng, s.positive, bound);
        if (s.stepOperand && i + 1 == s.operands.size()) {
          operands.push_back(b.input(name, t));
          inputs[name] = runtime::Tensor::fromF32({}, {3.0f});
        } else if (t.dtype == DType::F32) {
          operands.push_back(b.param(name, t));
          params[name] = v;
        } else {
          operands.push_back(b.input(name, t));
          inputs[name] = v;
        }
      }
      // Of an op with several results, the first is checked (attention's
      // output; its log-sum-exp only feeds attention_grad).
      ValueId r = b.createMulti(op.kind, operands, s.attrs).front();
      if (op.kind == OpKind::Max) {
        // Separate the values of each slice so that no tie is within 2h.
        runtime::Tensor &x = params.at("p0");
        for (int64_t k = 0; k < x.numel(); ++k) x.f32()[k] = 0.1f * static_cast<float>((k * 7) % x.numel());
      }
      // log_softmax is -inf where masked; those positions carry no gradient.
      if (op.kind == OpKind::LogSoftmax && operands.size() == 2) r = b.select(operands[1], r, b.constant(0.0));
      std::vector<int64_t> ext = *concreteShape(g.type(r).shape, {});
      ValueId w = b.input("w", {DType::F32, g.type(r).shape});
      inputs["w"] = randomTensor(g.type(w), rng, false, 1);
      ValueId weighted = b.mul(r, w);
      int64_t n = numElements(ext);
      ValueId loss = g.type(r).rank() == 0 ? weighted : b.sum(b.reshape(weighted, {c(n)}), 0);
      b.output("loss", loss);
      checkGradients(g, inputs, params);
    }
  }
}

TEST_CASE("gradients of the example models match finite differences") {
  for (const char *model : {"classifier_additive", "classifier_attnpool", "classifier_sdpa"}) {
    CAPTURE(model);
    frontend::LowerOptions opts;
    opts.overrides = {{"vocab", "11"}, {"embed", "6"}, {"hidden", "5"}, {"classes", "3"}};
    auto lowered = frontend::compileFile(std::string(KILN_SOURCE_DIR) + "/examples/" + model + ".kiln", opts);
    Graph forward = *lowered.module.find("forward");
    Builder b(forward);
    ValueId labels = b.input("labels", {DType::I32, {Dim::named("B")}});
    b.output("loss", b.crossEntropy(forward.outputs()[0].value, labels));
    TensorMap params = runtime::materializeParams(forward, {}, 3);
    for (auto &[name, t] : params) // larger weights than PyTorch's init so that no gradient is tiny
      for (float &v : t.f32()) v *= 2.0f;
    // Two texts, the second padded; token 0 is <pad>; a repeated id checks accumulation.
    TensorMap inputs{{"tokens", runtime::Tensor::fromI32({2, 4}, {3, 7, 3, 9, 5, 2, 0, 0})},
                     {"labels", runtime::Tensor::fromI32({2}, {2, 0})}};
    checkGradients(forward, inputs, params, 200);
  }
}

TEST_CASE("gradients accumulate over repeated embedding ids and padding rows get none") {
  Graph g("check");
  Builder b(g);
  ValueId ids = b.input("ids", {DType::I32, {c(4)}});
  ValueId table = b.param("table", {DType::F32, {c(3), c(2)}});
  b.output("loss", b.sum(b.reshape(b.embedding(table, ids), {c(8)}), 0));
  Graph grad = passes::differentiate(g, "loss");
  auto r = reference::run(grad, {{"ids", runtime::Tensor::fromI32({4}, {2, 2, 1, 2})}},
                          {{"table", runtime::Tensor::fromF32({3, 2}, {1, 2, 3, 4, 5, 6})}});
  // Row 0 unused, row 1 once, row 2 three times; d(sum)/d(element) = uses.
  std::vector<float> want{0, 0, 1, 1, 3, 3};
  auto got = r.outputs.at("grad.table").f32();
  CHECK(std::vector<float>(got.begin(), got.end()) == want);
}

TEST_CASE("autodiff rejects a loss that is not a scalar") {
  Graph g("check");
  Builder b(g);
  ValueId p = b.param("p", {DType::F32, {c(2)}});
  b.output("loss", b.exp(p));
  CHECK_THROWS_AS(passes::differentiate(g, "loss"), kiln::Error);
  CHECK_THROWS_AS(passes::differentiate(g, "nope"), kiln::Error);
}
