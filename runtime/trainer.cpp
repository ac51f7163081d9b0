//===- runtime/trainer.cpp - the training loop and evaluation -------------===//
//
// One step: make the batch, run the compiled step with this step's learning
// rate, move every output named like a store entry (the updated parameters
// and optimizer state) into the store. Everything that decides which
// examples a step sees is a pure function of (seed, epoch, batch index), so
// resuming at a checkpoint's position replays the uninterrupted run.
//
//===----------------------------------------------------------------------===//
#include "runtime/trainer.h"

#include "ir/diagnostic.h"
#include "ir/printer.h"

#include <algorithm>
#include <array>
#include <optional>
#include <tuple>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <fmt/format.h>
#include <unistd.h>

namespace kiln::runtime {

namespace {

using Clock = std::chrono::steady_clock;

std::atomic<bool> stopRequested{false};
extern "C" void onInterrupt(int) { stopRequested = true; }

std::string duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

/// argmax of each row of logits f32[B,C].
std::vector<int32_t> argmaxRows(const Tensor &logits) {
  int64_t rows = logits.shape()[0], cols = logits.shape()[1];
  std::vector<int32_t> out(static_cast<size_t>(rows));
  auto x = logits.f32();
  for (int64_t r = 0; r < rows; ++r)
    out[r] = static_cast<int32_t>(std::max_element(x.begin() + r * cols, x.begin() + (r + 1) * cols) -
                                  (x.begin() + r * cols));
  return out;
}

/// Mean cross-entropy of a batch, computed from the logits in double.
double batchLoss(const Tensor &logits, const Tensor &labels) {
  int64_t rows = logits.shape()[0], cols = logits.shape()[1];
  auto x = logits.f32();
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float *row = x.data() + r * cols;
    double mx = *std::max_element(row, row + cols), sum = 0;
    for (int64_t c = 0; c < cols; ++c) sum += std::exp(row[c] - mx);
    total += mx + std::log(sum) - row[labels.i32()[r]];
  }
  return rows ? total / rows : 0;
}

/// A store entry the training step updates where it lies: an adam_rows
/// result whose kernel, given its operand's own storage, rewrites only the
/// rows the batch used (the other rows of a large embedding table would
/// otherwise be copied every step).
struct InPlaceUpdate {
  std::string name; ///< the store entry and the step's output of that name
  std::string ids;  ///< the step input whose ids select the updated rows
};

/// The adam_rows results that may be written over their operands: the
/// table, first and second moment are parameters of the step with outputs
/// of their own names; nothing but the adam_rows node reads the moments,
/// and only gathers (embedding nodes) before it read the table, so no op
/// of the step can see a row after it changed (the plans run the nodes in
/// order). An ids operand that is not a step input leaves the node out:
/// its rows could not be checked for non-finite values.
std::vector<InPlaceUpdate> inPlaceUpdates(const ir::Graph &g) {
  std::vector<InPlaceUpdate> found;
  auto users = g.users();
  auto isParam = [&](ir::ValueId v) { return std::find(g.params().begin(), g.params().end(), v) != g.params().end(); };
  auto outputNamed = [&](const std::string &name, ir::ValueId v) {
    return std::any_of(g.outputs().begin(), g.outputs().end(),
                       [&](const ir::Output &o) { return o.name == name && o.value == v; });
  };
  for (size_t k = 0; k < g.nodes().size(); ++k) {
    const ir::Node &node = g.nodes()[k];
    if (node.op != ir::OpKind::AdamRows) continue;
    ir::ValueId ids = node.operands[3];
    if (std::find(g.inputs().begin(), g.inputs().end(), ids) == g.inputs().end()) continue;
    bool ok = true;
    for (size_t i = 0; i < 3 && ok; ++i) {
      ir::ValueId state = node.operands[i];
      ok = isParam(state) && outputNamed(g.value(state).name, node.resultAt(i));
      for (ir::NodeId user : users[state]) {
        if (static_cast<size_t>(user) == k) continue;
        ok = ok && i == 0 && g.nodes()[user].op == ir::OpKind::Embedding && g.nodes()[user].operands[0] == state &&
             static_cast<size_t>(user) < k;
      }
      ok = ok && !g.isOutput(state);
    }
    if (!ok) continue;
    for (size_t i = 0; i < 3; ++i) found.push_back({g.value(node.operands[i]).name, g.value(ids).name});
  }
  return found;
}

/// The first non-finite element of the rows of `table` f32[V, E] that
/// `ids` names (out-of-range ids were refused by the step).
std::optional<int64_t> firstNonFiniteRow(const Tensor &table, const Tensor &ids) {
  int64_t rows = table.shape()[0], width = table.numel() / std::max<int64_t>(rows, 1);
  auto values = table.f32();
  for (int32_t id : ids.i32()) {
    if (id < 0 || id >= rows) continue;
    for (int64_t e = 0; e < width; ++e)
      if (!std::isfinite(values[id * width + e])) return id * width + e;
  }
  return std::nullopt;
}

/// FNV-1a of the names and bytes of a parameter store: equal on every
/// process of a data-parallel run, whose stores must stay equal.
uint64_t contentHash(const TensorMap &store) {
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&](const std::byte *data, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<uint64_t>(data[i])) * 0x100000001b3ull;
  };
  for (const auto &[name, t] : store) {
    mix(reinterpret_cast<const std::byte *>(name.data()), name.size() + 1);
    mix(t.raw(), t.byteSize());
  }
  return h;
}

} // namespace

// checkpoint.h and data.h declare these two; they are here, with the
// other code that needs a graph, so that checkpoints and data (which an
// exported model links, runtime/exported_model.h) do not need the IR.
void checkClassCount(const ir::Graph &forward, const std::vector<std::string> &labels) {
  if (forward.outputs().empty()) return; // the training-step builder reports this
  const ir::TensorType &t = forward.type(forward.outputs().front().value);
  if (t.rank() != 2 || t.shape[1].isSymbolic()) return;
  int64_t classes = t.shape[1].value;
  if (classes == static_cast<int64_t>(labels.size())) return;
  std::string names;
  for (size_t i = 0; i < labels.size() && i < 10; ++i) names += (i ? ", " : "") + labels[i];
  if (labels.size() > 10) names += fmt::format(", ... ({} more)", labels.size() - 10);
  throw Error(fmt::format("the model has {} output classes (logits {} '{}') but there {} {} label{}: {}{}", classes,
                          t.str(), forward.outputs().front().name, labels.size() == 1 ? "is" : "are", labels.size(),
                          labels.size() == 1 ? "" : "s", names,
                          classes > static_cast<int64_t>(labels.size()) ? "; drop --param classes or set it to the number of labels"
                                                                         : ""));
}

size_t minimumLength(const ir::Graph &g) {
  if (g.inputs().empty()) return 1;
  const ir::Shape &tokens = g.type(g.inputs().front()).shape;
  if (tokens.size() < 2 || !tokens[1].isSymbolic()) return 1;
  ir::SymbolBindings least = g.minimumExtents();
  auto it = least.find(tokens[1].symbol);
  return it == least.end() ? 1 : std::max<size_t>(1, static_cast<size_t>(it->second));
}

InputRecipe inputRecipe(const ir::Graph &g) {
  if (g.inputs().empty())
    throw Error(fmt::format("fn {} has no inputs; the data pipeline gives it the token ids (tokens: i32[B, T])", g.name()));
  InputRecipe recipe;
  recipe.tokens = g.value(g.inputs().front()).name;
  for (size_t i = 1; i < g.inputs().size(); ++i) {
    const ir::ValueInfo &in = g.value(g.inputs()[i]);
    auto attr = [&](const char *key) -> const ir::Attr * {
      auto it = in.attrs.find(key);
      return it == in.attrs.end() ? nullptr : &it->second;
    };
    const ir::Attr *kind = attr("derived"), *n = attr("n"), *buckets = attr("buckets");
    if (!kind)
      throw Error(fmt::format("input '{}' of fn {} is neither the token ids (its first input, '{}') nor derived from "
                              "them (`{}: i32[B, T] = ngrams({}, n=2, buckets=100000)`): the data pipeline has "
                              "nothing to give it",
                              in.name, g.name(), recipe.tokens, in.name, recipe.tokens));
    auto *kindName = std::get_if<std::string>(kind);
    auto *nValue = n ? std::get_if<int64_t>(n) : nullptr;
    auto *bucketCount = buckets ? std::get_if<int64_t>(buckets) : nullptr;
    if (!kindName || *kindName != "ngrams" || !nValue || !bucketCount || *nValue < 1 || *bucketCount < 2 ||
        *bucketCount > INT32_MAX)
      throw Error(fmt::format("input '{}' of fn {} has a derived-input recipe kiln does not know ({}); expected "
                              "{{derived = \"ngrams\", from = \"{}\", n = N, buckets = M}}",
                              in.name, g.name(), ir::printAttrs(in.attrs), recipe.tokens));
    recipe.derived.push_back({in.name, *nValue, *bucketCount});
  }
  return recipe;
}

double scheduledLr(const TrainConfig &config, int64_t step, int64_t totalSteps) {
  if (config.schedule == "constant") return config.lr;
  if (config.schedule != "linear") throw Error(fmt::format("unknown schedule '{}' (expected constant or linear)", config.schedule));
  if (config.warmupSteps > 0 && step <= config.warmupSteps)
    return config.lr * static_cast<double>(step) / static_cast<double>(config.warmupSteps);
  int64_t decaySteps = std::max<int64_t>(1, totalSteps - config.warmupSteps);
  double remaining = static_cast<double>(totalSteps - step) / static_cast<double>(decaySteps);
  return config.lr * std::max(0.0, remaining);
}

double selectionScore(const std::string &selectBy, const EvalResult &valid) {
  if (selectBy == "loss") return valid.meanLoss;
  if (selectBy == "accuracy") return valid.confusion.accuracy();
  if (selectBy == "macro-f1") return valid.confusion.macroF1();
  throw Error(fmt::format("unknown model selection '{}' (expected loss, accuracy or macro-f1)", selectBy));
}

bool scoreImproves(const std::string &selectBy, double score, double best) {
  return selectBy == "loss" ? score < best : score > best; // ties keep the earlier epoch
}

EvalResult evaluate(Executable &forward, const TensorMap &params, const EncodedData &data, int64_t batchSize,
                    Communicator *comm) {
  const std::string &logitsName = forward.graph().outputs().front().name;
  const InputRecipe recipe = inputRecipe(forward.graph());
  EvalResult r;
  if (batchSize <= 0) throw Error(fmt::format("the evaluation batch size must be positive, got {}", batchSize));
  std::vector<size_t> order = epochOrder(data.ids.size(), 0, 0, false);
  // Across processes, each evaluates its own part of the data and the
  // counts and loss sums are added up.
  size_t first = 0, last = order.size();
  // A batch larger than the data is the whole data (and begin + step below cannot wrap).
  size_t step = std::min(std::max<size_t>(last - first, 1), static_cast<size_t>(batchSize));
  double lossSum = 0;
  const ir::TensorType &logitsType = forward.graph().type(forward.graph().outputs().front().value);
  if (logitsType.rank() == 2 && !logitsType.shape[1].isSymbolic())
    r.confusion = ConfusionMatrix(static_cast<size_t>(logitsType.shape[1].value));
  bool sized = logitsType.rank() == 2 && !logitsType.shape[1].isSymbolic();
  for (size_t begin = first; begin < last; begin += step) {
    size_t end = std::min(last, begin + step);
    Batch batch = makeBatch(data, order, begin, end, minimumLength(forward.graph()));
    TensorMap out = forward.run(batchInputs(batch, recipe), params);
    const Tensor &logits = out.at(logitsName);
    if (!sized) {
      r.confusion = ConfusionMatrix(static_cast<size_t>(logits.shape()[1]));
      sized = true;
    }
    std::vector<int32_t> predicted = argmaxRows(logits);
    for (size_t i = 0; i < predicted.size(); ++i) r.confusion.add(batch.labels.i32()[i], predicted[i]);
    lossSum += batchLoss(logits, batch.labels) * static_cast<double>(end - begin);
    r.examples += static_cast<int64_t>(end - begin);
  }
  if (comm) {
    size_t classes = r.confusion.classes();
    std::vector<double> totals(classes * classes + 2);
    for (size_t t = 0; t < classes; ++t)
      for (size_t p = 0; p < classes; ++p) totals[t * classes + p] = static_cast<double>(r.confusion.count(t, p));
    totals[classes * classes] = lossSum;
    totals[classes * classes + 1] = static_cast<double>(r.examples);
    comm->sum(totals);
    r.confusion = ConfusionMatrix(classes);
    for (size_t t = 0; t < classes; ++t)
      for (size_t p = 0; p < classes; ++p)
        r.confusion.add(static_cast<int32_t>(t), static_cast<int32_t>(p), static_cast<int64_t>(totals[t * classes + p]));
    lossSum = totals[classes * classes];
    r.examples = static_cast<int64_t>(totals[classes * classes + 1]);
  }
  r.meanLoss = r.examples ? lossSum / static_cast<double>(r.examples) : 0;
  return r;
}

void train(Executable &trainStep, Executable &forward, const TrainConfig &config, const EncodedData &trainData,
           const EncodedData *validData, Checkpoint &ckpt, std::FILE *out) {
  checkClassCount(forward.graph(), ckpt.labels);
  if (config.batchSize <= 0) throw Error(fmt::format("the batch size must be positive, got {}", config.batchSize));
  if (config.epochs < 0) throw Error(fmt::format("the number of epochs must not be negative, got {}", config.epochs));
  const DataParallel *dp = config.dataParallel;
  // Data-parallel, trainData holds this process's examples and the shard
  // tells the rest (runtime/data_shard.h).
  const TrainShard *shard = dp ? dp->shard : nullptr;
  if (dp && !shard) throw Error("a data-parallel run needs its data shard"); // a caller's bug
  // Lengths by training index, the whole run's.
  auto exampleLength = [&](size_t j) -> size_t { return shard ? static_cast<size_t>(shard->length[j]) : trainData.ids[j].size(); };
  const size_t trainTotal = shard ? shard->local.size() : trainData.ids.size();
  if (trainTotal == 0) throw Error("no training examples");
  const bool validating = validData && (shard ? shard->validTotal > 0 : !validData->ids.empty());
  // The graph whose outputs update the store: the step's, or the update's.
  const ir::Graph &g = dp ? dp->update->graph() : trainStep.graph();
  const bool writer = !dp || dp->comm->rank() == 0; // writes checkpoints and the loss log
  const InputRecipe recipe = inputRecipe(forward.graph());
  if (trainData.derived.size() != recipe.derived.size())
    throw Error("the training data was encoded for other model inputs than the model's"); // a caller's bug
  int64_t n = static_cast<int64_t>(trainTotal);
  // A batch larger than the data is the whole data: one step per epoch, as
  // a PyTorch DataLoader does (and the arithmetic below cannot overflow).
  const int64_t batchSize = std::min(config.batchSize, n);
  int64_t batchesPerEpoch = (n + batchSize - 1) / batchSize;
  int64_t totalSteps = 0;
  if (__builtin_mul_overflow(batchesPerEpoch, config.epochs, &totalSteps))
    throw Error(fmt::format("{} epochs of {} batches are more steps than kiln can count", config.epochs, batchesPerEpoch));
  bool tty = isatty(fileno(out));
  const bool selecting = !config.selectBy.empty();
  Checkpoint::Selection &selection = ckpt.selection;
  if (selecting) {
    selectionScore(config.selectBy, EvalResult{}); // checks the name
    if (!validating)
      throw Error(fmt::format("selecting the best epoch by validation {} needs validation data (--valid-split above 0, "
                              "or --valid)",
                              config.selectBy));
    if (config.plateauDecay <= 0 || config.plateauDecay > 1)
      throw Error(fmt::format("the plateau decay must be in (0, 1], got {}", config.plateauDecay));
    if (config.plateauPatience < 1)
      throw Error(fmt::format("the plateau patience must be at least 1, got {}", config.plateauPatience));
  }
  if (selection.stopped)
    throw Error(fmt::format("the run stopped early after epoch {} (no better validation {} in {} epochs); its model "
                            "is epoch {}'s, and it cannot be continued",
                            ckpt.epoch, config.selectBy.empty() ? "score" : config.selectBy, selection.epochsSinceBest,
                            selection.bestEpoch));

  if (config.onStart) config.onStart(batchesPerEpoch, totalSteps);

  std::FILE *lossLog = nullptr;
  if (!config.lossLog.empty() && writer) {
    lossLog = std::fopen(config.lossLog.c_str(), "a");
    if (!lossLog) throw Error(fmt::format("cannot open '{}' for the loss log", config.lossLog));
  }
  std::string lastSaved; // what the checkpoint file holds, for the divergence error
  const int64_t resumedAt = ckpt.step;
  auto save = [&](const char *why) {
    if (config.checkpointPath.empty()) return;
    // The processes' parameters can only drift apart through a bug (or a
    // backend that is not deterministic); a checkpoint would hide it.
    if (dp && !dp->comm->same(contentHash(ckpt.tensors)))
      throw Error(fmt::format("the processes' parameters and optimizer state differ at step {}; they must stay equal "
                              "(a backend that is not deterministic?); the checkpoint {} was not written",
                              ckpt.step, config.checkpointPath));
    if (writer) saveCheckpoint(config.checkpointPath, ckpt);
    lastSaved = fmt::format("{} ({}, step {})", config.checkpointPath, why, ckpt.step);
    if (!tty || std::string(why) != "step") fmt::print(out, "saved {} ({})\n", config.checkpointPath, why);
    std::fflush(out);
  };

  stopRequested = false;
  auto previous = std::signal(SIGINT, onInterrupt);
  auto restore = [&] {
    std::signal(SIGINT, previous);
    if (lossLog) std::fclose(lossLog);
  };
  // A step's outputs; after each step, the entries that update the store
  // hold the store's previous tensors, into which the next step writes.
  // The in-place entries instead are views of the store's own tensors.
  TensorMap outputs;
  const std::vector<InPlaceUpdate> inPlace = inPlaceUpdates(g);

  // One data-parallel step (runtime/distributed.h): this rank's part of the
  // global batch order[begin, end) through the gradient graph, the sums,
  // and the update graph into `outputs`. Returns the global batch's mean
  // loss, its right predictions, and whether any rank was asked to stop.
  std::optional<DataParallelStep> parallel;
  if (dp) parallel.emplace(*dp);
  auto dataParallelStep = [&](const std::vector<size_t> &order, size_t begin, size_t end, int64_t step,
                              double lr) -> std::tuple<double, int64_t, bool> {
    // This process's rows of the batch: the examples it holds, each with
    // its row in the whole batch (for dropout). Every part is padded to the
    // length the whole batch would have, so an example sees the same
    // padding, and its dropout masks the same positions, at any number of
    // processes.
    size_t longest = minimumLength(dp->gradients->graph());
    int64_t counted = 0, countedHere = 0;
    std::vector<size_t> rows;
    std::vector<int32_t> batchRows;
    for (size_t i = begin; i < end; ++i) {
      size_t j = order[i];
      longest = std::max(longest, static_cast<size_t>(shard->length[j]));
      counted += shard->counted[j];
      if (int64_t local = shard->local[j]; local >= 0) {
        rows.push_back(static_cast<size_t>(local));
        batchRows.push_back(static_cast<int32_t>(i - begin));
        countedHere += shard->counted[j];
      }
    }
    // [0] the loss times this part's share of the counted rows, [1] right
    // predictions, [2] a stop request.
    std::array<double, 3> totals{0, 0, stopRequested ? 1.0 : 0.0};
    if (!rows.empty()) {
      // Padded with copies of the part's first row, labelled -1, which
      // the loss leaves out: their gradients are exactly zero and the
      // tables' touched rows are the same.
      const size_t real = rows.size();
      // One of 8 sizes per power of two, at most 12.5% more rows (a
      // multiple of 8 cost 24% on average at 32 rows and 80% at 8).
      const size_t padded = std::min(
          end - begin, static_cast<size_t>(roundUpToFewSizes(static_cast<int64_t>(real), 8)));
      while (rows.size() < padded) {
        rows.push_back(rows.front());
        batchRows.push_back(batchRows.front());
      }
      Batch batch = makeBatch(trainData, rows, 0, padded, bucketLength(longest));
      for (size_t r = real; r < padded; ++r) batch.labels.i32()[r] = -1;
      TensorMap part = batchInputs(batch, recipe);
      part.emplace("labels", batch.labels);
      double share = counted ? static_cast<double>(countedHere) / static_cast<double>(counted) : 0.0;
      parallel->addStepInputs(part, share, step, batchRows);
      parallel->computeGradients(&part, ckpt.tensors);
      TensorMap &out = parallel->gradientOutputs();
      totals[0] = static_cast<double>(out.at("loss").f32()[0]) * share;
      std::vector<int32_t> predicted = argmaxRows(out.at(forward.graph().outputs().front().name));
      for (size_t i = 0; i < real; ++i) totals[1] += predicted[i] == batch.labels.i32()[i];
    } else {
      parallel->computeGradients(nullptr, ckpt.tensors);
    }
    parallel->update(totals, lr, step, ckpt.tensors, outputs);
    return {totals[0], static_cast<int64_t>(totals[1]), totals[2] > 0};
  };
  try {
    for (; ckpt.epoch < config.epochs; ++ckpt.epoch, ckpt.batch = 0) {
      std::vector<size_t> order = epochOrder(trainTotal, config.seed, static_cast<uint64_t>(ckpt.epoch),
                                             config.shuffle);
      auto epochStart = Clock::now();
      auto lastPrint = epochStart;
      double lossSum = 0;
      int64_t seen = 0, correct = 0, tokens = 0, startBatch = ckpt.batch, nextMark = 1;
      for (; ckpt.batch < batchesPerEpoch; ++ckpt.batch) {
        if (stopRequested && !dp) {
          if (tty) fmt::print(out, "\n");
          save("interrupted");
          throw Error(fmt::format("interrupted at epoch {}, batch {}; resume with --resume", ckpt.epoch + 1,
                                  ckpt.batch));
        }
        size_t begin = static_cast<size_t>(ckpt.batch * batchSize);
        size_t end = std::min(order.size(), begin + static_cast<size_t>(batchSize));
        int64_t step = ckpt.step + 1;
        double lr = scheduledLr(config, step, totalSteps) * selection.lrScale;
        // The best epoch's parameters are copied once, before the first
        // step that moves away from them.
        if (selecting && selection.bestEpoch > 0 && ckpt.selected.empty())
          for (const auto &[name, t] : modelTensors(ckpt)) ckpt.selected.emplace(name, t);
        // The inputs of the graph that updates the store (for the in-place
        // tables' ids), the step's loss and its number of right predictions.
        TensorMap stepInputs;
        float loss = 0;
        int64_t batchCorrect = 0;
        bool stopAll = false;
        // The outputs that update the store come back in last step's
        // tensors (see the swap below): the backend writes the new values
        // there, with no copy and no allocation. An in-place entry is
        // given the store's tensor itself.
        for (const InPlaceUpdate &u : inPlace) {
          Tensor &kept = ckpt.tensors.at(u.name);
          outputs[u.name] = Tensor::view(kept.dtype(), kept.shape(), kept.raw());
        }
        if (dp) {
          auto [globalLoss, globalCorrect, stop] = dataParallelStep(order, begin, end, step, lr);
          loss = static_cast<float>(globalLoss);
          batchCorrect = globalCorrect;
          stopAll = stop;
        } else {
          Batch batch = makeBatch(trainData, order, begin, end, minimumLength(trainStep.graph()));
          stepInputs = batchInputs(batch, recipe);
          stepInputs.emplace("labels", batch.labels);
          stepInputs.emplace("lr", Tensor::scalar(static_cast<float>(lr)));
          stepInputs.emplace("step", Tensor::scalar(static_cast<float>(step)));
          trainStep.runInto(stepInputs, ckpt.tensors, outputs);
          loss = outputs.at("loss").f32()[0];
          std::vector<int32_t> predicted = argmaxRows(outputs.at(g.outputs().front().name));
          for (size_t i = 0; i < predicted.size(); ++i) batchCorrect += predicted[i] == batch.labels.i32()[i];
        }
        // Nothing of a non-finite step reaches the store, so the state
        // stays that of the last good step; except in the tables updated
        // in place, whose checkpoint file is then all that is kept.
        std::string nonFinite;
        if (!std::isfinite(loss)) nonFinite = fmt::format("the loss is {}", loss);
        for (auto &[name, value] : outputs) {
          if (!nonFinite.empty()) break;
          if (name.starts_with("optimizer.") || !ckpt.tensors.count(name)) continue;
          std::optional<int64_t> at;
          auto updated = std::find_if(inPlace.begin(), inPlace.end(), [&](const InPlaceUpdate &u) { return u.name == name; });
          if (updated == inPlace.end())
            at = firstNonFinite(value);
          else // only the batch's rows changed
            at = firstNonFiniteRow(value, (parallel ? parallel->updateInputs() : stepInputs).at(updated->ids));
          if (at)
            nonFinite = fmt::format("the update makes parameter '{}' {} (element {})", name, value.f32()[*at], *at);
        }
        if (!nonFinite.empty()) {
          if (tty) fmt::print(out, "\n");
          std::string cause;
          SourceLoc loc;
          if (!inPlace.empty()) {
            // The step changed its tables in place: a rerun of it would
            // start from other values than the step did.
            cause = "; the first non-finite op is not traced with --optimizer lazy-adam, which updates embedding "
                    "tables in place (--optimizer adam traces it)";
          } else if (dp) {
            cause = "; the first non-finite op is not traced in a data-parallel run (one process traces it)";
          } else if (config.firstNonFiniteNode) {
            ir::NodeId first = config.firstNonFiniteNode(stepInputs, ckpt.tensors);
            if (first >= 0) {
              const ir::Node &node = g.nodes()[first];
              cause = fmt::format("; the first non-finite value is {} = {}", ir::valueNames(g)[node.result],
                                  ir::opName(node.op));
              if (!node.locs.empty()) loc = node.locs.front();
            } else {
              cause = "; the reference interpreter computes this step without NaN or infinity, so the backend differs";
            }
          }
          throw Error(fmt::format("training diverged at step {} (epoch {}, batch {}): {}{}; {}; try a smaller --lr "
                                  "or --clip-norm",
                                  step, ckpt.epoch + 1, ckpt.batch + 1, nonFinite, cause,
                                  config.checkpointPath.empty() ? "no checkpoint was asked for"
                                  : lastSaved.empty() ? (resumedAt > 0 ? "nothing was saved in this run; the checkpoint it "
                                                                         "resumed from is unchanged"
                                                                       : "nothing was saved in this run")
                                                      : "the last good checkpoint " + lastSaved + " is kept"),
                      loc);
        }
        for (auto &[name, value] : outputs) {
          auto it = ckpt.tensors.find(name);
          // An in-place entry the backend wrote through needs no move (and
          // its view must not enter the store).
          if (it != ckpt.tensors.end() && value.raw() != it->second.raw()) std::swap(it->second, value);
        }
        ckpt.step = step;
        if (lossLog) fmt::print(lossLog, "{} {:.9g}\n", step, loss);
        int64_t batchTokens = 0; // unpadded
        for (size_t i = begin; i < end; ++i) batchTokens += static_cast<int64_t>(exampleLength(order[i]));
        tokens += batchTokens;
        if (config.onStep)
          config.onStep({step, ckpt.epoch + 1, ckpt.batch + 1, loss, lr, static_cast<int64_t>(end - begin), batchTokens});
        correct += batchCorrect;
        lossSum += static_cast<double>(loss) * static_cast<double>(end - begin);
        seen += static_cast<int64_t>(end - begin);

        auto now = Clock::now();
        double elapsed = std::chrono::duration<double>(now - epochStart).count();
        double rate = static_cast<double>(seen) / std::max(elapsed, 1e-9);
        int64_t left = (batchesPerEpoch - ckpt.batch - 1) * batchSize +
                       (config.epochs - ckpt.epoch - 1) * n;
        std::string line = fmt::format("epoch {}/{}  step {}/{}  loss {:.4f}  {:.0f} ex/s  ETA {}", ckpt.epoch + 1,
                                       config.epochs, ckpt.batch + 1, batchesPerEpoch, lossSum / seen, rate,
                                       duration(static_cast<double>(left) / rate));
        int64_t done = ckpt.batch + 1 - startBatch, todo = batchesPerEpoch - startBatch;
        if (tty && std::chrono::duration<double>(now - lastPrint).count() > 0.2) {
          fmt::print(out, "\r{:<79}", line);
          std::fflush(out);
          lastPrint = now;
        } else if (!tty && done * 10 >= nextMark * todo) {
          fmt::print(out, "{}\n", line);
          std::fflush(out); // a pipe (tee, a log file) sees progress as it happens
          while (done * 10 >= nextMark * todo) ++nextMark;
        }
        if (stopAll) {
          // Under mpirun a signal reaches one rank or all at different
          // times: the ranks stop together after the step in which one asked.
          ++ckpt.batch;
          if (tty) fmt::print(out, "\n");
          save("interrupted");
          throw Error(fmt::format("interrupted at epoch {}, batch {}; resume with --resume", ckpt.epoch + 1,
                                  ckpt.batch));
        }
        bool stopHere = config.maxSteps > 0 && ckpt.step >= config.maxSteps && ckpt.batch + 1 < batchesPerEpoch;
        if (stopHere || (config.saveEvery > 0 && ckpt.step % config.saveEvery == 0 && ckpt.batch + 1 < batchesPerEpoch)) {
          ++ckpt.batch; // the checkpoint records this batch as done
          if (tty) fmt::print(out, "\n");
          save(stopHere ? "--max-steps" : "step");
          if (stopHere) {
            fmt::print(out, "stopped after step {} (--max-steps); continue with --resume\n", ckpt.step);
            restore();
            return;
          }
          --ckpt.batch;
        }
      }
      double seconds = std::chrono::duration<double>(Clock::now() - epochStart).count();
      if (tty) fmt::print(out, "\r{:<79}\r", "");
      std::string summary = fmt::format("epoch {}/{}: train loss {:.4f} acc {:.4f}", ckpt.epoch + 1, config.epochs,
                                        seen ? lossSum / seen : 0.0, seen ? double(correct) / seen : 0.0);
      EpochRecord record;
      record.epoch = ckpt.epoch + 1;
      record.step = ckpt.step;
      record.steps = batchesPerEpoch - startBatch;
      record.examples = seen;
      record.tokens = tokens;
      record.seconds = seconds;
      record.trainLoss = seen ? lossSum / seen : 0.0;
      record.trainAccuracy = seen ? double(correct) / seen : 0.0;
      record.partial = startBatch > 0;
      if (validating) {
        EvalResult v = evaluate(forward, ckpt.tensors, *validData, config.evalBatchSize, dp ? dp->comm : nullptr);
        // Finite weights can still give infinite logits (a matmul that
        // overflows): that model is as diverged as one with NaN weights.
        if (!std::isfinite(v.meanLoss))
          throw Error(fmt::format("training diverged in epoch {}: the validation loss is {}; {}; try a smaller --lr or "
                                  "--clip-norm",
                                  ckpt.epoch + 1, v.meanLoss,
                                  lastSaved.empty() ? std::string("nothing was saved in this run")
                                                    : "the last good checkpoint " + lastSaved + " is kept"));
        summary += fmt::format(" | valid loss {:.4f} acc {:.4f} macro-F1 {:.4f}", v.meanLoss, v.confusion.accuracy(),
                               v.confusion.macroF1());
        record.validated = true;
        record.validLoss = v.meanLoss;
        record.accuracy = v.confusion.accuracy();
        record.macroF1 = v.confusion.macroF1();
        record.labels = ckpt.labels;
        for (size_t t = 0; t < v.confusion.classes(); ++t) {
          record.confusion.emplace_back();
          for (size_t p = 0; p < v.confusion.classes(); ++p) record.confusion.back().push_back(v.confusion.count(t, p));
        }
        if (selecting) {
          double score = selectionScore(config.selectBy, v);
          if (selection.bestEpoch == 0 || scoreImproves(config.selectBy, score, selection.bestScore)) {
            selection.bestEpoch = ckpt.epoch + 1;
            selection.bestScore = score;
            selection.epochsSinceBest = 0;
            ckpt.selected.clear(); // the last step's parameters are the best
            summary += " | best";
            record.best = true;
          } else {
            ++selection.epochsSinceBest;
            if (config.plateauDecay != 1 && selection.epochsSinceBest % config.plateauPatience == 0) {
              selection.lrScale *= config.plateauDecay;
              summary += fmt::format(" | lr x{:.4g}", selection.lrScale);
            }
          }
        }
      }
      fmt::print(out, "{} | {:.1f} s\n", summary, seconds);
      std::fflush(out);
      record.lrScale = selection.lrScale;
      if (config.onEpoch) config.onEpoch(record);
      if (selecting && config.patience > 0 && selection.epochsSinceBest >= config.patience &&
          ckpt.epoch + 1 < config.epochs) {
        selection.stopped = true;
        fmt::print(out, "stopping early: no better validation {} in {} epoch{}\n", config.selectBy, config.patience,
                   config.patience == 1 ? "" : "s");
        ++ckpt.epoch; // the checkpoint records the epoch as done
        break;
      }
      bool stopHere = config.maxSteps > 0 && ckpt.step >= config.maxSteps;
      if (ckpt.epoch + 1 < config.epochs) {
        ++ckpt.epoch; // the checkpoint records the epoch as done
        ckpt.batch = 0;
        save(fmt::format("epoch {}", ckpt.epoch).c_str());
        if (stopHere) {
          fmt::print(out, "stopped after step {} (--max-steps); continue with --resume\n", ckpt.step);
          restore();
          return;
        }
        --ckpt.epoch;
      }
    }
    ckpt.batch = 0;
    if (parallel) fmt::print(out, "data-parallel: {}\n", parallel->summary());
    if (selecting && selection.bestEpoch > 0)
      fmt::print(out, "model: epoch {} of {} (validation {} {:.4f})\n", selection.bestEpoch, ckpt.epoch,
                 config.selectBy, selection.bestScore);
    save("final");
  } catch (...) {
    restore();
    throw;
  }
  restore();
}

} // namespace kiln::runtime
