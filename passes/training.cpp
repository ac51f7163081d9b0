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

namespace {

/// The loss graph of a training step: with dropout, each dropout op reads
/// the `step` input (its mask changes every step, the same in the forward
/// and the backward) and the run's seed. `dropout` tells whether it has one.
ir::Graph stepLossGraph(const ir::Graph &forward, const OptimizerConfig &config, bool &dropout) {
  ir::Graph loss = buildLossGraph(forward);
  dropout = std::any_of(loss.nodes().begin(), loss.nodes().end(),
                        [](const ir::Node &n) { return n.op == ir::OpKind::Dropout && n.operands.size() == 1; });
  if (dropout) {
    ValueId stepInput = loss.addInput("step", {DType::F32, {}});
    for (ir::Node &n : loss.nodes())
      if (n.op == ir::OpKind::Dropout && n.operands.size() == 1) {
        n.operands.push_back(stepInput);
        n.attrs["seed"] = static_cast<int64_t>(config.dropoutSeed & 0x7fffffffffffffffull);
      }
  }
  return loss;
}

/// A parameter and its gradient as the optimizer sees them.
struct Trained {
  ValueId param, grad;
};

/// Lazy Adam's tables (and, for the distributed update, every table whose
/// gradient is one embedding_grad): the ids and the rows' gradient dy.
using RowGradients = std::map<ValueId, std::pair<ValueId, ValueId>>;

/// Steps 3 and 4 of the algorithm: clipping and the optimizer, appended to
/// `g`, which has the parameters and gradients `trained`, the rows of
/// `rowGradients` and the inputs lr and step. Adds the optimizer state and
/// one output per parameter and state tensor.
void appendUpdate(ir::Graph &g, std::vector<Trained> trained, RowGradients rowGradients, ValueId lr, ValueId step,
                  const OptimizerConfig &config) {
  Builder b(g);
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
    if (auto rows = rowGradients.find(p); rows != rowGradients.end() && config.kind == OptimizerConfig::Kind::LazyAdam) {
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
}

/// The parameters that differentiate() gave a `grad.` output, with it.
std::vector<Trained> trainedParams(const ir::Graph &g) {
  std::vector<Trained> trained;
  for (const ir::Output &o : g.outputs())
    if (o.name.rfind("grad.", 0) == 0) trained.push_back({g.findParam(o.name.substr(5)), o.value});
  return trained;
}

/// The tables whose gradient is one scatter-add of rows: embedding_grad of
/// a rank-2 parameter, by the ids and the rows' gradient dy.
RowGradients rowGradientsOf(const ir::Graph &g, const std::vector<Trained> &trained) {
  RowGradients rows;
  for (auto [p, grad] : trained) {
    const ir::ValueInfo &info = g.value(grad);
    if (info.kind != ir::ValueKind::Node) continue;
    const ir::Node &producer = g.nodes()[info.producer];
    if (producer.op == ir::OpKind::EmbeddingGrad && g.type(p).rank() == 2)
      rows[p] = {producer.operands[0], producer.operands[1]};
  }
  return rows;
}

} // namespace

ir::Graph buildTrainGraph(const ir::Graph &forward, const OptimizerConfig &config, const std::string &name) {
  bool dropout = false;
  ir::Graph loss = stepLossGraph(forward, config, dropout);
  ir::Graph g = differentiate(loss, "loss", name);
  Builder b(g);
  // (Without dropout, the step input comes after lr, as it always has.)
  ValueId lr = b.input("lr", {DType::F32, {}});
  ValueId step = dropout ? g.findInput("step") : b.input("step", {DType::F32, {}});
  std::vector<Trained> trained = trainedParams(g);
  RowGradients rows;
  if (config.kind == OptimizerConfig::Kind::LazyAdam) rows = rowGradientsOf(g, trained);
  appendUpdate(g, trained, rows, lr, step, config);
  if (!config.outputGradients) {
    std::vector<ir::Output> kept;
    for (const ir::Output &o : g.outputs())
      if (o.name.rfind("grad.", 0) != 0) kept.push_back(o);
    g.setOutputs(std::move(kept));
  }
  return g;
}

SplitStep buildSplitStep(const ir::Graph &forward, const OptimizerConfig &config) {
  SplitStep split;
  // The gradient graph: the loss times loss_scale, differentiated.
  bool dropout = false;
  ir::Graph loss = stepLossGraph(forward, config, dropout);
  if (dropout) {
    // Each process's rows draw the dropout masks they draw in the whole
    // batch: which row of the batch each of its rows is comes as an input,
    // i32[B] with the batch dim of the token ids.
    const ir::Shape &tokens = loss.type(loss.inputs().front()).shape;
    if (tokens.empty()) throw Error(fmt::format("fn {}: the token ids have no batch dim", forward.name()));
    ir::Dim batch = tokens[0];
    ValueId batchRows = loss.addInput("batch_rows", {DType::I32, {batch}});
    for (ir::Node &n : loss.nodes()) {
      if (n.op != ir::OpKind::Dropout || n.operands.size() != 2) continue;
      const ir::Shape &x = loss.type(n.operands[0]).shape;
      if (x.empty() || !(x[0] == batch))
        throw Error(fmt::format("fn {}: dropout of {} has no batch dim {} first; data-parallel training draws its "
                                "masks by rows of the batch",
                                forward.name(), loss.type(n.operands[0]).str(), batch.str()),
                    n.locs.empty() ? SourceLoc{} : n.locs.front());
      n.operands.push_back(batchRows);
    }
  }
  {
    Builder b(loss);
    ValueId scale = b.input("loss_scale", {DType::F32, {}});
    ValueId scaledLoss = b.mul(loss.outputs().back().value, scale);
    b.output("loss.scaled", scaledLoss);
  }
  ir::Graph grads = differentiate(loss, "loss.scaled", "gradients");
  std::vector<Trained> trained = trainedParams(grads);
  RowGradients rows = rowGradientsOf(grads, trained);
  std::vector<ir::Output> outputs;
  for (const ir::Output &o : grads.outputs()) {
    if (o.name == "loss.scaled") continue;
    if (o.name.rfind("grad.", 0) != 0) {
      outputs.push_back(o);
      continue;
    }
    ValueId p = grads.findParam(o.name.substr(5));
    auto row = rows.find(p);
    // A table's rows go out only when their ids are a step input, which
    // the runtime has at hand to send along.
    if (row != rows.end() && grads.value(row->second.first).kind == ir::ValueKind::Input) {
      const std::string &pname = grads.value(p).name;
      split.rowTables.push_back({pname, grads.value(row->second.first).name, "rows." + pname});
      outputs.push_back({"rows." + pname, row->second.second});
    } else {
      split.denseGradients.push_back(o.name);
      outputs.push_back(o);
    }
  }
  grads.setOutputs(std::move(outputs));
  split.gradients = std::move(grads);

  // The update graph: the parameters, their summed gradients as inputs,
  // and the optimizer of buildTrainGraph.
  ir::Graph &u = split.update;
  u.setName("update");
  Builder b(u);
  std::vector<Trained> updateTrained;
  RowGradients updateRows;
  for (ir::ValueId fp : forward.params()) {
    const ir::ValueInfo &info = forward.value(fp);
    if (forward.type(fp).dtype != DType::F32) continue;
    std::string pname = info.name;
    ValueId p = b.param(pname, forward.type(fp), info.attrs);
    auto table = std::find_if(split.rowTables.begin(), split.rowTables.end(),
                              [&](const RowTable &t) { return t.param == pname; });
    if (table == split.rowTables.end()) {
      updateTrained.push_back({p, b.input("grad." + pname, forward.type(fp))});
      continue;
    }
    const ir::Shape &shape = forward.type(fp).shape;
    ir::Dim k = ir::Dim::named(fmt::format("K{}", updateRows.size() + 1));
    ValueId ids = b.input(table->gradientRows + ".ids", {DType::I32, {k}});
    ValueId dy = b.input(table->gradientRows, {DType::F32, {k, shape[1]}});
    updateRows[p] = {ids, dy};
    updateTrained.push_back({p, b.create(ir::OpKind::EmbeddingGrad, {ids, dy}, {{"rows", shape[0].value}})});
  }
  ValueId lr = b.input("lr", {DType::F32, {}});
  ValueId step = b.input("step", {DType::F32, {}});
  appendUpdate(u, updateTrained, updateRows, lr, step, config);
  return split;
}

} // namespace kiln::passes
