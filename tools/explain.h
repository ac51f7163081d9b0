//===- tools/explain.h - what a prediction attended to, shown -*- C++ -*-===//
//
// `kiln predict --explain` runs the explain graph (passes/explain.h) and
// shows, for each text, the weight each token received from the values
// the model marked with @explain: coloured tokens on a terminal, tokens
// with their weights in plain text otherwise, and with --html one
// self-contained page (inline CSS, no script, no external resource) with a
// heatmap per text, its predicted label and probabilities.
//
// One weight per token: a per-token marked value ([B, T] or [B, T, 1]) as
// it is; queries x keys ([B, ..., T, T]) averaged over the text's real
// query positions and the dims between (heads); several marked values
// (a module used twice) averaged. So a masked softmax's weights still sum
// to 1 over the text's tokens; what a model gives padding shows as the
// shortfall. The tokens shown are the tokenizer's (runtime/text.h: case
// folded, NFKC), cut to --max-len as the model read them.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/graph.h"
#include "passes/explain.h"
#include "runtime/tensor.h"

#include <string>
#include <vector>

namespace kiln::tools::explain {

/// One marked value the explain graph outputs, and how to read it.
struct Source {
  std::string output;   ///< the explain graph's output name
  std::string value;    ///< the DSL name of the marked value (attention.weights)
  std::string type;     ///< its symbolic type, f32[B,T,1]
  std::string location; ///< "line N of FILE": the expression that computed it
  passes::WeightsLayout layout;
};

/// The explain outputs of graph g (built by passes::buildExplainGraph).
std::vector<Source> sourcesOf(const ir::Graph &g);

/// What the weights are, in one sentence for people (the page and --help).
std::string describe(const std::vector<Source> &sources);

/// One weight per token of the first `tokens` positions of batch row 0 of
/// `weights`, an explain output laid out as `layout`; kiln::Error when its
/// shape does not hold them.
std::vector<double> perTokenWeights(const runtime::Tensor &weights, passes::WeightsLayout layout, size_t tokens);

/// One explained prediction.
struct Explained {
  std::string text;
  std::vector<std::string> tokens; ///< as the model read them
  std::vector<bool> known;         ///< in the vocabulary (else read as <unk>)
  size_t tokensInText = 0;         ///< before the cut to --max-len
  std::vector<double> weights;     ///< one per token
  std::vector<std::string> labels; ///< most probable first
  std::vector<double> probs;
};

/// The tokens and their weights as one line: `token 0.1234` pairs, or on a
/// terminal (colour) each token on a background as strong as its weight.
std::string tokensLine(const Explained &e, bool colour);

/// What the page says about the run.
struct PageInfo {
  std::string model;      ///< the model file (as the checkpoint names it)
  std::string checkpoint; ///< --ckpt
  std::vector<Source> sources;
};

/// The whole self-contained HTML page.
std::string htmlPage(const std::vector<Explained> &texts, const PageInfo &info);

} // namespace kiln::tools::explain
