//===- passes/training.cpp - the compiled training step -------------------===//
//
// The algorithm:
//  1. Loss: copy the forward graph, add the `labels` input and
//     `loss = cross_entropy(logits, labels)`.
//  2. Gradients: passes::differentiate on the loss.
//  3. Clipping (optional): total = sqrt(sum over all grads of sum(g^2));
//     every gradient is scaled by min(1, clip / (total + 1e-6)), which is
//     torch.nn.utils.clip_grad_norm_.
//  4. Update, per f32 parameter p with gradient g, as torch.optim does it
//     (1.13, single-tensor path):
//       SGD:   g += wd*p; buf = momentum*buf + g; g = nesterov ? g + momentum*buf : buf;
//              p -= lr*g              (buf starts at 0, so the first buf is g)
//       Adam:  g += wd*p; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
//              p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
//       AdamW: p *= 1 - lr*wd, then Adam without the L2 term.
//       Lazy Adam: Adam, except for a table whose gradient is one
//              embedding_grad(ids, dy): adam_rows(p, m, v, ids, dy) applies
//              Adam (and the L2 term) only to the rows the ids name, as
//              torch.optim.SparseAdam does, so a step costs the rows it
//              touches instead of the whole table; every other row keeps
//              its value and its moments.
//     b^t is computed as exp(t * ln b) from the `step` input t. Adam's two
//     moments and the parameter step are one op each (adam_moment,
//     adam_update), so each is a single pass over the tensor.
//
//===----------------------------------------------------------------------===//
#include "passes/training.h"

#include "ir/builder.h"
#include "passes/autodiff.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <fmt/format.h>

namespace kiln::passes {

using ir::Builder;
using ir::DType;
using ir::Dim;
using ir::ValueId;

OptimizerConfig::Kind OptimizerConfig::parseKind(const std::string &name) {
  if (name == "adam") return Kind::Adam;
  if (name == "adamw") return Kind::AdamW;
  if (name == "lazy-adam") return Kind::LazyAdam;
  if (name == "sgd") return Kind::Sgd;
  throw Error(fmt::format("unknown optimizer '{}' (expected adam, adamw, lazy-adam or sgd)", name));
}

ir::Graph buildLossGraph(const ir::Graph &forward, const std::string &name) {
  if (forward.outputs().empty()) throw Error(fmt::format("graph @{} has no outputs to train", forward.name()));
  ir::Graph g = forward;
  g.setName(name);
  g.clearExplained(); // the weights to explain are the forward's business
  Builder b(g);
  ValueId logits = g.outputs().front().value;
  const ir::TensorType &t = g.type(logits);
  if (t.dtype != DType::F32 || t.rank() != 2)
    throw Error(fmt::format("training needs the first output of @{} to be logits f32[B,C], got {} '{}'",
                            forward.name(), t.str(), g.outputs().front().name));
  if (g.findInput("labels") >= 0) throw Error(fmt::format("graph @{} already has an input named 'labels'", forward.name()));
  ValueId labels = b.input("labels", {DType::I32, {t.shape[0]}});
  const ir::Node &producer = g.nodes()[g.value(logits).producer];
  b.setLoc(producer.locs.empty() ? SourceLoc{} : producer.locs.front());
  ValueId loss = b.crossEntropy(logits, labels);
  g.value(loss).name = "loss";
  b.output("loss", loss);
  return g;
}

namespace {

/// Sum of all elements of a constant-shaped tensor, as f32[].
ValueId sumAll(Builder &b, ValueId x) {
  const ir::Shape &s = b.graph().type(x).shape;
  int64_t n = 1;
  for (const Dim &d : s) n *= d.value;
  return b.sum(b.reshape(x, {Dim::constant(n)}), 0);
}

/// b^t for a constant base and a scalar tensor t.
ValueId powConst(Builder &b, double base, ValueId t) { return b.exp(b.mul(t, b.constant(std::log(base)))); }

/// `x * factor + y * (1 - factor)` style helpers keep the update readable.
ValueId scaled(Builder &b, ValueId x, double factor) { return factor == 1.0 ? x : b.mul(x, b.constant(factor)); }

} // namespace

ir::Graph buildTrainGraph(const ir::Graph &forward, const OptimizerConfig &config, const std::string &name) {
  // Dropout is active in the training step: each one reads the step number
  // (its mask changes every step, the same in the forward and the backward).
  // (Without dropout, the step input comes after lr, as it always has.)
  ir::Graph loss = buildLossGraph(forward);
  bool dropout = std::any_of(loss.nodes().begin(), loss.nodes().end(),
                             [](const ir::Node &n) { return n.op == ir::OpKind::Dropout && n.operands.size() == 1; });
  if (dropout) {
    ValueId stepInput = loss.addInput("step", {DType::F32, {}});
    for (ir::Node &n : loss.nodes())
      if (n.op == ir::OpKind::Dropout && n.operands.size() == 1) {
        n.operands.push_back(stepInput);
        n.attrs["seed"] = static_cast<int64_t>(config.dropoutSeed & 0x7fffffffffffffffull);
      }
  }
  ir::Graph g = differentiate(loss, "loss", name);
  Builder b(g);
  ValueId lr = b.input("lr", {DType::F32, {}});
  ValueId step = dropout ? g.findInput("step") : b.input("step", {DType::F32, {}});

  // Parameters and their gradients, before any state is added.
  std::vector<std::pair<ValueId, ValueId>> trained;
  for (const ir::Output &o : g.outputs())
    if (o.name.rfind("grad.", 0) == 0) trained.push_back({g.findParam(o.name.substr(5)), o.value});

  // Lazy Adam's tables: the gradients that are one scatter-add of rows,
  // by the ids and the rows' gradient dy (scaled with the rest when clipping).
  std::map<ValueId, std::pair<ValueId, ValueId>> rowGradients;
  if (config.kind == OptimizerConfig::Kind::LazyAdam)
    for (auto [p, grad] : trained) {
      const ir::ValueInfo &info = g.value(grad);
      if (info.kind != ir::ValueKind::Node) continue;
      const ir::Node &producer = g.nodes()[info.producer];
      if (producer.op == ir::OpKind::EmbeddingGrad && g.type(p).rank() == 2)
        rowGradients[p] = {producer.operands[0], producer.operands[1]};
    }

  if (config.clipNorm > 0) {
    ValueId total = b.constant(0.0);
    for (auto [p, grad] : trained) total = b.add(total, sumAll(b, b.mul(grad, grad)));
    ValueId norm = b.sqrt(total);
    g.value(norm).name = "grad_norm";
    ValueId coef = b.div(b.constant(config.clipNorm), b.add(norm, b.constant(1e-6)));
    ValueId one = b.constant(1.0);
    coef = b.select(b.compare(ir::OpKind::Less, coef, one), coef, one);
    for (auto &[p, grad] : trained) grad = b.mul(grad, coef);
    for (auto &[p, rows] : rowGradients) rows.second = b.mul(rows.second, coef);
  }

  const std::string stateInit = "zeros";
  auto state = [&](ValueId p, const std::string &what) {
    return b.param(fmt::format("optimizer.{}.{}", g.value(p).name, what), g.type(p), {{"init", stateInit}});
  };

  // Scalars shared by every parameter's update.
  ValueId stepSize = lr, bc2Sqrt = -1;
  bool adam = config.kind != OptimizerConfig::Kind::Sgd;
  if (adam) {
    ValueId one = b.constant(1.0);
    stepSize = b.div(lr, b.sub(one, powConst(b, config.beta1, step)));
    bc2Sqrt = b.sqrt(b.sub(one, powConst(b, config.beta2, step)));
  }

  std::vector<std::pair<std::string, ValueId>> updates;
  for (auto [p, grad] : trained) {
    const std::string pname = g.value(p).name; // a copy: adding values reallocates the table
    if (auto rows = rowGradients.find(p); rows != rowGradients.end()) {
      ValueId m = state(p, "exp_avg"), v = state(p, "exp_avg_sq");
      auto [ids, dy] = rows->second;
      std::vector<ValueId> next = b.createMulti(
          ir::OpKind::AdamRows, {p, m, v, ids, dy, stepSize, bc2Sqrt},
          {{"beta1", config.beta1}, {"beta2", config.beta2}, {"eps", config.eps}, {"weight_decay", config.weightDecay}});
      updates.push_back({g.value(m).name, next[1]});
      updates.push_back({g.value(v).name, next[2]});
      updates.push_back({pname, next[0]});
      continue;
    }
    ValueId param = p;
    if (config.weightDecay != 0 && config.kind != OptimizerConfig::Kind::AdamW)
      grad = b.add(grad, scaled(b, param, config.weightDecay));
    if (config.kind == OptimizerConfig::Kind::AdamW && config.weightDecay != 0)
      param = b.mul(param, b.sub(b.constant(1.0), b.mul(lr, b.constant(config.weightDecay))));

    if (!adam) {
      if (config.momentum != 0) {
        ValueId buf = state(p, "momentum_buffer");
        ValueId newBuf = b.add(scaled(b, buf, config.momentum), grad);
        updates.push_back({g.value(buf).name, newBuf});
        grad = config.nesterov ? b.add(grad, scaled(b, newBuf, config.momentum)) : newBuf;
      }
      updates.push_back({pname, b.sub(param, b.mul(grad, lr))});
      continue;
    }
    ValueId m = state(p, "exp_avg"), v = state(p, "exp_avg_sq");
    // One pass over the parameter per output, instead of a chain of
    // elementwise ops each reading and writing the whole tensor.
    ValueId newM = b.create(ir::OpKind::AdamMoment, {m, grad}, {{"beta", config.beta1}});
    ValueId newV = b.create(ir::OpKind::AdamMoment, {v, grad}, {{"beta", config.beta2}, {"square", true}});
    ValueId newP = b.create(ir::OpKind::AdamUpdate, {param, newM, newV, stepSize, bc2Sqrt}, {{"eps", config.eps}});
    updates.push_back({g.value(m).name, newM});
    updates.push_back({g.value(v).name, newV});
    updates.push_back({pname, newP});
  }
  for (const auto &[outName, value] : updates) b.output(outName, value);
  if (!config.outputGradients) {
    std::vector<ir::Output> kept;
    for (const ir::Output &o : g.outputs())
      if (o.name.rfind("grad.", 0) != 0) kept.push_back(o);
    g.setOutputs(std::move(kept));
  }
  return g;
}

} // namespace kiln::passes
