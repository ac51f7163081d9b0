//===- passes/training.h - the compiled training step -----------*- C++ -*-===//
//
// buildTrainGraph() makes the whole training step one graph: the forward
// graph, a cross-entropy loss against an i32[B] `labels` input, the backward
// graph from passes/autodiff.h, optional clipping by global norm, and the
// optimizer update (SGD with momentum and weight decay, Adam, AdamW, with
// PyTorch's formulas, and lazy Adam: Adam on the rows of an embedding table
// that the step's ids name). The update is IR like everything else, so it prints,
// verifies and runs on every backend.
//
// Inputs: the forward inputs, `labels`, `lr` (f32[], the learning rate of
// this step, so schedules live in the runtime) and `step` (f32[], 1 for the
// first step; Adam's bias correction uses it). Parameters: the model's,
// plus optimizer state named `optimizer.<param>.<state>` with PyTorch's state
// names (momentum_buffer, exp_avg, exp_avg_sq), initialised to zeros.
// Outputs: `loss`, the forward outputs (`logits`), `grad.<param>`, and one
// output per parameter and state tensor named exactly like it, holding its
// value after the step.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/graph.h"

#include <string>
#include <vector>

namespace kiln::passes {

struct OptimizerConfig {
  enum class Kind { Sgd, Adam, AdamW, LazyAdam };
  Kind kind = Kind::Adam;
  double momentum = 0.0;    ///< SGD
  bool nesterov = false;    ///< SGD
  double weightDecay = 0.0; ///< SGD/Adam: L2 added to the gradient; AdamW: decoupled
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double clipNorm = 0.0; ///< > 0: clip gradients to this global L2 norm
  /// Also output `grad.<param>` (for `kiln run --graph=train` and the parity
  /// tests). The training loop leaves them out: as outputs they would be
  /// kept alive to the end of the step and copied out every step.
  bool outputGradients = true;
  /// Seeds the dropout masks of the step (with the op and the step number).
  uint64_t dropoutSeed = 0;

  /// "adam", "adamw", "lazy-adam" or "sgd"; kiln::Error otherwise.
  static Kind parseKind(const std::string &name);
};

/// The loss graph: forward plus `labels` input and `loss` output
/// (cross_entropy of the forward's first output, which must be f32[B,C]).
ir::Graph buildLossGraph(const ir::Graph &forward, const std::string &name = "loss");

/// The full training step, as described above.
ir::Graph buildTrainGraph(const ir::Graph &forward, const OptimizerConfig &config, const std::string &name = "train");

/// A table whose gradient leaves the gradient graph as rows: the step
/// input `ids` names them, and output `gradientRows` f32[ids..., E] holds
/// their gradient (embedding_grad's dy). The update graph takes them
/// flattened, from every process: `gradientRows.ids` i32[K] and
/// `gradientRows` f32[K, E].
struct RowTable {
  std::string param, ids, gradientRows;
};

/// The training step in two graphs, for data-parallel training
/// (runtime/distributed.h), where the gradients of every process are summed
/// between them:
///  - `gradients`: the step's inputs (not lr) plus `loss_scale` f32[], the
///    share of the global batch's counted rows this process has; outputs
///    `loss` (this process's mean), the forward outputs, and the gradients
///    of loss * loss_scale: `grad.<param>` for the `denseGradients`, and
///    the rows of the `rowTables` (so that the sum over processes is the
///    gradient of the global batch's mean loss);
///  - `update`: inputs the summed gradients (as the gradient graph names
///    them, rows flattened as RowTable says), `lr` and `step`; parameters and
///    optimizer state as buildTrainGraph's, and the same outputs for them.
/// Clipping, weight decay and the optimizer are buildTrainGraph's, applied
/// to the summed gradient.
struct SplitStep {
  ir::Graph gradients, update;
  std::vector<std::string> denseGradients; ///< `grad.<param>` outputs, in parameter order
  std::vector<RowTable> rowTables;
};
SplitStep buildSplitStep(const ir::Graph &forward, const OptimizerConfig &config);

} // namespace kiln::passes
