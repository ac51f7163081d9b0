//===- tools/train.cpp - kiln train, eval and predict ---------------------===//
//
// The commands that use a model on data:
//   train    data -> vocabulary and labels -> compiled training step -> epochs
//            with validation and atomic checkpoints (--resume continues one)
//   eval     checkpoint + labelled data -> accuracy, macro-F1, per-class
//            precision/recall, confusion matrix
//   predict  checkpoint + texts (arguments, or stdin line by line) -> label
//            and class probabilities, one tab-separated line per text
// A checkpoint carries the vocabulary, labels, hyper-parameters and model
// source, so eval and predict need nothing else (--model FILE compiles
// another source against the checkpoint's parameters).
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
#include "runtime/data_shard.h"
#include "runtime/distributed.h"
#include "runtime/init.h"
#include "runtime/json.h"
#include "runtime/output_guard.h"
#include "runtime/text.h"
#include "runtime/trainer.h"
#include "runtime/utf8.h"
#include "passes/explain.h"
#include "tools/cli.h"
#include "tools/explain.h"
#include "tools/options.h"
#include "tools/report.h"
#include "tools/trained_model.h"

#include <chrono>
#include <cmath>
#include <fmt/format.h>
#include <iostream>
#include <numeric>
#include <optional>
#include <thread>
#include <unistd.h>

namespace kiln::tools {

using cli::UsageError;

namespace {

// --- options ------------------------------------------------------------------
//
// One struct per command with one declare() each: the only place where the
// command's options, their defaults and their help are written.

struct TrainArgs {
  std::string model;
  // data
  std::string data;
  std::optional<std::string> valid;
  std::optional<double> validSplit;
  int64_t maxLen = 256, vocabSize = 20000, minFreq = 1;
  bool skipBad = false;
  // training
  std::optional<int64_t> epochs;
  int64_t batch = 64;
  double lr = 1e-3;
  OptimizerOptions optimizer;
  std::string schedule = "constant";
  int64_t warmup = 0, seed = 0;
  std::string selectBy = "none";
  int64_t patience = 0, plateauPatience = 1;
  double plateauDecay = 1;
  bool noShuffle = false;
  std::vector<std::string> params;
  // output
  std::optional<std::string> out, resume, lossLog, report;
  int64_t saveEvery = 0, maxSteps = 0;
  bool force = false;
  bool distributed = false;
  BackendOptions backend;
  PassOptions passes;
};

/// Marks the options whose values a checkpoint records: --resume takes them
/// from the checkpoint, and giving one is an error.
constexpr const char *kRecipe = "recipe";

void declare(cli::Command &cmd, TrainArgs &o) {
  cmd.positional("MODEL.kiln", o.model, "the model to train");
  cmd.section("data");
  cmd.option("--data", o.data, "FILE", "training data").required();
  cmd.option("--valid", o.valid, "FILE", "validation data").defaultText("split off --valid-split");
  cmd.option("--valid-split", o.validSplit, "F", "fraction of --data held out for validation")
      .defaultText("0.1, or 0 with --valid")
      .tag(kRecipe);
  cmd.option("--max-len", o.maxLen, "L", "keep the first L tokens of each text").atLeast(1).tag(kRecipe);
  cmd.option("--vocab-size", o.vocabSize, "N", "vocabulary size including <pad> and <unk>").tag(kRecipe);
  cmd.option("--min-freq", o.minFreq, "N", "minimum count of a token to enter the vocabulary").tag(kRecipe);
  cmd.flag("--skip-bad", o.skipBad, "skip malformed records (counted) instead of failing");
  cmd.section("training");
  cmd.option("--epochs", o.epochs, "N", "passes over the training data (0: only the initial checkpoint)")
      .atLeast(0)
      .defaultText("5, or the checkpoint's with --resume");
  cmd.option("--batch", o.batch, "B", "examples per step").atLeast(1).tag(kRecipe);
  cmd.option("--lr", o.lr, "X", "learning rate").tag(kRecipe);
  declareOptimizerOptions(cmd, o.optimizer);
  for (const char *name : {"--optimizer", "--momentum", "--nesterov", "--weight-decay", "--clip-norm"})
    cmd.find(name).tag(kRecipe);
  cmd.option("--schedule", o.schedule, "S", "learning-rate schedule")
      .choices({{"constant", "the same rate every step"},
                {"linear", "warm-up over --warmup steps, then linear decay to 0 at the last step"}})
      .tag(kRecipe);
  cmd.option("--warmup", o.warmup, "N", "warm-up steps for --schedule linear").tag(kRecipe);
  cmd.option("--seed", o.seed, "S", "seed for initialisation, split and shuffling").tag(kRecipe);
  cmd.section("model selection (on the validation data, after every epoch)");
  cmd.option("--select-by", o.selectBy, "M", "the checkpoint's model is the epoch with the best validation M")
      .choices({{"none", "the last step's model"},
                {"loss", "lowest mean cross-entropy"},
                {"accuracy", "highest accuracy (ties: the earlier epoch)"},
                {"macro-f1", "highest macro-F1 (ties: the earlier epoch)"}})
      .tag(kRecipe);
  cmd.option("--patience", o.patience, "N", "with --select-by: stop after N epochs without a better score")
      .defaultText("0: never stop early")
      .tag(kRecipe);
  cmd.option("--plateau-decay", o.plateauDecay, "F",
             "with --select-by: multiply the learning rate by F after every --plateau-patience epochs without a "
             "better score")
      .defaultText("1: off")
      .tag(kRecipe);
  cmd.option("--plateau-patience", o.plateauPatience, "N", "epochs without a better score per --plateau-decay")
      .atLeast(1)
      .tag(kRecipe);
  cmd.flag("--no-shuffle", o.noShuffle,
           "batches in the file's order, every epoch, and --valid-split holds out the file's last examples")
      .tag(kRecipe);
  declareParamOption(cmd, o.params);
  cmd.find("--param").tag(kRecipe);
  cmd.section("output");
  cmd.option("--out", o.out, "CKPT", "checkpoint file").defaultText("model.ckpt.safetensors, or the --resume CKPT");
  cmd.option("--save-every", o.saveEvery, "N", "also checkpoint every N steps")
      .defaultText("only at the end of each epoch");
  cmd.option("--max-steps", o.maxSteps, "N", "stop after N steps in total, with a checkpoint").defaultText("no limit");
  cmd.option("--resume", o.resume, "CKPT", "continue the run saved in CKPT exactly (same data)");
  cmd.option("--loss-log", o.lossLog, "FILE", "append `step loss` per step to FILE");
  cmd.option("--report", o.report, "DIR",
             "append each step's loss and learning rate and each epoch's validation metrics to DIR/metrics.jsonl, "
             "and draw them in DIR/index.html (after every epoch and at the end; `kiln report DIR` draws it again)");
  cmd.flag("--force", o.force,
           "let --out, --loss-log and --report replace an existing file that is not a kiln checkpoint, loss log, "
           "metrics log or report page (an input of the command is never replaced)");
  cmd.section("backend");
  declareBackendOptions(cmd, o.backend);
  declarePassOptions(cmd, o.passes);
  cmd.flag("--distributed", o.distributed,
           "train data-parallel over the processes of an MPI launch (`mpirun -np N kiln train ...`, which turns it "
           "on by itself): each takes its part of every batch (--batch stays the whole batch) and the gradients are "
           "summed over them; the result is one process's, up to the order of the sums (docs/SCALING.md); --backend "
           "auto means onednn here, as every rank must compute alike");

  std::string recipe;
  for (const cli::Option *r : cmd.tagged(kRecipe)) recipe += (recipe.empty() ? "" : ", ") + r->name();
  std::string epilogue;
  for (const std::string &line : cli::detail::wrap(
           "With --resume the recipe comes from the checkpoint and cannot change: " + recipe +
               ". A model file's `train { name = value ... }` block (docs/DSL.md) gives the defaults of the recipe "
               "and of --epochs for that model; the command line overrides them.",
           79))
    epilogue += line + "\n";
  cmd.epilogue(epilogue);
}

} // namespace

void declare(cli::Command &cmd, TrainedModelArgs &o) {
  cmd.option("--ckpt", o.ckpt, "CKPT", "the checkpoint (kiln train --out)").required();
  cmd.option("--model", o.model, "FILE", "the model source (.kiln) to compile")
      .defaultText("the source stored in the checkpoint");
  cmd.option("--max-len", o.maxLen, "L", "keep the first L tokens of each text")
      .atLeast(1)
      .defaultText("the value used in training");
  declareParamOption(cmd, o.params);
}

namespace {

struct EvalArgs {
  TrainedModelArgs trained;
  std::string data;
  bool skipBad = false;
  int64_t batch = 256;
  std::string format = "text";
  BackendOptions backend;
  PassOptions passes;
};

void declare(cli::Command &cmd, EvalArgs &o) {
  declare(cmd, o.trained);
  cmd.option("--data", o.data, "FILE", "labelled data, in any format train reads").required();
  cmd.flag("--skip-bad", o.skipBad, "skip malformed records instead of failing");
  cmd.option("--batch", o.batch, "B", "evaluation batch size").atLeast(1);
  cmd.option("--format", o.format, "F", "how the results are written")
      .choices({{"text", "tables for people"},
                {"json", "one JSON object: examples, mean_loss, seconds, accuracy, macro_f1, labels, per_class "
                         "(precision, recall, f1, support by label), confusion (rows: true label), "
                         "selected_epoch and epochs"}});
  declareBackendOptions(cmd, o.backend);
  declarePassOptions(cmd, o.passes);
  cmd.extraArgumentHint("name the model with --model FILE");
}

struct PredictArgs {
  TrainedModelArgs trained;
  std::vector<std::string> texts;
  std::optional<int64_t> topK;
  std::string format = "text";
  bool explain = false;
  std::optional<std::string> html;
  bool force = false;
  BackendOptions backend;
  PassOptions passes;
};

void declare(cli::Command &cmd, PredictArgs &o) {
  cmd.positionals("TEXT", o.texts, 0, 0,
                  "texts to classify; without any, each line of standard input (answered as it arrives); "
                  "put texts that start with '-' after '--'");
  declare(cmd, o.trained);
  cmd.option("-k,--top-k", o.topK, "K", "only the K most probable labels, most probable first")
      .atLeast(1)
      .defaultText("every label, in the checkpoint's order (text) or most probable first (tsv, json)");
  cmd.option("--format", o.format, "F", "how each answer is written")
      .choices({{"text", "label, probabilities (4 decimals) and the text cut to 60 characters, tab-separated"},
                {"tsv", "label, then label<TAB>probability pairs, then the whole text, tab-separated; "
                        "probabilities to 9 significant digits; \\t \\n \\r \\\\ escaped in the text"},
                {"json", "JSON Lines: {\"text\": ..., \"labels\": [...], \"probs\": [...]}, most probable first"}});
  cmd.section("explanations");
  cmd.flag("--explain", o.explain,
           "also show the weight each token received from the values the model marks with @explain (its attention "
           "weights): coloured tokens on a terminal, else `token weight` pairs on a second line (text), two more "
           "fields, tokens and weights (tsv), or \"tokens\" and \"weights\" (json)");
  cmd.option("--html", o.html, "FILE",
             "with --explain: also write one self-contained HTML page with a heatmap of every text");
  cmd.flag("--force", o.force, "let --html replace an existing file that is not a page kiln wrote");
  declareBackendOptions(cmd, o.backend);
  declarePassOptions(cmd, o.passes);
}

/// A recipe without model selection, and so without what waits on it.
void selectionOff(std::map<std::string, std::string> &config) {
  config["select_by"] = "none";
  config["patience"] = "0";
  config["plateau_decay"] = "1";
}

/// Applies the model file's `train { ... }` block: each entry is the
/// default of a recipe option (or --epochs) not given on the command line,
/// checked as the command line would check it; errors point at the entry.
void applyModelRecipe(cli::Command &cmd, const frontend::Program &program) {
  std::vector<std::string> allowed = {"--epochs"};
  for (const cli::Option *r : cmd.tagged(kRecipe))
    if (r->name() != "--param") allowed.push_back(r->name()); // the file's `param` lines are its own
  for (const frontend::RecipeEntry &e : program.recipe) {
    if (std::find(allowed.begin(), allowed.end(), e.option) == allowed.end()) {
      std::string names;
      for (const std::string &a : allowed) {
        std::string n = a.substr(2);
        std::replace(n.begin(), n.end(), '-', '_');
        names += (names.empty() ? "" : ", ") + n;
      }
      throw Error(fmt::format("'{}' is not part of a training recipe; a 'train' block sets {}", e.option.substr(2),
                              names),
                  e.loc);
    }
    try {
      cmd.applyDefault(e.option, e.value);
    } catch (const UsageError &u) {
      throw Error(fmt::format("in the 'train' block: {}", u.what()), e.loc);
    }
  }
}

std::string formatHyper(double v) {
  if (v == std::floor(v) && std::abs(v) < 1e15) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{}", v);
}

/// The warning for records --skip-bad skipped, with the first few.
void warnSkipped(const std::string &path, const runtime::ReadStats &stats) {
  if (!stats.skipped) return;
  fmt::print(stderr, "warning: skipped {} malformed record{} of {} in {}\n", stats.skipped,
             stats.skipped == 1 ? "" : "s", stats.records + stats.skipped, path);
  for (const std::string &p : stats.problems) fmt::print(stderr, "  {}\n", p);
}

std::vector<runtime::RawExample> readData(const std::string &path, bool skipBad) {
  runtime::ReadOptions options;
  options.skipBad = skipBad;
  runtime::ReadStats stats;
  auto examples = runtime::readExamples(path, options, &stats);
  warnSkipped(path, stats);
  return examples;
}

/// readData for one process of a data-parallel run: its part of the file
/// (runtime/data_shard.h); rank 0 warns of the whole file's skipped records.
runtime::FileShard readDataShard(const std::string &path, bool skipBad, runtime::Communicator &comm) {
  runtime::ReadOptions options;
  options.skipBad = skipBad;
  runtime::ReadStats stats;
  runtime::FileShard shard = runtime::readFileShard(path, options, stats, comm);
  if (comm.rank() == 0) warnSkipped(path, stats);
  return shard;
}

} // namespace

LoadedModel loadTrained(const TrainedModelArgs &args) {
  LoadedModel m;
  m.ckpt = runtime::loadCheckpoint(args.ckpt);
  std::string file, source;
  if (args.model) {
    file = *args.model;
    source = frontend::readFile(file);
  } else {
    file = m.ckpt.modelFile.empty() ? "<checkpoint>" : m.ckpt.modelFile + " (from checkpoint)";
    source = m.ckpt.modelSource;
  }
  frontend::LowerOptions opts;
  opts.overrides = m.ckpt.hyperParams;
  for (auto &[k, v] : paramOverrides(args.params)) opts.overrides[k] = v;
  m.model = frontend::compileSource(source, file, opts);
  ir::verify(m.model.module);
  m.forward = m.model.module.find("forward");
  if (!m.forward) throw Error("the model has no fn forward");
  m.inputs = runtime::inputRecipe(*m.forward);
  runtime::checkInputRecipe(m.inputs, m.ckpt.config, args.ckpt);
  runtime::checkClassCount(*m.forward, m.ckpt.labels);
  // Check names, shapes and dtypes of every parameter, reporting all problems.
  runtime::materializeParams(*m.forward, runtime::modelTensors(m.ckpt), 0, /*strict=*/false);
  for (ir::ValueId p : m.forward->params())
    if (!m.ckpt.tensors.count(m.forward->value(p).name))
      throw Error(fmt::format("{}: the checkpoint has no parameter '{}' of the model", args.ckpt,
                              m.forward->value(p).name));
  // A --model other than the stored source must at least use every trained
  // parameter; one it ignores means it is not the model that was trained.
  if (args.model && source != m.ckpt.modelSource) {
    for (const auto &[name, t] : runtime::modelTensors(m.ckpt))
      if (m.forward->findParam(name) < 0)
        throw Error(fmt::format("{} does not use the checkpoint's parameter '{}': it is not the model {} was trained "
                                "with (leave out --model to use the model stored in the checkpoint)",
                                file, name, args.ckpt));
    fmt::print(stderr, "note: {} differs from the model {} was trained with; its parameters match by name and shape\n",
               file, args.ckpt);
  }
  return m;
}

passes::OptimizerConfig optimizerFromConfig(const runtime::Config &config, const std::string &file, uint64_t seed) {
  passes::OptimizerConfig opt;
  opt.kind = passes::OptimizerConfig::parseKind(runtime::configString(config, "optimizer", file));
  opt.momentum = runtime::configNumber(config, "momentum", file);
  opt.nesterov = runtime::configString(config, "nesterov", file) == "1";
  opt.weightDecay = runtime::configNumber(config, "weight_decay", file);
  opt.clipNorm = runtime::configNumber(config, "clip_norm", file);
  opt.outputGradients = false;
  opt.dropoutSeed = seed;
  return opt;
}

namespace {

size_t maxLenOf(const TrainedModelArgs &args, const runtime::Checkpoint &ckpt) {
  if (args.maxLen) return static_cast<size_t>(*args.maxLen);
  return static_cast<size_t>(ckpt.config.count("max_len") ? runtime::configInteger(ckpt.config, "max_len", args.ckpt)
                                                          : 256);
}

// --- predict's output ------------------------------------------------------------

/// Byte offsets where each code point of valid UTF-8 text starts (an
/// ill-formed byte, which predict never passes, counts as one).
std::vector<size_t> codePointsIn(const std::string &s) {
  std::vector<size_t> starts;
  for (size_t i = 0; i < s.size(); i += std::max<size_t>(1, utf8::decodeAt(s, i).length)) starts.push_back(i);
  return starts;
}

/// Tab, newline, carriage return and backslash written \t \n \r \\, so
/// that a text is one tab-free field of one line.
std::string escapedText(const std::string &text) {
  std::string out;
  for (char c : text) {
    switch (c) {
    case '\t': out += "\\t"; break;
    case '\n': out += "\\n"; break;
    case '\r': out += "\\r"; break;
    case '\\': out += "\\\\"; break;
    default: out += c;
    }
  }
  return out;
}

/// The text (valid UTF-8) as predict's third column shows it: longer than 60
/// characters (code points), its first 57 and "...", escaped (escapedText),
/// so that every result is one line of three tab-separated fields.
std::string echoedText(const std::string &text) {
  constexpr size_t kMax = 60, kKept = 57;
  std::vector<size_t> starts = codePointsIn(text);
  if (starts.size() <= kMax) return escapedText(text);
  return escapedText(text.substr(0, starts[kKept])) + "...";
}

/// `kiln eval --format json`: the numbers of the text report, unrounded.
json::Value evalJson(const runtime::EvalResult &r, const std::vector<std::string> &labels, double seconds,
                     int64_t selectedEpoch, int64_t epochs) {
  const runtime::ConfusionMatrix &m = r.confusion;
  json::Object perClass;
  json::Array confusion, names;
  for (size_t c = 0; c < m.classes(); ++c) {
    std::string name = c < labels.size() ? labels[c] : std::to_string(c);
    names.emplace_back(name);
    perClass.emplace(name, json::Object{{"precision", m.precision(c)},
                                        {"recall", m.recall(c)},
                                        {"f1", m.f1(c)},
                                        {"support", m.support(c)}});
    json::Array row;
    for (size_t p = 0; p < m.classes(); ++p) row.emplace_back(m.count(c, p));
    confusion.emplace_back(std::move(row));
  }
  return json::Object{{"examples", r.examples},
                      {"mean_loss", r.meanLoss},
                      {"seconds", seconds},
                      {"accuracy", m.accuracy()},
                      {"macro_f1", m.macroF1()},
                      {"labels", std::move(names)},
                      {"per_class", std::move(perClass)},
                      {"confusion", std::move(confusion)},
                      {"selected_epoch", selectedEpoch > 0 ? json::Value(selectedEpoch) : json::Value(nullptr)},
                      {"epochs", epochs}};
}

} // namespace

int cmdTrain(int argc, char **argv) {
  TrainArgs o;
  cli::Command cmd("train", "MODEL.kiln --data TRAIN.tsv [options]",
                   "Trains a model on labelled text (TSV label<TAB>text, CSV with label,text\n"
                   "header, or JSON Lines with \"label\"/\"text\"; by extension). The model's `vocab`\n"
                   "and `classes` params default to what the data says.");
  declare(cmd, o);
  if (listPassesRequested(argc, argv)) return fmt::print("{}", listPasses()), 0;
  if (!cmd.parse(argc, argv, 2)) return 0;
  // Data-parallel: every rank runs this whole command alike; rank 0 alone
  // prints, writes the checkpoint, the loss log and the report.
  runtime::Communicator *comm = nullptr;
  if (o.distributed || runtime::launchedByMpi()) {
    comm = &runtime::startMpi();
    // The ranks of one machine share its cores.
    useDataParallelBackend(o.backend);
  }
  const bool rank0 = !comm || comm->rank() == 0;
  std::FILE *out = stdout;
  std::unique_ptr<std::FILE, int (*)(std::FILE *)> quiet(nullptr, std::fclose);
  if (!rank0) {
    quiet.reset(std::fopen("/dev/null", "w"));
    if (!quiet) throw Error("cannot open /dev/null");
    out = quiet.get();
  }
  std::string source = frontend::readFile(o.model);
  registerSource(o.model, source);
  frontend::Program program = frontend::parseProgram(source, o.model);
  // The model's recommended recipe fills in what the command line leaves
  // out; a resumed run's recipe is the checkpoint's.
  if (!o.resume) applyModelRecipe(cmd, program);

  // Outputs are checked before any work (runtime/output_guard.h). --resume
  // continues into its own checkpoint by default, so it is an input only
  // for the loss log.
  const std::string outPath = o.out.value_or(o.resume ? *o.resume : "model.ckpt.safetensors");
  std::vector<runtime::CommandInput> inputs = {{"the model", o.model}, {"--data", o.data}};
  if (o.valid) inputs.push_back({"--valid", *o.valid});
  runtime::checkOutput("--out", outPath, runtime::OutputKind::Checkpoint, inputs, o.force);
  if (o.resume) inputs.push_back({"--resume", *o.resume});
  if (o.lossLog) runtime::checkOutput("--loss-log", *o.lossLog, runtime::OutputKind::LossLog, inputs, o.force);
  std::optional<TrainingReport> report;
  if (o.report && rank0)
    report.emplace(*o.report, inputs,
                   std::vector<runtime::CommandInput>{{"--out", outPath}, {"--loss-log", o.lossLog.value_or("")}},
                   o.force);

  // On --resume the recipe comes from the checkpoint; changing it would not
  // continue the same run.
  runtime::Checkpoint ckpt;
  const std::optional<std::string> &resume = o.resume;
  std::map<std::string, std::string> config;
  if (resume) {
    for (const cli::Option *r : cmd.tagged(kRecipe))
      if (r->given())
        throw UsageError(fmt::format("{} cannot change when resuming; it comes from the checkpoint", r->name()));
    ckpt = runtime::loadCheckpoint(*resume);
    config = ckpt.config;
    if (ckpt.selection.stopped)
      throw Error(fmt::format("{} stopped early after epoch {} (no better validation score in {} epochs); its model "
                              "is epoch {}'s and there is nothing to continue",
                              *resume, ckpt.epoch, ckpt.selection.epochsSinceBest, ckpt.selection.bestEpoch));
    if (ckpt.modelSource != source)
      throw Error(fmt::format("{} is not the model that {} was trained with", o.model, *resume));
  } else {
    config["valid_split"] = formatHyper(o.validSplit.value_or(o.valid ? 0.0 : 0.1));
    config["max_len"] = std::to_string(o.maxLen);
    config["vocab_size"] = std::to_string(o.vocabSize);
    config["min_freq"] = std::to_string(o.minFreq);
    config["batch"] = std::to_string(o.batch);
    config["lr"] = fmt::format("{}", o.lr);
    config["optimizer"] = o.optimizer.optimizer;
    config["momentum"] = fmt::format("{}", o.optimizer.momentum);
    config["nesterov"] = o.optimizer.nesterov ? "1" : "0";
    config["weight_decay"] = fmt::format("{}", o.optimizer.weightDecay);
    config["clip_norm"] = fmt::format("{}", o.optimizer.clipNorm);
    config["schedule"] = o.schedule;
    config["warmup"] = std::to_string(o.warmup);
    config["seed"] = std::to_string(o.seed);
    config["shuffle"] = o.noShuffle ? "0" : "1";
    config["select_by"] = o.selectBy;
    config["patience"] = std::to_string(o.patience);
    config["plateau_decay"] = fmt::format("{}", o.plateauDecay);
    config["plateau_patience"] = std::to_string(o.plateauPatience);
    if (o.selectBy == "none" && ((o.patience > 0 && cmd.given("--patience")) ||
                                 (o.plateauDecay != 1 && cmd.given("--plateau-decay"))))
      throw UsageError("--patience and --plateau-decay need --select-by (the score they wait on)");
    if (o.selectBy == "none") selectionOff(config); // what a model's train block says about them does not apply
    if (!(o.plateauDecay > 0 && o.plateauDecay <= 1))
      throw UsageError(fmt::format("--plateau-decay must be in (0, 1], got {}", o.plateauDecay));
    optimizerConfig(o.optimizer); // validates the combination
  }
  // On --resume the values come from the checkpoint, which may have been edited.
  std::string configFile = resume ? *resume : "the command line";
  auto cfgInt = [&](const char *k) { return runtime::configInteger(config, k, configFile); };
  auto cfgNum = [&](const char *k) { return runtime::configNumber(config, k, configFile); };
  config["epochs"] = std::to_string(o.epochs.value_or(resume && config.count("epochs") ? cfgInt("epochs") : 5));
  uint64_t seed = static_cast<uint64_t>(cfgInt("seed"));
  // Checkpoints from before --no-shuffle shuffled.
  bool shuffle = !config.count("shuffle") || runtime::configString(config, "shuffle", configFile) != "0";

  // Data, vocabulary, labels.
  auto start = std::chrono::steady_clock::now();
  std::vector<runtime::RawExample> trainEx, validEx;
  // Data-parallel, each process reads its own part of the data and keeps
  // the examples of the split it owns (runtime/data_shard.h).
  std::optional<runtime::ShardSplit> shardSplit;
  if (comm) {
    runtime::FileShard data = readDataShard(o.data, o.skipBad, *comm);
    // A --valid file leaves the data file whole and in order for training.
    shardSplit = runtime::splitShard(std::move(data), o.valid ? 0.0 : cfgNum("valid_split"), seed, shuffle && !o.valid);
    trainEx = std::move(shardSplit->train);
    validEx = std::move(shardSplit->valid);
    if (o.valid) {
      runtime::FileShard valid = readDataShard(*o.valid, o.skipBad, *comm);
      validEx = std::move(valid.examples);
      shardSplit->validTotal = valid.total;
    }
  } else if (o.valid) {
    trainEx = readData(o.data, o.skipBad);
    validEx = readData(*o.valid, o.skipBad);
  } else {
    runtime::splitExamples(readData(o.data, o.skipBad), cfgNum("valid_split"), seed, trainEx, validEx, shuffle);
  }
  const size_t trainTotal = shardSplit ? shardSplit->trainFileIndex.size() : trainEx.size();
  const size_t validTotal = shardSplit ? shardSplit->validTotal : validEx.size();
  // Selection that comes from the model's train block steps aside when
  // there is nothing to select on (--valid-split 0: all data for training).
  if (!resume && validTotal == 0 && o.selectBy != "none" && !cmd.given("--select-by")) {
    if (rank0) fmt::print(stderr, "note: no validation data, so the model's 'train' block's select_by {} (and patience, plateau "
                       "decay) is off: the model is the last epoch's\n",
               o.selectBy);
    selectionOff(config);
  }
  std::vector<std::string> hyperNames;
  for (const frontend::HyperParam &h : program.hyperParams) hyperNames.push_back(h.name);
  auto has = [&](const char *n) { return std::find(hyperNames.begin(), hyperNames.end(), n) != hyperNames.end(); };
  frontend::LowerOptions lowerOpts;
  runtime::Vocabulary vocab;
  runtime::LabelSet labels;
  if (resume) {
    vocab = runtime::Vocabulary(ckpt.vocab);
    labels = runtime::LabelSet(ckpt.labels);
    lowerOpts.overrides = ckpt.hyperParams;
  } else {
    lowerOpts.overrides = paramOverrides(o.params);
    size_t vocabSize = static_cast<size_t>(cfgInt("vocab_size"));
    if (auto it = lowerOpts.overrides.find("vocab"); it != lowerOpts.overrides.end())
      // A malformed value is left for the model's compilation to report.
      if (double v = std::strtod(it->second.c_str(), nullptr); v < 1e15)
        vocabSize = std::min(vocabSize, static_cast<size_t>(std::max(2.0, v)));
    size_t minFreq = static_cast<size_t>(cfgInt("min_freq"));
    vocab = comm ? runtime::sharedVocabulary(trainEx, vocabSize, minFreq, *comm)
                 : runtime::Vocabulary::build(trainEx, vocabSize, minFreq);
    // Labels from the validation part too: a rare label that the split put
    // only there is a class the model has, not an "unknown label".
    std::vector<std::string> names;
    for (const auto *part : {&trainEx, &validEx})
      for (const runtime::RawExample &e : *part) names.push_back(e.label);
    labels = comm ? runtime::sharedLabels(names, *comm) : runtime::LabelSet::fromNames(std::move(names));
    if (has("vocab") && !lowerOpts.overrides.count("vocab")) lowerOpts.overrides["vocab"] = std::to_string(vocab.size());
    if (has("classes") && !lowerOpts.overrides.count("classes"))
      lowerOpts.overrides["classes"] = std::to_string(labels.size());
  }
  // Model, its inputs, the encoded data.
  frontend::LoweredModel model = frontend::compileSource(source, o.model, lowerOpts);
  const ir::Graph *forward = model.module.find("forward");
  if (!forward) throw Error(fmt::format("{}: the model has no fn forward", o.model));
  runtime::InputRecipe recipe = runtime::inputRecipe(*forward);
  if (resume) runtime::checkInputRecipe(recipe, ckpt.config, *resume);
  config["inputs"] = recipe.str();
  size_t maxLen = static_cast<size_t>(cfgInt("max_len"));
  runtime::EncodedData trainData = runtime::encodeExamples(trainEx, vocab, labels, maxLen, recipe);
  runtime::EncodedData validData = runtime::encodeExamples(validEx, vocab, labels, maxLen, recipe);

  // The training step.
  passes::OptimizerConfig opt = optimizerFromConfig(config, configFile, seed);
  ir::Graph trainGraph = passes::buildTrainGraph(*forward, opt);
  ir::verify(trainGraph);
  // Data-parallel, the step runs as its two graphs, and the whole step is
  // only the list of the store's tensors.
  std::unique_ptr<CompiledSplitStep> splitStep;
  std::unique_ptr<runtime::Executable> stepExe;
  if (comm) {
    passes::SplitStep split = passes::buildSplitStep(*forward, opt);
    ir::verify(split.gradients);
    ir::verify(split.update);
    splitStep = compileSplitStep(split, *comm, o.backend, o.passes);
  } else {
    stepExe = compileGraph(trainGraph, o.backend, o.passes);
  }
  auto forwardExe = compileGraph(*forward, o.backend, o.passes);

  if (resume) {
    runtime::materializeParams(trainGraph, ckpt.tensors, 0, /*strict=*/true); // checks every tensor
    if (ckpt.epoch >= cfgInt("epochs"))
      throw Error(fmt::format("{} already finished {} epochs; pass a larger --epochs to continue", *resume, ckpt.epoch));
  } else {
    ckpt.tensors = runtime::materializeParams(trainGraph, {}, seed);
    ckpt.vocab = vocab.tokens();
    ckpt.labels = labels.names();
    ckpt.modelSource = source;
    ckpt.modelFile = o.model;
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
  tc.shuffle = shuffle;
  // Checkpoints from before model selection have none of its keys.
  if (config.count("select_by") && runtime::configString(config, "select_by", configFile) != "none") {
    tc.selectBy = runtime::configString(config, "select_by", configFile);
    tc.patience = cfgInt("patience");
    tc.plateauDecay = cfgNum("plateau_decay");
    tc.plateauPatience = cfgInt("plateau_patience");
  }
  tc.saveEvery = o.saveEvery;
  tc.maxSteps = o.maxSteps;
  tc.checkpointPath = outPath;
  tc.lossLog = o.lossLog.value_or("");
  runtime::TrainShard trainShard;
  if (comm) {
    trainShard = runtime::trainShard(*shardSplit, trainData, *comm);
    splitStep->dataParallel.shard = &trainShard;
    tc.dataParallel = &splitStep->dataParallel;
  }
  runtime::scheduledLr(tc, 1, 1); // validates the schedule name before any work
  tc.firstNonFiniteNode = [&](const runtime::TensorMap &inputs, const runtime::TensorMap &store) -> ir::NodeId {
    reference::RunOptions keep;
    keep.keepAll = true;
    keep.threads = o.backend.compileOptions().threads;
    const ir::Graph &g = stepExe->graph(); // not called in a data-parallel run
    reference::RunResult r = reference::run(g, inputs, store, keep);
    for (size_t i = 0; i < g.nodes().size(); ++i)
      if (runtime::firstNonFinite(r.values[g.nodes()[i].result])) return static_cast<ir::NodeId>(i);
    return -1;
  };

  int64_t params = 0;
  for (ir::ValueId p : forward->params()) params += ir::numElements(*ir::concreteShape(forward->type(p).shape, {}));
  double prepSeconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fmt::print(out, "{}: {} parameters | vocabulary {} | labels {} | train {} | valid {} | {}{} ({:.1f} s to prepare)\n",
             o.model, params, vocab.size(), fmt::join(labels.names(), ","), trainTotal,
             validTotal, resume ? fmt::format("resuming at epoch {} batch {}", ckpt.epoch + 1, ckpt.batch)
                                          : std::string("from scratch"),
             comm ? fmt::format(" | {} process{}", comm->size(), comm->size() == 1 ? "" : "es") : std::string(),
             prepSeconds);
  std::fflush(out);
  if (report)
    report->attach(tc, {.model = o.model,
                        .resumedFrom = resume.value_or(""),
                        .startStep = ckpt.step,
                        .startEpoch = ckpt.epoch,
                        .startBatch = ckpt.batch,
                        .epochs = tc.epochs,
                        .trainExamples = static_cast<int64_t>(trainTotal),
                        .validExamples = static_cast<int64_t>(validTotal),
                        .parameters = params,
                        .labels = ckpt.labels,
                        .recipe = ckpt.config,
                        .started = utcNow()});
  auto trainStart = std::chrono::steady_clock::now();
  try {
    runtime::train(comm ? *splitStep->gradients : *stepExe, *forwardExe, tc, trainData,
                   validTotal == 0 ? nullptr : &validData, ckpt, out);
  } catch (const Error &e) {
    // The training error is what the user must see; a report that cannot
    // be written as well (a full disk) does not replace it.
    if (report) try {
        report->finish("error", e.message(), ckpt);
      } catch (const Error &) {
      }
    throw;
  }
  if (report) {
    std::string status = "finished", why;
    if (ckpt.selection.stopped) {
      status = "stopped";
      why = fmt::format("early stopping, no better validation {} in {} epochs",
                        runtime::configString(config, "select_by", configFile), tc.patience);
    } else if (ckpt.epoch < tc.epochs) {
      status = "stopped";
      why = fmt::format("--max-steps {}; continue with --resume", o.maxSteps);
    }
    report->finish(status, why, ckpt);
  }
  fmt::print(out, "trained in {:.1f} s; checkpoint {}{}\n",
             std::chrono::duration<double>(std::chrono::steady_clock::now() - trainStart).count(), tc.checkpointPath,
             report ? "; report " + report->pagePath() : "");
  return 0;
}

int cmdEval(int argc, char **argv) {
  EvalArgs o;
  cli::Command cmd("eval", "--ckpt CKPT --data TEST.tsv [options]",
                   "Prints accuracy, macro-F1, per-class precision/recall/F1 and the confusion\n"
                   "matrix of a checkpoint on labelled data.");
  declare(cmd, o);
  if (listPassesRequested(argc, argv)) return fmt::print("{}", listPasses()), 0;
  if (!cmd.parse(argc, argv, 2)) return 0;
  LoadedModel m = loadTrained(o.trained);
  runtime::Vocabulary vocab(m.ckpt.vocab);
  runtime::LabelSet labels(m.ckpt.labels);
  auto examples = readData(o.data, o.skipBad);
  auto data = runtime::encodeExamples(examples, vocab, labels, maxLenOf(o.trained, m.ckpt), m.inputs);
  auto exe = compileGraph(*m.forward, o.backend, o.passes);
  auto start = std::chrono::steady_clock::now();
  runtime::EvalResult r = runtime::evaluate(*exe, runtime::modelTensors(m.ckpt), data, o.batch);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!std::isfinite(r.meanLoss))
    throw Error(fmt::format("{}: the model's loss on {} is {}: its logits are not finite (weights that overflow)",
                            o.trained.ckpt, o.data, r.meanLoss));
  const bool selected = m.ckpt.selection.bestEpoch > 0 && !o.trained.model;
  if (o.format == "json") {
    fmt::print("{}\n", json::write(evalJson(r, labels.names(), seconds, selected ? m.ckpt.selection.bestEpoch : 0,
                                              m.ckpt.epoch)));
    return 0;
  }
  if (selected)
    fmt::print("model: epoch {} of {} (selected by validation {} {:.4f})\n", m.ckpt.selection.bestEpoch,
               m.ckpt.epoch, runtime::configString(m.ckpt.config, "select_by", o.trained.ckpt),
               m.ckpt.selection.bestScore);
  fmt::print("{} examples, mean loss {:.4f}, {:.1f} s\n", r.examples, r.meanLoss, seconds);
  fmt::print("{}", r.confusion.report(labels.names()));
  return 0;
}

int cmdPredict(int argc, char **argv) {
  PredictArgs o;
  cli::Command cmd("predict", "--ckpt CKPT [options] [--] [TEXT ...]",
                   "Prints one line per TEXT, or per line of standard input when no TEXT is given:\n"
                   "the predicted label, the class probabilities and the text (cut to 60\n"
                   "characters; tab, newline, carriage return and backslash written \\t \\n \\r \\\\),\n"
                   "separated by tabs. A text that is not valid UTF-8 is reported with its line\n"
                   "(<stdin>:LINE) or argument number and skipped, and the exit status is then 1.");
  declare(cmd, o);
  if (listPassesRequested(argc, argv)) return fmt::print("{}", listPasses()), 0;
  if (!cmd.parse(argc, argv, 2)) return 0;
  if (o.html && !o.explain) throw UsageError("--html writes the page of --explain: add --explain");
  if (o.html) {
    std::vector<runtime::CommandInput> inputs{{"--ckpt", o.trained.ckpt}};
    if (o.trained.model) inputs.push_back({"--model", *o.trained.model});
    runtime::checkOutput("--html", *o.html, runtime::OutputKind::Page, inputs, o.force);
  }
  LoadedModel m = loadTrained(o.trained);
  runtime::Vocabulary vocab(m.ckpt.vocab);
  size_t maxLen = maxLenOf(o.trained, m.ckpt);
  // --explain runs the explain graph: the forward graph with the marked
  // weights as outputs, which the passes keep through fusion.
  std::optional<ir::Graph> explainGraph;
  std::vector<explain::Source> sources;
  if (o.explain) {
    try {
      explainGraph = passes::buildExplainGraph(*m.forward);
    } catch (const Error &e) {
      // A checkpoint trained before its model marked anything can still be
      // explained with a source that does (the parameters match by name).
      throw Error(fmt::format("--explain: {} ({}; --model FILE compiles another source that does, against the "
                              "same checkpoint)",
                              e.message(), o.trained.model ? *o.trained.model
                                           : m.ckpt.modelFile.empty() ? o.trained.ckpt
                                                                      : m.ckpt.modelFile));
    }
    sources = explain::sourcesOf(*explainGraph);
  }
  const ir::Graph &graph = explainGraph ? *explainGraph : *m.forward;
  auto exe = compileGraph(graph, o.backend, o.passes);
  runtime::TensorMap params = runtime::modelTensors(m.ckpt);
  const std::string &logitsName = m.forward->outputs().front().name;
  bool colour = o.format == "text" && isatty(fileno(stdout)) && !std::getenv("NO_COLOR");
  std::vector<explain::Explained> explained; // for --html

  // Each text is answered (and flushed) before the next is read, so that
  // predict can serve a pipe line by line; bad texts are reported and skipped.
  size_t bad = 0;
  size_t minLength = runtime::minimumLength(*m.forward);
  auto classify = [&](const std::string &text, const std::string &where) {
    if (size_t at = utf8::firstInvalid(text); at != utf8::npos) {
      fmt::print(stderr, "{}: error: invalid UTF-8 at byte {}\n", where, at);
      ++bad;
      return;
    }
    runtime::EncodedData one;
    runtime::appendEncoded(one, text, 0, vocab, maxLen, m.inputs);
    // Padded as training pads its batches (runtime::bucketLength): a few
    // plans serve texts of every length.
    runtime::Batch batch = runtime::makeBatch(one, {0}, 0, 1, minLength);
    runtime::TensorMap outputs = exe->run(runtime::batchInputs(batch, m.inputs), params);
    const runtime::Tensor &logits = outputs.at(logitsName);
    auto x = logits.f32();
    if (auto at = runtime::firstNonFinite(logits)) {
      // NaN probabilities are not an answer; say so instead of printing them.
      fmt::print(stderr, "{}: error: the model's logit for '{}' is {}: its weights overflow on this text\n", where,
                 m.ckpt.labels[*at], x[*at]);
      ++bad;
      return;
    }
    float mx = *std::max_element(x.begin(), x.end());
    double sum = 0;
    for (float v : x) sum += std::exp(double(v) - mx);
    std::vector<double> prob(x.size());
    for (size_t c = 0; c < x.size(); ++c) prob[c] = std::exp(double(x[c]) - mx) / sum;
    size_t best = std::max_element(x.begin(), x.end()) - x.begin();
    // The labels shown: every one in the checkpoint's order for text
    // without -k; otherwise the most probable first (ties: the earlier
    // label), cut to K.
    std::vector<size_t> shown(x.size());
    std::iota(shown.begin(), shown.end(), size_t{0});
    if (o.topK || o.format != "text")
      std::stable_sort(shown.begin(), shown.end(), [&](size_t a, size_t b) { return prob[a] > prob[b]; });
    if (o.topK && static_cast<size_t>(*o.topK) < shown.size()) shown.resize(static_cast<size_t>(*o.topK));
    explain::Explained e;
    if (o.explain) {
      e.text = text;
      e.tokens = runtime::tokenizeText(text);
      e.tokensInText = e.tokens.size();
      if (e.tokens.size() > maxLen) e.tokens.resize(maxLen);
      for (const std::string &t : e.tokens) e.known.push_back(vocab.id(t) != 1);
      if (e.tokens.empty()) { // the model reads one <unk> (runtime::Vocabulary::encodeTokens)
        e.tokens = {"<unk>"};
        e.known = {false};
      }
      e.weights.assign(e.tokens.size(), 0.0);
      for (const explain::Source &s : sources) {
        std::vector<double> w = explain::perTokenWeights(outputs.at(s.output), s.layout, e.tokens.size());
        for (size_t t = 0; t < w.size(); ++t) e.weights[t] += w[t] / static_cast<double>(sources.size());
      }
      std::vector<size_t> all(x.size());
      std::iota(all.begin(), all.end(), size_t{0});
      std::stable_sort(all.begin(), all.end(), [&](size_t a, size_t b) { return prob[a] > prob[b]; });
      for (size_t c : all) {
        e.labels.push_back(m.ckpt.labels[c]);
        e.probs.push_back(prob[c]);
      }
    }
    if (o.format == "json") {
      json::Array names, probs;
      for (size_t c : shown) {
        names.emplace_back(m.ckpt.labels[c]);
        probs.emplace_back(prob[c]);
      }
      json::Object answer{{"text", text}, {"labels", names}, {"probs", probs}};
      if (o.explain) {
        json::Array tokens, weights;
        for (size_t t = 0; t < e.tokens.size(); ++t) {
          tokens.emplace_back(e.tokens[t]);
          weights.emplace_back(e.weights[t]);
        }
        answer.emplace("tokens", std::move(tokens));
        answer.emplace("weights", std::move(weights));
      }
      fmt::print("{}\n", json::write(answer));
    } else if (o.format == "tsv") {
      std::string pairs;
      for (size_t c : shown) pairs += fmt::format("\t{}\t{:.9g}", m.ckpt.labels[c], prob[c]);
      std::string explanation;
      if (o.explain) { // tokens hold no whitespace: one space-separated field each
        std::vector<std::string> weights;
        for (double w : e.weights) weights.push_back(fmt::format("{:.9g}", w));
        explanation = fmt::format("\t{}\t{}", escapedText(fmt::format("{}", fmt::join(e.tokens, " "))),
                                  fmt::join(weights, " "));
      }
      fmt::print("{}{}\t{}{}\n", m.ckpt.labels[best], pairs, escapedText(text), explanation);
    } else {
      std::string probs;
      for (size_t c : shown) probs += fmt::format("{}{} {:.4f}", probs.empty() ? "" : "  ", m.ckpt.labels[c], prob[c]);
      fmt::print("{}\t{}\t{}\n", m.ckpt.labels[best], probs, echoedText(text));
      if (o.explain) fmt::print("  {}\n", explain::tokensLine(e, colour));
    }
    std::fflush(stdout);
    if (o.html) explained.push_back(std::move(e));
  };
  if (!o.texts.empty()) {
    for (size_t i = 0; i < o.texts.size(); ++i) classify(o.texts[i], fmt::format("<argument {}>", i + 1));
  } else {
    size_t lineNumber = 0;
    for (std::string line; std::getline(std::cin, line);) {
      ++lineNumber;
      if (!line.empty() && line.back() == '\r') line.pop_back(); // CRLF input
      classify(line, fmt::format("<stdin>:{}", lineNumber));
    }
  }
  if (o.html) {
    explain::PageInfo info{m.ckpt.modelFile.empty() ? o.trained.ckpt : m.ckpt.modelFile, o.trained.ckpt, sources};
    if (o.trained.model) info.model = *o.trained.model;
    runtime::writeFileAtomic(*o.html, explain::htmlPage(explained, info));
    fmt::print(stderr, "predict: {} text{} explained in {}\n", explained.size(), explained.size() == 1 ? "" : "s",
               *o.html);
  }
  if (bad) fmt::print(stderr, "predict: {} text{} skipped\n", bad, bad == 1 ? "" : "s");
  return bad ? 1 : 0;
}

} // namespace kiln::tools
