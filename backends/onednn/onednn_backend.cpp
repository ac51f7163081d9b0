//===- backends/onednn/onednn_backend.cpp - oneDNN CPU backend ------------===//
//
// The oneDNN backend is the shared planned executable
// (backends/common/planned_executable.h) with two lowerings tried in turn
// for each node: kiln's own kernels (backends/common/kernel_steps.cpp), then
// OnednnLowering here, a oneDNN primitive with its memory objects created
// once per plan (eltwise
// forward/backward, binary with broadcasting, softmax forward/backward,
// reductions, reorders for transposes, convolutions). Inputs and parameters
// stay in the caller's tensors; their addresses are set on the memory
// objects at every run. The GEMMs (matmul, matmul_bias, weight_grad) are
// oneDNN matmuls too, behind kiln's kernel ABI (backends/kernels/gemm.cpp),
// so that the LLVM backend's code and exported models call the same ones.
// In-place results for the eltwise and binary
// primitives that support it (dst may equal src / src0).
//
// oneDNN 2.6 API: `X::desc d(...); X::primitive_desc pd(d, engine);`.
//
//===----------------------------------------------------------------------===//
#include "backends/onednn/onednn_backend.h"

#include "backends/common/planned_executable.h"
#include "ir/elementwise.h"

#include <cstring>
#include <dnnl.hpp>
#include <fmt/format.h>
#include <functional>
#include <optional>
#include <unordered_map>

namespace kiln::backends::onednn {

namespace {

using dnnl::memory;
using ir::DType;
using ir::Node;
using ir::OpKind;
using ir::ValueId;
using runtime::Tensor;
using Dims = memory::dims;


memory::data_type dnnlType(DType t) {
  switch (t) {
  case DType::F32: return memory::data_type::f32;
  case DType::I32: return memory::data_type::s32;
  case DType::Bool: return memory::data_type::u8;
  }
  return memory::data_type::f32;
}


memory::desc dense(const std::vector<int64_t> &extents, DType t = DType::F32) {
  Dims d = extents.empty() ? Dims{1} : Dims(extents.begin(), extents.end());
  return memory::desc(d, dnnlType(t), denseStrides(d));
}



/// Ops whose oneDNN primitive may write its result over operand 0.
bool eltwiseLike(OpKind op) {
  switch (op) {
  case OpKind::Tanh:
  case OpKind::Relu:
  case OpKind::Exp:
  case OpKind::Log:
  case OpKind::Sqrt:
  case OpKind::Sigmoid:
  case OpKind::Neg:
  case OpKind::Add:
  case OpKind::Sub:
  case OpKind::Mul:
  case OpKind::Div: return true;
  default: return false;
  }
}

std::optional<dnnl::algorithm> eltwiseAlgorithm(OpKind op, float &alpha) {
  alpha = 0;
  switch (op) {
  case OpKind::Tanh: return dnnl::algorithm::eltwise_tanh;
  case OpKind::Relu: return dnnl::algorithm::eltwise_relu;
  case OpKind::Exp: return dnnl::algorithm::eltwise_exp;
  case OpKind::Log: return dnnl::algorithm::eltwise_log;
  case OpKind::Sqrt: return dnnl::algorithm::eltwise_sqrt;
  case OpKind::Sigmoid: return dnnl::algorithm::eltwise_logistic;
  case OpKind::Neg: alpha = -1; return dnnl::algorithm::eltwise_linear;
  default: return std::nullopt;
  }
}

std::optional<dnnl::algorithm> binaryAlgorithm(OpKind op) {
  switch (op) {
  case OpKind::Add: return dnnl::algorithm::binary_add;
  case OpKind::Sub: return dnnl::algorithm::binary_sub;
  case OpKind::Mul: return dnnl::algorithm::binary_mul;
  case OpKind::Div: return dnnl::algorithm::binary_div;
  default: return std::nullopt;
  }
}

} // namespace

OnednnLowering::OnednnLowering(const ir::Graph &g) : graph_(g), engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {}
OnednnLowering::~OnednnLowering() = default;

void OnednnLowering::wait() { stream_.wait(); }

bool OnednnLowering::inPlace(const Plan &p, const ir::Node &node, size_t operand) const {
  if (operand != 0 || !eltwiseLike(node.op) || graph_.type(node.operands[0]).dtype != DType::F32) return false;
  return p.extents[node.operands[0]] == p.extents[node.result];
}

bool OnednnLowering::lower(Plan &p, size_t i) {
  return lowerCustom(p, i) || lowerPrimitive(p, i);
}

void OnednnLowering::addPrimitive(Plan &p, size_t node, std::string label, dnnl::primitive prim,
                                  std::vector<std::pair<int, Bound>> args) {
  Plan *plan = &p;
  std::vector<std::pair<int, Bound>> bound = std::move(args);
  // Memory objects are shared handles: the map built here sees the
  // addresses set on them at every run.
  std::unordered_map<int, memory> argMap;
  for (auto &[arg, bm] : bound) argMap.emplace(arg, bm.mem);
  dnnl::stream *stream = &stream_;
  addStep(p, node, std::move(label), [stream, plan, prim, bound, argMap]() mutable {
    for (auto &[arg, bm] : bound)
      if (bm.value >= 0) bm.mem.set_data_handle(plan->ptr[bm.value]);
    prim.execute(*stream, argMap);
  });
}

OnednnLowering::Bound OnednnLowering::bind(const memory::desc &md, ValueId v) {
  return {memory(md, engine_, DNNL_MEMORY_NONE), v};
}

bool OnednnLowering::lowerPrimitive(Plan &p, size_t i) {
  const Node &node = graph_.nodes()[i];
  auto ext = [&](ValueId v) -> const std::vector<int64_t> & { return p.extents[v]; };
  auto f32 = [&](ValueId v) { return graph_.type(v).dtype == DType::F32; };
  const auto &out = ext(node.result);
  if (ir::numElements(out) == 0) return false; // oneDNN rejects empty tensors; the reference handles them

  if (float alpha; auto alg = eltwiseAlgorithm(node.op, alpha)) {
    memory::desc md = dense({ir::numElements(out)});
    dnnl::eltwise_forward::desc d(dnnl::prop_kind::forward_inference, *alg, md, alpha, 0.f);
    dnnl::eltwise_forward::primitive_desc pd(d, engine_);
    addPrimitive(p, i, std::string(ir::opName(node.op)) + " (onednn eltwise)", dnnl::eltwise_forward(pd),
                 {{DNNL_ARG_SRC, bind(md, node.operands[0])}, {DNNL_ARG_DST, bind(md, node.result)}});
    return true;
  }

  if (node.op == OpKind::TanhGrad || node.op == OpKind::ReluGrad || node.op == OpKind::SigmoidGrad) {
    memory::desc md = dense({ir::numElements(out)});
    dnnl::algorithm alg = node.op == OpKind::TanhGrad    ? dnnl::algorithm::eltwise_tanh_use_dst_for_bwd
                          : node.op == OpKind::ReluGrad ? dnnl::algorithm::eltwise_relu
                                                        : dnnl::algorithm::eltwise_logistic_use_dst_for_bwd;
    dnnl::eltwise_forward::primitive_desc hint(
        dnnl::eltwise_forward::desc(dnnl::prop_kind::forward_training, alg, md, 0.f, 0.f), engine_);
    dnnl::eltwise_backward::primitive_desc pd(dnnl::eltwise_backward::desc(alg, md, md, 0.f, 0.f), engine_, hint);
    int dataArg = node.op == OpKind::ReluGrad ? DNNL_ARG_SRC : DNNL_ARG_DST;
    addPrimitive(p, i, std::string(ir::opName(node.op)) + " (onednn eltwise)", dnnl::eltwise_backward(pd),
                 {{dataArg, bind(md, node.operands[0])},
                  {DNNL_ARG_DIFF_DST, bind(md, node.operands[1])},
                  {DNNL_ARG_DIFF_SRC, bind(md, node.result)}});
    return true;
  }

  if (auto alg = binaryAlgorithm(node.op); alg && f32(node.result)) {
    ValueId a = node.operands[0], c = node.operands[1];
    // oneDNN broadcasts only src1; commutative ops can swap their operands.
    if (ext(a) != out && (node.op == OpKind::Add || node.op == OpKind::Mul) && ext(c) == out) std::swap(a, c);
    if (ext(a) != out) return false;
    size_t rank = std::max<size_t>(out.size(), 1);
    memory::desc mdOut = dense(out);
    Dims cd = alignRank(ext(c), rank);
    if (out.empty()) cd = {1};
    memory::desc mdC(cd, memory::data_type::f32, denseStrides(cd));
    dnnl::binary::primitive_desc pd(dnnl::binary::desc(*alg, mdOut, mdC, mdOut), engine_);
    addPrimitive(p, i, std::string(ir::opName(node.op)) + " (onednn binary)", dnnl::binary(pd),
                 {{DNNL_ARG_SRC_0, bind(mdOut, a)}, {DNNL_ARG_SRC_1, bind(mdC, c)}, {DNNL_ARG_DST, bind(mdOut, node.result)}});
    return true;
  }

  bool masked = node.operands.size() > 1; // masked variants have kiln kernels or the reference
  if ((node.op == OpKind::Softmax || node.op == OpKind::LogSoftmax) && !masked) {
    memory::desc md = dense(out);
    int axis = static_cast<int>(ir::normalizeAxis(ir::axisAttr(node.attrs), out.size()));
    if (node.op == OpKind::Softmax) {
      dnnl::softmax_forward::primitive_desc pd(
          dnnl::softmax_forward::desc(dnnl::prop_kind::forward_training, md, axis), engine_);
      addPrimitive(p, i, "softmax (onednn)", dnnl::softmax_forward(pd),
                   {{DNNL_ARG_SRC, bind(md, node.operands[0])}, {DNNL_ARG_DST, bind(md, node.result)}});
    } else {
      dnnl::logsoftmax_forward::primitive_desc pd(
          dnnl::logsoftmax_forward::desc(dnnl::prop_kind::forward_training, md, axis), engine_);
      addPrimitive(p, i, "log_softmax (onednn)", dnnl::logsoftmax_forward(pd),
                   {{DNNL_ARG_SRC, bind(md, node.operands[0])}, {DNNL_ARG_DST, bind(md, node.result)}});
    }
    return true;
  }

  if (node.op == OpKind::SoftmaxGrad) {
    memory::desc md = dense(out);
    int axis = static_cast<int>(ir::normalizeAxis(ir::axisAttr(node.attrs), out.size()));
    dnnl::softmax_forward::primitive_desc hint(
        dnnl::softmax_forward::desc(dnnl::prop_kind::forward_training, md, axis), engine_);
    dnnl::softmax_backward::primitive_desc pd(dnnl::softmax_backward::desc(md, md, axis), engine_, hint);
    addPrimitive(p, i, "softmax_grad (onednn)", dnnl::softmax_backward(pd),
                 {{DNNL_ARG_DST, bind(md, node.operands[0])},
                  {DNNL_ARG_DIFF_DST, bind(md, node.operands[1])},
                  {DNNL_ARG_DIFF_SRC, bind(md, node.result)}});
    return true;
  }

  if ((node.op == OpKind::Sum || node.op == OpKind::Mean || node.op == OpKind::Max) && !masked) {
    const auto &ex = ext(node.operands[0]);
    size_t axis = static_cast<size_t>(ir::normalizeAxis(ir::axisAttr(node.attrs), ex.size()));
    Dims src(ex.begin(), ex.end()), dst = src;
    dst[axis] = 1;
    if (ex[axis] == 0) return false;
    dnnl::algorithm alg = node.op == OpKind::Sum    ? dnnl::algorithm::reduction_sum
                          : node.op == OpKind::Mean ? dnnl::algorithm::reduction_mean
                                                    : dnnl::algorithm::reduction_max;
    memory::desc mdS(src, memory::data_type::f32, denseStrides(src)), mdD(dst, memory::data_type::f32, denseStrides(dst));
    dnnl::reduction::primitive_desc pd(dnnl::reduction::desc(alg, mdS, mdD, 0.f, 0.f), engine_);
    addPrimitive(p, i, std::string(ir::opName(node.op)) + " (onednn reduction)", dnnl::reduction(pd),
                 {{DNNL_ARG_SRC, bind(mdS, node.operands[0])}, {DNNL_ARG_DST, bind(mdD, node.result)}});
    return true;
  }

  if (node.op == OpKind::SumTo) {
    const auto &ex = ext(node.operands[0]);
    Dims src(ex.begin(), ex.end()), dst = alignRank(out, ex.size());
    if (src.empty()) return false;
    memory::desc mdS(src, memory::data_type::f32, denseStrides(src)), mdD(dst, memory::data_type::f32, denseStrides(dst));
    dnnl::reduction::primitive_desc pd(dnnl::reduction::desc(dnnl::algorithm::reduction_sum, mdS, mdD, 0.f, 0.f), engine_);
    addPrimitive(p, i, "sum_to (onednn reduction)", dnnl::reduction(pd),
                 {{DNNL_ARG_SRC, bind(mdS, node.operands[0])}, {DNNL_ARG_DST, bind(mdD, node.result)}});
    return true;
  }

  if (node.op == OpKind::Transpose && f32(node.result)) {
    // A reorder from the operand read with permuted strides into dense dst.
    ir::Shape perm = ir::attrDims(node.attrs, "perm");
    Dims srcStrides = denseStrides(Dims(ext(node.operands[0]).begin(), ext(node.operands[0]).end()));
    Dims dims(out.begin(), out.end()), strides(perm.size());
    for (size_t d = 0; d < perm.size(); ++d) strides[d] = srcStrides[perm[d].value];
    memory::desc mdS(dims, memory::data_type::f32, strides), mdD(dims, memory::data_type::f32, denseStrides(dims));
    dnnl::reorder::primitive_desc pd(engine_, mdS, engine_, mdD);
    addPrimitive(p, i, "transpose (onednn reorder)", dnnl::reorder(pd),
                 {{DNNL_ARG_FROM, bind(mdS, node.operands[0])}, {DNNL_ARG_TO, bind(mdD, node.result)}});
    return true;
  }
  return false;
}

bool OnednnLowering::lowerCustom(Plan &p, size_t i) {
  switch (graph_.nodes()[i].op) {
  case OpKind::Conv1d:
  case OpKind::Conv1dInputGrad:
  case OpKind::Conv1dWeightGrad: return lowerConv(p, i);
  default: return false;
  }
}

/// conv1d and its gradients as oneDNN convolution primitives. Sequences
/// [N, W, C] are oneDNN's nwc (the batch dims fold into N), read and written
/// in place; the weights [O, C, K] (oiw) are reordered into the blocked
/// layout the primitive picks (format `any`), and a weight gradient back,
/// each a small extra step: with plain oiw weights oneDNN 2.6 has only its
/// reference convolution (~1 GFLOP/s here), blocked ones get its JIT kernels.
/// The backward primitives take the forward one as their hint, as oneDNN
/// requires.
bool OnednnLowering::lowerConv(Plan &p, size_t i) {
  const ir::Node &node = graph_.nodes()[i];
  auto ext = [&](ValueId v) -> const std::vector<int64_t> & { return p.extents[v]; };
  bool forward = node.op == OpKind::Conv1d, inputGrad = node.op == OpKind::Conv1dInputGrad;
  // The x-like and y-like values: the input (or dx) and output (or dy).
  ValueId xv = forward || !inputGrad ? node.operands[0] : node.result;
  ValueId yv = forward ? node.result : node.operands[inputGrad ? 0 : 1];
  ValueId wv = forward || inputGrad ? node.operands[1] : node.result;
  const auto &ex = ext(xv), &ey = ext(yv), &ew = ext(wv);
  int64_t n = product(ex, 0, ex.size() - 2), width = ex[ex.size() - 2], outWidth = ey[ey.size() - 2];
  int64_t c = ex.back(), o = ey.back(), k = ew[2];
  if (n == 0 || width == 0 || outWidth == 0 || c == 0 || o == 0) return false; // the reference writes the zeros
  Dims padding{ir::attrInt(node.op, node.attrs, "padding")}, strides{1};
  memory::desc mdX({n, c, width}, memory::data_type::f32, {width * c, 1, c});
  memory::desc mdY({n, o, outWidth}, memory::data_type::f32, {outWidth * o, 1, o});
  memory::desc mdW({o, c, k}, memory::data_type::f32, {c * k, k, 1});
  memory::desc mdAny({o, c, k}, memory::data_type::f32, memory::format_tag::any);
  memory::desc mdB({o}, memory::data_type::f32, {1});
  bool bias = forward && node.operands.size() > 2;
  auto fwdDesc = bias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training,
                                                        dnnl::algorithm::convolution_direct, mdX, mdAny, mdB, mdY,
                                                        strides, padding, padding)
                      : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training,
                                                        dnnl::algorithm::convolution_direct, mdX, mdAny, mdY, strides,
                                                        padding, padding);
  dnnl::convolution_forward::primitive_desc fwd(fwdDesc, engine_);
  auto label = [&](const char *what, const dnnl::primitive_desc_base &pd) {
    return fmt::format("{} (onednn {})", what, pd.impl_info_str());
  };
  // The weights in the primitive's layout: the graph's own when they agree,
  // else a buffer of the plan's filled (or emptied) by a reorder step.
  auto weightsIn = [&](const memory::desc &want) -> Bound {
    if (want == mdW) return bind(mdW, wv);
    Bound blocked{memory(want, engine_), -1};
    dnnl::reorder::primitive_desc pd(engine_, mdW, engine_, want);
    addPrimitive(p, i, "conv1d weights to blocked (onednn reorder)", dnnl::reorder(pd),
                 {{DNNL_ARG_FROM, bind(mdW, wv)}, {DNNL_ARG_TO, blocked}});
    return blocked;
  };
  if (forward) {
    std::vector<std::pair<int, Bound>> args{{DNNL_ARG_SRC, bind(mdX, xv)}, {DNNL_ARG_WEIGHTS, weightsIn(fwd.weights_desc())},
                                            {DNNL_ARG_DST, bind(mdY, yv)}};
    if (bias) args.push_back({DNNL_ARG_BIAS, bind(mdB, node.operands[2])});
    addPrimitive(p, i, label("conv1d", fwd), dnnl::convolution_forward(fwd), std::move(args));
    return true;
  }
  if (inputGrad) {
    dnnl::convolution_backward_data::primitive_desc pd(
        dnnl::convolution_backward_data::desc(dnnl::algorithm::convolution_direct, mdX, mdAny, mdY, strides, padding,
                                              padding),
        engine_, fwd);
    Bound weights = weightsIn(pd.weights_desc());
    addPrimitive(p, i, label("conv1d_input_grad", pd), dnnl::convolution_backward_data(pd),
                 {{DNNL_ARG_DIFF_DST, bind(mdY, yv)}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DIFF_SRC, bind(mdX, xv)}});
    return true;
  }
  dnnl::convolution_backward_weights::primitive_desc pd(
      dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, mdX, mdAny, mdY, strides, padding,
                                               padding),
      engine_, fwd);
  memory::desc got = pd.diff_weights_desc();
  Bound dw = got == mdW ? bind(mdW, wv) : Bound{memory(got, engine_), -1};
  addPrimitive(p, i, label("conv1d_weight_grad", pd), dnnl::convolution_backward_weights(pd),
               {{DNNL_ARG_SRC, bind(mdX, xv)}, {DNNL_ARG_DIFF_DST, bind(mdY, yv)}, {DNNL_ARG_DIFF_WEIGHTS, dw}});
  if (!(got == mdW)) {
    dnnl::reorder::primitive_desc back(engine_, got, engine_, mdW);
    addPrimitive(p, i, "conv1d weight gradient from blocked (onednn reorder)", dnnl::reorder(back),
                 {{DNNL_ARG_FROM, dw}, {DNNL_ARG_TO, bind(mdW, wv)}});
  }
  return true;
}

namespace {

class OnednnExecutable : public PlannedExecutable {
public:
  OnednnExecutable(const ir::Graph &g, const runtime::CompileOptions &o) : PlannedExecutable(g, o), lowering_(graph_) {}

protected:
  bool lowerNode(Plan &p, size_t i) override { return lowerToKernel(graph_, p, i) || lowering_.lower(p, i); }
  bool inPlace(const Plan &p, const ir::Node &node, size_t operand) const override {
    return lowering_.inPlace(p, node, operand);
  }
  void synchronize() override { lowering_.wait(); }

private:
  OnednnLowering lowering_;
};

} // namespace

std::unique_ptr<runtime::Executable> compile(const ir::Graph &g, const runtime::CompileOptions &options) {
  return std::make_unique<OnednnExecutable>(g, options);
}

} // namespace kiln::backends::onednn
