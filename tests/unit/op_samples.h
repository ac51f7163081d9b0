//===- tests/unit/op_samples.h - one sample use of every op ---------*- C++ -*-===//
//
// Operand types and attributes for one use of each op of the table, shared by
// the op-table walk (op_table_test.cpp) and the backend parity suite
// (backend_parity_test.cpp). Shapes use the symbols B and T so that tests can
// bind them to several sizes; inner dims are odd on purpose.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/ops.h"

#include <map>

namespace kiln::testing {

using namespace kiln::ir;

inline Dim c(int64_t v) { return Dim::constant(v); }
inline Dim s(const char *n) { return Dim::named(n); }

/// One sample use of an op: operand types (inputs of the sample graph) and
/// attributes.
struct Sample {
  std::vector<TensorType> operands;
  Attrs attrs;
};

inline const std::map<OpKind, Sample> &samples() {
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
    for (OpKind k : {OpKind::Neg, OpKind::Exp, OpKind::Log, OpKind::Tanh, OpKind::Relu, OpKind::Sigmoid, OpKind::Sqrt,
                     OpKind::Erf})
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
    t[OpKind::Positions] = {{i2}, {{"axis", int64_t(1)}}};
    t[OpKind::Slice] = {{x}, {{"axis", int64_t(2)}, {"start", int64_t(1)}, {"size", int64_t(2)}}};
    t[OpKind::SliceGrad] = {{x}, {{"axis", int64_t(1)}, {"start", int64_t(2)}, {"size", int64_t(6)}}};
    // Convolutions over a sequence of symbolic length T (tests bind it):
    // width 3 without padding gives T-2 windows; the gradients' samples get
    // their dy at length T (dx is then T+2) and padding 1 (width 3 again).
    TensorType seq{DType::F32, {s("B"), s("T"), c(3)}};
    TensorType convW{DType::F32, {c(4), c(3), c(3)}};
    t[OpKind::Conv1d] = {{seq, convW, {DType::F32, {c(4)}}}, {}};
    t[OpKind::Conv1dInputGrad] = {{{DType::F32, {s("B"), s("T"), c(4)}}, convW}, {}};
    // A GRU of hidden size 2 over T steps, masked, and its gradient (the
    // saved gates random, as any operand).
    TensorType gruW{DType::F32, {c(6), c(2)}}, gruH{DType::F32, {s("B"), s("T"), c(2)}};
    TensorType stepMask{DType::Bool, {s("B"), s("T")}};
    t[OpKind::Gru] = {{{DType::F32, {s("B"), s("T"), c(6)}}, gruW, {DType::F32, {c(6)}}, stepMask}, {}};
    t[OpKind::GruGrad] = {{gruW, gruH, {DType::F32, {s("B"), s("T"), c(8)}}, gruH, stepMask}, {{"reverse", true}}};
    TensorType lstmW{DType::F32, {c(8), c(2)}};
    t[OpKind::Lstm] = {{{DType::F32, {s("B"), s("T"), c(8)}}, lstmW, {DType::F32, {c(8)}}, stepMask}, {{"reverse", true}}};
    t[OpKind::LstmGrad] = {{lstmW, gruH, {DType::F32, {s("B"), s("T"), c(10)}}, gruH, stepMask}, {}};
    t[OpKind::Conv1dWeightGrad] = {{seq, {DType::F32, {s("B"), s("T"), c(4)}}}, {{"padding", int64_t(1)}}};
    t[OpKind::Dropout] = {{x, {DType::F32, {}}}, {{"p", 0.3}, {"key", int64_t(5)}, {"seed", int64_t(9)}}};
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
    t[OpKind::AdamMoment] = {{x, x}, {{"beta", 0.9}, {"square", true}}};
    t[OpKind::AdamUpdate] = {{x, x, x, {DType::F32, {}}, {DType::F32, {}}}, {{"eps", 1e-8}}};
    t[OpKind::CrossEntropyGrad] = {{{DType::F32, {s("B"), c(5)}}, {DType::I32, {s("B")}}, {DType::F32, {}}}, {}};
    // Fused ops: odd sizes, a key mask, a scale that is not 1.
    t[OpKind::MatMulBias] = {{x, {DType::F32, {c(5), c(4)}}, {DType::F32, {c(5)}}},
                             {{"transpose_b", true}, {"activation", std::string("tanh")}}};
    t[OpKind::WeightGrad] = {{x, {DType::F32, {s("B"), c(3), c(5)}}}, {}};
    TensorType q{DType::F32, {s("B"), c(3), c(4)}}, k{DType::F32, {s("B"), c(5), c(4)}}, v{DType::F32, {s("B"), c(5), c(2)}};
    TensorType keyMask{DType::Bool, {s("B"), c(1), c(5)}};
    t[OpKind::Attention] = {{q, k, v, keyMask}, {{"scale", 0.5}}};
    TensorType out{DType::F32, {s("B"), c(3), c(2)}}, lse{DType::F32, {s("B"), c(3)}};
    t[OpKind::AdamStep] = {{x, x, x, x, {DType::F32, {}}, {DType::F32, {}}}, {{"beta1", 0.8}, {"beta2", 0.99}, {"eps", 1e-6}}};
    // A table of 7 rows of which the ids (below 4 in the parity suite) name some.
    TensorType table{DType::F32, {c(7), c(4)}};
    t[OpKind::AdamRows] = {{table, table, table, i2, x, {DType::F32, {}}, {DType::F32, {}}},
                           {{"beta1", 0.8}, {"beta2", 0.99}, {"eps", 1e-6}, {"weight_decay", 0.01}}};
    t[OpKind::AttentionGrad] = {{q, k, v, out, lse, out, keyMask}, {{"scale", 0.5}}};
    TensorType values{DType::F32, {s("B"), c(3), c(2)}}, pooled{DType::F32, {s("B"), c(2)}};
    TensorType scoreWeight{DType::F32, {c(1), c(4)}}, scoreBias{DType::F32, {c(1)}};
    t[OpKind::Elementwise] = {{x, x, {DType::F32, {}}}, {{"body", std::string("add(mul($0, tanh($1)), $2)")}}};
    t[OpKind::AdditiveAttention] = {{x, x, values, scoreWeight, scoreBias, maskB}, {{"pooling", std::string("sum")}}};
    t[OpKind::AdditiveAttentionGrad] = {{x, x, values, scoreWeight, {DType::F32, {s("B"), c(3), c(1)}}, pooled, maskB},
                                        {{"pooling", std::string("mean")}}};
    return t;
  }();
  return table;
}


} // namespace kiln::testing
