//===- runtime/checkpoint.h - training checkpoints --------------*- C++ -*-===//
//
// A checkpoint is one safetensors file: every model parameter under its
// PyTorch state_dict name (so `safetensors.torch.load_file` + filtering out
// the `optimizer.` prefix gives a loadable state_dict), the optimizer state
// under `optimizer.<param>.<state>`, and in the metadata everything needed to
// evaluate, predict and resume exactly: the vocabulary, the label names, the
// model source text, the hyper-parameters, the training configuration and
// the position in the run (epoch, batch within the epoch, global step).
// Saving is atomic (runtime/safetensors.h), so a crash mid-save leaves the
// previous checkpoint intact. Loading validates the metadata and reports
// every problem as kiln::Error naming the file.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/graph.h"
#include "runtime/data.h"
#include "runtime/tensor.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace kiln::runtime {

struct Checkpoint {
  /// Parameters and optimizer state by name.
  std::map<std::string, Tensor> tensors;

  std::vector<std::string> vocab;  ///< id -> token, vocab[0] == "<pad>", vocab[1] == "<unk>"
  std::vector<std::string> labels; ///< class index -> label name
  std::string modelSource;         ///< the .kiln text the model was compiled from
  std::string modelFile;           ///< its path when trained (informational)
  /// Hyper-parameter values the model was compiled with (`--param`s, plus
  /// vocab/classes derived from the data), as text.
  std::map<std::string, std::string> hyperParams;
  /// Training configuration as flat key -> value text (optimizer, lr,
  /// batch, max_len, seed, epochs, schedule, ...), enough to resume.
  std::map<std::string, std::string> config;

  int64_t epoch = 0; ///< epochs completed
  int64_t batch = 0; ///< batches completed within the current epoch
  int64_t step = 0;  ///< optimizer steps completed in total

  /// Model selection on validation data (kiln train --select-by): where it
  /// stands, so that --resume continues it exactly.
  struct Selection {
    int64_t bestEpoch = 0;       ///< 1-based epoch of the best score; 0: none yet
    double bestScore = 0;        ///< its validation score (kiln train's --select-by metric)
    int64_t epochsSinceBest = 0; ///< completed epochs after bestEpoch
    double lrScale = 1;          ///< product of the plateau decays so far
    bool stopped = false;        ///< early stopping ended the run
  } selection;
  /// The parameters of the selected (best) epoch when they are not the
  /// last step's in `tensors` (from which a run resumes). The file stores
  /// them under the parameters' own names, so that eval, predict and
  /// export read the selected model, and the last step's as `last.NAME`.
  std::map<std::string, Tensor> selected;
};

/// Writes atomically (temp file, fsync, rename).
void saveCheckpoint(const std::string &path, const Checkpoint &ckpt);

/// Reads and validates; kiln::Error naming the file for a missing or
/// malformed metadata field, and for anything runtime/safetensors.h rejects.
Checkpoint loadCheckpoint(const std::string &path);

/// Checks that the logits of a model (the first output of its forward
/// graph, f32[B,C]) have one column per label; kiln::Error naming both
/// counts otherwise. train, eval and predict all call it, so a
/// `--param classes=5` on 3-label data fails before any work instead of
/// training a model whose extra classes have no name.
void checkClassCount(const ir::Graph &forward, const std::vector<std::string> &labels);

/// The training configuration's `key` as a non-negative integer, a
/// non-negative number or text; kiln::Error naming the key and `file` when it is missing or is
/// not one (a checkpoint edited by hand, or from another tool).
using Config = std::map<std::string, std::string>;
int64_t configInteger(const Config &config, const std::string &key, const std::string &file);
double configNumber(const Config &config, const std::string &key, const std::string &file);
const std::string &configString(const Config &config, const std::string &key, const std::string &file);
/// kiln::Error unless the model's derived inputs (runtime/data.h) are
/// those the checkpoint's run encoded its data with (config "inputs";
/// absent, in checkpoints from before derived inputs, means none).
void checkInputRecipe(const InputRecipe &model, const Config &config, const std::string &file);

/// The model's parameters: the selected epoch's (Checkpoint::selected)
/// where there are, else the last step's; no optimizer state (`optimizer.`).
std::map<std::string, Tensor> modelTensors(const Checkpoint &ckpt);

} // namespace kiln::runtime
