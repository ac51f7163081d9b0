//===- tests/unit/backend_parity_test.cpp - every backend vs the oracle ---===//
//
// The shared parity suite: every op of the table (the samples of
// op_samples.h at B = 1 and B = 3, plus variants that exercise each lowering
// path: transposed and batched matmuls, broadcasting on either side, unmasked
// softmax and reductions on every axis, empty masks), and whole graphs (the
// forward and training-step graphs of the three example models at odd sizes,
// with padding), run on every backend of the registry and compared with the
// reference interpreter.
//
// Tolerance for f32: |backend - reference| <= 1e-5 + 1e-4 |reference|
// (different summation orders in matmuls and reductions, and oneDNN's own
// exp/tanh); infinities must match exactly; i32 and bool must be equal.
// One exception: a parameter whose true gradient is zero (softmax is
// shift-invariant, so attention.linear2.bias and attention.key.bias get
// none) has a gradient of pure rounding noise (~1e-8, compared as usual),
// which Adam normalises into a full-size step of random sign; its updated
// value and optimizer state are therefore not compared.
//
//===----------------------------------------------------------------------===//
#include "backends/backend.h"
#include "backends/reference/interpreter.h"
#include "frontend/lower.h"
#include "ir/builder.h"
#include "ir/verifier.h"
#include "op_samples.h"
#include "passes/pipeline.h"
#include "passes/training.h"
#include "runtime/init.h"

#include <cmath>
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <limits>
#include <map>
#include <optional>
#include <random>

using namespace kiln;
using namespace kiln::ir;
using namespace kiln::testing;

namespace {

runtime::Tensor randomTensor(const std::vector<int64_t> &ext, DType dt, std::mt19937 &rng, int64_t intBound) {
  runtime::Tensor t(dt, ext);
  std::uniform_real_distribution<float> f(0.1f, 2.0f);
  std::bernoulli_distribution coin(0.5);
  std::uniform_int_distribution<int> id(0, static_cast<int>(intBound - 1));
  for (int64_t k = 0; k < t.numel(); ++k) {
    if (dt == DType::F32) t.f32()[k] = coin(rng) ? f(rng) : -f(rng);
    else if (dt == DType::I32) t.i32()[k] = id(rng);
    else t.b8()[k] = coin(rng);
  }
  return t;
}

void compareTensors(const runtime::Tensor &got, const runtime::Tensor &want, const std::string &what) {
  CAPTURE(what);
  REQUIRE(got.dtype() == want.dtype());
  REQUIRE(got.shape() == want.shape());
  for (int64_t i = 0; i < want.numel(); ++i) {
    if (want.dtype() == DType::F32) {
      float a = got.f32()[i], b = want.f32()[i];
      if (std::isinf(b) || std::isnan(b)) {
        CHECK((a == b || (std::isnan(a) && std::isnan(b))));
        continue;
      }
      if (!(std::abs(a - b) <= 1e-5f + 1e-4f * std::abs(b))) {
        CAPTURE(i);
        CHECK(a == doctest::Approx(b));
        return; // one report per tensor is enough
      }
    } else if (want.dtype() == DType::I32) {
      if (got.i32()[i] != want.i32()[i]) {
        CHECK(got.i32()[i] == want.i32()[i]);
        return;
      }
    } else if (got.b8()[i] != want.b8()[i]) {
      CHECK(got.b8()[i] == want.b8()[i]);
      return;
    }
  }
}

/// Every backend runs `g` and matches the reference interpreter running
/// `oracle` (by default g itself; a fused graph is judged by the graph it
/// was fused from). With an oracle, the reference's own run of g is judged
/// too.
void checkGraph(const Graph &g, const runtime::TensorMap &inputs, const runtime::TensorMap &params,
                const std::string &what, const Graph *oracle = nullptr) {
  auto want = reference::run(oracle ? *oracle : g, inputs, params).outputs;
  float largestGrad = 0;
  for (const auto &[out, t] : want)
    if (out.rfind("grad.", 0) == 0)
      for (float v : t.f32()) largestGrad = std::max(largestGrad, std::abs(v));
  auto noiseOnly = [&](const std::string &out) {
    for (const auto &[name, t] : want) {
      if (name.rfind("grad.", 0) != 0) continue;
      std::string param = name.substr(5);
      if (out != param && out.rfind("optimizer." + param + ".", 0) != 0) continue;
      float m = 0;
      for (float v : t.f32()) m = std::max(m, std::abs(v));
      return m < 1e-5f * largestGrad;
    }
    return false;
  };
  for (const std::string &name : backends::backendNames()) {
    if (name == "auto" || (name == "reference" && !oracle)) continue;
    CAPTURE(name);
    // Compiled afresh every run: the compile cache is tested on its own.
    runtime::CompileOptions fresh;
    fresh.cache = false;
    auto exe = backends::compile(g, name, fresh);
    // Twice: the second run reuses the cached plan and must give the same;
    // then runInto, into the first run's tensors overwritten with NaN (the
    // backend may compute straight into them) and, in a second map, into
    // tensors of the wrong shape (which it must replace).
    runtime::TensorMap into;
    for (int round = 0; round < 2; ++round) {
      auto got = exe->run(inputs, params);
      for (const auto &[out, t] : want)
        if (!noiseOnly(out)) compareTensors(got.at(out), t, what + " output " + out);
      into = std::move(got);
    }
    runtime::TensorMap misshapen;
    for (auto &[out, t] : into) {
      if (t.dtype() == DType::F32)
        for (float &v : t.f32()) v = std::nanf("");
      misshapen[out] = runtime::Tensor(t.dtype(), {t.numel() + 1});
    }
    for (runtime::TensorMap *target : {&into, &misshapen}) {
      exe->runInto(inputs, params, *target);
      for (const auto &[out, t] : want)
        if (!noiseOnly(out)) compareTensors(target->at(out), t, what + " runInto output " + out);
    }
  }
}

/// The values of `groups`, in order, as outputs named `names`.
void outputAll(Builder &b, const std::vector<std::string> &names, const std::vector<std::vector<ValueId>> &groups) {
  size_t k = 0;
  for (const std::vector<ValueId> &group : groups)
    for (ValueId v : group) b.output(names.at(k++), v);
  REQUIRE(k == names.size());
}

/// One op applied to random operands of the given types and attributes.
void checkOp(OpKind op, const std::vector<TensorType> &operands, const Attrs &attrs, const SymbolBindings &bind,
             std::mt19937 &rng, const std::string &what) {
  Graph g("op");
  Builder b(g);
  runtime::TensorMap inputs;
  std::vector<ValueId> ids;
  int64_t intBound = 4; // valid ids for the samples' tables and labels
  for (size_t i = 0; i < operands.size(); ++i) {
    std::string name = "in" + std::to_string(i);
    ids.push_back(b.input(name, operands[i]));
    auto ext = *concreteShape(operands[i].shape, bind);
    inputs[name] = randomTensor(ext, operands[i].dtype, rng, intBound);
  }
  // log and sqrt need positive operands; div a divisor away from 0.
  if (op == OpKind::Log || op == OpKind::Sqrt)
    for (float &v : inputs["in0"].f32()) v = std::abs(v);
  // Adam's second moment is never negative.
  if (op == OpKind::AdamRows)
    for (float &v : inputs["in2"].f32()) v = std::abs(v);
  // Convolution weights scaled by 1/sqrt(contraction), as a layer's
  // initialisation does, so that results are O(1) and not cancellations of
  // hundreds of O(1) terms, whose float rounding the f32 tolerance is not for.
  if (op == OpKind::Conv1d || op == OpKind::Conv1dInputGrad) {
    const std::vector<int64_t> &w = inputs["in1"].shape();
    float scale = 1.0f / std::sqrt(static_cast<float>((op == OpKind::Conv1d ? w[1] : w[0]) * w[2]));
    for (float &v : inputs["in1"].f32()) v *= scale;
  }
  // gru_grad and lstm_grad: W_hh scaled by 1/sqrt(H) as the layer
  // initialises it, and the saved gates inside (-0.95, 0.95) as sigmoid and
  // tanh make them. From impossible gates (|1 - n^2| up to 3) and weights of
  // 2, backpropagation through time amplifies the rounding of each step
  // beyond the f32 tolerance, whichever backend is the more accurate.
  if (op == OpKind::GruGrad || op == OpKind::LstmGrad) {
    float scale = 1.0f / std::sqrt(static_cast<float>(inputs["in0"].shape()[1]));
    for (float &v : inputs["in0"].f32()) v *= scale;
    for (float &v : inputs["in2"].f32()) v *= 0.475f;
  }
  std::vector<ValueId> results = b.createMulti(op, ids, attrs);
  for (size_t k = 0; k < results.size(); ++k) b.output(k ? "out" + std::to_string(k) : "out", results[k]);
  checkGraph(g, inputs, {}, what);
}

} // namespace

TEST_CASE("every op matches the reference on every backend") {
  std::mt19937 rng(5);
  for (const OpInfo &op : allOps()) {
    std::string name = op.name;
    CAPTURE(name);
    const Sample &s = samples().at(op.kind);
    for (int64_t batch : {1, 3}) checkOp(op.kind, s.operands, s.attrs, {{"B", batch}, {"T", 2 + 3 * batch}}, rng, name);
  }
}

TEST_CASE("special values go through the elementwise ops as on the reference") {
  // NaN, infinities, signed zeros, a subnormal, exp's overflow and
  // underflow edges, beyond i32's range, and ordinary values: unary ops,
  // casts (saturating, NaN to 0) and comparisons (NaN unordered).
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> values{std::nanf(""), inf, -inf, 0.0f, -0.0f, 1e-40f, 88.5f, 89.0f, -87.0f, -87.5f, -100.0f,
                            3e9f, -3e9f, 2147483520.0f, -2147483648.0f, 2.7f, -2.7f, 1e30f, 0.5f, -0.5f};
  int64_t n = static_cast<int64_t>(values.size());
  Graph g("special");
  Builder b(g);
  ValueId x = b.input("x", {DType::F32, {Dim::constant(n)}});
  for (OpKind op : {OpKind::Neg, OpKind::Exp, OpKind::Tanh, OpKind::Relu, OpKind::Sigmoid, OpKind::Erf, OpKind::Sqrt,
                    OpKind::Log})
    b.output(opName(op), b.create(op, {x}));
  b.output("tanh_grad", b.create(OpKind::TanhGrad, {x, x}));
  b.output("relu_grad", b.create(OpKind::ReluGrad, {x, x}));
  b.output("to_i32", b.create(OpKind::Cast, {x}, {{"dtype", std::string("i32")}}));
  b.output("to_bool", b.create(OpKind::Cast, {x}, {{"dtype", std::string("bool")}}));
  ValueId zero = b.constant(0.0);
  for (OpKind op : {OpKind::Equal, OpKind::NotEqual, OpKind::Less, OpKind::LessEqual, OpKind::Greater,
                    OpKind::GreaterEqual})
    b.output(opName(op), b.create(op, {x, zero}));
  b.output("x_equal_x", b.create(OpKind::Equal, {x, x}));
  b.output("select", b.create(OpKind::Select, {b.create(OpKind::Less, {x, zero}), x, zero}));
  checkGraph(g, {{"x", runtime::Tensor::fromF32({n}, values)}}, {}, "special values");
}

TEST_CASE("cross_entropy's rows of label -1 do not count, on every backend") {
  // A batch padded to a compiled size: rows 1 and 3 are padding. Also a
  // batch of padding only (loss and gradient 0).
  for (std::vector<int32_t> labels : {std::vector<int32_t>{2, -1, 0, -1}, std::vector<int32_t>{-1, -1, -1, -1}}) {
    Graph g("padded_rows");
    Builder b(g);
    ValueId logits = b.input("logits", {DType::F32, {Dim::constant(4), Dim::constant(3)}});
    ValueId y = b.input("labels", {DType::I32, {Dim::constant(4)}});
    b.output("loss", b.crossEntropy(logits, y));
    b.output("grad", b.create(OpKind::CrossEntropyGrad, {logits, y, b.constant(1.0)}));
    runtime::TensorMap inputs{{"logits", runtime::Tensor::fromF32({4, 3}, {1, 2, 3, 7, -1, 0.5f, 0, 0, 0, 9, 9, -9})},
                              {"labels", runtime::Tensor::fromI32({4}, labels)}};
    checkGraph(g, inputs, {}, "cross_entropy with padded rows");
  }
}

TEST_CASE("lowering variants match the reference") {
  std::mt19937 rng(6);
  auto f = [](std::vector<int64_t> d) {
    Shape s;
    for (int64_t v : d) s.push_back(Dim::constant(v));
    return TensorType{DType::F32, s};
  };
  auto axis = [](int64_t a) { return Attrs{{"axis", a}}; };
  struct Case {
    OpKind op;
    std::vector<TensorType> operands;
    Attrs attrs;
  };
  std::vector<Case> cases = {
      {OpKind::MatMul, {f({2, 5, 7}), f({7, 3})}, {}},
      {OpKind::MatMul, {f({2, 5, 7}), f({3, 7})}, {{"transpose_b", true}}},
      {OpKind::MatMul, {f({2, 7, 5}), f({2, 7, 3})}, {{"transpose_a", true}}},
      {OpKind::MatMul, {f({2, 5, 7}), f({2, 3, 7})}, {{"transpose_b", true}}},
      {OpKind::MatMul, {f({2, 7, 5}), f({1, 3, 7})}, {{"transpose_a", true}, {"transpose_b", true}}},
      {OpKind::MatMul, {f({1, 5, 7}), f({4, 7, 3})}, {}},
      {OpKind::MatMul, {f({1, 1}), f({1, 1})}, {}},
      {OpKind::Add, {f({4}), f({2, 3, 4})}, {}},
      {OpKind::Sub, {f({2, 1, 4}), f({2, 3, 4})}, {}},
      {OpKind::Div, {f({2, 3, 4}), f({3, 1})}, {}},
      {OpKind::Mul, {f({2, 3, 1}), f({2, 3, 4})}, {}},
      {OpKind::Softmax, {f({2, 3, 17})}, axis(-1)},
      {OpKind::Softmax, {f({2, 5, 7}), {DType::Bool, {Dim::constant(2), Dim::constant(1), Dim::constant(7)}}}, axis(2)},
      {OpKind::LogSoftmax, {f({2, 5, 7}), {DType::Bool, {Dim::constant(2), Dim::constant(1), Dim::constant(7)}}}, axis(-1)},
      {OpKind::Softmax, {f({2, 5, 3}), {DType::Bool, {Dim::constant(2), Dim::constant(5), Dim::constant(1)}}}, axis(1)},
      {OpKind::Softmax, {f({2, 3, 17})}, axis(1)},
      {OpKind::LogSoftmax, {f({2, 3, 17})}, axis(0)},
      {OpKind::SoftmaxGrad, {f({2, 3, 17}), f({2, 3, 17})}, axis(2)},
      {OpKind::LogSoftmaxGrad, {f({2, 3, 17}), f({2, 3, 17})}, axis(1)},
      {OpKind::Sum, {f({2, 3, 17})}, axis(2)},
      {OpKind::Mean, {f({2, 3, 17})}, axis(0)},
      {OpKind::Max, {f({2, 3, 17})}, {{"axis", int64_t(1)}, {"keepdim", true}}},
      {OpKind::SumTo, {f({2, 3, 17})}, {{"shape", Shape{Dim::constant(17)}}}},
      {OpKind::SumTo, {f({2, 3, 17})}, {{"shape", Shape{Dim::constant(2), Dim::constant(1), Dim::constant(1)}}}},
      {OpKind::Transpose, {f({2, 3, 17})}, {{"perm", Shape{Dim::constant(1), Dim::constant(2), Dim::constant(0)}}}},
      {OpKind::TanhGrad, {f({5, 17}), f({5, 17})}, {}},
      {OpKind::ReluGrad, {f({5, 17}), f({5, 17})}, {}},
      {OpKind::SigmoidGrad, {f({5, 17}), f({5, 17})}, {}},
      // max and max_grad under a mask of every position (a random one
      // leaves some slices with nothing kept), over the middle axis.
      {OpKind::Max, {f({2, 9, 5}), {DType::Bool, {Dim::constant(2), Dim::constant(9), Dim::constant(1)}}}, axis(1)},
      {OpKind::Max, {f({3, 2, 1}), {DType::Bool, {Dim::constant(3), Dim::constant(2), Dim::constant(1)}}}, axis(1)},
      {OpKind::MaxGrad, {f({2, 9, 5}), f({2, 5}), {DType::Bool, {Dim::constant(2), Dim::constant(9), Dim::constant(1)}}}, axis(1)},
      {OpKind::MaxGrad, {f({3, 2, 1}), f({3, 1}), {DType::Bool, {Dim::constant(3), Dim::constant(2), Dim::constant(1)}}}, axis(1)},
      {OpKind::MaxGrad, {f({2, 9, 5}), f({2, 9})}, axis(2)},
      // gru and gru_grad: both directions, masked (a random mask drops
      // steps anywhere) or not, one step, one sequence, wider states.
      {OpKind::Gru, {f({3, 7, 15}), f({15, 5}), f({15})}, {}},
      {OpKind::Gru, {f({3, 7, 15}), f({15, 5}), f({15}), {DType::Bool, {Dim::constant(3), Dim::constant(7)}}}, {{"reverse", true}}},
      {OpKind::Gru, {f({1, 1, 6}), f({6, 2}), f({6})}, {{"reverse", true}}},
      {OpKind::Gru, {f({5, 9, 48}), f({48, 16}), f({48}), {DType::Bool, {Dim::constant(5), Dim::constant(9)}}}, {}},
      {OpKind::GruGrad, {f({15, 5}), f({3, 7, 5}), f({3, 7, 20}), f({3, 7, 5})}, {}},
      {OpKind::GruGrad, {f({15, 5}), f({3, 7, 5}), f({3, 7, 20}), f({3, 7, 5}), {DType::Bool, {Dim::constant(3), Dim::constant(7)}}}, {}},
      {OpKind::GruGrad, {f({6, 2}), f({1, 1, 2}), f({1, 1, 8}), f({1, 1, 2})}, {{"reverse", true}}},
      // conv1d: rank 2 (one sequence) and rank 4 (batch dims fold), wide
      // kernels with padding, no bias, one window, an input narrower than
      // the kernel made up by padding, many channels.
      {OpKind::Conv1d, {f({9, 5}), f({7, 5, 3})}, {}},
      {OpKind::Conv1d, {f({2, 3, 11, 5}), f({6, 5, 5}), f({6})}, {{"padding", int64_t(2)}}},
      {OpKind::Conv1d, {f({3, 4, 2}), f({3, 2, 4})}, {}},
      {OpKind::Conv1d, {f({2, 2, 3}), f({4, 3, 5}), f({4})}, {{"padding", int64_t(2)}}},
      {OpKind::Conv1d, {f({2, 37, 64}), f({33, 64, 4}), f({33})}, {{"padding", int64_t(1)}}},
      {OpKind::Conv1dInputGrad, {f({2, 3, 7, 6}), f({6, 5, 5})}, {{"padding", int64_t(2)}}},
      {OpKind::Conv1dInputGrad, {f({2, 1, 3}), f({3, 2, 4})}, {}},
      {OpKind::Conv1dInputGrad, {f({2, 37, 33}), f({33, 64, 4})}, {{"padding", int64_t(1)}}},
      {OpKind::Conv1dWeightGrad, {f({2, 3, 11, 5}), f({2, 3, 11, 6})}, {{"padding", int64_t(2)}}},
      {OpKind::Conv1dWeightGrad, {f({3, 4, 2}), f({3, 1, 3})}, {}},
      {OpKind::Conv1dWeightGrad, {f({2, 37, 64}), f({2, 36, 33})}, {{"padding", int64_t(1)}}},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string what = std::string(opName(cases[i].op)) + " variant " + std::to_string(i);
    checkOp(cases[i].op, cases[i].operands, cases[i].attrs, {}, rng, what);
  }
}

TEST_CASE("fused ops match their decomposition on every backend, on odd shapes and masks") {
  std::mt19937 rng(11);
  auto f = [](std::vector<int64_t> d) {
    Shape s;
    for (int64_t v : d) s.push_back(Dim::constant(v));
    return TensorType{DType::F32, s};
  };
  auto mask = [](std::vector<int64_t> d) {
    Shape s;
    for (int64_t v : d) s.push_back(Dim::constant(v));
    return TensorType{DType::Bool, s};
  };
  for (const char *act : {"none", "relu", "tanh", "sigmoid"}) {
    checkOp(OpKind::MatMulBias, {f({2, 5, 13}), f({7, 13}), f({7})}, {{"transpose_b", true}, {"activation", std::string(act)}},
            {}, rng, std::string("matmul_bias ") + act);
    checkOp(OpKind::MatMulBias, {f({1, 1}), f({1, 3}), f({3})}, {{"activation", std::string(act)}}, {}, rng,
            std::string("matmul_bias 1x1 ") + act);
  }
  checkOp(OpKind::MatMulBias, {f({2, 13, 5}), f({2, 13, 7}), f({7})}, {{"transpose_a", true}}, {}, rng,
          "matmul_bias transpose_a");
  checkOp(OpKind::WeightGrad, {f({2, 3, 5, 13}), f({2, 3, 5, 7})}, {}, {}, rng, "weight_grad rank 4");
  checkOp(OpKind::WeightGrad, {f({1, 1, 1}), f({1, 1, 3})}, {}, {}, rng, "weight_grad 1x1");

  // attention and attention_grad together, the gradient fed the forward's
  // own lse: batch 1, one token, feature dims that are not multiples of 16,
  // more query rows than a kernel block (32), and masks of every broadcast
  // form (per key, per query and key, one for all slices, none). A random
  // mask leaves some rows with no key at all.
  struct Case {
    std::vector<int64_t> q, k, v;
    std::optional<std::vector<int64_t>> mask;
    double scale;
  };
  std::vector<Case> cases = {
      {{1, 1, 13}, {1, 1, 13}, {1, 1, 5}, std::vector<int64_t>{1, 1, 1}, 0.3},
      {{3, 7, 13}, {3, 9, 13}, {3, 9, 5}, std::vector<int64_t>{3, 1, 9}, 0.25},
      {{2, 70, 17}, {2, 70, 17}, {2, 70, 17}, std::vector<int64_t>{2, 70, 70}, 1.0 / std::sqrt(17.0)},
      {{2, 3, 40, 8}, {2, 3, 33, 8}, {2, 3, 33, 6}, std::vector<int64_t>{2, 1, 1, 33}, 0.5},
      {{2, 5, 3}, {2, 4, 3}, {2, 4, 2}, std::vector<int64_t>{4}, 1.0},
      {{2, 5, 3}, {2, 4, 3}, {2, 4, 2}, std::nullopt, 2.0},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case &c = cases[i];
    Graph g("attention");
    Builder b(g);
    runtime::TensorMap inputs;
    auto input = [&](const std::string &name, const TensorType &t) {
      inputs[name] = randomTensor(*concreteShape(t.shape, {}), t.dtype, rng, 2);
      return b.input(name, t);
    };
    std::vector<ValueId> operands{input("q", f(c.q)), input("k", f(c.k)), input("v", f(c.v))};
    if (c.mask) operands.push_back(input("mask", mask(*c.mask)));
    Attrs attrs{{"scale", c.scale}};
    std::vector<ValueId> fwd = b.createMulti(OpKind::Attention, operands, attrs);
    std::vector<int64_t> outShape = c.q;
    outShape.back() = c.v.back();
    ValueId dout = input("dout", f(outShape));
    std::vector<ValueId> gradOperands{operands[0], operands[1], operands[2], fwd[0], fwd[1], dout};
    if (c.mask) gradOperands.push_back(operands[3]);
    std::vector<ValueId> grads = b.createMulti(OpKind::AttentionGrad, gradOperands, attrs);
    outputAll(b, {"out", "lse", "dq", "dk", "dv"}, {fwd, grads});
    checkGraph(g, inputs, {}, "attention case " + std::to_string(i));
  }

  // gru and gru_grad (lstm and lstm_grad) together, the gradient fed the forward's own states
  // and gates (random gates outside (0, 1) and (-1, 1) make the backward
  // recurrence grow without bound, and its rounding with it): long
  // sequences, wide states, both directions, with and without a mask.
  struct GruCase {
    int64_t batch, steps, hidden;
    bool reverse, masked;
  };
  for (OpKind cell : {OpKind::Gru, OpKind::Lstm})
  for (const GruCase &c : {GruCase{5, 9, 16, true, true}, GruCase{4, 33, 24, false, true}, GruCase{2, 17, 32, true, false},
                           GruCase{64, 12, 8, false, true}}) {
    Graph g("gru");
    Builder b(g);
    runtime::TensorMap inputs;
    auto input = [&](const std::string &name, const TensorType &t) {
      inputs[name] = randomTensor(*concreteShape(t.shape, {}), t.dtype, rng, 2);
      return b.input(name, t);
    };
    int64_t gates = (cell == OpKind::Gru ? 3 : 4) * c.hidden;
    std::vector<ValueId> operands{input("xp", f({c.batch, c.steps, gates})), input("w", f({gates, c.hidden})),
                                  input("b", f({gates}))};
    if (c.masked) operands.push_back(input("mask", mask({c.batch, c.steps})));
    for (float &v : inputs["w"].f32()) v *= 0.3f; // a recurrent weight that keeps the states in range
    Attrs attrs{{"reverse", c.reverse}};
    std::vector<ValueId> fwd = b.createMulti(cell, operands, attrs);
    std::vector<ValueId> gradOperands{operands[1], fwd[0], fwd[1], input("dh", f({c.batch, c.steps, c.hidden}))};
    if (c.masked) gradOperands.push_back(operands[3]);
    std::vector<ValueId> grads = b.createMulti(cell == OpKind::Gru ? OpKind::GruGrad : OpKind::LstmGrad, gradOperands, attrs);
    outputAll(b, {"h", "gates", "dxp", "dw", "db"}, {fwd, grads});
    checkGraph(g, inputs, {}, fmt::format("{} {}x{}x{}{}{}", opName(cell), c.batch, c.steps, c.hidden, c.reverse ? " reverse" : "",
                                          c.masked ? " masked" : ""));
  }

  // elementwise: every op of the kernel, sizes that are one element, not a
  // multiple of 16, and many blocks with a partial last one; f32[] scalars.
  struct ElementwiseCase {
    std::vector<int64_t> shape;
    std::vector<bool> scalar;
    const char *body;
  };
  std::vector<ElementwiseCase> elementwise = {
      {{3, 7, 37}, {false, false, false, false}, "add(sub(mul($0, $1), div($2, $3)), neg($0))"},
      {{3, 7, 37}, {false, false, false, false}, "tanh_grad(tanh($0), sigmoid_grad(sigmoid($1), relu_grad($2, exp($3))))"},
      {{5000}, {false, false}, "add(sqrt(add(mul($0, $0), relu($1))), log(add(mul($0, $0), exp($1))))"},
      {{5000}, {false, true, true}, "mul(add($0, $1), sigmoid(mul($0, $2)))"},
      {{1, 1, 13}, {false, false}, "tanh(add($0, $1))"},
      {{2, 256}, {true, false}, "sub(exp($0), tanh($1))"},
  };
  for (size_t i = 0; i < elementwise.size(); ++i) {
    const ElementwiseCase &c = elementwise[i];
    std::vector<TensorType> operands;
    for (bool scalar : c.scalar) operands.push_back(scalar ? f({}) : f(c.shape));
    checkOp(OpKind::Elementwise, operands, {{"body", std::string(c.body)}}, {}, rng,
            fmt::format("elementwise case {}: {}", i, c.body));
  }

  // additive_attention and its gradient, fed the forward's own weights:
  // one slice of one token, e and ev not multiples of 16 (and above 16, so
  // that both the vector loop and its tail run), rank 4, with and without a
  // mask (a random mask leaves some slices with nothing kept), both poolings.
  struct AdditiveCase {
    std::vector<int64_t> h;
    int64_t ev;
    bool masked;
  };
  std::vector<AdditiveCase> additive = {
      {{1, 1, 13}, 5, true}, {{3, 7, 37}, 19, true}, {{2, 3, 9, 17}, 17, true}, {{4, 5, 16}, 3, false}, {{2, 40, 33}, 33, true},
  };
  for (size_t i = 0; i < additive.size(); ++i)
    for (const char *pooling : {"mean", "sum"}) {
      const AdditiveCase &c = additive[i];
      Graph g("additive");
      Builder b(g);
      runtime::TensorMap inputs;
      auto input = [&](const std::string &name, const TensorType &t) {
        inputs[name] = randomTensor(*concreteShape(t.shape, {}), t.dtype, rng, 2);
        return b.input(name, t);
      };
      std::vector<int64_t> positions(c.h.begin(), c.h.end() - 1), vShape = positions, pooled(c.h.begin(), c.h.end() - 2);
      vShape.push_back(c.ev);
      pooled.push_back(c.ev);
      positions.push_back(1);
      std::vector<ValueId> operands{input("h", f(c.h)), input("k", f(c.h)), input("v", f(vShape)),
                                    input("w", f({1, c.h.back()})), input("b", f({1}))};
      if (c.masked) operands.push_back(input("mask", mask(positions)));
      Attrs attrs{{"pooling", std::string(pooling)}};
      std::vector<ValueId> fwd = b.createMulti(OpKind::AdditiveAttention, operands, attrs);
      ValueId dout = input("dout", f(pooled));
      std::vector<ValueId> gradOperands{operands[0], operands[1], operands[2], operands[3], fwd[1], dout};
      if (c.masked) gradOperands.push_back(operands[5]);
      std::vector<ValueId> grads = b.createMulti(OpKind::AdditiveAttentionGrad, gradOperands, attrs);
      outputAll(b, {"out", "p", "da", "dv", "dw", "db"}, {fwd, grads});
      checkGraph(g, inputs, {}, fmt::format("additive attention case {} {}", i, pooling));
    }
}

TEST_CASE("values that fusion would absorb are still computed when they are outputs") {
  auto f = [](std::vector<int64_t> d) {
    Shape s;
    for (int64_t v : d) s.push_back(Dim::constant(v));
    return TensorType{DType::F32, s};
  };
  Graph g("fusion");
  Builder b(g);
  ValueId x = b.input("x", f({2, 5, 7})), w = b.input("w", f({3, 7})), bias = b.input("bias", f({3}));
  ValueId dy = b.input("dy", f({2, 5, 3}));
  ValueId y = b.matmul(x, w, false, true);
  b.output("y", y);                  // read by the bias add and an output
  b.output("z", b.add(y, bias));
  ValueId gw = b.matmul(x, dy, true, false); // weight-gradient shape: then sum_to
  b.output("gw_batched", gw);
  b.output("gw", b.sumTo(gw, {Dim::constant(7), Dim::constant(3)}));
  std::mt19937 rng(3);
  runtime::TensorMap inputs{{"x", randomTensor({2, 5, 7}, DType::F32, rng, 1)},
                            {"w", randomTensor({3, 7}, DType::F32, rng, 1)},
                            {"bias", randomTensor({3}, DType::F32, rng, 1)},
                            {"dy", randomTensor({2, 5, 3}, DType::F32, rng, 1)}};
  checkGraph(g, inputs, {}, "fusion with visible intermediates");
}

TEST_CASE("model graphs (forward and training step) match the reference at odd sizes") {
  struct Size {
    int64_t batch, seq;
    const char *embed;
  };
  for (const char *model : {"classifier_additive", "classifier_attnpool", "classifier_sdpa"}) {
    for (Size sz : {Size{1, 1, "13"}, Size{3, 7, "13"}, Size{4, 9, "16"}}) {
      std::string what = fmt::format("{} B={} T={} E={}", model, sz.batch, sz.seq, sz.embed);
      CAPTURE(what);
      frontend::LowerOptions opts;
      opts.overrides = {{"vocab", "23"}, {"embed", sz.embed}, {"hidden", "11"}, {"classes", "3"}};
      auto lowered = frontend::compileFile(std::string(KILN_SOURCE_DIR) + "/examples/" + model + ".kiln", opts);
      const Graph &forward = *lowered.module.find("forward");
      Graph train = passes::buildTrainGraph(forward, {});
      std::mt19937 rng(9);
      runtime::Tensor tokens = randomTensor({sz.batch, sz.seq}, DType::I32, rng, 23);
      for (int64_t b = 0; b < sz.batch; ++b) { // padding: row b keeps its first seq - b tokens, at least one
        for (int64_t t = 0; t < sz.seq; ++t) {
          int32_t &id = tokens.i32()[b * sz.seq + t];
          id = t < std::max<int64_t>(1, sz.seq - b) ? std::max(id, 1) : 0;
        }
      }
      runtime::Tensor labels = randomTensor({sz.batch}, DType::I32, rng, 3);
      auto params = runtime::materializeParams(train, {}, 4);
      runtime::TensorMap trainInputs{{"tokens", tokens},
                                     {"labels", labels},
                                     {"lr", runtime::Tensor::fromF32({}, {0.01f})},
                                     {"step", runtime::Tensor::fromF32({}, {3.0f})}};
      checkGraph(forward, {{"tokens", tokens}}, params, what + " forward");
      checkGraph(train, trainInputs, params, what + " train");
      // The default pipelines (every fusion), judged by the unfused graphs.
      Graph fusedForward = forward, fusedTrain = train;
      passes::runPipeline(fusedForward, {});
      passes::runPipeline(fusedTrain, {});
      checkGraph(fusedForward, {{"tokens", tokens}}, params, what + " fused forward", &forward);
      checkGraph(fusedTrain, trainInputs, params, what + " fused train", &train);
    }
  }
}

TEST_CASE("an executable run at more shapes than it keeps plans for stays correct") {
  // The oneDNN backend keeps 16 plans (least recently used dropped) in one
  // arena grown to the largest: 24 sequence lengths, then the first ones
  // again (rebuilt), must all match the reference.
  frontend::LowerOptions opts;
  opts.overrides = {{"vocab", "23"}, {"embed", "13"}, {"hidden", "11"}, {"classes", "3"}};
  auto lowered = frontend::compileFile(std::string(KILN_SOURCE_DIR) + "/examples/classifier_sdpa.kiln", opts);
  Graph train = passes::buildTrainGraph(*lowered.module.find("forward"), {});
  passes::runPipeline(train, {});
  auto params = runtime::materializeParams(train, {}, 4);
  std::mt19937 rng(5);
  for (const std::string &name : backends::backendNames()) {
    if (name == "auto" || name == "reference") continue;
    CAPTURE(name);
    runtime::CompileOptions fresh;
    fresh.cache = false;
    auto exe = backends::compile(train, name, fresh);
    for (int64_t seq : {1, 9, 2, 17, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 21, 22, 23, 24, 1, 9, 2}) {
      CAPTURE(seq);
      runtime::TensorMap inputs{{"tokens", randomTensor({2, seq}, DType::I32, rng, 23)},
                                {"labels", randomTensor({2}, DType::I32, rng, 3)},
                                {"lr", runtime::Tensor::fromF32({}, {0.01f})},
                                {"step", runtime::Tensor::fromF32({}, {1.0f})}};
      auto want = reference::run(train, inputs, params).outputs;
      auto got = exe->run(inputs, params);
      for (const auto &[out, t] : want)
        if (out == "loss" || out == "logits") compareTensors(got.at(out), t, "output " + out);
    }
  }
}

TEST_CASE("a run observer hears of each output when it is final, with its final value") {
  // runtime::DataParallelStep starts summing each gradient as soon as the
  // backend says it is final: a report before the last write to it would
  // sum a stale gradient. Every report, copied when made, must equal what
  // the run returns, in a plain run and in a runInto that computes outputs
  // straight into the caller's tensors.
  frontend::LowerOptions opts;
  opts.overrides = {{"vocab", "23"}, {"embed", "13"}, {"hidden", "11"}, {"classes", "3"}};
  auto lowered = frontend::compileFile(std::string(KILN_SOURCE_DIR) + "/examples/classifier_sdpa.kiln", opts);
  passes::SplitStep split = passes::buildSplitStep(*lowered.module.find("forward"), {});
  Graph g = split.gradients;
  passes::runPipeline(g, {});
  auto params = runtime::materializeParams(g, {}, 4);
  std::mt19937 rng(12);
  runtime::TensorMap inputs{{"tokens", randomTensor({3, 7}, DType::I32, rng, 23)},
                            {"labels", randomTensor({3}, DType::I32, rng, 3)},
                            {"loss_scale", runtime::Tensor::fromF32({}, {0.5f})}};
  struct Recorder : runtime::Executable::RunObserver {
    std::map<std::string, std::vector<float>> heard;
    int64_t steps = 0;
    void outputFinal(const std::string &name, const runtime::Tensor &value) override {
      CHECK_MESSAGE(!heard.count(name), "output " << name << " reported twice");
      auto v = value.f32();
      heard[name].assign(v.begin(), v.end());
    }
    void stepDone() override { ++steps; }
  };
  for (const std::string &name : backends::backendNames()) {
    if (name == "auto") continue;
    CAPTURE(name);
    runtime::CompileOptions fresh;
    fresh.cache = false;
    auto exe = backends::compile(g, name, fresh);
    Recorder recorder;
    bool reports = exe->observeRuns(&recorder);
    // The step-by-step plans report; the llvm backend's one compiled
    // function and the reference interpreter cannot.
    CHECK(reports == (name == "onednn"));
    runtime::TensorMap outputs;
    for (int run = 0; run < 2; ++run) { // the second run computes into the first's tensors
      CAPTURE(run);
      recorder.heard.clear();
      exe->runInto(inputs, params, outputs);
      if (!reports) {
        CHECK(recorder.heard.empty());
        continue;
      }
      CHECK(recorder.steps > 0);
      size_t gradients = 0;
      for (const auto &[out, t] : outputs) gradients += out.starts_with("grad.");
      size_t gradientsHeard = 0;
      for (const auto &[out, values] : recorder.heard) {
        CAPTURE(out);
        auto want = outputs.at(out).f32();
        REQUIRE(values.size() == want.size());
        CHECK(std::equal(values.begin(), values.end(), want.begin()));
        gradientsHeard += out.starts_with("grad.");
      }
      CHECK(gradientsHeard * 2 >= gradients); // most are computed, not views
    }
    exe->observeRuns(nullptr);
  }
}
