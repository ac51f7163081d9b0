//===- tools/kiln.cpp - the kiln command-line driver ----------------------===//
//
// `kiln compile` prints any stage of the pipeline (--emit=ast|ir|dot) from a
// .kiln model or a .ir file; `kiln run` executes a graph of a model on named
// inputs and writes the outputs (and with --dump-all every intermediate) as
// safetensors; `kiln ops` lists the op table. Every user error is printed as
// `file:line:col: error: ...` with exit status 1; bad usage exits with 2.
//
//===----------------------------------------------------------------------===//
#include "backends/reference/interpreter.h"
#include "frontend/ast.h"
#include "frontend/lower.h"
#include "frontend/parser.h"
#include "ir/dot.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "runtime/init.h"
#include "runtime/safetensors.h"
#include "runtime/text.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "passes/memory_plan.h"
#include "passes/training.h"

#include <algorithm>
#include <cstdio>
#include <malloc.h>
#include <cstring>
#include <fmt/format.h>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

using namespace kiln;
using cli::Args;
using cli::UsageError;

namespace {

const char *mainHelp = R"(kiln - a graph-compiling tensor framework for text classifiers

usage: kiln <command> [options]

commands:
  compile   parse a model and print a stage of the pipeline (ast, ir, dot, stats, memory)
  run       execute a model graph on inputs from a safetensors file
  train     train a model on labelled text, with checkpoints
  eval      accuracy, macro-F1 and confusion matrix of a checkpoint on data
  predict   classify texts with a checkpoint
  bench     time training steps and inference on each backend
  ops       list the op table

Run 'kiln <command> --help' for the options of a command.
)";

const char *compileHelp = R"(usage: kiln compile FILE [options]

Parses FILE (.kiln model, or .ir textual IR) and prints one stage.

options:
  --emit=STAGE      ast | ir | dot | stats | memory  (default: ir)
                      ast    the syntax tree (.kiln input only)
                      ir     the textual IR, which parses back to itself
                      dot    Graphviz; render with: dot -Tsvg
                      stats  per graph: inputs, parameter count and size, ops
                      memory the arena plan: size versus the sum of buffers,
                             peak, largest buffers, activations kept for
                             the backward pass (with --graph=train)
  --bind S=N,...    symbol values for --emit=memory (default B=64,T=128)
  -x LANG           treat FILE as 'kiln' or 'ir' (default: by extension)
  --param NAME=VAL  override a hyper-parameter of the model (repeatable)
  --graph NAME      print only this graph: forward, or train (the whole
                    training step: loss, backward, optimizer update)
  --optimizer NAME  for --graph=train: adam | adamw | sgd (default adam),
                    with --momentum, --weight-decay, --clip-norm as for train
  -o FILE           write to FILE instead of standard output
)";

const char *runHelp = R"(usage: kiln run FILE [options]

Executes a graph of a model with the reference interpreter.

options:
  --inputs FILE       safetensors file with one tensor per graph input
  --text TEXT         instead of --inputs: a sentence to classify (repeatable);
                      words are hashed into the vocabulary (no vocabulary yet)
  --weights FILE      safetensors file with parameters by state_dict name;
                      parameters it lacks are initialised as PyTorch does
  --seed N            seed for initialised parameters (default: 0)
  --outputs FILE      write the graph outputs here (default: print them)
  --dump-all          also write every intermediate value to --outputs, named
                      <value>:<op>@<file>:<line>:<col>
  --graph NAME        the graph to run: forward (default) or train (one
                      training step; inputs also need labels, lr and step;
                      writes loss, grad.* and the updated parameters)
  --optimizer NAME    for --graph=train (see kiln train --help)
  --param NAME=VAL    override a hyper-parameter (repeatable)
  -x LANG             treat FILE as 'kiln' or 'ir' (default: by extension)
  --threads N         worker threads (default: all cores)
)";

bool isIrInput(const Args &args, const std::string &file) {
  if (auto x = args.get("-x")) {
    if (*x == "ir") return true;
    if (*x == "kiln") return false;
    throw UsageError(fmt::format("-x takes 'kiln' or 'ir', got '{}'", *x));
  }
  return file.size() > 3 && file.compare(file.size() - 3, 3, ".ir") == 0;
}

std::string onlyFile(const Args &args, const char *command) {
  if (args.positional.empty()) throw UsageError(fmt::format("{}: no input file", command));
  if (args.positional.size() > 1)
    throw UsageError(fmt::format("{}: one input file expected, got '{}' too", command, args.positional[1]));
  return args.positional[0];
}

/// Adds the `train` graph (training step) to a module when --graph=train asks.
void addTrainGraph(const Args &args, ir::Module &m) {
  if (args.get("--graph").value_or("") != "train" || m.find("train")) return;
  const ir::Graph *forward = m.find("forward");
  if (!forward) throw Error("--graph=train needs a module with a forward graph");
  ir::Graph train = passes::buildTrainGraph(*forward, tools::optimizerConfig(args));
  ir::verify(train);
  m.graphs().push_back(std::move(train));
}

/// Loads a module from a .kiln or .ir file, verified.
ir::Module loadModule(const Args &args, const std::string &file) {
  if (isIrInput(args, file)) {
    if (!args.all("--param").empty()) throw UsageError("--param applies to .kiln models, not IR input");
    std::string text = frontend::readFile(file);
    registerSource(file, text);
    ir::Module m = ir::parseModule(text, file);
    ir::verify(m);
    addTrainGraph(args, m);
    return m;
  }
  frontend::LowerOptions opts;
  opts.overrides = cli::paramOverrides(args);
  ir::Module m = frontend::compileFile(file, opts).module;
  ir::verify(m);
  addTrainGraph(args, m);
  return m;
}

void writeText(const Args &args, const std::string &text) {
  auto out = args.get("-o");
  if (!out) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    return;
  }
  FILE *f = std::fopen(out->c_str(), "wb");
  if (!f) throw Error(fmt::format("cannot write '{}': {}", *out, std::strerror(errno)));
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) throw Error(fmt::format("cannot write '{}': {}", *out, std::strerror(errno)));
}

/// A summary of each graph: inputs, parameters and op counts.
std::string moduleStats(const ir::Module &m) {
  std::string out;
  for (const ir::Graph &g : m.graphs()) {
    int64_t elements = 0;
    for (ir::ValueId p : g.params()) elements += ir::numElements(*ir::concreteShape(g.type(p).shape, {}));
    std::map<std::string, int> ops;
    for (const ir::Node &n : g.nodes()) ++ops[ir::opName(n.op)];
    out += fmt::format("graph @{}: {} inputs, {} parameters ({} floats, {:.2f} MiB), {} ops\n", g.name(),
                       g.inputs().size(), g.params().size(), elements, elements * 4.0 / (1 << 20), g.nodes().size());
    for (ir::ValueId v : g.inputs()) out += fmt::format("  input  {}: {}\n", g.value(v).name, g.type(v).str());
    for (const ir::Output &o : g.outputs()) out += fmt::format("  output {}: {}\n", o.name, g.type(o.value).str());
    std::string list;
    for (auto &[name, count] : ops) list += fmt::format("{}{} {}", list.empty() ? "" : ", ", count, name);
    out += "  ops    " + list + "\n";
  }
  return out;
}

/// Symbol values for --emit=memory: --bind B=64,T=128; B and T default to
/// the benchmark shape 64 and 128.
ir::SymbolBindings parseBindings(const Args &args, const ir::Graph &g) {
  ir::SymbolBindings b;
  if (auto text = args.get("--bind")) {
    size_t pos = 0;
    while (pos <= text->size()) {
      size_t comma = text->find(',', pos);
      std::string item = text->substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      auto eq = item.find('=');
      char *end = nullptr;
      long long v = eq == std::string::npos ? -1 : std::strtoll(item.c_str() + eq + 1, &end, 10);
      if (eq == std::string::npos || eq == 0 || v < 0 || *end != '\0' || end == item.c_str() + eq + 1)
        throw UsageError(fmt::format("--bind needs SYMBOL=N[,SYMBOL=N...], got '{}'", *text));
      b[item.substr(0, eq)] = v;
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
  }
  for (const std::string &sym : g.inputSymbols()) {
    if (b.count(sym)) continue;
    if (sym == "B") b[sym] = 64;
    else if (sym == "T") b[sym] = 128;
    else throw UsageError(fmt::format("--emit=memory needs a value for the symbol {}: --bind {}=N", sym, sym));
  }
  return b;
}

int cmdCompile(int argc, char **argv) {
  std::vector<std::string> valued = {"--emit", "-x", "--param", "--graph", "-o", "--bind"};
  valued.insert(valued.end(), tools::optimizerValuedOptions.begin(), tools::optimizerValuedOptions.end());
  Args args(argc, argv, 2, valued, {"--nesterov"});
  if (args.help) {
    std::fputs(compileHelp, stdout);
    return 0;
  }
  std::string file = onlyFile(args, "compile");
  std::string emit = args.get("--emit").value_or("ir");
  // Bindings only size buffers; silently ignoring them elsewhere would hide a typo'd --emit.
  if (emit != "memory" && args.get("--bind")) throw UsageError("--bind applies only to --emit=memory");
  if (emit == "ast") {
    if (isIrInput(args, file)) throw UsageError("--emit=ast needs a .kiln model, not IR");
    std::string text = frontend::readFile(file);
    registerSource(file, text);
    frontend::Program p = frontend::parseProgram(text, file);
    writeText(args, frontend::printAst(p));
    return 0;
  }
  if (emit != "ir" && emit != "dot" && emit != "stats" && emit != "memory")
    throw UsageError(fmt::format("--emit takes ast, ir, dot, stats or memory, got '{}'", emit));
  ir::Module m = loadModule(args, file);
  if (auto only = args.get("--graph")) {
    const ir::Graph *g = m.find(*only);
    if (!g) throw Error(fmt::format("the module has no graph @{}", *only));
    ir::Module one;
    one.graphs().push_back(*g);
    m = std::move(one);
  }
  if (emit == "memory") {
    std::string report;
    for (const ir::Graph &g : m.graphs()) {
      ir::SymbolBindings b = parseBindings(args, g);
      report += passes::printMemoryPlan(g, b, passes::planMemory(g, b));
    }
    writeText(args, report);
    return 0;
  }
  writeText(args, emit == "ir" ? ir::printModule(m) : emit == "dot" ? ir::printDot(m) : moduleStats(m));
  return 0;
}

std::string baseName(const std::string &path) {
  auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

/// Prints a tensor compactly: type, then rows of values.
void printTensor(const std::string &name, const runtime::Tensor &t) {
  fmt::print("{} : {}\n", name, t.typeStr());
  int64_t cols = t.rank() == 0 ? 1 : t.shape().back();
  int64_t rows = cols == 0 ? 0 : t.numel() / cols;
  for (int64_t r = 0; r < std::min<int64_t>(rows, 16); ++r) {
    std::string line = "  [";
    for (int64_t c = 0; c < std::min<int64_t>(cols, 12); ++c) {
      int64_t i = r * cols + c;
      std::string v = t.dtype() == ir::DType::F32   ? fmt::format("{: .5f}", t.f32()[i])
                      : t.dtype() == ir::DType::I32 ? fmt::format("{}", t.i32()[i])
                                                    : (t.b8()[i] ? "true" : "false");
      line += (c ? ", " : "") + v;
    }
    fmt::print("{}{}]\n", line, cols > 12 ? ", ..." : "");
  }
  if (rows > 16) fmt::print("  ... ({} rows)\n", rows);
}

int cmdRun(int argc, char **argv) {
  std::vector<std::string> valued = {"--inputs", "--text", "--weights", "--seed", "--outputs",
                                     "--graph",  "--param", "-x",        "--threads"};
  valued.insert(valued.end(), tools::optimizerValuedOptions.begin(), tools::optimizerValuedOptions.end());
  Args args(argc, argv, 2, valued, {"--dump-all", "--nesterov"});
  if (args.help) {
    std::fputs(runHelp, stdout);
    return 0;
  }
  std::string file = onlyFile(args, "run");
  if (args.get("--inputs") && !args.all("--text").empty()) throw UsageError("give --inputs or --text, not both");
  if (!args.get("--inputs") && args.all("--text").empty()) throw UsageError("run needs --inputs FILE or --text TEXT");
  if (args.flag("--dump-all") && !args.get("--outputs")) throw UsageError("--dump-all needs --outputs FILE");

  ir::Module m = loadModule(args, file);
  std::string graphName = args.get("--graph").value_or("forward");
  const ir::Graph *g = m.find(graphName);
  if (!g) throw Error(fmt::format("the module has no graph @{}", graphName));

  std::map<std::string, runtime::Tensor> inputs;
  if (auto in = args.get("--inputs")) {
    inputs = runtime::readSafeTensors(*in).tensors;
  } else {
    if (g->inputs().size() != 1 || g->type(g->inputs()[0]).dtype != ir::DType::I32 || g->type(g->inputs()[0]).rank() != 2)
      throw Error(fmt::format("--text needs a graph with one input i32[B,T]; @{} has {} inputs", graphName,
                              g->inputs().size()));
    int64_t vocab = 2;
    for (ir::ValueId p : g->params())
      for (const ir::Node &n : g->nodes())
        if (n.op == ir::OpKind::Embedding && n.operands[0] == p) vocab = g->type(p).shape[0].value;
    std::vector<std::vector<int32_t>> seqs;
    for (const std::string &t : args.all("--text")) {
      auto ids = runtime::hashedIds(runtime::tokenizeText(t), vocab);
      if (ids.empty()) throw Error(fmt::format("--text '{}' has no words", t));
      seqs.push_back(ids);
    }
    inputs[g->value(g->inputs()[0]).name] = runtime::padBatch(seqs);
  }

  std::map<std::string, runtime::Tensor> given;
  if (auto w = args.get("--weights")) given = runtime::readSafeTensors(*w).tensors;
  int64_t seed = args.integer("--seed", 0);
  // Optimizer state not given starts at zero, as a fresh torch.optim does;
  // only model parameters are worth a note.
  size_t missing = 0, modelParams = 0;
  for (ir::ValueId p : g->params()) {
    if (g->value(p).name.rfind("optimizer.", 0) == 0) continue;
    ++modelParams;
    missing += given.count(g->value(p).name) == 0;
  }
  auto params = runtime::materializeParams(*g, given, static_cast<uint64_t>(seed), /*strict=*/args.get("--weights").has_value());
  if (missing)
    fmt::print(stderr, "note: {} of {} parameters were not given and were initialised from seed {}\n", missing,
               modelParams, seed);

  reference::RunOptions opts;
  opts.keepAll = args.flag("--dump-all");
  opts.threads = static_cast<int>(args.integer("--threads", 0));
  reference::RunResult r = reference::run(*g, inputs, params, opts);

  auto out = args.get("--outputs");
  if (!out) {
    for (const ir::Output &o : g->outputs()) printTensor(o.name, r.outputs.at(o.name));
    return 0;
  }
  runtime::SafeTensors st;
  for (auto &[name, t] : r.outputs) st.tensors[name] = t;
  if (opts.keepAll) {
    std::vector<std::string> names = ir::valueNames(*g);
    for (const ir::Node &n : g->nodes()) {
      std::string key = names[n.result].substr(1) + ":" + ir::opName(n.op);
      if (!n.locs.empty())
        key += fmt::format("@{}:{}:{}", baseName(n.locs[0].file), n.locs[0].line, n.locs[0].col);
      st.tensors[key] = r.values.at(n.result);
    }
  }
  st.metadata["graph"] = graphName;
  st.metadata["source"] = file;
  runtime::writeSafeTensors(*out, st);
  return 0;
}

int cmdOps() {
  for (const ir::OpInfo &op : ir::allOps())
    fmt::print("{:<14} {} operand{}  {}\n", op.name,
               op.minOperands == op.maxOperands ? fmt::format("{}", op.minOperands)
                                                : fmt::format("{}-{}", op.minOperands, op.maxOperands),
               op.maxOperands == 1 ? " " : "s", op.summary);
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  // Every step allocates its outputs (parameter-sized tensors in training).
  // glibc serves large blocks with fresh mmap()ed pages by default, and on
  // these VMs faulting fresh pages in costs more than the step itself; keep
  // large blocks on the heap and keep freed memory, so steps reuse it.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  try {
    if (argc < 2) {
      std::fputs(mainHelp, stderr);
      return 2;
    }
    std::string cmd = argv[1];
    if (cmd == "-h" || cmd == "--help" || cmd == "help") {
      std::fputs(mainHelp, stdout);
      return 0;
    }
    if (cmd == "compile") return cmdCompile(argc, argv);
    if (cmd == "run") return cmdRun(argc, argv);
    if (cmd == "ops") return cmdOps();
    if (cmd == "train") return tools::cmdTrain(argc, argv);
    if (cmd == "eval") return tools::cmdEval(argc, argv);
    if (cmd == "predict") return tools::cmdPredict(argc, argv);
    if (cmd == "bench") return tools::cmdBench(argc, argv);
    std::string hint = nearestName(cmd, {"compile", "run", "train", "eval", "predict", "bench", "ops"});
    throw UsageError(fmt::format("unknown command '{}'{}", cmd, hint.empty() ? "" : "; did you mean '" + hint + "'?"));
  } catch (const UsageError &e) {
    fmt::print(stderr, "kiln: error: {}\nRun 'kiln --help' for usage.\n", e.what());
    return 2;
  } catch (const Error &e) {
    std::fputs(formatError(e).c_str(), stderr);
    return 1;
  } catch (const std::bad_alloc &) {
    std::fputs("kiln: error: out of memory\n", stderr);
    return 1;
  } catch (const std::exception &e) {
    fmt::print(stderr, "kiln: internal error: {}\n", e.what());
    return 70;
  }
}
