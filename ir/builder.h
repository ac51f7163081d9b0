//===- ir/builder.h - the embedded C++ API for building graphs --*- C++ -*-===//
//
// Builder appends ops to a Graph, inferring each result type with the op's
// shape rule and stamping it with the current source location. It is the one
// way graphs are made: the DSL lowering (frontend/lower.cpp) calls it, and so
// can C++ programs (examples/classifier_builder.cpp). Shape errors come back as
// kiln::Error located at the current location.
//
//   ir::Graph g("forward");
//   ir::Builder b(g);
//   auto tokens = b.input("tokens", {DType::I32, {Dim::named("B"), Dim::named("T")}});
//   auto x = b.embeddingLayer("embedding", tokens, 10000, 128);
//   auto h = b.relu(b.linearLayer("fc1", b.mean(x, 1), 128, 256));
//   b.output("logits", b.linearLayer("fc2", h, 256, 5));
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/graph.h"

#include <optional>

namespace kiln::ir {

class Builder {
public:
  explicit Builder(Graph &g) : g_(g) {}

  Graph &graph() { return g_; }

  /// Location stamped on every op created until the next call.
  void setLoc(SourceLoc loc) { loc_ = std::move(loc); }
  const SourceLoc &loc() const { return loc_; }

  ValueId input(const std::string &name, TensorType type);
  /// Returns the existing parameter of that name when the type agrees (a
  /// layer used twice shares its weights); throws when it disagrees.
  ValueId param(const std::string &name, TensorType type, Attrs init = {});
  void output(const std::string &name, ValueId v);

  /// Generic creation: runs the shape rule, appends the node.
  ValueId create(OpKind op, std::vector<ValueId> operands, Attrs attrs = {}, std::string name = {});
  /// create for an op with several results; returns them in order.
  std::vector<ValueId> createMulti(OpKind op, std::vector<ValueId> operands, Attrs attrs = {});

  ValueId constant(double value, DType dtype = DType::F32);
  ValueId embedding(ValueId table, ValueId ids);
  ValueId matmul(ValueId a, ValueId b, bool transposeA = false, bool transposeB = false);
  ValueId add(ValueId a, ValueId b) { return create(OpKind::Add, {a, b}); }
  ValueId sub(ValueId a, ValueId b) { return create(OpKind::Sub, {a, b}); }
  ValueId mul(ValueId a, ValueId b) { return create(OpKind::Mul, {a, b}); }
  ValueId div(ValueId a, ValueId b) { return create(OpKind::Div, {a, b}); }
  ValueId neg(ValueId x) { return create(OpKind::Neg, {x}); }
  ValueId exp(ValueId x) { return create(OpKind::Exp, {x}); }
  ValueId log(ValueId x) { return create(OpKind::Log, {x}); }
  ValueId tanh(ValueId x) { return create(OpKind::Tanh, {x}); }
  ValueId relu(ValueId x) { return create(OpKind::Relu, {x}); }
  ValueId sigmoid(ValueId x) { return create(OpKind::Sigmoid, {x}); }
  ValueId sqrt(ValueId x) { return create(OpKind::Sqrt, {x}); }
  ValueId softmax(ValueId x, int64_t axis, std::optional<ValueId> mask = {});
  ValueId logSoftmax(ValueId x, int64_t axis, std::optional<ValueId> mask = {});
  ValueId sum(ValueId x, int64_t axis, std::optional<ValueId> mask = {}, bool keepdim = false);
  ValueId mean(ValueId x, int64_t axis, std::optional<ValueId> mask = {}, bool keepdim = false);
  ValueId max(ValueId x, int64_t axis, std::optional<ValueId> mask = {}, bool keepdim = false);
  ValueId reshape(ValueId x, Shape shape);
  ValueId transpose(ValueId x, std::vector<int64_t> perm);
  /// Swaps two dims (negative dims count from the end).
  ValueId swapDims(ValueId x, int64_t d0, int64_t d1);
  /// Inserts a dim of extent 1 at `dim` (negative counts from the end, as torch).
  ValueId unsqueeze(ValueId x, int64_t dim);
  ValueId compare(OpKind cmp, ValueId a, ValueId b);
  ValueId select(ValueId cond, ValueId a, ValueId b) { return create(OpKind::Select, {cond, a, b}); }
  ValueId cast(ValueId x, DType to);
  ValueId crossEntropy(ValueId logits, ValueId labels) { return create(OpKind::CrossEntropy, {logits, labels}); }
  ValueId broadcastTo(ValueId x, Shape shape) { return create(OpKind::BroadcastTo, {x}, {{"shape", shape}}); }
  /// Sums x down to `shape` (the inverse of broadcasting); x itself when the
  /// shapes already agree.
  ValueId sumTo(ValueId x, Shape shape);
  /// A tensor of `shape` filled with `value`.
  ValueId fill(double value, Shape shape, DType dtype = DType::F32) { return broadcastTo(constant(value, dtype), shape); }

  // Layers, with PyTorch state_dict names and layouts.
  /// Declares nn.Embedding(num, dim)'s parameter `prefix.weight` f32[num,dim].
  ValueId embeddingParams(const std::string &prefix, int64_t num, int64_t dim, double std = 1.0);
  /// Declares nn.Linear(in, out)'s `prefix.weight` f32[out,in] and, with
  /// bias, `prefix.bias` f32[out]; returns {weight, bias or -1}.
  std::pair<ValueId, ValueId> linearParams(const std::string &prefix, int64_t in, int64_t out, bool bias);

  /// nn.Embedding(num, dim): parameter `prefix.weight` f32[num,dim].
  ValueId embeddingLayer(const std::string &prefix, ValueId ids, int64_t num, int64_t dim);
  /// nn.Linear(in, out): `prefix.weight` f32[out,in], `prefix.bias` f32[out];
  /// y = x W^T + b over the last dim of x.
  ValueId linearLayer(const std::string &prefix, ValueId x, int64_t in, int64_t out, bool bias = true);
  /// Declares nn.LayerNorm(dim)'s `prefix.weight` (ones) and `prefix.bias`
  /// (zeros), f32[dim], with elementwise affine; returns {weight, bias or -1}.
  std::pair<ValueId, ValueId> layerNormParams(const std::string &prefix, int64_t dim, bool affine);
  /// nn.LayerNorm(dim, eps, elementwise_affine): over the last dim of x,
  /// (x - mean) / sqrt(var + eps) with the biased variance, then * weight +
  /// bias; primitive ops (fuse-elementwise makes the pointwise part a loop).
  ValueId layerNormLayer(const std::string &prefix, ValueId x, int64_t dim, double eps, bool affine = true);
  /// Declares nn.MultiheadAttention(embed, heads)'s `prefix.in_proj_weight`
  /// f32[3 embed, embed] (Xavier-uniform), `prefix.in_proj_bias` (zeros),
  /// `prefix.out_proj.weight` (nn.Linear's) and `prefix.out_proj.bias`
  /// (zeros), PyTorch's names, layouts and initialisation.
  void multiheadAttentionParams(const std::string &prefix, int64_t embed);
  /// nn.MultiheadAttention(embed, heads, batch_first=True)(query, key, value,
  /// key_padding_mask=~keep)[0]: query [B,Tq,embed], key and value
  /// [B,Tk,embed], keep bool[B,Tk] true for the keys to attend to (or -1
  /// for all). The per-head attention is the pattern fuse-attention fuses.
  ValueId multiheadAttentionLayer(const std::string &prefix, ValueId query, ValueId key, ValueId value, ValueId keep,
                                  int64_t embed, int64_t heads);
  /// PyTorch's GELU: x/2 (1 + erf(x / sqrt 2)), or with approximate (its
  /// approximate='tanh') x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), in
  /// primitive ops that fuse-elementwise makes one loop.
  ValueId gelu(ValueId x, bool approximate = false);

  /// Joins f32 values along `axis` (torch.cat): each zero-padded to the
  /// whole extent at its offset (slice_grad), then added; the pieces' dims
  /// along axis must be constants and the others equal.
  ValueId concat(const std::vector<ValueId> &pieces, int64_t axis);

  /// The geometry of nn.GRU or nn.LSTM(in, hidden, num_layers,
  /// bidirectional, batch_first=True).
  struct RecurrentSpec {
    int64_t in, hidden, layers;
    bool bidirectional;
    bool lstm; ///< nn.LSTM (4 gates, a cell state) rather than nn.GRU (3)
  };
  /// Declares nn.GRU's (nn.LSTM's) `prefix.weight_ih_l{k}` f32[G hidden, in
  /// of layer k], `weight_hh_l{k}` f32[G hidden, hidden], `bias_ih_l{k}`,
  /// `bias_hh_l{k}` f32[G hidden] (G = 3, or 4; `..._reverse` for the
  /// backward direction), in PyTorch's order, all U(-1/sqrt(hidden),
  /// 1/sqrt(hidden)).
  void recurrentParams(const std::string &prefix, const RecurrentSpec &spec);
  /// nn.GRU / nn.LSTM (batch_first=True) on x [B, T, in] as a packed
  /// sequence of the lengths keep (bool[B, T], true on each text's tokens,
  /// or -1 for all): the output [B, T, hidden * directions], 0 at dropped
  /// positions; each layer's input projection is one matmul over all steps,
  /// the recurrence one gru (lstm) op per direction.
  ValueId recurrentLayer(const std::string &prefix, ValueId x, ValueId keep, const RecurrentSpec &spec);

  /// The geometry of nn.Conv1d(in, out, width, padding=padding, bias=bias).
  struct Conv1dSpec {
    int64_t in, out, width, padding;
    bool bias;
  };
  /// Declares nn.Conv1d's `prefix.weight` f32[out,in,width] and, with bias,
  /// `prefix.bias` f32[out], both U(-1/sqrt(in width), 1/sqrt(in width)) as
  /// PyTorch initialises them; returns {weight, bias or -1}.
  std::pair<ValueId, ValueId> conv1dParams(const std::string &prefix, const Conv1dSpec &spec);
  /// nn.Conv1d over the sequence of x [..., T, in] (channels last, so no
  /// transpose): [..., T + 2 padding - width + 1, out]. With keep (bool
  /// [..., T] or [..., T, 1], or -1), dropped positions read as zeros, so a
  /// window that runs past a text's end sees the zero padding it would see
  /// on the text alone.
  ValueId conv1dLayer(const std::string &prefix, ValueId x, ValueId keep, const Conv1dSpec &spec);

private:
  std::vector<ValueId> build(OpKind op, std::vector<ValueId> operands, Attrs attrs, std::vector<std::string> names);
  ValueId reduce(OpKind op, ValueId x, int64_t axis, std::optional<ValueId> mask, bool keepdim);
  Graph &g_;
  SourceLoc loc_;
};

} // namespace kiln::ir
