//===- backends/common/kernel_steps.cpp - kiln's CPU kernels as plan steps ---===//
//
// The lowering every planned backend shares for the ops that kiln's own
// kernels (backends/kernels/kernels.h) implement: each case reads the node's
// extents once, here, and adds a step that calls the kernel on the plan's
// buffers of this run. A case returns false for a shape its kernel does not
// take (a mask that broadcasts otherwise, computed ids), and the next
// lowering or the reference kernel runs the node.
//
//===----------------------------------------------------------------------===//
#include "backends/common/planned_executable.h"

#include "backends/kernels/entries.h"
#include "backends/kernels/kernels.h"
#include "ir/elementwise.h"

#include <bit>
#include <cmath>
#include <optional>

namespace kiln::backends {

namespace {

using ir::Node;
using ir::OpKind;
using ir::ValueId;
using Dims = std::vector<int64_t>;




/// A reduction over `axis` of x with an optional mask, as [outer, len, inner]
/// with the mask one byte per (outer, len): the shape kernels::maskedReduce
/// takes. False when the mask broadcasts differently.
bool reduceView(const std::vector<int64_t> &x, const std::vector<int64_t> *mask, size_t axis, int64_t &outer,
                int64_t &len, int64_t &inner) {
  outer = product(x, 0, axis);
  len = x[axis];
  inner = product(x, axis + 1, x.size());
  if (!mask) return true;
  Dims m = alignRank(*mask, x.size());
  for (size_t d = 0; d < x.size(); ++d)
    if (m[d] != (d <= axis ? x[d] : 1)) return false;
  return true;
}

/// The kernel's number for an op of an elementwise body; nullopt for one
/// it does not implement.
std::optional<kernels::ElementwiseOp> elementwiseOp(OpKind op) {
  using E = kernels::ElementwiseOp;
  switch (op) {
  case OpKind::Add: return E::Add;
  case OpKind::Sub: return E::Sub;
  case OpKind::Mul: return E::Mul;
  case OpKind::Div: return E::Div;
  case OpKind::Neg: return E::Neg;
  case OpKind::Exp: return E::Exp;
  case OpKind::Log: return E::Log;
  case OpKind::Tanh: return E::Tanh;
  case OpKind::Relu: return E::Relu;
  case OpKind::Sigmoid: return E::Sigmoid;
  case OpKind::Sqrt: return E::Sqrt;
  case OpKind::Erf: return E::Erf;
  case OpKind::TanhGrad: return E::TanhGrad;
  case OpKind::SigmoidGrad: return E::SigmoidGrad;
  case OpKind::ReluGrad: return E::ReluGrad;
  default: return std::nullopt;
  }
}


/// matmul, matmul_bias and weight_grad as one oneDNN matmul each
/// (kiln_k_matmul, backends/kernels/gemm.cpp); nullopt for the shapes the
/// reference takes (an empty contraction or result, a batch that neither
/// matches nor broadcasts).
std::optional<KernelCall> gemmCall(const ir::Graph &graph, const Plan &p, size_t i) {
  const Node &node = graph.nodes()[i];
  auto ext = [&](ValueId v) -> const std::vector<int64_t> & { return p.extents[v]; };
  const auto &out = ext(node.result);
  if (ir::numElements(out) == 0) return std::nullopt;
  // rank, dims and strides of a and w, dims of out: each a triple, rank-2
  // calls in its last two.
  int64_t rank = 3;
  Dims da, sa, dw, sw, dout;
  std::string label;
  const char *library = "onednn";
  int64_t bias = -1, activation = 0;
  if (node.op == OpKind::WeightGrad) {
    // Sum over the batch of a^T dy: one 2-D product contracting the batch
    // and row dims together, a read as [K, rows] through its strides.
    const auto &ea = ext(node.operands[0]), &ed = ext(node.operands[1]);
    int64_t rows = product(ea, 0, ea.size() - 1), k = ea.back(), n = ed.back();
    if (rows == 0) return std::nullopt; // the reference writes the zeros
    rank = 2;
    da = {1, k, rows}, sa = {0, 1, k}, dw = {1, rows, n}, sw = {0, n, 1}, dout = {1, k, n};
    label = "weight_grad", library = "onednn matmul";
  } else {
    ValueId a = node.operands[0], w = node.operands[1];
    bool ta = ir::attrBool(node.op, node.attrs, "transpose_a"), tb = ir::attrBool(node.op, node.attrs, "transpose_b");
    const auto &ea = ext(a), &ew = ext(w);
    size_t ra = ea.size(), rw = ew.size(), ro = out.size();
    int64_t m = out[ro - 2], nn = out[ro - 1], k = ta ? ea[ra - 2] : ea[ra - 1];
    // Each operand's batch dims fold into one: the full batch, or 1 (broadcast).
    int64_t batch = product(out, 0, ro - 2), ba = product(ea, 0, ra - 2), bw = product(ew, 0, rw - 2);
    if ((ba != batch && ba != 1) || (bw != batch && bw != 1)) return std::nullopt;
    if (k == 0) return std::nullopt; // an empty contraction: the reference writes the zeros
    // A rank-2 weight under a batched lhs without transpose: the batch
    // folds into M, one 2-D product.
    if (bw == 1 && !ta && ba == batch) {
      rank = 2;
      int64_t rows = batch * m;
      da = {1, rows, k}, sa = {0, k, 1}, dw = {1, k, nn}, sw = tb ? Dims{0, 1, k} : Dims{0, nn, 1}, dout = {1, rows, nn};
    } else {
      da = {ba, m, k}, sa = ta ? Dims{m * k, 1, m} : Dims{m * k, k, 1};
      dw = {bw, k, nn}, sw = tb ? Dims{k * nn, 1, k} : Dims{k * nn, nn, 1}, dout = {batch, m, nn};
    }
    label = ir::opName(node.op);
    if (node.op == OpKind::MatMulBias) {
      bias = node.operands[2];
      std::string act = ir::attrString(node.op, node.attrs, "activation");
      activation = act == "none" ? 0 : act == "relu" ? 1 : act == "tanh" ? 2 : 3;
      if (act != "none") label += "+" + act;
    }
  }
  int64_t kind = node.op == OpKind::MatMul ? 0 : node.op == OpKind::MatMulBias ? 1 : 2;
  std::vector<int64_t> args{kind, activation, node.operands[0], node.operands[1], bias, node.result, rank};
  for (const Dims *d : {&da, &sa, &dw, &sw, &dout}) args.insert(args.end(), d->begin(), d->end());
  return KernelCall{"kiln_k_matmul", kiln_k_matmul, std::move(args), label, library};
}

} // namespace

std::optional<KernelCall> kernelCall(const ir::Graph &graph, const Plan &p, size_t i, bool preferKernels) {
  const Node &node = graph.nodes()[i];
  auto ext = [&](ValueId v) -> const std::vector<int64_t> & { return p.extents[v]; };
  ValueId r = node.result;
  auto call = [&](const char *entry, kernels::KernelEntry fn, std::vector<int64_t> args) {
    return KernelCall{entry, fn, std::move(args), ir::opName(node.op)};
  };
  auto bits = [](double x) { return std::bit_cast<int64_t>(x); };
#define KILN_ENTRY(name) "kiln_k_" #name, kiln_k_##name
  switch (node.op) {
  case OpKind::MatMul:
  case OpKind::MatMulBias:
  case OpKind::WeightGrad: return gemmCall(graph, p, i);
  case OpKind::Embedding: {
    // Ids that are inputs were checked before the run; computed ones (such
    // as positions) are checked by the kernel, which then reports the node.
    ValueId table = node.operands[0], ids = node.operands[1];
    int64_t check = graph.value(ids).kind == ir::ValueKind::Node ? static_cast<int64_t>(i) : -1;
    return call(KILN_ENTRY(embedding), {table, ids, r, ir::numElements(ext(ids)), ext(table)[1], ext(table)[0], check});
  }
  case OpKind::EmbeddingGrad: {
    ValueId ids = node.operands[0], dy = node.operands[1];
    int64_t check = graph.value(ids).kind == ir::ValueKind::Node ? static_cast<int64_t>(i) : -1;
    return call(KILN_ENTRY(embedding_grad), {ids, dy, r, ir::numElements(ext(ids)), ext(r)[0], ext(r)[1], check});
  }
  case OpKind::Sum:
  case OpKind::Mean:
  case OpKind::SumGrad:
  case OpKind::MeanGrad: {
    bool grad = node.op == OpKind::SumGrad || node.op == OpKind::MeanGrad;
    bool mean = node.op == OpKind::Mean || node.op == OpKind::MeanGrad;
    const auto &x = grad ? ext(r) : ext(node.operands[0]);
    size_t axis = static_cast<size_t>(ir::normalizeAxis(ir::axisAttr(node.attrs), x.size()));
    bool masked = node.operands.size() == 2;
    ValueId maskValue = masked ? node.operands[1] : -1;
    int64_t outer, len, inner;
    if (!reduceView(x, masked ? &ext(maskValue) : nullptr, axis, outer, len, inner)) return std::nullopt;
    return call(KILN_ENTRY(reduce), {node.operands[0], maskValue, r, outer, len, inner, mean, grad});
  }
  case OpKind::Gru:
  case OpKind::GruGrad:
  case OpKind::Lstm:
  case OpKind::LstmGrad: {
    bool grad = node.op == OpKind::GruGrad || node.op == OpKind::LstmGrad;
    bool lstm = node.op == OpKind::Lstm || node.op == OpKind::LstmGrad;
    const auto &eh = ext(grad ? node.operands[1] : r);
    if (eh[0] == 0 || eh[1] == 0 || eh[2] == 0) return std::nullopt; // the reference writes the zeros
    size_t maskAt = grad ? 4 : 3;
    ValueId maskValue = node.operands.size() > maskAt ? node.operands[maskAt] : -1;
    std::vector<ValueId> o = node.operands, res = node.results();
    return call(KILN_ENTRY(recurrent), {lstm, grad, eh[0], eh[1], eh[2], ir::attrBool(node.op, node.attrs, "reverse"),
                                        maskValue, o[0], o[1], o[2], grad ? o[3] : -1, res[0], res[1],
                                        grad ? res[2] : -1});
  }
  case OpKind::Dropout: {
    // With one operand (an inference graph) dropout is x itself; the
    // reference copies it.
    if (node.operands.size() < 2) return std::nullopt;
    int64_t n = ir::numElements(ext(r)), rows = ext(r).empty() ? 1 : ext(r)[0];
    return call(KILN_ENTRY(dropout), {node.operands[0], node.operands[1], r, n,
                                      ir::attrInt(node.op, node.attrs, "seed"), ir::attrInt(node.op, node.attrs, "key"),
                                      bits(ir::attrFloat(node.op, node.attrs, "p")),
                                      node.operands.size() > 2 ? node.operands[2] : -1, rows ? n / rows : 0});
  }
  case OpKind::Max:
  case OpKind::MaxGrad: {
    // The masked max (unmasked: oneDNN's reduction, unless asked) and every
    // max gradient.
    bool grad = node.op == OpKind::MaxGrad;
    size_t maskAt = grad ? 2 : 1;
    if (!grad && node.operands.size() < 2 && !preferKernels) return std::nullopt;
    const auto &x = ext(node.operands[0]);
    size_t axis = static_cast<size_t>(ir::normalizeAxis(ir::axisAttr(node.attrs), x.size()));
    bool masked = node.operands.size() > maskAt;
    ValueId maskValue = masked ? node.operands[maskAt] : -1;
    int64_t outer, len, inner;
    if (!reduceView(x, masked ? &ext(maskValue) : nullptr, axis, outer, len, inner)) return std::nullopt;
    return call(KILN_ENTRY(max), {grad, node.operands[0], grad ? node.operands[1] : -1, maskValue, r, outer, len, inner});
  }
  case OpKind::Softmax:
  case OpKind::LogSoftmax:
  case OpKind::SoftmaxGrad:
  case OpKind::LogSoftmaxGrad: {
    // Masked: kiln's kernels (the mask broadcast over the dims after the
    // axis); unmasked, where a oneDNN primitive exists, only when asked.
    bool grad = node.op == OpKind::SoftmaxGrad || node.op == OpKind::LogSoftmaxGrad;
    bool log = node.op == OpKind::LogSoftmax || node.op == OpKind::LogSoftmaxGrad;
    size_t maskAt = grad ? 2 : 1;
    bool masked = node.operands.size() > maskAt;
    if (!masked && node.op != OpKind::LogSoftmaxGrad && !preferKernels) return std::nullopt;
    const auto &x = ext(node.operands[0]);
    size_t axis = static_cast<size_t>(ir::normalizeAxis(ir::axisAttr(node.attrs), x.size()));
    int64_t outer = product(x, 0, axis), len = x[axis], inner = product(x, axis + 1, x.size());
    ValueId maskValue = masked ? node.operands[maskAt] : -1;
    std::vector<int64_t> rows;
    int64_t stride = 0;
    if (masked) {
      Dims m = alignRank(ext(maskValue), x.size());
      for (size_t d = axis + 1; d < x.size(); ++d)
        if (m[d] != 1) return std::nullopt; // the kernel broadcasts the mask over the inner dims only
      // The mask offset of each outer slice, from the mask's broadcast strides.
      Dims ms = denseStrides(m);
      for (size_t d = 0; d < x.size(); ++d)
        if (m[d] == 1) ms[d] = 0;
      for (int64_t o = 0; o < outer; ++o) {
        int64_t rest = o, off = 0;
        for (size_t d = axis; d-- > 0;) {
          off += (rest % x[d]) * ms[d];
          rest /= x[d];
        }
        rows.push_back(off);
      }
      stride = ms[axis];
    }
    std::vector<int64_t> args;
    if (grad) args = {node.operands[0], node.operands[1], maskValue, r, stride, outer, len, inner, log};
    else args = {node.operands[0], maskValue, r, stride, outer, len, inner, log};
    args.insert(args.end(), rows.begin(), rows.end());
    if (grad) return call(KILN_ENTRY(normalize_grad), std::move(args));
    return call(KILN_ENTRY(masked_softmax), std::move(args));
  }
  case OpKind::SumTo: {
    // Summing the leading dims away (a bias gradient): column sums.
    const auto &x = ext(node.operands[0]), &out = ext(r);
    Dims target = alignRank(out, x.size());
    size_t lead = 0;
    while (lead < x.size() && target[lead] == 1) ++lead;
    bool leading = true;
    for (size_t d = lead; d < x.size(); ++d) leading = leading && target[d] == x[d];
    if (leading) return call(KILN_ENTRY(column_sums), {node.operands[0], r, product(x, 0, lead), product(x, lead, x.size())});
    if (!preferKernels) return std::nullopt; // oneDNN's reduction
    // Summed dims that form one block [begin, end): a reduction over it.
    size_t begin = 0;
    while (begin < x.size() && target[begin] == x[begin]) ++begin;
    size_t end = begin;
    while (end < x.size() && target[end] != x[end]) ++end;
    for (size_t d = end; d < x.size(); ++d)
      if (target[d] != x[d]) return std::nullopt;
    return call(KILN_ENTRY(reduce), {node.operands[0], -1, r, product(x, 0, begin), product(x, begin, end),
                                     product(x, end, x.size()), /*mean=*/0, /*grad=*/0});
  }
  case OpKind::AdamMoment:
    return call(KILN_ENTRY(adam_moment), {node.operands[0], node.operands[1], r, ir::numElements(ext(r)),
                                          bits(ir::attrFloat(node.op, node.attrs, "beta")),
                                          ir::attrBool(node.op, node.attrs, "square")});
  case OpKind::AdamUpdate: {
    auto o = node.operands;
    return call(KILN_ENTRY(adam_update), {o[0], o[1], o[2], o[3], o[4], r, ir::numElements(ext(r)),
                                          bits(ir::attrFloat(node.op, node.attrs, "eps"))});
  }
  case OpKind::AdamStep: {
    auto o = node.operands;
    std::vector<ValueId> res = node.results();
    return call(KILN_ENTRY(adam_step), {o[0], o[1], o[2], o[3], o[4], o[5], res[0], res[1], res[2], ir::numElements(ext(r)),
                                        bits(ir::attrFloat(node.op, node.attrs, "beta1")),
                                        bits(ir::attrFloat(node.op, node.attrs, "beta2")),
                                        bits(ir::attrFloat(node.op, node.attrs, "eps"))});
  }
  case OpKind::AdamRows: {
    auto o = node.operands;
    std::vector<ValueId> res = node.results();
    int64_t check = graph.value(o[3]).kind == ir::ValueKind::Node ? static_cast<int64_t>(i) : -1;
    auto attr = [&](const char *name) { return bits(ir::attrFloat(node.op, node.attrs, name)); };
    return call(KILN_ENTRY(adam_rows), {o[0], o[1], o[2], o[3], o[4], o[5], o[6], res[0], res[1], res[2],
                                        ir::numElements(ext(o[3])), ext(o[0])[0], ext(o[0])[1], attr("beta1"),
                                        attr("beta2"), attr("eps"), attr("weight_decay"), check});
  }
  case OpKind::Attention:
  case OpKind::AttentionGrad: {
    bool grad = node.op == OpKind::AttentionGrad;
    const auto &eq = ext(node.operands[0]), &ek = ext(node.operands[1]), &ev = ext(node.operands[2]);
    size_t rank = eq.size();
    int64_t batch = product(eq, 0, rank - 2);
    size_t maskIndex = grad ? 6 : 3;
    bool masked = node.operands.size() > maskIndex;
    ValueId maskValue = masked ? node.operands[maskIndex] : -1;
    // The mask's offset for each batch slice and its strides along the
    // query and key dims, from its broadcast extents (stride 0 where it
    // broadcasts).
    std::vector<int64_t> offsets(static_cast<size_t>(batch), 0);
    int64_t rowStride = 0, colStride = 0;
    if (masked) {
      Dims m = alignRank(ext(maskValue), rank);
      Dims ms = denseStrides(m);
      for (size_t d = 0; d < rank; ++d)
        if (m[d] == 1) ms[d] = 0;
      rowStride = ms[rank - 2];
      colStride = ms[rank - 1];
      for (int64_t b = 0; b < batch; ++b) {
        int64_t rest = b, off = 0;
        for (size_t d = rank - 2; d-- > 0;) {
          off += (rest % eq[d]) * ms[d];
          rest /= eq[d];
        }
        offsets[static_cast<size_t>(b)] = off;
      }
    }
    auto o = node.operands;
    std::vector<ValueId> res = node.results();
    std::vector<int64_t> args{grad, batch, eq[rank - 2], ek[rank - 2], eq[rank - 1], ev[rank - 1],
                              bits(ir::attrFloat(node.op, node.attrs, "scale")), maskValue, rowStride, colStride};
    if (grad) args.insert(args.end(), {o[0], o[1], o[2], o[4], o[5], res[0], res[1], res[2]});
    else args.insert(args.end(), {o[0], o[1], o[2], res[0], res[1], res.size() > 2 ? res[2] : -1});
    args.insert(args.end(), offsets.begin(), offsets.end());
    return call(KILN_ENTRY(attention), std::move(args));
  }
  case OpKind::AdditiveAttention:
  case OpKind::AdditiveAttentionGrad: {
    // The shape rule fixes the layout: h, k [..., t, e], v [..., t, ev] and
    // the mask bool[..., t, 1], one byte per position, all dense.
    bool grad = node.op == OpKind::AdditiveAttentionGrad;
    const auto &eh = ext(node.operands[0]), &ev = ext(node.operands[2]);
    size_t rank = eh.size();
    size_t maskIndex = grad ? 6 : 5;
    ValueId maskValue = node.operands.size() > maskIndex ? node.operands[maskIndex] : -1;
    auto o = node.operands;
    std::vector<ValueId> res = node.results();
    std::vector<int64_t> args{grad, product(eh, 0, rank - 2), eh[rank - 2], eh[rank - 1], ev[rank - 1],
                              ir::attrString(node.op, node.attrs, "pooling") == "mean", maskValue};
    args.insert(args.end(), o.begin(), o.begin() + 6 - !grad);
    args.insert(args.end(), res.begin(), res.end());
    return call(KILN_ENTRY(additive_attention), std::move(args));
  }
  case OpKind::Exp:
  case OpKind::Log:
  case OpKind::Erf:
  case OpKind::ReluGrad: {
    // One-step programs of the elementwise kernel: oneDNN's eltwise
    // primitives part from the reference at the edges (exp of NaN and of
    // +inf, log of a subnormal, relu_grad where x is NaN), and it has no erf.
    for (ValueId o : node.operands)
      if (ext(o) != ext(r) || graph.type(o).dtype != ir::DType::F32) return std::nullopt;
    int64_t numOperands = static_cast<int64_t>(node.operands.size());
    std::vector<int64_t> args{1, numOperands, ir::numElements(ext(r)), r};
    for (ValueId o : node.operands) args.push_back(o);
    for (size_t k = 0; k < node.operands.size(); ++k) args.push_back(0);
    args.insert(args.end(), {static_cast<int64_t>(*elementwiseOp(node.op)), 0, numOperands > 1 ? 1 : -1});
    return call(KILN_ENTRY(elementwise), std::move(args));
  }
  case OpKind::Elementwise: {
    ir::ElementwiseProgram program = ir::parseBody(ir::attrString(node.op, node.attrs, "body"), node.operands.size());
    int64_t numOperands = static_cast<int64_t>(node.operands.size());
    if (program.steps.size() > 64 || numOperands > 16) return std::nullopt; // beyond the entry's fixed arrays
    std::vector<int64_t> args{static_cast<int64_t>(program.steps.size()), numOperands, ir::numElements(ext(r)), r};
    for (ValueId o : node.operands) args.push_back(o);
    for (ValueId o : node.operands) args.push_back(ext(o).empty());
    auto slot = [&](ir::ElementwiseProgram::Ref ref) { return ref.operand ? ref.index : numOperands + ref.index; };
    for (const ir::ElementwiseProgram::Step &step : program.steps) {
      std::optional<kernels::ElementwiseOp> op = elementwiseOp(step.op);
      if (!op) return std::nullopt; // an op the kernel lacks: the reference runs the node
      args.insert(args.end(), {static_cast<int64_t>(*op), slot(step.args[0]), step.args.size() > 1 ? slot(step.args[1]) : -1});
    }
    return call(KILN_ENTRY(elementwise), std::move(args));
  }
  default: return std::nullopt;
  }
#undef KILN_ENTRY
}

bool lowerToKernel(const ir::Graph &graph, Plan &p, size_t i) {
  std::optional<KernelCall> c = kernelCall(graph, p, i);
  if (!c) return false;
  Plan *plan = &p;
  kernels::KernelEntry fn = c->fn;
  auto args = std::make_shared<const std::vector<int64_t>>(std::move(c->args));
  addStep(p, i, c->label + " (" + c->library + ")", [plan, fn, args] { fn(plan->ptr.data(), args->data()); });
  return true;
}

} // namespace kiln::backends
