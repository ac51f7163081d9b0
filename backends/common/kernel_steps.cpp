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

#include "backends/kernels/kernels.h"
#include "ir/elementwise.h"

#include <cmath>
#include <optional>

namespace kiln::backends {

namespace {

using ir::Node;
using ir::OpKind;
using ir::ValueId;
using Dims = std::vector<int64_t>;



/// A step running one of kernels.h; `body` reads addresses from the plan.
void addKernel(Plan &p, size_t node, const std::string &label, std::function<void(Plan &)> body) {
  Plan *plan = &p;
  addStep(p, node, label + " (kiln kernel)", [plan, body] { body(*plan); });
}

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


} // namespace

bool lowerToKernel(const ir::Graph &graph, Plan &p, size_t i) {
  const Node &node = graph.nodes()[i];
  auto ext = [&](ValueId v) -> const std::vector<int64_t> & { return p.extents[v]; };
  auto fptr = [](Plan &pl, ValueId v) { return static_cast<float *>(pl.ptr[v]); };
  ValueId r = node.result;
  switch (node.op) {
  case OpKind::Embedding: {
    ValueId table = node.operands[0], ids = node.operands[1];
    if (graph.value(ids).kind == ir::ValueKind::Node) return false; // computed ids: the reference kernel checks them
    int64_t n = ir::numElements(ext(ids)), width = ext(table)[1];
    addKernel(p, i, "embedding", [=](Plan &pl) {
      kernels::embedding(fptr(pl, table), static_cast<int32_t *>(pl.ptr[ids]), n, width, fptr(pl, r));
    });
    return true;
  }
  case OpKind::EmbeddingGrad: {
    ValueId ids = node.operands[0], dy = node.operands[1];
    if (graph.value(ids).kind == ir::ValueKind::Node) return false;
    int64_t n = ir::numElements(ext(ids)), rows = ext(r)[0], width = ext(r)[1];
    addKernel(p, i, "embedding_grad", [=](Plan &pl) {
      kernels::embeddingGrad(static_cast<int32_t *>(pl.ptr[ids]), fptr(pl, dy), n, rows, width, fptr(pl, r));
    });
    return true;
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
    if (!reduceView(x, masked ? &ext(maskValue) : nullptr, axis, outer, len, inner)) return false;
    ValueId src = node.operands[0];
    std::string label = ir::opName(node.op);
    addKernel(p, i, label, [=](Plan &pl) {
      const uint8_t *mask = masked ? static_cast<uint8_t *>(pl.ptr[maskValue]) : nullptr;
      if (grad) kernels::maskedReduceGrad(fptr(pl, src), mask, outer, len, inner, mean, fptr(pl, r));
      else kernels::maskedReduce(fptr(pl, src), mask, outer, len, inner, mean, fptr(pl, r));
    });
    return true;
  }
  case OpKind::Gru:
  case OpKind::GruGrad:
  case OpKind::Lstm:
  case OpKind::LstmGrad: {
    bool grad = node.op == OpKind::GruGrad || node.op == OpKind::LstmGrad;
    bool lstm = node.op == OpKind::Lstm || node.op == OpKind::LstmGrad;
    const auto &eh = ext(grad ? node.operands[1] : r);
    kernels::GruShape shape{eh[0], eh[1], eh[2], ir::attrBool(node.op, node.attrs, "reverse")};
    if (shape.batch == 0 || shape.steps == 0 || shape.hidden == 0) return false; // the reference writes the zeros
    size_t maskAt = grad ? 4 : 3;
    ValueId maskValue = node.operands.size() > maskAt ? node.operands[maskAt] : -1;
    std::vector<ValueId> o = node.operands, res = node.results();
    addKernel(p, i, ir::opName(node.op), [=](Plan &pl) {
      const uint8_t *mask = maskValue >= 0 ? static_cast<uint8_t *>(pl.ptr[maskValue]) : nullptr;
      auto backward = lstm ? kernels::lstmGrad : kernels::gruGrad;
      auto forward = lstm ? kernels::lstm : kernels::gru;
      if (grad)
        backward(shape, fptr(pl, o[0]), fptr(pl, o[1]), fptr(pl, o[2]), fptr(pl, o[3]), mask, fptr(pl, res[0]),
                 fptr(pl, res[1]), fptr(pl, res[2]));
      else
        forward(shape, fptr(pl, o[0]), fptr(pl, o[1]), fptr(pl, o[2]), mask, fptr(pl, res[0]), fptr(pl, res[1]));
    });
    return true;
  }
  case OpKind::Dropout: {
    // With one operand (an inference graph) dropout is x itself; the
    // reference copies it.
    if (node.operands.size() != 2) return false;
    double prob = ir::attrFloat(node.op, node.attrs, "p");
    uint64_t seed = static_cast<uint64_t>(ir::attrInt(node.op, node.attrs, "seed"));
    int64_t key = ir::attrInt(node.op, node.attrs, "key");
    ValueId x = node.operands[0], stepValue = node.operands[1];
    int64_t n = ir::numElements(ext(r));
    addKernel(p, i, "dropout", [=](Plan &pl) {
      int64_t step = static_cast<int64_t>(std::llround(fptr(pl, stepValue)[0]));
      kernels::dropout(fptr(pl, x), n, seed, key, step, prob, fptr(pl, r));
    });
    return true;
  }
  case OpKind::Max:
  case OpKind::MaxGrad: {
    // The masked max (unmasked: oneDNN's reduction) and every max gradient.
    bool grad = node.op == OpKind::MaxGrad;
    size_t maskAt = grad ? 2 : 1;
    if (!grad && node.operands.size() < 2) return false;
    const auto &x = ext(node.operands[0]);
    size_t axis = static_cast<size_t>(ir::normalizeAxis(ir::axisAttr(node.attrs), x.size()));
    bool masked = node.operands.size() > maskAt;
    ValueId maskValue = masked ? node.operands[maskAt] : -1;
    int64_t outer, len, inner;
    if (!reduceView(x, masked ? &ext(maskValue) : nullptr, axis, outer, len, inner)) return false;
    ValueId src = node.operands[0], dy = grad ? node.operands[1] : -1;
    addKernel(p, i, ir::opName(node.op), [=](Plan &pl) {
      const uint8_t *mask = masked ? static_cast<uint8_t *>(pl.ptr[maskValue]) : nullptr;
      if (grad) kernels::maskedMaxGrad(fptr(pl, src), fptr(pl, dy), mask, outer, len, inner, fptr(pl, r));
      else kernels::maskedMax(fptr(pl, src), mask, outer, len, inner, fptr(pl, r));
    });
    return true;
  }
  case OpKind::Softmax:
  case OpKind::LogSoftmax: {
    if (node.operands.size() != 2) return false; // unmasked: the oneDNN primitive
    const auto &x = ext(node.operands[0]);
    size_t axis = static_cast<size_t>(ir::normalizeAxis(ir::axisAttr(node.attrs), x.size()));
    Dims m = alignRank(ext(node.operands[1]), x.size());
    int64_t outer = product(x, 0, axis), len = x[axis], inner = product(x, axis + 1, x.size());
    for (size_t d = axis + 1; d < x.size(); ++d)
      if (m[d] != 1) return false; // the kernel broadcasts the mask over the inner dims only
    // The mask offset of each outer slice, from the mask's broadcast strides.
    Dims ms = denseStrides(m);
    for (size_t d = 0; d < x.size(); ++d)
      if (m[d] == 1) ms[d] = 0;
    auto rows = std::make_shared<std::vector<int64_t>>(static_cast<size_t>(outer));
    for (int64_t o = 0; o < outer; ++o) {
      int64_t rest = o, off = 0;
      for (size_t d = axis; d-- > 0;) {
        off += (rest % x[d]) * ms[d];
        rest /= x[d];
      }
      (*rows)[o] = off;
    }
    int64_t stride = ms[axis];
    bool log = node.op == OpKind::LogSoftmax;
    ValueId src = node.operands[0], mask = node.operands[1];
    addKernel(p, i, ir::opName(node.op), [=](Plan &pl) {
      kernels::maskedSoftmax(fptr(pl, src), static_cast<uint8_t *>(pl.ptr[mask]), rows->data(), stride, outer, len,
                             inner, log, fptr(pl, r));
    });
    return true;
  }
  case OpKind::SumTo: {
    // Summing the leading dims away (a bias gradient): column sums.
    const auto &x = ext(node.operands[0]), &out = ext(r);
    Dims target = alignRank(out, x.size());
    size_t lead = 0;
    while (lead < x.size() && target[lead] == 1) ++lead;
    for (size_t d = lead; d < x.size(); ++d)
      if (target[d] != x[d]) return false;
    int64_t rows = product(x, 0, lead), cols = product(x, lead, x.size());
    ValueId src = node.operands[0];
    addKernel(p, i, "sum_to", [=](Plan &pl) { kernels::columnSums(fptr(pl, src), rows, cols, fptr(pl, r)); });
    return true;
  }
  case OpKind::AdamMoment: {
    float beta = static_cast<float>(ir::attrFloat(node.op, node.attrs, "beta"));
    bool square = ir::attrBool(node.op, node.attrs, "square");
    ValueId m = node.operands[0], g = node.operands[1];
    int64_t n = ir::numElements(ext(r));
    addKernel(p, i, "adam_moment", [=](Plan &pl) { kernels::adamMoment(fptr(pl, m), fptr(pl, g), n, beta, square, fptr(pl, r)); });
    return true;
  }
  case OpKind::AdamUpdate: {
    float eps = static_cast<float>(ir::attrFloat(node.op, node.attrs, "eps"));
    auto o = node.operands;
    int64_t n = ir::numElements(ext(r));
    addKernel(p, i, "adam_update", [=](Plan &pl) {
      kernels::adamUpdate(fptr(pl, o[0]), fptr(pl, o[1]), fptr(pl, o[2]), n, fptr(pl, o[3])[0], fptr(pl, o[4])[0], eps,
                          fptr(pl, r));
    });
    return true;
  }
  case OpKind::AdamStep: {
    float beta1 = static_cast<float>(ir::attrFloat(node.op, node.attrs, "beta1"));
    float beta2 = static_cast<float>(ir::attrFloat(node.op, node.attrs, "beta2"));
    float eps = static_cast<float>(ir::attrFloat(node.op, node.attrs, "eps"));
    auto o = node.operands;
    std::vector<ValueId> res = node.results();
    int64_t n = ir::numElements(ext(r));
    addKernel(p, i, "adam_step", [=](Plan &pl) {
      kernels::adamStep(fptr(pl, o[0]), fptr(pl, o[1]), fptr(pl, o[2]), fptr(pl, o[3]), n, beta1, beta2,
                        fptr(pl, o[4])[0], fptr(pl, o[5])[0], eps, fptr(pl, res[0]), fptr(pl, res[1]),
                        fptr(pl, res[2]));
    });
    return true;
  }
  case OpKind::Attention:
  case OpKind::AttentionGrad: {
    bool grad = node.op == OpKind::AttentionGrad;
    const auto &eq = ext(node.operands[0]), &ek = ext(node.operands[1]), &ev = ext(node.operands[2]);
    size_t rank = eq.size();
    kernels::AttentionShape shape{product(eq, 0, rank - 2), eq[rank - 2], ek[rank - 2], eq[rank - 1], ev[rank - 1],
                                  static_cast<float>(ir::attrFloat(node.op, node.attrs, "scale"))};
    size_t maskIndex = grad ? 6 : 3;
    bool masked = node.operands.size() > maskIndex;
    ValueId maskValue = masked ? node.operands[maskIndex] : -1;
    // The mask's offset for each batch slice and its strides along the
    // query and key dims, from its broadcast extents (stride 0 where it
    // broadcasts).
    auto offsets = std::make_shared<std::vector<int64_t>>(static_cast<size_t>(shape.batch), 0);
    int64_t rowStride = 0, colStride = 0;
    if (masked) {
      Dims m = alignRank(ext(maskValue), rank);
      Dims ms = denseStrides(m);
      for (size_t d = 0; d < rank; ++d)
        if (m[d] == 1) ms[d] = 0;
      rowStride = ms[rank - 2];
      colStride = ms[rank - 1];
      for (int64_t b = 0; b < shape.batch; ++b) {
        int64_t rest = b, off = 0;
        for (size_t d = rank - 2; d-- > 0;) {
          off += (rest % eq[d]) * ms[d];
          rest /= eq[d];
        }
        (*offsets)[b] = off;
      }
    }
    auto o = node.operands;
    std::vector<ValueId> res = node.results();
    addKernel(p, i, ir::opName(node.op), [=](Plan &pl) {
      kernels::AttentionMask mask{masked ? static_cast<uint8_t *>(pl.ptr[maskValue]) : nullptr, offsets->data(),
                                  rowStride, colStride};
      const kernels::AttentionMask *mp = masked ? &mask : nullptr;
      if (!grad)
        kernels::attention(shape, fptr(pl, o[0]), fptr(pl, o[1]), fptr(pl, o[2]), mp, fptr(pl, res[0]),
                           fptr(pl, res[1]));
      else
        kernels::attentionGrad(shape, fptr(pl, o[0]), fptr(pl, o[1]), fptr(pl, o[2]), fptr(pl, o[4]),
                               fptr(pl, o[5]), mp, fptr(pl, res[0]), fptr(pl, res[1]), fptr(pl, res[2]));
    });
    return true;
  }
  case OpKind::AdditiveAttention:
  case OpKind::AdditiveAttentionGrad: {
    // The shape rule fixes the layout: h, k [..., t, e], v [..., t, ev] and
    // the mask bool[..., t, 1], one byte per position, all dense.
    bool grad = node.op == OpKind::AdditiveAttentionGrad;
    const auto &eh = ext(node.operands[0]), &ev = ext(node.operands[2]);
    size_t rank = eh.size();
    kernels::AdditiveShape shape{product(eh, 0, rank - 2), eh[rank - 2], eh[rank - 1], ev[rank - 1],
                                 ir::attrString(node.op, node.attrs, "pooling") == "mean"};
    size_t maskIndex = grad ? 6 : 5;
    bool masked = node.operands.size() > maskIndex;
    ValueId maskValue = masked ? node.operands[maskIndex] : -1;
    auto o = node.operands;
    std::vector<ValueId> res = node.results();
    addKernel(p, i, ir::opName(node.op), [=](Plan &pl) {
      const uint8_t *mask = masked ? static_cast<uint8_t *>(pl.ptr[maskValue]) : nullptr;
      if (!grad)
        kernels::additiveAttention(shape, fptr(pl, o[0]), fptr(pl, o[1]), fptr(pl, o[2]), fptr(pl, o[3]),
                                   fptr(pl, o[4])[0], mask, fptr(pl, res[0]), fptr(pl, res[1]));
      else
        kernels::additiveAttentionGrad(shape, fptr(pl, o[0]), fptr(pl, o[1]), fptr(pl, o[2]), fptr(pl, o[3]),
                                       fptr(pl, o[4]), fptr(pl, o[5]), mask, fptr(pl, res[0]), fptr(pl, res[1]),
                                       fptr(pl, res[2]), fptr(pl, res[3]));
    });
    return true;
  }
  case OpKind::Elementwise: {
    ir::ElementwiseProgram program = ir::parseBody(ir::attrString(node.op, node.attrs, "body"), node.operands.size());
    auto steps = std::make_shared<std::vector<kernels::ElementwiseStep>>();
    int numOperands = static_cast<int>(node.operands.size());
    auto slot = [&](ir::ElementwiseProgram::Ref ref) { return ref.operand ? ref.index : numOperands + ref.index; };
    for (const ir::ElementwiseProgram::Step &step : program.steps) {
      std::optional<kernels::ElementwiseOp> op = elementwiseOp(step.op);
      if (!op) return false; // an op the kernel lacks: the reference runs the node
      steps->push_back({*op, slot(step.args[0]), step.args.size() > 1 ? slot(step.args[1]) : -1});
    }
    auto scalar = std::make_shared<std::vector<uint8_t>>();
    for (ValueId o : node.operands) scalar->push_back(ext(o).empty());
    auto o = node.operands;
    int64_t n = ir::numElements(ext(r));
    addKernel(p, i, "elementwise", [=](Plan &pl) {
      std::vector<const float *> operands;
      for (ValueId v : o) operands.push_back(fptr(pl, v));
      kernels::elementwise(steps->data(), static_cast<int>(steps->size()), operands.data(), scalar->data(),
                           numOperands, n, fptr(pl, r));
    });
    return true;
  }
  default: return false;
  }
}

} // namespace kiln::backends
