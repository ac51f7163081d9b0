//===- tools/train.cpp - kiln train, eval and predict ---------------------===//
//
// The commands that use a model on data:
//   train    data -> vocabulary and labels -> compiled training step -> epochs
//            with validation and atomic checkpoints (--resume continues one)
//   eval     checkpoint + labelled data -> accuracy, macro-F1, per-class
//            precision/recall, confusion matrix
//   predict  checkpoint + texts (arguments or stdin lines) -> label and
//            class probabilities
// A checkpoint carries the vocabulary, labels, hyper-parameters and model
// source, so eval and predict need nothing else.
//
//===----------------------------------------------------------------------===//
#include "tools/commands.h"

#include "backends/backend.h"
#include "backends/reference/interpreter.h"
#include "frontend/lower.h"
#include "frontend/parser.h"
#include "ir/verifier.h"
#include "passes/training.h"
#include "runtime/checkpoint.h"
#include "runtime/data.h"
#include "runtime/init.h"
#include "runtime/text.h"
#include "runtime/trainer.h"

#include <chrono>
#include <cmath>
#include <fmt/format.h>
#include <iostream>

namespace kiln::tools {

using cli::Args;
using cli::UsageError;

namespace {

const char *trainHelp = R"(usage: kiln train MODEL.kiln --data TRAIN.tsv [options]

Trains a model on labelled text (TSV label<TAB>text, CSV with label,text
header, or JSON Lines with "label"/"text"; by extension). The model's `vocab`
and `classes` params default to what the data says.

data:
  --data FILE           training data (required)
  --valid FILE          validation data (default: split off --valid-split)
  --valid-split F       fraction of --data held out for validation (default 0.1)
  --max-len L           keep the first L tokens of each text (default 256)
  --vocab-size N        vocabulary size including <pad> and <unk> (default 20000)
  --min-freq N          minimum count of a token to enter the vocabulary (default 1)
  --skip-bad            skip malformed records (counted) instead of failing
training:
  --epochs N            (default 5)
  --batch B             (default 64)
  --lr X                learning rate (default 0.001)
  --optimizer NAME      adam | adamw | sgd (default adam)
  --momentum M          SGD momentum (default 0)
  --nesterov            SGD Nesterov momentum
  --weight-decay W      L2 (adam, sgd) or decoupled (adamw) weight decay (default 0)
  --clip-norm C         clip gradients to global L2 norm C (default: off)
  --schedule S          constant | linear (warm-up, then linear decay) (default constant)
  --warmup N            warm-up steps for --schedule linear (default 0)
  --seed S              seed for initialisation, split and shuffling (default 0)
output:
  --out CKPT            checkpoint file (default model.ckpt.safetensors)
  --save-every N        also checkpoint every N steps
  --max-steps N         stop after N steps in total, with a checkpoint
  --resume CKPT         continue the run saved in CKPT exactly (same data)
  --loss-log FILE       append `step loss` per step to FILE
  --param NAME=VAL      override a hyper-parameter (repeatable)
  --backend NAME        auto | reference (default auto)
  --threads N           worker threads (default: all cores)
)";

const char *evalHelp = R"(usage: kiln eval [MODEL.kiln] --ckpt CKPT --data TEST.tsv [options]

Prints accuracy, macro-F1, per-class precision/recall/F1 and the confusion
matrix. Without MODEL the model source stored in the checkpoint is used.

options:
  --max-len L       (default: the value used in training)
  --skip-bad        skip malformed records instead of failing
  --batch B         evaluation batch size (default 256)
  --backend NAME    auto | reference (default auto)
  --threads N       worker threads (default: all cores)
)";

const char *predictHelp = R"(usage: kiln predict [MODEL.kiln] --ckpt CKPT [TEXT ...]

Prints the predicted label and the class probabilities of each TEXT, or of
each line of standard input when no TEXT is given.

options:
  --max-len L       (default: the value used in training)
  --backend NAME    auto | reference (default auto)
  --threads N       worker threads (default: all cores)
)";

/// The names of a model file's hyper-parameters.
std::vector<std::string> hyperParamNames(const std::string &source, const std::string &file) {
  registerSource(file, source);
  std::vector<std::string> names;
  for (const frontend::HyperParam &h : frontend::parseProgram(source, file).hyperParams) names.push_back(h.name);
  return names;
}

std::string formatHyper(double v) {
  if (v == std::floor(v) && std::abs(v) < 1e15) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{}", v);
}

runtime::ReadOptions readOptions(const Args &args) {
  runtime::ReadOptions o;
  o.skipBad = args.flag("--skip-bad");
  return o;
}

std::vector<runtime::RawExample> readData(const std::string &path, const Args &args) {
  runtime::ReadStats stats;
  auto examples = runtime::readExamples(path, readOptions(args), &stats);
  if (stats.skipped) {
    fmt::print(stderr, "warning: skipped {} malformed record{} of {} in {}\n", stats.skipped,
               stats.skipped == 1 ? "" : "s", stats.records + stats.skipped, path);
    for (const std::string &p : stats.problems) fmt::print(stderr, "  {}\n", p);
  }
  return examples;
}

/// Compiles the model with a checkpoint's hyper-parameters and checks that
/// the checkpoint holds every parameter of its forward graph.
struct LoadedModel {
  runtime::Checkpoint ckpt;
  frontend::LoweredModel model;
  const ir::Graph *forward = nullptr;
};

LoadedModel loadTrained(const Args &args) {
  auto ckptPath = args.get("--ckpt");
  if (!ckptPath) throw UsageError("--ckpt CKPT is required");
  LoadedModel m;
  m.ckpt = runtime::loadCheckpoint(*ckptPath);
  std::string file, source;
  if (!args.positional.empty()) {
    file = args.positional.front();
    source = frontend::readFile(file);
  } else {
    file = m.ckpt.modelFile.empty() ? "<checkpoint>" : m.ckpt.modelFile + " (from checkpoint)";
    source = m.ckpt.modelSource;
  }
  frontend::LowerOptions opts;
  opts.overrides = m.ckpt.hyperParams;
  for (auto &[k, v] : cli::paramOverrides(args)) opts.overrides[k] = v;
  m.model = frontend::compileSource(source, file, opts);
  ir::verify(m.model.module);
  m.forward = m.model.module.find("forward");
  if (!m.forward) throw Error("the model has no fn forward");
  runtime::checkClassCount(*m.forward, m.ckpt.labels);
  // Check names, shapes and dtypes of every parameter, reporting all problems.
  runtime::materializeParams(*m.forward, runtime::modelTensors(m.ckpt), 0, /*strict=*/false);
  for (ir::ValueId p : m.forward->params())
    if (!m.ckpt.tensors.count(m.forward->value(p).name))
      throw Error(fmt::format("{}: the checkpoint has no parameter '{}' of the model", *ckptPath,
                              m.forward->value(p).name));
  return m;
}

size_t maxLenOf(const Args &args, const runtime::Checkpoint &ckpt, const std::string &ckptPath) {
  int64_t dflt = ckpt.config.count("max_len") ? runtime::configInteger(ckpt.config, "max_len", ckptPath) : 256;
  return static_cast<size_t>(args.integer("--max-len", dflt));
}

runtime::CompileOptions compileOptions(const Args &args) {
  runtime::CompileOptions o;
  o.threads = static_cast<int>(args.integer("--threads", 0));
  return o;
}

} // namespace

passes::OptimizerConfig optimizerConfig(const Args &args) {
  passes::OptimizerConfig c;
  c.kind = passes::OptimizerConfig::parseKind(args.get("--optimizer").value_or("adam"));
  c.momentum = cli::number(args, "--momentum", 0.0);
  c.nesterov = args.flag("--nesterov");
  c.weightDecay = cli::number(args, "--weight-decay", 0.0);
  c.clipNorm = cli::number(args, "--clip-norm", 0.0);
  if (c.kind != passes::OptimizerConfig::Kind::Sgd && (c.momentum != 0 || c.nesterov))
    throw UsageError("--momentum and --nesterov apply to --optimizer sgd");
  if (c.nesterov && c.momentum == 0) throw UsageError("--nesterov needs --momentum > 0");
  return c;
}

int cmdTrain(int argc, char **argv) {
  static const std::vector<std::string> recipe = {"--valid-split", "--max-len", "--vocab-size", "--min-freq",
                                                  "--batch", "--lr", "--optimizer", "--momentum", "--weight-decay",
                                                  "--clip-norm", "--schedule", "--warmup", "--seed", "--param"};
  std::vector<std::string> valued = {"--data", "--valid", "--epochs", "--out", "--save-every", "--max-steps", "--resume",
                                     "--loss-log", "--backend", "--threads"};
  valued.insert(valued.end(), recipe.begin(), recipe.end());
  Args args(argc, argv, 2, valued, {"--skip-bad", "--nesterov"});
  if (args.help) {
    std::fputs(trainHelp, stdout);
    return 0;
  }
  if (args.positional.size() != 1) throw UsageError("train needs one MODEL.kiln");
  auto dataPath = args.get("--data");
  if (!dataPath) throw UsageError("train needs --data FILE");
  std::string modelFile = args.positional.front();
  std::string source = frontend::readFile(modelFile);

  // On --resume the recipe comes from the checkpoint; changing it would not
  // continue the same run.
  runtime::Checkpoint ckpt;
  auto resume = args.get("--resume");
  std::map<std::string, std::string> config;
  if (resume) {
    for (const std::string &r : recipe)
      if (!args.all(r).empty()) throw UsageError(fmt::format("{} cannot change when resuming; it comes from the checkpoint", r));
    if (args.flag("--nesterov")) throw UsageError("--nesterov cannot change when resuming");
    ckpt = runtime::loadCheckpoint(*resume);
    config = ckpt.config;
    if (ckpt.modelSource != source)
      throw Error(fmt::format("{} is not the model that {} was trained with", modelFile, *resume));
  } else {
    config["valid_split"] = formatHyper(cli::number(args, "--valid-split", args.get("--valid") ? 0.0 : 0.1));
    config["max_len"] = std::to_string(args.integer("--max-len", 256));
    config["vocab_size"] = std::to_string(args.integer("--vocab-size", 20000));
    config["min_freq"] = std::to_string(args.integer("--min-freq", 1));
    config["batch"] = std::to_string(args.integer("--batch", 64));
    config["lr"] = fmt::format("{}", cli::number(args, "--lr", 1e-3));
    config["optimizer"] = args.get("--optimizer").value_or("adam");
    config["momentum"] = fmt::format("{}", cli::number(args, "--momentum", 0));
    config["nesterov"] = args.flag("--nesterov") ? "1" : "0";
    config["weight_decay"] = fmt::format("{}", cli::number(args, "--weight-decay", 0));
    config["clip_norm"] = fmt::format("{}", cli::number(args, "--clip-norm", 0));
    config["schedule"] = args.get("--schedule").value_or("constant");
    config["warmup"] = std::to_string(args.integer("--warmup", 0));
    config["seed"] = std::to_string(args.integer("--seed", 0));
    optimizerConfig(args); // validates the combination
  }
  // On --resume the values come from the checkpoint, which may have been edited.
  std::string configFile = resume ? *resume : "the command line";
  auto cfgInt = [&](const char *k) { return runtime::configInteger(config, k, configFile); };
  auto cfgNum = [&](const char *k) { return runtime::configNumber(config, k, configFile); };
  config["epochs"] = std::to_string(args.integer("--epochs", resume && config.count("epochs") ? cfgInt("epochs") : 5));
  uint64_t seed = static_cast<uint64_t>(cfgInt("seed"));

  // Data, vocabulary, labels.
  auto start = std::chrono::steady_clock::now();
  std::vector<runtime::RawExample> all = readData(*dataPath, args), trainEx, validEx;
  if (auto v = args.get("--valid")) {
    trainEx = std::move(all);
    validEx = readData(*v, args);
  } else {
    runtime::splitExamples(all, cfgNum("valid_split"), seed, trainEx, validEx);
  }
  std::vector<std::string> hyperNames = hyperParamNames(source, modelFile);
  auto has = [&](const char *n) { return std::find(hyperNames.begin(), hyperNames.end(), n) != hyperNames.end(); };
  frontend::LowerOptions lowerOpts;
  runtime::Vocabulary vocab;
  runtime::LabelSet labels;
  if (resume) {
    vocab = runtime::Vocabulary(ckpt.vocab);
    labels = runtime::LabelSet(ckpt.labels);
    lowerOpts.overrides = ckpt.hyperParams;
  } else {
    lowerOpts.overrides = cli::paramOverrides(args);
    size_t vocabSize = static_cast<size_t>(cfgInt("vocab_size"));
    if (auto it = lowerOpts.overrides.find("vocab"); it != lowerOpts.overrides.end())
      // A malformed value is left for the model's compilation to report.
      if (double v = std::strtod(it->second.c_str(), nullptr); v < 1e15)
        vocabSize = std::min(vocabSize, static_cast<size_t>(std::max(2.0, v)));
    vocab = runtime::Vocabulary::build(trainEx, vocabSize, static_cast<size_t>(cfgInt("min_freq")));
    labels = runtime::LabelSet::fromExamples(trainEx);
    if (has("vocab") && !lowerOpts.overrides.count("vocab")) lowerOpts.overrides["vocab"] = std::to_string(vocab.size());
    if (has("classes") && !lowerOpts.overrides.count("classes"))
      lowerOpts.overrides["classes"] = std::to_string(labels.size());
  }
  size_t maxLen = static_cast<size_t>(cfgInt("max_len"));
  runtime::EncodedData trainData = runtime::encodeExamples(trainEx, vocab, labels, maxLen);
  runtime::EncodedData validData = runtime::encodeExamples(validEx, vocab, labels, maxLen);

  // Model and training step.
  frontend::LoweredModel model = frontend::compileSource(source, modelFile, lowerOpts);
  const ir::Graph *forward = model.module.find("forward");
  if (!forward) throw Error(fmt::format("{}: the model has no fn forward", modelFile));
  passes::OptimizerConfig opt;
  opt.kind = passes::OptimizerConfig::parseKind(runtime::configString(config, "optimizer", configFile));
  opt.momentum = cfgNum("momentum");
  opt.nesterov = runtime::configString(config, "nesterov", configFile) == "1";
  opt.weightDecay = cfgNum("weight_decay");
  opt.clipNorm = cfgNum("clip_norm");
  opt.outputGradients = false;
  ir::Graph trainGraph = passes::buildTrainGraph(*forward, opt);
  ir::verify(trainGraph);
  std::string backend = args.get("--backend").value_or("auto");
  auto stepExe = backends::compile(trainGraph, backend, compileOptions(args));
  auto forwardExe = backends::compile(*forward, backend, compileOptions(args));

  if (resume) {
    runtime::materializeParams(trainGraph, ckpt.tensors, 0, /*strict=*/true); // checks every tensor
    if (ckpt.epoch >= cfgInt("epochs"))
      throw Error(fmt::format("{} already finished {} epochs; pass a larger --epochs to continue", *resume, ckpt.epoch));
  } else {
    ckpt.tensors = runtime::materializeParams(trainGraph, {}, seed);
    ckpt.vocab = vocab.tokens();
    ckpt.labels = labels.names();
    ckpt.modelSource = source;
    ckpt.modelFile = modelFile;
    for (auto &[name, value] : model.hyperParams) ckpt.hyperParams[name] = formatHyper(value);
  }
  ckpt.config = config;

  runtime::TrainConfig tc;
  tc.epochs = cfgInt("epochs");
  tc.batchSize = cfgInt("batch");
  tc.lr = cfgNum("lr");
  tc.schedule = runtime::configString(config, "schedule", configFile);
  tc.warmupSteps = cfgInt("warmup");
  tc.seed = seed;
  tc.saveEvery = args.integer("--save-every", 0);
  tc.maxSteps = args.integer("--max-steps", 0);
  tc.checkpointPath = args.get("--out").value_or(resume ? *resume : "model.ckpt.safetensors");
  tc.lossLog = args.get("--loss-log").value_or("");
  runtime::scheduledLr(tc, 1, 1); // validates the schedule name before any work
  tc.firstNonFiniteNode = [&](const runtime::TensorMap &inputs, const runtime::TensorMap &store) -> ir::NodeId {
    reference::RunOptions keep;
    keep.keepAll = true;
    keep.threads = compileOptions(args).threads;
    const ir::Graph &g = stepExe->graph();
    reference::RunResult r = reference::run(g, inputs, store, keep);
    for (size_t i = 0; i < g.nodes().size(); ++i)
      if (runtime::firstNonFinite(r.values[g.nodes()[i].result])) return static_cast<ir::NodeId>(i);
    return -1;
  };

  int64_t params = 0;
  for (ir::ValueId p : forward->params()) params += ir::numElements(*ir::concreteShape(forward->type(p).shape, {}));
  double prepSeconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fmt::print("{}: {} parameters | vocabulary {} | labels {} | train {} | valid {} | {} ({:.1f} s to prepare)\n",
             modelFile, params, vocab.size(), fmt::join(labels.names(), ","), trainData.ids.size(),
             validData.ids.size(), resume ? fmt::format("resuming at epoch {} batch {}", ckpt.epoch + 1, ckpt.batch)
                                          : std::string("from scratch"),
             prepSeconds);
  std::fflush(stdout);
  auto trainStart = std::chrono::steady_clock::now();
  runtime::train(*stepExe, *forwardExe, tc, trainData, validData.ids.empty() ? nullptr : &validData, ckpt, stdout);
  fmt::print("trained in {:.1f} s; checkpoint {}\n",
             std::chrono::duration<double>(std::chrono::steady_clock::now() - trainStart).count(), tc.checkpointPath);
  return 0;
}

int cmdEval(int argc, char **argv) {
  Args args(argc, argv, 2, {"--ckpt", "--data", "--max-len", "--batch", "--backend", "--threads", "--param"},
            {"--skip-bad"});
  if (args.help) {
    std::fputs(evalHelp, stdout);
    return 0;
  }
  if (args.positional.size() > 1) throw UsageError("eval takes at most one MODEL.kiln");
  auto dataPath = args.get("--data");
  if (!dataPath) throw UsageError("eval needs --data FILE");
  LoadedModel m = loadTrained(args);
  runtime::Vocabulary vocab(m.ckpt.vocab);
  runtime::LabelSet labels(m.ckpt.labels);
  auto examples = readData(*dataPath, args);
  auto data = runtime::encodeExamples(examples, vocab, labels, maxLenOf(args, m.ckpt, *args.get("--ckpt")));
  auto exe = backends::compile(*m.forward, args.get("--backend").value_or("auto"), compileOptions(args));
  auto start = std::chrono::steady_clock::now();
  runtime::EvalResult r = runtime::evaluate(*exe, runtime::modelTensors(m.ckpt), data, args.integer("--batch", 256));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fmt::print("{} examples, mean loss {:.4f}, {:.1f} s\n", r.examples, r.meanLoss, seconds);
  fmt::print("{}", r.confusion.report(labels.names()));
  return 0;
}

int cmdPredict(int argc, char **argv) {
  Args args(argc, argv, 2, {"--ckpt", "--max-len", "--backend", "--threads", "--param"}, {});
  if (args.help) {
    std::fputs(predictHelp, stdout);
    return 0;
  }
  // The first positional is the model when it names a .kiln file.
  std::vector<std::string> texts = args.positional;
  Args modelArgs = args;
  modelArgs.positional.clear();
  if (!texts.empty() && texts.front().size() > 5 && texts.front().ends_with(".kiln")) {
    modelArgs.positional.push_back(texts.front());
    texts.erase(texts.begin());
  }
  LoadedModel m = loadTrained(modelArgs);
  if (texts.empty())
    for (std::string line; std::getline(std::cin, line);) texts.push_back(line);
  runtime::Vocabulary vocab(m.ckpt.vocab);
  size_t maxLen = maxLenOf(args, m.ckpt, *args.get("--ckpt"));
  auto exe = backends::compile(*m.forward, args.get("--backend").value_or("auto"), compileOptions(args));
  runtime::TensorMap params = runtime::modelTensors(m.ckpt);
  const std::string &tokensName = m.forward->value(m.forward->inputs().front()).name;
  const std::string &logitsName = m.forward->outputs().front().name;
  for (const std::string &text : texts) {
    runtime::Tensor tokens = runtime::padBatch({vocab.encode(text, maxLen)});
    runtime::Tensor logits = exe->run({{tokensName, tokens}}, params).at(logitsName);
    auto x = logits.f32();
    float mx = *std::max_element(x.begin(), x.end());
    double sum = 0;
    for (float v : x) sum += std::exp(double(v) - mx);
    size_t best = std::max_element(x.begin(), x.end()) - x.begin();
    std::string probs;
    for (size_t c = 0; c < x.size(); ++c)
      probs += fmt::format("{}{} {:.4f}", c ? "  " : "", m.ckpt.labels[c], std::exp(double(x[c]) - mx) / sum);
    std::string shown = text.size() > 60 ? text.substr(0, 57) + "..." : text;
    fmt::print("{}\t{}\t{}\n", m.ckpt.labels[best], probs, shown);
  }
  return 0;
}

} // namespace kiln::tools
