//===- tests/unit/interpreter_test.cpp - the reference interpreter --------===//
//
// Hand-checked numeric cases for every op in ir/ops.def: each expected value
// is a literal whose arithmetic is written beside it, so that these tests pin
// down what the ops mean independently of the interpreter's code. Also covers
// broadcasting, masks, symbolic dims, threading, value lifetimes and the
// errors a user can trigger. Graphs are made with ir::Builder.
//
// Tolerance: f32 results are compared with an absolute tolerance of 1e-6
// (all expected values here are below 1e6 in magnitude and most are exact in
// binary); infinities must match exactly; i32 and bool results are exact.
//
//===----------------------------------------------------------------------===//
#include "backends/reference/interpreter.h"
#include "ir/builder.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

using namespace kiln;
using ir::DType;
using ir::Dim;
using ir::OpKind;
using ir::ValueId;
using runtime::Tensor;

namespace {

constexpr double kTol = 1e-6;
constexpr float kInf = std::numeric_limits<float>::infinity();

ir::TensorType typeOf(const Tensor &t) {
  ir::Shape s;
  for (int64_t e : t.shape()) s.push_back(Dim::constant(e));
  return {t.dtype(), s};
}

/// A graph under construction and the tensors to feed it.
struct Case {
  ir::Graph g;
  ir::Builder b{g};
  std::map<std::string, Tensor> inputs, params;
  reference::RunOptions options;

  ValueId input(const std::string &name, Tensor t) {
    ValueId v = b.input(name, typeOf(t));
    inputs[name] = std::move(t);
    return v;
  }
  ValueId param(const std::string &name, Tensor t) {
    ValueId v = b.param(name, typeOf(t));
    params[name] = std::move(t);
    return v;
  }
  reference::RunResult runAll() { return reference::run(g, inputs, params, options); }
  /// Runs the graph with v as its one output and returns that output.
  Tensor run(ValueId v) {
    b.output("y", v);
    return runAll().outputs.at("y");
  }
};

Tensor f32(std::vector<int64_t> shape, const std::vector<float> &v) {
  return Tensor::fromF32(std::move(shape), v);
}
Tensor i32(std::vector<int64_t> shape, const std::vector<int32_t> &v) {
  return Tensor::fromI32(std::move(shape), v);
}
Tensor b8(std::vector<int64_t> shape, const std::vector<uint8_t> &v) {
  return Tensor::fromBool(std::move(shape), v);
}

void checkF32(const Tensor &t, const std::vector<int64_t> &shape, const std::vector<float> &want) {
  REQUIRE(t.dtype() == DType::F32);
  REQUIRE(t.shape() == shape);
  auto got = t.f32();
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("element " << i << ": got " << got[i] << ", want " << want[i]);
    if (std::isinf(want[i])) CHECK(got[i] == want[i]);
    else CHECK(std::fabs(got[i] - want[i]) <= kTol);
  }
}

void checkI32(const Tensor &t, const std::vector<int64_t> &shape, const std::vector<int32_t> &want) {
  REQUIRE(t.dtype() == DType::I32);
  REQUIRE(t.shape() == shape);
  auto got = t.i32();
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("element " << i);
    CHECK(got[i] == want[i]);
  }
}

void checkBool(const Tensor &t, const std::vector<int64_t> &shape, const std::vector<uint8_t> &want) {
  REQUIRE(t.dtype() == DType::Bool);
  REQUIRE(t.shape() == shape);
  auto got = t.b8();
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("element " << i);
    CHECK(int(got[i]) == int(want[i]));
  }
}

} // namespace

TEST_SUITE("reference interpreter") {

TEST_CASE("every op has a reference kernel") {
  for (const ir::OpInfo &op : ir::allOps()) {
    INFO(op.name);
    CHECK(reference::hasKernel(op.kind));
  }
}

TEST_CASE("constant makes a scalar of its dtype") {
  Case c;
  c.b.output("f", c.b.constant(2.5));
  c.b.output("i", c.b.constant(-3.7, DType::I32)); // truncated toward zero
  c.b.output("t", c.b.constant(2.0, DType::Bool)); // nonzero -> 1
  c.b.output("z", c.b.constant(0.0, DType::Bool));
  auto r = c.runAll();
  checkF32(r.outputs.at("f"), {}, {2.5f});
  checkI32(r.outputs.at("i"), {}, {-3});
  checkBool(r.outputs.at("t"), {}, {1});
  checkBool(r.outputs.at("z"), {}, {0});
}

TEST_CASE("embedding picks rows") {
  Case c;
  ValueId table = c.param("embedding.weight", f32({3, 2}, {0, 1, 10, 11, 20, 21}));
  ValueId ids = c.input("ids", i32({2, 2}, {2, 0, 1, 1}));
  // rows 2, 0, 1, 1 of the table.
  checkF32(c.run(c.b.embedding(table, ids)), {2, 2, 2}, {20, 21, 0, 1, 10, 11, 10, 11});
}

TEST_CASE("embedding rejects an id outside the table") {
  for (int32_t bad : {3, -1}) {
    Case c;
    ValueId table = c.param("embedding.weight", f32({3, 2}, {0, 1, 10, 11, 20, 21}));
    ValueId ids = c.input("ids", i32({2}, {0, bad}));
    c.b.output("y", c.b.embedding(table, ids));
    std::string want = "id " + std::to_string(bad) + " at position 1";
    CHECK_THROWS_WITH_AS(c.runAll(), doctest::Contains(want.c_str()), kiln::Error);
  }
}

TEST_CASE("matmul") {
  // A = [[1,2,3],[4,5,6]], B = [[7,8],[9,10],[11,12]]:
  // A B = [[1*7+2*9+3*11, 1*8+2*10+3*12], [4*7+5*9+6*11, 4*8+5*10+6*12]] = [[58,64],[139,154]]
  const std::vector<float> ab = {58, 64, 139, 154};
  Tensor a = f32({2, 3}, {1, 2, 3, 4, 5, 6}), at = f32({3, 2}, {1, 4, 2, 5, 3, 6});
  Tensor b = f32({3, 2}, {7, 8, 9, 10, 11, 12}), bt = f32({2, 3}, {7, 9, 11, 8, 10, 12});

  SUBCASE("plain") {
    Case c;
    checkF32(c.run(c.b.matmul(c.input("a", a), c.input("b", b))), {2, 2}, ab);
  }
  SUBCASE("transpose_a: a is stored as A^T") {
    Case c;
    checkF32(c.run(c.b.matmul(c.input("a", at), c.input("b", b), true, false)), {2, 2}, ab);
  }
  SUBCASE("transpose_b: b is stored as B^T") {
    Case c;
    checkF32(c.run(c.b.matmul(c.input("a", a), c.input("b", bt), false, true)), {2, 2}, ab);
  }
  SUBCASE("both transposed") {
    Case c;
    checkF32(c.run(c.b.matmul(c.input("a", at), c.input("b", bt), true, true)), {2, 2}, ab);
  }
  SUBCASE("batched lhs, rank-2 rhs shared by every batch") {
    Case c;
    // batch 0: I * B = B; batch 1: [[1,2],[3,4]] [[5,6],[7,8]] = [[5+14, 6+16], [15+28, 18+32]]
    ValueId x = c.input("a", f32({2, 2, 2}, {1, 0, 0, 1, 1, 2, 3, 4}));
    ValueId w = c.input("b", f32({2, 2}, {5, 6, 7, 8}));
    checkF32(c.run(c.b.matmul(x, w)), {2, 2, 2}, {5, 6, 7, 8, 19, 22, 43, 50});
  }
  SUBCASE("batched, both transposed, rank-2 rhs") {
    Case c;
    // batch 0 stores A^T, batch 1 stores 2 A^T: results A B and 2 A B.
    ValueId x = c.input("a", f32({2, 3, 2}, {1, 4, 2, 5, 3, 6, 2, 8, 4, 10, 6, 12}));
    ValueId w = c.input("b", bt);
    checkF32(c.run(c.b.matmul(x, w, true, true)), {2, 2, 2}, {58, 64, 139, 154, 116, 128, 278, 308});
  }
  SUBCASE("batch dims broadcast: lhs batch 1 against rhs batch 2") {
    Case c;
    // A = [[1,2],[3,4]] times I, then times the swap [[0,1],[1,0]] (swaps A's columns).
    ValueId x = c.input("a", f32({1, 2, 2}, {1, 2, 3, 4}));
    ValueId w = c.input("b", f32({2, 2, 2}, {1, 0, 0, 1, 0, 1, 1, 0}));
    checkF32(c.run(c.b.matmul(x, w)), {2, 2, 2}, {1, 2, 3, 4, 2, 1, 4, 3});
  }
}

TEST_CASE("matmul split over threads agrees with the closed form") {
  // A = ones[64,128], B[k][n] = k + n: (A B)[m][n] = sum_{k<128} (k + n) = 127*128/2 + 128 n
  // = 8128 + 128 n, exact in float. 64 rows of 128*64 multiply-adds is enough
  // work for several threads.
  std::vector<float> ones(64 * 128, 1.0f), bv(128 * 64);
  for (int k = 0; k < 128; ++k)
    for (int n = 0; n < 64; ++n) bv[k * 64 + n] = float(k + n);
  for (int threads : {1, 4}) {
    Case c;
    c.options.threads = threads;
    Tensor y = c.run(c.b.matmul(c.input("a", f32({64, 128}, ones)), c.input("b", f32({128, 64}, bv))));
    int wrong = 0;
    for (int m = 0; m < 64; ++m)
      for (int n = 0; n < 64; ++n) wrong += y.f32()[m * 64 + n] != float(8128 + 128 * n);
    CHECK(wrong == 0);
  }
}

TEST_CASE("add, sub, mul, div on f32 broadcast") {
  Case c;
  ValueId a = c.input("a", f32({2, 3}, {1, 2, 3, 4, 5, 6}));
  ValueId col = c.input("col", f32({2, 1}, {1, 2}));
  ValueId row = c.input("row", f32({3}, {10, 20, 30}));
  ValueId zero = c.input("zero", f32({2}, {0, 0}));
  ValueId pm = c.input("pm", f32({2}, {1, -1}));
  c.b.output("add", c.b.add(a, row));
  c.b.output("sub", c.b.sub(col, row));
  c.b.output("mul", c.b.mul(a, c.b.constant(0.5)));
  c.b.output("div", c.b.div(row, a));
  c.b.output("divzero", c.b.div(pm, zero));
  auto r = c.runAll();
  // [[1+10, 2+20, 3+30], [4+10, 5+20, 6+30]]
  checkF32(r.outputs.at("add"), {2, 3}, {11, 22, 33, 14, 25, 36});
  // [[1-10, 1-20, 1-30], [2-10, 2-20, 2-30]]
  checkF32(r.outputs.at("sub"), {2, 3}, {-9, -19, -29, -8, -18, -28});
  checkF32(r.outputs.at("mul"), {2, 3}, {0.5, 1, 1.5, 2, 2.5, 3});
  // [[10/1, 20/2, 30/3], [10/4, 20/5, 30/6]]
  checkF32(r.outputs.at("div"), {2, 3}, {10, 10, 10, 2.5, 4, 5});
  // IEEE: 1/0 = inf, -1/0 = -inf.
  checkF32(r.outputs.at("divzero"), {2}, {kInf, -kInf});
}

TEST_CASE("elementwise ops split over threads agree with the closed form") {
  // a[i][j] = i, b[j] = 1000 j: (a + b)[i][j] = i + 1000 j, exact in float.
  // 512*512 elements split over 3 threads start chunks in the middle of rows.
  std::vector<float> av(512 * 512), bv(512);
  for (int i = 0; i < 512; ++i)
    for (int j = 0; j < 512; ++j) av[i * 512 + j] = float(i);
  for (int j = 0; j < 512; ++j) bv[j] = float(1000 * j);
  Case c;
  c.options.threads = 3;
  ValueId a = c.input("a", f32({512, 512}, av));
  c.b.output("sum", c.b.add(a, c.input("b", f32({512}, bv))));
  c.b.output("colsum", c.b.sum(a, 0)); // sum_{i<512} i = 511*512/2 = 130816 in every column
  auto r = c.runAll();
  int wrong = 0;
  for (int i = 0; i < 512; ++i)
    for (int j = 0; j < 512; ++j) wrong += r.outputs.at("sum").f32()[i * 512 + j] != float(i + 1000 * j);
  for (int j = 0; j < 512; ++j) wrong += r.outputs.at("colsum").f32()[j] != 130816.0f;
  CHECK(wrong == 0);
}

TEST_CASE("i32 arithmetic: truncating division, wrapping overflow") {
  Case c;
  ValueId a = c.input("a", i32({4}, {7, -7, 7, -7}));
  ValueId b = c.input("b", i32({4}, {2, 2, -2, -2}));
  ValueId big = c.input("big", i32({4}, {INT32_MAX, INT32_MIN, INT32_MIN, 65536}));
  ValueId col = c.input("col", i32({2, 1}, {1, 2}));
  ValueId row = c.input("row", i32({2}, {10, 100}));
  c.b.output("add", c.b.add(a, b));
  c.b.output("sub", c.b.sub(a, b));
  c.b.output("mul", c.b.mul(a, b));
  c.b.output("div", c.b.div(a, b));
  c.b.output("wrap_add", c.b.add(big, c.input("one", i32({}, {1}))));
  c.b.output("wrap_sub", c.b.sub(big, c.input("one2", i32({}, {1}))));
  c.b.output("wrap_mul", c.b.mul(big, c.input("m", i32({4}, {1, 1, 1, 65536}))));
  c.b.output("wrap_div", c.b.div(big, c.input("d", i32({4}, {1, -1, 1, 1}))));
  c.b.output("bcast", c.b.mul(col, row));
  auto r = c.runAll();
  checkI32(r.outputs.at("add"), {4}, {9, -5, 5, -9});
  checkI32(r.outputs.at("sub"), {4}, {5, -9, 9, -5});
  checkI32(r.outputs.at("mul"), {4}, {14, -14, -14, 14});
  // 7/2 = 3.5 -> 3, -7/2 -> -3, 7/-2 -> -3, -7/-2 = 3.5 -> 3 (toward zero, not floor)
  checkI32(r.outputs.at("div"), {4}, {3, -3, -3, 3});
  // two's complement wrap-around: MAX+1 = MIN, MIN+1, MIN+1, 65536+1
  checkI32(r.outputs.at("wrap_add"), {4}, {INT32_MIN, INT32_MIN + 1, INT32_MIN + 1, 65537});
  checkI32(r.outputs.at("wrap_sub"), {4}, {INT32_MAX - 1, INT32_MAX, INT32_MAX, 65535});
  // 65536 * 65536 = 2^32 = 0 mod 2^32
  checkI32(r.outputs.at("wrap_mul"), {4}, {INT32_MAX, INT32_MIN, INT32_MIN, 0});
  // MIN / -1 = 2^31, which wraps to MIN
  checkI32(r.outputs.at("wrap_div"), {4}, {INT32_MAX, INT32_MIN, INT32_MIN, 65536});
  // [[1*10, 1*100], [2*10, 2*100]]
  checkI32(r.outputs.at("bcast"), {2, 2}, {10, 100, 20, 200});
}

TEST_CASE("i32 division by zero is an error") {
  Case c;
  c.b.output("y", c.b.div(c.input("a", i32({2}, {1, 2})), c.input("b", i32({2}, {1, 0}))));
  CHECK_THROWS_WITH_AS(c.runAll(), doctest::Contains("division by zero"), kiln::Error);
}

TEST_CASE("unary f32 ops") {
  Case c;
  c.b.output("neg", c.b.neg(c.input("n", f32({3}, {1, -2, 0}))));
  c.b.output("exp", c.b.exp(c.input("e", f32({3}, {0, 1, -1}))));
  c.b.output("log", c.b.log(c.input("l", f32({3}, {1, 0.5, 10}))));
  c.b.output("tanh", c.b.tanh(c.input("t", f32({3}, {0, 1, -2}))));
  c.b.output("relu", c.b.relu(c.input("r", f32({3}, {-1, 0, 2.5}))));
  c.b.output("sigmoid", c.b.sigmoid(c.input("s", f32({6}, {0, 2, -2, -100, 100, -1000}))));
  c.b.output("sqrt", c.b.sqrt(c.input("q", f32({3}, {4, 2, 0}))));
  c.b.output("erf", c.b.create(OpKind::Erf, {c.input("f", f32({4}, {0, 0.5, -1, 4}))}));
  auto r = c.runAll();
  checkF32(r.outputs.at("neg"), {3}, {-1, 2, 0});
  // e^0 = 1, e^1 = 2.718281828, e^-1 = 0.367879441
  checkF32(r.outputs.at("exp"), {3}, {1, 2.718281828f, 0.367879441f});
  // ln 1 = 0, ln 0.5 = -0.693147181, ln 10 = 2.302585093
  checkF32(r.outputs.at("log"), {3}, {0, -0.693147181f, 2.302585093f});
  // tanh 1 = (e^2-1)/(e^2+1) = 6.389056/8.389056 = 0.761594156; tanh -2 = -(e^4-1)/(e^4+1) = -0.964027580
  checkF32(r.outputs.at("tanh"), {3}, {0, 0.761594156f, -0.964027580f});
  checkF32(r.outputs.at("relu"), {3}, {0, 0, 2.5});
  // 1/(1+e^-2) = 1/1.135335283 = 0.880797078; 1 - that = 0.119202922;
  // e^-100 ~ 3.7e-44 ~ 0; large magnitudes saturate without NaN.
  checkF32(r.outputs.at("sigmoid"), {6}, {0.5, 0.880797078f, 0.119202922f, 0, 1, 0});
  checkF32(r.outputs.at("sqrt"), {3}, {2, 1.414213562f, 0});
  // erf 0.5 = 0.520499878, erf -1 = -0.842700793 (tables); erf 4 = 1 - 1.5e-8, 1 in f32.
  checkF32(r.outputs.at("erf"), {4}, {0, 0.520499878f, -0.842700793f, 1});
}

TEST_CASE("softmax") {
  SUBCASE("last axis") {
    Case c;
    // row [1,2,3]: e^(x-3) = [0.135335283, 0.367879441, 1], sum 1.503214724,
    // divided: [0.090030573, 0.244728471, 0.665240956]; row [0,0,0]: 1/3 each.
    Tensor y = c.run(c.b.softmax(c.input("x", f32({2, 3}, {1, 2, 3, 0, 0, 0})), -1));
    checkF32(y, {2, 3}, {0.090030573f, 0.244728471f, 0.665240956f, 1 / 3.0f, 1 / 3.0f, 1 / 3.0f});
  }
  SUBCASE("negative non-last axis") {
    Case c;
    // over columns: [0,0] -> [0.5,0.5]; [1,3] -> [1/(1+e^2), e^2/(1+e^2)] = [0.119202922, 0.880797078]
    Tensor y = c.run(c.b.softmax(c.input("x", f32({2, 2}, {0, 1, 0, 3})), -2));
    checkF32(y, {2, 2}, {0.5, 0.119202922f, 0.5, 0.880797078f});
  }
  SUBCASE("mask: partly and fully masked rows") {
    Case c;
    ValueId x = c.input("x", f32({2, 3}, {1, 2, 3, 4, 5, 6}));
    ValueId m = c.input("m", b8({2, 3}, {1, 1, 0, 0, 0, 0}));
    // row 0 over [1,2]: [1/(1+e), e/(1+e)] = [0.268941421, 0.731058579], masked 3 -> 0;
    // row 1 is all masked -> 0.
    checkF32(c.run(c.b.softmax(x, 1, m)), {2, 3}, {0.268941421f, 0.731058579f, 0, 0, 0, 0});
  }
  SUBCASE("mask broadcast over rows; a masked large value does not enter the max") {
    Case c;
    ValueId x = c.input("x", f32({2, 3}, {0, 5, 0, 1, 100, 1}));
    ValueId m = c.input("m", b8({3}, {1, 0, 1}));
    checkF32(c.run(c.b.softmax(x, -1, m)), {2, 3}, {0.5, 0, 0.5, 0.5, 0, 0.5});
  }
  SUBCASE("attention-style mask [B,1,T] over scores [B,T,T]") {
    Case c;
    ValueId x = c.input("x", f32({1, 2, 3}, {0, 0, 9, 1, 3, -2}));
    ValueId m = c.input("m", b8({1, 1, 3}, {1, 1, 0}));
    // row [0,0 | 9 masked] -> [0.5,0.5,0]; row [1,3 | -2 masked] -> [0.119202922, 0.880797078, 0]
    checkF32(c.run(c.b.softmax(x, 2, m)), {1, 2, 3}, {0.5, 0.5, 0, 0.119202922f, 0.880797078f, 0});
  }
}

TEST_CASE("log_softmax") {
  SUBCASE("unmasked, last axis") {
    Case c;
    // x - 3 - ln(1.503214724) = x - 3 - 0.407605964
    Tensor y = c.run(c.b.logSoftmax(c.input("x", f32({1, 3}, {1, 2, 3})), -1));
    checkF32(y, {1, 3}, {-2.407605964f, -1.407605964f, -0.407605964f});
  }
  SUBCASE("axis 0") {
    Case c;
    // two equal entries: ln(1/2) = -0.693147181
    Tensor y = c.run(c.b.logSoftmax(c.input("x", f32({2, 1}, {7, 7})), 0));
    checkF32(y, {2, 1}, {-0.693147181f, -0.693147181f});
  }
  SUBCASE("mask: partly masked row and fully masked row give -inf") {
    Case c;
    ValueId x = c.input("x", f32({2, 3}, {1, 2, 3, 4, 5, 6}));
    ValueId m = c.input("m", b8({2, 3}, {1, 1, 0, 0, 0, 0}));
    // row 0 over [1,2]: lse = 2 + ln(1 + e^-1) = 2 + 0.313261688 = 2.313261688
    checkF32(c.run(c.b.logSoftmax(x, -1, m)), {2, 3},
             {-1.313261688f, -0.313261688f, -kInf, -kInf, -kInf, -kInf});
  }
}

TEST_CASE("sum") {
  Case c;
  ValueId x = c.input("x", f32({2, 3}, {1, 2, 3, 4, 5, 6}));
  ValueId cube = c.input("cube", f32({2, 2, 2}, {0, 1, 2, 3, 4, 5, 6, 7}));
  ValueId m = c.input("m", b8({2, 3}, {1, 0, 1, 0, 0, 0}));
  c.b.output("rows", c.b.sum(x, 1));
  c.b.output("cols_keep", c.b.sum(x, 0, {}, true));
  c.b.output("neg_keep", c.b.sum(x, -1, {}, true));
  c.b.output("masked", c.b.sum(x, 1, m));
  c.b.output("middle", c.b.sum(cube, 1));
  auto r = c.runAll();
  checkF32(r.outputs.at("rows"), {2}, {6, 15});                // 1+2+3, 4+5+6
  checkF32(r.outputs.at("cols_keep"), {1, 3}, {5, 7, 9});      // 1+4, 2+5, 3+6
  checkF32(r.outputs.at("neg_keep"), {2, 1}, {6, 15});
  checkF32(r.outputs.at("masked"), {2}, {4, 0});               // 1+3; all masked -> 0
  checkF32(r.outputs.at("middle"), {2, 2}, {2, 4, 10, 12});    // 0+2, 1+3, 4+6, 5+7
}

TEST_CASE("mean") {
  Case c;
  ValueId x = c.input("x", f32({2, 3}, {1, 2, 3, 4, 5, 6}));
  ValueId m1 = c.input("m1", b8({2, 3}, {1, 1, 0, 1, 0, 0}));
  ValueId m2 = c.input("m2", b8({2, 3}, {1, 0, 1, 0, 0, 0}));
  ValueId rowMask = c.input("rowmask", b8({2, 1}, {1, 0}));
  c.b.output("rows", c.b.mean(x, 1));
  c.b.output("cols", c.b.mean(x, 0));
  c.b.output("keep", c.b.mean(x, -1, {}, true));
  c.b.output("m1", c.b.mean(x, 1, m1));
  c.b.output("m2", c.b.mean(x, 1, m2));
  c.b.output("bcast", c.b.mean(x, 0, rowMask));
  auto r = c.runAll();
  checkF32(r.outputs.at("rows"), {2}, {2, 5});              // 6/3, 15/3
  checkF32(r.outputs.at("cols"), {3}, {2.5, 3.5, 4.5});     // 5/2, 7/2, 9/2
  checkF32(r.outputs.at("keep"), {2, 1}, {2, 5});
  checkF32(r.outputs.at("m1"), {2}, {1.5, 4});              // (1+2)/2, 4/1
  checkF32(r.outputs.at("m2"), {2}, {2, 0});                // (1+3)/2; all masked -> 0
  checkF32(r.outputs.at("bcast"), {3}, {1, 2, 3});          // mask [2,1] keeps only row 0
}

TEST_CASE("max") {
  Case c;
  ValueId x = c.input("x", f32({2, 3}, {1, 2, 3, 4, 5, 6}));
  ValueId neg = c.input("neg", f32({1, 3}, {-5, -2, -3}));
  ValueId m = c.input("m", b8({2, 3}, {1, 1, 0, 0, 0, 0}));
  c.b.output("rows", c.b.max(x, 1));
  c.b.output("cols_keep", c.b.max(x, 0, {}, true));
  c.b.output("neg", c.b.max(neg, -1));
  c.b.output("masked", c.b.max(x, 1, m));
  auto r = c.runAll();
  checkF32(r.outputs.at("rows"), {2}, {3, 6});
  checkF32(r.outputs.at("cols_keep"), {1, 3}, {4, 5, 6});
  checkF32(r.outputs.at("neg"), {1}, {-2}); // not the initial 0 of the accumulator
  checkF32(r.outputs.at("masked"), {2}, {2, 0}); // max(1,2) with 3 masked; all masked -> 0
}

TEST_CASE("reductions over an empty axis give 0") {
  Case c;
  ValueId x = c.input("x", Tensor(DType::F32, {2, 0}));
  c.b.output("sum", c.b.sum(x, 1));
  c.b.output("mean", c.b.mean(x, 1));
  c.b.output("max", c.b.max(x, 1));
  auto r = c.runAll();
  for (const char *name : {"sum", "mean", "max"}) {
    INFO(name);
    checkF32(r.outputs.at(name), {2}, {0, 0});
  }
}

TEST_CASE("reshape copies the elements, symbols bound from inputs") {
  Case c;
  ValueId x = c.b.input("x", {DType::F32, {Dim::named("B"), Dim::constant(3)}});
  c.inputs["x"] = f32({2, 3}, {1, 2, 3, 4, 5, 6});
  ValueId ids = c.input("ids", i32({2, 2}, {1, 2, 3, 4}));
  c.b.output("sym", c.b.reshape(x, {Dim::constant(3), Dim::named("B")}));
  c.b.output("flat", c.b.reshape(ids, {Dim::constant(4)}));
  auto r = c.runAll();
  CHECK(r.bindings.at("B") == 2);
  checkF32(r.outputs.at("sym"), {3, 2}, {1, 2, 3, 4, 5, 6});
  checkI32(r.outputs.at("flat"), {4}, {1, 2, 3, 4});
}

TEST_CASE("transpose") {
  Case c;
  ValueId x = c.input("x", f32({2, 3}, {1, 2, 3, 4, 5, 6}));
  std::vector<float> iota(12);
  for (int i = 0; i < 12; ++i) iota[i] = float(i);
  ValueId cube = c.input("cube", f32({2, 2, 3}, iota));
  ValueId ids = c.input("ids", i32({2, 2}, {1, 2, 3, 4}));
  ValueId flags = c.input("flags", b8({2, 2}, {0, 1, 0, 0}));
  c.b.output("t2", c.b.transpose(x, {1, 0}));
  c.b.output("t3", c.b.transpose(cube, {2, 0, 1}));
  c.b.output("ti", c.b.transpose(ids, {1, 0}));
  c.b.output("tb", c.b.transpose(flags, {1, 0}));
  auto r = c.runAll();
  checkF32(r.outputs.at("t2"), {3, 2}, {1, 4, 2, 5, 3, 6});
  // cube[a][b][c] = 6a + 3b + c; result[i][j][k] = cube[j][k][i] = 6j + 3k + i, shape [3,2,2]
  checkF32(r.outputs.at("t3"), {3, 2, 2}, {0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11});
  checkI32(r.outputs.at("ti"), {2, 2}, {1, 3, 2, 4});
  checkBool(r.outputs.at("tb"), {2, 2}, {0, 0, 1, 0});
}

TEST_CASE("comparisons broadcast and give bool") {
  Case c;
  ValueId a = c.input("a", f32({3}, {1, 2, 3}));
  ValueId two = c.b.constant(2.0);
  ValueId col = c.input("col", i32({2, 1}, {1, 3}));
  ValueId row = c.input("row", i32({2}, {1, 3}));
  ValueId p = c.input("p", b8({2}, {0, 1}));
  ValueId q = c.input("q", b8({2}, {1, 1}));
  c.b.output("eq", c.b.compare(OpKind::Equal, a, two));
  c.b.output("ne", c.b.compare(OpKind::NotEqual, a, two));
  c.b.output("lt", c.b.compare(OpKind::Less, a, two));
  c.b.output("le", c.b.compare(OpKind::LessEqual, a, two));
  c.b.output("gt", c.b.compare(OpKind::Greater, a, two));
  c.b.output("ge", c.b.compare(OpKind::GreaterEqual, a, two));
  c.b.output("ieq", c.b.compare(OpKind::Equal, col, row));
  c.b.output("ilt", c.b.compare(OpKind::Less, col, row));
  c.b.output("beq", c.b.compare(OpKind::Equal, p, q));
  auto r = c.runAll();
  // [1,2,3] against 2
  checkBool(r.outputs.at("eq"), {3}, {0, 1, 0});
  checkBool(r.outputs.at("ne"), {3}, {1, 0, 1});
  checkBool(r.outputs.at("lt"), {3}, {1, 0, 0});
  checkBool(r.outputs.at("le"), {3}, {1, 1, 0});
  checkBool(r.outputs.at("gt"), {3}, {0, 0, 1});
  checkBool(r.outputs.at("ge"), {3}, {0, 1, 1});
  // [[1],[3]] against [1,3]: [[1==1, 1==3], [3==1, 3==3]], [[1<1, 1<3], [3<1, 3<3]]
  checkBool(r.outputs.at("ieq"), {2, 2}, {1, 0, 0, 1});
  checkBool(r.outputs.at("ilt"), {2, 2}, {0, 1, 0, 0});
  checkBool(r.outputs.at("beq"), {2}, {0, 1});
}

TEST_CASE("select broadcasts all three operands") {
  Case c;
  ValueId cond = c.input("cond", b8({2, 1}, {1, 0}));
  ValueId a = c.input("a", f32({2, 3}, {1, 2, 3, 4, 5, 6}));
  ValueId pick = c.input("pick", b8({3}, {1, 0, 1}));
  ValueId ia = c.input("ia", i32({3}, {1, 2, 3}));
  ValueId ib = c.input("ib", i32({3}, {10, 20, 30}));
  c.b.output("f", c.b.select(cond, a, c.b.constant(-1.0)));
  c.b.output("i", c.b.select(pick, ia, ib));
  auto r = c.runAll();
  // row 0 takes a, row 1 takes the scalar -1
  checkF32(r.outputs.at("f"), {2, 3}, {1, 2, 3, -1, -1, -1});
  checkI32(r.outputs.at("i"), {3}, {1, 20, 3});
}

TEST_CASE("cast") {
  Case c;
  ValueId f = c.input("f", f32({4}, {1.7f, -1.7f, 0, 2.5f}));
  ValueId i = c.input("i", i32({3}, {3, -4, 0}));
  ValueId b = c.input("b", b8({2}, {1, 0}));
  ValueId z = c.input("z", f32({3}, {0, -0.5f, 2}));
  c.b.output("f2i", c.b.cast(f, DType::I32));
  c.b.output("i2f", c.b.cast(i, DType::F32));
  c.b.output("b2f", c.b.cast(b, DType::F32));
  c.b.output("b2i", c.b.cast(b, DType::I32));
  c.b.output("f2b", c.b.cast(z, DType::Bool));
  c.b.output("i2b", c.b.cast(i, DType::Bool));
  auto r = c.runAll();
  checkI32(r.outputs.at("f2i"), {4}, {1, -1, 0, 2}); // truncation toward zero
  checkF32(r.outputs.at("i2f"), {3}, {3, -4, 0});
  checkF32(r.outputs.at("b2f"), {2}, {1, 0});
  checkI32(r.outputs.at("b2i"), {2}, {1, 0});
  checkBool(r.outputs.at("f2b"), {3}, {0, 1, 1}); // x != 0
  checkBool(r.outputs.at("i2b"), {3}, {1, 1, 0});
}

TEST_CASE("cross_entropy") {
  Case c;
  ValueId logits = c.input("logits", f32({2, 3}, {1, 2, 3, 0, 0, 0}));
  ValueId labels = c.input("labels", i32({2}, {2, 0}));
  // row 0: -log_softmax([1,2,3])[2] = 0.407605964; row 1: -ln(1/3) = 1.098612289;
  // mean = (0.407605964 + 1.098612289) / 2 = 0.753109126
  checkF32(c.run(c.b.crossEntropy(logits, labels)), {}, {0.753109126f});
}

TEST_CASE("cross_entropy: a row of label -1 does not count") {
  Case c;
  ValueId logits = c.input("logits", f32({3, 3}, {1, 2, 3, 4, -5, 6, 0, 0, 0}));
  ValueId labels = c.input("labels", i32({3}, {2, -1, 0}));
  c.b.output("loss", c.b.crossEntropy(logits, labels));
  c.b.output("grad", c.b.create(OpKind::CrossEntropyGrad, {logits, labels, c.b.constant(1.0)}));
  auto r = c.runAll();
  // the mean of rows 0 and 2 as in the test above; row 1's gradient is 0,
  // the others' (softmax - onehot) / 2.
  checkF32(r.outputs.at("loss"), {}, {0.753109126f});
  checkF32(r.outputs.at("grad"), {3, 3},
           {0.045015287f, 0.122364236f, -0.167379522f, 0, 0, 0, -0.333333333f, 0.166666667f, 0.166666667f});
}

TEST_CASE("cross_entropy rejects a label outside the classes") {
  for (int32_t bad : {3, -2}) {
    Case c;
    ValueId logits = c.input("logits", f32({2, 3}, {1, 2, 3, 0, 0, 0}));
    ValueId labels = c.input("labels", i32({2}, {0, bad}));
    c.b.output("loss", c.b.crossEntropy(logits, labels));
    std::string want = "label " + std::to_string(bad);
    CHECK_THROWS_WITH_AS(c.runAll(), doctest::Contains(want.c_str()), kiln::Error);
  }
}

TEST_CASE("a model-shaped graph with symbolic B and T") {
  Case c;
  ValueId tokens = c.b.input("tokens", {DType::I32, {Dim::named("B"), Dim::named("T")}});
  c.inputs["tokens"] = i32({2, 3}, {0, 1, 2, 3, 3, 3});
  ValueId table = c.param("embedding.weight", f32({4, 2}, {0, 0, 1, 10, 2, 20, 3, 30}));
  c.b.output("pooled", c.b.mean(c.b.embedding(table, tokens), 1));
  auto r = c.runAll();
  CHECK(r.bindings.at("B") == 2);
  CHECK(r.bindings.at("T") == 3);
  // row 0 averages table rows 0,1,2: [(0+1+2)/3, (0+10+20)/3]; row 1 is row 3 three times.
  checkF32(r.outputs.at("pooled"), {2, 2}, {1, 10, 3, 30});
}

TEST_CASE("values stay alive until their last use; keepAll keeps all of them") {
  for (bool keepAll : {false, true}) {
    Case c;
    c.options.keepAll = keepAll;
    ValueId a = c.input("a", f32({2}, {0, 1}));
    ValueId x = c.b.exp(a);       // [1, e]
    ValueId y = c.b.add(x, x);    // [2, 2e]
    ValueId z = c.b.mul(y, x);    // [2, 2e^2] = [2, 14.778112198]
    c.b.output("z", z);
    c.b.output("a", a); // an input can be an output
    auto r = c.runAll();
    checkF32(r.outputs.at("z"), {2}, {2, 14.778112198f});
    checkF32(r.outputs.at("a"), {2}, {0, 1});
    if (!keepAll) {
      CHECK(r.values.empty());
      continue;
    }
    REQUIRE(r.values.size() == c.g.numValues());
    CHECK(r.values[a].numel() == 0); // inputs are not copied into values
    checkF32(r.values[x], {2}, {1, 2.718281828f});
    checkF32(r.values[y], {2}, {2, 5.436563657f});
  }
}

TEST_CASE("inputs and params are checked by name, dtype and shape") {
  auto make = [](Case &c) {
    ValueId x = c.b.input("x", {DType::F32, {Dim::constant(2), Dim::constant(3)}});
    ValueId w = c.b.param("w", {DType::F32, {Dim::constant(3)}});
    c.b.output("y", c.b.add(x, w));
  };
  Case c;
  make(c);
  c.inputs["x"] = f32({2, 3}, {1, 2, 3, 4, 5, 6});
  c.params["w"] = f32({3}, {1, 1, 1});
  c.inputs["unused"] = f32({1}, {0}); // extra tensors are ignored
  checkF32(c.runAll().outputs.at("y"), {2, 3}, {2, 3, 4, 5, 6, 7});

  SUBCASE("wrong extents") {
    c.inputs["x"] = f32({3, 2}, {1, 2, 3, 4, 5, 6});
    CHECK_THROWS_WITH_AS(c.runAll(), doctest::Contains("input 'x' expects f32[2,3]"), kiln::Error);
  }
  SUBCASE("wrong dtype") {
    c.inputs["x"] = i32({2, 3}, {1, 2, 3, 4, 5, 6});
    CHECK_THROWS_WITH_AS(c.runAll(), doctest::Contains("input 'x' expects f32[2,3] but was given i32[2,3]"),
                         kiln::Error);
  }
  SUBCASE("wrong rank") {
    c.inputs["x"] = f32({6}, {1, 2, 3, 4, 5, 6});
    CHECK_THROWS_WITH_AS(c.runAll(), doctest::Contains("but was given f32[6]"), kiln::Error);
  }
  SUBCASE("missing input") {
    c.inputs.erase("x");
    CHECK_THROWS_WITH_AS(c.runAll(), doctest::Contains("missing input 'x'"), kiln::Error);
  }
  SUBCASE("missing param") {
    c.params.erase("w");
    CHECK_THROWS_WITH_AS(c.runAll(), doctest::Contains("missing parameter 'w' of type f32[3]"), kiln::Error);
  }
  SUBCASE("param of the wrong shape") {
    c.params["w"] = f32({4}, {1, 1, 1, 1});
    CHECK_THROWS_WITH_AS(c.runAll(), doctest::Contains("parameter 'w' expects f32[3] but was given f32[4]"),
                         kiln::Error);
  }
}

TEST_CASE("a symbol bound differently by two inputs is an error") {
  Case c;
  ValueId x = c.b.input("x", {DType::F32, {Dim::named("B")}});
  ValueId y = c.b.input("y", {DType::F32, {Dim::named("B")}});
  c.b.output("z", c.b.add(x, y));
  c.inputs["x"] = f32({2}, {1, 2});
  c.inputs["y"] = f32({3}, {1, 2, 3});
  CHECK_THROWS_AS(c.runAll(), kiln::Error);
}

TEST_CASE("a kernel error carries the location of the node") {
  Case c;
  ValueId table = c.param("embedding.weight", f32({1, 1}, {0}));
  ValueId ids = c.input("ids", i32({1}, {5}));
  c.b.setLoc({"model.kiln", 3, 7});
  c.b.output("y", c.b.embedding(table, ids));
  try {
    c.runAll();
    FAIL("expected a kiln::Error");
  } catch (const kiln::Error &e) {
    CHECK(e.loc().line == 3);
    CHECK(e.loc().col == 7);
  }
}

} // TEST_SUITE

TEST_CASE("positions counts along its axis") {
  Case c;
  ValueId x = c.input("x", f32({2, 3}, {5, 5, 5, 5, 5, 5}));
  c.b.output("rows", c.b.create(OpKind::Positions, {x}));
  c.b.output("cols", c.b.create(OpKind::Positions, {x}, {{"axis", int64_t(0)}}));
  auto r = c.runAll();
  auto values = [&](const char *name) {
    auto v = r.outputs.at(name).i32();
    return std::vector<int32_t>(v.begin(), v.end());
  };
  CHECK(values("rows") == std::vector<int32_t>{0, 1, 2, 0, 1, 2});
  CHECK(values("cols") == std::vector<int32_t>{0, 0, 0, 1, 1, 1});
}

TEST_CASE("dropout: reproducible masks keyed by seed, op and step, scaled, and nothing without a step") {
  const int64_t n = 100000;
  Case c;
  ValueId x = c.input("x", Tensor::fromF32({n}, std::vector<float>(n, 1.0f)));
  ValueId step3 = c.input("s3", Tensor::fromF32({}, {3.0f}));
  ValueId step4 = c.input("s4", Tensor::fromF32({}, {4.0f}));
  ir::Attrs a{{"p", 0.25}, {"key", int64_t(1)}, {"seed", int64_t(7)}};
  ir::Attrs otherKey{{"p", 0.25}, {"key", int64_t(2)}, {"seed", int64_t(7)}};
  ir::Attrs otherSeed{{"p", 0.25}, {"key", int64_t(1)}, {"seed", int64_t(8)}};
  c.b.output("first", c.b.create(OpKind::Dropout, {x, step3}, a));
  c.b.output("again", c.b.create(OpKind::Dropout, {x, step3}, a));
  c.b.output("next", c.b.create(OpKind::Dropout, {x, step4}, a));
  c.b.output("key", c.b.create(OpKind::Dropout, {x, step3}, otherKey));
  c.b.output("seed", c.b.create(OpKind::Dropout, {x, step3}, otherSeed));
  c.b.output("infer", c.b.create(OpKind::Dropout, {x}, a));
  auto r = c.runAll();
  auto first = r.outputs.at("first").f32();
  int64_t kept = 0;
  for (float v : first) {
    CHECK((v == 0.0f || v == static_cast<float>(1.0 / 0.75)));
    kept += v != 0.0f;
  }
  // 75% kept: the standard deviation of the fraction is 0.0014.
  CHECK(std::abs(static_cast<double>(kept) / n - 0.75) < 0.01);
  auto differs = [&](const char *name) {
    auto other = r.outputs.at(name).f32();
    int64_t d = 0;
    for (int64_t i = 0; i < n; ++i) d += (other[i] == 0.0f) != (first[i] == 0.0f);
    return static_cast<double>(d) / n;
  };
  CHECK(differs("again") == 0.0);
  // Independent masks differ in 2 p (1 - p) = 37.5% of the elements.
  for (const char *name : {"next", "key", "seed"}) {
    CAPTURE(name);
    CHECK(std::abs(differs(name) - 0.375) < 0.01);
  }
  for (float v : r.outputs.at("infer").f32()) REQUIRE(v == 1.0f);
}

TEST_CASE("dropout with batch rows draws what those rows draw in the whole tensor") {
  // A data-parallel process's rows of a batch (rows 4, 1 and 2 of 6) must
  // keep the elements the whole batch keeps in those rows.
  Case c;
  ValueId whole = c.input("whole", Tensor::fromF32({6, 50}, std::vector<float>(300, 1.0f)));
  ValueId part = c.input("part", Tensor::fromF32({3, 50}, std::vector<float>(150, 1.0f)));
  ValueId step = c.input("step", Tensor::fromF32({}, {3.0f}));
  ValueId rows = c.input("rows", Tensor::fromI32({3}, {4, 1, 2}));
  ValueId first = c.input("first", Tensor::fromI32({3}, {0, 1, 2}));
  ir::Attrs a{{"p", 0.5}, {"key", int64_t(1)}, {"seed", int64_t(7)}};
  c.b.output("whole", c.b.create(OpKind::Dropout, {whole, step}, a));
  c.b.output("part", c.b.create(OpKind::Dropout, {part, step, rows}, a));
  c.b.output("first", c.b.create(OpKind::Dropout, {part, step, first}, a));
  auto r = c.runAll();
  auto w = r.outputs.at("whole").f32(), p = r.outputs.at("part").f32(), f = r.outputs.at("first").f32();
  int64_t zeros = 0;
  const int64_t wholeRow[3] = {4, 1, 2};
  for (int64_t i = 0; i < 150; ++i) {
    CHECK(p[i] == w[wholeRow[i / 50] * 50 + i % 50]);
    CHECK(f[i] == w[i]); // rows 0-2: the two-operand masks
    zeros += p[i] == 0.0f;
  }
  CHECK(zeros > 40);
  CHECK(zeros < 110);
}

TEST_CASE("slice takes a range along an axis; slice_grad puts it back among zeros") {
  Case c;
  ValueId x = c.input("x", f32({2, 4}, {0, 1, 2, 3, 4, 5, 6, 7}));
  ValueId s = c.b.create(OpKind::Slice, {x}, {{"axis", int64_t(1)}, {"start", int64_t(1)}, {"size", int64_t(2)}});
  c.b.output("s", s);
  c.b.output("back", c.b.create(OpKind::SliceGrad, {s}, {{"axis", int64_t(1)}, {"start", int64_t(1)}, {"size", int64_t(4)}}));
  c.b.output("rows", c.b.create(OpKind::Slice, {x}, {{"axis", int64_t(0)}, {"start", int64_t(1)}, {"size", int64_t(1)}}));
  auto r = c.runAll();
  checkF32(r.outputs.at("s"), {2, 2}, {1, 2, 5, 6});
  checkF32(r.outputs.at("back"), {2, 4}, {0, 1, 2, 0, 0, 5, 6, 0});
  checkF32(r.outputs.at("rows"), {1, 4}, {4, 5, 6, 7});
}
