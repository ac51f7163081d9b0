//===- tools/export.cpp - kiln export: a model as a C library ------------===//
//
// kiln export MODEL.kiln --ckpt CKPT [--graph=infer|train] [--bind B=..,T=..]
//             [--prefix NAME] -o DIR
// writes DIR/NAME.h, DIR/libNAME.a and DIR/libNAME.so: the C API of
// runtime/exported_model.h under the prefix NAME. How:
//  1. The forward graph (and with --graph=train the training step of the
//     checkpoint's recipe) through kiln's pass pipeline, each compiled by
//     the LLVM backend at the bound shape as position-independent code for
//     this CPU with one global function, NAME_entry_infer / _train
//     (llvm_backend::exportPlan). A node that would run outside the plan's
//     code (a convolution on oneDNN's primitives, a reference step) is an
//     error naming its DSL line.
//  2. The descriptor: JSON with the vocabulary, labels, max_len, learning
//     rate, and per plan its bound B and T, its threads, the arena size and
//     every value's arena offset and root, its inputs, parameters (with
//     shapes) and outputs. Layout, by key: vocab, labels, max_len, lr,
//     logits, graphs.{infer,train}.{B, T, threads, arena, id_bound,
//     values: [[offset, root]...], inputs: {name: value}, params: {name:
//     value}, param_shapes: {name: [dims]}, outputs: [[name, value,
//     bindable]...]}.
//  3. A C file of glue, generated: the descriptor as bytes, and NAME_load
//     ... NAME_free forwarding to kiln_x_* with it and the entries.
//  4. Linking, with the system's tools (a C compiler, ld, ar): the objects,
//     the glue and kiln's export runtime archive (libkiln_export_rt.a, with
//     utf8proc's static library) partially linked into one NAME.o; libNAME.a
//     holds it, libNAME.so links it against libdnnl, libgomp, libstdc++
//     and libm, exporting only the NAME_* functions.
// Everything is built in a temporary directory inside DIR and moved into
// place at the end, so a failed export leaves DIR as it was.
//
//===----------------------------------------------------------------------===//
#include "tools/commands.h"

#include "backends/llvm/llvm_backend.h"
#include "ir/verifier.h"
#include "passes/training.h"
#include "runtime/json.h"
#include "runtime/output_guard.h"
#include "tools/cli.h"
#include "tools/options.h"
#include "tools/trained_model.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

#ifndef KILN_EXPORT_RUNTIME
#define KILN_EXPORT_RUNTIME "libkiln_export_rt.a"
#endif
#ifndef KILN_UTF8PROC_STATIC
#define KILN_UTF8PROC_STATIC "/usr/lib/x86_64-linux-gnu/libutf8proc.a"
#endif

namespace kiln::tools {

using cli::UsageError;
namespace fs = std::filesystem;

namespace {

struct ExportArgs {
  std::string model;
  TrainedModelArgs trained;
  std::string graph = "infer";
  std::optional<std::string> bind;
  std::string prefix = "model";
  std::string out;
  bool force = false;
  PassOptions passes;
};

void declare(cli::Command &cmd, ExportArgs &o) {
  cmd.positional("MODEL.kiln", o.model, "the model source the checkpoint was trained from");
  cmd.option("--ckpt", o.trained.ckpt, "CKPT", "the checkpoint (kiln train --out)").required();
  cmd.option("--graph", o.graph, "G", "what the library runs")
      .choices({{"infer", "predictions only"},
                {"train", "predictions and training steps with the checkpoint's recipe"}});
  cmd.option("--bind", o.bind, "B=N,T=N", "the largest batch and row length the library takes")
      .defaultText("the checkpoint's batch and max_len");
  cmd.option("--prefix", o.prefix, "NAME", "the C API's prefix, the header's and the libraries' name");
  cmd.option("-o,--out", o.out, "DIR", "the directory to write NAME.h, libNAME.a and libNAME.so into").required();
  cmd.flag("--force", o.force, "replace NAME.h, libNAME.a and libNAME.so in DIR even when they are not kiln's export");
  declarePassOptions(cmd, o.passes);
}

bool isIdentifier(const std::string &s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return true;
}

/// The first of `names` on PATH, or nullopt.
std::optional<std::string> onPath(std::initializer_list<const char *> names) {
  const char *path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  for (const char *name : names) {
    size_t pos = 0;
    while (pos <= dirs.size()) {
      size_t colon = dirs.find(':', pos);
      std::string dir = dirs.substr(pos, colon == std::string::npos ? std::string::npos : colon - pos);
      std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
      if (colon == std::string::npos) break;
      pos = colon + 1;
    }
  }
  return std::nullopt;
}

std::string tool(std::initializer_list<const char *> names, const char *package) {
  if (auto t = onPath(names)) return *t;
  throw Error(fmt::format("kiln export links the library with {}, which is not on PATH (Debian: apt-get install {})",
                          *names.begin(), package));
}

std::string shellQuote(const std::string &s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

/// Runs a command; kiln::Error with its output when it fails.
void runTool(const std::vector<std::string> &argv, const fs::path &log) {
  std::string command;
  for (const std::string &a : argv) command += (command.empty() ? "" : " ") + shellQuote(a);
  int status = std::system((command + " >" + shellQuote(log.string()) + " 2>&1").c_str());
  if (status == 0) return;
  std::ifstream in(log);
  std::string output((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  throw Error(fmt::format("kiln export: `{}` failed:\n{}", command, output));
}

/// The export runtime archive: next to the kiln executable (an installed
/// kiln's lib/kiln), else where the build made it.
std::string runtimeArchive() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (fs::path candidate : {exe.parent_path() / "libkiln_export_rt.a", exe.parent_path() / "../lib/kiln/libkiln_export_rt.a"})
      if (fs::exists(candidate, ec)) return candidate.string();
  }
  if (fs::exists(KILN_EXPORT_RUNTIME, ec)) return KILN_EXPORT_RUNTIME;
  throw Error("kiln export: the export runtime (libkiln_export_rt.a) is neither next to kiln nor at " KILN_EXPORT_RUNTIME);
}

ir::SymbolBindings bindingsOf(const ExportArgs &o, const ir::Graph &g, const runtime::Checkpoint &ckpt) {
  ir::SymbolBindings b = o.bind ? parseBindList(*o.bind, 1, " with N >= 1") : ir::SymbolBindings{};
  for (const std::string &sym : g.inputSymbols()) {
    if (b.count(sym)) continue;
    if (sym == "B") b[sym] = runtime::configInteger(ckpt.config, "batch", "the checkpoint");
    else if (sym == "T") b[sym] = runtime::configInteger(ckpt.config, "max_len", "the checkpoint");
    else throw UsageError(fmt::format("the model's inputs have a symbol {}: give its size with --bind {}=N", sym, sym));
  }
  for (const auto &[sym, v] : b) {
    const auto &symbols = g.inputSymbols();
    if (std::find(symbols.begin(), symbols.end(), sym) == symbols.end())
      throw UsageError(fmt::format("--bind {}: the model's inputs have no symbol {}", sym, sym));
  }
  return b;
}

/// One plan's part of the descriptor.
json::Value planDescriptor(const ir::Graph &g, const ir::SymbolBindings &b,
                           const backends::llvm_backend::ExportedPlan &plan, int64_t vocabSize) {
  json::Object d;
  d["B"] = b.count("B") ? b.at("B") : 1;
  d["T"] = b.count("T") ? b.at("T") : 1;
  d["threads"] = plan.threads;
  d["arena"] = plan.arenaBytes;
  json::Array values;
  for (size_t v = 0; v < plan.offsets.size(); ++v) values.push_back(json::Array{plan.offsets[v], plan.roots[v]});
  d["values"] = std::move(values);
  json::Object inputs, params, shapes;
  for (ir::ValueId v : g.inputs()) inputs[g.value(v).name] = v;
  for (ir::ValueId v : g.params()) {
    params[g.value(v).name] = v;
    json::Array dims;
    for (int64_t e : plan.extents[v]) dims.push_back(e);
    shapes[g.value(v).name] = std::move(dims);
  }
  d["inputs"] = std::move(inputs);
  d["params"] = std::move(params);
  d["param_shapes"] = std::move(shapes);
  json::Array outputs;
  for (const ir::Output &o : g.outputs())
    outputs.push_back(json::Array{o.name, o.value, static_cast<bool>(plan.bindable[o.value])});
  d["outputs"] = std::move(outputs);
  // The ids of the tokens input index embedding tables: the smallest table.
  int64_t bound = vocabSize;
  ir::ValueId tokens = g.inputs().front();
  for (const ir::Node &n : g.nodes())
    if (n.op == ir::OpKind::Embedding && n.operands[1] == tokens) bound = std::min(bound, plan.extents[n.operands[0]][0]);
  d["id_bound"] = bound;
  return d;
}

std::string header(const std::string &name, const std::string &model, bool train, const ir::SymbolBindings &b,
                   const runtime::InputRecipe &inputs) {
  std::string derived = inputs.derived.empty() ? "this model derives none: 1 plane" : "";
  for (const runtime::DerivedInput &d : inputs.derived)
    derived += fmt::format("{}{}: {}-grams hashed to {} ids", derived.empty() ? "" : "; ", d.name, d.n, d.buckets);
  std::string shape;
  for (const auto &[symbol, value] : b) shape += fmt::format("{}{}={}", shape.empty() ? "" : ", ", symbol, value);
  std::string text = fmt::format(R"(/* {0}.h - the model {1}, exported by kiln export ({2}, {3}).
 *
 * Link with -l{0} (lib{0}.so, or lib{0}.a with -ldnnl -lgomp -lstdc++ -lm;
 * one exported model per statically linked program). The code is compiled
 * for the CPU it was exported on. Padding id 0 marks padding, as in kiln.
 * Batches of up to the exported B rows and rows of up to T ids work (padded
 * inside); larger ones are an error. Every function that can fail returns
 * NULL or a negative value and leaves the reason in {0}_last_error().
 */
#ifndef {4}_H
#define {4}_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

typedef struct {0} {0};                       /* opaque */
{0} *{0}_load(const char *checkpoint);        /* NULL on error */
const char *{0}_last_error(void);              /* why the last call failed, or "" */
int64_t {0}_classes(const {0} *m);
const char *{0}_label(const {0} *m, int64_t k);   /* class k's label string */
/* Planes of ids per text: 1 (the token ids) plus one per input the model
 * derives from them ({6}). A text of len positions is planes*len
 * ids: plane p at ids + p*len. */
int64_t {0}_planes(const {0} *m);
/* A text's ids as kiln's data pipeline makes them, at most the checkpoint's
 * max_len and at most max_len positions: ids holds planes*max_len ids,
 * plane p at ids + p*max_len, each zero-filled past the count; returns the
 * count of positions, <0 on error */
int64_t {0}_tokenize(const {0} *m, const char *utf8, int32_t *ids, int64_t max_len);
/* ids: batch rows of planes*len ids (row r, plane p at ids + (r*planes + p)*len),
 * 0 = padding; probs: batch*classes, softmax; 0 = ok */
int {0}_predict({0} *m, const int32_t *ids, int64_t batch, int64_t len, float *probs);
/* {5}one optimizer step with the checkpoint's recipe, ids as for predict; 0 = ok */
int {0}_train_step({0} *m, const int32_t *ids, const int32_t *labels, int64_t batch, int64_t len, float *loss);
int {0}_save({0} *m, const char *checkpoint);  /* atomic; the same safetensors checkpoint kiln writes and loads */
void {0}_free({0} *m);

#ifdef __cplusplus
}}
#endif

#endif
)",
                                 name, model, train ? "inference and training" : "inference", shape,
                                 [&] {
                                   std::string upper;
                                   for (char c : name) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
                                   return upper;
                                 }(),
                                 train ? "" : "exported without --graph=train: always fails; ", derived);
  return text;
}

std::string glue(const std::string &name, const std::string &descriptor, bool train) {
  std::string bytes;
  for (size_t i = 0; i < descriptor.size(); ++i)
    bytes += fmt::format("{}{}", static_cast<unsigned>(static_cast<unsigned char>(descriptor[i])),
                         i + 1 == descriptor.size() ? "" : (i % 24 == 23 ? ",\n" : ","));
  return fmt::format(R"(/* generated by kiln export: the C API of {0}.h over kiln's export runtime */
#include <stddef.h>
#include <stdint.h>
#include "{0}.h"

typedef void (*kiln_x_entry)(void *const *values, void *unused);
void *kiln_x_load(const char *descriptor, size_t size, kiln_x_entry infer, kiln_x_entry train, const char *checkpoint);
const char *kiln_x_last_error(void);
int64_t kiln_x_classes(const void *model);
const char *kiln_x_label(const void *model, int64_t k);
int64_t kiln_x_planes(const void *model);
int64_t kiln_x_tokenize(const void *model, const char *utf8, int32_t *ids, int64_t max_len);
int kiln_x_predict(void *model, const int32_t *ids, int64_t batch, int64_t len, float *probs);
int kiln_x_train_step(void *model, const int32_t *ids, const int32_t *labels, int64_t batch, int64_t len, float *loss);
int kiln_x_save(void *model, const char *checkpoint);
void kiln_x_free(void *model);

void {0}_entry_infer(void *const *values, void *unused);
{1}
static const unsigned char descriptor[] = {{
{2}
}};

{0} *{0}_load(const char *checkpoint) {{
  return ({0} *)kiln_x_load((const char *)descriptor, sizeof descriptor, {0}_entry_infer, {3}, checkpoint);
}}
const char *{0}_last_error(void) {{ return kiln_x_last_error(); }}
int64_t {0}_classes(const {0} *m) {{ return kiln_x_classes(m); }}
const char *{0}_label(const {0} *m, int64_t k) {{ return kiln_x_label(m, k); }}
int64_t {0}_planes(const {0} *m) {{ return kiln_x_planes(m); }}
int64_t {0}_tokenize(const {0} *m, const char *utf8, int32_t *ids, int64_t max_len) {{
  return kiln_x_tokenize(m, utf8, ids, max_len);
}}
int {0}_predict({0} *m, const int32_t *ids, int64_t batch, int64_t len, float *probs) {{
  return kiln_x_predict(m, ids, batch, len, probs);
}}
int {0}_train_step({0} *m, const int32_t *ids, const int32_t *labels, int64_t batch, int64_t len, float *loss) {{
  return kiln_x_train_step(m, ids, labels, batch, len, loss);
}}
int {0}_save({0} *m, const char *checkpoint) {{ return kiln_x_save(m, checkpoint); }}
void {0}_free({0} *m) {{ kiln_x_free(m); }}
)",
                     name, train ? fmt::format("void {}_entry_train(void *const *values, void *unused);", name) : "",
                     bytes, train ? name + "_entry_train" : "NULL");
}

void writeBytes(const fs::path &path, const std::string &bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out.flush()) throw Error(fmt::format("cannot write {}", path.string()));
}

/// Existing files of the names export writes are replaced only when they
/// are an earlier export's (NAME.h starts with the header's first line), or
/// with --force: DIR may be a directory of the user's own files.
void checkOutputs(const fs::path &dir, const std::string &name, bool force) {
  std::error_code ec;
  std::vector<fs::path> present;
  for (const std::string &file : {name + ".h", "lib" + name + ".a", "lib" + name + ".so"})
    if (fs::exists(dir / file, ec)) present.push_back(dir / file);
  if (present.empty() || force) return;
  std::ifstream in(dir / (name + ".h"));
  std::string first;
  std::getline(in, first);
  if (first.rfind(fmt::format("/* {}.h - the model ", name), 0) == 0 && first.find("exported by kiln export") != std::string::npos)
    return;
  throw Error(fmt::format("{} exists and is not a library that kiln export wrote; pass --force to replace it, or "
                          "choose another -o or --prefix",
                          present.front().string()));
}

/// A directory that is removed with everything in it when this goes out of scope.
struct TempDir {
  fs::path path;
  explicit TempDir(const fs::path &parent) {
    std::string pattern = (parent / ".kiln-export-XXXXXX").string();
    if (!::mkdtemp(pattern.data()))
      throw Error(fmt::format("cannot make a temporary directory in {}: {}", parent.string(), std::strerror(errno)));
    path = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

} // namespace

int cmdExport(int argc, char **argv) {
  ExportArgs o;
  cli::Command cmd("export", "MODEL.kiln --ckpt CKPT [options] -o DIR",
                   "Writes DIR/NAME.h, DIR/libNAME.a and DIR/libNAME.so: the checkpoint's model as a C\n"
                   "library with kiln's tokenizer and the checkpoint's vocabulary compiled in, which\n"
                   "predicts and (with --graph=train) trains without kiln: NAME_load, NAME_tokenize,\n"
                   "NAME_predict, NAME_train_step, NAME_save (see the header). Its code is the llvm\n"
                   "backend's for this CPU at the --bind sizes; linking needs a C compiler, ld and ar.");
  declare(cmd, o);
  if (!cmd.parse(argc, argv, 2)) return 0;
  o.trained.model = o.model;
  if (!isIdentifier(o.prefix)) throw UsageError(fmt::format("--prefix must be a C identifier, got '{}'", o.prefix));
  std::string cc = tool({"cc", "gcc", "clang"}, "gcc"), cxx = tool({"c++", "g++", "clang++"}, "g++");
  std::string ld = tool({"ld"}, "binutils"), ar = tool({"ar"}, "binutils");
  std::string archive = runtimeArchive();
  checkOutputs(o.out, o.prefix, o.force);

  LoadedModel m = loadTrained(o.trained);
  bool train = o.graph == "train";
  double lr = runtime::configNumber(m.ckpt.config, "lr", o.trained.ckpt);
  if (train) {
    std::string schedule = runtime::configString(m.ckpt.config, "schedule", o.trained.ckpt);
    if (schedule != "constant")
      throw Error(fmt::format("{}: the recipe's learning rate follows --schedule {}, which depends on the length of "
                              "the run; an exported training step takes the constant schedule only",
                              o.trained.ckpt, schedule));
  }
  ir::SymbolBindings bindings = bindingsOf(o, *m.forward, m.ckpt);
  passes::PipelineOptions pipeline = o.passes.pipeline();

  json::Object descriptor;
  json::Array vocab, labels;
  for (const std::string &t : m.ckpt.vocab) vocab.push_back(t);
  for (const std::string &l : m.ckpt.labels) labels.push_back(l);
  descriptor["vocab"] = std::move(vocab);
  descriptor["labels"] = std::move(labels);
  descriptor["max_len"] = runtime::configInteger(m.ckpt.config, "max_len", o.trained.ckpt);
  descriptor["lr"] = lr;
  descriptor["logits"] = m.forward->outputs().front().name;
  // The inputs the library computes from a text: the token ids, then each
  // derived input (runtime/data.h InputRecipe), one "plane" of ids each.
  descriptor["tokens"] = m.inputs.tokens;
  json::Array derived;
  for (const runtime::DerivedInput &d : m.inputs.derived) derived.push_back(json::Array{d.name, d.n, d.buckets});
  descriptor["derived"] = std::move(derived);
  json::Object graphs;
  std::vector<std::pair<std::string, std::string>> objects; // file name, bytes
  auto compilePlan = [&](ir::Graph g, const char *kind) {
    passes::runPipeline(g, pipeline);
    auto plan = backends::llvm_backend::exportPlan(g, bindings, fmt::format("{}_entry_{}", o.prefix, kind));
    graphs[kind] = planDescriptor(g, bindings, plan, static_cast<int64_t>(m.ckpt.vocab.size()));
    objects.push_back({fmt::format("{}.o", kind), std::move(plan.object)});
  };
  compilePlan(*m.forward, "infer");
  if (train) {
    uint64_t seed = static_cast<uint64_t>(runtime::configInteger(m.ckpt.config, "seed", o.trained.ckpt));
    ir::Graph step = passes::buildTrainGraph(*m.forward, optimizerFromConfig(m.ckpt.config, o.trained.ckpt, seed));
    ir::verify(step);
    // The step's inputs besides the model's are labels, lr and step, as kiln train feeds them.
    for (ir::ValueId v : step.inputs()) {
      const std::string &n = step.value(v).name;
      if (m.forward->findInput(n) < 0 && n != "labels" && n != "lr" && n != "step")
        throw Error(fmt::format("the training step has an input '{}' that an exported library cannot feed", n));
    }
    compilePlan(std::move(step), "train");
  }
  descriptor["graphs"] = std::move(graphs);

  fs::path dir(o.out);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(fmt::format("cannot create {}: {}", dir.string(), ec.message()));
  TempDir tmp(dir);
  for (const auto &[file, bytes] : objects) writeBytes(tmp.path / file, bytes);
  std::string name = o.prefix;
  std::string model = o.trained.model ? *o.trained.model : m.ckpt.modelFile;
  writeBytes(tmp.path / (name + ".h"), header(name, model, train, bindings, m.inputs));
  writeBytes(tmp.path / "glue.c", glue(name, json::write(descriptor), train));
  fs::path log = tmp.path / "tool.log";
  runTool({cc, "-c", "-O1", "-fPIC", "-I", tmp.path.string(), (tmp.path / "glue.c").string(), "-o",
           (tmp.path / "glue.o").string()},
          log);
  std::vector<std::string> partial{ld, "-r", "-o", (tmp.path / (name + ".o")).string()};
  for (const auto &[file, bytes] : objects) partial.push_back((tmp.path / file).string());
  partial.insert(partial.end(), {(tmp.path / "glue.o").string(), "--whole-archive", archive, "--no-whole-archive",
                                 KILN_UTF8PROC_STATIC});
  runTool(partial, log);
  runTool({ar, "rcs", (tmp.path / ("lib" + name + ".a")).string(), (tmp.path / (name + ".o")).string()}, log);
  std::string symbols = "{ global: ";
  for (const char *f :
       {"load", "last_error", "classes", "label", "planes", "tokenize", "predict", "train_step", "save", "free"})
    symbols += fmt::format("{}_{}; ", name, f);
  writeBytes(tmp.path / "exports.map", symbols + "local: *; };\n");
  runTool({cxx, "-shared", "-o", (tmp.path / ("lib" + name + ".so")).string(), (tmp.path / (name + ".o")).string(),
           "-Wl,--version-script=" + (tmp.path / "exports.map").string(), "-Wl,--no-undefined", "-ldnnl", "-lgomp",
           "-lm"},
          log);
  for (const std::string &file : {name + ".h", "lib" + name + ".a", "lib" + name + ".so"}) {
    fs::rename(tmp.path / file, dir / file, ec);
    if (ec) throw Error(fmt::format("cannot move {} into {}: {}", file, dir.string(), ec.message()));
  }
  std::string shape;
  for (const auto &[symbol, value] : bindings) shape += fmt::format("{}{}={}", shape.empty() ? "" : ",", symbol, value);
  fmt::print("exported {} ({}) at {} to {}/{}.h, lib{}.a and lib{}.so\n", model, train ? "inference and training" : "inference",
             shape, dir.string(), name, name, name);
  return 0;
}

} // namespace kiln::tools
