//===- tools/kiln.cpp - the kiln command-line driver ----------------------===//
//
// main() dispatches to the command named first (the table `commands` below,
// which also makes `kiln --help`), handles `kiln help CMD` and `kiln
// --version`, and turns exceptions into exit statuses: cli::UsageError is
// `kiln: error: ...` plus a pointer to --help with status 2, kiln::Error a
// located `file:line:col: error: ...` with status 1.
//
// The commands here: `kiln compile` prints any stage of the pipeline
// (--emit=ast|ir|dot|stats|memory) from a .kiln model or a .ir file; `kiln
// run` executes a graph of a model on named inputs on any backend and
// writes the outputs (with --dump-all, on the reference interpreter, every
// intermediate) as safetensors; `kiln ops` lists the op table. Each command
// declares its options in one function, declare(), next to the struct they
// fill (tools/cli.h).
//
//===----------------------------------------------------------------------===//
#include "backends/backend.h"
#include "backends/llvm/compile_cache.h"
#include "backends/llvm/llvm_backend.h"
#include "backends/reference/interpreter.h"
#include "frontend/ast.h"
#include "frontend/lower.h"
#include "frontend/parser.h"
#include "ir/dot.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "passes/explain.h"
#include "passes/memory_plan.h"
#include "passes/pipeline.h"
#include "passes/training.h"
#include "runtime/distributed.h"
#include "runtime/data.h"
#include "runtime/init.h"
#include "runtime/output_guard.h"
#include "runtime/safetensors.h"
#include "runtime/text.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/options.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fmt/format.h>
#include <iostream>
#include <iterator>
#include <malloc.h>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

using namespace kiln;
using cli::UsageError;

namespace {

/// What the model commands (compile and run) read: a .kiln model or a .ir
/// file, with --param overrides and, for --graph=train, the optimizer.
struct ModelInput {
  std::string file;
  std::optional<std::string> lang;
  std::vector<std::string> params;
  std::optional<std::string> graph;
  tools::OptimizerOptions optimizer;
};

/// FILE, -x and --param (the --graph and optimizer options differ in help
/// between compile and run and are declared by each).
void declareModelInput(cli::Command &cmd, ModelInput &in) {
  cmd.positional("FILE", in.file, "the model: a .kiln file, or textual IR (.ir)");
  cmd.option("-x", in.lang, "LANG", "read FILE as")
      .choices({{"kiln", ""}, {"ir", ""}})
      .defaultText("by its extension, .ir or else kiln");
  tools::declareParamOption(cmd, in.params);
}

bool isIrInput(const ModelInput &in) {
  if (in.lang) return *in.lang == "ir";
  return in.file.size() > 3 && in.file.compare(in.file.size() - 3, 3, ".ir") == 0;
}

/// Adds the graph --graph=train (the training step) or --graph=explain
/// (forward plus the @explain weights, passes/explain.h) asks for, made
/// from the forward graph, unless the module has it already.
void addDerivedGraph(const ModelInput &in, ir::Module &m) {
  std::string name = in.graph.value_or("");
  if ((name != "train" && name != "explain") || m.find(name)) return;
  const ir::Graph *forward = m.find("forward");
  if (!forward) throw Error(fmt::format("--graph={} needs a module with a forward graph", name));
  ir::Graph g = name == "train" ? passes::buildTrainGraph(*forward, tools::optimizerConfig(in.optimizer))
                                : passes::buildExplainGraph(*forward);
  ir::verify(g);
  m.graphs().push_back(std::move(g));
}

/// Loads a module from a .kiln or .ir file, verified.
ir::Module loadModule(const ModelInput &in) {
  if (isIrInput(in)) {
    if (!in.params.empty()) throw UsageError("--param applies to .kiln models, not IR input");
    std::string text = frontend::readFile(in.file);
    registerSource(in.file, text);
    ir::Module m = ir::parseModule(text, in.file);
    ir::verify(m);
    addDerivedGraph(in, m);
    return m;
  }
  frontend::LowerOptions opts;
  opts.overrides = tools::paramOverrides(in.params);
  ir::Module m = frontend::compileFile(in.file, opts).module;
  ir::verify(m);
  addDerivedGraph(in, m);
  return m;
}

/// Standard output, or -o FILE written atomically (checked by checkOutput
/// before any work).
void writeText(const std::optional<std::string> &out, const std::string &text) {
  if (!out) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    return;
  }
  runtime::writeFileAtomic(*out, text);
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

/// Symbol values for --emit=memory, llvm, asm and obj: --bind B=64,T=128;
/// B and T default to the benchmark shape 64 and 128.
ir::SymbolBindings parseBindings(const std::optional<std::string> &text, const ir::Graph &g, const std::string &emit) {
  ir::SymbolBindings b = text ? tools::parseBindList(*text, 0) : ir::SymbolBindings{};
  for (const std::string &sym : g.inputSymbols()) {
    if (b.count(sym)) continue;
    if (sym == "B") b[sym] = 64;
    else if (sym == "T") b[sym] = 128;
    else throw UsageError(fmt::format("--emit={} needs a value for the symbol {}: --bind {}=N", emit, sym, sym));
  }
  return b;
}

// --- kiln compile --------------------------------------------------------------

struct CompileArgs {
  ModelInput input;
  std::string emit = "ir";
  std::optional<std::string> backend;
  bool annotate = false;
  std::optional<std::string> bind;
  std::optional<std::string> output;
  bool force = false;
  tools::PassOptions passes;
};

void declare(cli::Command &cmd, CompileArgs &o) {
  cmd.option("--emit", o.emit, "STAGE", "what to print")
      .choices({{"ast", "the syntax tree (.kiln input only)"},
                {"ir", "the textual IR, which parses back to itself"},
                {"dot", "Graphviz; render with: dot -Tsvg"},
                {"stats", "per graph: inputs, parameter count and size, ops"},
                {"memory", "the arena plan: size versus the sum of buffers, peak, largest buffers, activations "
                           "kept for the backward pass (with --graph=train)"},
                {"llvm", "the LLVM IR the llvm backend runs for the shape --bind gives, after O3"},
                {"asm", "its machine code for this CPU, as assembly (--annotate: beside the DSL lines)"},
                {"obj", "its machine code as an ELF object file (needs -o and one graph)"}});
  std::vector<cli::Choice> backendNames;
  for (const backends::BackendInfo &b : backends::registry()) backendNames.push_back({b.name, b.summary});
  cmd.option("--backend", o.backend, "NAME", "the backend whose code --emit=llvm, asm and obj show (only llvm "
                                             "generates code)")
      .choices(std::move(backendNames))
      .defaultText("llvm");
  cmd.flag("--annotate", o.annotate,
           "with --emit=asm: each DSL source line, then the instructions generated for it (from the DWARF lines)");
  cmd.option("--bind", o.bind, "S=N,...", "symbol values for --emit=memory, llvm, asm and obj").defaultText("B=64,T=128");
  cmd.option("--graph", o.input.graph, "NAME",
             "print only this graph: forward, train (the whole training step: loss, backward, optimizer update), "
             "or explain (forward with the @explain weights as outputs, as predict --explain runs it)")
      .defaultText("every graph of the module");
  cmd.option("-o", o.output, "FILE", "write to FILE").defaultText("standard output");
  cmd.flag("--force", o.force, "let -o replace an existing file that is not kiln compiler output (never FILE itself)");
  declareModelInput(cmd, o.input);
  cmd.section("training step (--graph=train)");
  tools::declareOptimizerOptions(cmd, o.input.optimizer);
  tools::declarePassOptions(cmd, o.passes);
}

int cmdCompile(int argc, char **argv) {
  CompileArgs o;
  cli::Command cmd("compile", "FILE [options]",
                   "Parses FILE (a .kiln model, or .ir textual IR) and prints one stage of the\npipeline.");
  declare(cmd, o);
  if (tools::listPassesRequested(argc, argv)) return fmt::print("{}", tools::listPasses()), 0;
  if (!cmd.parse(argc, argv, 2)) return 0;
  // Options only some stages take; silently ignoring them would hide a typo'd --emit.
  bool code = o.emit == "llvm" || o.emit == "asm" || o.emit == "obj";
  if (o.emit != "memory" && !code && o.bind) throw UsageError("--bind applies only to --emit=memory, llvm, asm and obj");
  if (!code && o.backend) throw UsageError("--backend applies only to --emit=llvm, asm and obj");
  if (o.annotate && o.emit != "asm") throw UsageError("--annotate applies only to --emit=asm");
  if (code && o.backend && *o.backend != "llvm")
    throw UsageError(fmt::format("--emit={} shows generated code, and only --backend llvm generates code (got '{}')",
                                 o.emit, *o.backend));
  if (o.emit == "obj" && !o.output) throw UsageError("--emit=obj writes an object file: give -o FILE");
  if (o.output)
    runtime::checkOutput("-o", *o.output, runtime::OutputKind::CompilerDump, {{"the model", o.input.file}}, o.force);
  if (o.emit == "ast") {
    if (isIrInput(o.input)) throw UsageError("--emit=ast needs a .kiln model, not IR");
    std::string text = frontend::readFile(o.input.file);
    registerSource(o.input.file, text);
    frontend::Program p = frontend::parseProgram(text, o.input.file);
    writeText(o.output, frontend::printAst(p));
    return 0;
  }
  ir::Module m = loadModule(o.input);
  if (const auto &only = o.input.graph) {
    const ir::Graph *g = m.find(*only);
    if (!g) throw Error(fmt::format("the module has no graph @{}", *only));
    ir::Module one;
    one.graphs().push_back(*g);
    m = std::move(one);
  }
  // What compile prints is what a backend would run: each graph after the
  // pass pipeline (--passes= shows the graphs as lowered).
  std::vector<passes::PassRecord> records;
  for (ir::Graph &g : m.graphs()) {
    auto r = passes::runPipeline(g, o.passes.pipeline());
    records.insert(records.end(), r.begin(), r.end());
  }
  if (o.passes.timePasses) o.passes.pipeline().print(passes::formatPassTimes(records));
  if (code) {
    if (o.emit == "obj" && m.graphs().size() != 1)
      throw UsageError("--emit=obj writes the code of one graph: pick it with --graph");
    auto kind = o.emit == "llvm"  ? backends::llvm_backend::EmitKind::LlvmIr
                : o.emit == "asm" ? backends::llvm_backend::EmitKind::Assembly
                                  : backends::llvm_backend::EmitKind::Object;
    std::string out;
    for (const ir::Graph &g : m.graphs()) {
      ir::SymbolBindings b = parseBindings(o.bind, g, o.emit);
      std::string shape;
      for (const auto &[symbol, value] : b) shape += fmt::format("{}{}={}", shape.empty() ? "" : ",", symbol, value);
      if (kind != backends::llvm_backend::EmitKind::Object)
        out += fmt::format("{} the llvm backend's code of @{} at {}\n", o.emit == "llvm" ? ";" : "#", g.name(), shape);
      out += backends::llvm_backend::emitCode(g, b, kind, o.annotate);
    }
    writeText(o.output, out);
    return 0;
  }
  if (o.emit == "memory") {
    std::string report;
    for (const ir::Graph &g : m.graphs()) {
      ir::SymbolBindings b = parseBindings(o.bind, g, o.emit);
      report += passes::printMemoryPlan(g, b, passes::planMemory(g, b));
    }
    writeText(o.output, report);
    return 0;
  }
  writeText(o.output, o.emit == "ir" ? ir::printModule(m) : o.emit == "dot" ? ir::printDot(m) : moduleStats(m));
  return 0;
}

// --- kiln run --------------------------------------------------------------------

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

/// `min .. max, mean m` of a tensor's finite elements (f32), or its type.
std::string tensorSummary(const runtime::Tensor &t) {
  if (t.dtype() != ir::DType::F32) return t.typeStr();
  double lo = INFINITY, hi = -INFINITY, sum = 0;
  int64_t finite = 0, nan = 0, inf = 0;
  for (float v : t.f32()) {
    if (std::isnan(v)) ++nan;
    else if (std::isinf(v)) ++inf;
    else {
      lo = std::min<double>(lo, v);
      hi = std::max<double>(hi, v);
      sum += v;
      ++finite;
    }
  }
  std::string out = t.typeStr();
  if (finite) out += fmt::format(" min {:.6g} max {:.6g} mean {:.6g}", lo, hi, sum / static_cast<double>(finite));
  if (nan || inf) out += fmt::format(" ({} NaN, {} infinite)", nan, inf);
  return out;
}

/// --check-nan: runs g keeping every value; a kiln::Error at the first node
/// whose result is not finite, with what its inputs held.
void reportFirstNonFinite(const ir::Graph &g, const runtime::TensorMap &inputs, const runtime::TensorMap &params,
                          int threads) {
  reference::RunOptions keep;
  keep.keepAll = true;
  keep.threads = threads;
  reference::RunResult r = reference::run(g, inputs, params, keep);
  std::vector<std::string> names = ir::valueNames(g);
  auto valueOf = [&](ir::ValueId v) -> const runtime::Tensor & {
    const ir::ValueInfo &info = g.value(v);
    if (info.kind == ir::ValueKind::Input) return inputs.at(info.name);
    if (info.kind == ir::ValueKind::Param) return params.at(info.name);
    return r.values[v];
  };
  for (const ir::Node &n : g.nodes())
    for (ir::ValueId res : n.results()) {
      auto bad = runtime::firstNonFinite(r.values[res]);
      if (!bad) continue;
      std::string message = fmt::format("{} = {} produces {} at element {}; its inputs:", names[res],
                                        ir::opName(n.op), r.values[res].f32()[*bad], *bad);
      for (ir::ValueId v : n.operands) message += fmt::format("\n  {}: {}", names[v], tensorSummary(valueOf(v)));
      throw Error(message, n.locs.empty() ? SourceLoc{} : n.locs.front());
    }
  fmt::print(stderr, "check-nan: every value of @{} is finite\n", g.name());
}

struct RunArgs {
  ModelInput input;
  std::optional<std::string> inputs;
  std::vector<std::string> texts;
  std::optional<std::string> weights;
  int64_t seed = 0;
  std::optional<std::string> outputs;
  bool dumpAll = false;
  bool checkNan = false;
  bool force = false;
  tools::BackendOptions backend;
  tools::PassOptions passes;
};

void declare(cli::Command &cmd, RunArgs &o) {
  declareModelInput(cmd, o.input);
  cmd.option("--graph", o.input.graph, "NAME",
             "the graph to run: forward, train (one training step; inputs also need labels, lr and step; "
             "writes loss, grad.* and the updated parameters), or explain (forward, and the @explain weights as "
             "explain.NAME)")
      .defaultText("forward");
  cmd.section("inputs");
  cmd.option("--inputs", o.inputs, "FILE", "safetensors file with one tensor per graph input");
  cmd.option("--text", o.texts, "TEXT",
             "instead of --inputs: a sentence to classify; words are hashed into the vocabulary (no vocabulary "
             "without a checkpoint)");
  cmd.option("--weights", o.weights, "FILE",
             "safetensors file with parameters by state_dict name; parameters it lacks are initialised as PyTorch "
             "does");
  cmd.option("--seed", o.seed, "N", "seed for initialised parameters");
  cmd.section("outputs");
  cmd.option("--outputs", o.outputs, "FILE", "write the graph outputs here").defaultText("print them");
  cmd.flag("--dump-all", o.dumpAll,
           "also write every intermediate value to --outputs, named <value>:<op>@<file>:<line>:<col> "
           "(reference backend only)");
  cmd.flag("--check-nan", o.checkNan,
           "stop at the first op whose result has a NaN or an infinity, and report its DSL location and the min, max "
           "and mean of its inputs (reference backend only; the fusion passes are skipped, so that the op is the DSL's own)");
  cmd.flag("--force", o.force, "let --outputs replace an existing file that is not a safetensors file");
  cmd.section("backend");
  // The oracle by default: run is how outputs are checked against PyTorch.
  o.backend.backend = backends::kOracleBackend;
  tools::declareBackendOptions(cmd, o.backend);
  cmd.section("training step (--graph=train)");
  tools::declareOptimizerOptions(cmd, o.input.optimizer);
  tools::declarePassOptions(cmd, o.passes);
}

int cmdRun(int argc, char **argv) {
  RunArgs o;
  cli::Command cmd("run", "FILE (--inputs FILE | --text TEXT ...) [options]",
                   "Executes a graph of a model on a backend and prints or writes its outputs.");
  declare(cmd, o);
  if (tools::listPassesRequested(argc, argv)) return fmt::print("{}", tools::listPasses()), 0;
  if (!cmd.parse(argc, argv, 2)) return 0;
  if (o.inputs && !o.texts.empty()) throw UsageError("give --inputs or --text, not both");
  if (!o.inputs && o.texts.empty()) throw UsageError("run needs --inputs FILE or --text TEXT");
  if (o.dumpAll && !o.outputs) throw UsageError("--dump-all needs --outputs FILE");
  if (o.outputs) {
    std::vector<runtime::CommandInput> inputs = {{"the model", o.input.file}};
    if (o.inputs) inputs.push_back({"--inputs", *o.inputs});
    if (o.weights) inputs.push_back({"--weights", *o.weights});
    runtime::checkOutput("--outputs", *o.outputs, runtime::OutputKind::SafeTensors, inputs, o.force);
  }
  if (o.dumpAll && o.backend.backend != backends::kOracleBackend)
    throw UsageError(fmt::format("--dump-all needs --backend {}: only the interpreter keeps every intermediate",
                                 backends::kOracleBackend));
  if (o.checkNan && o.backend.backend != backends::kOracleBackend)
    throw UsageError(fmt::format("--check-nan needs --backend {}: only the interpreter keeps every intermediate",
                                 backends::kOracleBackend));

  ir::Module m = loadModule(o.input);
  std::string graphName = o.input.graph.value_or("forward");
  const ir::Graph *g = m.find(graphName);
  if (!g) throw Error(fmt::format("the module has no graph @{}", graphName));

  std::map<std::string, runtime::Tensor> inputs;
  if (o.inputs) {
    inputs = runtime::readSafeTensors(*o.inputs).tensors;
  } else {
    if (g->inputs().empty() || g->type(g->inputs()[0]).dtype != ir::DType::I32 || g->type(g->inputs()[0]).rank() != 2)
      throw Error(fmt::format("--text needs a graph whose first input is token ids i32[B,T]; @{} has {}", graphName,
                              g->inputs().empty() ? std::string("no inputs") : g->type(g->inputs()[0]).str()));
    for (ir::ValueId in : g->inputs())
      if (in != g->inputs()[0] && !g->value(in).attrs.count("derived"))
        throw Error(fmt::format("--text fills the token ids (@{}'s first input) and the inputs derived from them; "
                                "its input '{}' is neither (give --inputs FILE)",
                                graphName, g->value(in).name));
    runtime::InputRecipe recipe = runtime::inputRecipe(*g);
    // The vocabulary is the rows of the table that the token ids index.
    int64_t vocab = 2;
    for (const ir::Node &n : g->nodes())
      if (n.op == ir::OpKind::Embedding && n.operands[1] == g->inputs()[0] && !g->type(n.operands[0]).shape[0].isSymbolic())
        vocab = g->type(n.operands[0]).shape[0].value;
    std::vector<std::vector<int32_t>> seqs;
    std::vector<std::vector<std::vector<int32_t>>> derived(recipe.derived.size());
    for (const std::string &t : o.texts) {
      std::vector<std::string> tokens = runtime::tokenizeText(t);
      auto ids = runtime::hashedIds(tokens, vocab);
      if (ids.empty()) throw Error(fmt::format("--text '{}' has no words", t));
      seqs.push_back(ids);
      for (size_t i = 0; i < recipe.derived.size(); ++i)
        derived[i].push_back(runtime::ngramIds(tokens, recipe.derived[i].n, recipe.derived[i].buckets));
    }
    int64_t minLength = static_cast<int64_t>(runtime::minimumLength(*g));
    inputs[recipe.tokens] = runtime::padBatch(seqs, 0, minLength);
    for (size_t i = 0; i < recipe.derived.size(); ++i)
      inputs[recipe.derived[i].name] = runtime::padBatch(derived[i], 0, minLength); // as long as the tokens
  }

  std::map<std::string, runtime::Tensor> given;
  if (o.weights) given = runtime::readSafeTensors(*o.weights).tensors;
  // Optimizer state not given starts at zero, as a fresh torch.optim does;
  // only model parameters are worth a note.
  size_t missing = 0, modelParams = 0;
  for (ir::ValueId p : g->params()) {
    if (g->value(p).name.rfind("optimizer.", 0) == 0) continue;
    ++modelParams;
    missing += given.count(g->value(p).name) == 0;
  }
  auto params = runtime::materializeParams(*g, given, static_cast<uint64_t>(o.seed), /*strict=*/o.weights.has_value());
  if (missing)
    fmt::print(stderr, "note: {} of {} parameters were not given and were initialised from seed {}\n", missing,
               modelParams, o.seed);

  reference::RunResult r;
  ir::Graph optimized;
  if (o.checkNan) {
    // Without the fusions (which change no value): the op named is then the
    // DSL's own, at its own line, not a fused op standing for several.
    optimized = *g;
    passes::PipelineOptions unfused = o.passes.pipeline();
    for (const passes::PassInfo &pass : passes::allPasses())
      if (std::string_view(pass.name).starts_with("fuse-")) unfused.disabled.push_back(pass.name);
    passes::runPipeline(optimized, unfused);
    reportFirstNonFinite(optimized, inputs, params, o.backend.compileOptions().threads);
  }
  if (o.dumpAll) {
    // The intermediates dumped are those of the graph that runs: after the
    // pipeline (--passes= keeps every value the DSL named).
    optimized = *g;
    passes::runPipeline(optimized, o.passes.pipeline());
    g = &optimized;
    reference::RunOptions opts;
    opts.keepAll = true;
    opts.threads = o.backend.compileOptions().threads;
    r = reference::run(*g, inputs, params, opts);
  } else {
    r.outputs = tools::compileGraph(*g, o.backend, o.passes)->run(inputs, params);
  }

  if (!o.outputs) {
    for (const ir::Output &out : g->outputs()) printTensor(out.name, r.outputs.at(out.name));
    return 0;
  }
  runtime::SafeTensors st;
  for (auto &[name, t] : r.outputs) st.tensors[name] = t;
  if (o.dumpAll) {
    std::vector<std::string> names = ir::valueNames(*g);
    for (const ir::Node &n : g->nodes()) {
      std::string key = names[n.result].substr(1) + ":" + ir::opName(n.op);
      if (!n.locs.empty())
        key += fmt::format("@{}:{}:{}", baseName(n.locs[0].file), n.locs[0].line, n.locs[0].col);
      st.tensors[key] = r.values.at(n.result);
    }
  }
  st.metadata["graph"] = graphName;
  st.metadata["source"] = o.input.file;
  runtime::writeSafeTensors(*o.outputs, st);
  return 0;
}

// --- kiln opt --------------------------------------------------------------------

struct OptArgs {
  std::string file;
  std::optional<std::string> output;
  bool force = false;
  tools::PassOptions passes;
};

int cmdOpt(int argc, char **argv) {
  OptArgs o;
  cli::Command cmd("opt", "FILE.ir [--passes=A,B,...] [options]",
                   "Reads textual IR, runs passes over every graph and prints the result as\n"
                   "textual IR (as mlir-opt does): how each pass is tested on small inputs.");
  cmd.positional("FILE.ir", o.file, "textual IR (kiln compile --emit=ir writes it); - for standard input");
  cmd.option("-o", o.output, "FILE", "write to FILE").defaultText("standard output");
  cmd.flag("--force", o.force, "let -o replace an existing file that is not kiln compiler output (never FILE itself)");
  tools::declarePassOptions(cmd, o.passes);
  if (tools::listPassesRequested(argc, argv)) return fmt::print("{}", tools::listPasses()), 0;
  if (!cmd.parse(argc, argv, 2)) return 0;
  if (o.output)
    runtime::checkOutput("-o", *o.output, runtime::OutputKind::CompilerDump, {{"FILE.ir", o.file}}, o.force);
  std::string name = o.file == "-" ? std::string("<stdin>") : o.file;
  std::string text;
  if (o.file == "-") text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  else text = frontend::readFile(o.file);
  registerSource(name, text);
  ir::Module m = ir::parseModule(text, name);
  ir::verify(m);
  std::vector<passes::PassRecord> records;
  for (ir::Graph &g : m.graphs()) {
    auto r = passes::runPipeline(g, o.passes.pipeline());
    records.insert(records.end(), r.begin(), r.end());
  }
  if (o.passes.timePasses) o.passes.pipeline().print(passes::formatPassTimes(records));
  writeText(o.output, ir::printModule(m));
  return 0;
}

// --- kiln ops --------------------------------------------------------------------

int cmdOps(int argc, char **argv) {
  cli::Command cmd("ops", "",
                   "Lists the op table: each op's name, operand count and meaning, and under it the attributes it "
                   "takes with their kinds and defaults (ir/ops.def).");
  if (!cmd.parse(argc, argv, 2)) return 0;
  for (const ir::OpInfo &op : ir::allOps()) {
    std::string head = fmt::format("{:<14} {} operand{}  ", op.name,
                                   op.minOperands == op.maxOperands
                                       ? fmt::format("{}", op.minOperands)
                                       : fmt::format("{}-{}", op.minOperands, op.maxOperands),
                                   op.maxOperands == 1 ? " " : "s");
    fmt::print("{}{}\n", head, op.summary);
    std::vector<std::string> attrs;
    for (const ir::AttrSpec &a : op.attrs) attrs.push_back(a.str());
    if (!attrs.empty()) fmt::print("{:<{}}{{{}}}\n", "", head.size(), fmt::join(attrs, ", "));
  }
  return 0;
}

// --- kiln cache ------------------------------------------------------------------

int cmdCache(int argc, char **argv) {
  std::string action;
  cli::Command cmd("cache", "info | clear",
                   "The compile cache of the backends that compile code (llvm): compiled plans kept in\n"
                   "$XDG_CACHE_HOME/kiln (default ~/.cache/kiln), keyed by the optimised graph, the shapes, the\n"
                   "CPU and the kiln and LLVM builds. `info` prints where it is and what it holds; `clear`\n"
                   "removes every entry. --no-cache on any command that runs a graph bypasses it.");
  cmd.positional("ACTION", action, "info: the directory, entries and bytes; clear: remove every entry");
  if (!cmd.parse(argc, argv, 2)) return 0;
  if (action == "info") {
    backends::llvm_backend::CacheInfo info = backends::llvm_backend::cacheInfo();
    fmt::print("compile cache: {}\nentries: {}\nsize: {:.1f} KiB\n", info.directory, info.entries,
               static_cast<double>(info.bytes) / 1024.0);
    return 0;
  }
  if (action == "clear") {
    int64_t removed = backends::llvm_backend::clearCache();
    fmt::print("removed {} entr{} from {}\n", removed, removed == 1 ? "y" : "ies",
               backends::llvm_backend::cacheDirectory());
    return 0;
  }
  throw cli::UsageError(fmt::format("kiln cache takes info or clear, got '{}'", action));
}

// --- the driver ----------------------------------------------------------------

struct CommandEntry {
  const char *name;
  const char *summary;
  int (*run)(int argc, char **argv);
};

const CommandEntry commands[] = {
    {"compile", "parse a model and print a stage of the pipeline (ast, ir, dot, stats, memory)", cmdCompile},
    {"run", "execute a model graph on inputs from a safetensors file or on --text", cmdRun},
    {"train", "train a model on labelled text, with checkpoints", tools::cmdTrain},
    {"eval", "accuracy, macro-F1 and confusion matrix of a checkpoint on data", tools::cmdEval},
    {"predict", "classify texts with a checkpoint", tools::cmdPredict},
    {"report", "draw the page of a training run (plots of its losses and metrics) from train --report's log",
     tools::cmdReport},
    {"export", "write a checkpoint's model as a C library (header, .a and .so) that predicts and trains", tools::cmdExport},
    {"bench", "time training steps and inference on each backend", tools::cmdBench},
    {"opt", "run compiler passes over textual IR and print the result", cmdOpt},
    {"ops", "list the op table", cmdOps},
    {"cache", "show or clear the compile cache of the llvm backend", cmdCache},
};

#ifndef KILN_VERSION
#define KILN_VERSION "unknown" // set from the CMake project version
#endif

std::string mainHelp() {
  std::string out = "kiln " KILN_VERSION " - a graph-compiling tensor framework for text classifiers\n\n"
                    "usage: kiln <command> [options]\n"
                    "       kiln help <command>   the options of a command (as kiln <command> --help)\n"
                    "       kiln --version\n\ncommands:\n";
  for (const CommandEntry &c : commands) out += fmt::format("  {:<9} {}\n", c.name, c.summary);
  return out + "\nRun 'kiln <command> --help' for the options of a command.\n";
}

const CommandEntry &findCommand(const std::string &name) {
  std::vector<std::string> names;
  for (const CommandEntry &c : commands) {
    if (name == c.name) return c;
    names.push_back(c.name);
  }
  std::string hint = nearestName(name, names);
  throw UsageError(fmt::format("unknown command '{}'{}", name, hint.empty() ? "" : "; did you mean '" + hint + "'?"));
}

int dispatch(int argc, char **argv) {
  if (argc < 2) {
    std::fputs(mainHelp().c_str(), stderr);
    return 2;
  }
  std::string first = argv[1];
  if (first == "-h" || first == "--help" || (first == "help" && argc == 2)) {
    std::fputs(mainHelp().c_str(), stdout);
    return 0;
  }
  if (first == "--version") {
    std::puts("kiln " KILN_VERSION);
    return 0;
  }
  if (first == "help") {
    if (argc > 3) throw UsageError(fmt::format("help takes one command, got '{}' too", argv[3]));
    const CommandEntry &c = findCommand(argv[2]);
    char help[] = "--help";
    char *helpArgv[] = {argv[0], argv[2], help, nullptr};
    return c.run(3, helpArgv);
  }
  if (first.size() > 1 && first[0] == '-') {
    std::string hint = nearestName(first, {"--help", "--version"});
    throw UsageError(fmt::format("unknown option '{}' before the command{}", first,
                                 hint.empty() ? "" : "; did you mean '" + hint + "'?"));
  }
  return findCommand(first).run(argc, argv);
}

} // namespace

int main(int argc, char **argv) {
  // Every step allocates its outputs (parameter-sized tensors in training).
  // glibc serves large blocks with fresh mmap()ed pages by default, and on
  // these VMs faulting fresh pages in costs more than the step itself; keep
  // large blocks on the heap and keep freed memory, so steps reuse it.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  // A data-parallel run ends MPI when it succeeds. After an error a rank
  // exits without it: mpirun then ends every rank of the job, where
  // MPI_Finalize would wait for ranks that are waiting for this one.
  auto rankLabel = [] {
    return runtime::mpiStarted() && runtime::startMpi().rank() > 0
               ? fmt::format("kiln: rank {} of {}: ", runtime::startMpi().rank(), runtime::startMpi().size())
               : std::string();
  };
  try {
    int status = dispatch(argc, argv);
    if (status == 0) runtime::finishMpi();
    return status;
  } catch (const UsageError &e) {
    // Point at the help of the command, when there is one.
    std::string command;
    for (const CommandEntry &c : commands)
      if (argc > 1 && argv[1] == std::string(c.name)) command = std::string(c.name) + " ";
    fmt::print(stderr, "kiln: error: {}\nRun 'kiln {}--help' for usage.\n", e.what(), command);
    return 2;
  } catch (const Error &e) {
    std::fputs((rankLabel() + formatError(e)).c_str(), stderr);
    return 1;
  } catch (const std::bad_alloc &) {
    std::fputs("kiln: error: out of memory\n", stderr);
    return 1;
  } catch (const std::exception &e) {
    fmt::print(stderr, "kiln: internal error: {}\n", e.what());
    return 70;
  }
}
